//! Many small units of work at once, through the pool and the model API, against `pgbench`
//! running the same SQL (captured from the model API itself) with the same client count.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use app::db::{self, DatabaseUrl, DbConfig, Pool, Pooler, Recycle};
use app::models::{Comment, CommentOn, Priority, Task, TaskChanges};
use app::{migrations, outln};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio_postgres::Statement;

use super::{Args, Measurement, Results};

/// One unit of work.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A task by primary key.
    PointRead,
    /// In one transaction: change a task's priority, comment on it, read it back.
    Txn,
}

impl Op {
    fn workload(self) -> &'static str {
        match self {
            Op::PointRead => "point_read",
            Op::Txn => "oltp_txn",
        }
    }

    /// The unit of work on task `id`, through the model API.
    async fn run(self, conn: &mut AsyncPgConnection, id: i64, users: i64) -> app::Result<()> {
        match self {
            Op::PointRead => {
                Task::find(conn, id).await?;
            }
            Op::Txn => {
                conn.transaction::<_, app::Error, _>(async |conn| {
                    let priority = Some(Priority::new(1 + id % 5)?);
                    let changes = TaskChanges {
                        priority,
                        ..TaskChanges::default()
                    };
                    Task::update(conn, id, &changes).await?;
                    Comment::create(conn, 1 + id % users, CommentOn::Task(id), "bench").await?;
                    Task::find(conn, id).await?;
                    Ok(())
                })
                .await?;
            }
        }
        Ok(())
    }

    /// What pgbench passes for each captured statement's `$1, $2, ...`: its variables
    /// where the value changes per unit of work (see [`script`]), constants where not.
    fn pgbench_values(self) -> &'static [&'static [&'static str]] {
        match self {
            Op::PointRead => &[&[":id", "1"]],
            Op::Txn => &[
                &[],
                &[":prio", ":id"],
                &[":author", ":id", "NULL", "'bench'"],
                &[":id", "1"],
                &[],
            ],
        }
    }
}

/// point_read and oltp_txn at each client count: ours, then pgbench's.
pub async fn run(
    args: &Args,
    url: &DatabaseUrl,
    conn: &mut AsyncPgConnection,
    results: &mut Results,
) -> anyhow::Result<()> {
    let ops: Vec<Op> = [Op::PointRead, Op::Txn]
        .into_iter()
        .filter(|op| args.wants(op.workload()))
        .collect();
    if ops.is_empty() {
        return Ok(());
    }
    let (rows, users) = (args.rows.max(1), args.users.max(1));
    conn.batch_execute(&format!(
        "TRUNCATE tasks RESTART IDENTITY CASCADE; {}; ANALYZE",
        super::floor_insert(rows, users)
    ))
    .await?;
    let duration = Duration::from_secs(args.seconds.max(1));
    let mut pgbench_works = true;
    for op in ops {
        let (script, statements) = script(op, url, rows, users).await?;
        for &clients in &args.clients {
            // Every technique once per round, in turn; then each one's median round.
            let mut rounds = Results::default();
            for _ in 0..args.rounds {
                let results = &mut rounds;
                // Ours as configured by default, and (for point reads) with the checkout ping
                // the default leaves out; each on a pool of its own, closed before the next.
                let mut ours_as = vec![("model_api", Recycle::Fast)];
                if let Op::PointRead = op {
                    ours_as.push(("pool_verified", Recycle::Verified));
                }
                for (technique, recycle) in ours_as {
                    // DATABASE_POOLER from the environment: the bench can run through PgBouncer.
                    let pool = db::build_pool(&DbConfig {
                        max_size: clients,
                        recycle,
                        ..DbConfig::with_env(named(url, technique)?)?
                    })?;
                    let load = ours(&pool, op, clients, duration, (rows, users), false);
                    let (load, peak) = peak_sessions(url, technique, load).await?;
                    let mut m = load.measurement(op, technique, clients);
                    m.server_sessions = Some(peak);
                    results.push(m);
                    drop(pool);
                    sessions_closed(conn, technique).await?;
                }
                if let Some(bouncer) = &args.pgbouncer {
                    // The same database, reached through the pooler; its server sessions stay
                    // open after the pool closes, as a pooler's do.
                    let through = DatabaseUrl::parse(bouncer)?.with_database(&url.database());
                    let transaction = args.pgbouncer_mode == "transaction";
                    let pooler = match transaction {
                        true => Pooler::Transaction,
                        false => Pooler::Session,
                    };
                    let pool = db::build_pool(&DbConfig {
                        max_size: clients,
                        pooler,
                        ..DbConfig::new(named(&through, "pgbouncer")?)
                    })?;
                    let load = ours(&pool, op, clients, duration, (rows, users), transaction);
                    let (load, peak) = peak_sessions(url, "pgbouncer", load).await?;
                    let mut m = load.measurement(op, "pgbouncer", clients);
                    m.server_sessions = Some(peak);
                    results.push(m);
                    drop(pool);
                }
                if let Op::PointRead = op {
                    let named = named(url, "tokio_postgres")?;
                    let load = driver_only(&named, &statements[0], clients, duration, rows as i64);
                    results.push(load.await?.measurement(op, "tokio_postgres", clients));
                    sessions_closed(conn, "tokio_postgres").await?;
                }
                if !pgbench_works {
                    continue;
                }
                let (url, script) = (url.clone(), script.clone());
                let secs = duration.as_secs();
                match tokio::task::spawn_blocking(move || pgbench(&url, &script, clients, secs))
                    .await?
                {
                    Ok(load) => results.push(load.measurement(op, "pgbench", clients)),
                    Err(e) => {
                        tracing::warn!("pgbench skipped: {e:#}");
                        pgbench_works = false;
                    }
                }
                sessions_closed(conn, "pgbench").await?;
            }
            medians(rounds, args.rounds, results);
        }
    }
    Ok(())
}

/// For each technique in `rounds` (in order of first appearance), its median round by
/// ops/s, marked with how many rounds there were.
fn medians(rounds: Results, count: u64, results: &mut Results) {
    let mut all = rounds.0;
    while let Some(first) = all.first().map(|m| m.technique) {
        let (mut mine, rest): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|m| m.technique == first);
        all = rest;
        mine.sort_by(|a, b| {
            a.ops_per_s
                .partial_cmp(&b.ops_per_s)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut median = mine.swap_remove(mine.len() / 2);
        median.rounds = Some(count);
        results.0.push(median);
    }
}

#[derive(diesel::QueryableByName)]
struct Sessions {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `url` with `application_name` set to `technique`: how the server tells the sessions of
/// one technique from the others'.
fn named(url: &DatabaseUrl, technique: &str) -> anyhow::Result<DatabaseUrl> {
    let glue = if url.expose().contains('?') { '&' } else { '?' };
    let named = format!("{}{glue}application_name={technique}", url.expose());
    Ok(DatabaseUrl::parse(&named)?)
}

/// How many sessions of `technique` are open on the database `conn` is on.
async fn sessions_of(conn: &mut AsyncPgConnection, technique: &str) -> anyhow::Result<usize> {
    let sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
               AND application_name = $1";
    let query = diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(technique);
    let found: Sessions = diesel_async::RunQueryDsl::get_result(query, conn).await?;
    Ok(found.n as usize)
}

/// Waits (up to 10 s) until the sessions of `technique` have closed, so the next
/// measurement gets every connection slot the server has.
async fn sessions_closed(conn: &mut AsyncPgConnection, technique: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions_of(conn, technique).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs `work` while counting, every 20 ms on a connection of its own, the server
/// sessions of `technique` on `url`'s database; returns its result and the most at once.
async fn peak_sessions<T>(
    url: &DatabaseUrl,
    technique: &str,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, usize)> {
    let mut watcher = db::connect(url).await?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        let mut most = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            most = most.max(sessions_of(&mut watcher, technique).await?);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, anyhow::Error>(most)
    };
    let work = async {
        let out = work.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let (out, most) = tokio::join!(work, watch);
    Ok((out?, most?))
}

/// Completed units of work and how long each took.
struct Load {
    seconds: f64,
    ops_per_s: f64,
    latencies: Vec<Duration>,
    /// CPU the client spent (user + system), in seconds.
    cpu_seconds: f64,
}

impl Load {
    fn measurement(mut self, op: Op, technique: &'static str, clients: usize) -> Measurement {
        self.latencies.sort();
        let at = |q: f64| {
            let i = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
            self.latencies[i].as_secs_f64() * 1000.0
        };
        let (p50, p99) = match self.latencies.is_empty() {
            true => (None, None),
            false => (Some(at(0.50)), Some(at(0.99))),
        };
        Measurement {
            workload: op.workload(),
            technique,
            seconds: self.seconds,
            clients: Some(clients),
            ops_per_s: Some(self.ops_per_s),
            p50_ms: p50,
            p99_ms: p99,
            client_cpu_us: (!self.latencies.is_empty())
                .then(|| self.cpu_seconds / self.latencies.len() as f64 * 1e6),
            ..Measurement::default()
        }
    }
}

/// `clients` tasks, each taking a connection from the pool per unit of work, until
/// `duration` is up. Latency counts the wait for a connection too.
async fn ours(
    pool: &Pool,
    op: Op,
    clients: usize,
    duration: Duration,
    (rows, users): (usize, usize),
    in_transaction: bool,
) -> anyhow::Result<Load> {
    // Open the connections first: pgbench's rate also leaves connecting out.
    let warm = futures_util::future::try_join_all((0..clients).map(|_| pool.get())).await?;
    drop(warm);
    let users = users as i64;
    let unit = move |pool: Pool, id: i64| async move {
        let mut conn = pool.get().await?;
        match (in_transaction, op) {
            (true, Op::PointRead) => {
                let read = async |conn: &mut db::PooledConnection| op.run(conn, id, users).await;
                conn.transaction::<_, app::Error, _>(read).await?
            }
            _ => op.run(&mut conn, id, users).await?,
        }
        Ok(())
    };
    drive(vec![pool.clone(); clients], duration, rows as i64, unit).await
}

/// Runs `unit` from one task per state until `duration` is up, each task with its own
/// stream of ids, and times every unit.
async fn drive<S, F, Fut>(
    states: Vec<S>,
    duration: Duration,
    rows: i64,
    unit: F,
) -> anyhow::Result<Load>
where
    S: Clone + Send + 'static,
    F: Fn(S, i64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let cpu = cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (client, state) in states.into_iter().enumerate() {
        let unit = unit.clone();
        tasks.spawn(async move {
            let mut ids = Ids::new(client, rows);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let id = ids.next();
                let began = Instant::now();
                unit(state.clone(), id).await?;
                latencies.push(began.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Load {
        seconds,
        ops_per_s: latencies.len() as f64 / seconds,
        latencies,
        cpu_seconds: cpu_seconds()?.0 - cpu.0,
    })
}

/// Uniform random ids in `1..=rows`, as pgbench's `random(1, rows)`: xorshift64, one
/// stream per client, no crate needed.
struct Ids {
    state: u64,
    rows: u64,
}

impl Ids {
    fn new(client: usize, rows: i64) -> Self {
        let state = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Ids {
            state,
            rows: rows.max(1) as u64,
        }
    }

    fn next(&mut self) -> i64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        1 + (self.state % self.rows) as i64
    }
}

/// The driver alone: each task holds a tokio-postgres client and runs the model API's point
/// read as one prepared statement, leaving the row undecoded as pgbench does. Against
/// `model_api`, it shows what Diesel and the pool add; against pgbench, what the driver costs.
async fn driver_only(
    url: &DatabaseUrl,
    sql: &str,
    clients: usize,
    duration: Duration,
    rows: i64,
) -> anyhow::Result<Load> {
    let mut held = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = db::connect_client(url).await?;
        let statement = client.prepare(sql).await?;
        held.push((Arc::new(client), statement));
    }
    let unit = |(client, statement): (Arc<tokio_postgres::Client>, Statement), id: i64| async move {
        // The point read binds the id and LIMIT 1, both bigint.
        client.query_one(&statement, &[&id, &1_i64]).await?;
        Ok(())
    };
    drive(held, duration, rows, unit).await
}

/// Records each statement's SQL (never its binds) as Diesel sends it.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Capture {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds: ").next().unwrap_or(&text);
            self.0
                .lock()
                .expect("not poisoned")
                .push(sql.trim().to_owned());
        }
    }
}

/// A pgbench script running exactly the statements `op` sends through the model API,
/// captured by running it once. A model change that alters them fails here, loudly,
/// instead of comparing against different SQL.
async fn script(
    op: Op,
    url: &DatabaseUrl,
    rows: usize,
    users: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut conn = db::connect(url).await?;
    let capture = Capture::default();
    conn.set_instrumentation(capture.clone());
    op.run(&mut conn, 1, users as i64).await?;
    let statements = capture.0.lock().expect("not poisoned").clone();
    let values = op.pgbench_values();
    anyhow::ensure!(
        statements.len() == values.len(),
        "{} sends {} statements, the pgbench script expects {}: {statements:?}",
        op.workload(),
        statements.len(),
        values.len()
    );
    let mut script = format!(
        "\\set id random(1, {rows})\n\\set prio 1 + :id % 5\n\\set author 1 + :id % {users}\n"
    );
    for (sql, values) in statements.iter().zip(values) {
        let params = placeholders(sql);
        anyhow::ensure!(
            params == values.len(),
            "{sql:?} has {params} parameters, the pgbench script passes {}",
            values.len()
        );
        let mut sql = sql.clone();
        // Highest first, so `$1` never eats the start of `$10`.
        for (i, value) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), value);
        }
        script.push_str(&sql);
        script.push_str(";\n");
    }
    Ok((script, statements))
}

/// The highest `$n` in `sql`.
fn placeholders(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// pgbench running `script` (`-M prepared`, as diesel-async prepares its statements) from
/// `clients` connections for `secs` seconds; latencies from its per-transaction log.
fn pgbench(url: &DatabaseUrl, script: &str, clients: usize, secs: u64) -> anyhow::Result<Load> {
    let dir = std::env::temp_dir().join(format!("bench-pgbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = pgbench_in(&dir, url, script, clients, secs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn pgbench_in(
    dir: &std::path::Path,
    url: &DatabaseUrl,
    script: &str,
    clients: usize,
    secs: u64,
) -> anyhow::Result<Load> {
    let file = dir.join("script.sql");
    std::fs::write(&file, script)?;
    // The password goes in the environment, never on a command line.
    let (bare, env) = db::tool_connection(url)?;
    let threads = clients.clamp(1, 2).to_string();
    let cpu = cpu_seconds()?;
    let out = Command::new(migrations::tool("pgbench"))
        .args(["--no-vacuum", "--protocol=prepared", "--file"])
        .arg(&file)
        .args(["--client", &clients.to_string(), "--jobs", &threads])
        .args(["--time", &secs.to_string(), "--log", "--log-prefix"])
        .arg(dir.join("log"))
        .arg(&bare)
        .envs(env)
        .output()
        .context("run pgbench (PostgreSQL's server package has it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        String::from_utf8_lossy(&out.stderr).trim(),
        stdout.trim()
    );
    let ops_per_s = (stdout.lines())
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log =
            (path.file_name().and_then(|n| n.to_str())).is_some_and(|n| n.starts_with("log."));
        if !is_log {
            continue;
        }
        // client_id transaction_no time_us script_no epoch epoch_us
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                latencies.push(Duration::from_micros(us));
            }
        }
    }
    Ok(Load {
        seconds: secs as f64,
        ops_per_s,
        latencies,
        cpu_seconds: cpu_seconds()?.1 - cpu.1,
    })
}

/// CPU seconds (user + system) used so far by this process, and by its children that have
/// been waited for (pgbench), from /proc/self/stat.
fn cpu_seconds() -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
    // Fields after the command name, which may hold spaces: state is the first, utime the
    // 12th, then stime, cutime, cstime; in clock ticks (100 per second on Linux).
    let fields: Vec<f64> = (stat.rsplit_once(')').map_or("", |(_, rest)| rest))
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    anyhow::ensure!(fields.len() > 15, "unexpected /proc/self/stat: {stat}");
    let own = (fields[11] + fields[12]) / 100.0;
    let children = (fields[13] + fields[14]) / 100.0;
    Ok((own, children))
}

/// The OLTP table: ours against pgbench at each client count.
pub fn print_table(rows: &[&Measurement]) {
    outln!(
        "\n{:<13} {:<14} {:>7} {:>8} {:>10} {:>8} {:>8} {:>11} {:>12}",
        "workload",
        "technique",
        "clients",
        "sessions",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "vs pgbench",
        "client µs/op"
    );
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    for m in rows {
        let reference = (rows.iter())
            .find(|o| {
                o.workload == m.workload && o.technique == "pgbench" && o.clients == m.clients
            })
            .and_then(|o| o.ops_per_s);
        let ratio = match (m.ops_per_s, reference) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}x", ours / theirs),
            _ => "-".into(),
        };
        outln!(
            "{:<13} {:<14} {:>7} {:>8} {:>10.0} {:>8} {:>8} {:>11} {:>12}",
            m.workload,
            m.technique,
            m.clients.unwrap_or(0),
            m.server_sessions.map_or("-".into(), |n| n.to_string()),
            m.ops_per_s.unwrap_or(0.0),
            ms(m.p50_ms),
            ms(m.p99_ms),
            ratio,
            m.client_cpu_us.map_or("-".into(), |c| format!("{c:.1}"))
        );
    }
    if let Some(n) = rows.iter().find_map(|m| m.rounds).filter(|&n| n > 1) {
        outln!("each row: the median of {n} interleaved rounds, by ops/s");
    }
}
