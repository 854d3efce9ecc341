//! The HTTP API over the real binary: `serve --listen 127.0.0.1:0` against a database of
//! the test's own, called with a real client. `api` covers every route and status,
//! `lifecycle` readiness and a graceful stop, `cancel` what a request given up leaves
//! behind, `replica` read-your-writes through a streaming replica, `teams` teams, members
//! and tags.

mod api;
mod cancel;
mod input;
mod lifecycle;
mod replica;
mod teams;

use std::io::{BufRead, BufReader, Lines};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::db::DatabaseUrl;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde_json::Value;

use crate::support::{default_signals, flag};

/// The application binary, named after the package.
const APP: &str = env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME")));

/// A running `serve`, killed when dropped so a failing test leaves no server behind.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub base: String,
    lines: Lines<BufReader<ChildStdout>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` on a free port with these extra flags, once it says where it listens.
    pub fn start(url: &DatabaseUrl, flags: &[&str]) -> Server {
        Server::start_with(url, flags, &[])
    }

    /// [`Server::start`] with these environment variables (`RUST_LOG` is `warn` unless set:
    /// what [`Server::log`] then holds).
    pub fn start_with(url: &DatabaseUrl, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(APP);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--url", url.expose()])
            .args(flags)
            .env_remove("DATABASE_URL")
            .env_remove("APP_LISTEN")
            .env_remove("LOG_FORMAT")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = default_signals(&mut command).spawn().expect("start serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(addr) = first.strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve printed {first:?}; stderr: {:?}", log.lock().unwrap());
        };
        let base = format!("http://{addr}");
        Server {
            child,
            base,
            lines,
            log,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM, as an orchestrator does.
    pub fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a child's pid we still own (not yet waited for).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `limit` for the process to exit: its status and the rest of its stdout.
    pub fn exit_within(mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + limit;
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "serve still running after {limit:?}; stderr: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        let rest = (&mut self.lines).map_while(Result::ok).collect();
        (status, rest)
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A status and its JSON body (`Value::Null` when empty).
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = match text.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")),
    };
    (status, body)
}

/// `GET path`: its status and body.
pub async fn get(server: &Server, path: &str) -> (u16, Value) {
    answer(reqwest::get(server.url(path)).await.unwrap()).await
}

/// `method path` with this JSON body: its status and body.
pub async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = client.request(method, server.url(path)).json(&body);
    answer(request.send().await.unwrap()).await
}

/// `POST path` with this JSON body.
pub async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, body).await
}

/// Sends `PATCH path` with this body on a task of its own, for a request that will wait
/// (on a lock): its answer, or the error of one the server never answered.
pub fn spawn_patch(
    server: &Server,
    path: &str,
    body: Value,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = server.url(path);
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        client
            .request(reqwest::Method::PATCH, url)
            .json(&body)
            .send()
            .await
    })
}

/// Waits up to 5 s until the server refuses new connections, as it does once it has taken
/// a stop signal.
pub async fn until_refusing(server: &Server) {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fresh.get(server.url("/healthz")).send().await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts an error answer: this status, and the constraint named (or none).
#[track_caller]
pub fn refused(answer: (u16, Value), status: u16, constraint: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["constraint"].as_str(), constraint, "{body}");
}

/// A user made through `POST /users`: its id.
pub async fn new_user(server: &Server, email: &str) -> i64 {
    let body = serde_json::json!({"email": email, "display_name": "Ann"});
    let (status, user) = post(server, "/users", body).await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_i64().unwrap()
}

/// Waits up to 10 s until a session of the test's database other than `conn`'s waits for a
/// lock: a request of the server has reached a row `conn` holds.
pub async fn until_blocked(conn: &mut AsyncPgConnection) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !someone_waits(conn).await {
        assert!(
            Instant::now() < deadline,
            "the request never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a session of this database other than ours waits for a lock. Read afresh:
/// inside a transaction `pg_stat_activity` keeps showing its first snapshot.
async fn someone_waits(conn: &mut AsyncPgConnection) -> bool {
    let fresh = "SELECT pg_stat_clear_snapshot()";
    conn.batch_execute(fresh).await.unwrap();
    flag(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND wait_event_type = 'Lock') AS flag",
    )
    .await
}

/// Every Rust block of docs/http.md is an excerpt of `src/` as it is (its lines in a row,
/// indentation aside): the page teaches the code, not a memory of it.
#[test]
fn the_excerpts_in_docs_http_are_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/http.md")).unwrap();
    let sources: Vec<Vec<String>> = rust_files(&root.join("src"))
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .map(|text| lines_of(&text))
        .collect();
    let mut blocks = 0;
    for block in doc.split("```rust\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let want = lines_of(block);
        let found = (sources.iter()).any(|source| source.windows(want.len()).any(|w| w == want));
        assert!(found, "docs/http.md has an excerpt not in src/:\n{block}");
        blocks += 1;
    }
    assert!(blocks >= 4, "{blocks} excerpts");
}

fn lines_of(text: &str) -> Vec<String> {
    (text.lines().map(str::trim))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
