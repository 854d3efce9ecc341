//! The application: how a service wires the data layer. Configuration from the environment,
//! the pool, a start-up check that the schema is at head (or `--migrate` to bring it there),
//! a few commands that use the models as request handlers would, and `serve`, which runs
//! until Ctrl-C or SIGTERM and then drains the pool.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use app::db::{self, DbConfig, Pool};
use app::migrations::{self, Migrator};
use app::models::{Email, NewTask, NewUser, Priority, Task, TaskChanges, TaskStatus, Title, User};
use app::outln;
use clap::{Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};

/// The example service: users and their tasks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Database URL [default: $DATABASE_URL, also read from .env]
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Apply pending migrations before starting, under migrate's advisory lock. For a single
    /// instance; with several, run `migrate upgrade` as a release step instead.
    #[arg(long, global = true)]
    migrate: bool,
    /// With --migrate: the runner's timeouts, as `migrate` takes them.
    #[command(flatten)]
    timeouts: app::cli::MigrationTimeouts,
    #[command(flatten)]
    logging: app::cli::Logging,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add a user.
    AddUser {
        /// Their email address (unique, case-insensitive).
        email: String,
        /// The name to show.
        name: String,
    },
    /// Add a task for the user with this email.
    AddTask {
        /// The owner's email.
        owner: String,
        /// What to do.
        title: String,
        /// 1 (highest) to 5.
        #[arg(long)]
        priority: Option<i64>,
    },
    /// List the open tasks of the user with this email, soonest due first.
    Tasks {
        /// The owner's email.
        owner: String,
    },
    /// Mark a task done.
    Close {
        /// The task's id.
        id: i64,
    },
    /// Run until Ctrl-C or SIGTERM, checking the database every few seconds, then drain the
    /// pool: the shape of a server's main loop.
    Serve {
        /// Seconds between health checks (1 to 86400); a check gives up after the
        /// interval or 10 s, whichever is shorter.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        every: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // .env first, once: the flags' environment defaults (MIGRATE_*, LOG_FORMAT) may be there.
    let dotenv = app::settings::load_dotenv();
    let cli = Cli::parse();
    if let Err(code) = app::cli::refuse_bad_dotenv(env!("CARGO_PKG_NAME"), dotenv) {
        return code;
    }
    let result = match cli.logging.init("info") {
        Ok(()) => run(cli).await.map(|()| ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    };
    app::cli::finish(env!("CARGO_PKG_NAME"), result).await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = db::url_from(cli.url.as_deref())?;
    let config = DbConfig::with_env(url)?;
    // Migrations need a whole session: past a transaction pooler when one is configured.
    let direct = db::direct_url_from(cli.url.as_deref())?;
    let migrate = cli.migrate.then(|| {
        let mut config = migrations::Config::default();
        cli.timeouts.apply(&mut config);
        config
    });
    at_head(&direct, migrate).await?;
    // A pooler in front that the connections are not set up for breaks every statement,
    // and leaves statements on the server sessions other processes then trip over.
    if direct != config.url
        && config.pooler == db::Pooler::Session
        && db::is_transaction_pooler(&config.url).await?
    {
        bail!(
            "DATABASE_URL ({}) leads through a transaction pooler (PgBouncer pool_mode = \
             transaction): set DATABASE_POOLER=transaction (docs/scale-out.md)",
            config.url
        );
    }
    let pool = db::build_pool(&config)?;
    let result = handle(&pool, cli.command).await;
    // Every connection goes back to the server with a goodbye before the process ends.
    pool.close();
    result
}

/// Refuses to start on a schema behind this binary's migrations, or brings it to head when
/// asked: code must never run against tables it does not know.
async fn at_head(url: &db::DatabaseUrl, migrate: Option<migrations::Config>) -> anyhow::Result<()> {
    let status = Migrator::embedded()?.status(url).await?;
    if let Some(folder) = status.dirty.first() {
        bail!(
            "migration {folder} failed part-way: repair it (see `migrate verify`) before starting"
        );
    }
    if status.pending.is_empty() {
        return Ok(());
    }
    let pending: Vec<&str> = status.pending.iter().map(|m| m.folder.as_str()).collect();
    let Some(config) = migrate else {
        bail!(
            "the database is behind this build: {} pending ({}); run `migrate upgrade`, or \
             start with --migrate",
            pending.len(),
            pending.join(", ")
        );
    };
    // The runner reports each migration it applies (an `info` event, shown by default).
    migrations::run_pending_with(url, config).await?;
    Ok(())
}

async fn handle(pool: &Pool, command: Command) -> anyhow::Result<()> {
    if let Command::Serve { every } = command {
        return serve(pool, Duration::from_secs(every)).await;
    }
    let mut conn = db::checkout(pool).await.context("no database connection")?;
    // One command, one transaction: all or nothing, and behind a transaction pooler
    // (DATABASE_POOLER=transaction) the one way its statements stay on one server session.
    // Lines print once it has committed.
    let lines = conn
        .transaction::<_, app::Error, _>(async |conn| unit(conn, command).await)
        .await?;
    for line in lines {
        outln!("{line}");
    }
    Ok(())
}

/// A command's work, as a request handler would do it; returns the lines to print.
async fn unit(conn: &mut AsyncPgConnection, command: Command) -> app::Result<Vec<String>> {
    use diesel_async::RunQueryDsl;
    Ok(match command {
        Command::AddUser { email, name } => {
            let email = Email::parse(&email)?;
            let new = NewUser {
                email: &email,
                display_name: &name,
            };
            let user = User::create(conn, &new).await?;
            vec![format!("user {} <{}>", user.id, user.email.as_str())]
        }
        Command::AddTask {
            owner,
            title,
            priority,
        } => {
            let owner = User::by_email(conn, &owner).await?;
            let title = Title::parse(&title)?;
            let mut new = NewTask::new(owner.id, &title);
            new.priority = priority.map(Priority::new).transpose()?;
            let task = Task::create(conn, &new).await?;
            vec![format!("task {}: {}", task.id, task.title.as_str())]
        }
        Command::Tasks { owner } => {
            let owner = User::by_email(conn, &owner).await?;
            let open: Vec<Task> = Task::open_for_owner(owner.id).load(conn).await?;
            (open.into_iter())
                .map(|task| {
                    let due = task.due_date.map_or("-".into(), |d| d.to_string());
                    let (id, priority) = (task.id, task.priority.get());
                    format!("{id:>6}  p{priority}  {due:<10}  {}", task.title.as_str())
                })
                .collect()
        }
        Command::Close { id } => {
            let done = TaskChanges {
                status: Some(TaskStatus::Done),
                ..Default::default()
            };
            let task = Task::update(conn, id, &done).await?;
            vec![format!("task {} done", task.id)]
        }
        Command::Serve { .. } => unreachable!("handled before a connection is taken"),
    })
}

/// Checks the database on a timer until Ctrl-C or SIGTERM. A failed check is reported and
/// the loop goes on: the pool reconnects once the server is back. A check never outlasts its
/// interval, and a signal stops the loop at once, mid-check too.
async fn serve(pool: &Pool, every: Duration) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Both listeners exist before the first check: a signal that arrives during one is
    // queued for them, never lost.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    // A frozen database is reported within 10 s, however long the interval.
    let limit = every.min(Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    outln!("serving; Ctrl-C or SIGTERM stops");
    let checks = async {
        loop {
            tick.tick().await;
            match tokio::time::timeout(limit, health(pool)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %format!("{err:#}"), "health check failed");
                }
                Err(_) => tracing::warn!(
                    limit_s = limit.as_secs(),
                    "health check failed: no answer within {}s",
                    limit.as_secs()
                ),
            }
        }
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        () = checks => {}
    }
    outln!(
        "shutting down: draining {} pooled connections",
        pool.status().size
    );
    Ok(())
}

async fn health(pool: &Pool) -> anyhow::Result<()> {
    // The simple query protocol: one message, through any pooler.
    use diesel_async::SimpleAsyncConnection;
    let mut conn = db::checkout(pool).await?;
    conn.batch_execute("SELECT 1").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_refuses_an_interval_out_of_range() {
        for every in ["0", "86401"] {
            assert!(Cli::try_parse_from(["app", "serve", "--every", every]).is_err());
        }
        let cli = Cli::try_parse_from(["app", "serve", "--every", "86400"]).unwrap();
        assert!(matches!(cli.command, Command::Serve { every: 86_400 }));
    }
}
