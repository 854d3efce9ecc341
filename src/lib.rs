//! Test harness for the template: generates `template/` into `target/` with cargo-generate
//! and runs commands in the generated project, sharing one `CARGO_TARGET_DIR` so Diesel and
//! Tokio compile once per machine, not once per project.
//!
//! The PostgreSQL server comes from `DATABASE_URL` (set by `scripts/test.sh`), else
//! `127.0.0.1:5432`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The repository root (where `cargo-generate.toml` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory shared by the harness and every generated project.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The server the tests use, as a URL whose database may be replaced.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced (any `?query` kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// Generated projects build into one target dir; tests that build binaries take this
/// lock so one project's `init_db` is not replaced by another's while it runs.
pub fn build_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Generates the template as `name` into `target/generated/<label>/` (replacing an older
/// copy) and returns the project directory.
pub fn generate(name: &str, label: &str) -> PathBuf {
    let parent = repo_root().join("target/generated").join(label);
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&parent).unwrap();
    let out = Command::new("cargo")
        .args(["generate", "--path"])
        .arg(repo_root())
        .args([
            "template",
            "--name",
            name,
            "--silent",
            "--vcs",
            "none",
            "--destination",
        ])
        .arg(&parent)
        .output()
        .expect(
            "run cargo generate (install: cargo install cargo-generate --locked --version 0.23.7)",
        );
    assert_success("cargo generate", &out);
    let mut dirs = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().path());
    let project = dirs.next().expect("cargo generate wrote no directory");
    assert!(dirs.next().is_none(), "one project expected in {parent:?}");
    project
}

/// Runs `cargo <args>` in `dir` with the shared target dir; panics with its output on failure.
pub fn cargo(dir: &Path, args: &[&str]) -> Output {
    cargo_with(dir, args, &[])
}

/// [`cargo`] with extra environment variables.
pub fn cargo_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .envs(env.iter().copied())
        .output()
        .expect("run cargo");
    assert_success(&format!("cargo {}", args.join(" ")), &out);
    out
}

/// Panics with the command's stdout and stderr unless it succeeded.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stdout of a finished command, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
