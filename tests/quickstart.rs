//! `scripts/quickstart.sh` ends with a generated project and a migrated, seeded database,
//! on a running server and, forced, on a private cluster it starts itself.

use std::process::Command;

use diesel_template_harness::{
    assert_success, build_lock, database_url, repo_root, stdout, target_dir, with_database,
};

fn quickstart(dir: &std::path::Path, database_url: Option<&str>) -> String {
    let _ = std::fs::remove_dir_all(dir);
    let mut cmd = Command::new(repo_root().join("scripts/quickstart.sh"));
    cmd.arg(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("PROJECT_NAME", "quick-service");
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env("PG_FORCE_PRIVATE", "1").env_remove("DATABASE_URL"),
    };
    let out = cmd.output().expect("run quickstart.sh");
    assert_success("quickstart.sh", &out);
    stdout(&out)
}

/// The row counts init_db printed: every table of the model exists and has demo rows.
fn assert_seeded(out: &str) {
    let counts: Vec<(&str, u64)> = out
        .lines()
        .skip_while(|l| l.trim() != "tables:")
        .skip(1)
        .map_while(|l| {
            let mut words = l.split_whitespace();
            let table = words.next()?;
            let rows = words.next()?.parse().ok()?;
            (words.next() == Some("rows")).then_some((table, rows))
        })
        .collect();
    for table in [
        "users",
        "teams",
        "team_members",
        "tasks",
        "tags",
        "task_tags",
    ] {
        assert!(
            counts.iter().any(|(t, _)| *t == table),
            "no {table} in:\n{out}"
        );
    }
    assert!(
        counts.iter().all(|(_, rows)| *rows > 0),
        "empty tables in:\n{out}"
    );
    assert!(
        out.contains("cargo test"),
        "next commands are printed:\n{out}"
    );
}

#[test]
fn quickstart_forced_private_cluster_ends_migrated_and_seeded() {
    let _lock = build_lock();
    let dir = repo_root().join("target/quickstart/private");
    let out = quickstart(&dir, None);
    let cluster = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("scripts/pg.sh stop "))
        .unwrap_or_else(|| panic!("quickstart names the cluster to stop:\n{out}"));
    let _stop = StopCluster(dir.join("scripts/pg.sh"), cluster.to_owned());
    assert!(out.contains("private PostgreSQL cluster"), "{out}");
    assert_seeded(&out);

    // The cluster it left running serves the project: a second init_db changes nothing.
    let again = Command::new(dir.join("scripts/init_db.sh"))
        .arg("--seed")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_success("init_db.sh again", &again);
    let again = stdout(&again);
    assert!(again.contains("already present"), "{again}");

    // The migration wrapper finds the same database through .env.
    for args in [&["current", "--check"][..], &["verify"][..]] {
        let out = Command::new(dir.join("scripts/migrate.sh"))
            .args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", target_dir())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert_success(&format!("migrate.sh {args:?}"), &out);
    }
}

/// Stops the private cluster quickstart left running, even when the test fails.
struct StopCluster(std::path::PathBuf, String);

impl Drop for StopCluster {
    fn drop(&mut self) {
        let stop = Command::new(&self.0).args(["stop", &self.1]).output();
        if !matches!(&stop, Ok(out) if out.status.success()) {
            eprintln!("could not stop the private cluster in {}: {stop:?}", self.1);
        }
    }
}

#[test]
fn quickstart_uses_the_server_it_is_given() {
    let _lock = build_lock();
    let dir = repo_root().join("target/quickstart/server");
    // A database of its own on the test server; quickstart takes DATABASE_URL as given.
    let url = with_database(&database_url(), "quick_service_harness");
    let _ = Command::new("dropdb")
        .args([
            "--if-exists",
            "--force",
            "--maintenance-db",
            &database_url(),
            "quick_service_harness",
        ])
        .output();
    let out = quickstart(&dir, Some(&url));
    assert!(!out.contains("private PostgreSQL cluster"), "{out}");
    assert_seeded(&out);
}
