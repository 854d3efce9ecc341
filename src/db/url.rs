//! The database URL: parsed and checked once, masked whenever shown, and where it comes
//! from (a flag, `DATABASE_URL`, `DATABASE_DIRECT_URL`).

use std::fmt;

use super::{connect_timeout, tls};
use crate::settings;
use crate::{Error, Result};

mod hosts;
mod mask;

pub use hosts::MAX_HOSTS;
use hosts::{host_list, split_host_list, with_hosts};
pub use mask::mask;
#[cfg(test)]
use mask::mask_password_params;
use mask::misplaced_at;

/// A validated `postgres://` URL, with one host or libpq's host list
/// (`postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`). `Display` masks the
/// password; [`DatabaseUrl::expose`] gives the real string to the driver and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The URL as `url::Url` can hold it, with one host: for a host list, its first host.
    /// Everything but the hosts (user info, path, query) is read from here.
    url: url::Url,
    /// A host list's entries as written (`h1:5432`, `[::1]`), two or more; empty for a URL
    /// with one host.
    hosts: Vec<String>,
    /// `url` with the host list in place: what [`DatabaseUrl::expose`] gives.
    full: String,
}

/// What a database name must escape in a URL path: all but letters, digits and `-._~`
/// (RFC 3986's unreserved characters). Escaping `_` too would be valid, but diesel_cli then
/// creates the database under the escaped name.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// PostgreSQL's limit on a name (NAMEDATALEN - 1), in bytes.
pub const MAX_NAME_BYTES: usize = 63;

impl DatabaseUrl {
    /// Parses and checks a URL: scheme postgres/postgresql, user info where it belongs, a
    /// database name, each host of a host list and `target_session_attrs`. Errors show the
    /// input masked by [`mask`], never raw.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadUrl {
            url: mask(raw),
            reason: reason.to_owned(),
        };
        let Some((before, list, after)) = split_host_list(raw) else {
            return Self::from_parts(parse_one(raw, raw)?, Vec::new()).map_err(|e| bad(&e));
        };
        let hosts = host_list(list).map_err(|e| bad(&e))?;
        // url::Url holds one host: the first stands for the list in every other check.
        let url = parse_one(raw, &format!("{before}{}{after}", hosts[0]))?;
        Self::from_parts(url, hosts).map_err(|e| bad(&e))
    }

    /// The URL with the hosts put back, once its checks past the authority are made.
    fn from_parts(url: url::Url, hosts: Vec<String>) -> std::result::Result<Self, String> {
        let full = with_hosts(&url, &hosts);
        let url = DatabaseUrl { url, hosts, full };
        if url.database().is_empty() {
            return Err("no database name in the path (postgres://host/DBNAME)".into());
        }
        // The server would silently cut a longer name and work on another database.
        let len = url.database().len();
        if len > MAX_NAME_BYTES {
            return Err(format!(
                "the database name is {len} bytes long; PostgreSQL allows at most \
                 {MAX_NAME_BYTES} (and would cut it short, naming another database)"
            ));
        }
        let params = tls::params(&url.url);
        for (key, value) in &params {
            if key == "target_session_attrs" {
                session_attrs(value)?;
            }
        }
        if !url.hosts.is_empty() {
            // The list is in the authority; a second one in the query would make the hosts
            // and ports disagree, and our host-by-host attempts (connect.rs) go in order.
            for (key, value) in &params {
                if matches!(key.as_str(), "host" | "hostaddr" | "port") {
                    return Err(format!(
                        "with a host list, {key}= may not be given too: write each host and \
                         its port in the list (h1:5432,h2:5433)"
                    ));
                }
                if key == "load_balance_hosts" && value != "disable" {
                    return Err(format!(
                        "load_balance_hosts={value} is not supported: a host list is tried in \
                         its order"
                    ));
                }
            }
            // Each host's own URL is what its attempt connects to: it must parse.
            url.each_host()?;
        }
        Ok(url)
    }

    /// The URL with its password, for the driver only: never print it.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// The database name from the path, percent-decoded.
    pub fn database(&self) -> String {
        let path = self.url.path().trim_start_matches('/');
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The same server (or host list) and credentials, another database (e.g. `postgres`
    /// for admin work).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.url.clone();
        let encoded: String = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).collect();
        url.set_path(&format!("/{encoded}"));
        let full = with_hosts(&url, &self.hosts);
        DatabaseUrl {
            url,
            hosts: self.hosts.clone(),
            full,
        }
    }

    /// The URL's parameters and user info, one host standing for all: for what is the same
    /// whichever host answers (the query, TLS settings).
    pub(super) fn first(&self) -> &url::Url {
        &self.url
    }

    /// Each host as a URL of its own, in the list's order, with the host as written: what
    /// one connection attempt is made to. A URL with one host gives itself.
    pub(super) fn each_host(&self) -> std::result::Result<Vec<(String, url::Url)>, String> {
        if self.hosts.is_empty() {
            let host = self.url.host_str().unwrap_or("localhost");
            let host = match self.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            return Ok(vec![(host, self.url.clone())]);
        }
        (self.hosts.iter().enumerate())
            .map(|(i, host)| {
                let one = with_hosts(&self.url, std::slice::from_ref(host));
                let one = url::Url::parse(&one)
                    .map_err(|e| format!("host {} of the list, {host:?}: {e}", i + 1))?;
                Ok((host.clone(), one))
            })
            .collect()
    }

    /// Whether the URL names a host list rather than one host.
    pub fn is_multi_host(&self) -> bool {
        !self.hosts.is_empty()
    }
}

/// Parses a URL with one host (`text`: `raw` itself, or `raw` with its host list cut to
/// one host) with today's checks: scheme and where the user info ends.
fn parse_one(raw: &str, text: &str) -> Result<url::Url> {
    let bad = |reason: &str| Error::BadUrl {
        url: mask(raw),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            bad("it must look like postgres://user:password@host:5432/dbname")
        }
        _ if raw.contains('@') => bad(&format!("{e}{ENCODE_HINT}")),
        _ => bad(&e.to_string()),
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    // An '@' that did not end the user info means the URL split somewhere else: a
    // reserved character in the password moved part of it into the port, path or query.
    if misplaced_at(&parsed, text) {
        return Err(bad(&format!(
            "the '@' is not after the user info{ENCODE_HINT}"
        )));
    }
    Ok(parsed)
}

/// `target_session_attrs` as tokio-postgres 0.7 reads it (`any`, `read-write`,
/// `read-only`); libpq's other values are refused by name rather than faked.
fn session_attrs(value: &str) -> std::result::Result<(), String> {
    match value {
        "any" | "read-write" | "read-only" => Ok(()),
        "primary" | "standby" | "prefer-standby" => Err(format!(
            "target_session_attrs={value} is libpq's, and not supported by the driver here \
             (tokio-postgres knows any, read-write and read-only)"
        )),
        _ => Err(format!(
            "target_session_attrs {value:?} is not one of any, read-write, read-only"
        )),
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.full))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Added to URL errors where a reserved character in the password is the likely cause.
const ENCODE_HINT: &str = "; if the password holds @ : / ? # or %, percent-encode them \
                           (@ is %40, : is %3A, / is %2F, ? is %3F, # is %23, % is %25)";

/// The URL given on the command line, else `DATABASE_URL` (also read from `.env`), with
/// an error that says which is missing or unusable.
pub fn url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw);
    }
    match settings::database_url()? {
        Some(raw) => DatabaseUrl::parse(&raw),
        None => Err(Error::NoUrl),
    }
}

/// The URL for work that needs a whole server session (migrations and their advisory
/// lock): the command-line URL, else `DATABASE_DIRECT_URL` (the server itself, past any
/// transaction pooler), else [`url_from`].
pub fn direct_url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if flag.is_none()
        && let Some(raw) = settings::direct_url()?
    {
        return DatabaseUrl::parse(&raw);
    }
    url_from(flag)
}

/// How a child tool (pg_dump, diesel_cli) reaches the database: the URL for its command
/// line, without the password, and its environment: the password as `PGPASSWORD` (argv is
/// readable by every local user through `ps`; the environment only by the same user) and
/// the connect bound as `PGCONNECT_TIMEOUT` (whole seconds, at least 2).
pub fn tool_connection(url: &DatabaseUrl) -> Result<(String, Vec<(&'static str, String)>)> {
    let secs = connect_timeout(url)?.as_secs().max(2);
    let mut env = vec![("PGCONNECT_TIMEOUT", secs.to_string())];
    let mut bare = url.first().clone();
    let in_query = (tls::params(&bare).into_iter().rev())
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v);
    let in_userinfo = bare.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if let Some(password) = in_userinfo.or(in_query) {
        env.push(("PGPASSWORD", password));
    }
    let _ = bare.set_password(None);
    let bare = tls::without_params(&bare, &["password"]);
    // libpq reads a host list (and target_session_attrs) itself: the tool gets them all.
    Ok((with_hosts(&bare, &url.hosts), env))
}

#[cfg(test)]
mod tests;
