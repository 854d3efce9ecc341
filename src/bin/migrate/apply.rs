//! Changing the database: `upgrade`, `downgrade`, `redo`, `stamp`, and `restore` from a
//! backup `upgrade --backup` made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use app::backup::{Owners, Replaced};
use app::cli::Stop;
use app::migrations::{Direction, Migrator, Target};
use app::{errln, out, outln};
use clap::Subcommand;

use super::Globals;

/// The verbs that change the database.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Apply pending migrations: head (default), +N, or up to VERSION.
    #[command(display_order = 2)]
    Upgrade {
        /// head, +N, or the last version to apply (2025-02-01-000005) or its folder name
        /// (2025-02-01-000005_users_drop_name) as `current` and `history` print it.
        #[arg(default_value = "head", allow_hyphen_values = true)]
        target: String,
        /// Print the SQL instead of running it.
        #[arg(long)]
        sql: bool,
        /// pg_dump the database to FILE first: a new file, readable by its owner only; an
        /// existing FILE is refused (and nothing applied).
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
        /// Apply a pending migration older than the newest applied one.
        #[arg(long)]
        allow_out_of_order: bool,
    },
    /// Revert migrations: -1 (default), -N, down to VERSION (kept), or everything with base.
    #[command(display_order = 3)]
    Downgrade {
        /// -N, base, or the version to keep (2025-02-01-000005) or its folder name
        /// (2025-02-01-000005_users_drop_name) as `current` and `history` print it.
        #[arg(default_value = "-1", allow_hyphen_values = true)]
        target: String,
        /// Print the SQL instead of running it.
        #[arg(long)]
        sql: bool,
    },
    /// Revert the last N migrations and apply them again.
    #[command(display_order = 6)]
    Redo {
        #[arg(default_value_t = 1)]
        steps: usize,
    },
    /// Record VERSION (or base) as the current state without running SQL.
    #[command(display_order = 7)]
    Stamp {
        /// base, or a version (2025-02-01-000005) or its folder name
        /// (2025-02-01-000005_users_drop_name) as `current` and `history` print it.
        version: String,
    },
    /// Put back a backup made by `upgrade --backup`: schema, history and rows together. It
    /// is loaded into a new database that takes this one's name only once complete; the
    /// current database is kept under another name. Stop the application first.
    #[command(display_order = 12)]
    Restore {
        /// The backup file (pg_dump's custom format).
        file: PathBuf,
        /// Give every restored object to the role that restores, instead of the roles that
        /// owned them in the backup (which must exist otherwise).
        #[arg(long)]
        no_owner: bool,
    },
}

/// Runs one of these verbs.
pub async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    // Loaded for every verb, restore too: a --dir that does not load stops each of them.
    let mut migrator = globals.migrator()?;
    match verb {
        Verb::Upgrade {
            target,
            sql,
            backup,
            allow_out_of_order,
        } => {
            migrator.config.allow_out_of_order = allow_out_of_order;
            upgrade(&migrator, globals, &target, sql, backup).await
        }
        Verb::Downgrade { target, sql } => downgrade(&migrator, globals, &target, sql).await,
        Verb::Redo { steps } => {
            let url = globals.url()?;
            for folder in migrator.downgrade(&url, Target::Steps(steps)).await? {
                outln!("reverted {folder}");
            }
            for folder in migrator.upgrade(&url, Target::Steps(steps)).await? {
                outln!("applied {folder}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Stamp { version } => {
            migrator.stamp(&globals.url()?, &version).await?;
            outln!("stamped {version}: recorded without running SQL");
            Ok(ExitCode::SUCCESS)
        }
        Verb::Restore { file, no_owner } => restore(globals, &file, no_owner).await,
    }
}

/// `upgrade`: to `target`, after a backup when asked; `sql` prints the SQL instead.
async fn upgrade(
    migrator: &Migrator,
    globals: &Globals,
    target: &str,
    sql: bool,
    backup: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let url = globals.url()?;
    let target = Target::parse(target, Direction::Up)?;
    if sql {
        out!("{}", migrator.preview(&url, Direction::Up, target).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let applied = match backup {
        Some(file) => {
            // Listening turns the signals' default (exit) off: the upgrade that follows
            // races them too.
            let mut stop = Stop::listen()?;
            let dumped = app::backup::dump(&url, &file, stop.wait()).await;
            let stopped =
                |e: &_| format!("migrate upgrade: {e}; no backup written, nothing applied");
            if let Some(code) = stop.interrupted(&dumped, stopped) {
                return Ok(code);
            }
            dumped.context("nothing applied")?;
            outln!(
                "backup: {} (restore: migrate restore {})",
                file.display(),
                file.display()
            );
            tokio::select! {
                applied = migrator.upgrade(&url, target) => applied?,
                () = stop.wait() => {
                    errln!("migrate upgrade: interrupted");
                    return Ok(stop.exit_code().unwrap_or(ExitCode::FAILURE));
                }
            }
        }
        None => migrator.upgrade(&url, target).await?,
    };
    if applied.is_empty() {
        outln!("nothing to apply: up to date");
    }
    for folder in applied {
        outln!("applied {folder}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `downgrade`: to `target`, naming what goes first when it is more than one; `sql` prints
/// the SQL instead.
async fn downgrade(
    migrator: &Migrator,
    globals: &Globals,
    target: &str,
    sql: bool,
) -> anyhow::Result<ExitCode> {
    let url = globals.url()?;
    let target = Target::parse(target, Direction::Down)?;
    if sql {
        out!("{}", migrator.preview(&url, Direction::Down, target).await?);
        return Ok(ExitCode::SUCCESS);
    }
    // More than one step: say what will go before it goes.
    let plan = migrator.plan_down(&migrator.status(&url).await?, &target)?;
    if plan.len() > 1 {
        let folders: Vec<&str> = plan.iter().map(|m| m.folder.as_str()).collect();
        outln!("reverting {}: {}", plan.len(), folders.join(", "));
    }
    let reverted = migrator.downgrade(&url, target).await?;
    if reverted.is_empty() {
        outln!("nothing to revert");
    }
    for folder in reverted {
        outln!("reverted {folder}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore`: `file` loaded beside the database, then swapped in for it.
async fn restore(globals: &Globals, file: &Path, no_owner: bool) -> anyhow::Result<ExitCode> {
    let url = globals.url()?;
    let mut stop = Stop::listen()?;
    let owners = match no_owner {
        true => Owners::Restorer,
        false => Owners::AsInBackup,
    };
    let restored = app::backup::restore(&url, file, owners, stop.wait()).await;
    if let Some(code) = stop.interrupted(&restored, |e| format!("migrate restore: {e}")) {
        return Ok(code);
    }
    let (file, name) = (file.display(), url.database());
    match restored? {
        Replaced::Kept(kept) => outln!(
            "restored {file} into {name}, with its database-level settings and grants; \
             the previous database is kept as {kept}: drop it once satisfied \
             (DROP DATABASE \"{kept}\")"
        ),
        Replaced::Created => outln!(
            "restored {file} into {name}, which did not exist: created it, with the \
             backup's encoding and locale, owned by {}. A backup holds no other \
             database-level state: re-apply any ALTER DATABASE/ALTER ROLE … IN \
             DATABASE settings, GRANTs on the database and its comment",
            match owners {
                Owners::AsInBackup => "the backup's owner",
                Owners::Restorer => "the restoring role (--no-owner)",
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}
