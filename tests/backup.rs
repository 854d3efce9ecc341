//! Backup before migrating, and a restore that works: history, schema and rows agree again,
//! the next upgrade succeeds, and a failed restore leaves the database as it was.

mod common;

use app::db::quote_ident;
use app::migrations;
use common::{TempDir, TestDb, count, migrate, ok, stderr, versions};
use diesel_async::RunQueryDsl;

// Multi-threaded: a dropped connection's goodbye is sent by its driver task while this
// test blocks on the migrate process, and the restore waits for the database to be free.
#[tokio::test(flavor = "multi_thread")]
async fn restore_puts_back_schema_history_and_rows_and_upgrade_runs_again() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    common::user(&mut conn, "kept@example.com").await;
    let before_versions = versions(&mut conn).await;
    let before_schema = migrations::dump_schema(&db.url).unwrap();
    drop(conn);

    let dir = common::copy_of_migrations("backup");
    let extra = dir.0.join("2099-01-01-000000_extra");
    std::fs::create_dir_all(&extra).unwrap();
    let up = "CREATE TABLE extra (id bigint PRIMARY KEY);\nINSERT INTO extra VALUES (1), (2);\n";
    std::fs::write(extra.join("up.sql"), up).unwrap();
    std::fs::write(extra.join("down.sql"), "DROP TABLE extra;\n").unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let files = TempDir::new("dumps");
    let dump = files.0.join("before.dump");
    let dump_arg = dump.to_str().unwrap();

    let out = ok(migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir_arg, "--backup", dump_arg],
    ));
    assert!(out.contains("backup:") && out.contains("applied 2099-01-01-000000_extra"));
    let mut conn = db.conn().await;
    assert_eq!(count(&mut conn, "extra").await, 2);
    drop(conn);

    let out = ok(migrate(Some(&db.url), &["restore", dump_arg]));
    let kept = out
        .split("kept as ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = db.conn().await;
    assert_eq!(
        versions(&mut conn).await,
        before_versions,
        "history as before"
    );
    assert_eq!(
        migrations::dump_schema(&db.url).unwrap(),
        before_schema,
        "schema as before"
    );
    assert_eq!(count(&mut conn, "users").await, 1, "rows as before");
    ok(migrate(Some(&db.url), &["verify", "--dir", dir_arg]));
    drop(conn);
    ok(migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]));

    // The database from before the restore is kept, with the migration applied.
    let kept_url = db.url.with_database(&kept);
    let mut old = app::db::connect(&kept_url).await.unwrap();
    assert_eq!(count(&mut old, "extra").await, 2);
    drop(old);
    let mut admin = app::db::connect(&db.url.with_database("postgres"))
        .await
        .unwrap();
    let sql = format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&kept));
    diesel::sql_query(sql).execute(&mut admin).await.unwrap();
}

#[tokio::test]
async fn a_failed_restore_leaves_the_database_as_it_was() {
    let db = TestDb::new().await;
    let files = TempDir::new("bad_dump");
    let bad = files.0.join("not-a-dump");
    std::fs::write(&bad, "this is not pg_dump output").unwrap();
    let out = migrate(Some(&db.url), &["restore", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pg_restore failed") && err.contains("is as it was"),
        "{err}"
    );
    let mut conn = db.conn().await;
    assert!(!versions(&mut conn).await.is_empty(), "still migrated");

    // A session on the database blocks the swap: refused, nothing changed.
    let good = files.0.join("good.dump");
    app::backup::dump(&db.url, &good).unwrap();
    let out = migrate(Some(&db.url), &["restore", good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stop the application"),
        "{}",
        stderr(&out)
    );
    assert!(!versions(&mut conn).await.is_empty());
}
