//! The generated project's README and docs/*.md, run as a new user would run them: every
//! `sh` block in order (see [`crate::runbook`]), in a freshly generated project, against a
//! fresh database, with no `DATABASE_*` setting in the environment. docs/first-model.md is
//! followed by its own check (`first_model.rs`), which writes its files between its blocks.

use std::path::{Path, PathBuf};

use app::db::DatabaseUrl;
use diesel_async::RunQueryDsl;

use crate::helpers::{generate, have_cargo_generate, shared_target, target_dir};
use crate::runbook::{self, Kind};
use crate::support::cleanup;

/// Settings a user's shell would not have: the walk must work without them.
const UNSET_PREFIXES: &[&str] = &[
    "DATABASE_",
    "MIGRATE_",
    "CARGO_TARGET_DIR",
    "RUST_LOG",
    "LOG_FORMAT",
    // The failover test under pg_auto_failover (four servers, 90 s) runs once, in the
    // template's own run, not again in every generated project.
    "REQUIRE_PG_AUTO_FAILOVER",
];

/// The environment names to remove so a block sees a new user's shell.
pub fn foreign_settings() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| UNSET_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect()
}

/// Points the project's `target/` at the shared target dir, so the documented paths
/// (`target/debug/...`) hold and nothing compiles twice.
pub fn share_target(project: &Path) {
    std::os::unix::fs::symlink(target_dir(), project.join("target")).unwrap();
}

/// A database name, read by `sql_query`: the catalog has no table in `schema.rs`.
#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    datname: String,
}

/// Drops the database the project's `.env` names and the template databases its tests left
/// (`<crate>_tpl_<hash>`, kept by the tests as a cache: a project generated for one run
/// has no later run, and each new migration set makes another), and stops a private cluster the scripts may
/// have started in the project's `.pg/`.
pub struct Leftovers {
    /// The generated project.
    pub project: PathBuf,
    /// Its crate name, as its tests prefix their database names (`notes_app`).
    pub crate_name: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let env = std::fs::read_to_string(self.project.join(".env")).unwrap_or_default();
        let url = (env.lines())
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .map(|v| v.trim_matches('\'').to_owned());
        if let Some(url) = url.and_then(|u| DatabaseUrl::parse(&u).ok()) {
            let prefix: String = self.crate_name.chars().take(20).collect();
            cleanup(async move {
                let admin = url.with_database("postgres");
                let Ok(mut conn) = app::db::connect(&admin).await else {
                    return;
                };
                let pattern = format!("{}\\_tpl\\_%", prefix.replace('_', "\\_"));
                let templates: Vec<Name> =
                    diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE $1")
                        .bind::<diesel::sql_types::Text, _>(pattern)
                        .load(&mut conn)
                        .await
                        .unwrap_or_default();
                for name in templates.iter().map(|n| n.datname.as_str()) {
                    let _ = app::db::drop_database(&mut conn, name).await;
                }
                let _ = app::db::drop_database(&mut conn, &url.database()).await;
            });
        }
        if self.project.join(".pg").exists() {
            let _ = std::process::Command::new(self.project.join("scripts/pg.sh"))
                .args(["stop", ".pg"])
                .current_dir(&self.project)
                .output();
        }
    }
}

/// Runs every block of `files` (paths relative to `project`) in order; panics at the first
/// failure with its file and line. Returns how many blocks ran and how many were skipped.
pub fn walk(project: &Path, files: &[String]) -> (usize, usize) {
    let unset = foreign_settings();
    let unset: Vec<&str> = unset.iter().map(String::as_str).collect();
    let (mut ran, mut skipped) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(project.join(file)).unwrap();
        for block in runbook::blocks(file, &text) {
            match block.kind().unwrap_or_else(|e| panic!("{e}")) {
                Kind::Run => {
                    eprintln!("docs: running {}:{}", block.file, block.line);
                    runbook::run(project, &block, &[], &unset).unwrap_or_else(|e| panic!("{e}"));
                    ran += 1;
                }
                Kind::Skip(_) => skipped += 1,
                Kind::Other => {}
            }
        }
    }
    (ran, skipped)
}

#[test]
fn every_documented_command_runs_in_a_fresh_project() {
    if !have_cargo_generate() {
        return;
    }
    let _target = shared_target();
    // The database is named after the project, so a unique name gives a fresh one.
    let name = format!("readme-walk-{}", std::process::id());
    let project = generate(&name, "docs");
    share_target(&project);
    let _leftovers = Leftovers {
        project: project.clone(),
        crate_name: name.replace('-', "_"),
    };
    let files: Vec<String> = (runbook::documents(&project).into_iter())
        .filter(|f| f != "docs/first-model.md")
        .collect();
    let (ran, skipped) = walk(&project, &files);
    eprintln!("docs: {ran} blocks ran, {skipped} skipped");
    assert!(ran >= 3, "only {ran} runnable blocks");

    // The first command left a .env for the rest, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(project.join(".env")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}
