//! The connections a request checks out, and what happens to their statements when the
//! request is given up: past the request timeout, on a client that went away, at the end of
//! the shutdown grace period. A dropped future stops waiting; the server does not stop
//! working. A statement still waiting (on a lock, say) would run on, and commit, after the
//! client was told 503. So the server is asked to cancel it at once.
//!
//! With replicas ([`AppState::with_replicas`]), [`DbConn`] is on the primary and
//! [`ReadConn`] wherever the router sends the read: see [`super::WAL_POSITION`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::position::seen;
use super::{ApiError, AppState};
use crate::db::replicas::Server;
use crate::db::{self, DatabaseUrl, PooledConnection};

/// The connections requests hold now, by a number of their own, with the server each is
/// on: what a stop past its grace period cancels.
#[derive(Clone, Default)]
pub(super) struct Held {
    next: Arc<AtomicU64>,
    tokens: Arc<Mutex<HashMap<u64, (tokio_postgres::CancelToken, DatabaseUrl)>>>,
}

impl Held {
    /// Cancels whatever the held connections run, and waits for the answers (each bounded
    /// by the connect timeout). A session between statements ignores the request.
    pub(super) async fn cancel_all(&self) -> usize {
        let tokens: Vec<_> = self.tokens.lock().unwrap().drain().collect();
        let count = tokens.len();
        let cancels = (tokens.into_iter()).map(|(_, (token, url))| async move {
            db::cancel_statement(&url, token).await;
        });
        futures_util::future::join_all(cancels).await;
        count
    }

    /// Keeps `conn`'s cancel token until the request lets it go.
    fn hold(&self, conn: PooledConnection, url: &DatabaseUrl) -> DbConn {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = (conn.cancel_token(), url.clone());
        self.tokens.lock().unwrap().insert(id, entry);
        DbConn {
            conn,
            id,
            held: self.clone(),
        }
    }
}

/// A connection to the primary for one request (writes, and reads without replicas), back
/// in the pool when the handler returns. No free connection within
/// `DATABASE_POOL_TIMEOUT_SECS` is a 503. Dropped with a statement in flight, it has the
/// server cancel that statement.
pub struct DbConn {
    conn: PooledConnection,
    id: u64,
    held: Held,
}

impl FromRequestParts<AppState> for DbConn {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let conn = db::checkout(&state.pool).await?;
        Ok(state.held.hold(conn, &state.pool_url))
    }
}

impl std::ops::Deref for DbConn {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.conn
    }
}

/// `&mut` for a transaction: `conn.transaction(async |conn| ...)` commits or rolls back
/// before the handler answers.
impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut PooledConnection {
        &mut self.conn
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let entry = self.held.tokens.lock().unwrap().remove(&self.id);
        // Gone from the map: the grace period's end already cancelled it.
        let Some((token, url)) = entry else { return };
        if db::in_flight(&mut self.conn) > 0 {
            tracing::warn!("request given up with a statement running: cancelling it");
            db::cancel_in_background(&url, token);
        }
    }
}

/// A connection for a read. With replicas: a fresh replica's, or, when the request sends
/// a write's [`WAL_POSITION`](super::WAL_POSITION) back, one that has replayed it (else the primary's, after
/// `DATABASE_REPLICA_WAIT_MS`). Without replicas, the primary's. A header that is not a
/// WAL position is a 400, with or without replicas.
pub struct ReadConn(DbConn);

impl FromRequestParts<AppState> for ReadConn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let seen = seen(parts)?;
        let Some(router) = &state.replicas else {
            return DbConn::from_request_parts(parts, state).await.map(ReadConn);
        };
        let routed = match seen {
            Some(seen) => router.read_after(&seen).await?,
            None => router.read().await?,
        };
        let url = router.url(routed.server);
        if let Server::Replica(i) = routed.server {
            tracing::debug!(replica = i, read_after = ?seen, "read on a replica");
        }
        Ok(ReadConn(state.held.hold(routed.into_inner(), url)))
    }
}

impl std::ops::Deref for ReadConn {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.0.conn
    }
}
