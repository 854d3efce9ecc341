//! Read routing on a real primary and a real streaming replica (`pg_basebackup -R`), both
//! private clusters of each test, on Unix sockets.

use std::time::Duration;

use crate::support::{Cluster, flag, pg_binaries_present};
use app::db::replicas::{ReplicaConfig, Router, Server};
use app::db::{DatabaseUrl, DbConfig};
use app::models::{Email, NewUser, User};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

/// A migrated primary, its replica, and a router over both; `None` (skipped) without the
/// server binaries.
struct Pair {
    primary: Cluster,
    primary_url: DatabaseUrl,
    replica: Cluster,
    replica_url: DatabaseUrl,
    router: Router,
}

async fn pair(label: &str, tune: impl FnOnce(&mut ReplicaConfig)) -> Option<Pair> {
    pair_with(label, &[], tune).await
}

/// [`pair`], the primary started with these `pg.sh` settings (`PG_EXTRA_OPTS`).
async fn pair_with(
    label: &str,
    primary_env: &[(&str, &str)],
    tune: impl FnOnce(&mut ReplicaConfig),
) -> Option<Pair> {
    if !pg_binaries_present() {
        return None;
    }
    let primary = Cluster::new(&format!("{label}-p"));
    let primary_url = DatabaseUrl::parse(&primary.start(primary_env)).unwrap();
    app::migrations::run_pending(&primary_url).await.unwrap();
    let (replica, replica_url) = primary.replica(&format!("{label}-r"));
    let replica_url = DatabaseUrl::parse(&replica_url).unwrap();
    replayed_a_commit(&primary_url, &replica_url).await;
    let mut config = ReplicaConfig::new(vec![replica_url.clone()]);
    tune(&mut config);
    let router = Router::new(&DbConfig::new(primary_url.clone()), config).unwrap();
    Some(Pair {
        primary,
        primary_url,
        replica,
        replica_url,
        router,
    })
}

/// Commits on the primary and waits for the replica to replay it. A replica that has
/// replayed no commit since it started, with WAL waiting, counts as infinitely behind; a
/// slow machine would otherwise catch the first test write in flight and skip the replica.
pub(crate) async fn replayed_a_commit(primary: &DatabaseUrl, replica: &DatabaseUrl) {
    let mut conn = app::db::connect(primary).await.unwrap();
    // An xid makes the commit a WAL record with a timestamp.
    conn.batch_execute("SELECT txid_current()").await.unwrap();
    let mut conn = app::db::connect(replica).await.unwrap();
    for _ in 0..1500 {
        let sql = "SELECT pg_last_xact_replay_timestamp() IS NOT NULL AS flag";
        if flag(&mut conn, sql).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replica replayed no commit in 30 s");
}

/// Bounds for tests about routing, not lag: generous, since a loaded machine (CI building
/// beside the tests) can take seconds to replay a write.
fn patient(config: &mut ReplicaConfig) {
    config.wait = Duration::from_secs(30);
    config.max_lag = Duration::from_secs(60);
    config.timeout = Duration::from_secs(30);
}

async fn in_recovery(conn: &mut AsyncPgConnection) -> bool {
    flag(conn, "SELECT pg_is_in_recovery() AS flag").await
}

/// Writes a user on the primary; returns the WAL position after it.
async fn write_user(router: &Router, email: &str) -> app::db::replicas::WalPosition {
    let mut conn = router.write().await.unwrap();
    assert_eq!(conn.server, Server::Primary);
    let email = Email::parse(email).unwrap();
    let new = NewUser {
        email: &email,
        display_name: "Replicated",
    };
    User::create(&conn, &new).await.unwrap();
    router.position(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_takes_reads_and_sees_writes_once_replayed() {
    let Some(pair) = pair("route", patient).await else {
        return;
    };
    let mut write = pair.router.write().await.unwrap();
    assert!(!in_recovery(&mut write).await, "writes go to the primary");
    drop(write);

    let seen = write_user(&pair.router, "ann@example.com").await;
    let mut read = pair.router.read_after(&seen).await.unwrap();
    assert_eq!(read.server, Server::Replica(0));
    assert!(in_recovery(&mut read).await, "the read ran on the replica");
    let ann = User::by_email(&read, "ann@example.com").await.unwrap();
    assert_eq!(ann.display_name, "Replicated");

    let mut read = pair.router.read().await.unwrap();
    assert_eq!(read.server, Server::Replica(0));
    assert!(in_recovery(&mut read).await);
}

/// Read-your-writes while the replica's replay is paused: the read goes to the primary
/// within the wait bound and sees the write; once replay resumes, the replica serves it.
/// A replica lagging past the bound is skipped by plain reads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_paused_sends_read_your_writes_to_the_primary() {
    let Some(pair) = pair("paused", |c| {
        c.wait = Duration::from_millis(300);
        c.max_lag = Duration::from_millis(200);
        c.retry_after = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let mut admin = app::db::connect(&pair.replica_url).await.unwrap();
    admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();

    let seen = write_user(&pair.router, "ben@example.com").await;
    let mut read = pair.router.read_after(&seen).await.unwrap();
    assert_eq!(
        read.server,
        Server::Primary,
        "the replica has not replayed it"
    );
    assert!(!in_recovery(&mut read).await);
    User::by_email(&read, "ben@example.com").await.unwrap();
    drop(read);

    // Once replay is behind by more than the bound, with WAL waiting, plain reads skip it.
    write_user(&pair.router, "cat@example.com").await;
    let mut last = Server::Replica(0);
    for _ in 0..500 {
        last = pair.router.read().await.unwrap().server;
        if last == Server::Primary {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, Server::Primary, "a lagging replica is skipped");

    admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    // Caught up (and past its retry time), the replica serves read-your-writes again.
    let mut read = None;
    for _ in 0..500 {
        let routed = pair.router.read_after(&seen).await.unwrap();
        if routed.server == Server::Replica(0) {
            read = Some(routed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut read = read.expect("the replica never served the read after replay resumed");
    assert!(in_recovery(&mut read).await);
    User::by_email(&read, "ben@example.com").await.unwrap();
}

/// The replica stops mid-run: every read still succeeds, on the primary, without an error
/// reaching the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stopped_mid_run_reads_continue_on_the_primary() {
    let Some(pair) = pair("stopped", patient).await else {
        return;
    };
    let seen = write_user(&pair.router, "dan@example.com").await;
    let read = pair.router.read_after(&seen).await.unwrap();
    assert_eq!(read.server, Server::Replica(0));
    drop(read);

    pair.replica.stop();
    for _ in 0..20 {
        let mut read = pair.router.read().await.unwrap();
        assert_eq!(read.server, Server::Primary);
        assert!(!in_recovery(&mut read).await);
        User::by_email(&read, "dan@example.com").await.unwrap();
    }
    drop(pair.primary);
}

/// Reads until one goes to `want`, or `limit` passes; returns whether it did.
async fn reads_reach(router: &Router, want: Server, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if router.read().await.unwrap().server == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Bounds that make a bench visible: a benched replica stays out for a minute. The
/// timeout is generous: a loaded machine (CI builds beside the tests) can take seconds to
/// open a connection, and a bench in the warm-up would last the whole test.
fn strict(config: &mut ReplicaConfig) {
    config.max_lag = Duration::from_millis(500);
    config.retry_after = Duration::from_secs(60);
    config.timeout = Duration::from_secs(10);
}

/// A replica whose WAL receiver is gone (`primary_conninfo = ''`) looks caught up forever
/// by its own numbers. It stops taking plain reads within the lag bound, on an idle primary
/// too, and stays out while cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_primary_stops_serving_plain_reads() {
    let Some(pair) = pair("cutoff", strict).await else {
        return;
    };
    assert!(reads_reach(&pair.router, Server::Replica(0), Duration::from_secs(30)).await);
    let mut replica = app::db::connect(&pair.replica_url).await.unwrap();
    replica
        .batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .unwrap();
    replica
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) AS flag";
    for _ in 0..1500 {
        if flag(&mut replica, gone).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        flag(&mut replica, gone).await,
        "the WAL receiver never stopped"
    );
    let cut = std::time::Instant::now();

    // The bound is 500 ms; the rest is slack for a loaded machine.
    assert!(
        reads_reach(&pair.router, Server::Primary, Duration::from_secs(10)).await,
        "a cut-off replica kept serving reads for 10 s"
    );
    let left_out_after = cut.elapsed();
    for _ in 0..20 {
        assert_eq!(pair.router.read().await.unwrap().server, Server::Primary);
    }
    // And a write made while it is cut off never reaches it: a read of it goes to the primary.
    let seen = write_user(&pair.router, "cut@example.com").await;
    let read = pair.router.read_after(&seen).await.unwrap();
    assert_eq!(read.server, Server::Primary);
    User::by_email(&read, "cut@example.com").await.unwrap();
    eprintln!("cut-off replica left out {left_out_after:?} after its receiver stopped");
}

/// A promoted replica is a primary of its own, diverging from the real one: it is never
/// read as a replica once promoted (between checks, 100 ms at most).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_is_not_read_as_a_replica() {
    let Some(pair) = pair("promoted", strict).await else {
        return;
    };
    assert!(reads_reach(&pair.router, Server::Replica(0), Duration::from_secs(30)).await);
    let mut replica = app::db::connect(&pair.replica_url).await.unwrap();
    // pg_promote waits until the promotion is done.
    assert!(flag(&mut replica, "SELECT pg_promote() AS flag").await);
    assert!(!in_recovery(&mut replica).await);
    let promoted = std::time::Instant::now();
    let mut last_replica_read = None;
    while promoted.elapsed() < Duration::from_secs(2) {
        let mut read = pair.router.read().await.unwrap();
        if read.server == Server::Replica(0) {
            last_replica_read = Some(promoted.elapsed());
            assert!(!in_recovery(&mut read).await);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The check runs every 100 ms; 500 ms leaves slack for a loaded machine.
    if let Some(at) = last_replica_read {
        assert!(
            at < Duration::from_millis(500),
            "the promoted server still took reads {at:?} after its promotion"
        );
    }
    assert_eq!(pair.router.read().await.unwrap().server, Server::Primary);
}

/// A frozen replica (SIGSTOP, its sockets open) with a warm pooled connection: no `read()`
/// waits on it for longer than DATABASE_REPLICA_TIMEOUT_MS (1 s here), and once found out
/// it is left out, so later reads do not wait at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_does_not_block_reads() {
    // A short bench: one taken during a slow warm-up soon ends.
    let Some(pair) = pair("frozen", |c| {
        strict(c);
        c.timeout = Duration::from_secs(1);
        c.retry_after = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    // A warm connection in the replica's pool.
    assert!(reads_reach(&pair.router, Server::Replica(0), Duration::from_secs(30)).await);
    pair.replica.freeze();
    // The bound is 1 s for the replica; the primary's own checkout comes on top. 5 s is
    // "did not hang", with slack for a loaded machine.
    let bound = Duration::from_secs(5);
    let mut on_primary = 0;
    let started = std::time::Instant::now();
    while on_primary < 20 && started.elapsed() < Duration::from_secs(30) {
        let took = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(60), pair.router.read())
            .await
            .expect("read() hung on a frozen replica")
            .unwrap();
        assert!(took.elapsed() < bound, "read() took {:?}", took.elapsed());
        // Handed out before the next check found it frozen: not queried here.
        if read.server == Server::Primary {
            on_primary += 1;
        }
    }
    assert_eq!(on_primary, 20, "reads never moved to the primary");
    // Left out: the next reads stay on the primary; when a bench ends, one check costs at
    // most the timeout again.
    let took = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(pair.router.read().await.unwrap().server, Server::Primary);
    }
    assert!(took.elapsed() < bound);
    pair.replica.thaw();
}

/// A replica that has replayed everything is fresh however long the primary has been idle;
/// the first write after the pause does not get it left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_replica_of_an_idle_primary_keeps_serving() {
    let Some(pair) = pair("idle", strict).await else {
        return;
    };
    assert!(reads_reach(&pair.router, Server::Replica(0), Duration::from_secs(30)).await);
    // Idle: no write, no read, for four times the lag bound.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pair.router.read().await.unwrap().server,
        Server::Replica(0),
        "an idle primary made its caught-up replica look stale"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The first write after the pause: at most a read or two go to the primary while it
    // replays, and it is not left out (that would be a minute here).
    write_user(&pair.router, "after-idle@example.com").await;
    assert!(
        reads_reach(&pair.router, Server::Replica(0), Duration::from_secs(10)).await,
        "the replica was left out after the first write following an idle spell"
    );
}

#[derive(diesel::QueryableByName)]
struct Lsn {
    #[diesel(sql_type = app::db::replicas::PgLsn)]
    lsn: app::db::replicas::WalPosition,
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

/// Under `synchronous_commit = off` the commit record may still sit in WAL buffers when
/// the transaction returns. `position()` is at or past it all the same (checked against the
/// commit record itself with pg_walinspect), and a read of it sees the write. Inside an open
/// transaction it refuses: nothing has committed yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_is_never_behind_the_commit_and_refuses_an_open_transaction() {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    // The WAL writer flushes asynchronous commits every 10 s instead of every 200 ms.
    let slow_writer = [("PG_EXTRA_OPTS", "-c wal_writer_delay=10000")];
    let Some(pair) = pair_with("position", &slow_writer, patient).await else {
        return;
    };
    let mut conn = pair.router.write().await.unwrap();
    conn.batch_execute("SET synchronous_commit = off")
        .await
        .unwrap();
    let start: Lsn = diesel::sql_query("SELECT pg_current_wal_insert_lsn() AS lsn")
        .get_result(&mut *conn)
        .await
        .unwrap();
    let xid = conn
        .transaction::<_, app::Error, _>(async |c| {
            let email = Email::parse("async@example.com")?;
            let new = NewUser {
                email: &email,
                display_name: "Async",
            };
            User::create(c, &new).await?;
            let xid: Text = diesel::sql_query("SELECT txid_current()::text AS text")
                .get_result(c)
                .await?;
            Ok(xid.text)
        })
        .await
        .unwrap();
    let seen = pair.router.position(&mut conn).await.unwrap();

    let read = pair.router.read_after(&seen).await.unwrap();
    User::by_email(&read, "async@example.com")
        .await
        .unwrap_or_else(|e| panic!("read_after on {:?} missed the write: {e}", read.server));
    drop(read);

    // A synchronous commit flushes everything before it, ours included.
    let mut other = app::db::connect(&pair.primary_url).await.unwrap();
    other.batch_execute("SELECT txid_current()").await.unwrap();
    if other
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .is_ok()
    {
        let end: Lsn = diesel::sql_query(
            "SELECT max(end_lsn) AS lsn FROM pg_get_wal_records_info($1, \
             pg_current_wal_flush_lsn()) WHERE xid::text = $2 AND record_type = 'COMMIT'",
        )
        .bind::<app::db::replicas::PgLsn, _>(start.lsn)
        .bind::<diesel::sql_types::Text, _>(&xid)
        .get_result(&mut other)
        .await
        .unwrap();
        assert!(
            end.lsn <= seen,
            "position {seen} is before the end of the commit record, {}",
            end.lsn
        );
    } else {
        eprintln!("pg_walinspect not installed: the commit record itself is not compared");
    }

    // Inside a transaction, Diesel's or one opened by hand that has written, it refuses.
    let inside = conn
        .transaction::<_, app::Error, _>(async |c| pair.router.position(c).await)
        .await;
    assert!(
        matches!(inside, Err(app::Error::InTransaction(_))),
        "{inside:?}"
    );
    conn.batch_execute("BEGIN; SELECT txid_current()")
        .await
        .unwrap();
    let by_hand = pair.router.position(&mut conn).await;
    conn.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        matches!(by_hand, Err(app::Error::InTransaction(_))),
        "{by_hand:?}"
    );
}

/// A replica whose pool has no free connection is busy, not failed: that read goes to the
/// primary, and the next one is the replica's again (a bench would last a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_pool_is_busy_is_not_left_out() {
    let Some(pair) = pair("busy", strict).await else {
        return;
    };
    let mut config = ReplicaConfig::new(vec![pair.replica_url.clone()]);
    strict(&mut config);
    // A bench for failing would outlast the test's last read by far; one taken during a
    // slow warm-up soon ends.
    config.retry_after = Duration::from_secs(2);
    config.timeout = Duration::from_millis(300);
    let one_each = DbConfig {
        max_size: 1,
        ..DbConfig::new(pair.primary_url.clone())
    };
    let router = Router::new(&one_each, config).unwrap();
    assert!(reads_reach(&router, Server::Replica(0), Duration::from_secs(30)).await);
    let held = router.read().await.unwrap();
    assert_eq!(held.server, Server::Replica(0));
    let meanwhile = router.read().await.unwrap();
    assert_eq!(
        meanwhile.server,
        Server::Primary,
        "the replica's only connection is held"
    );
    drop((held, meanwhile));
    assert_eq!(router.read().await.unwrap().server, Server::Replica(0));
}

/// A position the primary has not written (forged, or another cluster's) does not hold a
/// replica connection for the whole wait: the read goes to the primary at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_the_primary_never_wrote_reads_from_the_primary_at_once() {
    let Some(pair) = pair("future", patient).await else {
        return;
    };
    let seen = write_user(&pair.router, "fay@example.com").await;
    let started = std::time::Instant::now();
    let future = app::db::replicas::WalPosition::new(u64::MAX);
    let read = pair.router.read_after(&future).await.unwrap();
    assert_eq!(read.server, Server::Primary);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} (the wait is 30 s)"
    );
    drop(read);
    // A position it wrote is still waited for, and served by the replica.
    let read = pair.router.read_after(&seen).await.unwrap();
    assert_eq!(read.server, Server::Replica(0));
}
