//! A wrong password is refused with one clear line and the password masked. Needs a server
//! that checks passwords, so this starts a private cluster with scram-sha-256 auth (and, like
//! the restart test, skips without PostgreSQL's server binaries unless REQUIRE_PG_BINARIES=1).

mod common;

use std::process::Command;

use app::db::DatabaseUrl;
use common::{Cluster, pg_binaries_present};

fn init_db(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--url", url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn wrong_password_is_one_line_with_password_masked() {
    if !pg_binaries_present() {
        return;
    }
    let cluster = Cluster::new("pw");
    let server = cluster.start(&[("PG_PASSWORD", "right-secret")]);
    let good_url = DatabaseUrl::parse(&server)
        .unwrap()
        .with_database("pw_check");
    let good_url = good_url.expose();

    let out = init_db(&good_url.replace(":right-secret@", ":wrong-secret@"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains("postgres:***@"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr.contains("wrong-secret") && !stdout.contains("wrong-secret"));

    let out = init_db(good_url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "init_db with the right password: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("right-secret"), "{stdout}");
}
