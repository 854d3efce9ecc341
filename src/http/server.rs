//! The server under the router: hyper's HTTP/1, each connection on a task of its own,
//! stopped gracefully. Built here rather than with `axum::serve` for two bounds it lacks: a
//! client sending its headers a line at a time would hold a connection (and a stop's whole
//! grace period) for ever, and enough of them would use up the process's file handles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// The longest a client may take to send a request's line and headers; the connection is
/// closed past it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Most client connections open at once; past it new ones wait in the listen queue. Under
/// the usual limit of 1024 file handles, with room for the pool's sessions.
pub const MAX_CONNECTIONS: usize = 512;

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight when the stop came finished.
    All,
    /// The grace period ran out (or was cut short) with requests still running; they are
    /// abandoned.
    TimedOut,
}

/// Serves `app` on `listener` until `stop` resolves, then accepts no more connections and
/// gives the requests in flight up to `grace` to finish, or until `hurry` resolves (an
/// operator's second Ctrl-C). Idle connections close at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    hurry: impl Future<Output = ()>,
) -> std::io::Result<Drained> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file handles, say: wait, as axum::serve does, and try again.
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        drained = tokio::time::timeout(grace, graceful.shutdown()) => match drained {
            Ok(()) => Ok(Drained::All),
            Err(_) => Ok(Drained::TimedOut),
        },
        () = hurry => Ok(Drained::TimedOut),
    }
}
