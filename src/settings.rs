//! Every environment variable the library reads, read and checked here and nowhere else.
//! `.env` is loaded once, before the first of them (and by each binary as it starts, so
//! its own flags see it too). Unset or empty means the default; anything else must parse
//! and lie in range, or the error names the variable, what it holds and what it may hold.
//!
//! | Variable | Default | Allowed | Read by |
//! |---|---|---|---|
//! | `DATABASE_URL` | none: required | a `postgres://` URL | [`DbConfig::from_env`], [`db::url_from`] |
//! | `DATABASE_DIRECT_URL` | `DATABASE_URL` | a `postgres://` URL past any pooler | [`db::direct_url_from`] (migrations) |
//! | `DATABASE_POOL_SIZE` | 10 | [`POOL_SIZE`] | [`DbConfig::from_env`] |
//! | `DATABASE_POOL_TIMEOUT_SECS` | 5 | [`POOL_TIMEOUT_SECS`] | [`DbConfig::from_env`] |
//! | `DATABASE_POOL_RECYCLE` | `fast` | `fast`, `verified` | [`DbConfig::from_env`] |
//! | `DATABASE_POOLER` | `session` | `session` (or `none`), `transaction` | [`DbConfig::from_env`] |
//! | `DATABASE_CONNECT_TIMEOUT_SECS` | 10 | [`CONNECT_TIMEOUT_SECS`] | [`db::connect_timeout`], unless the URL has `connect_timeout` |
//! | `DATABASE_SLOW_QUERY_MS` | 500 | [`SLOW_QUERY_MS`] | [`QueryTracing::from_env`] |
//! | `DATABASE_REPLICA_URLS` | none | comma-separated `postgres://` URLs | [`ReplicaConfig::from_env`] |
//! | `DATABASE_REPLICA_MAX_LAG_MS` | 1000 | [`REPLICA_MAX_LAG_MS`] | [`ReplicaConfig::from_env`] |
//! | `DATABASE_REPLICA_WAIT_MS` | 200 | [`REPLICA_WAIT_MS`] | [`ReplicaConfig::from_env`] |
//! | `DATABASE_REPLICA_RETRY_MS` | 5000 | [`REPLICA_RETRY_MS`] | [`ReplicaConfig::from_env`] |
//! | `DATABASE_REPLICA_TIMEOUT_MS` | 1000 | [`REPLICA_TIMEOUT_MS`] | [`ReplicaConfig::from_env`] |
//! | `HOME` | none | a directory | TLS: `~/.postgresql/root.crt`, `postgresql.crt`, `postgresql.key`, as libpq |
//!
//! The binaries' own settings (`MIGRATE_*`, `LOG_FORMAT`, `RUST_LOG`) are read by their
//! argument parsers and listed in their `--help`.
//!
//! [`DbConfig::from_env`]: crate::db::DbConfig::from_env
//! [`db::url_from`]: crate::db::url_from
//! [`db::direct_url_from`]: crate::db::direct_url_from
//! [`db::connect_timeout`]: crate::db::connect_timeout
//! [`QueryTracing::from_env`]: crate::db::instrument::QueryTracing::from_env
//! [`ReplicaConfig::from_env`]: crate::db::replicas::ReplicaConfig::from_env

use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::sync::OnceLock;

use crate::{Error, Result};

/// A whole-number setting: its variable and the values it may take.
#[derive(Debug)]
pub struct Number {
    /// The environment variable.
    pub key: &'static str,
    /// The values it may take; a value in code (e.g. a `DbConfig` field) passes the same.
    pub range: RangeInclusive<u64>,
    /// The value when the variable is unset or empty.
    pub default: u64,
}

/// Each connection is a server process, and `max_connections` tops out in the thousands.
pub const POOL_SIZE: Number = Number {
    key: "DATABASE_POOL_SIZE",
    range: 1..=10_000,
    default: 10,
};

/// 0 would fail every checkout that has to wait.
pub const POOL_TIMEOUT_SECS: Number = Number {
    key: "DATABASE_POOL_TIMEOUT_SECS",
    range: 1..=3_600,
    default: 5,
};

/// libpq reads 0 as "wait for ever"; a hung server must never hang us, so 0 is refused.
pub const CONNECT_TIMEOUT_SECS: Number = Number {
    key: "DATABASE_CONNECT_TIMEOUT_SECS",
    range: 1..=3_600,
    default: 10,
};

/// 0 reports every statement; a day is past any useful threshold.
pub const SLOW_QUERY_MS: Number = Number {
    key: "DATABASE_SLOW_QUERY_MS",
    range: 0..=86_400_000,
    default: 500,
};

/// Up to an hour behind.
pub const REPLICA_MAX_LAG_MS: Number = Number {
    key: "DATABASE_REPLICA_MAX_LAG_MS",
    range: 1..=3_600_000,
    default: 1000,
};

/// 0 (check once) to a minute.
pub const REPLICA_WAIT_MS: Number = Number {
    key: "DATABASE_REPLICA_WAIT_MS",
    range: 0..=60_000,
    default: 200,
};

/// Up to an hour left out.
pub const REPLICA_RETRY_MS: Number = Number {
    key: "DATABASE_REPLICA_RETRY_MS",
    range: 0..=3_600_000,
    default: 5000,
};

/// Up to a minute per read.
pub const REPLICA_TIMEOUT_MS: Number = Number {
    key: "DATABASE_REPLICA_TIMEOUT_MS",
    range: 1..=60_000,
    default: 1000,
};

/// `DATABASE_POOLER`'s choices.
pub(crate) const POOLER: &str = "DATABASE_POOLER";
/// `DATABASE_POOL_RECYCLE`'s choices.
pub(crate) const POOL_RECYCLE: &str = "DATABASE_POOL_RECYCLE";

impl Number {
    /// The variable's value, else the default.
    pub(crate) fn get(&self) -> Result<u64> {
        Ok(self.read()?.unwrap_or(self.default))
    }

    /// The variable's value, `None` when unset or empty.
    pub(crate) fn read(&self) -> Result<Option<u64>> {
        let Some(raw) = raw(self.key)? else {
            return Ok(None);
        };
        let value: u64 = raw.parse().map_err(|_| {
            Error::Config(format!("{} must be a whole number, got {raw:?}", self.key))
        })?;
        self.check(value).map(Some)
    }

    /// `value` when it lies in range; else an error naming the variable. Bounds of 0 or of
    /// centuries are typos, and durations past the range would overflow `Instant` arithmetic.
    pub(crate) fn check(&self, value: u64) -> Result<u64> {
        if self.range.contains(&value) {
            return Ok(value);
        }
        Err(Error::Config(format!(
            "{} must be between {} and {}, got {value}",
            self.key,
            self.range.start(),
            self.range.end()
        )))
    }
}

/// The value of `key` among `choices`, `None` when unset or empty; else an error listing them.
pub(crate) fn choice<T: Copy>(key: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
    let Some(raw) = raw(key)? else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == raw) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(Error::Config(format!(
                "{key} must be one of {}, got {raw:?}",
                names.join(", ")
            )))
        }
    }
}

/// `DATABASE_URL`, unparsed; `None` when unset.
pub(crate) fn database_url() -> Result<Option<String>> {
    url("DATABASE_URL")
}

/// `DATABASE_DIRECT_URL`, unparsed; `None` when unset.
pub(crate) fn direct_url() -> Result<Option<String>> {
    url("DATABASE_DIRECT_URL")
}

/// `DATABASE_REPLICA_URLS`, split at commas; empty when unset.
pub(crate) fn replica_urls() -> Result<Vec<String>> {
    let list = raw("DATABASE_REPLICA_URLS")?.unwrap_or_default();
    let urls = list.split(',').map(str::trim).filter(|u| !u.is_empty());
    Ok(urls.map(str::to_owned).collect())
}

/// `HOME`, where libpq looks for `~/.postgresql/`; any bytes, as a path may hold.
pub(crate) fn home() -> Option<OsString> {
    // A .env that does not parse is reported by the URL's own read.
    let _ = load_dotenv();
    std::env::var_os("HOME")
}

/// Loads `.env` from the working directory (or a parent), once per process; variables
/// already set win. Binaries call it first, so their flags' `env` see the file too. A file
/// that does not parse is refused by every read that follows, never half taken.
pub fn load_dotenv() -> Result<()> {
    static LOADED: OnceLock<Option<String>> = OnceLock::new();
    let failed = LOADED.get_or_init(|| match dotenvy::dotenv() {
        Ok(_) => None,
        Err(e) if e.not_found() => None,
        Err(dotenvy::Error::LineParse(text, at)) => Some(unparsed(&text, at)),
        Err(e) => Some(format!(".env cannot be read: {e}")),
    });
    match failed {
        None => Ok(()),
        Some(message) => Err(Error::Config(message.clone())),
    }
}

/// What is wrong in `.env`, by line number and variable, never by its text: dotenvy's own
/// message quotes the value, and the value may be a password.
fn unparsed(text: &str, at: usize) -> String {
    let found = std::env::current_dir().ok().and_then(|dir| {
        let file = dir
            .ancestors()
            .map(|d| d.join(".env"))
            .find(|f| f.is_file())?;
        let content = std::fs::read_to_string(&file).ok()?;
        let (n, line) = (content.lines().enumerate()).find(|(_, line)| line.contains(text))?;
        let key = line.split_once('=').map_or("", |(key, _)| key.trim());
        let key = key.trim_start_matches("export ").trim();
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        Some(match plain {
            true => format!("line {}, setting {key}", n + 1),
            false => format!("line {}", n + 1),
        })
    });
    let place = found.unwrap_or_else(|| "a line".to_owned());
    format!(
        ".env does not parse: {place}, at character {} (a value with spaces, quotes or # \
         must be in quotes)",
        at + 1
    )
}

/// A URL variable as it is: an empty one is an error at parse time, not a missing one.
fn url(key: &str) -> Result<Option<String>> {
    load_dotenv()?;
    match std::env::var(key) {
        Ok(raw) => Ok(Some(raw)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        // Not shown: it may hold a password, and cannot be printed faithfully anyway.
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::BadUrl {
            url: format!("${key}"),
            reason: "it is not valid UTF-8".into(),
        }),
    }
}

/// `key`'s value, trimmed; `None` when unset or empty.
fn raw(key: &str) -> Result<Option<String>> {
    load_dotenv()?;
    match std::env::var(key) {
        Ok(value) => Ok(Some(value.trim().to_owned()).filter(|v| !v.is_empty())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::Config(format!("{key} is not valid UTF-8")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Number; 8] = [
        &POOL_SIZE,
        &POOL_TIMEOUT_SECS,
        &CONNECT_TIMEOUT_SECS,
        &SLOW_QUERY_MS,
        &REPLICA_MAX_LAG_MS,
        &REPLICA_WAIT_MS,
        &REPLICA_RETRY_MS,
        &REPLICA_TIMEOUT_MS,
    ];

    #[test]
    fn a_number_outside_its_range_is_refused_by_name() {
        assert_eq!(POOL_SIZE.check(1).unwrap(), 1);
        assert_eq!(POOL_SIZE.check(10_000).unwrap(), 10_000);
        for bad in [0, 10_001, u64::MAX] {
            let err = POOL_SIZE.check(bad).unwrap_err().to_string();
            assert!(err.contains("DATABASE_POOL_SIZE"), "{err}");
            assert!(err.contains("between 1 and 10000"), "{err}");
        }
    }

    #[test]
    fn defaults_lie_in_their_ranges() {
        for setting in ALL {
            assert!(setting.check(setting.default).is_ok(), "{}", setting.key);
        }
    }

    #[test]
    fn ranges_start_where_zero_means_something() {
        // 0 is allowed only where it has a meaning (report all, check once, retry at once).
        let zero_allowed = [&SLOW_QUERY_MS, &REPLICA_WAIT_MS, &REPLICA_RETRY_MS];
        for setting in ALL {
            let zero_ok = zero_allowed.iter().any(|s| s.key == setting.key);
            assert_eq!(setting.check(0).is_ok(), zero_ok, "{}", setting.key);
            assert!(setting.check(u64::MAX).is_err(), "{}", setting.key);
        }
    }
}
