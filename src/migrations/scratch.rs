//! The scratch database `migrate test` and `migrate check` work on, created next to the
//! target one and dropped afterwards, never the real data; and the claims and sweep that
//! drop what a killed run left behind.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::fns::{hashtext, pg_advisory_unlock_pair, pg_try_advisory_lock_pair};
use crate::db::{self, DatabaseUrl, quote_ident};
use crate::{Error, Result};

/// A database that exists for one command and is dropped with it. While it exists, a
/// session on the server's `postgres` database holds an advisory lock named after it: a
/// later run drops a scratch database whose lock is free (its process is gone, however it
/// ended), and leaves one in use alone.
pub struct Scratch {
    /// URL of the scratch database.
    pub url: DatabaseUrl,
    /// The session holding the claim; also the one that drops the database.
    admin: AsyncPgConnection,
}

/// The first key of every scratch claim ("scra"), apart from the runner's own lock.
const CLAIMS: i32 = 0x7363_7261;

/// `<db>_scratch_<tag>`, cut from the front (on a character boundary) to PostgreSQL's 63
/// bytes, so the distinguishing end survives.
fn scratch_name(database: &str, tag: &str) -> String {
    let full = format!("{database}_scratch_{tag}");
    let mut cut = full.len().saturating_sub(63);
    while !full.is_char_boundary(cut) {
        cut += 1;
    }
    full[cut..].to_owned()
}

/// Whether `name` is one [`scratch_name`] gives for `database`: a tag of a pid, or a pid
/// and a counter, both in digits.
fn is_scratch_of(database: &str, name: &str) -> bool {
    let tag = name.rsplit_once("_scratch_").map_or("", |(_, tag)| tag);
    let digits = tag
        .split('_')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits && tag.split('_').count() <= 2 && scratch_name(database, tag) == name
}

impl Scratch {
    /// Creates `<db>_scratch_<pid>` on the server of `url`, after dropping the scratch
    /// databases of `url` that runs now gone left behind.
    pub async fn create(url: &DatabaseUrl) -> Result<Scratch> {
        let mut admin = db::connect(&url.with_database("postgres")).await?;
        sweep(&mut admin, url).await?;
        let pid = std::process::id();
        // The same pid on another machine may be using the plain name: take the next free.
        // A database of that name that is not marked as ours is someone's data: skip it.
        let mut n = 0;
        let name = loop {
            let tag = if n == 0 {
                pid.to_string()
            } else {
                format!("{pid}_{n}")
            };
            let name = scratch_name(&url.database(), &tag);
            n += 1;
            if !claim(&mut admin, &name).await? {
                continue;
            }
            match marked(&mut admin, &name).await? {
                // Left by an earlier run with this pid: its claim is free, we hold it now.
                Some(true) => db::drop_database(&mut admin, &name).await?,
                Some(false) => {
                    release(&mut admin, &name).await?;
                    continue;
                }
                None => {}
            }
            break name;
        };
        let mut scratch = Scratch {
            url: url.with_database(&name),
            admin,
        };
        db::ensure_database(&scratch.url).await?;
        // COMMENT ON is DDL: Diesel has no DSL for it.
        let mark = format!("COMMENT ON DATABASE {} IS '{MARK}'", quote_ident(&name));
        diesel::sql_query(mark).execute(&mut scratch.admin).await?;
        Ok(scratch)
    }

    /// Drops the scratch database (terminating its sessions) and lets go of its claim.
    pub async fn drop_now(mut self) -> Result<()> {
        let name = self.url.database();
        db::drop_database(&mut self.admin, &name).await?;
        release(&mut self.admin, &name).await
    }

    /// Runs `work`, then drops the scratch database, also when `stop` resolves first
    /// (Ctrl-C): the work is abandoned, its sessions terminated, and the result says so.
    pub async fn run<T>(
        self,
        work: impl Future<Output = Result<T>>,
        stop: impl Future<Output = ()>,
    ) -> Result<T> {
        let name = self.url.database();
        let interrupted = || Error::Interrupted(format!("the scratch database {name} was dropped"));
        let mut stop = std::pin::pin!(stop);
        let mut result = tokio::select! {
            biased;
            () = stop.as_mut() => Err(interrupted()),
            result = work => result,
        };
        // Ctrl-C reaches the whole process group: a pg_dump child can die of it, and fail
        // the work, before the signal is seen here. A failure that comes with a signal is
        // the interruption.
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, Error::Interrupted(_)))
        {
            let grace = std::time::Duration::from_millis(200);
            if tokio::time::timeout(grace, stop.as_mut()).await.is_ok() {
                result = Err(interrupted());
            }
        }
        if matches!(result, Err(Error::Interrupted(_))) {
            // A frozen server must not hold an operator's Ctrl-C for ever.
            let bound = std::time::Duration::from_secs(10);
            if tokio::time::timeout(bound, self.drop_now()).await.is_err() {
                return Err(Error::Interrupted(format!(
                    "the server did not answer within {bound:?}: the scratch database {name} is \
                     left, and the next `migrate test` or `check` drops it"
                )));
            }
            return result;
        }
        self.drop_now().await?;
        result
    }
}

/// The comment that marks a database as a scratch database of this tool: only marked
/// databases are ever dropped by name.
const MARK: &str = "migrate scratch database: dropped when its run ends, or by a later run once \
                    that run is gone";

/// Whether `name` exists (`None` if not) and carries [`MARK`].
async fn marked(admin: &mut AsyncPgConnection, name: &str) -> Result<Option<bool>> {
    #[derive(QueryableByName)]
    struct Comment {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        comment: Option<String>,
    }
    // shobj_description has no Diesel DSL.
    let found: Option<Comment> = diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment \
         FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .get_result(admin)
    .await
    .optional()?;
    Ok(found.map(|c| c.comment.as_deref() == Some(MARK)))
}

/// Takes the claim on `name` for this session; false when another session holds it.
async fn claim(admin: &mut AsyncPgConnection, name: &str) -> Result<bool> {
    Ok(
        diesel::select(pg_try_advisory_lock_pair(CLAIMS, hashtext(name)))
            .get_result(admin)
            .await?,
    )
}

/// Drops the scratch databases of `url` whose claim is free: their runs are gone.
async fn sweep(admin: &mut AsyncPgConnection, url: &DatabaseUrl) -> Result<()> {
    diesel::table! {
        /// The catalog of databases, for their names.
        pg_database (datname) {
            datname -> Text,
        }
    }
    let names: Vec<String> = pg_database::table
        .select(pg_database::datname)
        .filter(pg_database::datname.like("%\\_scratch\\_%"))
        .load(admin)
        .await?;
    let database = url.database();
    for name in names.into_iter().filter(|n| is_scratch_of(&database, n)) {
        if !claim(admin, &name).await? {
            continue;
        }
        if marked(admin, &name).await? == Some(true) {
            tracing::warn!(database = %name, "dropping a scratch database left by a run that is gone");
            db::drop_database(admin, &name).await?;
        }
        release(admin, &name).await?;
    }
    Ok(())
}

/// Lets go of this session's claim on `name`.
async fn release(admin: &mut AsyncPgConnection, name: &str) -> Result<()> {
    diesel::select(pg_advisory_unlock_pair(CLAIMS, hashtext(name)))
        .execute(admin)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_scratch_name_loses_its_front_not_its_tag() {
        assert_eq!(scratch_name("app", "42"), "app_scratch_42");
        let long = "é".repeat(40);
        let name = scratch_name(&long, "4242_1");
        assert!(
            name.len() <= 63 && name.ends_with("_scratch_4242_1"),
            "{name}"
        );
        assert!(name.starts_with('é'), "cut on a character boundary: {name}");
    }

    #[test]
    fn only_names_this_tool_gives_a_database_are_swept() {
        assert!(is_scratch_of("app", "app_scratch_42"));
        assert!(is_scratch_of("app", "app_scratch_42_3"));
        let long = "d".repeat(70);
        assert!(is_scratch_of(&long, &scratch_name(&long, "7")));
        for name in [
            "app_scratch_",
            "app_scratch_x1",
            "app_scratch_1_2_3",
            "app_scratch_1__2",
            "other_scratch_42",
            "my_app_scratch_42",
        ] {
            assert!(!is_scratch_of("app", name), "{name}");
        }
    }
}
