//! Reading the database's state: `current`, `history`, and `verify` of what was applied
//! against the files.

use std::process::ExitCode;

use app::{errln, outln};
use clap::Subcommand;

use super::Globals;

/// The verbs that read the database's migration state.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Show the current version and what is pending.
    #[command(display_order = 4)]
    Current {
        /// Exit 1 when migrations are pending or one is dirty (CI, readiness probes).
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
    /// List applied migrations: when, how long, checksum state.
    #[command(display_order = 5)]
    History {
        #[arg(long)]
        json: bool,
    },
    /// Fail on applied migrations whose files changed or vanished or that have no checksum,
    /// checksums without a version, and out-of-order or dirty migrations.
    #[command(display_order = 8)]
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// Runs one of these verbs.
pub async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    let migrator = globals.migrator()?;
    let status = migrator.status(&globals.url()?).await?;
    match verb {
        Verb::Current { check, json } => {
            let pending: Vec<String> = status.pending.iter().map(|m| m.folder.clone()).collect();
            let (applied, dirty) = (status.applied, !status.dirty.is_empty());
            let current = applied
                .last()
                .map(|a| a.folder.clone().unwrap_or_else(|| a.version.clone()));
            if json {
                let value =
                    serde_json::json!({"current": current, "pending": pending, "dirty": dirty});
                outln!("{value}");
            } else {
                outln!(
                    "current: {}",
                    current.as_deref().unwrap_or("base (nothing applied)")
                );
                match pending.len() {
                    0 => outln!("pending: none"),
                    n => outln!("pending: {n}: {}", pending.join(", ")),
                }
                if dirty {
                    outln!("dirty: a migration failed part-way outside a transaction (see verify)");
                }
            }
            if check && (!pending.is_empty() || dirty) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Verb::History { json } => {
            let applied = status.applied;
            if json {
                outln!("{}", serde_json::to_string(&applied)?);
            } else {
                outln!(
                    "{:<46} {:<20} {:>9}  checksum",
                    "migration",
                    "applied at (UTC)",
                    "took"
                );
                for a in &applied {
                    let took = a.duration_ms.map_or("-".into(), |ms| format!("{ms} ms"));
                    let name = a.folder.clone().unwrap_or_else(|| a.version.clone());
                    outln!(
                        "{name:<46} {:<20} {took:>9}  {}",
                        a.run_on.format("%Y-%m-%d %H:%M:%S"),
                        a.state
                    );
                }
            }
        }
        Verb::Verify { json } => {
            let problems = status.problems();
            if json {
                outln!("{}", serde_json::to_string(&problems)?);
            } else if problems.is_empty() {
                outln!("verified: every applied migration matches its files");
            }
            if !problems.is_empty() {
                for p in &problems {
                    errln!("verify: {p}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
