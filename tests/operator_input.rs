//! What an operator can type wrong must never lose data, hang, or print a secret: downgrade
//! targets that would revert more than asked, and `migrate create` run twice in a second.

mod common;

use app::migrations;
use common::{TempDir, TestDb, count, migrate, ok, stderr, versions};

/// A downgrade target that is not below the current version, or more steps than are applied,
/// is refused before anything is written: versions, schema and rows stay as they were.
#[tokio::test]
async fn downgrade_refuses_targets_that_would_revert_more_than_asked() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    common::user(&mut conn, "kept@example.com").await;
    let before = versions(&mut conn).await;
    let schema = migrations::dump_schema(&db.url).unwrap();
    let current = before.last().unwrap().clone();
    let too_many = format!("-{}", before.len() + 1);

    let refused = [
        (vec!["downgrade", "head"], "current version is"),
        (
            vec!["downgrade", "29991231235959"],
            "is not below the current version",
        ),
        (
            vec!["downgrade", &current],
            "is not below the current version",
        ),
        (
            vec!["downgrade", &too_many],
            &*format!("applied ({})", before.len()),
        ),
        (vec!["downgrade", "+1"], "steps go -N"),
        (vec!["upgrade", "-1"], "steps go +N"),
    ];
    for (args, expect) in refused {
        let out = migrate(Some(&db.url), &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {expect:?} not in {err}");
        assert_eq!(
            versions(&mut conn).await,
            before,
            "{args:?} changed versions"
        );
        assert_eq!(
            migrations::dump_schema(&db.url).unwrap(),
            schema,
            "{args:?}"
        );
        assert_eq!(count(&mut conn, "users").await, 1, "{args:?} lost rows");
    }

    // Everything goes only when asked for by name.
    ok(migrate(Some(&db.url), &["downgrade", "base"]));
    assert!(versions(&mut conn).await.is_empty());
}

/// Two `create` in the same second get distinct versions, and every command still works.
#[tokio::test]
async fn create_twice_in_a_second_gives_two_versions() {
    let db = TestDb::new().await;
    let dir = common::copy_of_migrations("create_twice");
    let dir_arg = dir.0.to_str().unwrap();
    for message in ["add notes", "add notes"] {
        ok(migrate(None, &["create", message, "--dir", dir_arg]));
    }
    let all = folders(&dir);
    let mut versions: Vec<String> = (all.iter())
        .map(|f| f.split('_').next().unwrap().replace('-', ""))
        .collect();
    versions.dedup();
    assert_eq!(versions.len(), all.len(), "a version repeats: {all:?}");
    let url = Some(&db.url);
    ok(migrate(url, &["upgrade", "--dir", dir_arg]));
    ok(migrate(url, &["current", "--check", "--dir", dir_arg]));
    ok(migrate(url, &["verify", "--dir", dir_arg]));
    ok(migrate(url, &["downgrade", "-2", "--dir", dir_arg]));
    ok(migrate(None, &["lint", "--dir", dir_arg]));
}

/// A message never becomes SQL: it is a slug in the folder name and one comment line.
#[test]
fn create_keeps_the_message_out_of_the_sql() {
    let dir = TempDir::new("create_message");
    let dir_arg = dir.0.to_str().unwrap();
    let message = "Zählung\nDROP TABLE users; -- ünïcode Ωmega";
    ok(migrate(None, &["create", message, "--dir", dir_arg]));
    let folder = folders(&dir).pop().unwrap();
    assert!(
        folder.ends_with("_zählung_drop_table_users_ünïcode_ωmega"),
        "{folder}"
    );
    for file in ["up.sql", "down.sql"] {
        let sql = std::fs::read_to_string(dir.0.join(&folder).join(file)).unwrap();
        assert!(
            sql.lines()
                .all(|l| l.trim().is_empty() || l.starts_with("--")),
            "{file} has a live line:\n{sql}"
        );
    }
    let out = migrate(None, &["create", "!!! ---", "--dir", dir_arg]);
    assert!(
        stderr(&out).contains("letters or digits"),
        "{}",
        stderr(&out)
    );
    ok(migrate(None, &["create", "Ωmega", "--dir", dir_arg]));
}

fn folders(dir: &TempDir) -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    all.sort();
    all
}

/// No fragment of a password appears in any output of either binary, however the URL is
/// malformed, given as `--url` or as `DATABASE_URL`.
#[test]
fn no_password_fragment_is_printed_for_malformed_urls() {
    let pw = "Kx9q/Vb7w@Zr4t?Lm2p#Hn5c:Jd8y";
    let fragments = [
        "Kx9q", "Vb7w", "Zr4t", "Lm2p", "Hn5c", "Jd8y", "1234", "5678",
    ];
    let urls = [
        format!("postgres://app:{pw}@127.0.0.1:1/db"),
        format!("postgress://app:{pw}@127.0.0.1:1/db"),
        format!("postgres//app:{pw}@127.0.0.1:1/db"),
        format!("app:{pw}@127.0.0.1:1/db"),
        format!("postgres://app:{pw}"),
        "postgres://app:Kx9q/Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q?Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q#Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:1234/5678@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q%ZZVb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q@127.0.0.1:99999/db".into(),
        "postgres://[::1:app:Kx9q@127.0.0.1/db".into(),
        "postgres://app:Kx9q".into(),
        "postgres://127.0.0.1:1/db?password=Kx9q&sslmode=disable".into(),
        format!("host=127.0.0.1 port=1 user=app password={pw} dbname=db"),
        "host=127.0.0.1 password='Kx9q Vb7w' dbname=db".into(),
        "Kx9qVb7w".into(),
    ];
    let bins = [
        (env!("CARGO_BIN_EXE_init_db"), vec![]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["current"]),
    ];
    for url in &urls {
        for (bin, args) in &bins {
            let by_flag = std::process::Command::new(bin)
                .args(args)
                .args(["--url", url])
                .env_remove("DATABASE_URL")
                .output()
                .unwrap();
            let by_env = std::process::Command::new(bin)
                .args(args)
                .env("DATABASE_URL", url)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap();
            for out in [by_flag, by_env] {
                let all = format!("{}{}", common::stdout(&out), stderr(&out));
                assert!(!out.status.success(), "{url}: {all}");
                assert!(!all.contains("panicked"), "{url}: {all}");
                for fragment in fragments {
                    assert!(!all.contains(fragment), "{url}: {fragment} shown in\n{all}");
                }
            }
        }
    }
    // Where a reserved character in the password is the likely cause, the error says so.
    let out = migrate(None, &["current", "--url", &urls[5]]);
    assert!(stderr(&out).contains("percent-encode"), "{}", stderr(&out));
}
