//! Judging the migrations themselves: `lint` reads their SQL, `test` and `check` run them on
//! a scratch database. What CI runs before a migration ships.

use std::process::ExitCode;

use anyhow::bail;
use app::cli::Stop;
use app::migrations::{self, Version};
use app::{errln, outln};
use clap::Subcommand;

use super::{Globals, project_dir};

/// The verbs that check migrations before they ship.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Flag statements that would lock or break a live table (squawk's rules).
    #[command(display_order = 9)]
    Lint {
        /// Do not judge migrations up to and including this version (2025-01-01-000007), or
        /// its folder name (2025-01-01-000007_create_comments) as `current` and `history`
        /// print it.
        #[arg(long, value_name = "VERSION", default_value = "20250101000007")]
        baseline: String,
        #[arg(long)]
        json: bool,
    },
    /// On a scratch database: every migration up, down, up; schema after each down must
    /// equal the schema before its up; every foreign key indexed.
    #[command(display_order = 10)]
    Test,
    /// On a scratch database: apply everything and compare with src/schema.rs.
    #[command(display_order = 11)]
    Check,
}

/// Runs one of these verbs.
pub async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    let migrator = globals.migrator()?;
    match verb {
        Verb::Lint { baseline, json } => {
            let Some(upto) = Version::parse(&baseline) else {
                bail!("--baseline {baseline:?}: use a version or its folder name");
            };
            // The baseline need not be a migration here; when it is, a folder name must match it.
            if let Some(m) = (migrator.migrations().iter()).find(|m| m.version == upto.version) {
                upto.check_name(&m.folder)?;
            }
            let findings = migrations::lint(migrator.migrations(), Some(&upto.version));
            if json {
                outln!("{}", serde_json::to_string(&findings)?);
            } else if findings.is_empty() {
                outln!("lint: no findings (migrations after {baseline})");
            }
            for f in &findings {
                if !json {
                    outln!("{}/up.sql:{}: {}: {}", f.folder, f.line, f.rule, f.message);
                    if let Some(help) = &f.help {
                        outln!("    help: {help}");
                    }
                }
            }
            if !findings.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Verb::Test => {
            let url = globals.url()?;
            let dir = globals.dir();
            if !dir.is_dir() {
                outln!(
                    "test: no {} here: its test_data.sql / test_expect.sql are not compiled in, \
                     so data survival is not checked (run from the project, or pass --dir)",
                    dir.display()
                );
            }
            let mut stop = Stop::listen()?;
            let progress = &mut |line: &str| outln!("{line}");
            let tested = migrations::round_trip(&migrator, &url, progress, stop.wait()).await;
            if let Some(code) = stop.interrupted(&tested, |e| format!("migrate test: {e}")) {
                return Ok(code);
            }
            let failures = tested?;
            for f in &failures {
                errln!("test: {}: {}", f.folder, f.problem);
            }
            if !failures.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            outln!("test: every migration reverts cleanly and every foreign key is indexed");
        }
        Verb::Check => {
            let url = globals.url()?;
            let mut stop = Stop::listen()?;
            let drift =
                migrations::schema_drift(&migrator, &url, &project_dir(), stop.wait()).await;
            if let Some(code) = stop.interrupted(&drift, |e| format!("migrate check: {e}")) {
                return Ok(code);
            }
            let drift = drift?;
            if !drift.is_empty() {
                errln!("check: src/schema.rs differs from the migrated schema:\n{drift}");
                errln!(
                    "run `diesel print-schema > src/schema.rs` (or `diesel migration run`) to update it"
                );
                return Ok(ExitCode::FAILURE);
            }
            outln!("check: src/schema.rs matches the migrations");
        }
    }
    Ok(ExitCode::SUCCESS)
}
