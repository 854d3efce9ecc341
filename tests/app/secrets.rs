//! Secrets stay out of sight of other local users: child tools (pg_dump, diesel_cli) get the
//! password in their environment, never on their command line, which `ps` shows to everyone.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::{TempDir, TestDb};
use app::db::DatabaseUrl;

/// Stand-ins for pg_dump and diesel that write down their own `/proc/<pid>/cmdline` and the
/// password they were given, then fail.
fn fake_tools(dir: &TempDir) {
    for tool in ["pg_dump", "diesel"] {
        let path = dir.0.join(tool);
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\n\
             tr '\\0' ' ' < /proc/$$/cmdline >> \"{log}/{tool}.argv\"\n\
             printf '%s\\n' \"$PGPASSWORD\" >> \"{log}/{tool}.env\"\nexit 1\n",
            log = dir.0.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test]
async fn child_tools_get_the_password_in_their_environment_not_argv() {
    let db = TestDb::new().await;
    let secret = "Kx9q-child-secret";
    // The test server trusts local connections, so any password reaches the tools.
    let mut raw = url::Url::parse(db.url.expose()).unwrap();
    if raw.username().is_empty() {
        raw.set_username("postgres").unwrap();
    }
    raw.set_password(Some(secret)).unwrap();
    let url = DatabaseUrl::parse(raw.as_str()).unwrap();
    let bin = TempDir::new("fake_tools");
    fake_tools(&bin);
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let drafts = TempDir::new("drafts");
    // A backup never overwrites a file: a name that does not exist yet.
    let dump = drafts.0.join("never-written.dump");
    let runs: [Vec<&str>; 3] = [
        vec!["upgrade", "--backup", dump.to_str().unwrap()],
        vec!["check"],
        vec![
            "create",
            "--autogenerate",
            "probe",
            "--dir",
            drafts.0.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(&args)
            .args(["--url", url.expose()])
            .env("PATH", &path)
            .env_remove("DATABASE_URL")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: the fake tool fails");
    }
    for tool in ["pg_dump", "diesel"] {
        let read = |ext: &str| std::fs::read_to_string(bin.0.join(format!("{tool}.{ext}")));
        let argv = read("argv").unwrap_or_else(|_| panic!("{tool} never ran"));
        assert!(argv.contains("postgres://"), "{tool}: {argv}");
        assert!(
            !argv.contains(secret),
            "{tool} had the password in argv: {argv}"
        );
        let env = read("env").unwrap();
        assert!(env.lines().all(|l| l == secret), "{tool} got {env:?}");
    }
}

/// `pg_mask` in scripts/pg.sh, which every script prints URLs through, hides a password
/// wherever the URL carries it: user info, a `password=` parameter in any case, a
/// percent-encoded parameter name; the rest stays readable.
#[test]
fn pg_sh_masks_a_password_in_the_user_info_or_the_query() {
    let secret = "Pm-s3cret";
    let urls = [
        format!("postgres://u@db.example/app?password={secret}"),
        format!("postgres://u@db.example/app?sslmode=require&PASSWORD={secret}&x=1"),
        format!("postgres://u:{secret}@db.example:5432/app?password={secret}"),
        format!("postgres://u:{secret}@{secret}@db.example/app"),
        format!("postgres://u@db.example/app?pass%77ord={secret}"),
        format!("host=db.example password={secret} dbname=app"),
    ];
    for url in urls {
        let out = Command::new("bash")
            .arg("-c")
            .arg(concat!(
                ". '",
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/pg.sh'; pg_mask \"$URL\""
            ))
            .env("URL", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let masked = String::from_utf8(out.stdout).unwrap();
        assert!(!masked.contains(secret), "{url} shown as {masked}");
        assert!(
            masked.contains("db.example") && masked.contains("***"),
            "{masked}"
        );
    }
}
