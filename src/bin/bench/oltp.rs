//! Many small units of work at once, through the pool and the model API, against `pgbench`
//! running the same SQL (captured from the model API itself) with the same client count.

use std::time::{Duration, Instant};

use app::db::{self, DatabaseUrl, DbConfig, Pooler, Recycle};
use app::models::{Comment, CommentOn, Priority, Task, TaskChanges};
use app::outln;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use super::{Args, Measurement, Results};

mod load;
mod pgbench;

use load::{driver_only, ours};
use pgbench::{pgbench, script};

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

/// The pgbench script of point reads (`Task::find`'s statement, as captured) over `rows`
/// tasks: the floor `bench http` measures the API against.
pub async fn point_read_script(
    url: &DatabaseUrl,
    rows: usize,
    users: usize,
) -> anyhow::Result<String> {
    Ok(script(Op::PointRead, url, rows, users).await?.0)
}

/// pgbench running `script` (see [`point_read_script`]) from `clients` connections for
/// `secs` seconds: transactions per second, p50 and p99 in ms.
pub fn pgbench_point_reads(
    url: &DatabaseUrl,
    script: &str,
    clients: usize,
    secs: u64,
) -> anyhow::Result<(f64, f64, f64)> {
    let m = pgbench(url, script, clients, secs)?.measurement(Op::PointRead, "pgbench", clients);
    Ok((
        m.ops_per_s.unwrap_or(0.0),
        m.p50_ms.unwrap_or(0.0),
        m.p99_ms.unwrap_or(0.0),
    ))
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

#[cfg(test)]
mod tests {
    use super::{Measurement, Results, medians};

    fn round(technique: &'static str, ops_per_s: f64) -> Measurement {
        Measurement {
            workload: "point_read",
            technique,
            ops_per_s: Some(ops_per_s),
            ..Measurement::default()
        }
    }

    #[test]
    fn each_technique_keeps_its_median_round_in_order_of_appearance() {
        let rounds = Results(vec![
            round("model_api", 300.0),
            round("pgbench", 900.0),
            round("model_api", 100.0),
            round("pgbench", 700.0),
            round("model_api", 200.0),
            round("pgbench", 800.0),
        ]);
        let mut results = Results::default();
        medians(rounds, 3, &mut results);
        let kept: Vec<_> = (results.0.iter())
            .map(|m| (m.technique, m.ops_per_s, m.rounds))
            .collect();
        assert_eq!(
            kept,
            [
                ("model_api", Some(200.0), Some(3)),
                ("pgbench", Some(800.0), Some(3)),
            ]
        );
    }
}
