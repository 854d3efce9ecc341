//! Host lists (`postgres://u@h1:5432,h2:5433/db`), as libpq writes them: a host that
//! refuses is passed over, `target_session_attrs=read-write` finds the primary behind its
//! replica, `migrate` refuses a standby before it writes anything, and COPY and the replica
//! router take lists too.

use std::process::{Command, Output};

use crate::support::{Cluster, TestDb, flag, pg_binaries_present, table_exists, versions};
use app::bulk;
use app::db::replicas::{ReplicaConfig, Router, Server};
use app::db::{self, DatabaseUrl, DbConfig};
use app::models::{Email, User, UserRow};
use diesel_async::AsyncPgConnection;

/// `url` (one host) with `first` (one host or more) listed before its own host:
/// `postgres://u@first,host:port/db`.
fn behind(first: &str, url: &DatabaseUrl) -> DatabaseUrl {
    use url::Position::{AfterPort, BeforeHost};
    let one = url::Url::parse(url.expose()).unwrap();
    let raw = format!(
        "{}{first},{}{}",
        &one[..BeforeHost],
        &one[BeforeHost..AfterPort],
        &one[AfterPort..]
    );
    DatabaseUrl::parse(&raw).unwrap()
}

/// `hosts` (each `host:port` as the clusters' URLs write it) as one list on `postgres`,
/// with `attrs` as `target_session_attrs`.
pub(crate) fn list(hosts: &[&DatabaseUrl], attrs: &str) -> DatabaseUrl {
    use url::Position::{AfterPort, BeforeHost};
    let each: Vec<String> = (hosts.iter())
        .map(|url| url::Url::parse(url.expose()).unwrap()[BeforeHost..AfterPort].to_owned())
        .collect();
    let first = url::Url::parse(hosts[0].expose()).unwrap();
    let raw = format!(
        "{}{}/postgres?target_session_attrs={attrs}",
        &first[..BeforeHost],
        each.join(",")
    );
    DatabaseUrl::parse(&raw).unwrap()
}

fn migrate(args: &[&str], url: &DatabaseUrl) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .args(["--url", url.expose()])
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_DIRECT_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

async fn in_recovery(conn: &mut AsyncPgConnection) -> bool {
    flag(conn, "SELECT pg_is_in_recovery() AS flag").await
}

#[tokio::test]
async fn a_host_that_refuses_is_passed_over_for_the_next_in_the_list() {
    let db = TestDb::empty().await;
    // Port 1: nothing listens there, the connection is refused at once.
    let url = behind("127.0.0.1:1", &db.url);
    assert!(url.is_multi_host(), "{url}");

    let mut conn = db::connect(&url).await.unwrap();
    assert!(!in_recovery(&mut conn).await);

    let migrated = migrate(&["upgrade"], &url);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut conn = db.conn().await;
    assert!(!versions(&mut conn).await.is_empty());

    let pool = db::build_pool(&DbConfig::new(url.clone())).unwrap();
    let mut pooled = db::checkout(&pool).await.unwrap();
    assert!(table_exists(&mut pooled, "users").await);
}

#[tokio::test]
async fn when_no_host_answers_each_one_is_named_with_its_reason() {
    let db = TestDb::not_created();
    let url = behind("127.0.0.1:2,127.0.0.1:1", &db.url.with_database("x"));
    let err = db::connect(&url).await.err().unwrap().to_string();
    // The last host is the real server: it refuses the missing database by name.
    for said in ["127.0.0.1:2: ", "127.0.0.1:1: ", "refused", "\"x\""] {
        assert!(err.contains(said), "{said}: {err}");
    }
}

#[tokio::test]
async fn read_write_finds_the_primary_behind_its_replica_and_migrate_refuses_a_standby() {
    if !pg_binaries_present() {
        return;
    }
    let primary = Cluster::new("multi-p");
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    let (_replica, replica_url) = primary.replica("multi-r");
    let replica_url = DatabaseUrl::parse(&replica_url).unwrap();

    // Listed replica first: `any` takes it, `read-write` passes it over for the primary.
    let any = list(&[&replica_url, &primary_url], "any");
    let read_write = list(&[&replica_url, &primary_url], "read-write");
    assert!(in_recovery(&mut db::connect(&any).await.unwrap()).await);
    assert!(!in_recovery(&mut db::connect(&read_write).await.unwrap()).await);
    let pool = db::build_pool(&DbConfig::new(read_write.clone())).unwrap();
    assert!(!in_recovery(&mut db::checkout(&pool).await.unwrap()).await);

    // The replica, alone or first under `any`: refused before the lock, nothing written.
    for url in [&replica_url, &any] {
        for verb in [&["upgrade"][..], &["downgrade", "base"], &["stamp", "base"]] {
            let out = migrate(verb, url);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{verb:?} {url}: {err}");
            for said in [
                "is a standby (in recovery): migrations must run on the primary",
                "target_session_attrs=read-write",
            ] {
                assert!(err.contains(said), "{verb:?} {url}: {err}");
            }
        }
    }
    let err = db::ensure_database(&replica_url.with_database("made_on_a_standby"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a standby (in recovery)"), "{err}");
    let mut on_primary = db::connect(&primary_url).await.unwrap();
    assert!(!table_exists(&mut on_primary, "__diesel_schema_migrations").await);

    // Reading is no write: `current` answers on the replica.
    let current = migrate(&["current"], &replica_url);
    assert!(
        current.status.success(),
        "{}",
        String::from_utf8_lossy(&current.stderr)
    );

    // Through the list with read-write, migrate reaches the primary.
    let migrated = migrate(&["upgrade"], &read_write);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(!versions(&mut on_primary).await.is_empty());
}

#[tokio::test]
async fn copy_and_the_replica_router_take_host_lists() {
    if !pg_binaries_present() {
        return;
    }
    let primary = Cluster::new("multi-cp");
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    app::migrations::run_pending(&primary_url).await.unwrap();
    let (_replica, replica_url) = primary.replica("multi-cr");
    let replica_url = DatabaseUrl::parse(&replica_url).unwrap();
    // Both lists name the other server first: each must pass it over.
    let read_write = list(&[&replica_url, &primary_url], "read-write");
    let read_only = list(&[&primary_url, &replica_url], "read-only");

    // COPY opens its own session from the URL: through the list, on the primary.
    let rows: Vec<UserRow> = (0..3)
        .map(|i| UserRow {
            email: Email::parse(&format!("copy{i}@example.com")).unwrap(),
            display_name: format!("Copy {i}"),
        })
        .collect();
    assert_eq!(bulk::copy_insert(&read_write, &rows).await.unwrap(), 3);
    let mut on_primary = db::connect(&primary_url).await.unwrap();
    assert_eq!(User::all(&on_primary).await.unwrap().len(), 3);

    // The router: writes through the read-write list, reads through the read-only one.
    let router = Router::new(
        &DbConfig::new(read_write),
        ReplicaConfig::new(vec![read_only]),
    )
    .unwrap();
    let mut write = router.write().await.unwrap();
    assert!(!in_recovery(&mut write).await);
    drop(write);
    // Until the replica has replayed a commit, reads may go to the primary: wait for one.
    let start = std::time::Instant::now();
    loop {
        let mut read = router.read().await.unwrap();
        if read.server != Server::Primary {
            assert!(in_recovery(&mut read).await);
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never read a replica"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!in_recovery(&mut on_primary).await);
}

/// A TCP port on 127.0.0.1 that accepts connections and never answers them (a frozen
/// server, or one behind a dropped route), open while the returned task runs.
async fn silent_host() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (port, held)
}

#[tokio::test]
async fn a_host_that_never_answers_costs_one_connect_timeout_not_one_per_connection() {
    if !pg_binaries_present() {
        return;
    }
    let primary = Cluster::new("multi-fz");
    let primary_url = DatabaseUrl::parse(&primary.start(&[])).unwrap();
    let (port, _held) = silent_host().await;
    let list = behind(&format!("127.0.0.1:{port}"), &primary_url);
    let list = DatabaseUrl::parse(&format!(
        "{}?target_session_attrs=read-write&connect_timeout=2",
        list.expose()
    ))
    .unwrap();

    // A binary: its first connection waits out the silent host, the ones after it (the
    // transaction pooler probe's two) go straight to the next.
    let started = std::time::Instant::now();
    let out = migrate(&["current"], &list);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One connect timeout (2 s), not three.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A pool whose create bound (1 s) is shorter than the connect timeout (2 s): the first
    // checkout gives up on the silent host, which then goes last; the next ones connect.
    let config = DbConfig {
        wait_timeout: std::time::Duration::from_secs(1),
        ..DbConfig::new(list)
    };
    let pool = db::build_pool(&config).unwrap();
    let first = db::checkout(&pool).await;
    assert!(
        matches!(&first, Err(app::Error::Unavailable { .. })),
        "{:?}",
        first.err()
    );
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let mut conn = db::checkout(&pool).await.unwrap();
        assert!(!in_recovery(&mut conn).await);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Each one new: returned to the pool it would be reused, proving nothing.
        drop(app::db::PooledConnection::take(conn));
    }
}
