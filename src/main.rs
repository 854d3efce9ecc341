//! The application: how a service wires the data layer. Configuration from the environment,
//! the pool, a start-up check that the schema is at head (or `--migrate` to bring it there),
//! a few commands that use the models as request handlers would, and `serve`, which serves
//! the HTTP API (`app::http`) until Ctrl-C or SIGTERM, lets the requests in flight finish and
//! drains the pool.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use app::db::replicas::{self, ReplicaConfig};
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
    /// Serve the HTTP API until Ctrl-C or SIGTERM, then stop accepting, let the requests
    /// in flight finish and drain the pool. Prints `listening on ADDR` once it accepts.
    Serve {
        /// Where to listen; port 0 takes a free one (the printed line says which).
        #[arg(long, env = "APP_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// How long requests in flight at a stop may take to finish (`10s`, `500ms`).
        #[arg(long, default_value = "10s", value_parser = app::cli::duration)]
        shutdown_timeout: Duration,
        /// The longest a request may take before it is answered 503 (above 0).
        #[arg(long, default_value = "30s", value_parser = above_zero)]
        request_timeout: Duration,
    },
}

/// A duration as [`app::cli::duration`] reads it, 0 refused: a request timeout of 0 would
/// answer every request 503.
fn above_zero(text: &str) -> Result<Duration, String> {
    let limit = app::cli::duration(text)?;
    match limit.is_zero() {
        true => Err(format!("{text:?}: must be above 0")),
        false => Ok(limit),
    }
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
    let result = match cli.command {
        Command::Serve {
            listen,
            shutdown_timeout,
            request_timeout,
        } => {
            let mut state = app::http::AppState::new(pool.clone(), config.url.clone(), direct)?;
            // With DATABASE_REPLICA_URLS, reads go through the replica router and writes to
            // its primary pool; the pool above then stays unused (pools connect lazily).
            let replicas = ReplicaConfig::from_env()?;
            if !replicas.urls.is_empty() {
                // A read that waits for a replica must leave time for the primary to serve
                // it: past the request timeout it would be a 503 instead.
                let longest = replicas.wait.max(replicas.timeout);
                if longest >= request_timeout {
                    bail!(
                        "DATABASE_REPLICA_WAIT_MS and DATABASE_REPLICA_TIMEOUT_MS ({} ms at \
                         most) must be shorter than --request-timeout ({} ms): a read waiting \
                         for a replica would time out before the primary could serve it",
                        longest.as_millis(),
                        request_timeout.as_millis()
                    );
                }
                let count = replicas.urls.len();
                state = state.with_replicas(replicas::Router::new(&config, replicas)?);
                tracing::info!(replicas = count, "reads go to replicas when fresh");
            }
            let router = app::http::router(state.clone(), request_timeout);
            let served = serve(&state, router, listen, shutdown_timeout).await;
            state.pool().close();
            served
        }
        command => handle(&pool, command).await,
    };
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
        Command::Serve { .. } => unreachable!("run before any command"),
    })
}

/// The longest a stop waits, past its grace period, for the server to take its cancels.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Serves `router` on `listen` until Ctrl-C, SIGTERM or SIGHUP, then lets the requests in
/// flight finish within `grace`. No health check on a timer: `/readyz` answers that on
/// demand, for whoever routes traffic here.
async fn serve(
    state: &app::http::AppState,
    router: axum::Router,
    listen: SocketAddr,
    grace: Duration,
) -> anyhow::Result<()> {
    // Listening before the port opens: a signal sent as soon as the line below is read is
    // a stop, never the default action (an exit without draining).
    let mut stop = app::cli::Stop::listen()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    outln!("listening on {}", listener.local_addr()?);
    // A second signal cuts the grace period short: an operator who presses Ctrl-C again
    // means it.
    let hurry = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopping = {
        let hurry = std::sync::Arc::clone(&hurry);
        async move {
            stop.wait().await;
            outln!(
                "shutting down: no new connections; requests in flight have {}s to finish \
                 (a second Ctrl-C or SIGTERM stops them now)",
                grace.as_secs_f64()
            );
            tokio::spawn(async move {
                stop.wait().await;
                outln!("shutting down now: a second signal");
                hurry.notify_one();
            });
        }
    };
    let hurried = async move { hurry.notified().await };
    let drained = app::http::serve(listener, router, stopping, grace, hurried).await?;
    // Abandoned is not enough: a statement waiting on a lock would commit after exit. Its
    // cancel, and those requests given up earlier sent (a timeout, a client gone), get
    // CANCEL_WAIT between them: a frozen server cannot hold the exit.
    let cancelled = tokio::time::timeout(CANCEL_WAIT, async {
        let held = match drained {
            app::http::Drained::TimedOut => state.cancel_running().await,
            app::http::Drained::All => 0,
        };
        db::cancels_sent(CANCEL_WAIT).await;
        held
    });
    let held = cancelled.await.unwrap_or(0);
    if drained == app::http::Drained::TimedOut {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            held,
            "shutdown: requests still running after the grace period are abandoned, their \
             statements cancelled"
        );
    }
    let pool = state.pool();
    outln!(
        "shutting down: draining {} pooled connections",
        pool.status().size
    );
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
    fn serve_takes_an_address_and_durations() {
        assert!(Cli::try_parse_from(["app", "serve", "--listen", "localhost"]).is_err());
        assert!(Cli::try_parse_from(["app", "serve", "--shutdown-timeout", "5 parsecs"]).is_err());
        assert!(Cli::try_parse_from(["app", "serve", "--request-timeout", "0s"]).is_err());
        let cli = Cli::try_parse_from(["app", "serve", "--listen", "127.0.0.1:0"]).unwrap();
        let Command::Serve { listen, .. } = cli.command else {
            panic!("not serve: {cli:?}");
        };
        assert_eq!(listen.port(), 0);
    }
}
