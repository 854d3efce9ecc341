//! Reads on streaming replicas, writes on the primary: one pool per server, and a
//! [`Router`] that picks one per unit of work.
//!
//! - [`Router::write`] is always the primary: writes, and every transaction.
//! - [`Router::read`] is a replica known to be fresh (see below), else the primary.
//! - [`Router::read_after`] must see a write: it takes the WAL position of that write's
//!   commit ([`Router::position`]) and waits, at most `DATABASE_REPLICA_WAIT_MS`, for a
//!   replica to have replayed it; else it reads from the primary.
//!
//! A replica is fresh when it is in recovery, a WAL receiver streams into it, and it has
//! replayed what the primary had flushed no longer than `DATABASE_REPLICA_MAX_LAG_MS` ago:
//! the router samples the primary's flush position over time and compares each replica's
//! replay position with it, so an idle primary costs a caught-up replica nothing. A replica
//! known to be too far behind, promoted, not streaming for longer than the bound, down or
//! frozen is left out for `DATABASE_REPLICA_RETRY_MS`; then one request checks it again
//! while the others read elsewhere. Choosing a replica for `read()` never takes longer than
//! `DATABASE_REPLICA_TIMEOUT_MS` (connection and checks included), for `read_after()` the
//! larger of it and `DATABASE_REPLICA_WAIT_MS`, each round trip within the former. The
//! caller never sees a replica's error, a `warn` event says why. The rules live in
//! `health.rs`.

mod config;
mod health;
mod lsn;
mod routed;
mod sql;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::{PoolError, TimeoutType, Timeouts};
use diesel_async::TransactionManager;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl};
use tokio::time::timeout_at;

use crate::db::{self, DatabaseUrl, DbConfig, Pool, Pooler};
use crate::{Error, Result};
pub use config::ReplicaConfig;
use health::{Bounds, CHECK_EVERY, Claim, Health, Probe, Samples, Verdict};
pub use lsn::{BadWalPosition, PgLsn, WalPosition};
pub use routed::{Routed, Server};
use sql::{Lsn, PROBE, Position, ProbeRow, fetch};

struct Replica {
    pool: Pool,
    health: Mutex<Health>,
}

/// Picks the server for each unit of work; see the module docs.
pub struct Router {
    primary: Pool,
    primary_url: DatabaseUrl,
    /// One connection to the primary for sampling its WAL position, apart from the pool
    /// the application uses: a busy primary must not make its replicas look stale.
    probe: Pool,
    /// Behind a transaction pooler, where `position()` cannot use the caller's connection,
    /// and to check a position a read asks for: a pool of its own, so a caller holding a
    /// primary connection cannot starve it.
    positions: Pool,
    samples: Mutex<Samples>,
    /// One sample of the primary at a time; the other requests use it.
    sampling: tokio::sync::Mutex<()>,
    replicas: Vec<Replica>,
    config: ReplicaConfig,
    pooler: Pooler,
    next: AtomicUsize,
    /// The highest WAL position the primary is known to have written: positions handed
    /// out, and its insert position when a read asked for more.
    written: AtomicU64,
}

/// Locks a mutex whose data stays valid even if a holder panicked.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

const IN_TRANSACTION: &str = "Router::position inside an open transaction: the write has not \
     committed yet, so no replica can have it; call it after the transaction commits";

impl Router {
    /// A router over `primary` and the replicas of `replicas`, each with a pool sized as
    /// the primary's. Pools open lazily: this does not connect.
    pub fn new(primary: &DbConfig, replicas: ReplicaConfig) -> Result<Router> {
        replicas.check()?;
        let pools = (replicas.urls.iter())
            .map(|url| {
                Ok(Replica {
                    pool: db::build_pool(&DbConfig {
                        url: url.clone(),
                        ..primary.clone()
                    })?,
                    health: Mutex::new(Health::default()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Router {
            primary: db::build_pool(primary)?,
            primary_url: primary.url.clone(),
            probe: db::build_pool(&DbConfig {
                max_size: 1,
                ..primary.clone()
            })?,
            positions: db::build_pool(primary)?,
            samples: Mutex::new(Samples::default()),
            sampling: tokio::sync::Mutex::new(()),
            replicas: pools,
            config: replicas,
            pooler: primary.pooler,
            next: AtomicUsize::new(0),
            written: AtomicU64::new(0),
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

    /// The pool [`Router::write`] takes connections from.
    pub fn primary_pool(&self) -> &Pool {
        &self.primary
    }

    /// Where `server` is: the URL a cancel request for one of its sessions goes to.
    pub fn url(&self, server: Server) -> &DatabaseUrl {
        match server {
            Server::Primary => &self.primary_url,
            Server::Replica(i) => &self.config.urls[i],
        }
    }

    /// The WAL position of everything committed on the primary so far, read on a
    /// connection of its pool: after a write committed on another connection (a request's,
    /// now back in the pool), it is at or past that commit. Bounded by
    /// `DATABASE_REPLICA_TIMEOUT_MS`, checkout included.
    pub async fn committed(&self) -> Result<WalPosition> {
        let read = async {
            let mut conn = db::checkout(&self.primary).await?;
            self.position(&mut conn).await
        };
        tokio::time::timeout(self.config.timeout, read)
            .await
            .map_err(|_| self.primary_silent())?
    }

    /// The WAL position of everything committed on `conn`: take it on the primary after a
    /// write has committed, and hand it to [`Router::read_after`]. It is the primary's
    /// insert position, at or past the commit record even under `synchronous_commit = off`.
    /// Inside a Diesel transaction it is [`Error::InTransaction`]: nothing has committed
    /// yet. So is a transaction opened by hand (`batch_execute("BEGIN")`) that has written,
    /// but only without a transaction pooler: behind one, the position is read on the
    /// router's own connection, and such a transaction cannot be seen.
    pub async fn position(&self, conn: &mut AsyncPgConnection) -> Result<WalPosition> {
        let depth =
            AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?;
        if depth.is_some() {
            return Err(Error::InTransaction(IN_TRANSACTION));
        }
        const SQL: &str = "SELECT pg_current_wal_insert_lsn() AS lsn, \
            txid_current_if_assigned() IS NOT NULL AS open, \
            current_setting('wal_block_size')::int8 AS block, \
            pg_size_bytes(current_setting('wal_segment_size')) AS segment";
        // A frozen primary must not hold the caller: the statement is bounded (and the pool
        // discards a connection whose statement was given up on).
        let limit = self.config.timeout;
        let no_answer = || self.primary_silent();
        let row: Position = match self.pooler {
            // A hand-opened transaction that has written holds an xid: its writes are not
            // committed. (One that has only read is harmless: what committed before it is
            // in the position.)
            Pooler::Session => {
                let read = diesel::sql_query(SQL).get_result(conn);
                tokio::time::timeout(limit, read)
                    .await
                    .map_err(|_| no_answer())??
            }
            // The caller's connection would need a transaction of its own here, and
            // Diesel's would commit one opened by hand. The insert position is the whole
            // server's: another connection to the primary reads the same.
            Pooler::Transaction => {
                let mut other = db::checkout(&self.positions).await?;
                let read = fetch(&mut other, self.pooler, SQL);
                tokio::time::timeout(limit, read)
                    .await
                    .map_err(|_| no_answer())??
            }
        };
        if row.open {
            return Err(Error::InTransaction(IN_TRANSACTION));
        }
        let (block, segment) = (row.block.max(0) as u64, row.segment.max(0) as u64);
        let at = WalPosition::commit_end(row.lsn, block, segment);
        self.written.fetch_max(at.offset(), Ordering::Relaxed);
        Ok(at)
    }

    /// A connection for a read that may be slightly stale: a fresh replica, else the primary.
    pub async fn read(&self) -> Result<Routed> {
        let deadline = Instant::now() + self.config.timeout;
        match self.replica(None, deadline).await {
            Some(routed) => Ok(routed),
            None => self.write().await,
        }
    }

    /// A connection for a read that must see everything committed up to `seen`: a replica
    /// that has replayed it within the configured wait, else the primary. A position the
    /// primary has not written (another cluster's, a forged one) goes to the primary at
    /// once.
    pub async fn read_after(&self, seen: &WalPosition) -> Result<Routed> {
        let started = Instant::now();
        if !self.reached(*seen, started + self.config.timeout).await {
            tracing::warn!(
                position = %seen,
                "a read waits for a WAL position the primary has not written (another \
                 cluster's, or forged): it reads from the primary"
            );
            return self.write().await;
        }
        let wait = Replay {
            seen: *seen,
            until: started + self.config.wait,
            end: started + self.config.timeout.max(self.config.wait),
        };
        match self
            .replica(Some(wait), started + self.config.timeout)
            .await
        {
            Some(routed) => Ok(routed),
            None => self.write().await,
        }
    }

    /// Whether the primary has written up to `seen`. A position past its insert position
    /// comes from elsewhere (another cluster, a forged header): no replica will replay it,
    /// and waiting for one would hold a replica connection for the whole wait. Costs a round
    /// trip only for a position past any this router has seen; an unanswered one counts as
    /// reached (the replicas are then tried as before).
    async fn reached(&self, seen: WalPosition, deadline: Instant) -> bool {
        if seen.offset() <= AtomicU64::load(&self.written, Ordering::Relaxed) {
            return true;
        }
        const SQL: &str = "SELECT pg_current_wal_insert_lsn() AS lsn";
        let read = async {
            let mut conn = checkout_by(&self.positions, deadline).await?.ok()?;
            let row = timeout_at(deadline.into(), fetch::<Lsn>(&mut conn, self.pooler, SQL));
            row.await.ok()?.ok()?.lsn
        };
        let Some(lsn) = read.await else {
            return true;
        };
        self.written.fetch_max(lsn.offset(), Ordering::Relaxed);
        seen <= lsn
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            max_lag: self.config.max_lag,
            retry_after: self.config.retry_after,
        }
    }

    /// Whether a step that ran out of time with `deadline` ahead of it had a fair chance:
    /// at least half the bound. Otherwise the time went elsewhere (the primary's sample,
    /// another replica) and the replica is not to blame.
    fn fair(&self, deadline: Instant) -> bool {
        deadline.saturating_duration_since(Instant::now()) >= self.config.timeout / 2
    }

    /// A usable replica, taken in turn, or `None`; its checks by `deadline`.
    async fn replica(&self, seen: Option<Replay>, deadline: Instant) -> Option<Routed> {
        let n = self.replicas.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in (0..n).map(|k| (first + k) % n) {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(conn) = self.try_replica(i, seen, deadline).await {
                return Some(Routed {
                    conn,
                    server: Server::Replica(i),
                });
            }
        }
        None
    }

    /// A connection to replica `i` if it is fresh (and has replayed `seen` by its wait).
    async fn try_replica(
        &self,
        i: usize,
        seen: Option<Replay>,
        deadline: Instant,
    ) -> Option<db::PooledConnection> {
        let claim = locked(&self.replicas[i].health).claim(Instant::now(), self.bounds());
        let conn = match claim {
            Claim::Skip => return None,
            Claim::Cached => {
                let fair = self.fair(deadline);
                match self.checkout(i, deadline).await {
                    Ok(conn) => conn,
                    Err(Unavailable::Busy) => return None,
                    Err(why) => return self.unavailable(i, why, fair),
                }
            }
            Claim::Check => {
                let guard = CheckGuard(Some(&self.replicas[i].health));
                let conn = self.check(i, deadline).await;
                guard.disarm();
                conn?
            }
        };
        match seen {
            None => Some(conn),
            Some(wait) => self.replayed(i, conn, wait).await,
        }
    }

    /// Checks replica `i` against a fresh sample of the primary; its connection if it
    /// serves.
    async fn check(&self, i: usize, deadline: Instant) -> Option<db::PooledConnection> {
        if let Err(e) = self.sample_primary(deadline).await {
            tracing::warn!(replica = i, error = %e, "replica not checked: the primary's WAL position is unknown");
            locked(&self.replicas[i].health).release(Instant::now());
            return None;
        }
        let fair = self.fair(deadline);
        let mut conn = match self.checkout(i, deadline).await {
            Ok(conn) => conn,
            Err(why) => return self.unchecked(i, why, fair),
        };
        let probe = fetch::<ProbeRow>(&mut conn, self.pooler, PROBE);
        let probe = match timeout_at(deadline.into(), probe).await {
            Ok(Ok(row)) => Probe {
                recovering: row.recovering,
                replayed: row.replayed,
                streaming: row.streaming,
            },
            Ok(Err(e)) => return self.bench(i, format!("its check failed: {e}")),
            Err(_) => return self.unchecked(i, Unavailable::Slow, fair),
        };
        let verdict = {
            let samples = locked(&self.samples);
            locked(&self.replicas[i].health).judge(probe, &samples, Instant::now(), self.bounds())
        };
        match verdict {
            Verdict::Serve => Some(conn),
            Verdict::NotNow => {
                tracing::debug!(
                    replica = i,
                    "replica may be behind: this read goes elsewhere"
                );
                None
            }
            Verdict::Bench(why) => {
                tracing::warn!(replica = i, "replica skipped: {why}");
                None
            }
        }
    }

    /// A connection from replica `i`'s pool by `deadline`, or why not.
    async fn checkout(
        &self,
        i: usize,
        deadline: Instant,
    ) -> std::result::Result<db::PooledConnection, Unavailable> {
        let Some(got) = checkout_by(&self.replicas[i].pool, deadline).await else {
            return Err(Unavailable::Slow);
        };
        match got {
            Ok(conn) => Ok(conn),
            Err(PoolError::Timeout(TimeoutType::Wait)) => {
                tracing::debug!(
                    replica = i,
                    "replica's pool is busy: this read goes elsewhere"
                );
                Err(Unavailable::Busy)
            }
            Err(PoolError::Timeout(_)) => Err(Unavailable::Slow),
            Err(e) => Err(Unavailable::Failed(format!(
                "no connection: {}",
                Error::from(e)
            ))),
        }
    }

    /// What a replica step that ran out of time or failed means for replica `i`. A busy
    /// pool is no fault of the replica's; neither is a deadline spent elsewhere (`fair` is
    /// false when less than half the bound was left).
    fn unavailable<T>(&self, i: usize, why: Unavailable, fair: bool) -> Option<T> {
        match why {
            Unavailable::Failed(why) => self.bench(i, why),
            Unavailable::Slow if fair => self.bench(i, self.no_answer()),
            Unavailable::Busy | Unavailable::Slow => None,
        }
    }

    /// [`Router::unavailable`] for the request that holds replica `i`'s check: the check
    /// ends here, with or without a verdict.
    fn unchecked<T>(&self, i: usize, why: Unavailable, fair: bool) -> Option<T> {
        let outcome = self.unavailable(i, why, fair);
        locked(&self.replicas[i].health).release(Instant::now());
        outcome
    }

    /// Waits, until `wait.until`, for replica `i` to have replayed `wait.seen`; each round
    /// trip within the timeout, all of it by `wait.end`.
    async fn replayed(
        &self,
        i: usize,
        mut conn: db::PooledConnection,
        wait: Replay,
    ) -> Option<db::PooledConnection> {
        const SQL: &str = "SELECT pg_last_wal_replay_lsn() AS lsn";
        loop {
            // A replica frozen mid-wait costs one round trip's bound, not the whole wait.
            let bound = wait.end.min(Instant::now() + self.config.timeout);
            let fair = self.fair(bound);
            match timeout_at(bound.into(), fetch::<Lsn>(&mut conn, self.pooler, SQL)).await {
                Ok(Ok(Lsn { lsn })) if lsn.is_some_and(|lsn| lsn >= wait.seen) => {
                    return Some(conn);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return self.bench(i, format!("its check failed: {e}")),
                Err(_) => return self.unavailable(i, Unavailable::Slow, fair),
            }
            let now = Instant::now();
            if now >= wait.until.min(wait.end) {
                tracing::info!(replica = i, position = %wait.seen, "replica has not replayed the write yet: reading from the primary");
                return None;
            }
            let pause = (now + Duration::from_millis(5)).min(wait.until);
            tokio::time::sleep_until(pause.into()).await;
        }
    }

    /// Brings the samples of the primary's flush position up to date, unless another
    /// request did within [`CHECK_EVERY`].
    async fn sample_primary(&self, deadline: Instant) -> Result<()> {
        let recent = || {
            locked(&self.samples)
                .taken()
                .is_some_and(|t| t.elapsed() < CHECK_EVERY)
        };
        if recent() {
            return Ok(());
        }
        let no_answer = || self.primary_silent();
        let _one_at_a_time = timeout_at(deadline.into(), self.sampling.lock())
            .await
            .map_err(|_| no_answer())?;
        if recent() {
            return Ok(());
        }
        let mut conn = checkout_by(&self.probe, deadline)
            .await
            .ok_or_else(no_answer)??;
        let asked = Instant::now();
        const SQL: &str = "SELECT pg_current_wal_flush_lsn() AS lsn";
        let row: Lsn = timeout_at(deadline.into(), fetch(&mut conn, self.pooler, SQL))
            .await
            .map_err(|_| no_answer())??;
        let Some(lsn) = row.lsn else {
            return Err(Error::Pool("the primary has no WAL position".into()));
        };
        // Kept long enough to tell how long a replica has been behind.
        let keep = self.config.max_lag * 2 + Duration::from_secs(1);
        locked(&self.samples).record(lsn, asked, Instant::now(), keep);
        Ok(())
    }

    /// Leaves replica `i` out for the retry time, with a warning.
    fn bench<T>(&self, i: usize, why: String) -> Option<T> {
        tracing::warn!(replica = i, "replica skipped: {why}");
        locked(&self.replicas[i].health).bench(Instant::now(), self.bounds(), why);
        None
    }

    /// The primary did not say its WAL position within the timeout.
    fn primary_silent(&self) -> Error {
        Error::Pool(format!(
            "the primary gave no WAL position within {:?}",
            self.config.timeout
        ))
    }

    fn no_answer(&self) -> String {
        format!(
            "no answer within {} ms (DATABASE_REPLICA_TIMEOUT_MS): frozen or overloaded",
            self.config.timeout.as_millis()
        )
    }
}

/// A connection from `pool` by `deadline`, or `None` once it has passed. deadpool applies
/// its recycle timeout to each idle connection in turn, so the whole checkout runs under
/// the deadline as well.
async fn checkout_by(
    pool: &Pool,
    deadline: Instant,
) -> Option<
    std::result::Result<db::PooledConnection, diesel_async::pooled_connection::deadpool::PoolError>,
> {
    let left = deadline.saturating_duration_since(Instant::now());
    let timeouts = Timeouts {
        wait: Some(left),
        create: Some(left),
        recycle: Some(left),
    };
    timeout_at(deadline.into(), pool.timeout_get(&timeouts))
        .await
        .ok()
}

/// What [`Router::read_after`] waits for: `seen` replayed by `until`, the whole call over by
/// `end`.
#[derive(Debug, Clone, Copy)]
struct Replay {
    seen: WalPosition,
    until: Instant,
    end: Instant,
}

/// Why a replica step gave no connection.
enum Unavailable {
    /// Its pool had no free connection in time.
    Busy,
    /// Opening or checking a connection ran out of time.
    Slow,
    /// It failed, for this reason.
    Failed(String),
}

/// Releases a replica's check claim if the checking request is dropped mid-check (its
/// caller timed out): otherwise no request would ever check that replica again.
struct CheckGuard<'a>(Option<&'a Mutex<Health>>);

impl CheckGuard<'_> {
    /// The check ended with an outcome of its own.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CheckGuard<'_> {
    fn drop(&mut self) {
        if let Some(health) = self.0 {
            locked(health).release(Instant::now());
        }
    }
}
