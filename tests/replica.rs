//! Read routing on a real primary and a real streaming replica (`pg_basebackup -R`), both
//! private clusters of each test, on Unix sockets.

mod common;

use std::time::Duration;

use app::db::{DatabaseUrl, DbConfig};
use app::models::{Email, NewUser, User};
use app::replicas::{ReplicaConfig, Router, Server};
use common::{Cluster, flag, pg_binaries_present};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

/// A migrated primary, its replica, and a router over both; `None` (skipped) without the
/// server binaries.
struct Pair {
    primary: Cluster,
    replica: Cluster,
    replica_url: DatabaseUrl,
    router: Router,
}

async fn pair(label: &str, tune: impl FnOnce(&mut ReplicaConfig)) -> Option<Pair> {
    if !pg_binaries_present() {
        return None;
    }
    let primary = Cluster::new(&format!("{label}-p"));
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    app::migrations::run_pending(&primary_url).await.unwrap();
    let (replica, replica_url) = primary.replica(&format!("{label}-r"));
    let replica_url = DatabaseUrl::parse(&replica_url).unwrap();
    replayed_a_commit(&primary_url, &replica_url).await;
    let mut config = ReplicaConfig::new(vec![replica_url.clone()]);
    tune(&mut config);
    let router = Router::new(&DbConfig::new(primary_url), config).unwrap();
    Some(Pair {
        primary,
        replica,
        replica_url,
        router,
    })
}

/// Commits on the primary and waits for the replica to replay it. A replica that has
/// replayed no commit since it started, with WAL waiting, counts as infinitely behind; a
/// slow machine would otherwise catch the first test write in flight and skip the replica.
async fn replayed_a_commit(primary: &DatabaseUrl, replica: &DatabaseUrl) {
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
}

async fn in_recovery(conn: &mut AsyncPgConnection) -> bool {
    flag(conn, "SELECT pg_is_in_recovery() AS flag").await
}

/// Writes a user on the primary; returns the WAL position after it.
async fn write_user(router: &Router, email: &str) -> app::replicas::WalPosition {
    let mut conn = router.write().await.unwrap();
    assert_eq!(conn.server, Server::Primary);
    let email = Email::parse(email).unwrap();
    let new = NewUser {
        email: &email,
        display_name: "Replicated",
    };
    User::create(&conn, &new).await.unwrap();
    Router::position(&mut conn).await.unwrap()
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
