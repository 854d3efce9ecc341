//! `bench`: our techniques side by side on a scratch database, in one run, each against a
//! reference: bulk writes against the server's own floor, concurrent OLTP through the pool
//! against `pgbench`, a streamed insert with its peak memory.
//! `cargo run --release --bin bench -- --rows 100000 --json out.json`

use std::time::Instant;

use anyhow::Context;
use app::db::{self, DatabaseUrl};
use app::migrations::{self, Scratch};
use app::models::{Email, UserRow};
use app::{Error, bulk};
use app::{errln, outln};
use clap::Parser;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde::Serialize;

mod batches;
mod http;
mod oltp;
mod stream;

/// Every workload, in the order a run takes them.
const WORKLOADS: [&str; 9] = [
    "insert",
    "upsert",
    "update",
    "delete",
    "load",
    "dashboard",
    "point_read",
    "oltp_txn",
    "insert_stream",
];

/// Compare bulk writes, loading, concurrent OLTP and a streamed insert on a scratch database;
/// `bench http` drives the HTTP API instead.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Tasks to write per bulk workload (and in the table the OLTP workloads read).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Users the tasks are spread over (and loaded back with their tasks and tags).
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Run only these workloads (comma-separated) [default: all]
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workloads: Vec<String>,
    /// Concurrent clients for point_read and oltp_txn, ours and pgbench's.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32, 64])]
    clients: Vec<usize>,
    /// Seconds each OLTP measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of every OLTP technique, interleaved so drift on the machine hits each alike;
    /// each technique reports its median round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Tasks in the largest streamed insert, also run at a tenth and a hundredth of it
    /// [default: 10 x --rows]
    #[arg(long, value_name = "N")]
    stream_rows: Option<usize>,
    /// A pgbouncer in front of the server (its `*` database forwarding every name): the
    /// OLTP workloads also run through it, as technique `pgbouncer`, each unit of work in a
    /// transaction when --pgbouncer-mode is transaction.
    #[arg(long, value_name = "URL")]
    pgbouncer: Option<String>,
    /// The pool_mode that pgbouncer runs in.
    #[arg(long, value_name = "MODE", default_value = "transaction", value_parser = ["transaction", "session"])]
    pgbouncer_mode: String,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Server to create the scratch database on [default: $DATABASE_URL, also from .env]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Internal: stream N tasks into $DATABASE_URL and print seconds and peak memory (a
    /// process of its own, so its peak is the copy's alone).
    #[arg(long, hide = true, value_name = "N")]
    stream_child: Option<usize>,
    #[command(flatten)]
    logging: app::cli::Logging,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Drive the HTTP API (a release `serve` on a seeded scratch database) with wrk:
    /// GET /tasks/{id}, GET /users/{id}/tasks, POST /tasks, against pgbench's point reads.
    Http(http::HttpArgs),
}

impl Args {
    fn wants(&self, workload: &str) -> bool {
        self.workloads.is_empty() || self.workloads.iter().any(|w| w == workload)
    }
}

/// One technique on one workload. The optional fields appear where they apply.
#[derive(Debug, Default, Serialize)]
struct Measurement {
    workload: &'static str,
    technique: &'static str,
    seconds: f64,
    queries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ops_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_mib: Option<f64>,
    /// Most server sessions open on the database while the workload ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_sessions: Option<usize>,
    /// CPU the client process spent per unit of work (its own, or pgbench's), in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cpu_us: Option<f64>,
    /// Rounds measured; the figures are the median round's (by ops/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: usize,
    users: usize,
    results: Vec<Measurement>,
}

/// The measurements so far; each is shown on stderr as it lands, so a long run shows progress.
#[derive(Debug, Default)]
struct Results(Vec<Measurement>);

impl Results {
    fn push(&mut self, m: Measurement) {
        let clients = m.clients.map_or(String::new(), |c| format!(" C={c}"));
        let rows = m.rows.map_or(String::new(), |r| format!(" {r} rows"));
        errln!(
            "{:<13} {:<14} {:>8.3} s{clients}{rows}",
            m.workload,
            m.technique,
            m.seconds
        );
        self.0.push(m);
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // .env first, once: the flags' environment defaults (MIGRATE_*, LOG_FORMAT) may be there.
    let dotenv = app::settings::load_dotenv();
    let args = Args::parse();
    if let Err(code) = app::cli::refuse_bad_dotenv("bench", dotenv) {
        return code;
    }
    // The bench times every statement itself, and makes many slow on purpose (a 100,000-row
    // insert, a dozen clients on two cores): the slow-query warnings (`app::instrument`,
    // DATABASE_SLOW_QUERY_MS) would interleave with its table, dozens of them. RUST_LOG
    // brings them back.
    let result = match (
        args.logging.init("warn,app::instrument=error"),
        args.stream_child,
    ) {
        (Err(e), _) => Err(e.into()),
        (Ok(()), Some(n)) => stream::child(n, args.users).await,
        (Ok(()), None) => match args.mode {
            Some(Mode::Http(http)) => http::run(http).await,
            None => run(args).await,
        },
    };
    app::cli::finish("bench", result.map(|()| std::process::ExitCode::SUCCESS)).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let url = db::url_from(args.url.as_deref())?;
    let scratch = Scratch::create(&url).await?;
    let result = bench(&args, &scratch.url).await;
    scratch.drop_now().await?;
    let report = Report {
        rows: args.rows,
        users: args.users,
        results: result?.0,
    };
    print_tables(&report);
    if let Some(file) = &args.json {
        std::fs::write(file, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", file.display()))?;
        outln!("\nwrote {}", file.display());
    }
    Ok(())
}

async fn bench(args: &Args, url: &DatabaseUrl) -> anyhow::Result<Results> {
    migrations::run_pending(url).await?;
    let mut conn = db::connect(url).await?;
    seed_users(&mut conn, args.users).await?;
    let mut results = Results::default();
    batches::run(args, url, &mut conn, &mut results).await?;
    oltp::run(args, url, &mut conn, &mut results).await?;
    if args.wants("insert_stream") {
        stream::run(args, url, &mut conn, &mut results).await?;
    }
    Ok(results)
}

/// Inserts `n` users, ids 1 to `n` on a fresh table: the owners of every workload's tasks.
async fn seed_users(conn: &mut AsyncPgConnection, n: usize) -> anyhow::Result<()> {
    let users: Vec<UserRow> = (0..n)
        .map(|i| {
            Ok(UserRow {
                email: Email::parse(&format!("bench{i}@example.com"))?,
                display_name: format!("Bench {i}"),
            })
        })
        .collect::<Result<_, Error>>()?;
    bulk::insert(conn, &users).await?;
    Ok(())
}

/// Seconds one server-side statement takes to make the same change: the floor our indexes,
/// triggers and foreign keys set, which no client technique can beat. The statements are
/// fixed text with numbers only, so `batch_execute` (no binds) is what measures them.
async fn floor_of(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    conn.batch_execute(sql).await?;
    Ok(start.elapsed().as_secs_f64())
}

/// `INSERT .. SELECT .. FROM generate_series`: `n` tasks made by the server alone, the same
/// columns and values the bench's rows carry.
fn floor_insert(n: usize, users: usize) -> String {
    format!(
        "INSERT INTO tasks (owner_id, title, priority) SELECT 1 + g % {users}, 'Task ' || g, \
         1 + g % 5 FROM generate_series(0, {n} - 1) g"
    )
}

fn print_tables(report: &Report) {
    let of = |workloads: &[&str]| -> Vec<&Measurement> {
        (report.results.iter())
            .filter(|m| workloads.contains(&m.workload))
            .collect()
    };
    let bulk = of(&["insert", "upsert", "update", "delete", "load", "dashboard"]);
    if !bulk.is_empty() {
        batches::print_table(report, &bulk);
    }
    let oltp = of(&["point_read", "oltp_txn"]);
    if !oltp.is_empty() {
        oltp::print_table(&oltp);
    }
    let streamed = of(&["insert_stream"]);
    if !streamed.is_empty() {
        stream::print_table(&streamed);
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn no_workloads_named_means_all_of_them() {
        let all = Args::try_parse_from(["bench"]).unwrap();
        assert!(all.wants("insert") && all.wants("oltp_txn"));
        let some = Args::try_parse_from(["bench", "--workloads", "load,point_read"]).unwrap();
        assert!(some.wants("point_read") && !some.wants("insert"));
        assert!(Args::try_parse_from(["bench", "--workloads", "nope"]).is_err());
        assert!(Args::try_parse_from(["bench", "--rounds", "0"]).is_err());
    }
}
