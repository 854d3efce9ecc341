//! `scripts/quickstart.sh` ends with a generated project and a migrated, seeded database,
//! on the server it is given and, forced, on a private cluster it starts itself.

mod common;
mod template;

use std::path::Path;
use std::process::Command;

use common::{Cluster, TestDb};
use template::{assert_seeded, assert_success, have_cargo_generate, root, stdout, target_dir};

fn quickstart(dir: &Path, database_url: Option<&str>) -> String {
    let _ = std::fs::remove_dir_all(dir);
    let mut cmd = Command::new(root().join("scripts/quickstart.sh"));
    cmd.arg(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("PROJECT_NAME", "quick-service");
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env("PG_FORCE_PRIVATE", "1").env_remove("DATABASE_URL"),
    };
    let out = cmd.output().expect("run quickstart.sh");
    assert_success("quickstart.sh", &out);
    let out = stdout(&out);
    assert_seeded(&out);
    assert!(
        out.contains("cargo test"),
        "next commands are printed:\n{out}"
    );
    out
}

/// Runs a project script with the database found through the project's `.env`.
fn script(dir: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(dir.join("scripts").join(name))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_success(&format!("{name} {args:?}"), &out);
    stdout(&out)
}

/// Both ways in one test, one after the other: each runs the project's `init_db` from the
/// shared target dir, where a second project building at the same time would replace it.
#[test]
fn quickstart_ends_migrated_and_seeded_on_a_given_server_and_on_a_private_cluster() {
    if !have_cargo_generate() {
        return;
    }
    // A database of its own on the test server; quickstart takes DATABASE_URL as given.
    let database = TestDb::not_created();
    let dir = root().join("target/quickstart/server");
    let out = quickstart(&dir, Some(database.url.expose()));
    assert!(!out.contains("private PostgreSQL cluster"), "{out}");

    let dir = root().join("target/quickstart/private");
    let out = quickstart(&dir, None);
    let cluster = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("scripts/pg.sh stop "))
        .unwrap_or_else(|| panic!("quickstart names the cluster to stop:\n{out}"));
    // Stopped and removed however the test ends.
    let _cluster = Cluster(cluster.into());
    assert!(out.contains("private PostgreSQL cluster"), "{out}");

    // The cluster it left running serves the project: a second init_db changes nothing,
    // and the migration wrapper finds the same database through .env.
    let again = script(&dir, "init_db.sh", &["--seed"]);
    assert!(again.contains("already present"), "{again}");
    script(&dir, "migrate.sh", &["current", "--check"]);
    script(&dir, "migrate.sh", &["verify"]);
}
