//! The application binary (`src/main.rs`): its commands, the start-up schema check, and a
//! clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use crate::support::{self, TestDb, migrate, ok, stderr, stdout, versions};
use app::db::DatabaseUrl;

/// The application binary, named after the package (`my-service` in a generated project).
const APP: &str = env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME")));

fn app(url: &DatabaseUrl, args: &[&str]) -> Output {
    Command::new(APP)
        .args(args)
        .args(["--url", url.expose()])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the application")
}

#[test]
fn help_lists_the_commands() {
    let help = ok(Command::new(APP).arg("--help").output().unwrap());
    for command in [
        "add-user",
        "add-task",
        "tasks",
        "close",
        "serve",
        "--migrate",
    ] {
        assert!(help.contains(command), "{command} not in\n{help}");
    }
}

#[tokio::test]
async fn a_database_behind_is_refused_unless_asked_to_migrate() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let head = versions(&mut conn).await;
    let out = migrate(Some(&db.url), &["downgrade"]);
    let reverted = stdout(&out)
        .trim()
        .trim_start_matches("reverted ")
        .to_owned();
    assert!(
        out.status.success() && !reverted.is_empty(),
        "{}",
        stderr(&out)
    );

    let refused = app(&db.url, &["tasks", "nobody@example.com"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("1 pending") && err.contains(&reverted),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    ok(app(
        &db.url,
        &["--migrate", "add-user", "late@example.com", "Late"],
    ));
    assert_eq!(versions(&mut conn).await, head);
}

#[tokio::test]
async fn users_and_tasks_through_the_commands() {
    let db = TestDb::new().await;
    let added = ok(app(&db.url, &["add-user", "Ann@Example.com", "Ann"]));
    assert!(added.contains("<Ann@Example.com>"), "{added}");
    let task = ok(app(
        &db.url,
        &[
            "add-task",
            "ann@example.com",
            "Write docs",
            "--priority",
            "1",
        ],
    ));
    let id = task
        .split(':')
        .next()
        .unwrap()
        .trim_start_matches("task ")
        .to_owned();
    let listed = ok(app(&db.url, &["tasks", "ann@example.com"]));
    assert!(
        listed.contains("Write docs") && listed.contains("p1"),
        "{listed}"
    );
    ok(app(&db.url, &["close", &id]));
    assert!(!ok(app(&db.url, &["tasks", "ann@example.com"])).contains("Write docs"));
    // Bad input is one clear line.
    let out = app(
        &db.url,
        &["add-task", "ann@example.com", "x", "--priority", "9"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("priority"), "{}", stderr(&out));
}

/// A child process killed when dropped: a failing test leaves no server loop behind.
struct Serving(std::process::Child);

impl std::ops::Deref for Serving {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Serving {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on a free port with this RUST_LOG and these flags, once it says where it
/// listens: that address and its stdout's remaining lines.
fn serve(
    url: &DatabaseUrl,
    log: &str,
    flags: &[&str],
) -> (
    Serving,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut command = Command::new(APP);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--url", url.expose()])
        .args(flags)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = support::default_signals(&mut command).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_owned();
    (Serving(child), addr, lines)
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    let (mut child, _, lines) = serve(&db.url, "warn", &[]);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(status.success(), "{status:?} {rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("shutting down")),
        "{rest:?}"
    );
}

/// Ctrl-C stops `serve` within its grace period even while a request waits on a frozen
/// server (SIGSTOP): the request is abandoned, not waited for, and the signal not lost.
#[tokio::test]
async fn serve_stops_on_ctrl_c_while_a_request_waits_on_a_frozen_server() {
    if !support::pg_binaries_present() {
        return;
    }
    let cluster = support::Cluster::new("serve-frozen");
    let url = app::db::DatabaseUrl::parse(&cluster.start(&[])).unwrap();
    app::migrations::run_pending(&url).await.unwrap();
    let (mut child, addr, lines) = serve(&url, "warn", &["--shutdown-timeout", "1s"]);
    cluster.freeze();
    // A request that needs the database: /readyz, sent by hand and never read.
    let mut request = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut request, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    cluster.thaw();
    let Some(status) = status else {
        let _ = child.kill();
        panic!("serve ignored Ctrl-C for 20 s while the server was frozen");
    };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(status.success(), "{status:?} {rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("shutting down")),
        "{rest:?}"
    );
}
