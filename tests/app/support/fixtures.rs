//! Rows, folders and programs tests start from: a user, a task, a temp folder, a copy of
//! the migrations, the `migrate` binary, and reading what a command printed.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use app::db::DatabaseUrl;
use diesel_async::AsyncPgConnection;

use super::database::unique_name;

/// Inserts a user with this email (which must be valid).
pub async fn user(conn: &mut AsyncPgConnection, email: &str) -> app::models::User {
    use app::models::{Email, NewUser, User};
    let email = Email::parse(email).expect("valid test email");
    User::create(
        conn,
        &NewUser {
            email: &email,
            display_name: "Test User",
        },
    )
    .await
    .expect("insert test user")
}

/// Inserts a task with this title for `owner`.
pub async fn task(
    conn: &mut AsyncPgConnection,
    owner: &app::models::User,
    title: &str,
) -> app::models::Task {
    use app::models::{NewTask, Task, Title};
    let title = Title::parse(title).expect("valid test title");
    Task::create(conn, &NewTask::new(owner.id, &title))
        .await
        .expect("insert test task")
}

/// A folder of its own under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates an empty folder.
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(label));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

/// A copy of the project's migrations in a temp folder, for tests that add their own.
/// Only the migration folders (holding an up.sql): a stray file or folder beside them
/// (diesel_cli's `.diesel_lock`, an editor's backup, an emptied folder) is none of the
/// tests' business.
pub fn copy_of_migrations(label: &str) -> TempDir {
    let dir = TempDir::new(label);
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let from = entry.unwrap().path();
        let name = from.file_name().unwrap();
        let hidden = name.to_string_lossy().starts_with('.');
        if hidden || !from.join("up.sql").is_file() {
            continue;
        }
        let to = dir.0.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
                std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `target/debug/bench`: the tests that run it read it, `scripts/bench.sh` (whose `cargo run`
/// builds without dev-dependencies, so with other features, and relinks it) writes it.
/// Once each file was a program of its own and cargo ran them one after another.
static BENCH_BINARY: RwLock<()> = RwLock::new(());

/// Held while a test runs `target/debug/bench`, so the script never relinks it meanwhile.
/// Poison-tolerant: a failed test leaves the binary as it was.
pub fn running_bench() -> RwLockReadGuard<'static, ()> {
    BENCH_BINARY.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while `scripts/bench.sh` may relink `target/debug/bench`.
pub fn relinking_bench() -> RwLockWriteGuard<'static, ()> {
    BENCH_BINARY.write().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the `migrate` binary from the project folder, without `DATABASE_URL`.
pub fn migrate(url: Option<&DatabaseUrl>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(url) = url {
        cmd.args(["--url", url.expose()]);
    }
    cmd.output().expect("run migrate")
}

/// A command's standard output, lossily decoded.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, lossily decoded.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard output of a command that must have succeeded.
#[track_caller]
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Gives `command`'s child the signal dispositions a terminal gives: a suite started in
/// the background (`cmd &` in a script ignores SIGINT) or under `nohup` (SIGHUP) would
/// otherwise pass its ignored signals on, and a test that sends one would wait for ever.
pub fn default_signals(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

/// Asserts `err` is `Error::Invalid` naming the constraint `expected`.
pub fn assert_invalid(err: &app::Error, expected: &str) {
    assert!(
        matches!(err, app::Error::Invalid { constraint, .. } if constraint == expected),
        "expected Invalid({expected}), got {err:?}"
    );
}
