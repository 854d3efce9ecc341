//! `migrate`, end to end against PostgreSQL: every verb, the lock, atomic failure, checksums,
//! the round-trip test and the linter. Custom migration sets live in temp folders (`--dir`).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{self, TempDir, TestDb, migrate, ok, stderr, stdout, table_exists, versions};
use app::db::DatabaseUrl;
use app::migrations::{self, LOCK_KEY};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The project's migrations plus `extra` (folder, up.sql, down.sql) in a temp folder.
fn migrations_with(extra: &[(&str, &str, &str)]) -> TempDir {
    let dir = support::copy_of_migrations("migrations");
    for (folder, up, down) in extra {
        add(&dir.0, folder, up, down);
    }
    dir
}

fn add(dir: &Path, folder: &str, up: &str, down: &str) {
    let path = dir.join(folder);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("up.sql"), up).unwrap();
    std::fs::write(path.join("down.sql"), down).unwrap();
}

/// Adds a `run_in_transaction = false` migration to `dir`.
fn add_outside_transaction(dir: &Path, folder: &str, up: &str, down: &str) {
    add(dir, folder, up, down);
    std::fs::write(
        dir.join(folder).join("metadata.toml"),
        "run_in_transaction = false\n",
    )
    .unwrap();
}

/// The embedded migrations, as the runner reads them.
fn embedded() -> Vec<migrations::Migration> {
    migrations::Migrator::embedded()
        .unwrap()
        .migrations()
        .to_vec()
}

fn all_versions() -> Vec<String> {
    embedded()
        .iter()
        .map(|m| m.folder.split('_').next().unwrap().replace('-', ""))
        .collect()
}

#[tokio::test]
async fn upgrade_current_history_downgrade_redo_and_stamp() {
    let db = TestDb::empty().await;
    let url = Some(&db.url);
    let total = embedded().len();

    let out = migrate(url, &["current", "--check"]);
    assert_eq!(out.status.code(), Some(1), "behind: --check fails");
    assert!(stdout(&out).contains("base (nothing applied)"));

    let out = ok(migrate(url, &["upgrade", "--sql"]));
    assert!(
        out.contains("CREATE TABLE users") && out.contains("SET LOCAL lock_timeout"),
        "{out}"
    );
    let mut conn = db.conn().await;
    assert!(versions(&mut conn).await.is_empty(), "--sql runs nothing");

    let out = ok(migrate(url, &["upgrade", "+2"]));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("applied ")).count(),
        2,
        "{out}"
    );
    let out = ok(migrate(url, &["current", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"].as_array().unwrap().len(), total - 2);

    ok(migrate(url, &["upgrade"]));
    assert_eq!(versions(&mut conn).await, all_versions());
    ok(migrate(url, &["current", "--check"]));
    assert!(ok(migrate(url, &["upgrade"])).contains("up to date"));

    let history: Vec<serde_json::Value> =
        serde_json::from_str(&ok(migrate(url, &["history", "--json"]))).unwrap();
    assert_eq!(history.len(), total);
    assert!(
        history
            .iter()
            .all(|h| h["state"] == "ok" && h["duration_ms"].is_i64())
    );
    assert!(ok(migrate(url, &["history"])).contains("create_users"));

    // From here on, steps are counted from the last of the model's own migrations.
    ok(migrate(url, &["downgrade", "20250101000007"]));
    let out = ok(migrate(url, &["downgrade"]));
    assert!(
        out.contains("reverted 2025-01-01-000007_create_comments"),
        "{out}"
    );
    assert!(!table_exists(&mut conn, "comments").await);
    let out = ok(migrate(url, &["downgrade", "--sql", "-2"]));
    assert!(out.contains("DROP TABLE notification_channels") && out.contains("DROP TABLE bugs"));
    assert!(
        table_exists(&mut conn, "bugs").await,
        "--sql reverts nothing"
    );
    ok(migrate(url, &["downgrade", "20250101000004"]));
    assert!(!table_exists(&mut conn, "bugs").await && table_exists(&mut conn, "tags").await);
    ok(migrate(url, &["upgrade", "20250101000005"]));
    assert!(table_exists(&mut conn, "bugs").await && !table_exists(&mut conn, "comments").await);

    let out = ok(migrate(url, &["redo"]));
    assert!(
        out.contains("reverted 2025-01-01-000005_create_bugs")
            && out.contains("applied 2025-01-01-000005_create_bugs")
    );

    ok(migrate(url, &["downgrade", "base"]));
    assert!(versions(&mut conn).await.is_empty());
    assert!(!table_exists(&mut conn, "users").await);

    // stamp records without running: the tables stay absent, the versions say otherwise.
    ok(migrate(url, &["stamp", "20250101000002"]));
    assert_eq!(versions(&mut conn).await.len(), 3);
    assert!(!table_exists(&mut conn, "users").await);
    ok(migrate(url, &["stamp", "base"]));
    ok(migrate(url, &["upgrade"]));
    assert_eq!(versions(&mut conn).await, all_versions());
}

#[tokio::test]
async fn four_concurrent_upgrades_apply_each_migration_once() {
    let db = TestDb::empty().await;
    // A slow extra migration makes the runs overlap.
    let dir = migrations_with(&[(
        "2099-01-01-000000_slow",
        "SELECT pg_sleep(1);\nCREATE TABLE slow_marker (id int);",
        "DROP TABLE slow_marker;",
    )]);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args([
                "upgrade",
                "--url",
                db.url.expose(),
                "--dir",
                dir.0.to_str().unwrap(),
            ])
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Four at once, as when every replica of a service migrates on start-up.
    let runs: Vec<Output> = (0..4)
        .map(|_| spawn())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    for run in &runs {
        assert!(run.status.success(), "{}", stderr(run));
    }
    let mut applied: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            stdout(run)
                .lines()
                .filter_map(|l| l.strip_prefix("applied "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    applied.sort();
    let mut expected: Vec<String> = embedded().into_iter().map(|m| m.folder).collect();
    expected.push("2099-01-01-000000_slow".into());
    assert_eq!(
        applied, expected,
        "each migration applied by exactly one process"
    );
    let mut conn = db.conn().await;
    assert!(table_exists(&mut conn, "slow_marker").await);
}

#[tokio::test]
async fn a_waiting_run_gives_up_with_a_clear_message() {
    let db = TestDb::empty().await;
    let mut holder = db.conn().await;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let out = migrate(Some(&db.url), &["upgrade", "--wait", "300ms"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another migration run holds the lock"),
        "{}",
        stderr(&out)
    );
    assert!(versions(&mut holder).await.is_empty());
    // Nothing pending takes no lock: a run while it is held still succeeds.
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    ok(migrate(Some(&db.url), &["upgrade"]));
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    assert!(ok(migrate(Some(&db.url), &["upgrade", "--wait", "100ms"])).contains("up to date"));
}

#[tokio::test]
async fn a_failing_migration_changes_nothing_and_names_the_statement() {
    let db = TestDb::new().await;
    let broken = "CREATE TABLE half_done (id bigint);\nCREATE TABLE broken (owner bigint REFERENCES no_such_table (id));\n";
    let dir = migrations_with(&[(
        "2099-01-01-000000_broken",
        broken,
        "DROP TABLE broken; DROP TABLE half_done;",
    )]);
    let before_schema = migrations::dump_schema(&db.url).unwrap();
    let mut conn = db.conn().await;
    let before_versions = versions(&mut conn).await;

    let out = migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir.0.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("2099-01-01-000000_broken/up.sql, statement 2 (line 2)"),
        "{err}"
    );
    assert!(err.contains("no_such_table"), "{err}");

    assert!(
        !table_exists(&mut conn, "half_done").await,
        "statement 1 rolled back"
    );
    assert_eq!(versions(&mut conn).await, before_versions);
    assert_eq!(migrations::dump_schema(&db.url).unwrap(), before_schema);
}

#[tokio::test]
async fn a_failed_migration_outside_a_transaction_is_dirty_not_applied() {
    let db = TestDb::new().await;
    let dir = migrations_with(&[]);
    add_outside_transaction(
        &dir.0,
        "2099-01-01-000000_concurrent_index",
        "CREATE INDEX CONCURRENTLY users_name_idx ON users (display_name);\nSELECT * FROM no_such_table;\n",
        "DROP INDEX CONCURRENTLY IF EXISTS users_name_idx;\n",
    );
    let folder = dir.0.join("2099-01-01-000000_concurrent_index");
    let dir_arg = dir.0.to_str().unwrap();

    let out = migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]);
    assert!(
        !out.status.success() && stderr(&out).contains("statement 2"),
        "{}",
        stderr(&out)
    );
    let mut conn = db.conn().await;
    assert!(
        !versions(&mut conn)
            .await
            .contains(&"20990101000000".to_owned()),
        "never recorded as applied"
    );
    let current = migrate(Some(&db.url), &["current", "--check", "--dir", dir_arg]);
    assert_eq!(current.status.code(), Some(1));
    assert!(stdout(&current).contains("dirty"), "{}", stdout(&current));
    let again = migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]);
    assert!(
        stderr(&again).contains("stamp"),
        "refuses until repaired: {}",
        stderr(&again)
    );

    // Repair by hand, then stamp records where the schema stands.
    std::fs::write(
        folder.join("up.sql"),
        "CREATE INDEX CONCURRENTLY users_name_idx ON users (display_name);\n",
    )
    .unwrap();
    ok(migrate(
        Some(&db.url),
        &["stamp", "20990101000000", "--dir", dir_arg],
    ));
    ok(migrate(
        Some(&db.url),
        &["current", "--check", "--dir", dir_arg],
    ));
}

#[tokio::test]
async fn lock_timeouts_are_retried_then_reported() {
    let db = TestDb::new().await;
    let dir = migrations_with(&[(
        "2099-01-01-000000_alter_users",
        "ALTER TABLE users ADD COLUMN nickname TEXT;",
        "ALTER TABLE users DROP COLUMN nickname;",
    )]);
    let mut holder = db.conn().await;
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .await
        .unwrap();
    diesel::sql_query("LOCK TABLE users IN ACCESS SHARE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let out = migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir_arg, "--lock-timeout", "100ms"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("lock timeout, retry 3"), "retried: {err}");
    assert!(err.contains("alter_users/up.sql, statement 1"), "{err}");
    diesel::sql_query("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    ok(migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir_arg, "--lock-timeout", "100ms"],
    ));
}

/// Only a real lock timeout is retried, recognised by the server's own message for one (in
/// whatever language the server speaks), not by English words in an error.
#[tokio::test]
async fn a_failure_that_only_mentions_a_lock_timeout_is_not_retried() {
    let db = TestDb::new().await;
    let dir = migrations_with(&[(
        "2099-01-01-000000_pretend",
        "DO $$ BEGIN RAISE EXCEPTION 'pretend lock timeout'; END $$;",
        "SELECT 1;",
    )]);
    let dir_arg = dir.0.to_str().unwrap();
    let out = migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("pretend lock timeout"), "{err}");
    assert!(
        !err.contains("retry"),
        "retried a failure that is no lock timeout: {err}"
    );
}

/// A lock timeout is recognised whatever language the server speaks: a private cluster with
/// `lc_messages = de_DE.UTF-8` (the locale compiled by `localedef` for the test, reached
/// through `LOCPATH`). Skipped, saying why, where the German locale sources are missing.
#[tokio::test]
async fn lock_timeouts_are_retried_under_another_server_language() {
    if !support::pg_binaries_present() {
        return;
    }
    let locales = TempDir::new("locales");
    let compiled = Command::new("localedef")
        .args(["-i", "de_DE", "-f", "UTF-8"])
        .arg(locales.0.join("de_DE.UTF-8"))
        .output();
    if !compiled.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: localedef cannot build de_DE.UTF-8 here");
        return;
    }
    let cluster = support::Cluster::new("de");
    let server = cluster.start(&[
        ("LOCPATH", locales.0.to_str().unwrap()),
        ("PG_EXTRA_OPTS", "-c lc_messages=de_DE.UTF-8"),
    ]);
    let url = DatabaseUrl::parse(&server)
        .unwrap()
        .with_database("de_check");
    ok(Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--url", url.expose()])
        .output()
        .unwrap());
    let dir = migrations_with(&[(
        "2099-01-01-000000_alter_users",
        "ALTER TABLE users ADD COLUMN nickname TEXT;",
        "ALTER TABLE users DROP COLUMN nickname;",
    )]);
    let mut holder = app::db::connect(&url).await.unwrap();
    for sql in ["BEGIN", "LOCK TABLE users IN ACCESS SHARE MODE"] {
        diesel::sql_query(sql).execute(&mut holder).await.unwrap();
    }
    let dir_arg = dir.0.to_str().unwrap();
    let args = ["upgrade", "--dir", dir_arg, "--lock-timeout", "100ms"];
    let out = migrate(Some(&url), &args);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("lock timeout, retry 3"), "retried: {err}");
    assert!(
        !err.contains("canceling statement"),
        "the server spoke English: {err}"
    );
    diesel::sql_query("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    ok(migrate(Some(&url), &args));
}

#[tokio::test]
async fn verify_names_edited_missing_and_out_of_order_migrations() {
    let db = TestDb::new().await;
    let dir = migrations_with(&[]);
    let dir_arg = dir.0.to_str().unwrap();
    assert!(ok(migrate(Some(&db.url), &["verify", "--dir", dir_arg])).contains("verified"));

    let edited = dir.0.join("2025-01-01-000004_create_tags/up.sql");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, text + "\n-- an innocent edit\n").unwrap();
    let out = migrate(Some(&db.url), &["verify", "--dir", dir_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("2025-01-01-000004_create_tags: changed after it was applied"),
        "{}",
        stderr(&out)
    );

    add(
        &dir.0,
        "2024-06-01-000000_late_arrival",
        "CREATE TABLE late (id int);",
        "DROP TABLE late;",
    );
    std::fs::remove_dir_all(dir.0.join("2025-01-01-000005_create_bugs")).unwrap();
    let problems: Vec<serde_json::Value> = serde_json::from_str(&stdout(&migrate(
        Some(&db.url),
        &["verify", "--json", "--dir", dir_arg],
    )))
    .unwrap();
    let kinds: Vec<_> = problems
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["changed", "missing", "out_of_order"],
        "{problems:?}"
    );
    let out = migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]);
    assert!(
        stderr(&out).contains("older than the applied"),
        "upgrade refuses: {}",
        stderr(&out)
    );
}

#[tokio::test]
async fn migrate_test_passes_our_migrations_and_catches_a_forgotten_index() {
    let db = TestDb::empty().await;
    let out = ok(migrate(Some(&db.url), &["test"]));
    assert!(out.contains("every migration reverts cleanly"), "{out}");

    let dir = migrations_with(&[(
        "2099-01-01-000000_index_titles",
        "CREATE INDEX tasks_title_lower_idx ON tasks (lower(title));",
        "SELECT 1; -- forgets DROP INDEX tasks_title_lower_idx",
    )]);
    let out = migrate(Some(&db.url), &["test", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("2099-01-01-000000_index_titles: down.sql does not restore the schema"),
        "{err}"
    );
    assert!(
        err.contains("tasks_title_lower_idx"),
        "the diff names the index: {err}"
    );
    let mut conn = db.conn().await;
    assert!(
        versions(&mut conn).await.is_empty(),
        "the scratch database took the work"
    );
}

#[tokio::test]
async fn migrate_test_requires_an_index_on_every_foreign_key() {
    let db = TestDb::empty().await;
    let dir = migrations_with(&[(
        "2099-01-01-000000_unindexed_fk",
        "CREATE TABLE reminders (id bigint PRIMARY KEY, task_id bigint REFERENCES tasks (id));",
        "DROP TABLE reminders;",
    )]);
    let out = migrate(Some(&db.url), &["test", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reminders.reminders_task_id_fkey has no index"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lint_flags_unsafe_ddl_and_honours_a_reasoned_ignore() {
    let dir = migrations_with(&[(
        "2099-01-01-000000_index_names",
        "CREATE INDEX users_name_idx ON users (display_name);",
        "DROP INDEX users_name_idx;",
    )]);
    let dir_arg = dir.0.to_str().unwrap();
    let out = migrate(None, &["lint", "--dir", dir_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("2099-01-01-000000_index_names/up.sql:1: require-concurrent-index-creation"),
        "{}",
        stdout(&out)
    );

    add(
        &dir.0,
        "2099-01-01-000000_index_names",
        "-- squawk-ignore require-concurrent-index-creation -- users is tiny and not yet live\nCREATE INDEX users_name_idx ON users (display_name);",
        "DROP INDEX users_name_idx;",
    );
    assert!(ok(migrate(None, &["lint", "--dir", dir_arg])).contains("no findings"));
    // Migrations up to the baseline are history: not judged.
    ok(migrate(
        None,
        &["lint", "--dir", dir_arg, "--baseline", "20990101000000"],
    ));
}

#[test]
fn init_and_create_lay_out_diesel_cli_folders() {
    let project = TempDir::new("project");
    let dir = project.0.join("migrations");
    let dir_arg = dir.to_str().unwrap();
    let out = ok(migrate(None, &["init", "--dir", dir_arg]));
    assert!(out.contains("created"), "{out}");
    let again = ok(migrate(None, &["init", "--dir", dir_arg]));
    assert!(!again.contains("created"), "idempotent: {again}");
    assert!(project.0.join("diesel.toml").exists());

    let out = ok(migrate(
        None,
        &["create", "Add user table!", "--dir", dir_arg],
    ));
    let created: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let folder = created
        .iter()
        .find(|f| f.ends_with("_add_user_table"))
        .unwrap_or_else(|| panic!("{created:?} {out}"));
    assert!(dir.join(folder).join("up.sql").exists() && dir.join(folder).join("down.sql").exists());
    assert_eq!(
        folder.len(),
        "2025-01-01-000000_add_user_table".len(),
        "diesel_cli's timestamp format"
    );

    ok(migrate(
        None,
        &[
            "create",
            "index concurrently",
            "--no-transaction",
            "--dir",
            dir_arg,
        ],
    ));
    let meta = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_index_concurrently"))
        .unwrap()
        .join("metadata.toml");
    assert_eq!(
        std::fs::read_to_string(meta).unwrap(),
        "run_in_transaction = false\n"
    );
}

#[test]
fn autogenerate_without_diesel_cli_says_how_to_install_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args([
            "create",
            "--autogenerate",
            "x",
            "--url",
            "postgres://u@127.0.0.1/x",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cargo install diesel_cli"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn upgrade_backup_writes_a_dump_first() {
    let db = TestDb::new().await;
    let file = TempDir::new("backup");
    let path = file.0.join("before.dump");
    let dir = migrations_with(&[(
        "2099-01-01-000000_extra",
        "CREATE TABLE extra (id int);",
        "DROP TABLE extra;",
    )]);
    let out = ok(migrate(
        Some(&db.url),
        &[
            "upgrade",
            "--backup",
            path.to_str().unwrap(),
            "--dir",
            dir.0.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains("backup:") && out.contains("applied 2099-01-01-000000_extra"),
        "{out}"
    );
    assert!(
        std::fs::metadata(&path).unwrap().len() > 1000,
        "a real dump"
    );
}

#[tokio::test]
async fn check_compares_schema_rs_with_the_migrations() {
    if Command::new("diesel").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("REQUIRE_DIESEL_CLI").is_none(),
            "diesel_cli required"
        );
        return;
    }
    let db = TestDb::empty().await;
    assert!(ok(migrate(Some(&db.url), &["check"])).contains("matches"));
    let dir = migrations_with(&[(
        "2099-01-01-000000_drift",
        "ALTER TABLE tags ADD COLUMN color TEXT;",
        "ALTER TABLE tags DROP COLUMN color;",
    )]);
    let out = migrate(Some(&db.url), &["check", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("color"), "{}", stderr(&out));
}

#[test]
fn every_verb_has_help() {
    for verb in [
        "init",
        "create",
        "upgrade",
        "downgrade",
        "current",
        "history",
        "redo",
        "stamp",
        "verify",
        "lint",
        "test",
        "check",
        "restore",
    ] {
        let out = migrate(None, &[verb, "--help"]);
        assert!(
            out.status.success() && stdout(&out).contains("Usage"),
            "{verb}"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn number(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    let row: Number = diesel::sql_query(sql).get_result(conn).await.unwrap();
    row.n
}

#[tokio::test]
async fn zero_downtime_rename_keeps_data_and_both_writers_working() {
    let db = TestDb::empty().await;
    let url = Some(&db.url);
    ok(migrate(url, &["upgrade", "20250101000007"]));
    let mut conn = db.conn().await;
    // Rows written before the sequence, more than one backfill batch of them.
    diesel::sql_query(
        "INSERT INTO users (email, name) \
         SELECT 'early' || g || '@example.com', 'Early ' || g FROM generate_series(1, 2500) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    // Phase 1, expand: old code (name) and new code (display_name) can both write.
    ok(migrate(url, &["upgrade", "+1"]));
    diesel::sql_query("INSERT INTO users (email, name) VALUES ('old@example.com', 'Old Writer')")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO users (email, display_name) VALUES ('new@example.com', 'New Writer')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let synced = "SELECT count(*) AS n FROM users WHERE email IN ('old@example.com', 'new@example.com') \
                  AND name = display_name";
    assert_eq!(
        number(&mut conn, synced).await,
        2,
        "the trigger fills the other column"
    );
    assert_eq!(
        number(
            &mut conn,
            "SELECT count(*) AS n FROM users WHERE display_name IS NULL"
        )
        .await,
        2500
    );

    // Phase 2, backfill in batches.
    ok(migrate(url, &["upgrade", "+1"]));
    assert_eq!(
        number(
            &mut conn,
            "SELECT count(*) AS n FROM users WHERE display_name IS NULL"
        )
        .await,
        0
    );

    // Phase 3: new rows are checked at once, then the column becomes NOT NULL.
    ok(migrate(url, &["upgrade", "+1"]));
    let blank = diesel::sql_query(
        "INSERT INTO users (email, display_name) VALUES ('blank@example.com', '  ')",
    )
    .execute(&mut conn)
    .await
    .map_err(app::Error::from)
    .unwrap_err();
    assert!(
        matches!(&blank, app::Error::Invalid { constraint, .. } if constraint == "users_display_name_not_blank")
    );
    ok(migrate(url, &["upgrade", "+1"]));
    let not_null = "SELECT count(*) AS n FROM pg_attribute WHERE attrelid = 'users'::regclass \
                    AND attname = 'display_name' AND attnotnull";
    assert_eq!(number(&mut conn, not_null).await, 1);

    // Phase 4, contract: the old column is gone, every early row kept its name.
    ok(migrate(url, &["upgrade"]));
    let kept = "SELECT count(*) AS n FROM users WHERE email LIKE 'early%' \
                AND display_name = 'Early ' || substring(email FROM 'early([0-9]+)@')";
    assert_eq!(number(&mut conn, kept).await, 2500);
    let user = app::models::User::by_email(&conn, "early7@example.com")
        .await
        .unwrap();
    assert_eq!(user.display_name, "Early 7");
    ok(migrate(url, &["verify"]));
}

#[tokio::test]
async fn migrate_test_catches_a_migration_that_loses_early_data() {
    let db = TestDb::empty().await;
    // Schema-wise harmless, but it throws away the comment written at an early step.
    let dir = migrations_with(&[(
        "2099-01-01-000000_prune_comments",
        "DELETE FROM comments WHERE created_at < now() + interval '1 day';",
        "SELECT 1;",
    )]);
    let out = migrate(Some(&db.url), &["test", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("2025-02-01-000005_users_drop_name: test_expect.sql returned false"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn autogenerate_drafts_only_what_changed() {
    if Command::new("diesel").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("REQUIRE_DIESEL_CLI").is_none(),
            "diesel_cli required"
        );
        return;
    }
    let db = TestDb::new().await;
    let dir = TempDir::new("autogen");
    let dir_arg = dir.0.to_str().unwrap();
    let draft = |message: &str| {
        ok(migrate(
            Some(&db.url),
            &["create", "--autogenerate", message, "--dir", dir_arg],
        ))
    };
    // Everything in the folder: diesel's `.diesel_lock` must not be left behind either.
    let folders = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    // Unchanged: schema.rs matches the database, enum columns included.
    assert!(draft("no change").contains("nothing to draft"));
    assert!(folders().is_empty(), "{:?}", folders());

    // The database one table short of schema.rs: the draft creates it, and nothing else.
    let mut conn = db.conn().await;
    diesel::sql_query("DROP TABLE comments")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(draft("add comments").contains("review it"));
    let [folder] = &folders()[..] else {
        panic!("{:?}", folders())
    };
    let up = std::fs::read_to_string(folder.join("up.sql")).unwrap();
    assert!(up.contains("CREATE TABLE \"comments\""), "{up}");
    assert!(!up.contains("\"status\""), "enum noise left in: {up}");

    // A lock file that was there before (another diesel run's) is not ours to remove.
    let lock = dir.0.join(".diesel_lock");
    std::fs::write(&lock, "").unwrap();
    assert!(draft("add comments again").contains("review it"));
    assert!(lock.exists());
}

#[tokio::test]
async fn stamp_keeps_what_is_recorded_and_an_edited_migration_still_fails_verify() {
    let db = TestDb::empty().await;
    let url = Some(&db.url);
    let dir = migrations_with(&[]);
    let dir_arg = dir.0.to_str().unwrap();
    ok(migrate(url, &["upgrade", "--dir", dir_arg]));
    let mut conn = db.conn().await;
    // Applied-at times of everything, as numbers that differ if a row is written again.
    let recorded = "SELECT coalesce(sum(extract(epoch FROM run_on) * 1000000), 0)::bigint AS n \
                    FROM __diesel_schema_migrations WHERE version <= '20250101000002'";
    let before = number(&mut conn, recorded).await;

    ok(migrate(url, &["stamp", "20250101000002", "--dir", dir_arg]));
    assert_eq!(versions(&mut conn).await.len(), 3);
    let last = all_versions().pop().unwrap();
    ok(migrate(url, &["stamp", &last, "--dir", dir_arg]));
    assert_eq!(versions(&mut conn).await, all_versions());
    assert_eq!(
        number(&mut conn, recorded).await,
        before,
        "kept rows keep their times"
    );

    // An applied migration edited afterwards is not made right by a stamp.
    let users = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_create_users"))
        .unwrap();
    let up = users.join("up.sql");
    let edited = std::fs::read_to_string(&up).unwrap() + "\n-- edited after it ran\n";
    std::fs::write(&up, edited).unwrap();
    ok(migrate(url, &["stamp", &last, "--dir", dir_arg]));
    let out = migrate(url, &["verify", "--dir", dir_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("create_users: changed")
            || stdout(&out).contains("create_users: changed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn text_after_the_last_statement_fails_the_migration_and_is_not_recorded() {
    let db = TestDb::new().await;
    let dir = migrations_with(&[(
        "2099-01-01-000000_vacuum_typo",
        "CREATE TABLE typo_first (id bigint);\n-- then a typo, no semicolon:\nVACUM users\n",
        "DROP TABLE typo_first;",
    )]);
    let mut conn = db.conn().await;
    let before = versions(&mut conn).await;
    let out = migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir.0.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("2099-01-01-000000_vacuum_typo/up.sql, line 3") && err.contains("VACUM"),
        "{err}"
    );
    assert_eq!(versions(&mut conn).await, before, "not recorded");
    assert!(!table_exists(&mut conn, "typo_first").await, "nothing ran");
}

/// The project's migrations plus a non-transactional one that builds an index concurrently.
fn with_concurrent_index(name: &str) -> TempDir {
    let dir = migrations_with(&[]);
    add_outside_transaction(
        &dir.0,
        "2099-01-01-000000_concurrent_index",
        &format!("CREATE INDEX CONCURRENTLY {name} ON users (display_name);\n"),
        &format!("DROP INDEX CONCURRENTLY IF EXISTS {name};\n"),
    );
    dir
}

/// Opens a transaction that writes-locks `users` (as any writer does): CREATE INDEX
/// CONCURRENTLY must wait for it to end.
async fn writer_in_a_transaction(db: &TestDb) -> AsyncPgConnection {
    use diesel_async::SimpleAsyncConnection;
    let mut writer = db.conn().await;
    (writer.batch_execute("BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE;"))
        .await
        .unwrap();
    writer
}

#[tokio::test]
async fn create_index_concurrently_waits_out_a_transaction_longer_than_the_lock_timeout() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let dir = with_concurrent_index("users_cic_waits_idx");
    let mut writer = writer_in_a_transaction(&db).await;
    let (url, dir_arg) = (db.url.clone(), dir.0.to_str().unwrap().to_owned());
    // The DDL lock timeout (1 s) is for migrations in a transaction; this one outlives it.
    let run = tokio::task::spawn_blocking(move || {
        migrate(
            Some(&url),
            &["upgrade", "--dir", &dir_arg, "--lock-timeout", "1s"],
        )
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    writer.batch_execute("COMMIT").await.unwrap();
    let out = run.await.unwrap();
    ok(out);
    let mut conn = db.conn().await;
    let valid = "SELECT count(*) AS n FROM pg_index \
                 WHERE indexrelid = 'users_cic_waits_idx'::regclass AND indisvalid";
    assert_eq!(number(&mut conn, valid).await, 1);
}

#[tokio::test]
async fn a_concurrent_index_that_times_out_says_how_to_drop_what_it_left() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let dir = with_concurrent_index("users_cic_dies_idx");
    let dir_arg = dir.0.to_str().unwrap();
    // Someone else's failed build: INVALID too, but not this migration's to drop.
    let mut conn = db.conn().await;
    (conn.batch_execute("CREATE TABLE dup (x int); INSERT INTO dup VALUES (1), (1);"))
        .await
        .unwrap();
    let failed = conn.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dup_u ON dup (x)");
    assert!(failed.await.is_err());
    let mut writer = writer_in_a_transaction(&db).await;
    let out = migrate(
        Some(&db.url),
        &[
            "upgrade",
            "--dir",
            dir_arg,
            "--concurrent-lock-timeout",
            "500ms",
        ],
    );
    writer.batch_execute("COMMIT").await.unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("DROP INDEX CONCURRENTLY IF EXISTS users_cic_dies_idx;")
            && !err.contains("dup_u"),
        "{err}"
    );
    let previous = all_versions().pop().unwrap();
    let stamp = format!("migrate stamp {previous}, then migrate upgrade again");
    assert!(err.contains(&stamp), "{err}");

    // The repair it gives works.
    (conn.batch_execute("DROP INDEX CONCURRENTLY IF EXISTS users_cic_dies_idx"))
        .await
        .unwrap();
    ok(migrate(
        Some(&db.url),
        &["stamp", &previous, "--dir", dir_arg],
    ));
    ok(migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]));
    ok(migrate(Some(&db.url), &["verify", "--dir", dir_arg]));
}

#[tokio::test]
async fn verify_fails_on_a_missing_or_an_orphaned_checksum_row() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let newest = all_versions().pop().unwrap();
    let delete = format!("DELETE FROM migrate.checksums WHERE version = '{newest}'");
    conn.batch_execute(&delete).await.unwrap();
    let out = migrate(Some(&db.url), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{newest}: applied, but no checksum")),
        "{err}"
    );
    // stamp records what is applied, as its files are now.
    ok(migrate(Some(&db.url), &["stamp", &newest]));
    ok(migrate(Some(&db.url), &["verify"]));

    let forget = format!("DELETE FROM __diesel_schema_migrations WHERE version = '{newest}'");
    conn.batch_execute(&forget).await.unwrap();
    let out = migrate(Some(&db.url), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let problems: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["problem"] == "orphaned" && p["version"] == newest.as_str()),
        "{problems:?}"
    );
}

#[tokio::test]
async fn upgrade_refuses_a_dirty_database_even_with_nothing_pending() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let newest = all_versions().pop().unwrap();
    let dirty = format!("UPDATE migrate.checksums SET state = 'dirty' WHERE version = '{newest}'");
    conn.batch_execute(&dirty).await.unwrap();
    let out = migrate(Some(&db.url), &["upgrade"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("failed part-way"), "{}", stderr(&out));
    assert_eq!(
        migrate(Some(&db.url), &["current", "--check"])
            .status
            .code(),
        Some(1)
    );
}

/// `migrate test` with a migration that sleeps, started in the background.
fn slow_migrate_test(db: &TestDb, dir: &TempDir, verb: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args([
            verb,
            "--dir",
            dir.0.to_str().unwrap(),
            "--url",
            db.url.expose(),
        ])
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Scratch databases of `db` on the server.
async fn scratch_databases(conn: &mut AsyncPgConnection, db: &TestDb) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
    )
    .bind::<diesel::sql_types::Text, _>(format!("{}_scratch_", db.url.database()))
    .load(conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.datname).collect()
}

/// Waits until the child's scratch database runs the sleeping migration.
async fn until_sleeping(conn: &mut AsyncPgConnection, db: &TestDb, child: &std::process::Child) {
    let scratch = format!("{}_scratch_{}", db.url.database(), child.id());
    let sleeping = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{scratch}' \
         AND query LIKE '%pg_sleep(600)%'"
    );
    // Every migration before it runs first: on a machine busy building (a generated
    // project's tests beside the template's), that took more than a minute once.
    for _ in 0..3000 {
        if number(conn, &sleeping).await == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{scratch} never reached the sleeping migration in 5 minutes");
}

fn send(child: &std::process::Child, signal: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(sent.success());
}

/// Waits (up to 30 s) for the child to exit; its output.
fn exited(mut child: std::process::Child) -> Output {
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("did not exit within 30 s of the signal");
}

#[tokio::test]
async fn ctrl_c_or_sigterm_during_migrate_test_or_check_drops_the_scratch_database() {
    let db = TestDb::empty().await;
    let dir = migrations_with(&[(
        "2099-01-01-000000_slow",
        "SELECT pg_sleep(600);",
        "SELECT 1;",
    )]);
    let mut conn = db.conn().await;
    for (verb, signal, code) in [("test", "-INT", 130), ("check", "-TERM", 143)] {
        let child = slow_migrate_test(&db, &dir, verb);
        until_sleeping(&mut conn, &db, &child).await;
        send(&child, signal);
        let out = tokio::task::spawn_blocking(move || exited(child))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{verb}: {}", stderr(&out));
        assert!(stderr(&out).contains("was dropped"), "{}", stderr(&out));
        assert_eq!(
            scratch_databases(&mut conn, &db).await,
            Vec::<String>::new()
        );
    }
}

#[tokio::test]
async fn a_later_run_drops_the_scratch_database_of_a_killed_run_and_nothing_else() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::empty().await;
    let slow = migrations_with(&[(
        "2099-01-01-000000_slow",
        "SELECT pg_sleep(600);",
        "SELECT 1;",
    )]);
    let mut conn = db.conn().await;
    let child = slow_migrate_test(&db, &slow, "test");
    until_sleeping(&mut conn, &db, &child).await;
    let killed = format!("{}_scratch_{}", db.url.database(), child.id());
    send(&child, "-KILL");
    tokio::task::spawn_blocking(move || exited(child))
        .await
        .unwrap();
    assert_eq!(
        scratch_databases(&mut conn, &db).await,
        std::slice::from_ref(&killed)
    );

    // Another run's database, marked as the killed one is, still claimed by its session
    // (here: the test's own); and a database that only looks like a scratch database.
    let mut admin = app::db::connect(&db.url.with_database("postgres"))
        .await
        .unwrap();
    let (live, data) = (
        format!("{}_scratch_4000000", db.url.database()),
        format!("{}_scratch_2024", db.url.database()),
    );
    let setup = format!(
        "CREATE DATABASE \"{live}\"; CREATE DATABASE \"{data}\"; \
         SELECT pg_advisory_lock(x'73637261'::int, hashtext('{live}'));"
    );
    for sql in setup.split("; ") {
        admin.batch_execute(sql).await.unwrap();
    }
    let copy_mark = format!(
        "DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', '{live}', \
         (SELECT shobj_description(oid, 'pg_database') FROM pg_database \
          WHERE datname = '{killed}')); END $$"
    );
    admin.batch_execute(&copy_mark).await.unwrap();

    let dir = migrations_with(&[]);
    ok(migrate(
        Some(&db.url),
        &["test", "--dir", dir.0.to_str().unwrap()],
    ));
    let mut left = vec![data.clone(), live.clone()];
    left.sort();
    assert_eq!(
        scratch_databases(&mut conn, &db).await,
        left,
        "only the killed one dropped"
    );
    for name in [live, data] {
        let drop = format!("DROP DATABASE \"{name}\"");
        admin.batch_execute(&drop).await.unwrap();
    }
}

/// A statement that breaks its own connection: the error reported is the statement's, not
/// the failed ROLLBACK (in a transaction) or RESET (outside one) after it, nor the
/// lock-timeout probe's, which on a fresh session finds the lock free.
#[tokio::test]
async fn a_migration_whose_session_dies_reports_its_own_error() {
    for in_transaction in [true, false] {
        let db = TestDb::new().await;
        let dir = migrations_with(&[]);
        let (folder, up) = (
            "2099-01-01-000000_dies",
            "CREATE TABLE dies_first (id int);\nSELECT pg_terminate_backend(pg_backend_pid());\n",
        );
        match in_transaction {
            true => add(&dir.0, folder, up, "DROP TABLE dies_first;"),
            false => add_outside_transaction(&dir.0, folder, up, "DROP TABLE dies_first;"),
        }
        let out = migrate(
            Some(&db.url),
            &["upgrade", "--dir", dir.0.to_str().unwrap()],
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("dies/up.sql, statement 2 (line 2)")
                && err.contains("pg_terminate_backend")
                && !err.contains("probe"),
            "in a transaction: {in_transaction}: {err}"
        );
    }
}

#[tokio::test]
async fn a_non_transactional_migration_that_does_not_parse_is_not_marked_dirty() {
    let db = TestDb::new().await;
    let dir = with_concurrent_index("users_cic_typo_idx");
    let up = dir.0.join("2099-01-01-000000_concurrent_index/up.sql");
    let text = std::fs::read_to_string(&up).unwrap();
    std::fs::write(&up, text.clone() + "VACUM users\n").unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let out = migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("dirty"), "{}", stderr(&out));
    std::fs::write(&up, text).unwrap();
    ok(migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]));
    ok(migrate(Some(&db.url), &["verify", "--dir", dir_arg]));
}

/// Ctrl-C (or kill -9) of `migrate upgrade` while CREATE INDEX CONCURRENTLY waits: the
/// server notices the client is gone and stops the build, instead of finishing it for
/// nobody while the history says otherwise.
#[tokio::test]
async fn a_killed_upgrade_leaves_no_backend_building_its_index() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await;
    let dir = with_concurrent_index("users_cic_orphan_idx");
    let mut writer = writer_in_a_transaction(&db).await;
    let mut conn = db.conn().await;
    // A plain upgrade leaves SIGINT to its default: the child must not inherit an ignored one.
    let child = support::default_signals(&mut Command::new(env!("CARGO_BIN_EXE_migrate")))
        .args([
            "upgrade",
            "--dir",
            dir.0.to_str().unwrap(),
            "--url",
            db.url.expose(),
        ])
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let building = "SELECT count(*) AS n FROM pg_stat_activity \
                    WHERE datname = current_database() AND query LIKE 'CREATE INDEX CONCURRENTLY%'";
    for _ in 0..300 {
        if number(&mut conn, building).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        number(&mut conn, building).await,
        1,
        "the build never started"
    );
    send(&child, "-INT");
    tokio::task::spawn_blocking(move || exited(child))
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        gone = number(&mut conn, building).await == 0;
        if gone {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    writer.batch_execute("COMMIT").await.unwrap();
    assert!(
        gone,
        "the server still builds the index 10 s after migrate exited"
    );
    let valid = "SELECT count(*) AS n FROM pg_index \
                 WHERE indexrelid::regclass::text = 'users_cic_orphan_idx' AND indisvalid";
    assert_eq!(number(&mut conn, valid).await, 0);
    // The killed run printed no repair; the next one names what it left.
    let out = migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir.0.to_str().unwrap()],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("DROP INDEX CONCURRENTLY IF EXISTS users_cic_orphan_idx;"),
        "{err}"
    );
}
