//! `GET /healthz`: the process answers. `GET /readyz`: it can serve, because the database
//! answers and its schema is at this build's head, the check the service makes as it
//! starts. What an orchestrator polls before it sends traffic.
//!
//! However often it is polled, `/readyz` costs the database little: one check runs at a
//! time, its answer serves every call for [`READY_CACHE`], and the schema is read on one
//! session kept for it (reopened when it breaks). The pooler probe ran once, at start-up.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use deadpool::managed::{PoolError, TimeoutType};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::db::{self, DatabaseUrl, Pool};
use crate::migrations::Migrator;

/// The longest `/readyz` takes: a frozen database is "not ready", never a hung probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one check's answer serves the calls after it.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// The longest the check waits for a pooled connection (see [`pool_answers`]).
const POOL_WAIT: Duration = Duration::from_secs(1);

/// What `/readyz` compares the schema with, and its last answer.
pub(super) struct Readiness {
    migrator: Migrator,
    direct: DatabaseUrl,
    last: tokio::sync::Mutex<Last>,
}

/// The last check: when, its answer (`None`: ready), and the session the schema is read on.
#[derive(Default)]
struct Last {
    at: Option<Instant>,
    reason: Option<String>,
    session: Option<AsyncPgConnection>,
}

impl Readiness {
    /// Readiness against this build's migrations, read at `direct` (past any pooler).
    pub(super) fn new(migrator: Migrator, direct: DatabaseUrl) -> Readiness {
        let last = tokio::sync::Mutex::new(Last::default());
        Readiness {
            migrator,
            direct,
            last,
        }
    }
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // Single flight: the calls that come during a check wait for it and share its answer.
    let mut last = state.readiness.last.lock().await;
    if last.at.is_none_or(|at| at.elapsed() >= READY_CACHE) {
        let check = not_ready(&state.pool, &state.readiness, &mut last.session);
        last.reason = match tokio::time::timeout(READY_TIMEOUT, check).await {
            Ok(reason) => reason,
            Err(_) => {
                // Dropped mid-read: the session's state is unknown.
                last.session = None;
                let secs = READY_TIMEOUT.as_secs();
                tracing::warn!("readiness: the database gave no answer within {secs}s");
                Some(format!("the database gave no answer within {secs}s"))
            }
        };
        last.at = Some(Instant::now());
    }
    match &last.reason {
        None => Ok(Json(json!({"status": "ready"}))),
        Some(reason) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)),
    }
}

/// Why the service cannot serve, or `None`. The reasons name migrations, never a host or
/// a server's message: those go to the log.
async fn not_ready(
    pool: &Pool,
    readiness: &Readiness,
    session: &mut Option<AsyncPgConnection>,
) -> Option<String> {
    let unreachable = |err: crate::Error| {
        tracing::warn!(error = %err, "readiness: the database does not answer");
        Some("the database does not answer".to_owned())
    };
    if let Err(err) = pool_answers(pool).await {
        return unreachable(err);
    }
    let kept = session.take();
    let conn = match kept.and_then(|mut conn| (!conn.is_broken()).then_some(conn)) {
        Some(conn) => conn,
        None => match db::connect(&readiness.direct).await {
            Ok(conn) => conn,
            Err(err) => return unreachable(err),
        },
    };
    let (status, conn) = readiness.migrator.status_over(conn).await;
    let status = match status {
        Ok(status) => status,
        // The session goes with the error: the next check opens another.
        Err(err) => return unreachable(err),
    };
    *session = conn;
    if let Some(folder) = status.dirty.first() {
        return Some(format!("migration {folder} failed part-way"));
    }
    if !status.pending.is_empty() {
        let pending: Vec<&str> = status.pending.iter().map(|m| m.folder.as_str()).collect();
        return Some(format!(
            "the database is behind this build: {} pending ({})",
            pending.len(),
            pending.join(", ")
        ));
    }
    None
}

/// The pool's way in (through a pooler, if any) answers a `SELECT 1`. A pool with every
/// connection busy is not a failure: the database answers the requests holding them. Saying
/// "not ready" then would take a loaded instance out of rotation and push its traffic onto
/// the others, until all are out; overload shows as 503s on the requests themselves.
async fn pool_answers(pool: &Pool) -> crate::Result<()> {
    let mut timeouts = pool.timeouts();
    timeouts.wait = Some(POOL_WAIT);
    match pool.timeout_get(&timeouts).await {
        Ok(mut conn) => Ok(conn.batch_execute("SELECT 1").await?),
        Err(PoolError::Timeout(TimeoutType::Wait)) => {
            tracing::warn!("readiness: every pooled connection is busy; counted as ready");
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
