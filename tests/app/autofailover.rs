//! pg_auto_failover (issue 28, must-show 2): a monitor and three nodes from `scripts/pg.sh
//! formation`, with `number_sync_standbys = 1`; one pool on the formation's URI (a host list with
//! `target_session_attrs=read-write`) commits rows in a loop while the monitor performs a
//! failover, then while the new primary's postmaster is killed (SIGKILL), then while its
//! whole node is (service and PostgreSQL). Every acknowledged write is on the final primary;
//! the time to the first write after each fault is printed.
//!
//! Runs when REQUIRE_PG_AUTO_FAILOVER=1, and then needs pg_auto_failover (Debian:
//! postgresql-15-auto-failover, pg-auto-failover-cli); scripts/test.sh installs it and runs
//! this test alone after the rest, with that set. Otherwise it says how to run it and passes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{migrate, ok, pg_binaries_present, pg_sh, stderr, unique_name};
use app::db::{self, DatabaseUrl, DbConfig, Pool};
use app::models::*;
use app::schema::users;
use diesel::{ExpressionMethods, QueryDsl};

/// How long writes may keep failing after a fault, and the formation stay unhealthy,
/// before the test fails. A lost primary node takes the longest: the monitor's defaults wait
/// 20 s without news (`pgautofailover.node_considered_unhealthy_timeout`), then 30 s
/// (`primary_demote_timeout`) for the old primary to have demoted itself, if it was only cut
/// off, before a standby is promoted: about 52 s here.
const BOUND: Duration = Duration::from_secs(120);

/// Acknowledged writes written after a fault before its outage is measured.
const AFTER_FAULT: usize = 20;

diesel::define_sql_function! {
    /// `inet_server_port()`: the port of the server this session is on.
    fn inet_server_port() -> Nullable<Integer>;
}

/// True when asked for with REQUIRE_PG_AUTO_FAILOVER=1 (four servers and about 90 s, so
/// not in every `cargo test`), and then pg_autoctl must be installed; otherwise says how to
/// run it.
fn pg_auto_failover_present() -> bool {
    if std::env::var("REQUIRE_PG_AUTO_FAILOVER").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set REQUIRE_PG_AUTO_FAILOVER=1 to run it (needs pg_auto_failover; \
             four PostgreSQL servers, about 90 s)"
        );
        return false;
    }
    let found = std::process::Command::new("pg_autoctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "REQUIRE_PG_AUTO_FAILOVER=1 but pg_autoctl was not found \
         (apt-get install postgresql-15-auto-failover pg-auto-failover-cli)"
    );
    found
}

/// A pg_auto_failover formation of this test's own, stopped and removed when dropped.
struct Formation(PathBuf);

impl Formation {
    /// Starts one with `scripts/pg.sh formation` and returns it with its URI as printed.
    fn start(label: &str) -> (Formation, String) {
        let formation = Formation(PathBuf::from(format!("/tmp/{}", unique_name(label))));
        let out = pg_sh(&["formation", formation.dir()], &[]);
        assert!(out.status.success(), "pg.sh formation: {}", stderr(&out));
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (formation, uri)
    }

    fn dir(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// Runs `pg_autoctl ARGS` against the formation's monitor (`pg.sh autoctl`), blocking.
    fn autoctl(&self, args: &[&str]) -> String {
        let mut all = vec!["autoctl", self.dir()];
        all.extend_from_slice(args);
        ok(pg_sh(&all, &[]))
    }

    /// Whether the monitor reports one primary and `secondaries` secondaries, each in its
    /// assigned state.
    fn healthy(&self, secondaries: usize) -> bool {
        let out = pg_sh(&["autoctl", self.dir(), "show", "state"], &[]);
        let states: Vec<String> = (String::from_utf8_lossy(&out.stdout).lines())
            .map(|line| line.split('|').map(str::trim).collect::<Vec<_>>())
            .filter(|cols| cols.len() >= 7 && cols[5] == cols[6])
            .map(|cols| cols[5].to_owned())
            .collect();
        let of = |state: &str| states.iter().filter(|s| *s == state).count();
        out.status.success() && of("primary") == 1 && of("secondary") == secondaries
    }

    /// The monitor's decisions so far, from its log: each "Setting goal state ..." line.
    fn decisions(&self) -> String {
        let log = std::fs::read_to_string(self.0.join("monitor.log")).unwrap_or_default();
        (log.lines())
            .filter(|line| line.contains("Setting goal state"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The name and `postmaster.pid` lines of the node listening on `port` (the file names
    /// the postmaster's pid on its first line, its port on the fourth).
    fn node_on(&self, port: i32) -> (&'static str, Vec<String>) {
        for node in ["node1", "node2", "node3"] {
            let Ok(file) = std::fs::read_to_string(self.0.join(node).join("postmaster.pid")) else {
                continue;
            };
            let lines: Vec<String> = file.lines().map(|l| l.trim().to_owned()).collect();
            if lines.get(3) == Some(&port.to_string()) {
                return (node, lines);
            }
        }
        panic!("no node of {} listens on {port}", self.dir());
    }

    /// Sends SIGKILL to the postmaster of the node listening on `port`.
    fn kill_postmaster(&self, port: i32) {
        let (_, pid) = self.node_on(port);
        kill(&["-KILL", &pid[0]]);
    }

    /// Kills the whole node listening on `port`, as a machine lost would: its pg_autoctl
    /// service (all its processes, one process group: `pg.sh` starts each with `setsid`) and
    /// its postmaster. The monitor must notice and promote a standby.
    fn kill_node(&self, port: i32) {
        let (node, postmaster) = self.node_on(port);
        let service = self.0.join(format!(
            "run/pg_autoctl{}/{node}/pg_autoctl.pid",
            self.dir()
        ));
        let service = std::fs::read_to_string(&service).unwrap();
        let service = service.lines().next().unwrap().trim();
        kill(&["-KILL", "--", &format!("-{service}")]);
        // The postmaster too, in case it left the service's group.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &postmaster[0]])
            .status();
    }
}

/// Runs `kill ARGS`, which must succeed.
fn kill(args: &[&str]) {
    let killed = std::process::Command::new("kill")
        .args(args)
        .status()
        .unwrap();
    assert!(killed.success(), "kill {args:?}");
}

impl Drop for Formation {
    fn drop(&mut self) {
        pg_sh(&["formation-stop", self.dir()], &[]);
    }
}

/// Retries `work` until it succeeds, for up to [`BOUND`], counting the failures in
/// `failed`. A stand-in for the application's retry helper; fit for this test's writes,
/// where a write repeated after a lost acknowledgement adds a row and loses nothing.
async fn retry<T, F, Fut>(failed: &AtomicUsize, mut work: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = app::Result<T>>,
{
    let start = Instant::now();
    loop {
        match work().await {
            Ok(done) => return done,
            Err(e) if start.elapsed() > BOUND => panic!("still failing after {BOUND:?}: {e}"),
            Err(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The writes acknowledged so far: each user's id and when its commit returned.
type Acks = Arc<Mutex<Vec<(i64, Instant)>>>;

/// Inserts users one at a time through `pool` until `stop`, recording each acknowledged
/// one in `acks`.
async fn writer(pool: Pool, acks: Acks, failed: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let mut attempt = 0;
    while !stop.load(Ordering::Relaxed) {
        let user = retry(&failed, || {
            // A new address each attempt: one whose acknowledgement was lost may be stored.
            attempt += 1;
            let email = Email::parse(&format!("w{attempt}@example.com")).unwrap();
            let pool = pool.clone();
            async move {
                let conn = db::checkout(&pool).await?;
                let new = NewUser {
                    email: &email,
                    display_name: "Writer",
                };
                User::create(&conn, &new).await
            }
        })
        .await;
        acks.lock().unwrap().push((user.id, Instant::now()));
        // Paced: the machine's two cores are shared with the four servers.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `fault` (blocking) and waits until [`AFTER_FAULT`] writes are acknowledged after it
/// returned; prints how long writes stopped and when the first one after that returned,
/// counted from the fault's start.
async fn through_fault(
    name: &str,
    acks: &Acks,
    failed: &AtomicUsize,
    fault: impl FnOnce() + Send + 'static,
) {
    let failed_before = failed.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::task::spawn_blocking(fault).await.unwrap();
    let done = Instant::now();
    loop {
        let after = (acks.lock().unwrap().iter())
            .filter(|(_, at)| *at > done)
            .count();
        if after >= AFTER_FAULT {
            break;
        }
        assert!(
            done.elapsed() < BOUND,
            "{name}: {after} writes acknowledged in the {BOUND:?} after it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The longest wait between two acknowledgements from the fault on, the last one
    // before it included: the outage as the application saw it.
    let acks = acks.lock().unwrap();
    let mut previous = (acks.iter().rev())
        .find(|(_, at)| *at <= start)
        .map_or(start, |(_, at)| *at);
    let (mut gap, mut resumed) = (Duration::ZERO, start);
    for (_, at) in acks.iter().filter(|(_, at)| *at > start) {
        if *at - previous > gap {
            (gap, resumed) = (*at - previous, *at);
        }
        previous = *at;
    }
    eprintln!(
        "{name}: writes stopped for {} ms; the first one after that returned {} ms after the \
         fault began ({} failed attempts; the fault itself took {} ms)",
        gap.as_millis(),
        (resumed - start).as_millis(),
        failed.load(Ordering::Relaxed) - failed_before,
        (done - start).as_millis(),
    );
}

/// The port of the primary that `pool`'s read-write connections reach now.
async fn primary_port(pool: &Pool) -> i32 {
    // Here, not at the top: its `load` would shadow the atomics' in this file.
    use diesel_async::RunQueryDsl;
    let failed = AtomicUsize::new(0);
    retry(&failed, || async {
        let mut conn = db::checkout(pool).await?;
        let port = diesel::select(inet_server_port())
            .get_result::<Option<i32>>(&mut conn)
            .await?;
        Ok(port.expect("a TCP connection"))
    })
    .await
}

/// Which of `ids` the users table holds, read through `pool`.
async fn stored(pool: &Pool, ids: &[i64]) -> HashSet<i64> {
    use diesel_async::RunQueryDsl;
    let mut conn = db::checkout(pool).await.unwrap();
    let found: Vec<i64> = users::table
        .filter(users::id.eq_any(ids))
        .select(users::id)
        .load(&mut conn)
        .await
        .unwrap();
    found.into_iter().collect()
}

/// Waits for the monitor to report a primary and `secondaries` secondaries, for up to
/// [`BOUND`].
async fn wait_healthy(formation: &Formation, secondaries: usize) {
    let start = Instant::now();
    while !formation.healthy(secondaries) {
        assert!(
            start.elapsed() < BOUND,
            "not healthy after {BOUND:?}:\n{}",
            formation.autoctl(&["show", "state"])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_through_a_failover_and_a_killed_primary() {
    if !pg_binaries_present() || !pg_auto_failover_present() {
        return;
    }
    let started = Instant::now();
    let (formation, uri) = Formation::start("paf");
    let formation = Arc::new(formation);
    eprintln!(
        "formation up in {} ms: {uri}",
        started.elapsed().as_millis()
    );
    // The URI as pg_autoctl prints it: a host list, read-write, and no user name (libpq
    // would take the account's); ours are created by the `postgres` account.
    let printed = DatabaseUrl::parse(&uri).unwrap();
    assert!(printed.is_multi_host(), "{printed}");
    let url = DatabaseUrl::parse(&uri.replacen("postgres://", "postgres://postgres@", 1)).unwrap();

    ok(migrate(Some(&url), &["upgrade"]));
    let pool = db::build_pool(&DbConfig::new(url.clone())).unwrap();
    let first = primary_port(&pool).await;

    let acks: Acks = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(
        pool.clone(),
        acks.clone(),
        failed.clone(),
        stop.clone(),
    ));
    while acks.lock().unwrap().len() < AFTER_FAULT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // (a) The monitor promotes the standby and demotes the primary.
    let on = formation.clone();
    through_fault("perform failover", &acks, &failed, move || {
        on.autoctl(&["perform", "failover"]);
    })
    .await;
    let second = primary_port(&pool).await;
    assert_ne!(first, second, "the primary did not change");
    wait_healthy(&formation, 2).await;

    // (b) The new primary's postmaster killed: pg_autoctl restarts it, or the monitor
    // promotes another node; the URI finds whichever is primary.
    let on = formation.clone();
    through_fault(
        "kill -9 of the primary's postmaster",
        &acks,
        &failed,
        move || {
            on.kill_postmaster(second);
        },
    )
    .await;
    wait_healthy(&formation, 2).await;

    // (c) The primary's whole node killed (service and PostgreSQL), as a lost machine: the
    // monitor notices it is gone and promotes one of the two standbys.
    let now = primary_port(&pool).await;
    let on = formation.clone();
    through_fault("kill -9 of the primary's node", &acks, &failed, move || {
        on.kill_node(now);
    })
    .await;
    let third = primary_port(&pool).await;
    assert_ne!(now, third, "the primary did not change");
    wait_healthy(&formation, 1).await;

    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let acked: Vec<i64> = acks.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let last = primary_port(&pool).await;
    let stored = stored(&pool, &acked).await;
    let lost: Vec<&i64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are not on the primary (port {last}): {:?}\n\
         the monitor's decisions:\n{}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)],
        formation.decisions()
    );
    eprintln!(
        "{} acknowledged writes, all on the final primary (port {last}; first {first}, then \
         {second}, then {third}); {} failed attempts retried",
        acked.len(),
        failed.load(Ordering::Relaxed)
    );
}
