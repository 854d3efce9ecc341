//! What the binaries share: output that survives a closed pipe, where diagnostics go, and a
//! clean exit.
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
        Ok(())
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
    use super::misspelled_level;

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
