//! The connection pool: its settings from the environment, how each connection opens, and
//! what it reports. [`checkout`] times the wait for a connection; a connection the pool
//! throws away (closed by the server, left in a broken transaction, failing its check) is a
//! `warn` event, which deadpool alone would drop without a word.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::{HookError, Metrics};
use diesel_async::pooled_connection::deadpool::{Hook, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::connect::connect_through;
use super::instrument::{self, QueryTracing};
use super::{DatabaseUrl, Pooler, url_from};
use crate::settings;
use crate::{Error, Result};

/// A pool of async PostgreSQL connections.
pub type Pool = DeadPool<AsyncPgConnection>;

/// A connection checked out of a [`Pool`]; derefs to the connection.
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// Pool settings, read from the environment (and `.env`).
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Where to connect.
    pub url: DatabaseUrl,
    /// Most connections open at once (`DATABASE_POOL_SIZE`, default 10).
    pub max_size: usize,
    /// How long `pool.get()` waits for a free connection (`DATABASE_POOL_TIMEOUT_SECS`, default 5).
    pub wait_timeout: Duration,
    /// What `pool.get()` checks before handing out an idle connection (`DATABASE_POOL_RECYCLE`).
    pub recycle: Recycle,
    /// What sits between the pool and the server (`DATABASE_POOLER`).
    pub pooler: Pooler,
}

/// The check a pooled connection passes before it is handed out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recycle {
    /// No round trip: a connection the server closed, or one left in a broken transaction,
    /// is dropped and replaced. The default: a checkout costs nothing.
    #[default]
    Fast,
    /// Also `SELECT 1` first: catches a connection that died silently (a NAT or a failover
    /// that sent no FIN), at one extra round trip per checkout (see `bench`).
    Verified,
}

impl DbConfig {
    /// Reads `DATABASE_URL`, `DATABASE_POOL_SIZE`, `DATABASE_POOL_TIMEOUT_SECS` and
    /// `DATABASE_POOL_RECYCLE`,
    /// loading `.env` first if there is one.
    pub fn from_env() -> Result<Self> {
        Self::with_env(url_from(None)?)
    }

    /// Settings for `url`, pool sizes from the environment as [`DbConfig::from_env`] reads
    /// them: for a URL given on the command line.
    pub fn with_env(url: DatabaseUrl) -> Result<Self> {
        let mut config = Self::new(url);
        if let Some(size) = settings::POOL_SIZE.read()? {
            config.max_size = size as usize;
        }
        if let Some(secs) = settings::POOL_TIMEOUT_SECS.read()? {
            config.wait_timeout = Duration::from_secs(secs);
        }
        let pooler = [
            ("session", Pooler::Session),
            ("none", Pooler::Session),
            ("transaction", Pooler::Transaction),
        ];
        if let Some(choice) = settings::choice(settings::POOLER, &pooler)? {
            config.pooler = choice;
        }
        let recycle = [("fast", Recycle::Fast), ("verified", Recycle::Verified)];
        if let Some(choice) = settings::choice(settings::POOL_RECYCLE, &recycle)? {
            config.recycle = choice;
        }
        // Each connection reads these as it opens; read now too, so a bad value stops the
        // service as it starts, not at its first checkout.
        QueryTracing::from_env()?;
        super::connect_timeout(&config.url)?;
        Ok(config)
    }

    /// Default settings for a URL.
    pub fn new(url: DatabaseUrl) -> Self {
        DbConfig {
            url,
            max_size: settings::POOL_SIZE.default as usize,
            wait_timeout: Duration::from_secs(settings::POOL_TIMEOUT_SECS.default),
            recycle: Recycle::Fast,
            pooler: Pooler::Session,
        }
    }
}

/// Builds a pool. Connections open lazily, so this succeeds even while the server is down;
/// each one opens through [`connect`](super::connect), so the pool has the same bounded wait.
pub fn build_pool(config: &DbConfig) -> Result<Pool> {
    // A config built in code passes the same bounds as one read from the environment.
    settings::POOL_SIZE.check(config.max_size as u64)?;
    let wait = config.wait_timeout;
    if wait.is_zero() || wait.as_secs() > *settings::POOL_TIMEOUT_SECS.range.end() {
        return Err(Error::Config(format!(
            "DATABASE_POOL_TIMEOUT_SECS (DbConfig::wait_timeout) must be above 0 and at most \
             {} s, got {wait:?}",
            settings::POOL_TIMEOUT_SECS.range.end()
        )));
    }
    let silent = Silent::default();
    let mut setup = ManagerConfig::default();
    setup.recycling_method = match config.recycle {
        Recycle::Fast => RecyclingMethod::Fast,
        // diesel-async's own `Verified` check, with a word when it fails. The simple query
        // protocol: one message, so it works through a transaction pooler too, where a
        // prepare and its execute may reach two server sessions.
        Recycle::Verified => {
            let silent = silent.clone();
            RecyclingMethod::CustomFunction(Box::new(move |conn: &mut AsyncPgConnection| {
                let silent = silent.clone();
                Box::pin(async move {
                    use diesel_async::SimpleAsyncConnection;
                    let checked = tokio::time::timeout(wait, conn.batch_execute("SELECT 1"));
                    let checked = checked.await.unwrap_or_else(|_| {
                        silent.heard_nothing();
                        Err(diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::ClosedConnection,
                            Box::new(format!("no answer within {wait:?}")),
                        ))
                    });
                    if let Err(e) = &checked {
                        tracing::warn!(error = %e, "pool: an idle connection failed its check; opening another");
                    }
                    checked
                })
            }))
        }
    };
    let pooler = config.pooler;
    setup.custom_setup = Box::new(move |raw| {
        Box::pin(async move {
            let url = DatabaseUrl::parse(raw)
                .map_err(|e| diesel::ConnectionError::InvalidConnectionUrl(e.to_string()))?;
            let opened = connect_through(&url, pooler).await;
            match &opened {
                Ok(_) => tracing::debug!("pool: opened a connection"),
                // Our errors show the URL masked.
                Err(e) => tracing::warn!(error = %e, "pool: could not open a connection"),
            }
            opened.map_err(|e| match e {
                // deadpool carries only diesel's error types: a closed connection with our
                // reason is how `Error::from` tells a server that is down (worth a retry)
                // from one that refused us.
                Error::Unavailable { reason } => {
                    diesel::ConnectionError::CouldntSetupConfiguration(
                        diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::ClosedConnection,
                            Box::new(reason),
                        ),
                    )
                }
                other => diesel::ConnectionError::BadConnection(other.to_string()),
            })
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(config.url.expose(), setup);
    let url = config.url.clone();
    DeadPool::builder(manager)
        .max_size(config.max_size)
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(config.wait_timeout))
        // The Verified check is a round trip: a frozen server must not hold a checkout. It
        // bounds itself by `wait` (to note the silence); this is the backstop.
        .recycle_timeout(Some(config.wait_timeout + Duration::from_secs(1)))
        .pre_recycle(Hook::sync_fn({
            let silent = silent.clone();
            move |conn, metrics| discard_broken(&url, conn, metrics, &silent)
        }))
        .pre_recycle(Hook::async_fn(move |conn, metrics| {
            Box::pin(check_after_unavailable(conn, metrics, wait, silent.clone()))
        }))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}

/// The check diesel-async makes before reuse, made first so the pool says why a
/// connection goes: deadpool drops one that fails a hook (or the check) silently. A
/// connection with a statement still in flight goes too (its caller gave up on it: a
/// timeout, a dropped request), and the server is asked to cancel that statement: the next
/// borrower would otherwise wait behind it, or for ever behind a frozen server. So does one
/// whose last error said its server went away or turned read-only (a failover): the next
/// checkout opens a connection through the URL, whose host list finds the new primary.
fn discard_broken(
    url: &DatabaseUrl,
    conn: &mut AsyncPgConnection,
    metrics: &Metrics,
    silent: &Silent,
) -> std::result::Result<(), HookError<diesel_async::pooled_connection::PoolError>> {
    let in_flight = in_flight(conn);
    let why = if in_flight > 0 {
        cancel_in_background(url, conn.cancel_token());
        "a statement its caller gave up on may still be running"
    } else if let Some(lost) = lost(conn) {
        tracing::warn!(
            age_s = metrics.age().as_secs(),
            reused = metrics.recycle_count,
            "pool: discarding a connection: {lost}"
        );
        return Err(HookError::message("connection not reusable"));
    } else if conn.is_broken() {
        "the server closed it or a broken transaction left it unusable"
    } else if silent.predates(metrics) {
        "a check of an older connection got no answer: its server is likely frozen too"
    } else {
        return Ok(());
    };
    tracing::warn!(
        age_s = metrics.age().as_secs(),
        reused = metrics.recycle_count,
        in_flight,
        "pool: discarding a connection: {why}"
    );
    Err(HookError::message("connection not reusable"))
}

/// Asks the server, on a connection of its own, to cancel what `token`'s session runs;
/// never awaited by the caller. [`cancels_sent`] waits for these before a program exits.
pub(crate) fn cancel_in_background(url: &DatabaseUrl, token: tokio_postgres::CancelToken) {
    // A drop while the runtime stops has nowhere to run the request: said, not panicked.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("pool: no runtime left to cancel an abandoned statement");
        return;
    };
    let url = url.clone();
    CANCELS.spawn_on(async move { cancel_statement(&url, token).await }, &runtime);
}

/// The cancel requests [`cancel_in_background`] sent and not yet answered.
static CANCELS: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

/// Waits, up to `limit`, for the cancel requests sent so far: a process that exits first
/// leaves the statements it gave up on running, and committing, on the server.
pub async fn cancels_sent(limit: Duration) {
    CANCELS.close();
    let _ = tokio::time::timeout(limit, CANCELS.wait()).await;
    CANCELS.reopen();
}

/// Asks the server, on a connection of its own, to cancel what `token`'s session runs,
/// bounded by the connect timeout. A session running nothing ignores it.
pub async fn cancel_statement(url: &DatabaseUrl, token: tokio_postgres::CancelToken) {
    let (Ok(limit), Ok((_, tls))) = (
        super::connect_timeout(url),
        super::tls::configure(url.first()),
    ) else {
        return;
    };
    match tokio::time::timeout(limit, token.cancel_query(tls)).await {
        Ok(Ok(())) => tracing::debug!("pool: cancelled an abandoned statement"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pool: could not cancel an abandoned statement")
        }
        Err(_) => tracing::warn!("pool: cancelling an abandoned statement got no answer"),
    }
}

/// After the process met an [`Error::Unavailable`] (a failover's first errors), each idle
/// connection answers one question before its next reuse: is its server still there, and
/// as writable as when the session began? One that fails or turned read-only (a fenced or
/// demoted primary) goes, and the next is opened through the URL. The error may have
/// reached another connection, or this one's in a statement's rows, where the bridge does
/// not see it; connections that met none pay nothing.
async fn check_after_unavailable(
    conn: &mut AsyncPgConnection,
    metrics: &Metrics,
    limit: Duration,
    silent: Silent,
) -> std::result::Result<(), HookError<diesel_async::pooled_connection::PoolError>> {
    let Some(tracing) = conn.instrumentation().downcast_mut::<QueryTracing>() else {
        return Ok(());
    };
    if !tracing.due_for_check() {
        return Ok(());
    }
    let began_read_only = tracing.began_read_only();
    // Settings and recovery state: functions without a DSL form here.
    let sql = "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' \
               AS flag";
    // Bounded as the Verified check is (deadpool's recycle timeout does not cover hooks): a
    // frozen server must not hold a checkout.
    let check = diesel::sql_query(sql).get_result::<ReadOnly>(conn);
    let read_only = tokio::time::timeout(limit, check).await;
    let why = match read_only {
        Ok(Ok(ReadOnly { flag })) if flag && !began_read_only => {
            "its server is read-only now (a standby, or a primary fenced or demoted)".to_owned()
        }
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => format!("its server did not answer a check: {e}"),
        Err(_) => {
            silent.heard_nothing();
            format!("its server did not answer a check within {limit:?}")
        }
    };
    tracing::warn!(
        age_s = metrics.age().as_secs(),
        reused = metrics.recycle_count,
        "pool: discarding a connection after a failover error: {why}"
    );
    Err(HookError::message("connection not reusable"))
}

/// When a check of an idle connection last got no answer in time. The connections opened
/// before then are likely on the same frozen server: they go without a check of their
/// own, which would each wait out the bound in turn (ten idle connections, fifty seconds
/// for one checkout). Those opened since are checked as usual.
#[derive(Clone, Default)]
struct Silent(Arc<Mutex<Option<Instant>>>);

impl Silent {
    /// A check got no answer in time: now.
    fn heard_nothing(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether the connection of `metrics` was opened before the last silence.
    fn predates(&self, metrics: &Metrics) -> bool {
        let since = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        since.is_some_and(|since| metrics.created < since)
    }
}

/// The answer of [`check_after_unavailable`]'s question.
#[derive(diesel::QueryableByName)]
struct ReadOnly {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    flag: bool,
}

/// Why `conn` must not be reused, if one of its statements said its server went away or
/// turned read-only (an `Error::Unavailable`).
fn lost(conn: &mut AsyncPgConnection) -> Option<String> {
    let tracing = conn.instrumentation().downcast_ref::<QueryTracing>()?;
    tracing.lost().map(str::to_owned)
}

/// Statements sent on `conn` and not answered yet: above 0 when its caller gave up on one.
pub fn in_flight(conn: &mut AsyncPgConnection) -> usize {
    (conn.instrumentation().downcast_ref::<QueryTracing>()).map_or(0, QueryTracing::in_flight)
}

/// A connection from `pool`, with the wait traced: a `debug` event with `waited_ms` for
/// each checkout, a `warn` with the pool's state when none came free in time. Prefer it to
/// `pool.get()`, which says nothing.
pub async fn checkout(pool: &Pool) -> Result<PooledConnection> {
    let started = Instant::now();
    let got = pool.get().await;
    let waited_ms = instrument::millis(started.elapsed());
    match got {
        Ok(conn) => {
            tracing::debug!(waited_ms, "pool: checked out a connection");
            Ok(conn)
        }
        Err(e) => {
            let status = pool.status();
            let error = Error::from(e);
            tracing::warn!(
                waited_ms,
                size = status.size,
                max_size = status.max_size,
                idle = status.available,
                waiting = status.waiting,
                error = %error,
                "pool: no connection after {waited_ms:.0} ms"
            );
            Err(error)
        }
    }
}
