//! `bench http`: the service's HTTP API under load from wrk, beside pgbench reading the same
//! rows straight from the server in the same run. A release `serve` on a seeded scratch
//! database answers `GET /tasks/{id}`, `GET /users/{id}/tasks` and `POST /tasks` at each
//! connection count; pgbench's point reads (the very statement `GET /tasks/{id}` sends,
//! captured from the model API) are the floor every row is measured against.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use app::db::{self, DatabaseUrl};
use app::migrations::{self, Scratch};
use app::outln;
use diesel_async::SimpleAsyncConnection;
use serde::Serialize;

mod server;
mod wrk;

use server::Server;

/// Drive the HTTP API with wrk, against pgbench's point reads in the same run.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Tasks seeded (the ids `GET /tasks/{id}` draws from).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    rows: u64,
    /// Users the tasks are spread over (the ids `GET /users/{id}/tasks` draws from).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Concurrent connections, wrk's and pgbench's clients alike; serve's pool is the
    /// largest.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32], value_parser = clap::value_parser!(u64).range(1..=512))]
    connections: Vec<u64>,
    /// How long each measurement runs (whole seconds: wrk's unit).
    #[arg(long, default_value = "10s", value_parser = app::cli::duration)]
    duration: Duration,
    /// Rounds at each connection count, interleaved (pgbench, then every workload, again):
    /// each row is the median round, so a burst of other load moves one round, not the ratio.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// The service binary to run `serve` from [default: the one beside this binary]
    #[arg(long, value_name = "BIN")]
    server: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Server to create the scratch database on [default: $DATABASE_URL, also from .env]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

/// The reference row's name.
const PGBENCH: &str = "pgbench point read";

/// One workload at one connection count.
#[derive(Debug, Serialize)]
struct Row {
    workload: &'static str,
    connections: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// requests_per_s over pgbench's transactions per second at the same connections.
    vs_pgbench: Option<f64>,
    /// Each round's requests per second, in the order they ran.
    rounds: Vec<f64>,
    /// The rounds' spread: (fastest - slowest) / median, in percent.
    spread_pct: f64,
}

impl Row {
    /// The median of `runs` (by rate), with every round kept beside it.
    fn median(workload: &'static str, connections: usize, runs: &[wrk::Run]) -> Row {
        let mut sorted: Vec<&wrk::Run> = runs.iter().collect();
        sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let mid = sorted[sorted.len() / 2];
        let (low, high) = (sorted[0].rate, sorted[sorted.len() - 1].rate);
        Row {
            workload,
            connections,
            requests_per_s: mid.rate,
            p50_ms: mid.p50_ms,
            p99_ms: mid.p99_ms,
            vs_pgbench: None,
            rounds: runs.iter().map(|r| r.rate).collect(),
            spread_pct: if mid.rate > 0.0 {
                100.0 * (high - low) / mid.rate
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    rows: u64,
    users: u64,
    seconds: u64,
    rounds: u64,
    results: Vec<Row>,
}

/// Runs the HTTP bench on a scratch database, dropped at the end, also when interrupted
/// (Ctrl-C, SIGTERM): the server and wrk are killed with the work they were part of.
pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    let url = db::url_from(args.url.as_deref())?;
    let bin = match &args.server {
        Some(bin) => bin.clone(),
        None => beside_this_binary()?,
    };
    wrk_present()?;
    let mut stop = app::cli::Stop::listen()?;
    let scratch = Scratch::create(&url).await?;
    let result = tokio::select! {
        result = measure(&args, &scratch.url, &bin) => result,
        () = stop.wait() => Err(anyhow::anyhow!("interrupted: the scratch database is dropped")),
    };
    scratch.drop_now().await?;
    let report = Report {
        rows: args.rows,
        users: args.users,
        seconds: wrk::seconds(args.duration),
        rounds: args.rounds,
        results: result?,
    };
    print_table(&report.results);
    if let Some(file) = &args.json {
        std::fs::write(file, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", file.display()))?;
        outln!("\nwrote {}", file.display());
    }
    Ok(())
}

/// The service binary, built beside this one (`cargo build --bins` puts them together); it
/// is named after the package, as cargo names a project's main binary.
fn beside_this_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(env!("CARGO_PKG_NAME"));
    if !bin.exists() {
        bail!(
            "{} is not built: `cargo build --release --bin {}` (scripts/bench.sh http does), or pass --server",
            bin.display(),
            env!("CARGO_PKG_NAME")
        );
    }
    Ok(bin)
}

fn wrk_present() -> anyhow::Result<()> {
    let found = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    match found {
        true => Ok(()),
        false => bail!(
            "wrk is not installed (Debian: apt-get install wrk; scripts/bench.sh http installs it)"
        ),
    }
}

async fn measure(
    args: &HttpArgs,
    url: &DatabaseUrl,
    bin: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    let (rows, users) = (args.rows as usize, args.users as usize);
    migrations::run_pending(url).await?;
    let mut conn = db::connect(url).await?;
    super::seed_users(&mut conn, users).await?;
    conn.batch_execute(&format!("{}; ANALYZE", super::floor_insert(rows, users)))
        .await?;
    drop(conn);
    let script = super::oltp::point_read_script(url, rows, users).await?;

    let dir = tempdir()?;
    let workloads = [
        ("GET /tasks/{id}", wrk::get_task(rows)),
        ("GET /users/{id}/tasks", wrk::user_tasks(users)),
        ("POST /tasks", wrk::create_task(users)),
    ];
    let mut scripts = Vec::new();
    for (i, (name, lua)) in workloads.iter().enumerate() {
        let file = dir.path.join(format!("{i}.lua"));
        std::fs::write(&file, lua).with_context(|| format!("write {}", file.display()))?;
        scripts.push((*name, file));
    }

    let most = *args.connections.iter().max().context("no --connections")? as usize;
    let server = Server::start(bin, url, most).await?;
    let base = format!("http://{}", server.addr);
    // Every pooled connection opened, and the server's caches warm, before anything counts.
    wrk::run(&scripts[0].1, &base, most, Duration::from_secs(1)).await?;

    let mut results = Vec::new();
    for &connections in &args.connections {
        let connections = connections as usize;
        let secs = wrk::seconds(args.duration);
        let mut floors = Vec::new();
        let mut runs: Vec<Vec<wrk::Run>> = scripts.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.rounds {
            let (url, script) = (url.clone(), script.clone());
            let floor = tokio::task::spawn_blocking(move || {
                super::oltp::pgbench_point_reads(&url, &script, connections, secs)
            })
            .await??;
            app::errln!(
                "{PGBENCH:<22} C={connections:<3} round {round}: {:>9.0} tx/s",
                floor.0
            );
            floors.push(wrk::Run {
                rate: floor.0,
                p50_ms: floor.1,
                p99_ms: floor.2,
                errors: 0,
            });
            for ((workload, file), runs) in scripts.iter().zip(&mut runs) {
                let run = wrk::run(file, &base, connections, args.duration).await?;
                if run.errors > 0 {
                    bail!(
                        "{workload} at {connections} connections: {} requests failed (serve's log above says why)",
                        run.errors
                    );
                }
                app::errln!(
                    "{workload:<22} C={connections:<3} round {round}: {:>9.0} req/s",
                    run.rate
                );
                runs.push(run);
            }
        }
        let floor = Row::median(PGBENCH, connections, &floors);
        let reference = floor.requests_per_s;
        results.push(Row {
            vs_pgbench: Some(1.0),
            ..floor
        });
        for ((workload, _), runs) in scripts.iter().zip(&runs) {
            let row = Row::median(workload, connections, runs);
            results.push(Row {
                vs_pgbench: (reference > 0.0).then(|| row.requests_per_s / reference),
                ..row
            });
        }
    }
    server.stop().await?;
    Ok(results)
}

/// A temporary directory for the Lua scripts, removed when dropped.
struct TempDir {
    path: PathBuf,
}

fn tempdir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    Ok(TempDir { path })
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn print_table(rows: &[Row]) {
    outln!(
        "\n{:<22} {:>11} {:>11} {:>8} {:>8} {:>8} {:>11}",
        "workload",
        "connections",
        "requests/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "vs pgbench"
    );
    for row in rows {
        outln!(
            "{:<22} {:>11} {:>11.0} {:>7.0}% {:>8.2} {:>8.2} {:>11}",
            row.workload,
            row.connections,
            row.requests_per_s,
            row.spread_pct,
            row.p50_ms,
            row.p99_ms,
            row.vs_pgbench.map_or("-".into(), |r| format!("{r:.2}x"))
        );
    }
}
