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
    /// The server could not be reached or refused the login.
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
    /// The pool could not open a connection.
    #[error("connection pool: {0}")]
    Pool(String),
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
        match err {
            PoolError::Timeout(TimeoutType::Wait) => Error::PoolTimeout,
            other => Error::Pool(other.to_string()),
        }
    }
}
