//! The load itself: many clients running units of work until time is up, each unit timed,
//! through our pool or the bare driver, and the CPU the client spent on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use app::db::{self, DatabaseUrl, Pool};
use diesel_async::AsyncConnection;
use tokio_postgres::Statement;

use super::Op;
use crate::Measurement;

/// Completed units of work and how long each took.
pub struct Load {
    /// How long the load ran.
    pub seconds: f64,
    /// Units of work completed per second.
    pub ops_per_s: f64,
    /// How long each unit took.
    pub latencies: Vec<Duration>,
    /// CPU the client spent (user + system), in seconds.
    pub cpu_seconds: f64,
}

impl Load {
    /// This load as a row of the OLTP table: rate, p50 and p99, client CPU per unit.
    pub fn measurement(mut self, op: Op, technique: &'static str, clients: usize) -> Measurement {
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
pub async fn ours(
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
pub async fn driver_only(
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

/// CPU seconds (user + system) used so far by this process, and by its children that have
/// been waited for (pgbench), from /proc/self/stat.
pub fn cpu_seconds() -> anyhow::Result<(f64, f64)> {
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

#[cfg(test)]
mod tests {
    use super::{Ids, Load, Op};
    use std::time::Duration;

    #[test]
    fn ids_stay_in_range_and_each_client_has_its_own_stream() {
        let mut first = Ids::new(0, 10);
        let drawn: Vec<i64> = (0..1000).map(|_| first.next()).collect();
        assert!(drawn.iter().all(|id| (1..=10).contains(id)));
        // Every id comes up: uniform enough for a point read's spread.
        assert!((1..=10).all(|id| drawn.contains(&id)));
        let (mut again, mut other) = (Ids::new(0, 10), Ids::new(1, 10));
        let replay: Vec<i64> = (0..1000).map(|_| again.next()).collect();
        assert_eq!(drawn, replay);
        let theirs: Vec<i64> = (0..1000).map(|_| other.next()).collect();
        assert_ne!(drawn, theirs);
        // No rows still draws a valid id.
        assert_eq!(Ids::new(3, 0).next(), 1);
    }

    #[test]
    fn a_measurement_takes_percentiles_of_the_sorted_latencies() {
        let load = Load {
            seconds: 2.0,
            ops_per_s: 50.0,
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            cpu_seconds: 0.5,
        };
        let m = load.measurement(Op::PointRead, "model_api", 8);
        assert_eq!(
            (m.workload, m.technique, m.clients),
            ("point_read", "model_api", Some(8))
        );
        assert_eq!((m.p50_ms, m.p99_ms), (Some(51.0), Some(100.0)));
        assert_eq!(m.client_cpu_us, Some(5_000.0));
        let idle = Load {
            seconds: 1.0,
            ops_per_s: 0.0,
            latencies: Vec::new(),
            cpu_seconds: 0.1,
        };
        let m = idle.measurement(Op::Txn, "pgbench", 1);
        assert_eq!((m.p50_ms, m.p99_ms, m.client_cpu_us), (None, None, None));
    }
}
