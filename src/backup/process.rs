//! pg_dump and pg_restore as child processes: stopped when the caller cancels, killed
//! with a `migrate` that is killed outright, their failures told in one line.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use tokio::process::Command;

use super::{failed, interrupted};
use crate::Result;

/// Runs `command` (`what`) to its end, its stderr collected, and returns its stdout when
/// that is piped; if `cancel` completes first, kills it and waits for it to be gone.
/// `hint` follows a crash or failure without a word. The child dies with us: a `migrate`
/// killed outright (SIGKILL) takes it along instead of leaving it at work.
pub(super) async fn run(
    mut command: Command,
    what: &str,
    hint: &str,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Vec<u8>> {
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, kill).
    // PR_SET_PDEATHSIG fires when the spawning thread ends: a tokio worker, which lives
    // as long as the runtime, and we wait for the child before that ends.
    #[cfg(target_os = "linux")]
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody will stop us.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    let mut child = command
        // Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it
        // and clean up, rather than racing its death against our handler.
        .process_group(0)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot run {what} ({e}): install PostgreSQL's client tools"
            ))
        })?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let finished = tokio::select! {
        finished = async {
            // Both at once: a child blocked on a full pipe would never end.
            let (out, err) = tokio::join!(read_all(stdout.as_mut()), read_all(stderr.as_mut()));
            (child.wait().await, out, err)
        } => Some(finished),
        () = cancel => None,
    };
    let Some((status, stdout, stderr)) = finished else {
        let _ = child.kill().await;
        return Err(interrupted());
    };
    let status = status.map_err(|e| failed(format!("{what}: {e}")))?;
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if status.success() {
        return Ok(stdout);
    }
    let said = match stderr.is_empty() {
        true => hint.to_owned(),
        false => format!(": {stderr}"),
    };
    Err(failed(match (status.signal(), status.code()) {
        (Some(signal), _) => format!(
            "{what} was killed by signal {signal} ({}){said}",
            signal_name(signal)
        ),
        (_, Some(code)) if stderr.is_empty() => {
            format!("{what} exited with status {code} and no message{said}")
        }
        _ => format!("{what} failed{said}"),
    }))
}

/// Everything `pipe` gives until it closes (nothing for no pipe).
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut text = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
    }
    text
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Runs `sh -c script`, nothing cancelling it.
    async fn sh(script: &str) -> Result<Vec<u8>> {
        let mut command = Command::new("sh");
        command.args(["-c", script]).stdout(Stdio::piped());
        run(
            command,
            "sh",
            "; the hint",
            std::pin::pin!(std::future::pending()),
        )
        .await
    }

    fn said(result: Result<Vec<u8>>) -> String {
        match result {
            Err(Error::Backup(message)) => message,
            other => panic!("expected a backup error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stdout_comes_back_when_piped() {
        assert_eq!(sh("echo hi").await.unwrap(), b"hi\n");
    }

    #[tokio::test]
    async fn a_failure_says_what_the_tool_wrote_else_its_status_and_the_hint() {
        assert_eq!(said(sh("echo oops >&2; exit 1").await), "sh failed: oops");
        assert_eq!(
            said(sh("exit 3").await),
            "sh exited with status 3 and no message; the hint"
        );
    }

    #[tokio::test]
    async fn a_killed_child_is_told_by_its_signal() {
        assert_eq!(
            said(sh("kill -TERM $$").await),
            "sh was killed by signal 15 (SIGTERM); the hint"
        );
    }

    #[tokio::test]
    async fn a_missing_tool_says_what_to_install() {
        let command = Command::new("no-such-tool-for-backup-tests");
        let result = run(
            command,
            "pg_dump",
            "",
            std::pin::pin!(std::future::pending()),
        )
        .await;
        let message = said(result);
        assert!(message.starts_with("cannot run pg_dump ("), "{message}");
        assert!(
            message.ends_with("install PostgreSQL's client tools"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_child_is_stopped_and_reported_as_interrupted() {
        let started = std::time::Instant::now();
        let mut command = Command::new("sleep");
        command.arg("30");
        let result = run(command, "sleep", "", std::pin::pin!(async {})).await;
        assert_eq!(said(result), "interrupted");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
