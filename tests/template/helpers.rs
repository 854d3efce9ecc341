//! Helpers for the template repository's own checks (this program, `tests/template/`):
//! generating the root with cargo-generate and running cargo in the result.
//! cargo-generate.toml ignores this folder, so generated projects carry none of it.
//!
//! Every generated project builds into the same target dir as the root, so Diesel and Tokio
//! compile once per machine, not once per project.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The repository root: the application and the template.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target dir shared by the root and every generated project.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Held by every check that builds or runs a project in the shared target dir: each writes
/// `target/debug/init_db` and the other binaries there, so two at once would run each
/// other's. They used to be programs of their own, which cargo runs one after another.
static SHARED_TARGET: Mutex<()> = Mutex::new(());

/// Waits for the shared target dir and holds it until the guard drops. A check that failed
/// while holding it leaves nothing half-done that the next one relies on, so a poisoned lock
/// is taken as it is.
pub fn shared_target() -> MutexGuard<'static, ()> {
    SHARED_TARGET.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True if `tool --version` runs. When it does not, the check is skipped with a message,
/// unless `require` is set in the environment (scripts/test.sh sets it after installing).
pub fn have(tool: &[&str], require: &str) -> bool {
    let found = Command::new(tool[0])
        .args(&tool[1..])
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "`{}` is required ({require} is set)",
            tool.join(" ")
        );
        eprintln!(
            "skipped: `{}` is not installed (scripts/test.sh installs it)",
            tool.join(" ")
        );
    }
    found
}

/// True if cargo-generate is installed; see [`have`].
pub fn have_cargo_generate() -> bool {
    have(&["cargo", "generate"], "REQUIRE_CARGO_GENERATE")
}

/// Generates the root as `name` into `target/generated/<label>/` (replacing an older copy)
/// and returns the project directory. It generates from a copy of the checkout's own files
/// (`stage_template` in scripts/lib.sh, as quickstart does): cargo-generate would copy the
/// built `target/` too.
pub fn generate(name: &str, label: &str) -> PathBuf {
    let parent = root().join("target/generated").join(label);
    let source = root()
        .join("target/generated")
        .join(format!("{label}-source"));
    for dir in [&parent, &source] {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::fs::create_dir_all(&parent).unwrap();
    let staged = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1/scripts/lib.sh" && stage_template "$2""#)
        .args(["stage", root().to_str().unwrap(), source.to_str().unwrap()])
        .output()
        .expect("run bash");
    assert_success("stage_template", &staged);
    let out = Command::new("cargo")
        .args(["generate", "--path"])
        .arg(&source)
        .args(["--name", name, "--silent", "--vcs", "none", "--destination"])
        .arg(&parent)
        .output()
        .expect("run cargo generate");
    assert_success(&format!("cargo generate --name {name}"), &out);
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
        // Its own failover test once, in the template's run, not again in every project.
        .env_remove("REQUIRE_PG_AUTO_FAILOVER")
        .envs(env.iter().copied())
        .output()
        .expect("run cargo");
    assert_success(
        &format!("cargo {} in {}", args.join(" "), dir.display()),
        &out,
    );
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

/// Checks the table counts `init_db --seed` printed: every table of the model is there and
/// has rows.
pub fn assert_seeded(out: &str) {
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
}

/// Every file under `dir` whose path relative to it `skip` does not reject (a rejected
/// folder is not entered), relative and sorted.
pub fn files_under(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap();
            if skip(rel) {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, skip, out);
            } else {
                out.push(rel.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, skip, &mut out);
    out.sort();
    out
}
