//! The connection a request checks out, and what happens to its statement when the request
//! is given up: past the request timeout, on a client that went away, at the end of the
//! shutdown grace period. A dropped future stops waiting; the server does not stop
//! working. A statement still waiting (on a lock, say) would run on, and commit, after the
//! client was told 503. So the server is asked to cancel it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::db::{self, DatabaseUrl, PooledConnection};

/// The connections requests hold now, by a number of their own: what a stop past its
/// grace period cancels.
#[derive(Clone, Default)]
pub(super) struct Held {
    next: Arc<AtomicU64>,
    tokens: Arc<Mutex<HashMap<u64, tokio_postgres::CancelToken>>>,
}

impl Held {
    /// Cancels whatever the held connections run, and waits for the answers (each bounded
    /// by the connect timeout). A session between statements ignores the request.
    pub(super) async fn cancel_all(&self, url: &DatabaseUrl) -> usize {
        let tokens: Vec<_> = self
            .tokens
            .lock()
            .unwrap()
            .drain()
            .map(|(_, t)| t)
            .collect();
        let count = tokens.len();
        let cancels = tokens.into_iter().map(|t| db::cancel_statement(url, t));
        futures_util::future::join_all(cancels).await;
        count
    }
}

/// A connection of the pool for one request, back in the pool when the handler returns.
/// No free connection within `DATABASE_POOL_TIMEOUT_SECS` is a 503. Dropped with a
/// statement in flight, it has the server cancel that statement.
pub struct DbConn {
    conn: PooledConnection,
    id: u64,
    held: Held,
    url: DatabaseUrl,
}

impl FromRequestParts<AppState> for DbConn {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let conn = db::checkout(&state.pool).await?;
        let held = state.held.clone();
        let id = held.next.fetch_add(1, Ordering::Relaxed);
        held.tokens.lock().unwrap().insert(id, conn.cancel_token());
        let url = state.pool_url.clone();
        Ok(DbConn {
            conn,
            id,
            held,
            url,
        })
    }
}

impl std::ops::Deref for DbConn {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.conn
    }
}

// For `conn.transaction(..)`, which needs the connection to itself.
impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut PooledConnection {
        &mut self.conn
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let token = self.held.tokens.lock().unwrap().remove(&self.id);
        // Gone from the map: the grace period's end already cancelled it.
        let Some(token) = token else { return };
        if db::in_flight(&mut self.conn) > 0 {
            tracing::warn!("request given up with a statement running: cancelling it");
            db::cancel_in_background(&self.url, token);
        }
    }
}
