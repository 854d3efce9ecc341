//! Opening a session: one bounded attempt (TLS as the URL asks), diesel-async's set-up,
//! statement tracing, and errors that name the masked URL and the whole cause.

use std::time::Duration;

use diesel_async::AsyncPgConnection;

mod benched;

use super::pooler::{Pooler, for_transaction_pooler};
use super::{DatabaseUrl, tls};
use crate::settings;
use crate::{Error, Result};

/// How long opening a connection may take, handshake and login included: the URL's
/// `connect_timeout`, else `DATABASE_CONNECT_TIMEOUT_SECS`, else 10 s: each within
/// [`settings::CONNECT_TIMEOUT_SECS`].
pub fn connect_timeout(url: &DatabaseUrl) -> Result<Duration> {
    let params = tls::params(url.first());
    let in_url = params.iter().rev().find(|(k, _)| k == "connect_timeout");
    let secs = match in_url {
        Some((_, v)) => {
            let range = &settings::CONNECT_TIMEOUT_SECS.range;
            let (lo, hi) = (range.start(), range.end());
            let bad = || Error::BadUrl {
                url: url.to_string(),
                reason: format!(
                    "connect_timeout must be whole seconds from {lo} to {hi} (0 would wait \
                     for ever), got {v:?}"
                ),
            };
            let secs: u64 = v.trim().parse().map_err(|_| bad())?;
            if !range.contains(&secs) {
                return Err(bad());
            }
            secs
        }
        None => settings::CONNECT_TIMEOUT_SECS.get()?,
    };
    Ok(Duration::from_secs(secs))
}

/// Opens one connection, with an error that names the (masked) URL and the cause. See
/// [`connect_client`] for the bounded wait and the clean close.
pub async fn connect(url: &DatabaseUrl) -> Result<AsyncPgConnection> {
    connect_through(url, Pooler::Session).await
}

/// [`connect`] through `pooler`.
pub(super) async fn connect_through(
    url: &DatabaseUrl,
    pooler: Pooler,
) -> Result<AsyncPgConnection> {
    // Read first: a bad DATABASE_SLOW_QUERY_MS is refused before a session is opened.
    let tracing = super::instrument::QueryTracing::from_env()?;
    let (client, limit, read_only) = open(url).await?;
    let bounced = pooler == Pooler::Transaction;
    if bounced {
        // diesel-async's set-up prepares and then runs its SETs, two round trips a
        // transaction pooler may send to two server sessions: one transaction keeps them on
        // one.
        // DEALLOCATE ALL first: a client not set up for the pooler may have left named
        // statements on this server session, and the set-up's would collide with them.
        let sql = "BEGIN; DEALLOCATE ALL";
        let begun = super::instrument::traced(sql, client.batch_execute(sql)).await;
        begun.map_err(|e| driver_error(url, &e))?;
    }
    // diesel-async sets the session up (time zone, encoding): bounded too.
    let mut conn = match tokio::time::timeout(limit, AsyncPgConnection::try_from(client)).await {
        Ok(conn) => conn.map_err(|e| connection_error(url, e))?,
        Err(_) => return Err(timed_out(url, limit)),
    };
    // Every statement from here on is a tracing event (and span); slow ones a warning.
    // diesel-async's own set-up above ran under the process's default instrumentation,
    // which the binaries make this same bridge (cli::Logging::init).
    diesel_async::AsyncConnection::set_instrumentation(&mut conn, tracing.began(read_only));
    if bounced {
        use diesel_async::SimpleAsyncConnection;
        conn.batch_execute("COMMIT").await?;
        for_transaction_pooler(&mut conn).await?;
    }
    Ok(conn)
}

/// One tokio-postgres session: a single attempt, bounded by [`connect_timeout`] from the
/// first packet to a usable session (a server that accepts and never answers included). Its
/// driver runs on a task that sends Terminate when the client is dropped;
/// [`close_connections`] lets those tasks finish before a program exits.
///
/// A host list (`h1:5432,h2:5433`) is tried host by host, in order, each attempt bounded by
/// the connect timeout on its own, as libpq does; except that a host whose last attempt
/// failed, or was given up by its caller, is tried after the others until it takes a
/// session again (`benched.rs`). tokio-postgres tries a list too, but
/// applies `connect_timeout` only to each TCP connect, not to the start-up and login that
/// follow (its `connect_once`): one host that accepts and never answers would hold every
/// later host back. So each host is handed to the driver alone, with the URL's
/// `target_session_attrs`, which the driver checks on that host (`SHOW
/// transaction_read_only`); the first host that takes the session is used.
pub async fn connect_client(url: &DatabaseUrl) -> Result<tokio_postgres::Client> {
    Ok(open(url).await?.0)
}

/// [`connect_client`], the bound it used, for the set-up that follows, and whether the
/// session began read-only (see `open_host`).
async fn open(url: &DatabaseUrl) -> Result<(tokio_postgres::Client, Duration, bool)> {
    let limit = connect_timeout(url)?;
    let bad = |reason| Error::BadUrl {
        url: url.to_string(),
        reason,
    };
    if !url.is_multi_host() {
        let (client, read_only) = open_host(url, url.first(), limit).await?;
        return Ok((client, limit, read_only));
    }
    let mut failed = Vec::new();
    // Whether every host failed for a passing reason (down, starting, a standby where
    // read-write was asked): then the list as a whole is unavailable, worth a retry, as
    // during a failover. One host refusing the login makes it a configuration error.
    let mut passing = true;
    let attrs = (tls::params(url.first()).into_iter().rev())
        .find(|(k, _)| k == "target_session_attrs")
        .map_or_else(|| "any".to_owned(), |(_, v)| v);
    for (host, one) in benched::order(&attrs, url.each_host().map_err(bad)?) {
        let attempt = benched::Attempt::new(&attrs, &host);
        match open_host(url, &one, limit).await {
            Ok((client, read_only)) => {
                attempt.succeeded();
                return Ok((client, limit, read_only));
            }
            // The same for every host: said once.
            Err(e @ Error::BadUrl { .. }) => {
                attempt.inconclusive();
                return Err(e);
            }
            Err(Error::Connection { reason, .. }) => {
                passing = false;
                failed.push(format!("{host}: {reason}"));
            }
            Err(Error::Unavailable { reason }) => {
                let said = format!("cannot connect to {url}: ");
                let cause = reason.strip_prefix(&said).unwrap_or(&reason);
                failed.push(format!("{host}: {cause}"));
            }
            Err(e) => {
                passing = false;
                failed.push(format!("{host}: {e}"));
            }
        }
    }
    let reason = format!(
        "no host of the list took the session: {}",
        failed.join("; ")
    );
    Err(match passing {
        true => Error::Unavailable {
            reason: format!("cannot connect to {url}: {reason}"),
        },
        false => Error::Connection {
            url: url.to_string(),
            reason,
        },
    })
}

/// One attempt at one host, `one` (the URL itself, or one host of its list), bounded by
/// `limit`; errors name `url`, masked.
async fn open_host(
    url: &DatabaseUrl,
    one: &url::Url,
    limit: Duration,
) -> Result<(tokio_postgres::Client, bool)> {
    let (config, tls) = tls::configure(one).map_err(|reason| Error::BadUrl {
        url: url.to_string(),
        reason,
    })?;
    let (client, connection) = match tokio::time::timeout(limit, config.connect(tls)).await {
        Ok(Ok(pair)) => pair,
        // tokio-postgres's own per-address timeout (the URL's connect_timeout) ran out.
        Ok(Err(e)) if is_timeout(&e) => return Err(timed_out(url, limit)),
        Ok(Err(e)) => {
            return Err(driver_error(url, &e));
        }
        Err(_) => return Err(timed_out(url, limit)),
    };
    // What the server reported as the session began (PostgreSQL 14 on): a standby, or a
    // server set read-only. The pool tells a server that turned read-only later from one
    // that was so from the start (a replica), which is no failover.
    let on = |name| connection.parameter(name) == Some("on");
    let read_only = on("in_hot_standby") || on("default_transaction_read_only");
    DRIVERS.spawn(async move {
        let _ = connection.await;
    });
    Ok((client, read_only))
}

/// The tasks that drive open connections.
static DRIVERS: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

/// Waits, up to `limit`, until every connection dropped so far has said goodbye
/// (Terminate) to the server. Binaries call it last; otherwise the runtime stops the driver
/// tasks first and the server logs a reset connection.
pub async fn close_connections(limit: Duration) {
    DRIVERS.close();
    let _ = tokio::time::timeout(limit, DRIVERS.wait()).await;
    DRIVERS.reopen();
}

fn is_timeout(err: &tokio_postgres::Error) -> bool {
    let io = std::error::Error::source(err).and_then(|e| e.downcast_ref::<std::io::Error>());
    io.is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
}

/// No answer in time: the server may be down, frozen or starting, so worth a retry.
fn timed_out(url: &DatabaseUrl, limit: Duration) -> Error {
    Error::Unavailable {
        reason: format!(
            "cannot connect to {url}: no answer within {}s (connect_timeout in the URL or \
             DATABASE_CONNECT_TIMEOUT_SECS sets the limit)",
            limit.as_secs()
        ),
    }
}

/// Turns a driver connection error into ours, with the URL masked.
pub fn connection_error(url: &DatabaseUrl, err: diesel::ConnectionError) -> Error {
    let reason = match err {
        diesel::ConnectionError::BadConnection(msg) => msg,
        other => other.to_string(),
    };
    Error::Connection {
        url: url.to_string(),
        reason: reason.trim().to_owned(),
    }
}

/// A tokio-postgres failure on `url` as ours: the masked URL and the whole cause chain;
/// [`Error::Unavailable`] when a retry may succeed (see [`passing`]).
pub(crate) fn driver_error(url: &DatabaseUrl, err: &tokio_postgres::Error) -> Error {
    let reason = error_chain(err);
    match passing(err) {
        true => Error::Unavailable {
            reason: format!("cannot connect to {url}: {reason}"),
        },
        false => Error::Connection {
            url: url.to_string(),
            reason,
        },
    }
}

/// Whether a failure to open a session may pass by itself: nothing listens (refused, no
/// socket), the socket broke or closed, the server is starting or stopping (57P03, 57P01,
/// 57P02) or full (53300, too many clients), or it is a standby where `target_session_attrs=read-write` wants a primary
/// (tokio-postgres says so as an I/O error, "database does not allow writes"). A refused
/// login, a missing database or a TLS failure will not pass.
fn passing(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if let Some(code) = err.code() {
        let passing = [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            // What a reconnect storm after a failover meets: a slot frees soon enough.
            SqlState::TOO_MANY_CONNECTIONS,
        ];
        return passing.contains(code);
    }
    let io = std::error::Error::source(err).and_then(|e| e.downcast_ref::<std::io::Error>());
    io.is_some() || err.is_closed() || err.to_string().starts_with("timeout waiting")
}

/// An error and its sources on one line: "error connecting to server: Connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    line
}
