//! Server restart under load: PostgreSQL goes away while 50 tasks use the pool. Calls fail
//! with errors (never panics) and succeed again once it is back, with the same pool.
//!
//! Needs PostgreSQL's server binaries (initdb, pg_ctl) for a private cluster this test may
//! restart; without them it says so and passes, unless REQUIRE_PG_BINARIES=1 (CI sets it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Cluster, pg_binaries_present};
use app::db::{self, DatabaseUrl, DbConfig};
use app::migrations;
use app::models::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_cleanly_during_a_restart_and_recover_without_restarting_the_app() {
    if !pg_binaries_present() {
        return;
    }
    let cluster = Cluster::new("restart");
    let start = || cluster.start(&[]);
    let server = DatabaseUrl::parse(&start()).unwrap();
    let url = server.with_database("restart");
    db::ensure_database(&url).await.unwrap();
    migrations::run_pending(&url).await.unwrap();

    let mut config = DbConfig::new(url);
    config.max_size = 10;
    config.wait_timeout = Duration::from_secs(2);
    let pool = db::build_pool(&config).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    // Workers with a success before the stop, and after the restart.
    let ready = Arc::new(AtomicUsize::new(0));
    let recovered = Arc::new(AtomicUsize::new(0));

    // Each worker inserts users in a loop, counting itself once in each phase it succeeds in.
    let workers: Vec<_> = (0..50)
        .map(|worker| {
            let (pool, stop, restarted, failures, ready, recovered) = (
                pool.clone(),
                stop.clone(),
                restarted.clone(),
                failures.clone(),
                ready.clone(),
                recovered.clone(),
            );
            tokio::spawn(async move {
                let (mut was_ready, mut did_recover) = (false, false);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = Email::parse(&format!("w{worker}-{n}@example.com")).unwrap();
                    let after_restart = restarted.load(Ordering::Relaxed);
                    let result = async {
                        let conn = pool.get().await?;
                        let new = NewUser {
                            email: &email,
                            display_name: "Worker",
                        };
                        User::create(&conn, &new).await
                    }
                    .await;
                    match result {
                        Ok(_) if after_restart && !did_recover => {
                            did_recover = true;
                            recovered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) if !was_ready => {
                            was_ready = true;
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();

    let all_ready = eventually(|| ready.load(Ordering::Relaxed) == 50).await;
    assert!(all_ready, "every worker succeeds before the restart");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "all calls succeed before"
    );
    cluster.stop();
    let felt = eventually(|| failures.load(Ordering::Relaxed) > 0).await;
    start();
    restarted.store(true, Ordering::Relaxed);
    let all_back = eventually(|| recovered.load(Ordering::Relaxed) == 50).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    assert!(felt, "the restart was felt as errors");
    assert!(
        all_back,
        "every worker succeeded again after the restart: {} of 50",
        recovered.load(Ordering::Relaxed)
    );
}

/// Polls `done` until it holds or 30 s pass; says which.
async fn eventually(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
