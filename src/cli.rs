//! What the binaries share: output that survives a closed pipe, and a clean exit.
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
