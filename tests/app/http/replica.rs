//! Read-your-writes over HTTP: a write's answer carries its commit's WAL position, and a
//! read that sends it back sees the write even on a replica whose replay is paused.

use std::time::Duration;

use app::db::DatabaseUrl;
use app::db::replicas::WalPosition;
use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

use super::{Server, answer, get, post};
use crate::support::{Cluster, TestDb, flag, pg_binaries_present};

const HEADER: &str = "x-wal-position";

/// `method path` with an optional JSON body and `x-wal-position`: the status, the body, and
/// the position the answer carries.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    seen: Option<&str>,
) -> (u16, Value, Option<WalPosition>) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(seen) = seen {
        request = request.header(HEADER, seen);
    }
    let response = request.send().await.unwrap();
    let position = (response.headers().get(HEADER))
        .map(|v| v.to_str().unwrap().parse::<WalPosition>().unwrap());
    let (status, body) = answer(response).await;
    (status, body, position)
}

/// Waits until the replica has replayed `position`.
async fn replayed(replica: &DatabaseUrl, position: WalPosition) {
    let mut conn = app::db::connect(replica).await.unwrap();
    let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn AS flag");
    for _ in 0..1500 {
        if flag(&mut conn, &sql).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replica did not replay {position} in 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_sends_the_write_position_back_sees_the_write_on_a_paused_replica() {
    if !pg_binaries_present() {
        return;
    }
    let primary = Cluster::new("http-ryw-p");
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    let (_replica, replica_url) = primary.replica("http-ryw-r");
    // A replica counts as fresh however long its replay is paused (the lag bound is an
    // hour), so a read without the position goes to it; one with the position waits 300 ms
    // for it to replay, then reads on the primary.
    let server = Server::start_with(
        &primary_url,
        &["--migrate"],
        &[
            ("DATABASE_REPLICA_URLS", replica_url.as_str()),
            ("DATABASE_REPLICA_MAX_LAG_MS", "3600000"),
            ("DATABASE_REPLICA_WAIT_MS", "300"),
            ("DATABASE_REPLICA_TIMEOUT_MS", "20000"),
            ("RUST_LOG", "warn,app::http=debug"),
        ],
    );
    let replica_url = DatabaseUrl::parse(&replica_url).unwrap();

    let body = json!({"email": "ann@example.com", "display_name": "Ann"});
    let (status, user, at) = call(&server, reqwest::Method::POST, "/users", Some(body), None).await;
    assert_eq!(status, 201, "{user}");
    let at = at.expect("a write's answer carries its WAL position");
    let owner = user["id"].as_i64().unwrap();
    replayed(&replica_url, at).await;
    // Caught up, the replica takes plain reads (once the router has seen the primary at a
    // position the replica has replayed: until then it cannot tell how far behind it is).
    let user_path = format!("/users/{owner}");
    for _ in 0..500 {
        assert_eq!(get(&server, &user_path).await.0, 200);
        if replica_reads(&server) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(replica_reads(&server) > 0, "{:?}", server.log());

    let mut admin = app::db::connect(&replica_url).await.unwrap();
    admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let body = json!({"owner_id": owner, "title": "after the pause"});
    let (status, task, written) =
        call(&server, reqwest::Method::POST, "/tasks", Some(body), None).await;
    assert_eq!(status, 201, "{task}");
    let written = written.expect("a write's answer carries its WAL position");
    assert!(written > at, "{written} after {at}");
    let path = format!("/tasks/{}", task["id"]);
    let seen = written.to_string();

    // With the position: the write, every time (the primary, the replica being paused).
    for _ in 0..5 {
        let (status, body, _) = call(&server, reqwest::Method::GET, &path, None, Some(&seen)).await;
        assert_eq!((status, &body["title"]), (200, &json!("after the pause")));
        let page = format!("/users/{owner}/tasks");
        let (status, body, _) = call(&server, reqwest::Method::GET, &page, None, Some(&seen)).await;
        assert_eq!((status, body["items"].as_array().unwrap().len()), (200, 1));
    }
    // Sent twice (a proxy that appends one), the latest write counts, whatever the order.
    let twice = reqwest::Client::new()
        .get(server.url(&path))
        .header(HEADER, "0/0")
        .header(HEADER, &seen)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 200);
    // Without it: the paused replica, where the task does not exist yet.
    let (status, body) = get(&server, &path).await;
    assert_eq!(
        status,
        404,
        "a plain read went to the replica: {body} {:?}",
        server.log()
    );

    // A PATCH answer carries a later position; once replay resumes, the replica serves a
    // read that sends it (the log says where each read ran).
    let change = json!({"title": "renamed"});
    let (status, _, changed) =
        call(&server, reqwest::Method::PATCH, &path, Some(change), None).await;
    let changed = changed.expect("a PATCH answer carries its WAL position");
    assert_eq!(status, 200);
    assert!(changed > written);
    admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    replayed(&replica_url, changed).await;
    let response = reqwest::Client::new()
        .get(server.url(&path))
        .header(HEADER, changed.to_string())
        .header("x-request-id", "after-resume")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!((status, &body["title"]), (200, &json!("renamed")));
    // The request's own log line (stderr is read on a thread: it may trail the answer).
    let on_replica =
        |l: &String| l.contains("request_id=after-resume") && l.contains("read on a replica");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().iter().any(on_replica) {
        assert!(std::time::Instant::now() < deadline, "{:?}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A failed write carries no position; a position that is not one is a 400.
    let body = json!({"email": "ann@example.com", "display_name": "Ann"});
    let (status, _, none) = call(&server, reqwest::Method::POST, "/users", Some(body), None).await;
    assert_eq!((status, none), (409, None));
    for bad in ["0/0/0", "xyz", "FFFFFFFFF/0", ""] {
        let (status, body, _) = call(&server, reqwest::Method::GET, &path, None, Some(bad)).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(HEADER), "{body}");
    }
}

/// How many reads the server logged as run on a replica.
fn replica_reads(server: &Server) -> usize {
    let log = server.log();
    log.iter()
        .filter(|l| l.contains("read on a replica"))
        .count()
}

#[tokio::test]
async fn without_replicas_writes_carry_no_position_and_reads_accept_one() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let body = json!({"email": "ben@example.com", "display_name": "Ben"});
    let (status, user, at) = call(&server, reqwest::Method::POST, "/users", Some(body), None).await;
    assert_eq!((status, at), (201, None), "{user}");
    let path = format!("/users/{}", user["id"]);
    let (status, _, _) = call(
        &server,
        reqwest::Method::GET,
        &path,
        None,
        Some("0/16B3748"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&server, reqwest::Method::GET, &path, None, Some("16/")).await;
    assert_eq!(status, 400);
    assert_eq!(post(&server, "/users", json!({})).await.0, 422);
}

/// A read that waits for a replica must leave the primary time to serve it: a wait or a
/// replica timeout as long as the request timeout is refused at start, naming both.
#[tokio::test]
async fn a_replica_wait_past_the_request_timeout_is_refused_at_start() {
    let db = TestDb::new().await;
    let out = std::process::Command::new(super::APP)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--request-timeout",
            "1s",
        ])
        .args(["--url", db.url.expose()])
        .env_remove("DATABASE_URL")
        .env(
            "DATABASE_REPLICA_URLS",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        .env("DATABASE_REPLICA_WAIT_MS", "5000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("DATABASE_REPLICA_WAIT_MS"), "{stderr}");
    assert!(stderr.contains("--request-timeout (1000 ms)"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}
