//! `migrate`: the guide's migrate.sh workflow on Diesel migrations, with a lock, checksums,
//! timeouts, previews and checks. `migrate --help` and `migrate <verb> --help` explain each.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use app::backup::{Owners, Replaced};
use app::db::{self, DatabaseUrl};
use app::migrations::{self, Direction, Migrator, Target};
use app::{errln, out, outln};
use clap::{Parser, Subcommand};

/// Create, apply, revert and check database migrations (diesel_cli's folder format).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
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
    #[command(flatten)]
    logging: app::cli::Logging,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Set up migrations/, diesel.toml and the setup migration (safe to repeat).
    Init,
    /// Create a new timestamped migration folder with up.sql and down.sql.
    Create {
        /// What the migration does, e.g. "add user table".
        message: String,
        /// Draft it with `diesel migration generate --diff-schema` (needs diesel_cli).
        #[arg(long)]
        autogenerate: bool,
        /// Mark it run_in_transaction = false (for CREATE INDEX CONCURRENTLY).
        #[arg(long)]
        no_transaction: bool,
    },
    /// Apply pending migrations: head (default), +N, or up to VERSION.
    Upgrade {
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
    Downgrade {
        #[arg(default_value = "-1", allow_hyphen_values = true)]
        target: String,
        /// Print the SQL instead of running it.
        #[arg(long)]
        sql: bool,
    },
    /// Show the current version and what is pending.
    Current {
        /// Exit 1 when migrations are pending or one is dirty (CI, readiness probes).
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
    /// List applied migrations: when, how long, checksum state.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Revert the last N migrations and apply them again.
    Redo {
        #[arg(default_value_t = 1)]
        steps: usize,
    },
    /// Record VERSION (or base) as the current state without running SQL.
    Stamp { version: String },
    /// Fail on applied migrations whose files changed or vanished or that have no checksum,
    /// checksums without a version, and out-of-order or dirty migrations.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Flag statements that would lock or break a live table (squawk's rules).
    Lint {
        /// Do not judge migrations up to and including this version.
        #[arg(long, value_name = "VERSION", default_value = "20250101000007")]
        baseline: String,
        #[arg(long)]
        json: bool,
    },
    /// On a scratch database: every migration up, down, up; schema after each down must
    /// equal the schema before its up; every foreign key indexed.
    Test,
    /// On a scratch database: apply everything and compare with src/schema.rs.
    Check,
    /// Put back a backup made by `upgrade --backup`: schema, history and rows together. It
    /// is loaded into a new database that takes this one's name only once complete; the
    /// current database is kept under another name. Stop the application first.
    Restore {
        /// The backup file (pg_dump's custom format).
        file: PathBuf,
        /// Give every restored object to the role that restores, instead of the roles that
        /// owned them in the backup (which must exist otherwise).
        #[arg(long)]
        no_owner: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("migrate: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let result = match cli.logging.init("warn") {
            Ok(()) => run(cli).await,
            Err(e) => Err(e.into()),
        };
        app::cli::finish("migrate", result).await
    });
    // After Ctrl-C the migration thread may still wait on a frozen server: the process
    // exits anyway (the server drops that session once it notices).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

fn url(cli: &Cli) -> anyhow::Result<DatabaseUrl> {
    Ok(db::direct_url_from(cli.url.as_deref())?)
}

fn project_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| ".".into())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| project_dir().join("migrations"));
    // init and create work on files only, possibly before any migration exists.
    match &cli.verb {
        Verb::Init => {
            init(&dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        Verb::Create {
            message,
            autogenerate,
            no_transaction,
        } => {
            create(&cli, &dir, message, *autogenerate, *no_transaction).await?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let mut migrator = match &cli.dir {
        Some(dir) => Migrator::from_dir(dir)?,
        // `migrate test`'s fixtures are not compiled in: read them from the checkout.
        None => Migrator::embedded()?.with_fixtures_from(&dir),
    };
    cli.timeouts.apply(&mut migrator.config);
    migrator.config.wait = cli.wait;

    match &cli.verb {
        Verb::Init | Verb::Create { .. } => {} // handled above
        Verb::Upgrade {
            target,
            sql,
            backup,
            allow_out_of_order,
        } => {
            let url = url(&cli)?;
            migrator.config.allow_out_of_order = *allow_out_of_order;
            let target = Target::parse(target, Direction::Up)?;
            if *sql {
                out!("{}", migrator.preview(&url, Direction::Up, target).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let applied = match backup {
                Some(file) => {
                    // Listening turns the signals' default (exit) off: the upgrade that
                    // follows races them too.
                    let mut stop = app::cli::Stop::listen()?;
                    let dumped = app::backup::dump(&url, file, stop.wait()).await;
                    if let (Some(code), Err(e)) = (stop.exit_code(), &dumped) {
                        errln!("migrate upgrade: {e}; no backup written, nothing applied");
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
        }
        Verb::Downgrade { target, sql } => {
            let url = url(&cli)?;
            let target = Target::parse(target, Direction::Down)?;
            if *sql {
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
        }
        Verb::Current { check, json } => {
            let url = url(&cli)?;
            let status = migrator.status(&url).await?;
            let pending: Vec<String> = status.pending.iter().map(|m| m.folder.clone()).collect();
            let (applied, dirty) = (status.applied, !status.dirty.is_empty());
            let current = applied
                .last()
                .map(|a| a.folder.clone().unwrap_or_else(|| a.version.clone()));
            if *json {
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
            if *check && (!pending.is_empty() || dirty) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Verb::History { json } => {
            let applied = migrator.status(&url(&cli)?).await?.applied;
            if *json {
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
        Verb::Redo { steps } => {
            let url = url(&cli)?;
            for folder in migrator.downgrade(&url, Target::Steps(*steps)).await? {
                outln!("reverted {folder}");
            }
            for folder in migrator.upgrade(&url, Target::Steps(*steps)).await? {
                outln!("applied {folder}");
            }
        }
        Verb::Stamp { version } => {
            let url = url(&cli)?;
            migrator.stamp(&url, version).await?;
            outln!("stamped {version}: recorded without running SQL");
        }
        Verb::Verify { json } => {
            let problems = migrator.status(&url(&cli)?).await?.problems();
            if *json {
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
        Verb::Lint { baseline, json } => {
            let findings =
                migrations::lint(migrator.migrations(), Some(&baseline.replace('-', "")));
            if *json {
                outln!("{}", serde_json::to_string(&findings)?);
            } else if findings.is_empty() {
                outln!("lint: no findings (migrations after {baseline})");
            }
            for f in &findings {
                if !*json {
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
            let url = url(&cli)?;
            if !dir.is_dir() {
                outln!(
                    "test: no {} here: its test_data.sql / test_expect.sql are not compiled in, \
                     so data survival is not checked (run from the project, or pass --dir)",
                    dir.display()
                );
            }
            let mut stop = app::cli::Stop::listen()?;
            let progress = &mut |line: &str| outln!("{line}");
            let tested = migrations::round_trip(&migrator, &url, progress, stop.wait()).await;
            if let (Some(code), Err(e)) = (stop.exit_code(), &tested) {
                errln!("migrate test: {e}");
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
        Verb::Restore { file, no_owner } => {
            let url = url(&cli)?;
            let mut stop = app::cli::Stop::listen()?;
            let owners = match no_owner {
                true => Owners::Restorer,
                false => Owners::AsInBackup,
            };
            let restored = app::backup::restore(&url, file, owners, stop.wait()).await;
            if let (Some(code), Err(e)) = (stop.exit_code(), &restored) {
                errln!("migrate restore: {e}");
                return Ok(code);
            }
            let replaced = restored?;
            let (file, name) = (file.display(), url.database());
            match replaced {
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
        }
        Verb::Check => {
            let url = url(&cli)?;
            let mut stop = app::cli::Stop::listen()?;
            let drift =
                migrations::schema_drift(&migrator, &url, &project_dir(), stop.wait()).await;
            if let (Some(code), Err(e)) = (stop.exit_code(), &drift) {
                errln!("migrate check: {e}");
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

const SETUP_FOLDER: &str = "00000000000000_diesel_initial_setup";

fn init(dir: &std::path::Path) -> anyhow::Result<()> {
    let created =
        |what: &str, did: bool| outln!("{what}: {}", if did { "created" } else { "exists" });
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    created(&dir.display().to_string(), !existed);
    let config = dir.parent().unwrap_or(dir).join("diesel.toml");
    let has_config = config.exists();
    if !has_config {
        std::fs::write(
            &config,
            "[print_schema]\nfile = \"src/schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n",
        )?;
    }
    created(&config.display().to_string(), !has_config);
    let setup = dir.join(SETUP_FOLDER);
    let has_setup = setup.join("up.sql").exists();
    if !has_setup {
        std::fs::create_dir_all(&setup)?;
        let embedded = Migrator::embedded()?;
        let (up, down) = embedded
            .migrations()
            .iter()
            .find(|m| m.folder == SETUP_FOLDER)
            .map(|m| (m.up.as_str(), m.down.as_deref().unwrap_or("")))
            .unwrap_or(("-- setup\n", "-- setup\n"));
        std::fs::write(setup.join("up.sql"), up)?;
        std::fs::write(setup.join("down.sql"), down)?;
    }
    created(&setup.display().to_string(), !has_setup);
    Ok(())
}

async fn create(
    cli: &Cli,
    dir: &std::path::Path,
    message: &str,
    autogenerate: bool,
    no_transaction: bool,
) -> anyhow::Result<()> {
    // Any Unicode letter or digit is kept; everything else separates words.
    let slug: String = message
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if slug.is_empty() {
        bail!("the message must contain letters or digits");
    }
    let folder = new_folder(dir, &slug)?;
    if autogenerate {
        return autogenerate_into(&url(cli)?, &folder, &slug).await;
    }
    // The message reaches the SQL only as one comment line: no newline can start a statement.
    let comment: String = message
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(folder.join("up.sql"), format!("-- {comment}\n"))?;
    std::fs::write(folder.join("down.sql"), format!("-- Undo: {comment}\n"))?;
    if no_transaction {
        std::fs::write(folder.join("metadata.toml"), "run_in_transaction = false\n")?;
    }
    outln!("created {}", folder.display());
    Ok(())
}

/// `create --autogenerate`: diesel_cli drafts `folder` from the difference between
/// src/schema.rs and the database. Nothing is drafted when they agree, and the drop-and-add
/// diesel_cli's diff writes for every enum column (it does not understand their types) is
/// taken out.
async fn autogenerate_into(url: &DatabaseUrl, folder: &Path, slug: &str) -> anyhow::Result<()> {
    std::fs::remove_dir(folder)?;
    let committed = std::fs::read_to_string(project_dir().join("src/schema.rs"))
        .context("read src/schema.rs")?;
    if migrations::print_schema(url, &project_dir())? == committed {
        outln!("nothing to draft: src/schema.rs matches the database");
        return Ok(());
    }
    // diesel writes the folder itself; it gets the version we reserved, never a used one.
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    let version = name.split('_').next().unwrap_or_default();
    let dir = folder.parent().unwrap_or(folder);
    let (bare, env) = db::tool_connection(url)?;
    let status = std::process::Command::new("diesel")
        .envs(env)
        .args(["migration", "generate", "--diff-schema", slug])
        .args(["--version", version, "--database-url", &bare])
        .arg("--migration-dir")
        .arg(dir)
        .status()
        .context("run diesel migration generate (install diesel_cli)")?;
    if !status.success() {
        bail!("diesel migration generate --diff-schema failed ({status})");
    }
    for (table, column) in enum_columns(url).await? {
        let noise = [
            format!("ALTER TABLE \"{table}\" DROP COLUMN \"{column}\";"),
            format!("ALTER TABLE \"{table}\" ADD COLUMN \"{column}\" "),
        ];
        for file in ["up.sql", "down.sql"] {
            let path = folder.join(file);
            let sql = std::fs::read_to_string(&path)?;
            let kept: Vec<&str> = sql
                .lines()
                .filter(|l| !noise.iter().any(|n| l.starts_with(n.as_str())))
                .collect();
            if kept.len() < sql.lines().count() {
                std::fs::write(&path, kept.join("\n") + "\n")?;
                errln!(
                    "{file}: left out diesel_cli's drop and re-add of enum column {table}.{column}"
                );
            }
        }
    }
    outln!(
        "drafted {} by diesel --diff-schema: review it (types, defaults, indexes are not diffed), then `migrate lint`",
        folder.display()
    );
    Ok(())
}

/// `(table, column)` of every enum-typed column in `public`.
async fn enum_columns(url: &DatabaseUrl) -> anyhow::Result<Vec<(String, String)>> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct EnumColumn {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        c: String,
    }
    let mut conn = db::connect(url).await?;
    // information_schema has no Diesel schema; this fixed query takes no input.
    let rows: Vec<EnumColumn> = diesel::sql_query(
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'USER-DEFINED'",
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.t, r.c)).collect())
}

/// Creates `<timestamp>_<slug>` with a version newer than every folder in `dir`: now, or one
/// second past the newest when that is not older (two runs in a second, a clock behind).
/// `create_dir` fails if the folder exists, so concurrent runs never share one.
fn new_folder(dir: &std::path::Path, slug: &str) -> anyhow::Result<PathBuf> {
    const FORMAT: &str = "%Y-%m-%d-%H%M%S";
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let newest = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.split('_').next()?.replace('-', "");
            chrono::NaiveDateTime::parse_from_str(&version, "%Y%m%d%H%M%S").ok()
        })
        .max();
    let mut at = chrono::Utc::now().naive_utc();
    loop {
        if let Some(newest) = newest.filter(|n| *n >= at) {
            at = newest + chrono::Duration::seconds(1);
        }
        let folder = dir.join(format!("{}_{slug}", at.format(FORMAT)));
        match std::fs::create_dir(&folder) {
            Ok(()) => return Ok(folder),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                at += chrono::Duration::seconds(1);
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", folder.display())),
        }
    }
}
