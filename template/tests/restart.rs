//! Server restart under load: PostgreSQL goes away while 50 tasks use the pool. Calls fail
//! with errors (never panics) and succeed again once it is back, with the same pool.
//!
//! Needs PostgreSQL's server binaries (initdb, pg_ctl) for a private cluster this test may
//! restart; without them it says so and passes, unless REQUIRE_PG_BINARIES=1 (CI sets it).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use {{crate_name}}::db::{self, DatabaseUrl, DbConfig};
use {{crate_name}}::migrations;
use {{crate_name}}::models::*;

fn pg_sh(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run scripts/pg.sh")
}

/// Stops and removes the private cluster when the test ends, passed or failed.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        pg_sh(&["stop", self.0.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_binaries_present() -> bool {
    let probe = Command::new("bash")
        .arg("-c")
        .arg(concat!(
            ". ",
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg.sh && pg_bindir"
        ))
        .output()
        .expect("bash");
    probe.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_cleanly_during_a_restart_and_recover_without_restarting_the_app() {
    if !pg_binaries_present() {
        assert!(
            std::env::var("REQUIRE_PG_BINARIES").as_deref() != Ok("1"),
            "REQUIRE_PG_BINARIES=1 but initdb/pg_ctl were not found"
        );
        eprintln!("skipped: PostgreSQL server binaries (initdb, pg_ctl) not found");
        return;
    }
    // Unix socket paths are short: a directory directly under /tmp.
    let dir = PathBuf::from(format!("/tmp/{}", common::unique_name("restart")));
    let cluster = Cluster(dir.clone());
    let start = || {
        let out = pg_sh(&["start", cluster.0.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let server = DatabaseUrl::parse(&start()).unwrap();
    let url = server.with_database("restart");
    db::ensure_database(&url).await.unwrap();
    migrations::run_pending(&url).await.unwrap();

    let mut config = DbConfig::new(url);
    config.max_size = 10;
    config.wait_timeout = Duration::from_secs(2);
    let pool = db::build_pool(&config).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));

    // Each worker inserts users in a loop, keeping the result of every call.
    let workers: Vec<_> = (0..50)
        .map(|worker| {
            let (pool, stop, failures) = (pool.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut last_ok = None;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = Email::parse(&format!("w{worker}-{n}@example.com")).unwrap();
                    let result = async {
                        let mut conn = pool.get().await?;
                        let new = NewUser {
                            email: &email,
                            display_name: "Worker",
                        };
                        User::create(&mut conn, &new).await
                    }
                    .await;
                    match result {
                        Ok(_) => last_ok = Some(Instant::now()),
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                last_ok
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "all calls succeed before"
    );
    let stopped = pg_sh(&["stop", dir.to_str().unwrap()]);
    assert!(stopped.status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    start();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let mut recovered = 0;
    for worker in workers {
        let last_ok = worker.await.expect("a worker panicked");
        if last_ok.is_some_and(|at| at > back) {
            recovered += 1;
        }
    }
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "the restart was felt as errors"
    );
    assert_eq!(
        recovered, 50,
        "every worker succeeded again after the restart"
    );
}
