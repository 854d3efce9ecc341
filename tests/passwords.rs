//! A wrong password is refused with one clear line and the password masked. Needs a server
//! that checks passwords, so this starts a private cluster with scram-sha-256 auth.

use std::process::Command;

use diesel_template_harness::{
    assert_success, build_lock, cargo, generate, repo_root, stdout, target_dir, with_database,
};

#[test]
fn wrong_password_is_one_line_with_password_masked() {
    let _lock = build_lock();
    let project = repo_root().join("target/generated/main/my-service");
    let project = if project.join("Cargo.toml").exists() {
        project
    } else {
        generate("my-service", "main")
    };
    cargo(&project, &["build", "--bin", "init_db"]);

    let cluster = tempdir("pw");
    let pg = repo_root().join("template/scripts/pg.sh");
    let start = Command::new(&pg)
        .args(["start", cluster.to_str().unwrap()])
        .env("PG_PASSWORD", "right-secret")
        .output()
        .unwrap();
    assert_success("pg.sh start", &start);
    let _stop = Stop(pg.clone(), cluster.clone());
    let server = stdout(&start).trim().to_owned();
    let good_url = with_database(&server, "pw_check");

    let bad_url = good_url.replace(":right-secret@", ":wrong-secret@");
    let out = Command::new(target_dir().join("debug/init_db"))
        .args(["--url", &bad_url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains("postgres:***@"), "{stderr}");
    assert!(!stderr.contains("wrong-secret") && !stdout(&out).contains("wrong-secret"));

    let out = Command::new(target_dir().join("debug/init_db"))
        .args(["--url", &good_url])
        .output()
        .unwrap();
    assert_success("init_db with the right password", &out);
    assert!(!stdout(&out).contains("right-secret"), "{}", stdout(&out));
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops and removes the private cluster when the test ends, passed or failed.
struct Stop(std::path::PathBuf, std::path::PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).arg("stop").arg(&self.1).output();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}
