//! One error type for the data layer: callers match on what went wrong, not on strings.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the row.
    #[error("conflicts with an existing row (constraint {constraint})")]
    Conflict {
        /// The unique constraint or index, e.g. `users_email_key`.
        constraint: String,
    },
    /// A CHECK or NOT NULL constraint, or our own validation before any SQL, refused the
    /// value. Validation names the CHECK constraint that would have refused it.
    #[error("invalid value: {message} (constraint {constraint})")]
    Invalid {
        /// The CHECK constraint that refuses the value; for NOT NULL, `<table>_<column>_not_null`
        /// (the name PostgreSQL 18 gives such constraints).
        constraint: String,
        /// What is wrong, for people.
        message: String,
    },
    /// A foreign key refused the write: the referenced row is missing or still referenced.
    #[error("foreign key violation (constraint {constraint})")]
    ForeignKey {
        /// The foreign key constraint, e.g. `tasks_owner_id_fkey`.
        constraint: String,
    },
    /// No database URL was given, neither as `--url` nor as `DATABASE_URL` (or in `.env`).
    #[error(
        "no database URL: pass --url or set DATABASE_URL (a .env file works too), \
         e.g. postgres://postgres@127.0.0.1:5432/app"
    )]
    NoUrl,
    /// The database URL cannot be used; the URL in the message has its password masked.
    #[error("invalid database URL {url}: {reason}")]
    BadUrl {
        /// The URL with its password masked, or where it came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the session for a reason a retry will not change: a wrong
    /// password, a missing database, a TLS failure. A server that cannot be reached at all is
    /// [`Error::Unavailable`].
    #[error("cannot connect to {url}: {reason}")]
    Connection {
        /// The URL with its password masked.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// Every pooled connection stayed busy for the configured wait (`DATABASE_POOL_TIMEOUT_SECS`).
    #[error(
        "timed out waiting for a pooled connection: all are in use; raise DATABASE_POOL_SIZE \
         or DATABASE_POOL_TIMEOUT_SECS, or hold connections for less time"
    )]
    PoolTimeout,
    /// The pool could not open a connection, for a reason a retry will not change.
    #[error("connection pool: {0}")]
    Pool(String),
    /// No server could do the work just now, and a retry may succeed: the connection was
    /// lost or terminated mid-statement (a crash, a restart, a failover), the server is a
    /// standby and refused a write (read-only), or no host of the URL took a session within
    /// the connect timeout. The pool drops the connection that saw it; the next checkout
    /// opens another through the URL. A write whose connection was lost may or may not have
    /// committed: retry only work that is idempotent (see [`crate::db::retry`]). Not a
    /// [`Error::PoolTimeout`], which says the application holds every connection.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// What happened, with any URL masked.
        reason: String,
    },
    /// A setting in the environment does not parse; the message names it and its value.
    #[error("configuration: {0}")]
    Config(String),
    /// A backup or a restore failed; the message says which step, and what was kept.
    #[error("backup or restore: {0}")]
    Backup(String),
    /// Ctrl-C or SIGTERM stopped a long command, which cleaned up first; the message says
    /// what was undone.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A migration failed; the message names it.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A call that must not run inside an open transaction was made in one; the message
    /// names the call and why.
    #[error("{0}")]
    InTransaction(&'static str),
    /// Any other database error: Diesel's message, and its sources behind it.
    #[error(transparent)]
    Database(DieselError),
}

impl From<DieselError> for Error {
    fn from(err: DieselError) -> Self {
        let name = |info: &dyn diesel::result::DatabaseErrorInformation| {
            info.constraint_name().unwrap_or("unknown").to_owned()
        };
        if let Some(reason) = unavailable(&err) {
            UNAVAILABLE_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Error::Unavailable { reason };
        }
        match err {
            DieselError::NotFound => Error::NotFound,
            DieselError::DatabaseError(kind, ref info) => match kind {
                DatabaseErrorKind::UniqueViolation => Error::Conflict {
                    constraint: name(info.as_ref()),
                },
                DatabaseErrorKind::CheckViolation => Error::Invalid {
                    constraint: name(info.as_ref()),
                    message: info.message().to_owned(),
                },
                DatabaseErrorKind::NotNullViolation => Error::Invalid {
                    constraint: not_null(info.table_name(), info.column_name()),
                    message: info.message().to_owned(),
                },
                DatabaseErrorKind::ForeignKeyViolation => Error::ForeignKey {
                    constraint: name(info.as_ref()),
                },
                _ => Error::Database(err),
            },
            other => Error::Database(other),
        }
    }
}

/// How many [`Error::Unavailable`]s Diesel's errors have become in this process: the pool
/// checks each idle connection once after it moves (see `db::build_pool`).
static UNAVAILABLE_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The count [`UNAVAILABLE_SEEN`] holds now.
pub(crate) fn unavailable_seen() -> u64 {
    UNAVAILABLE_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why `err` says the server is gone or cannot take writes, if it does (see
/// [`Error::Unavailable`]); `None` for everything else. Read from the kind where Diesel has
/// one and else from the text: diesel-async keeps the SQLSTATE to itself. A cancelled
/// statement ("canceling statement due to ...": a cancel request, `statement_timeout`) is
/// not here: the server is fine, and the same statement would run as long again.
pub(crate) fn unavailable(err: &DieselError) -> Option<String> {
    let DieselError::DatabaseError(kind, info) = err else {
        // A COMMIT whose connection broke: its outcome is unknown, said as such.
        if let DieselError::RollbackErrorOnCommit { commit_error, .. } = err {
            let reason = unavailable(commit_error)?;
            return Some(format!("{reason} (during COMMIT: it may have committed)"));
        }
        return None;
    };
    let message = info.message();
    let lost = matches!(kind, DatabaseErrorKind::ClosedConnection)
        // 57P01 (admin shutdown: pg_terminate_backend, a fast or immediate stop), 57P02
        // (crash of another server process).
        || message.starts_with("terminating connection")
        // tokio-postgres's own words for a socket that closed or failed under it.
        || (matches!(kind, DatabaseErrorKind::UnableToSendCommand)
            && (message.contains("connection closed")
                || message.starts_with("error communicating with the server")));
    if lost {
        return Some(format!("the connection to the server was lost: {message}"));
    }
    // 25006: a write on a server in recovery (a standby, or a primary demoted to one).
    if matches!(kind, DatabaseErrorKind::ReadOnlyTransaction) {
        return Some(format!(
            "the server refused a write, being read-only (a standby?): {message}"
        ));
    }
    None
}

/// A NOT NULL constraint's name, as PostgreSQL 18 names them (`tasks_title_not_null`); older
/// servers report the table and column but no name.
pub(crate) fn not_null(table: Option<&str>, column: Option<&str>) -> String {
    let part = |p: Option<&str>| p.unwrap_or("unknown").to_owned();
    format!("{}_{}_not_null", part(table), part(column))
}

impl Error {
    /// A validation error, named after the CHECK constraint that enforces the same rule.
    pub fn invalid(constraint: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            constraint: constraint.to_owned(),
            message: message.into(),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        use diesel::ConnectionError::CouldntSetupConfiguration;
        use diesel_async::pooled_connection::PoolError::{ConnectionError, QueryError};
        match err {
            PoolError::Timeout(TimeoutType::Wait) => Error::PoolTimeout,
            // Opening a connection, or the Verified check, ran out of time: no server
            // answers.
            PoolError::Timeout(which) => Error::Unavailable {
                reason: format!(
                    "the pool got no usable connection in time ({which:?} timeout: \
                     DATABASE_POOL_TIMEOUT_SECS)"
                ),
            },
            // db::build_pool hands an unreachable server over this way: a closed
            // connection carrying our reason (see its set-up).
            PoolError::Backend(ConnectionError(CouldntSetupConfiguration(
                DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info),
            ))) => Error::Unavailable {
                reason: info.message().to_owned(),
            },
            // A Verified check that failed: the query's own error.
            PoolError::Backend(QueryError(e)) => match Error::from(e) {
                unavailable @ Error::Unavailable { .. } => unavailable,
                other => Error::Pool(other.to_string()),
            },
            other => Error::Pool(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::from(DieselError::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn a_lost_or_read_only_server_is_unavailable_and_nothing_else_is() {
        use DatabaseErrorKind::*;
        for (kind, message) in [
            (
                Unknown,
                "terminating connection due to administrator command",
            ),
            (
                Unknown,
                "terminating connection due to immediate shutdown command",
            ),
            (ClosedConnection, "server closed the connection"),
            (UnableToSendCommand, "connection closed"),
            (
                UnableToSendCommand,
                "error communicating with the server: reset",
            ),
            (
                ReadOnlyTransaction,
                "cannot execute INSERT in a read-only transaction",
            ),
        ] {
            let err = db(kind, message);
            assert!(
                matches!(err, Error::Unavailable { .. }),
                "{message}: {err:?}"
            );
            assert!(
                err.to_string().starts_with("database unavailable: "),
                "{err}"
            );
            assert!(err.to_string().contains(message), "{err}");
        }
        for (kind, message) in [
            (Unknown, "canceling statement due to statement timeout"),
            (UnableToSendCommand, "error encoding message to server"),
            (Unknown, "relation \"x\" does not exist"),
        ] {
            let err = db(kind, message);
            assert!(matches!(err, Error::Database(_)), "{message}: {err:?}");
        }
        let commit = DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(DieselError::BrokenTransactionManager),
            commit_error: Box::new(DieselError::DatabaseError(
                ClosedConnection,
                Box::new("connection closed".to_owned()),
            )),
        };
        let err = Error::from(commit).to_string();
        assert!(err.contains("it may have committed"), "{err}");
    }
}
