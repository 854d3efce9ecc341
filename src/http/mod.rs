//! The HTTP API over the models (the `http` feature): the router, its shared state, the
//! layers every request passes, and a server that stops gracefully.
//!
//! Handlers are thin: an extractor checks a connection out of the pool ([`DbConn`]), the
//! body is parsed into the models' validated types, one model function runs, and its
//! `app::Error` becomes a status in one place ([`ApiError`]).
//!
//! A 503 past the request timeout means the request's statement was cancelled on the
//! server as the request was dropped ([`DbConn`]): a write did not happen, unless it had
//! already committed when the timeout struck (its answer was on its way); then the
//! outcome is unknown and a retry must be safe to repeat.
//!
//! Statuses for bad input, the same on every route: a body that is not JSON, or a path id
//! that is not a number, is 400; JSON of the wrong shape (a missing field, a wrong type, an
//! unknown field) or a value a rule refuses is 422; a body over [`BODY_LIMIT`] is 413.

mod conn;
mod error;
mod health;
mod input;
mod position;
pub mod request_id;
mod server;
mod tags;
mod tasks;
mod teams;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::db::replicas::Router as Replicas;
use crate::db::{DatabaseUrl, Pool};
use crate::migrations::Migrator;

pub use conn::{DbConn, ReadConn};
pub use error::ApiError;
pub use health::{READY_CACHE, READY_TIMEOUT};
pub use position::WAL_POSITION;
pub use server::{Drained, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, serve};

/// The largest request body accepted: every body of this API is a small JSON object.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares: the pool, the replicas if any, and what `/readyz` compares
/// the schema with.
#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    /// Where reads go when there are replicas (`DATABASE_REPLICA_URLS`).
    replicas: Option<Arc<Replicas>>,
    /// Where the pool connects: where a cancel request for one of its sessions goes.
    pool_url: DatabaseUrl,
    held: conn::Held,
    readiness: Arc<health::Readiness>,
}

impl AppState {
    /// State over `pool`, which connects to `pool_url`; `direct` is the server itself
    /// (`DATABASE_DIRECT_URL`), where `/readyz` reads the applied migrations.
    pub fn new(pool: Pool, pool_url: DatabaseUrl, direct: DatabaseUrl) -> crate::Result<AppState> {
        let readiness = Arc::new(health::Readiness::new(Migrator::embedded()?, direct));
        let held = conn::Held::default();
        Ok(AppState {
            pool,
            replicas: None,
            pool_url,
            held,
            readiness,
        })
    }

    /// Reads through `router` ([`ReadConn`]), writes on its primary, whose pool replaces
    /// the one given to [`AppState::new`] (the same server: `router`'s primary must be
    /// `pool_url`); write answers carry [`WAL_POSITION`].
    pub fn with_replicas(mut self, router: Replicas) -> AppState {
        self.pool = router.primary_pool().clone();
        self.replicas = Some(Arc::new(router));
        self
    }

    /// The pool requests check connections out of.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Has the server cancel what the requests still running are running: at the end of
    /// the grace period, so nothing they started commits after the process is gone.
    /// Returns how many connections requests held.
    pub async fn cancel_running(&self) -> usize {
        self.held.cancel_all().await
    }
}

/// The API's routes with their layers: a request id (`x-request-id`, kept when the client
/// sends a plain one, see [`request_id`], echoed in the response), a `request` span
/// carrying it, with replicas [`WAL_POSITION`] on write answers, [`BODY_LIMIT`] (413)
/// and `timeout` for the API's handlers (503 past it; the health checks have bounds of
/// their own, so a short timeout cannot hide `/readyz`'s reason); each error in the error
/// shape.
pub fn router(state: AppState, timeout: Duration) -> Router {
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::map_request(request_id::drop_unfit))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::map_response(error::json_errors))
        // Outside the timeout: a write that made it in time is not turned into a 503 by
        // the round trip that reads its position (bounded on its own).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            position::stamp_writes,
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let api = Router::new()
        .merge(users::routes())
        .merge(tasks::routes())
        .merge(tags::routes())
        .merge(teams::routes())
        .route_layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api)
        .fallback(|| async { ApiError::from(crate::Error::NotFound) })
        .with_state(state)
        .layer(layers)
}

/// The span each request runs in: whatever a handler logs (a 500 above all) carries the id.
/// At `warn`, so that it exists wherever warnings and errors are shown (`RUST_LOG=warn`
/// too), not only at `info`.
fn request_span(request: &Request) -> tracing::Span {
    let id = request.extensions().get::<RequestId>();
    let id = id
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::warn_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        request_id = %id,
    )
}
