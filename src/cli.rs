//! What the binaries share: output that survives a closed pipe, where diagnostics go, signals,
//! their common flags, and a clean exit. Behind the `cli` feature (on by default): the data
//! layer alone installs no subscriber and needs neither clap nor tracing-subscriber.
//!
//! `println!` panics when the reader has gone (`init_db | head -2`). These macros drop the
//! line instead, so the command finishes its work and exits with its own status.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// `println!` for the binaries: a closed stdout drops the line instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write(false, format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for the binaries: a closed stdout drops the text instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write(false, format_args!($($arg)*)) };
}

/// `eprintln!` for the binaries: a closed stderr drops the line instead of panicking.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::write(true, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Writes to stdout (or stderr), ignoring a reader that has gone.
pub fn write(to_stderr: bool, text: fmt::Arguments<'_>) {
    let _ = if to_stderr {
        std::io::stderr().lock().write_fmt(text)
    } else {
        std::io::stdout().lock().write_fmt(text)
    };
}

/// The end of every binary's `main`: lets dropped connections say goodbye to the server
/// (Terminate), prints an error as one `name: error: ...` line, and returns the exit code.
pub async fn finish(name: &str, result: Result<ExitCode, impl fmt::Display>) -> ExitCode {
    crate::db::close_connections(Duration::from_secs(2)).await;
    match result {
        Ok(code) => code,
        Err(err) => {
            errln!("{name}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses a `.env` that did not parse (see [`crate::settings::load_dotenv`]): `name` stops
/// with exit code 2, as for a bad flag. Called once the flags are read, so `--help` works
/// whatever the file holds.
pub fn refuse_bad_dotenv(name: &str, loaded: crate::Result<()>) -> Result<(), ExitCode> {
    loaded.map_err(|err| {
        errln!("{name}: error: {err}");
        ExitCode::from(2)
    })
}

/// How the binaries write diagnostics (tracing events) to stderr. Answers (tables,
/// `current`) stay on stdout as plain text whatever this says.
#[derive(Debug, Clone, clap::Args)]
pub struct Logging {
    /// Diagnostics as text, or one JSON object a line for a log collector. RUST_LOG picks
    /// which (default: warn, info for the service; e.g. RUST_LOG=debug).
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The two formats of [`Logging`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Logging {
    /// Installs the subscriber for this process, `RUST_LOG` else `default` (`warn` for the
    /// command-line tools, `info` for the service): binaries call it first thing. The
    /// library itself never does. A `RUST_LOG` that does not parse is refused by name, and
    /// one that looks like a misspelled level is warned about: a typo must not silently turn
    /// the diagnostics off.
    pub fn init(&self, default: &str) -> crate::Result<()> {
        use tracing_subscriber::EnvFilter;
        // Read here rather than by EnvFilter::try_from_default_env: the typo warning and the
        // refusal quote the raw value, which EnvFilter does not hand back.
        let filter = match std::env::var("RUST_LOG") {
            Ok(raw) if !raw.trim().is_empty() => {
                let bad = |why: String| {
                    let shown: String = raw.chars().take(80).collect();
                    crate::Error::Config(format!(
                        "RUST_LOG {why}, got {shown:?}; e.g. RUST_LOG=info or \
                         RUST_LOG=app::instrument=debug"
                    ))
                };
                // A warning, not a refusal: a crate may be named like a level (`warp`).
                if let Some(why) = misspelled_level(&raw) {
                    crate::errln!("warning: RUST_LOG {why}");
                }
                EnvFilter::builder()
                    .parse(raw.trim())
                    .map_err(|e| bad(format!("does not parse ({e})")))?
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(crate::Error::Config("RUST_LOG is not valid UTF-8".into()));
            }
            _ => EnvFilter::new(default),
        };
        use std::io::IsTerminal;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            // On a failed write it would report with eprintln!, which panics when stderr is
            // a closed pipe (`init_db 2>&1 | head -2`): a lost diagnostic must not stop work.
            .log_internal_errors(false);
        // A second call (tests run binaries' code in one process) keeps the first.
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        // diesel-async sets a new session up (time zone, encoding) before `db::connect` can
        // give it the bridge: as the default instrumentation, the bridge sees those too, at
        // debug only. Set-up is never "slow": a connection that asked for no slow-query
        // warnings (a restore's CREATE DATABASE) gets none from its set-up either.
        let _ = diesel::connection::set_default_instrumentation(|| {
            let tracing = crate::db::instrument::QueryTracing::new(std::time::Duration::MAX);
            Some(Box::new(tracing))
        });
        Ok(())
    }
}

/// Ctrl-C, SIGTERM and SIGHUP (a closed terminal), listened for from [`Stop::listen`] on:
/// long commands race their work against [`Stop::wait`] to clean up before they exit.
/// Once listening, these signals no longer end the process by themselves, also after the
/// `Stop` is dropped: keep racing [`Stop::wait`] for as long as the command runs.
pub struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    /// `None` when SIGHUP was ignored (`nohup`): it stays ignored.
    hangup: Option<tokio::signal::unix::Signal>,
    fired: Option<u8>,
}

impl Stop {
    /// Starts listening: a signal that arrives before [`Stop::wait`] is kept, not lost.
    pub fn listen() -> crate::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| {
            signal(kind)
                .map_err(|e| crate::Error::Config(format!("cannot listen for signals: {e}")))
        };
        Ok(Stop {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: match hangup_ignored() {
                true => None,
                false => Some(listen(SignalKind::hangup())?),
            },
            fired: None,
        })
    }

    /// Resolves when Ctrl-C (SIGINT), SIGTERM or SIGHUP arrives, and remembers which.
    pub async fn wait(&mut self) {
        let number = tokio::select! {
            _ = self.interrupt.recv() => 2,
            _ = self.terminate.recv() => 15,
            _ = async {
                match self.hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => 1,
        };
        self.fired = Some(number);
    }

    /// After a signal: the exit status shells give a process it stopped (128 + its number).
    pub fn exit_code(&self) -> Option<ExitCode> {
        self.fired.map(|n| ExitCode::from(128 + n))
    }

    /// After work that raced [`Stop::wait`]: when it failed because a signal arrived, prints
    /// `message(error)` on stderr and returns the signal's exit status; `None` otherwise, the
    /// result left for the caller.
    pub fn interrupted<T, E>(
        &self,
        result: &Result<T, E>,
        message: impl FnOnce(&E) -> String,
    ) -> Option<ExitCode> {
        let (Some(code), Err(e)) = (self.exit_code(), result) else {
            return None;
        };
        errln!("{}", message(e));
        Some(code)
    }
}

/// Whether SIGHUP is set to be ignored (`nohup migrate …`): listening would undo that.
fn hangup_ignored() -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The migration runner's timeouts as flags (and `MIGRATE_*` variables): the same four in
/// `migrate`, `init_db` and the service's `--migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrationTimeouts {
    /// lock_timeout for each migration run in a transaction; a migration may SET LOCAL its own.
    #[arg(long, global = true, env = "MIGRATE_LOCK_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub lock_timeout: Duration,
    /// statement_timeout for each migration run in a transaction (0 for none).
    #[arg(long, global = true, env = "MIGRATE_STATEMENT_TIMEOUT", default_value = "5min", value_parser = duration)]
    pub statement_timeout: Duration,
    /// lock_timeout for a migration outside a transaction (CREATE INDEX CONCURRENTLY; 0 for
    /// none): such an index build waits for every older transaction, and queues no writers.
    #[arg(long, global = true, env = "MIGRATE_CONCURRENT_LOCK_TIMEOUT", default_value = "0", value_parser = duration)]
    pub concurrent_lock_timeout: Duration,
    /// statement_timeout for a migration outside a transaction (0 for none).
    #[arg(long, global = true, env = "MIGRATE_CONCURRENT_STATEMENT_TIMEOUT", default_value = "0", value_parser = duration)]
    pub concurrent_statement_timeout: Duration,
}

impl MigrationTimeouts {
    /// Sets these timeouts on a runner's configuration.
    pub fn apply(&self, config: &mut crate::migrations::Config) {
        config.lock_timeout = self.lock_timeout;
        config.statement_timeout = self.statement_timeout;
        config.concurrent_lock_timeout = self.concurrent_lock_timeout;
        config.concurrent_statement_timeout = self.concurrent_statement_timeout;
    }
}

/// The longest duration [`duration`] accepts: PostgreSQL's timeouts are an `int` of
/// milliseconds, so this is the most `SET lock_timeout` takes (about 24.8 days).
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// clap's parser for durations: `500ms`, `5s`, `2min`, `1h`, `1d` (PostgreSQL's units; a bare
/// number is seconds), up to [`MAX_DURATION`]. Too large a value is refused, never wrapped.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let too_long = || {
        format!(
            "{text:?} is too long: at most {}ms (24 days), PostgreSQL's limit for a timeout",
            MAX_DURATION.as_millis()
        )
    };
    let number: u64 = match number.parse() {
        Ok(n) => n,
        Err(_) if !number.is_empty() => return Err(too_long()),
        Err(_) => return Err(format!("{text:?} is not a duration like 5s")),
    };
    let millis: u64 = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "min" | "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (ms, s, min, h, d)"
            ));
        }
    };
    match number.checked_mul(millis).map(Duration::from_millis) {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(too_long()),
    }
}

/// A bare word in a RUST_LOG directive is a target name, so `RUST_LOG=wran` parses and
/// turns every warning off. A bare word that is not a level but sits within two letters of
/// one, or is not plain ASCII, is most likely a typo: what to say about it.
fn misspelled_level(raw: &str) -> Option<String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for word in raw.split(',').map(str::trim).filter(|d| !d.contains('=')) {
        let lower = word.to_ascii_lowercase();
        if word.is_empty() || LEVELS.contains(&lower.as_str()) {
            continue;
        }
        if !word.is_ascii() {
            return Some(format!(
                "names {word:?}, which is neither a level nor a module path"
            ));
        }
        if let Some(level) = LEVELS.iter().find(|l| distance(&lower, l) <= 2) {
            return Some(format!(
                "reads {word:?} as a module name, not a level: did you mean {level:?}?"
            ));
        }
    }
    None
}

/// Levenshtein distance between two short ASCII words.
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{MAX_DURATION, duration, misspelled_level};
    use std::time::Duration;

    #[test]
    fn durations_parse_and_overflow_is_refused() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("24d"), Ok(Duration::from_secs(24 * 86_400)));
        assert_eq!(duration("2147483647ms"), Ok(MAX_DURATION));
        for absurd in [
            "6000000000000h",
            "2147483648ms",
            "99999999999999999999999s",
            "25d",
        ] {
            let err = duration(absurd).unwrap_err();
            assert!(err.contains("too long"), "{absurd}: {err}");
        }
        for bad in ["", "s", "5 parsecs", "-5s", "1.5s"] {
            assert!(duration(bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn every_unit_counts_and_a_bare_number_is_seconds() {
        let ms = |text: &str| duration(text).map(|d| d.as_millis());
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("7ms"), Ok(7));
        assert_eq!(ms("7s"), Ok(7_000));
        assert_eq!(ms("7"), Ok(7_000));
        assert_eq!(ms("7m"), Ok(420_000));
        assert_eq!(ms("7min"), Ok(420_000));
        assert_eq!(ms("7h"), Ok(25_200_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        // Spaces around the value and before the unit, as PostgreSQL allows.
        assert_eq!(ms(" 5 s "), Ok(5_000));
    }

    #[test]
    fn the_bound_is_postgresqls_and_holds_in_every_unit() {
        assert_eq!(duration("2147483s"), Ok(Duration::from_secs(2_147_483)));
        assert_eq!(duration("35791min"), Ok(Duration::from_secs(35_791 * 60)));
        for past in ["2147484s", "35792min", "597h", "25d"] {
            assert!(duration(past).is_err(), "{past} passed");
        }
        // The product overflows u64: refused as too long, not wrapped to something small.
        let err = duration("18446744073709551615d").unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn junk_is_refused_with_what_was_wrong() {
        let unit = duration("5sec").unwrap_err();
        assert!(unit.contains("unknown unit \"sec\""), "{unit}");
        assert!(unit.contains("ms, s, min, h, d"), "{unit}");
        for junk in ["sec", "s5", "5s5", "0x10", "5 5s", "\u{661}s", "five"] {
            assert!(duration(junk).is_err(), "{junk} passed");
        }
        let empty = duration("   ").unwrap_err();
        assert!(empty.contains("is not a duration like 5s"), "{empty}");
    }

    #[test]
    fn level_typos_are_caught_and_real_filters_pass() {
        for typo in [
            "wran",
            "inof",
            "debgu",
            "Warn,errr",
            "ＩＮＦＯ",
            "app,trcae",
        ] {
            assert!(misspelled_level(typo).is_some(), "{typo} passed");
        }
        for fine in [
            "warn",
            "INFO",
            "app=debug,warn",
            "app::instrument=debug",
            "tokio_postgres",
            "diesel_async,app=trace",
        ] {
            assert_eq!(misspelled_level(fine), None, "{fine} refused");
        }
    }
}
