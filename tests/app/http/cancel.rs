//! A request given up (past the request timeout, or the shutdown grace period) has its
//! statement cancelled on the server: a write waiting on a lock never commits later.

use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use reqwest::Method;
use serde_json::json;

use super::{Server, post};
use crate::support::{TestDb, flag};

/// A task whose row our own session holds (`BEGIN ... FOR UPDATE`): its id and our session.
async fn locked_task(server: &Server, db: &TestDb) -> (i64, AsyncPgConnection) {
    let body = json!({"email": "ann@example.com", "display_name": "Ann"});
    let owner = post(server, "/users", body).await.1["id"].as_i64().unwrap();
    let task = json!({"owner_id": owner, "title": "Stuck"});
    let id = post(server, "/tasks", task).await.1["id"].as_i64().unwrap();
    let mut conn = db.conn().await;
    let lock = format!("BEGIN; SELECT 1 FROM tasks WHERE id = {id} FOR UPDATE");
    conn.batch_execute(&lock).await.unwrap();
    (id, conn)
}

/// Waits up to 5 s for `sql`'s flag to be true. `pg_stat_activity` is read afresh each
/// time: inside our transaction it would otherwise show its first snapshot.
async fn until(conn: &mut AsyncPgConnection, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = "SELECT pg_stat_clear_snapshot()";
    while !(conn.batch_execute(fresh).await.is_ok() && flag(conn, sql).await) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const NO_ONE_WAITS: &str = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE \
    datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock') \
    AS flag";

/// The task's title, read on a session of the test's own.
async fn title(db: &TestDb, id: i64) -> String {
    let conn = db.conn().await;
    let task = app::models::Task::find(&conn, id).await.unwrap();
    task.title.as_str().to_owned()
}

#[tokio::test]
async fn a_write_past_the_timeout_is_503_and_cancelled() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &["--request-timeout", "300ms"]);
    let (id, mut conn) = locked_task(&server, &db).await;
    let change = json!({"title": "Moved"});
    let started = Instant::now();
    let (status, body) = super::send(&server, Method::PATCH, &format!("/tasks/{id}"), change).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, json!({"error": "service unavailable"}));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The UPDATE no longer waits behind our lock: it was cancelled, not left to commit.
    until(&mut conn, NO_ONE_WAITS, "the abandoned UPDATE still waits").await;
    conn.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(title(&db, id).await, "Stuck");
}

#[tokio::test]
async fn past_the_grace_period_a_write_is_cancelled_before_exit() {
    let db = TestDb::new().await;
    let flags = ["--shutdown-timeout", "1s", "--request-timeout", "60s"];
    let server = Server::start(&db.url, &flags);
    let (id, mut conn) = locked_task(&server, &db).await;
    let patch = super::spawn_patch(&server, &format!("/tasks/{id}"), json!({"title": "Moved"}));
    super::until_blocked(&mut conn).await;
    server.terminate();
    let (exit, out) = server.exit_within(Duration::from_secs(15));
    assert!(exit.success(), "{exit:?} {out:?}");
    let _ = patch.await;
    let alone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE \
                 datname = current_database() AND pid <> pg_backend_pid()) AS flag";
    until(&mut conn, alone, "a session of the server is left").await;
    conn.batch_execute("COMMIT").await.unwrap();
    assert_eq!(title(&db, id).await, "Stuck");
}

/// A second SIGTERM (or Ctrl-C) cuts the grace period short: the write waiting on a lock
/// is cancelled and the process exits at once, not a minute later.
#[tokio::test]
async fn a_second_signal_stops_at_once_and_cancels_what_runs() {
    let db = TestDb::new().await;
    let flags = ["--shutdown-timeout", "60s", "--request-timeout", "60s"];
    let server = Server::start(&db.url, &flags);
    let (id, mut conn) = locked_task(&server, &db).await;
    let patch = super::spawn_patch(&server, &format!("/tasks/{id}"), json!({"title": "Moved"}));
    super::until_blocked(&mut conn).await;
    server.terminate();
    // The first signal is seen (the server stops accepting) before the second is sent.
    super::until_refusing(&server).await;
    let started = Instant::now();
    server.terminate();
    let (exit, out) = server.exit_within(Duration::from_secs(15));
    assert!(exit.success(), "{exit:?} {out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out.iter().any(|l| l.starts_with("shutting down now")),
        "{out:?}"
    );
    let _ = patch.await;
    until(&mut conn, NO_ONE_WAITS, "the abandoned UPDATE still waits").await;
    conn.batch_execute("COMMIT").await.unwrap();
    assert_eq!(title(&db, id).await, "Stuck");
}

#[tokio::test]
async fn a_session_terminated_mid_request_is_503() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let (id, mut conn) = locked_task(&server, &db).await;
    let url = server.url(&format!("/tasks/{id}"));
    let patch = tokio::spawn(async move {
        let change = json!({"title": "Moved"});
        let client = reqwest::Client::new();
        let sent = client.request(Method::PATCH, url).json(&change).send();
        super::answer(sent.await.unwrap()).await
    });
    super::until_blocked(&mut conn).await;
    let kill = "SELECT bool_and(pg_terminate_backend(pid)) AS flag FROM pg_stat_activity \
                WHERE datname = current_database() AND wait_event_type = 'Lock'";
    assert!(flag(&mut conn, kill).await);
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, 503, "{body}");
    conn.batch_execute("COMMIT").await.unwrap();
}
