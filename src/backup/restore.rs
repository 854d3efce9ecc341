//! Restoring a backup: into a staging database, marked while it loads, that takes the
//! database's name only once complete; the database it replaces is kept, renamed.
//!
//! Database DDL (CREATE, ALTER, COMMENT ON and DROP DATABASE) has no Diesel DSL and takes
//! no bind parameters: those statements are `sql_query`, names quoted as identifiers and
//! values as literals. The catalog reads and the lock use the DSL.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::process::Command;

use super::carry::{carry_over, current_state};
use super::origin::{not_a_backup_hint, origin};
use super::process::run;
use super::{Owners, Replaced, failed, interrupted, message, quote_literal};
use crate::db::fns::{hashtext, pg_backend_pid, pg_try_advisory_lock_pair, shobj_description};
use crate::db::{self, DatabaseUrl, quote_ident};
use crate::migrations::tool;
use crate::{Error, Result};

/// Restores `file` (from [`dump`](super::dump())) as the database of `url`, schema, history
/// and rows together. The file is checked first: one that is not a backup creates nothing.
/// It goes into a new database, created with the backup's encoding, collation, ctype and
/// locale provider, in one transaction; only when that has succeeded is the current
/// database renamed to a kept name and the new one given its place, with the current one's
/// settings, grants, comment, owner and connection limit. A failure at any step leaves the
/// current database as it was. Both renames need the databases free of sessions: stop the
/// application first. When the database does not exist (a disaster), the restored one
/// simply takes its name, and the owner it had in the backup.
///
/// When `cancel` completes before the renames (Ctrl-C, SIGTERM), pg_restore is stopped,
/// the half-loaded database dropped, and an error returned; nothing else changed.
pub async fn restore(
    url: &DatabaseUrl,
    file: &Path,
    owners: Owners,
    cancel: impl Future<Output = ()>,
) -> Result<Replaced> {
    if !file.is_file() {
        return Err(failed(format!("{}: no such backup file", file.display())));
    }
    let name = url.database();
    let mut cancel = std::pin::pin!(cancel);
    let origin = origin(file, cancel.as_mut()).await.map_err(|e| {
        failed(format!(
            "{}; nothing created, {name} is as it was",
            message(e)
        ))
    })?;
    let stem = &staging_stem(&name);
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let staging = url.with_database(&format!("{stem}{stamp}"));
    let kept = with_suffix(&name, &format!("_before_restore_{stamp}"));
    let mut admin = db::connect(&url.with_database("postgres")).await?;
    // CREATE/DROP/ALTER DATABASE take what they take: no slow-query warnings for them.
    diesel_async::AsyncConnection::set_instrumentation(
        &mut admin,
        crate::db::instrument::QueryTracing::new(std::time::Duration::MAX),
    );
    db::refuse_standby(&mut admin, url).await?;
    lock_restores_of(&mut admin, stem, &name).await?;
    drop_stale(&mut admin, stem).await?;
    let current = current_state(&mut admin, &name).await?;
    // CREATE DATABASE takes no bind parameters: the name is quoted, the options' keys come
    // from a fixed list and their values are quoted as literals.
    let mut create = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_ident(&staging.database())
    );
    for (key, value) in &origin.options {
        create.push_str(&format!(" {key} = {}", quote_literal(value)));
    }
    diesel::sql_query(&create)
        .execute(&mut admin)
        .await
        .map_err(|e| {
            failed(format!(
                "{}: {e} (creating it with the backup's encoding and locale: {create}); \
                 {name} is as it was",
                staging.database()
            ))
        })?;

    // Marked at once: a later restore drops only marked copies, never a database that only
    // looks like one by its name.
    let mark = format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(&staging.database()),
        quote_literal(STAGING_MARK)
    );
    diesel::sql_query(mark).execute(&mut admin).await?;

    let loaded = match load(&staging, file, owners, cancel.as_mut()).await {
        // Loaded: the copy is the database now, without the mark (carry_over gives it the
        // current database's comment, if any).
        Ok(()) => {
            let unmark = format!(
                "COMMENT ON DATABASE {} IS NULL",
                quote_ident(&staging.database())
            );
            diesel::sql_query(unmark)
                .execute(&mut admin)
                .await
                .map(|_| ())
                .map_err(Error::from)
        }
        Err(e) => Err(e),
    };
    // Still before any change to `name`: an interruption here loses nothing either.
    let prepared = match (loaded, &current) {
        (Ok(()), Some(state)) => tokio::select! {
            done = async {
                carry_over(&mut admin, state, &staging.database()).await?;
                wait_for_no_sessions(&mut admin, &name).await
            } => done,
            () = cancel.as_mut() => Err(interrupted()),
        },
        (Ok(()), None) => match (&origin.owner, owners) {
            (Some(owner), Owners::AsInBackup) => {
                let sql = format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    quote_ident(&staging.database()),
                    quote_ident(owner)
                );
                (diesel::sql_query(&sql).execute(&mut admin).await)
                    .map(|_| ())
                    .map_err(|e| failed(format!("{sql}: {e}{}", owner_hint())))
            }
            _ => Ok(()),
        },
        (loaded, _) => loaded,
    };
    let swapped = match (prepared, &current) {
        (Ok(()), Some(_)) => swap(&mut admin, &name, &staging.database(), &kept).await,
        (Ok(()), None) => rename(&mut admin, &staging.database(), &name).await,
        (Err(e), _) => Err(e),
    };
    if let Err(e) = swapped {
        let _ = db::drop_database(&mut admin, &staging.database()).await;
        let as_it_was = match current {
            Some(_) => "is as it was",
            None => "still does not exist",
        };
        return Err(failed(format!(
            "{}; {} dropped, {name} {as_it_was}",
            message(e),
            staging.database()
        )));
    }
    Ok(match current {
        Some(_) => Replaced::Kept(kept),
        None => Replaced::Created,
    })
}

fn owner_hint() -> &'static str {
    "; create the missing role (or grant the restoring role membership in it), or restore \
     with --no-owner to give every object to the role that restores"
}

/// pg_restore of `file` into `staging`, stopped (and waited for) if `cancel` completes.
async fn load(
    staging: &DatabaseUrl,
    file: &Path,
    owners: Owners,
    cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<()> {
    let (bare, env) = db::tool_connection(staging)?;
    let mut pg_restore = Command::new(tool("pg_restore"));
    pg_restore
        .envs(env)
        .args(["--single-transaction", "--exit-on-error"])
        .args(["--dbname", &bare])
        .arg(file)
        .stdout(Stdio::null());
    if owners == Owners::Restorer {
        pg_restore.arg("--no-owner");
    }
    match run(pg_restore, "pg_restore", &not_a_backup_hint(file), cancel).await {
        Err(Error::Backup(m))
            if owners == Owners::AsInBackup
                && (m.contains("role \"") && m.contains("does not exist")
                    || m.contains("must be member of role")
                    || m.contains("must be able to SET ROLE")) =>
        {
            Err(failed(format!("{m}{}", owner_hint())))
        }
        other => other.map(|_| ()),
    }
}

/// The advisory-lock key space of restores, 'rest' in ASCII: a class of our own, so no
/// other two-key lock collides with it.
const RESTORES: i32 = 0x7265_7374;

/// Only one restore of a database at a time; held until `admin` closes (also when the
/// process dies), so a `_restoring_` database found while holding it is an orphan.
async fn lock_restores_of(admin: &mut AsyncPgConnection, stem: &str, name: &str) -> Result<()> {
    let locked: bool = diesel::select(pg_try_advisory_lock_pair(RESTORES, hashtext(stem)))
        .get_result(admin)
        .await?;
    match locked {
        true => Ok(()),
        false => Err(failed(format!(
            "another restore of {name} is running; nothing changed"
        ))),
    }
}

/// The comment on a restore's staging database while it loads: only databases that carry
/// it are ever dropped as leftovers.
pub const STAGING_MARK: &str = "migrate restore staging database: dropped by the next restore \
                                of its database if the restore that made it is gone";

/// Drops `<stem><14 digits>` databases marked [`STAGING_MARK`]: left by a restore that was
/// killed before it could clean up (we hold the lock, so none is in progress).
async fn drop_stale(admin: &mut AsyncPgConnection, stem: &str) -> Result<()> {
    use super::catalog::pg_database as d;

    let marked: Vec<String> = d::table
        .select(d::datname)
        .filter(shobj_description(d::oid, "pg_database").eq(STAGING_MARK))
        .load(admin)
        .await?;
    for datname in marked.into_iter().filter(|n| is_staging(stem, n)) {
        db::drop_database(admin, &datname).await?;
        tracing::warn!(database = %datname, "dropped the half-loaded database of an interrupted restore");
    }
    Ok(())
}

/// `name` → `kept`, then `staging` → `name`; the first is undone if the second fails.
async fn swap(admin: &mut AsyncPgConnection, name: &str, staging: &str, kept: &str) -> Result<()> {
    rename(admin, name, kept)
        .await
        .map_err(|e| failed(format!("{e} (stop the application first)")))?;
    if let Err(e) = rename(admin, staging, name).await {
        let _ = rename(admin, kept, name).await;
        return Err(e);
    }
    Ok(())
}

async fn rename(admin: &mut AsyncPgConnection, from: &str, to: &str) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    );
    diesel::sql_query(sql).execute(admin).await?;
    Ok(())
}

/// Waits up to 5 s for the sessions on `name` to end (an application that is stopping),
/// else refuses: renaming a database needs it free.
async fn wait_for_no_sessions(admin: &mut AsyncPgConnection, name: &str) -> Result<()> {
    use super::catalog::pg_stat_activity as a;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n: i64 = a::table
            .filter(a::datname.eq(name))
            .filter(a::pid.ne(pg_backend_pid()))
            .count()
            .get_result(admin)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "{n} {} connected to {name}: stop the application first",
                if n == 1 { "session is" } else { "sessions are" }
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many digits a staging database's stamp has (`%Y%m%d%H%M%S`).
const STAMP_DIGITS: usize = 14;

/// `<name>_restoring_`, the name cut so that the stamp still fits PostgreSQL's 63 bytes:
/// the start of every staging database of `name`.
fn staging_stem(name: &str) -> String {
    let mut stem = with_suffix(name, &format!("_restoring_{}", "0".repeat(STAMP_DIGITS)));
    stem.truncate(stem.len() - STAMP_DIGITS);
    stem
}

/// Whether `datname` is `<stem><14 digits>`: a staging database of that stem.
fn is_staging(stem: &str, datname: &str) -> bool {
    datname.strip_prefix(stem).is_some_and(|stamp| {
        stamp.len() == STAMP_DIGITS && stamp.bytes().all(|b| b.is_ascii_digit())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restores_lock_space_is_rest_in_ascii() {
        assert_eq!(RESTORES, 1919251316);
        assert_eq!(&RESTORES.to_be_bytes(), b"rest");
    }

    #[test]
    fn names_are_cut_on_a_character_boundary_to_fit_63_bytes() {
        assert_eq!(with_suffix("app", "_x"), "app_x");
        let long = "é".repeat(40);
        let kept = with_suffix(&long, "_before_restore_20250101000000");
        assert!(kept.len() <= 63, "{}", kept.len());
        assert!(kept.ends_with("_before_restore_20250101000000"));
        assert!(kept.starts_with("éé"));
        assert_eq!(with_suffix(&"a".repeat(70), "_b").len(), 63);
    }

    #[test]
    fn a_staging_name_leaves_room_for_its_stamp() {
        assert_eq!(staging_stem("app"), "app_restoring_");
        let stem = staging_stem(&"ü".repeat(40));
        assert!(stem.ends_with("_restoring_"));
        assert!(stem.len() + STAMP_DIGITS <= 63, "{}", stem.len());
    }

    #[test]
    fn only_stem_and_fourteen_digits_is_a_staging_database() {
        let stem = "app_restoring_";
        assert!(is_staging(stem, "app_restoring_20250101000000"));
        assert!(
            !is_staging(stem, "app_restoring_2025010100000"),
            "13 digits"
        );
        assert!(
            !is_staging(stem, "app_restoring_202501010000000"),
            "15 digits"
        );
        assert!(!is_staging(stem, "app_restoring_2025010100000x"));
        assert!(!is_staging(stem, "app_restoring_"));
        assert!(!is_staging(stem, "other_restoring_20250101000000"));
        assert!(!is_staging(stem, "app"));
    }
}
