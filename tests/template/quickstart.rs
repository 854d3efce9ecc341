//! `scripts/quickstart.sh` ends with a generated project and a migrated, seeded database,
//! on the server it is given and, forced, on a private cluster it starts itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::helpers::{
    assert_seeded, assert_success, have_cargo_generate, root, shared_target, stdout, target_dir,
};
use crate::support::{Cluster, TempDir, TestDb};

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
    let _target = shared_target();
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

/// Stand-ins, first on PATH, that write down their own command line (`/proc/<pid>/cmdline`,
/// what `ps` shows every local user) and `DATABASE_URL`. `cargo generate` copies the scripts
/// and manifest (all quickstart needs afterwards, and cargo-generate need not be installed);
/// every other cargo command and the PostgreSQL clients succeed doing nothing.
fn recording_tools(bin: &Path) {
    let record = format!(
        "tr '\\0' ' ' < /proc/$$/cmdline >> '{log}/argv'; echo >> '{log}/argv'\n\
         printf '%s\\n' \"${{DATABASE_URL:-}}\" >> '{log}/env'\n",
        log = bin.display()
    );
    let cargo = format!(
        "#!/bin/sh\n{record}\
         [ \"$1 $2\" = 'generate --version' ] && exit 0\n\
         if [ \"$1\" = generate ]; then\n\
           while [ $# -gt 0 ]; do\n\
             case \"$1\" in --path) src=$2; shift ;; --name) name=$2; shift ;; esac; shift\n\
           done\n\
           mkdir \"$name\" && exec cp -R \"$src/scripts\" \"$src/Cargo.toml\" \"$name/\"\n\
         fi\n\
         exit 0\n"
    );
    let tool = format!("#!/bin/sh\n{record}exit 0\n");
    for (name, script) in [
        ("cargo", &cargo),
        ("psql", &tool),
        ("createdb", &tool),
        ("pg_isready", &tool),
        ("pg_dump", &tool),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// quickstart hands the database URL to its tools in their environment, never on a command
/// line, prints it masked, and writes `.env` readable by its owner only.
#[test]
fn quickstart_keeps_the_password_off_command_lines_and_writes_env_0600() {
    let secret = "Qs-argv-s3cret";
    let url = format!("postgres://postgres:{secret}@127.0.0.1:5432/quick_argv");
    let bin = TempDir::new("quickstart_tools");
    recording_tools(&bin.0);
    let work = TempDir::new("quickstart_argv");
    let dir = work.0.join("svc");
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let out = Command::new(root().join("scripts/quickstart.sh"))
        .arg(&dir)
        .env("PATH", path)
        .env("DATABASE_URL", &url)
        .env("PROJECT_NAME", "argv-service")
        .output()
        .unwrap();
    assert_success("quickstart.sh", &out);
    let printed = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(secret), "{printed}");
    let argv = std::fs::read_to_string(bin.0.join("argv")).unwrap();
    assert!(
        argv.contains("init_db"),
        "init_db ran through cargo:\n{argv}"
    );
    assert!(
        !argv.contains(secret),
        "a password on a command line:\n{argv}"
    );
    let env = std::fs::read_to_string(bin.0.join("env")).unwrap();
    assert!(env.lines().any(|l| l == url), "{env}");
    let dotenv = dir.join(".env");
    assert_eq!(
        std::fs::read_to_string(&dotenv).unwrap(),
        format!("DATABASE_URL={url}\n")
    );
    let mode = std::fs::metadata(&dotenv).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, ".env is {mode:o}");
}
