//! Read-your-writes across replicas: every successful write's answer carries the WAL
//! position of its commit in [`WAL_POSITION`]; a read that sends it back is served by a
//! replica that has replayed it, or by the primary ([`ReadConn`](super::ReadConn)).

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::db::replicas::WalPosition;

/// The header a write's answer carries its commit's WAL position in (`16/B374D848`), and
/// a read sends back to see that write. Absent without replicas: every read is then on
/// the primary.
pub const WAL_POSITION: HeaderName = HeaderName::from_static("x-wal-position");

/// Adds [`WAL_POSITION`] to the successful answer of a write (any method but `GET`,
/// `HEAD`, `OPTIONS`, `TRACE`) when there are replicas. The handler has committed by the
/// time its answer exists, and the position is the whole server's: read on any primary
/// connection after that, it is at or past the commit.
pub(super) async fn stamp_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let write = !request.method().is_safe();
    let mut response = next.run(request).await;
    let Some(router) = state.replicas.as_deref() else {
        return response;
    };
    if !write || !response.status().is_success() {
        return response;
    }
    // The write is done: a failure here must not turn its answer into an error (a retry
    // would repeat it). The client's next read may then be stale, and the log says so.
    match router.committed().await {
        Ok(at) => {
            let value = HeaderValue::from_str(&at.to_string()).expect("hex and a slash");
            response.headers_mut().insert(WAL_POSITION, value);
        }
        Err(e) => tracing::warn!(
            error = %e,
            "a write's answer goes without its WAL position: a read that follows may not see it"
        ),
    }
    response
}

/// The write the client has seen, from the request's [`WAL_POSITION`] headers, if any.
/// Sent more than once (a proxy that appends, a client that merges), the latest write
/// counts: the largest position, so no read is served from before any of them.
pub(super) fn seen(parts: &Parts) -> Result<Option<WalPosition>, ApiError> {
    // The value is not echoed: it is the client's text, and the format says enough.
    let bad = || {
        let message = format!(
            "{WAL_POSITION}: not a WAL position (send back what a write's answer carried, \
             as in 16/B374D848)"
        );
        ApiError::new(StatusCode::BAD_REQUEST, message)
    };
    let mut latest = None;
    for value in parts.headers.get_all(&WAL_POSITION) {
        let text = value.to_str().map_err(|_| bad())?;
        let at: WalPosition = text.trim().parse().map_err(|_| bad())?;
        latest = latest.max(Some(at));
    }
    Ok(latest)
}
