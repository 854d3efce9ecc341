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
