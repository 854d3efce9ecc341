//! Backups before migrating, and restores that lose nothing: pg_dump's custom format out,
//! and back in through a fresh database that takes the old one's name only once it is
//! complete. The old database is kept, renamed, until you drop it.
//!
//! The parts: `dump` writes a backup file; `restore` loads one into a staging database
//! and swaps it in; `origin` reads what a backup says about its database (encoding,
//! locale, owner); `carry` carries the replaced database's own state (owner, grants,
//! settings, comment) over, reading the shared catalogs declared in `catalog`; `process`
//! runs pg_dump and pg_restore as children that can be stopped and die with us.

mod carry;
mod catalog;
mod dump;
mod origin;
mod process;
mod restore;

pub use dump::dump;
pub use restore::{STAGING_MARK, restore};

use crate::Error;

/// What a restore did with the database it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The previous database, kept under this name, with its database-level settings,
    /// grants and comment carried over to the restored one.
    Kept(String),
    /// There was none: the restored database took the name. Database-level settings
    /// (`ALTER DATABASE … SET`, grants on the database, its comment) are not in a backup.
    Created,
}

/// Who owns the restored objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// The roles that owned them when the backup was made; each must exist (and the
    /// restoring role be allowed to give objects to it).
    AsInBackup,
    /// The role that restores (`pg_restore --no-owner`).
    Restorer,
}

fn failed(message: String) -> Error {
    Error::Backup(message)
}

fn interrupted() -> Error {
    failed("interrupted".into())
}

/// An error's text without the `backup:` prefix of [`Error::Backup`].
fn message(e: Error) -> String {
    match e {
        Error::Backup(message) => message,
        other => other.to_string(),
    }
}

/// `value` as an SQL string literal, written as PostgreSQL's own `quote_literal` writes
/// it: quotes doubled, and with a backslash the `E'…'` form with backslashes doubled, so
/// it reads the same whatever `standard_conforming_strings` says. For the statements that
/// take no bind parameters (CREATE, ALTER and COMMENT ON DATABASE).
fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    match value.contains('\\') {
        true => format!("E'{}'", quoted.replace('\\', "\\\\")),
        false => format!("'{quoted}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_as_postgresql_quotes_them() {
        assert_eq!(quote_literal("x"), "'x'");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("it's"), "'it''s'");
        // What `SELECT quote_literal(E'a\\b''c')` answers.
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
        assert_eq!(quote_literal("'; DROP x; --"), "'''; DROP x; --'");
    }
}
