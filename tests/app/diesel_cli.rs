//! diesel_cli works on this project: `src/schema.rs` is exactly what `diesel print-schema`
//! prints for the migrated database, and `diesel migration run/revert/redo` work on
//! `migrations/`. Skipped without diesel_cli unless REQUIRE_DIESEL_CLI=1.

use std::process::{Command, Output};

use crate::support::{self, TestDb};
use app::db;

/// `diesel` with our project dir, or None (test skipped) when it is not installed.
fn diesel() -> Option<Command> {
    if Command::new("diesel").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("REQUIRE_DIESEL_CLI").is_none(),
            "REQUIRE_DIESEL_CLI is set but `diesel` is not on PATH"
        );
        eprintln!(
            "skipped: diesel_cli not installed \
             (cargo install diesel_cli --no-default-features --features postgres)"
        );
        return None;
    }
    let mut cmd = Command::new("diesel");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    Some(cmd)
}

fn run(mut cmd: Command, args: &[&str]) -> Output {
    let out = cmd.args(args).output().expect("run diesel");
    assert!(
        out.status.success(),
        "diesel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn schema_rs_matches_diesel_print_schema() {
    let Some(diesel) = diesel() else { return };
    let db = TestDb::new().await;
    let out = run(diesel, &["print-schema", "--database-url", db.url.expose()]);
    let committed = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema.rs"));
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "src/schema.rs is out of date: run `diesel print-schema > src/schema.rs`"
    );
}

#[tokio::test]
async fn diesel_migration_run_revert_and_redo_work_on_our_folder() {
    let Some(_) = diesel() else { return };
    let db = TestDb::new().await;
    // A config without [print_schema]: run/revert would otherwise rewrite src/schema.rs.
    let config = std::env::temp_dir().join(format!("{}.toml", support::unique_name("diesel")));
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::write(
        &config,
        format!("[migrations_directory]\ndir = {migrations:?}\n"),
    )
    .unwrap();
    let migration = |args: &[&str]| {
        let mut all = vec!["migration"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database-url", db.url.expose()]);
        all.extend_from_slice(&["--config-file", config.to_str().unwrap()]);
        run(diesel().unwrap(), &all)
    };
    let mut conn = db.conn().await;
    let tables =
        |counts: Vec<(String, i64)>| counts.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    let migrated = tables(db::table_counts(&mut conn).await.unwrap());
    assert!(migrated.contains(&"users".to_owned()), "{migrated:?}");

    migration(&["revert", "--all"]);
    assert!(tables(db::table_counts(&mut conn).await.unwrap()).is_empty());

    migration(&["run"]);
    assert_eq!(tables(db::table_counts(&mut conn).await.unwrap()), migrated);

    migration(&["redo"]);
    assert_eq!(tables(db::table_counts(&mut conn).await.unwrap()), migrated);
    let _ = std::fs::remove_file(&config);
}
