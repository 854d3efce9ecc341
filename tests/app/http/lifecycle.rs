//! Readiness tied to migrations, and SIGTERM with a request in flight.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use serde_json::json;

use super::{Server, get, post};
use crate::support::{TestDb, flag, migrate, ok, stderr};

#[tokio::test]
async fn readyz_is_503_one_migration_behind_and_200_at_head() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    assert_eq!(
        get(&server, "/readyz").await,
        (200, json!({"status": "ready"}))
    );

    let down = migrate(Some(&db.url), &["downgrade"]);
    let reverted = ok(down).trim().trim_start_matches("reverted ").to_owned();
    // Its answer is kept for READY_CACHE (1 s): the change shows by the next check.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = get(&server, "/readyz").await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(
        reason.contains("1 pending") && reason.contains(&reverted),
        "{reason}"
    );

    let up = migrate(Some(&db.url), &["upgrade"]);
    assert!(up.status.success(), "{}", stderr(&up));
    tokio::time::sleep(app::http::READY_CACHE).await;
    assert_eq!(get(&server, "/readyz").await.0, 200);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_leaves_no_session() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &["--shutdown-timeout", "20s"]);
    let body = json!({"email": "ann@example.com", "display_name": "Ann"});
    let owner = post(&server, "/users", body).await.1["id"]
        .as_i64()
        .unwrap();
    let task = json!({"owner_id": owner, "title": "Slow"});
    let id = post(&server, "/tasks", task).await.1["id"]
        .as_i64()
        .unwrap();

    // Our own session holds the task's row: the PATCH below waits for it.
    let mut conn = db.conn().await;
    let lock = format!("BEGIN; SELECT 1 FROM tasks WHERE id = {id} FOR UPDATE");
    conn.batch_execute(&lock).await.unwrap();
    let path = format!("/tasks/{id}");
    let slow = super::spawn_patch(&server, &path, json!({"status": "done"}));
    super::until_blocked(&mut conn).await;

    server.terminate();
    // It stops accepting: a new connection is refused, while the PATCH still waits.
    super::until_refusing(&server).await;
    let mut server = server;
    assert!(server.running(), "exited with a request in flight");
    assert!(!slow.is_finished());

    conn.batch_execute("COMMIT").await.unwrap();
    let (status, patched) = super::answer(slow.await.unwrap().unwrap()).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "done");
    let (exit, out) = server.exit_within(Duration::from_secs(15));
    assert!(exit.success(), "{exit:?} {out:?}");
    assert!(
        out.iter().any(|l| l.starts_with("shutting down: draining")),
        "{out:?}"
    );
    let alone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE \
                 datname = current_database() AND pid <> pg_backend_pid()) AS flag";
    // Each session said goodbye; the server ends a backend just after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag(&mut conn, alone).await {
        assert!(Instant::now() < deadline, "a session of the server is left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The change was committed, not cut off.
    assert_eq!(stored_status(&db, id).await, "done");
}

/// The task's status, read by the model API on a connection of the test's own.
pub(super) async fn stored_status(db: &TestDb, id: i64) -> &'static str {
    let conn = db.conn().await;
    app::models::Task::find(&conn, id)
        .await
        .unwrap()
        .status
        .as_str()
}

/// Sessions of the test's database other than ours.
async fn sessions(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = "SELECT count(*) AS n FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let row: Count = diesel::sql_query(sql).get_result(conn).await.unwrap();
    row.n
}

#[tokio::test]
async fn a_hundred_readyz_at_once_cost_a_couple_of_sessions() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let mut conn = db.conn().await;
    let before = sessions(&mut conn).await;
    let client = reqwest::Client::new();
    let calls = (0..100).map(|_| {
        let (client, url) = (client.clone(), server.url("/readyz"));
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let calls = async {
        let statuses = futures_util::future::join_all(calls).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        statuses
    };
    // The most sessions seen while the calls run.
    let peak = async {
        let mut peak = before;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(sessions(&mut conn).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak
    };
    let (statuses, peak) = tokio::join!(calls, peak);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // One pooled connection for the check, one session kept for the schema.
    assert!(
        peak - before <= 2,
        "{before} sessions before, {peak} at the peak"
    );
}

#[tokio::test]
async fn headers_sent_a_line_at_a_time_neither_hold_a_connection_nor_a_stop() {
    use std::io::Write;
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &["--shutdown-timeout", "60s"]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let started = Instant::now();
    // A header line each 200 ms, until the server closes the connection.
    let dripping = std::thread::spawn(move || {
        let mut n = 0;
        while slow.write_all(format!("x-{n}: y\r\n").as_bytes()).is_ok() && n < 200 {
            n += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    server.terminate();
    // The stop waits for the slow client no longer than the header timeout, not 60 s.
    let limit = app::http::HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let (exit, out) = server.exit_within(limit);
    assert!(exit.success(), "{exit:?} {out:?}");
    let lines = dripping.join().unwrap();
    assert!(lines < 200, "the connection stayed open");
    assert!(started.elapsed() < limit + Duration::from_secs(2));
}
