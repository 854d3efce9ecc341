//! `migrate`: the guide's migrate.sh workflow on Diesel migrations, with a lock, checksums,
//! timeouts, previews and checks. `migrate --help` and `migrate <verb> --help` explain each.
//!
//! One file per group of verbs, each with its own subcommands and `run`: [`authoring`]
//! writes migration files, [`generate`] a model with its table (through [`scaffold`]),
//! [`apply`] changes the database, [`status`] reads its state, and
//! [`checks`] judges the migrations themselves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use app::db::{self, DatabaseUrl};
use app::errln;
use app::migrations::Migrator;
use clap::{Parser, Subcommand};

mod apply;
mod authoring;
mod checks;
mod generate;
mod scaffold;
mod status;

/// Create, apply, revert and check database migrations (diesel_cli's folder format).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(flatten)]
    logging: app::cli::Logging,
    #[command(subcommand)]
    verb: Verb,
}

/// The flags every verb takes.
#[derive(Debug, clap::Args)]
struct Globals {
    /// Database URL [default: $DATABASE_DIRECT_URL, else $DATABASE_URL; also read from .env]
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Read migrations from this folder instead of those compiled into the binary.
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    timeouts: app::cli::MigrationTimeouts,
    /// How long to wait for another migrate run's lock.
    #[arg(long, global = true, default_value = "60s", value_parser = app::cli::duration)]
    wait: Duration,
}

/// The verbs, by group. Each verb's `display_order` keeps `migrate --help` listing them as
/// before they were grouped: init, create, generate, upgrade, downgrade, current, history, redo, stamp,
/// verify, lint, test, check, restore.
#[derive(Debug, Subcommand)]
enum Verb {
    #[command(flatten)]
    Authoring(authoring::Verb),
    #[command(flatten)]
    Generate(generate::Verb),
    #[command(flatten)]
    Apply(apply::Verb),
    #[command(flatten)]
    Status(status::Verb),
    #[command(flatten)]
    Checks(checks::Verb),
}

fn main() -> ExitCode {
    // .env first, once: the flags' environment defaults (MIGRATE_*, LOG_FORMAT) may be there.
    let dotenv = app::settings::load_dotenv();
    let cli = Cli::parse();
    if let Err(code) = app::cli::refuse_bad_dotenv("migrate", dotenv) {
        return code;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("migrate: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let result = match cli.logging.init("warn") {
            Ok(()) => run(cli.verb, &cli.globals).await,
            Err(e) => Err(e.into()),
        };
        app::cli::finish("migrate", result).await
    });
    // After Ctrl-C the migration thread may still wait on a frozen server: the process
    // exits anyway (the server drops that session once it notices).
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    match verb {
        Verb::Authoring(verb) => authoring::run(verb, globals).await,
        Verb::Generate(verb) => generate::run(verb, globals).await,
        Verb::Apply(verb) => apply::run(verb, globals).await,
        Verb::Status(verb) => status::run(verb, globals).await,
        Verb::Checks(verb) => checks::run(verb, globals).await,
    }
}

impl Globals {
    /// The database: `--url`, else `$DATABASE_DIRECT_URL`, else `$DATABASE_URL`.
    fn url(&self) -> anyhow::Result<DatabaseUrl> {
        Ok(db::direct_url_from(self.url.as_deref())?)
    }

    /// The migrations folder: `--dir`, else `migrations/` in the project.
    fn dir(&self) -> PathBuf {
        (self.dir.clone()).unwrap_or_else(|| project_dir().join("migrations"))
    }

    /// The migrations in the folder (never the compiled-in set), with the flags' timeouts
    /// and lock wait: `generate` applies what it just wrote.
    fn folder_migrator(&self) -> anyhow::Result<Migrator> {
        let mut migrator = Migrator::from_dir(&self.dir())?;
        self.timeouts.apply(&mut migrator.config);
        migrator.config.wait = self.wait;
        Ok(migrator)
    }

    /// The migrations to work on, with the runner's timeouts and lock wait from the flags.
    fn migrator(&self) -> anyhow::Result<Migrator> {
        let mut migrator = match &self.dir {
            Some(dir) => Migrator::from_dir(dir)?,
            // `migrate test`'s fixtures are not compiled in: read them from the checkout.
            None => Migrator::embedded()?.with_fixtures_from(&self.dir()),
        };
        self.timeouts.apply(&mut migrator.config);
        migrator.config.wait = self.wait;
        Ok(migrator)
    }
}

/// The project migrate runs in: the current directory.
fn project_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| ".".into())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_the_verbs_in_their_order_across_groups() {
        let help = Cli::command().render_help().to_string();
        let listed: Vec<&str> = (help.lines())
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let expected = [
            "init",
            "create",
            "generate",
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
            "help",
        ];
        assert_eq!(listed, expected);
    }

    #[test]
    fn global_flags_reach_every_group() {
        let cli = Cli::try_parse_from(["migrate", "lint", "--dir", "x", "--wait", "2s"]).unwrap();
        assert_eq!(cli.globals.dir(), std::path::PathBuf::from("x"));
        assert_eq!(cli.globals.wait, std::time::Duration::from_secs(2));
        assert!(Cli::try_parse_from(["migrate", "--wait", "5 parsecs", "current"]).is_err());
    }
}
