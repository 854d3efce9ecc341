//! `init_db`: create the database if missing, apply pending migrations, optionally seed
//! demo data. Safe to run again: the second run changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use app::db;
use app::outln;
use app::{migrations, roles, seed};
use clap::Parser;

/// Create the database, run pending migrations and optionally seed demo data.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Database URL, e.g. postgres://user:password@localhost:5432/app
    /// [default: $DATABASE_DIRECT_URL, else $DATABASE_URL; also read from .env]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Insert demo users, teams, tasks and tags (skipped when already present).
    #[arg(long)]
    seed: bool,
    /// With --seed: also this many generated users (at most 10 million), through the bulk
    /// path.
    #[arg(long, value_name = "N", requires = "seed", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(..=MAX_USERS))]
    users: u64,
    /// With --seed and --users: this many generated tasks (at most 100 million) spread over
    /// those users.
    #[arg(long, value_name = "M", requires = "users", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(..=MAX_TASKS))]
    tasks: u64,
    /// After migrating, grant this existing role row access (no schema changes) to every
    /// table, now and in later migrations run by the same owner. See docs/security.md.
    #[arg(long, value_name = "ROLE")]
    app_role: Option<String>,
    /// After a successful run, write `DATABASE_URL=<the URL>` to this file when it does not
    /// exist (mode 0600), so `cargo run` and the scripts find the database next time.
    /// scripts/init_db.sh passes `.env`; a deploy step leaves it out.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    #[command(flatten)]
    timeouts: app::cli::MigrationTimeouts,
    #[command(flatten)]
    logging: app::cli::Logging,
}

/// The users `--users` generates are built in memory at once (about 100 bytes each).
const MAX_USERS: u64 = 10_000_000;
/// Tasks are written 10,000 at a time; past this a seed would run for hours.
const MAX_TASKS: u64 = 100_000_000;

#[tokio::main]
async fn main() -> ExitCode {
    // .env first, once: the flags' environment defaults (MIGRATE_*, LOG_FORMAT) may be there.
    let dotenv = app::settings::load_dotenv();
    let args = Args::parse();
    if let Err(code) = app::cli::refuse_bad_dotenv("init_db", dotenv) {
        return code;
    }
    let result = match args.logging.init("warn") {
        Ok(()) => run(args).await.map(|()| ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    };
    app::cli::finish("init_db", result).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let url = db::direct_url_from(args.url.as_deref())?;
    let name = url.database();
    // Before anything is created: a transaction pooler is refused here, not half-way.
    db::ensure_session(&url.with_database("postgres")).await?;

    let created = db::ensure_database(&url).await?;
    outln!(
        "database {name}: {} ({url})",
        if created { "created" } else { "exists" }
    );

    let mut config = migrations::Config::default();
    args.timeouts.apply(&mut config);
    let applied = migrations::run_pending_with(&url, config).await?;
    if applied.is_empty() {
        outln!("migrations: up to date");
    } else {
        outln!(
            "migrations: applied {}: {}",
            applied.len(),
            applied.join(", ")
        );
    }

    let mut conn = db::connect(&url).await?;
    if let Some(role) = &args.app_role {
        roles::grant_app_role(&mut conn, role).await?;
        outln!("roles: {role} may read and write rows, not change the schema");
    }
    if args.seed {
        match seed::demo(&mut conn).await? {
            seed::Seeded::Inserted => outln!("seed: demo data inserted"),
            seed::Seeded::AlreadyPresent => {
                outln!("seed: demo data already present, nothing written")
            }
        }
    }
    if args.users > 0 {
        let bar = indicatif::ProgressBar::new(args.users + args.tasks);
        bar.set_style(indicatif::ProgressStyle::with_template(
            "seed: {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})",
        )?);
        let mut step = |rows: usize| bar.inc(rows as u64);
        // Both fit a usize: clap bounds them far below it.
        let (users, tasks) = (args.users as usize, args.tasks as usize);
        let outcome = seed::volume(&mut conn, users, tasks, &mut step).await;
        bar.finish_and_clear();
        match outcome? {
            seed::Seeded::Inserted => {
                outln!(
                    "seed: {} users and {} tasks inserted",
                    args.users,
                    args.tasks
                )
            }
            seed::Seeded::AlreadyPresent => {
                outln!("seed: volume data already present, nothing written")
            }
        }
    }
    outln!("tables:");
    for (table, rows) in db::table_counts(&mut conn).await? {
        outln!("  {table:<22} {rows:>8} rows");
    }
    if let Some(path) = &args.env_file {
        // The application's URL (a pooler's, maybe) as DATABASE_URL, and the server's own
        // beside it when init_db was given another: a later shell finds both as they were.
        let app_url = db::url_from(args.url.as_deref()).unwrap_or_else(|_| url.clone());
        let mut lines = vec![("DATABASE_URL", app_url.clone())];
        if app_url.expose() != url.expose() {
            lines.push(("DATABASE_DIRECT_URL", url.clone()));
        }
        write_env_file(path, &lines)?;
    }
    Ok(())
}

/// Writes `KEY='url'` lines to `path` unless the file exists: a user's own `.env` is never
/// touched. Readable by its owner only, since a URL may hold a password, and complete or
/// absent: written aside, then linked into place, which fails if the file appeared.
fn write_env_file(path: &Path, lines: &[(&str, db::DatabaseUrl)]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.symlink_metadata().is_ok() {
        outln!("env: {} exists, not changed", path.display());
        return Ok(());
    }
    // Single quotes keep a value literal for dotenvy ($, #, spaces); a URL holding one
    // could not be written back exactly.
    if lines
        .iter()
        .any(|(_, url)| url.expose().contains(['\'', '\n', '\r']))
    {
        outln!(
            "env: {} not written: the URL holds a quote or a line break (a quote is %27)",
            path.display()
        );
        return Ok(());
    }
    let mut text = String::from(
        "# Written by init_db: the database of this checkout. Other settings: .env.example.\n",
    );
    for (key, url) in lines {
        text.push_str(&format!("{key}='{}'\n", url.expose()));
    }
    let name = path
        .file_name()
        .map_or("env".into(), |n| n.to_string_lossy());
    let aside = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (std::fs::OpenOptions::new())
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
        })
        .and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    match written {
        Ok(()) => {
            for (key, url) in lines {
                outln!("env: wrote {key} to {} ({url})", path.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.exists() => {
            outln!("env: {} exists, not changed", path.display());
            Ok(())
        }
        Err(e) => anyhow::bail!("cannot write {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, MAX_TASKS, MAX_USERS};
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn volume_flags_need_their_predecessor_and_stay_in_bounds() {
        let parse = |args: &[&str]| Args::try_parse_from([&["init_db"], args].concat());
        assert!(parse(&["--users", "5"]).is_err(), "--users without --seed");
        assert!(
            parse(&["--seed", "--tasks", "5"]).is_err(),
            "--tasks without --users"
        );
        let over = (MAX_USERS + 1).to_string();
        assert!(parse(&["--seed", "--users", &over]).is_err());
        let max = MAX_TASKS.to_string();
        let args = parse(&["--seed", "--users", "1", "--tasks", &max]).unwrap();
        assert_eq!((args.users, args.tasks), (1, MAX_TASKS));
    }
}
