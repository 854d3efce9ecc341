//! A primary lost for good: a synchronous standby is promoted, and a writer on one pool
//! over one host list (`primary,standby` with `target_session_attrs=read-write`) carries on
//! through `db::retry`, losing none of the writes it was told had committed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::multihost::list;
use crate::support::{Cluster, TestDb, flag, pg_binaries_present};
use app::db::{self, DatabaseUrl, DbConfig, RetryPolicy};
use app::models::{Email, NewUser, User};
use app::schema::users;
use app::{Error, Result};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// How long writes may stop, from the kill to the first write acknowledged after it: the
/// promotion and the pool finding the new primary. Measured here at 0.3 to 0.45 s.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// Writes acknowledged before the kill, and after it before the writer stops.
const BEFORE: usize = 40;
const AFTER: usize = 20;

/// One write the writer was told had committed.
struct Ack {
    id: i64,
    at: Instant,
}

/// Creates the user `w{n}@failover.test`, or finds it: a create whose connection was lost
/// may have committed, so a retry that meets the key finds the row instead. `unavailable`
/// collects each `Error::Unavailable` an attempt met.
async fn write(pool: &db::Pool, n: usize, unavailable: &Mutex<Vec<String>>) -> Result<i64> {
    let email = Email::parse(&format!("w{n}@failover.test")).unwrap();
    let new = NewUser {
        email: &email,
        display_name: "Writer",
    };
    let attempt = async || {
        let conn = db::checkout(pool).await?;
        match User::create(&conn, &new).await {
            Err(Error::Conflict { .. }) => User::by_email(&conn, email.as_str()).await,
            created => created,
        }
    };
    let policy = RetryPolicy {
        attempts: 1000,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        deadline: RESUME_WITHIN,
    };
    let attempt = &attempt;
    let user = db::retry(&policy, || async move {
        let result = attempt().await;
        if let Err(Error::Unavailable { reason }) = &result {
            unavailable.lock().unwrap().push(reason.clone());
        }
        result
    })
    .await?;
    Ok(user.id)
}

/// Waits until the primary reports its standby as synchronous.
async fn standby_is_synchronous(primary: &mut AsyncPgConnection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // pg_stat_replication is a view of the server's own; no schema of ours.
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync') \
               AS flag";
    while !flag(primary, sql).await {
        assert!(
            Instant::now() < deadline,
            "the standby never became synchronous"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The socket directory of the server `conn` is on, which names the cluster, and whether
/// that server takes writes.
async fn server_of(conn: &mut AsyncPgConnection) -> (String, bool) {
    #[derive(diesel::QueryableByName)]
    struct Server {
        #[diesel(sql_type = diesel::sql_types::Text)]
        dir: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        primary: bool,
    }
    // Settings and recovery state: functions Diesel has no DSL for.
    let sql = "SELECT current_setting('unix_socket_directories') AS dir, \
               NOT pg_is_in_recovery() AS primary";
    let row: Server = diesel::sql_query(sql).get_result(conn).await.unwrap();
    (row.dir, row.primary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_loses_no_acknowledged_write_and_the_pool_finds_the_promoted_standby() {
    if !pg_binaries_present() {
        return;
    }
    let primary = Cluster::new("fo-p");
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    let (standby, standby_url) = primary.replica("fo-s");
    let standby_url = DatabaseUrl::parse(&standby_url).unwrap();
    // After the base backup: the standby's own copy of the settings stays without it, or
    // once promoted it would wait for ever for a standby of its own.
    let mut admin = db::connect(&primary_url).await.unwrap();
    // Two statements: ALTER SYSTEM refuses the implicit transaction of a batch.
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    standby_is_synchronous(&mut admin).await;
    app::migrations::run_pending(&primary_url).await.unwrap();
    drop(admin);

    let url = list(&[&primary_url, &standby_url], "read-write");
    let max_size = 4;
    let pool = db::build_pool(&DbConfig {
        max_size,
        ..DbConfig::new(url.clone())
    })
    .unwrap();
    // Every connection the pool may hold, open on the primary before the kill.
    let mut warm = Vec::new();
    for _ in 0..max_size {
        warm.push(db::checkout(&pool).await.unwrap());
    }
    for conn in &mut warm {
        assert_eq!(server_of(conn).await, (dir_of(&primary), true));
    }
    drop(warm);

    let acks = Mutex::new(Vec::<Ack>::new());
    let unavailable = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let writer = async {
        let mut n = 0;
        while !AtomicBool::load(&stop, Ordering::Relaxed) {
            let id = write(&pool, n, &unavailable).await?;
            acks.lock().unwrap().push(Ack {
                id,
                at: Instant::now(),
            });
            n += 1;
        }
        Ok::<_, Error>(())
    };
    let fault = async {
        while acks.lock().unwrap().len() < BEFORE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // pg_ctl blocks: on a thread of its own, so the writer keeps writing meanwhile.
        let (primary, standby) = (primary.0.clone(), standby.0.clone());
        let killed = Instant::now();
        let crash = tokio::task::spawn_blocking(move || Cluster::crash_in(&primary));
        crash.await.unwrap();
        let dead = Instant::now();
        let promote = tokio::task::spawn_blocking(move || Cluster::promote_in(&standby));
        promote.await.unwrap();
        let promoted = Instant::now();
        let deadline = killed + RESUME_WITHIN + Duration::from_secs(5);
        let after_kill = || acks.lock().unwrap().iter().filter(|a| a.at > dead).count();
        while after_kill() < AFTER && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        (killed, dead, promoted)
    };
    let (written, (killed, dead, promoted)) = tokio::join!(writer, fault);
    written.expect("the writer gave up: a write failed past the retry deadline");

    let acks = acks.into_inner().unwrap();
    let first_after = (acks.iter().find(|a| a.at > dead))
        .expect("no write was acknowledged after the primary died");
    let resumed = first_after.at - killed;
    let unavailable = unavailable.into_inner().unwrap();
    eprintln!(
        "failover: kill {:?}, promote {:?}, first write after the kill {:?} \
         ({} acknowledged writes, {} attempts met Error::Unavailable)",
        dead - killed,
        promoted - dead,
        resumed,
        acks.len(),
        unavailable.len()
    );
    let mut kinds: Vec<&str> = (unavailable.iter())
        .map(|r| r.split(": ").next().unwrap_or(r))
        .collect();
    kinds.dedup();
    eprintln!("failover: the writer met {kinds:?}");
    assert!(resumed < RESUME_WITHIN, "writes resumed after {resumed:?}");
    assert!(
        !unavailable.is_empty(),
        "the writer never met the failover: no Error::Unavailable"
    );

    // Every acknowledged write is on the promoted standby.
    let ids: Vec<i64> = acks.iter().map(|a| a.id).collect();
    let mut promoted_conn = db::connect(&standby_url).await.unwrap();
    let found: i64 = users::table
        .filter(users::id.eq_any(&ids))
        .count()
        .get_result(&mut promoted_conn)
        .await
        .unwrap();
    assert_eq!(found as usize, ids.len(), "acknowledged writes were lost");

    // The pool kept none of the connections to the dead primary: all it can hold at once
    // are on the new one.
    let mut now = Vec::new();
    for _ in 0..max_size {
        now.push(db::checkout(&pool).await.unwrap());
    }
    for conn in &mut now {
        assert_eq!(server_of(conn).await, (dir_of(&standby), true));
    }
    assert!(pool.status().size <= max_size);
}

/// The socket directory a private cluster listens in.
fn dir_of(cluster: &Cluster) -> String {
    cluster
        .0
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// A connection whose server refused a write as read-only (as a standby does, or a primary
/// demoted under a pool) is not handed out again, though its socket is fine: the next
/// checkout opens a session through the URL, which finds the primary.
#[tokio::test]
async fn a_connection_that_met_a_read_only_server_is_not_reused() {
    let db = TestDb::new().await;
    let pool = db.pool(1);
    let mut conn = db::checkout(&pool).await.unwrap();
    let before = backend_pid(&mut conn).await;
    // The session turned read-only, as every session of a standby is.
    conn.batch_execute("SET default_transaction_read_only = on")
        .await
        .unwrap();
    let email = Email::parse("read-only@example.com").unwrap();
    let new = NewUser {
        email: &email,
        display_name: "Refused",
    };
    let err = User::create(&conn, &new).await.unwrap_err();
    let Error::Unavailable { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("read-only"), "{reason}");
    drop(conn);

    let mut conn = db::checkout(&pool).await.unwrap();
    assert_ne!(
        backend_pid(&mut conn).await,
        before,
        "the connection came back"
    );
    User::create(&conn, &new).await.unwrap();
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    diesel::select(pg_backend_pid())
        .get_result(conn)
        .await
        .unwrap()
}

diesel::define_sql_function! {
    /// The server process of this session.
    fn pg_backend_pid() -> Integer;
}

/// A frozen server (a hung host, the old primary of a failover that was never killed) under
/// `DATABASE_POOL_RECYCLE=verified`: the first idle connection's check waits out its bound;
/// the others, opened before that silence, go without a check each. One checkout costs one
/// bound, not one per idle connection.
#[tokio::test]
async fn one_check_that_gets_no_answer_discards_the_idle_connections_opened_before_it() {
    if !pg_binaries_present() {
        return;
    }
    let server = Cluster::new("fo-frozen");
    let url = DatabaseUrl::parse(&server.start(&[])).unwrap();
    let config = DbConfig {
        max_size: 6,
        wait_timeout: Duration::from_secs(1),
        recycle: db::Recycle::Verified,
        ..DbConfig::new(url)
    };
    let pool = db::build_pool(&config).unwrap();
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(db::checkout(&pool).await.unwrap());
    }
    drop(idle);
    assert_eq!(pool.status().available, 6);

    server.freeze();
    let started = Instant::now();
    let got = db::checkout(&pool).await;
    let took = started.elapsed();
    server.thaw();
    assert!(
        matches!(&got, Err(Error::Unavailable { .. })),
        "{:?}",
        got.err()
    );
    // One check (1 s) and one attempt at a new connection (1 s); six checks would be 7 s.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(pool.status().available, 0);
    // Thawed, the next checkout opens a new connection that works.
    let mut conn = db::checkout(&pool).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
}
