//! Embedded migrations, run without libpq through diesel-async's `AsyncConnectionWrapper`.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::db::{DatabaseUrl, connection_error};
use crate::{Error, Result};

/// The `migrations/` folder, compiled into the binary (build.rs rebuilds on changes).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

type SyncConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies every pending migration, each in its own transaction; returns the versions applied.
pub async fn run_pending(url: &DatabaseUrl) -> Result<Vec<String>> {
    with_sync_connection(url, |conn| {
        let versions = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| Error::Migration(e.to_string()))?;
        Ok(versions.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Versions of the embedded migrations not yet applied to the database.
pub async fn pending(url: &DatabaseUrl) -> Result<Vec<String>> {
    with_sync_connection(url, |conn| {
        let pending = conn
            .pending_migrations(MIGRATIONS)
            .map_err(|e| Error::Migration(e.to_string()))?;
        Ok(pending
            .iter()
            .map(|m| m.name().version().to_string())
            .collect())
    })
    .await
}

/// Versions already applied, newest first.
pub async fn applied(url: &DatabaseUrl) -> Result<Vec<String>> {
    with_sync_connection(url, |conn| {
        let applied = conn
            .applied_migrations()
            .map_err(|e| Error::Migration(e.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// diesel_migrations is synchronous: run it on a blocking thread, where the wrapper may
/// block on the async connection without stalling the runtime.
async fn with_sync_connection<T, F>(url: &DatabaseUrl, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut SyncConnection) -> Result<T> + Send + 'static,
{
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = <SyncConnection as diesel::Connection>::establish(url.expose())
            .map_err(|e| connection_error(&url, e))?;
        work(&mut conn)
    })
    .await
    .map_err(|e| Error::Migration(format!("migration task failed: {e}")))?
}
