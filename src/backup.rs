//! Backups before migrating, and restores that lose nothing: pg_dump's custom format out,
//! and back in through a fresh database that takes the old one's name only once it is
//! complete. The old database is kept, renamed, until you drop it.

use std::path::Path;
use std::process::Command;

use diesel_async::RunQueryDsl;

use crate::db::{self, DatabaseUrl, quote_ident};
use crate::migrations::tool;
use crate::{Error, Result};

/// `pg_dump --format=custom` of the database at `url` into `file`.
pub fn dump(url: &DatabaseUrl, file: &Path) -> Result<()> {
    let (bare, env) = db::tool_connection(url)?;
    let mut pg_dump = Command::new(tool("pg_dump"));
    pg_dump
        .envs(env)
        .args(["--format=custom", "--file"])
        .arg(file);
    run(pg_dump.args(["--dbname", &bare]), "pg_dump")
}

/// Restores `file` (from [`dump`]) as the database of `url`, schema, history and rows
/// together. It goes into a new database first, in one transaction; only when that has
/// succeeded is the current database renamed to the returned name and the new one given
/// its place. A failure at any step leaves the current database as it was. Both renames
/// need the databases free of sessions: stop the application first.
pub async fn restore(url: &DatabaseUrl, file: &Path) -> Result<String> {
    if !file.is_file() {
        return Err(failed(format!("{}: no such backup file", file.display())));
    }
    let name = url.database();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let staging = url.with_database(&with_suffix(&name, &format!("_restoring_{stamp}")));
    let kept = with_suffix(&name, &format!("_before_restore_{stamp}"));
    if !db::ensure_database(&staging).await? {
        return Err(failed(format!("{} exists already", staging.database())));
    }
    let (bare, env) = db::tool_connection(&staging)?;
    let mut pg_restore = Command::new(tool("pg_restore"));
    pg_restore
        .envs(env)
        .args(["--no-owner", "--single-transaction", "--exit-on-error"]);
    let loaded = run(pg_restore.args(["--dbname", &bare]).arg(file), "pg_restore");
    let mut admin = db::connect(&url.with_database("postgres")).await?;
    let swapped = match loaded {
        Ok(()) => swap(&mut admin, &name, &staging.database(), &kept).await,
        Err(e) => Err(e),
    };
    if let Err(e) = swapped {
        let drop = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&staging.database())
        );
        let _ = diesel::sql_query(drop).execute(&mut admin).await;
        let why = match e {
            Error::Backup(message) => message,
            other => other.to_string(),
        };
        return Err(failed(format!("{why}; {name} is as it was")));
    }
    Ok(kept)
}

/// `name` → `kept`, then `staging` → `name`; the first is undone if the second fails.
async fn swap(
    admin: &mut diesel_async::AsyncPgConnection,
    name: &str,
    staging: &str,
    kept: &str,
) -> Result<()> {
    wait_for_no_sessions(admin, name).await?;
    let rename = |from: &str, to: &str| {
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        )
    };
    diesel::sql_query(rename(name, kept))
        .execute(admin)
        .await
        .map_err(|e| failed(format!("{e} (stop the application first)")))?;
    if let Err(e) = diesel::sql_query(rename(staging, name))
        .execute(admin)
        .await
    {
        let _ = diesel::sql_query(rename(kept, name)).execute(admin).await;
        return Err(e.into());
    }
    Ok(())
}

/// Waits up to 5 s for the sessions on `name` to end (an application that is stopping),
/// else refuses: renaming a database needs it free.
async fn wait_for_no_sessions(
    admin: &mut diesel_async::AsyncPgConnection,
    name: &str,
) -> Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Sessions {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // pg_stat_activity has no Diesel schema.
        let Sessions { n } = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(admin)
        .await?;
        if n == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "{n} sessions are connected to {name}: stop the application first"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `name` with `suffix`, the name cut (on a character boundary) so the whole fits
/// PostgreSQL's 63 bytes.
fn with_suffix(name: &str, suffix: &str) -> String {
    let mut cut = 63usize.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let out = command.output().map_err(|e| {
        failed(format!(
            "cannot run {what} ({e}): install PostgreSQL's client tools"
        ))
    })?;
    match out.status.success() {
        true => Ok(()),
        false => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(failed(format!("{what} failed: {}", stderr.trim())))
        }
    }
}

fn failed(message: String) -> Error {
    Error::Backup(message)
}
