//! Connections, in one room: the URL (masked when shown), opening a session (TLS, bounded
//! waits), the pool, statement tracing, the replica router and database administration.
//! Everything that talks to a server goes through here.

mod admin;
mod committed;
mod connect;
pub mod fns;
pub mod instrument;
mod pool;
mod pooler;
pub mod replicas;
mod retry;
mod session;
mod tls;
mod url;

pub use admin::{drop_database, ensure_database, quote_ident, refuse_standby, table_counts};
pub use committed::{CommittedDsl, one};
pub(crate) use connect::driver_error;
pub use connect::{close_connections, connect, connect_client, connect_timeout, connection_error};
// Only the HTTP server cancels a request's statement from outside the pool.
#[cfg(feature = "http")]
pub(crate) use pool::cancel_in_background;
pub use pool::{
    DbConfig, Pool, PooledConnection, Recycle, build_pool, cancel_statement, cancels_sent,
    checkout, in_flight,
};
pub use pooler::Pooler;
pub use retry::{RetryPolicy, retry};
pub use session::{ensure_session, is_transaction_pooler};
pub(crate) use session::{standby, transaction_pooler};
pub use url::{
    DatabaseUrl, MAX_HOSTS, MAX_NAME_BYTES, direct_url_from, mask, tool_connection, url_from,
};
