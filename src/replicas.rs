//! Reads on streaming replicas, writes on the primary: one pool per server, and a
//! [`Router`] that picks one per unit of work.
//!
//! - [`Router::write`] is always the primary: writes, and every transaction.
//! - [`Router::read`] is a replica that is up and not lagging more than
//!   `DATABASE_REPLICA_MAX_LAG_MS`, else the primary. A replica that fails is skipped for a
//!   while; the caller never sees its error, a `warn` event says why.
//! - [`Router::read_after`] must see a write: it takes the primary's WAL position after that
//!   write ([`Router::position`]) and waits, at most `DATABASE_REPLICA_WAIT_MS`, for a replica
//!   to have replayed it; else it reads from the primary.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{Bool, Double, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::Result;
use crate::db::{self, DatabaseUrl, DbConfig, Pool};

/// How often a replica's lag is checked; between checks the last answer stands.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Replica settings, read from the environment (and `.env`).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Replicas to read from (`DATABASE_REPLICA_URLS`, comma-separated; none by default).
    pub urls: Vec<DatabaseUrl>,
    /// A replica further behind is skipped (`DATABASE_REPLICA_MAX_LAG_MS`, default 1000).
    pub max_lag: Duration,
    /// How long [`Router::read_after`] waits for a replica to catch up before it reads from
    /// the primary (`DATABASE_REPLICA_WAIT_MS`, default 200).
    pub wait: Duration,
    /// How long a replica that failed, or lagged, is left out before it is tried again
    /// (`DATABASE_REPLICA_RETRY_MS`, default 5000).
    pub retry_after: Duration,
}

impl ReplicaConfig {
    /// Reads `DATABASE_REPLICA_URLS`, `DATABASE_REPLICA_MAX_LAG_MS`,
    /// `DATABASE_REPLICA_WAIT_MS` and `DATABASE_REPLICA_RETRY_MS`.
    pub fn from_env() -> Result<Self> {
        let _ = dotenvy::dotenv();
        let mut config = ReplicaConfig::new(Vec::new());
        if let Ok(list) = std::env::var("DATABASE_REPLICA_URLS") {
            config.urls = (list.split(',').map(str::trim).filter(|u| !u.is_empty()))
                .map(DatabaseUrl::parse)
                .collect::<Result<_>>()?;
        }
        if let Some(ms) = crate::settings::number("DATABASE_REPLICA_MAX_LAG_MS", 1..=3_600_000)? {
            config.max_lag = Duration::from_millis(ms);
        }
        if let Some(ms) = crate::settings::number("DATABASE_REPLICA_WAIT_MS", 0..=60_000)? {
            config.wait = Duration::from_millis(ms);
        }
        if let Some(ms) = crate::settings::number("DATABASE_REPLICA_RETRY_MS", 0..=3_600_000)? {
            config.retry_after = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// These replicas, with the default bounds.
    pub fn new(urls: Vec<DatabaseUrl>) -> Self {
        ReplicaConfig {
            urls,
            max_lag: Duration::from_millis(1000),
            wait: Duration::from_millis(200),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Which server a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The primary: it takes writes.
    Primary,
    /// The replica at this index of [`ReplicaConfig::urls`].
    Replica(usize),
}

/// A pooled connection and the server it is on. Derefs to the connection.
pub struct Routed {
    conn: db::PooledConnection,
    /// Where the connection is.
    pub server: Server,
}

impl Deref for Routed {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Routed {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// A point in the primary's write-ahead log (a `pg_lsn`): a replica that has replayed up to
/// it sees every write committed before it was taken.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPosition(String);

struct Replica {
    pool: Pool,
    /// When the replica may be tried again after a failure or a lag check it failed.
    skip_until: Mutex<Option<Instant>>,
    /// When its lag was last checked.
    checked: Mutex<Option<Instant>>,
}

/// Picks the server for each unit of work; see the module docs.
pub struct Router {
    primary: Pool,
    replicas: Vec<Replica>,
    config: ReplicaConfig,
    next: AtomicUsize,
}

#[derive(diesel::QueryableByName)]
struct Lag {
    /// Seconds since the last replayed transaction, 0 when the replica has replayed all it
    /// received.
    #[diesel(sql_type = Double)]
    behind: f64,
}

#[derive(diesel::QueryableByName)]
struct Replayed {
    #[diesel(sql_type = Bool)]
    done: bool,
}

#[derive(diesel::QueryableByName)]
struct Lsn {
    #[diesel(sql_type = Text)]
    lsn: String,
}

impl Router {
    /// A router over `primary` and the replicas of `replicas`, each with a pool sized as
    /// the primary's. Pools open lazily: this does not connect.
    pub fn new(primary: &DbConfig, replicas: ReplicaConfig) -> Result<Router> {
        let pools = (replicas.urls.iter())
            .map(|url| {
                Ok(Replica {
                    pool: db::build_pool(&DbConfig {
                        url: url.clone(),
                        ..primary.clone()
                    })?,
                    skip_until: Mutex::new(None),
                    checked: Mutex::new(None),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Router {
            primary: db::build_pool(primary)?,
            replicas: pools,
            config: replicas,
            next: AtomicUsize::new(0),
        })
    }

    /// [`Router::new`] from the environment: [`DbConfig::from_env`] and
    /// [`ReplicaConfig::from_env`].
    pub fn from_env() -> Result<Router> {
        Router::new(&DbConfig::from_env()?, ReplicaConfig::from_env()?)
    }

    /// A connection to the primary, for writes and transactions.
    pub async fn write(&self) -> Result<Routed> {
        Ok(Routed {
            conn: db::checkout(&self.primary).await?,
            server: Server::Primary,
        })
    }

    /// The primary's WAL position now: take it on the primary after a write has committed,
    /// and hand it to [`Router::read_after`].
    pub async fn position(conn: &mut AsyncPgConnection) -> Result<WalPosition> {
        // pg_lsn has no Diesel type: its text form travels instead.
        let row: Lsn = diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn")
            .get_result(conn)
            .await?;
        Ok(WalPosition(row.lsn))
    }

    /// A connection for a read that may be slightly stale: a fresh replica, else the primary.
    pub async fn read(&self) -> Result<Routed> {
        match self.replica(None).await {
            Some(routed) => Ok(routed),
            None => self.write().await,
        }
    }

    /// A connection for a read that must see everything committed up to `seen`: a replica
    /// that has replayed it within the configured wait, else the primary.
    pub async fn read_after(&self, seen: &WalPosition) -> Result<Routed> {
        match self.replica(Some(seen)).await {
            Some(routed) => Ok(routed),
            None => self.write().await,
        }
    }

    /// A usable replica, taken in turn, or `None`.
    async fn replica(&self, seen: Option<&WalPosition>) -> Option<Routed> {
        let n = self.replicas.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in (0..n).map(|k| (first + k) % n) {
            let replica = &self.replicas[i];
            if replica.skipped() {
                continue;
            }
            match self.try_replica(replica, seen).await {
                Ok(Some(conn)) => {
                    return Some(Routed {
                        conn,
                        server: Server::Replica(i),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(replica = i, error = %e, "replica skipped: {e}");
                    replica.skip(self.config.retry_after);
                }
            }
        }
        None
    }

    /// A connection to `replica` if it is fresh enough (and has replayed `seen`).
    async fn try_replica(
        &self,
        replica: &Replica,
        seen: Option<&WalPosition>,
    ) -> Result<Option<db::PooledConnection>> {
        let mut conn = db::checkout(&replica.pool).await?;
        if replica.due_for_check() {
            // Behind only while WAL waits to be replayed: an idle primary sends none, and
            // the age of the last replayed commit would grow without meaning anything.
            // No replayed commit yet, with WAL waiting, counts as too far behind.
            let lag: Lag = diesel::sql_query(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM \
                 pg_last_wal_replay_lsn() THEN 0 ELSE COALESCE(EXTRACT(EPOCH FROM \
                 now() - pg_last_xact_replay_timestamp()), 'Infinity') END::float8 AS behind",
            )
            .get_result(&mut conn)
            .await?;
            if lag.behind > self.config.max_lag.as_secs_f64() {
                tracing::warn!(
                    behind_s = lag.behind,
                    "replica skipped: {:.1}s behind (DATABASE_REPLICA_MAX_LAG_MS is {})",
                    lag.behind,
                    self.config.max_lag.as_millis()
                );
                replica.skip(self.config.retry_after);
                return Ok(None);
            }
        }
        let Some(seen) = seen else {
            return Ok(Some(conn));
        };
        let deadline = Instant::now() + self.config.wait;
        loop {
            let replayed: Replayed = diesel::sql_query(
                "SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS done",
            )
            .bind::<Text, _>(&seen.0)
            .get_result(&mut conn)
            .await?;
            if replayed.done {
                return Ok(Some(conn));
            }
            if Instant::now() >= deadline {
                tracing::info!(position = %seen.0, "replica has not replayed the write yet: reading from the primary");
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Replica {
    fn skipped(&self) -> bool {
        let until = self.skip_until.lock().expect("not poisoned");
        until.is_some_and(|t| Instant::now() < t)
    }

    fn skip(&self, retry_after: Duration) {
        *self.skip_until.lock().expect("not poisoned") = Some(Instant::now() + retry_after);
    }

    /// True at most once per [`CHECK_EVERY`].
    fn due_for_check(&self) -> bool {
        let mut checked = self.checked.lock().expect("not poisoned");
        let due = checked.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
        if due {
            *checked = Some(Instant::now());
        }
        due
    }
}
