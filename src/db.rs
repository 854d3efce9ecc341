//! Connecting: the database URL (masked when shown), pool configuration from the
//! environment, and creating the database itself.

use std::fmt;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{Error, Result};

pub mod fns;
mod pool;
mod session;

pub use pool::{DbConfig, Pool, PooledConnection, Pooler, Recycle, build_pool, checkout};
pub(crate) use session::transaction_pooler;
pub use session::{ensure_session, is_transaction_pooler};

/// A validated `postgres://` URL. `Display` masks the password; [`DatabaseUrl::expose`]
/// gives the real string to the driver and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

/// What a database name must escape in a URL path: all but letters, digits and `-._~`
/// (RFC 3986's unreserved characters). Escaping `_` too would be valid, but diesel_cli then
/// creates the database under the escaped name.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// PostgreSQL's limit on a name (NAMEDATALEN - 1), in bytes.
pub const MAX_NAME_BYTES: usize = 63;

impl DatabaseUrl {
    /// Parses and checks a URL: scheme postgres/postgresql, user info where it belongs, and
    /// a database name. Errors show the input masked by [`mask`], never raw.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadUrl {
            url: mask(raw),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(raw).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                bad("it must look like postgres://user:password@host:5432/dbname")
            }
            _ if raw.contains('@') => bad(&format!("{e}{ENCODE_HINT}")),
            _ => bad(&e.to_string()),
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(bad("the scheme must be postgres:// or postgresql://"));
        }
        // An '@' that did not end the user info means the URL split somewhere else: a
        // reserved character in the password moved part of it into the port, path or query.
        if misplaced_at(&parsed, raw) {
            return Err(bad(&format!(
                "the '@' is not after the user info{ENCODE_HINT}"
            )));
        }
        let url = DatabaseUrl(parsed);
        if url.database().is_empty() {
            return Err(bad("no database name in the path (postgres://host/DBNAME)"));
        }
        // The server would silently cut a longer name and work on another database.
        let len = url.database().len();
        if len > MAX_NAME_BYTES {
            return Err(bad(&format!(
                "the database name is {len} bytes long; PostgreSQL allows at most \
                 {MAX_NAME_BYTES} (and would cut it short, naming another database)"
            )));
        }
        Ok(url)
    }

    /// The URL with its password, for the driver only: never print it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The database name from the path, percent-decoded.
    pub fn database(&self) -> String {
        let path = self.0.path().trim_start_matches('/');
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The same server and credentials, another database (e.g. `postgres` for admin work).
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.0.clone();
        let encoded: String = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).collect();
        url.set_path(&format!("/{encoded}"));
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0.as_str()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Added to URL errors where a reserved character in the password is the likely cause.
const ENCODE_HINT: &str = "; if the password holds @ : / ? # or %, percent-encode them \
                           (@ is %40, : is %3A, / is %2F, ? is %3F, # is %23, % is %25)";

/// Masks every part of `raw` that may be a password, for any input. A URL that parses
/// cleanly has its password and `password=` parameters masked. Of anything else only the
/// scheme is shown: nothing tells where in it a password would end.
pub fn mask(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if !misplaced_at(&url, raw) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            mask_password_params(url.as_str())
        }
        _ => match raw.split_once("://") {
            Some((scheme, _))
                if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                format!("{scheme}://(rest not shown: it does not parse)")
            }
            _ => "(not shown: not a URL)".to_owned(),
        },
    }
}

/// True when an `@` of `raw` did not end the user info: a reserved character in the
/// password moved part of it into the host, port, path, query or fragment.
fn misplaced_at(url: &url::Url, raw: &str) -> bool {
    let outside = [
        url.path(),
        url.query().unwrap_or(""),
        url.fragment().unwrap_or(""),
    ];
    (raw.contains('@') && url.username().is_empty() && url.password().is_none())
        || outside.iter().any(|part| part.contains('@'))
}

/// Masks the value of every `password=` (query parameter or `key=value` form).
fn mask_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let (mut out, mut rest) = (String::new(), text);
    while let Some(at) = rest.to_ascii_lowercase().find(KEY) {
        let value = &rest[at + KEY.len()..];
        let end = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => value[1..].find(quote).map_or(value.len(), |e| e + 2),
            _ => value.find(['&', ' ', '\t', '\n']).unwrap_or(value.len()),
        };
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str("***");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Quotes an SQL identifier (database, table, column name) for the few statements that
/// cannot take it as a bind parameter, such as `CREATE DATABASE`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL given on the command line, else `DATABASE_URL` (also read from `.env`), with
/// an error that says which is missing or unusable.
pub fn url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw);
    }
    let _ = dotenvy::dotenv();
    match std::env::var("DATABASE_URL") {
        Ok(raw) => DatabaseUrl::parse(&raw),
        Err(std::env::VarError::NotPresent) => Err(Error::NoUrl),
        // Not shown: it may hold a password, and cannot be printed faithfully anyway.
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::BadUrl {
            url: "$DATABASE_URL".into(),
            reason: "it is not valid UTF-8".into(),
        }),
    }
}

/// The URL for work that needs a whole server session (migrations and their advisory
/// lock): the command-line URL, else `DATABASE_DIRECT_URL` (the server itself, past any
/// transaction pooler), else [`url_from`].
pub fn direct_url_from(flag: Option<&str>) -> Result<DatabaseUrl> {
    if flag.is_none() {
        let _ = dotenvy::dotenv();
        if let Ok(raw) = std::env::var("DATABASE_DIRECT_URL") {
            return DatabaseUrl::parse(&raw);
        }
    }
    url_from(flag)
}

/// The default of [`connect_timeout`], in seconds.
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

/// What a connect timeout may be, in seconds. libpq reads 0 as "wait for ever"; a hung
/// server must never hang us, so 0 is refused.
pub const CONNECT_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3_600;

/// How long opening a connection may take, handshake and login included: the URL's
/// `connect_timeout`, else `DATABASE_CONNECT_TIMEOUT_SECS`, else [`CONNECT_TIMEOUT_SECS`],
/// each within [`CONNECT_TIMEOUT_RANGE`].
pub fn connect_timeout(url: &DatabaseUrl) -> Result<Duration> {
    let params = crate::tls::params(&url.0);
    let in_url = params.iter().rev().find(|(k, _)| k == "connect_timeout");
    let secs = match in_url {
        Some((_, v)) => {
            let (lo, hi) = (CONNECT_TIMEOUT_RANGE.start(), CONNECT_TIMEOUT_RANGE.end());
            let bad = || Error::BadUrl {
                url: url.to_string(),
                reason: format!(
                    "connect_timeout must be whole seconds from {lo} to {hi} (0 would wait \
                     for ever), got {v:?}"
                ),
            };
            let secs: u64 = v.trim().parse().map_err(|_| bad())?;
            if !CONNECT_TIMEOUT_RANGE.contains(&secs) {
                return Err(bad());
            }
            secs
        }
        None => crate::settings::number("DATABASE_CONNECT_TIMEOUT_SECS", CONNECT_TIMEOUT_RANGE)?
            .unwrap_or(CONNECT_TIMEOUT_SECS),
    };
    Ok(Duration::from_secs(secs))
}

/// How a child tool (pg_dump, diesel_cli) reaches the database: the URL for its command
/// line, without the password, and its environment: the password as `PGPASSWORD` (argv is
/// readable by every local user through `ps`; the environment only by the same user) and
/// the connect bound as `PGCONNECT_TIMEOUT` (whole seconds, at least 2).
pub fn tool_connection(url: &DatabaseUrl) -> Result<(String, Vec<(&'static str, String)>)> {
    let secs = connect_timeout(url)?.as_secs().max(2);
    let mut env = vec![("PGCONNECT_TIMEOUT", secs.to_string())];
    let mut bare = url.0.clone();
    let in_query = (crate::tls::params(&bare).into_iter().rev())
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v);
    let in_userinfo = bare.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if let Some(password) = in_userinfo.or(in_query) {
        env.push(("PGPASSWORD", password));
    }
    let _ = bare.set_password(None);
    let bare = crate::tls::without_params(&bare, &["password"]);
    Ok((bare.to_string(), env))
}

/// Opens one connection, with an error that names the (masked) URL and the cause. See
/// [`connect_client`] for the bounded wait and the clean close.
pub async fn connect(url: &DatabaseUrl) -> Result<AsyncPgConnection> {
    connect_through(url, Pooler::Session).await
}

/// [`connect`] through `pooler`.
async fn connect_through(url: &DatabaseUrl, pooler: Pooler) -> Result<AsyncPgConnection> {
    // Read first: a bad DATABASE_SLOW_QUERY_MS is refused before a session is opened.
    let tracing = crate::instrument::QueryTracing::from_env()?;
    let (client, limit) = open(url).await?;
    let bounced = pooler == Pooler::Transaction;
    if bounced {
        // diesel-async's set-up prepares and then runs its SETs, two round trips a
        // transaction pooler may send to two server sessions: one transaction keeps them on
        // one.
        // DEALLOCATE ALL first: a client not set up for the pooler may have left named
        // statements on this server session, and the set-up's would collide with them.
        (client.batch_execute("BEGIN; DEALLOCATE ALL").await).map_err(|e| driver_error(url, &e))?;
    }
    // diesel-async sets the session up (time zone, encoding): bounded too.
    let mut conn = match tokio::time::timeout(limit, AsyncPgConnection::try_from(client)).await {
        Ok(conn) => conn.map_err(|e| connection_error(url, e))?,
        Err(_) => return Err(timed_out(url, limit)),
    };
    if bounced {
        use diesel_async::SimpleAsyncConnection;
        conn.batch_execute("COMMIT").await?;
        pool::for_transaction_pooler(&mut conn).await?;
    }
    // Every statement from here on is a tracing span; slow ones a warning.
    diesel_async::AsyncConnection::set_instrumentation(&mut conn, tracing);
    Ok(conn)
}

/// One tokio-postgres session: a single attempt, bounded by [`connect_timeout`] from the
/// first packet to a usable session (a server that accepts and never answers included). Its
/// driver runs on a task that sends Terminate when the client is dropped;
/// [`close_connections`] lets those tasks finish before a program exits.
pub async fn connect_client(url: &DatabaseUrl) -> Result<tokio_postgres::Client> {
    Ok(open(url).await?.0)
}

/// [`connect_client`], and the bound it used, for the set-up that follows.
async fn open(url: &DatabaseUrl) -> Result<(tokio_postgres::Client, Duration)> {
    let limit = connect_timeout(url)?;
    let (config, tls) = crate::tls::configure(&url.0).map_err(|reason| Error::BadUrl {
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
    DRIVERS.spawn(async move {
        let _ = connection.await;
    });
    Ok((client, limit))
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

fn timed_out(url: &DatabaseUrl, limit: Duration) -> Error {
    Error::Connection {
        url: url.to_string(),
        reason: format!(
            "no answer within {}s (connect_timeout in the URL or DATABASE_CONNECT_TIMEOUT_SECS \
             sets the limit)",
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

/// A tokio-postgres failure on `url` as ours: the masked URL and the whole cause chain.
fn driver_error(url: &DatabaseUrl, err: &tokio_postgres::Error) -> Error {
    Error::Connection {
        url: url.to_string(),
        reason: error_chain(err),
    }
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

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Creates the database named in `url` if it does not exist; returns whether it created it.
/// Connects to the `postgres` maintenance database of the same server to do so.
pub async fn ensure_database(url: &DatabaseUrl) -> Result<bool> {
    let name = url.database();
    let admin_url = url.with_database("postgres");
    let mut admin = connect(&admin_url).await?;
    let exists = |name: String| {
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
    };
    let found: Exists = exists(name.clone()).get_result(&mut admin).await?;
    if found.exists {
        return Ok(false);
    }
    // CREATE DATABASE takes no bind parameters: the name is quoted instead.
    let created = diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut admin)
        .await;
    match created {
        Ok(_) => Ok(true),
        // Another process created it between our check and our CREATE: that is fine.
        Err(err) => {
            let again: Exists = exists(name).get_result(&mut admin).await?;
            if again.exists {
                Ok(false)
            } else {
                Err(err.into())
            }
        }
    }
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// Every table of the `public` schema with its exact row count, sorted by name
/// (Diesel's own bookkeeping table left out).
pub async fn table_counts(conn: &mut AsyncPgConnection) -> Result<Vec<(String, i64)>> {
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name NOT LIKE '\\_\\_diesel%' ORDER BY table_name",
    )
    .load(conn)
    .await?;
    let mut counts = Vec::with_capacity(tables.len());
    for TableName { table_name } in tables {
        let sql = format!("SELECT count(*) AS count FROM {}", quote_ident(&table_name));
        let Count { count } = diesel::sql_query(sql).get_result(conn).await?;
        counts.push((table_name, count));
    }
    Ok(counts)
}
