//! Migrations: diesel_cli's folder format and version table, embedded by diesel_migrations
//! ([`MIGRATIONS`]) and run by an async runner (no libpq) that adds what diesel_migrations
//! lacks: an advisory lock, lock and statement timeouts with retry, checksums of applied
//! files, errors that name the failing statement, out-of-order detection, `stamp`, SQL
//! previews, and squawk's linter.

mod checks;
mod lint;
mod runner;
mod scratch;
mod source;

pub use checks::{
    RoundTripFailure, dump_schema, print_schema, round_trip, schema_drift, tool,
    unindexed_foreign_keys,
};
pub use lint::{LintFinding, lint};
pub use runner::{
    Applied, Config, Direction, HISTORY_DDL, LOCK_KEY, Migrator, Problem, State, Status, Target,
    Version,
};
pub use scratch::Scratch;
pub use source::{Migration, Statement, statements};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

use crate::Result;
use crate::db::DatabaseUrl;

/// `migrations/` as it was when this binary was built: the one embedding of the migrations.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Applies every pending embedded migration with the default settings; returns the folders
/// applied. What `init_db` and the tests use.
pub async fn run_pending(url: &DatabaseUrl) -> Result<Vec<String>> {
    run_pending_with(url, Config::default()).await
}

/// [`run_pending`] with these settings (timeouts from `init_db`'s or the service's flags).
pub async fn run_pending_with(url: &DatabaseUrl, config: Config) -> Result<Vec<String>> {
    let mut migrator = Migrator::embedded()?;
    migrator.config = config;
    migrator.upgrade(url, Target::Head).await
}
