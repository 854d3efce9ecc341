//! The runner: diesel_migrations' `MigrationHarness` applies, reverts and records migrations;
//! this layer adds what it lacks. One connection holds a session advisory lock (`lock`)
//! while the harness runs each migration as a guarded step (`step`), which sets
//! `lock_timeout` and `statement_timeout`, runs the SQL statement by statement so a failure
//! names its statement, and records a checksum in `migrate.checksums` in the harness's
//! transaction. `target` says which migrations a run takes, `status` where the database
//! stands, `apply` runs the steps with retries, `dirty` how to repair one that failed
//! outside a transaction.
//!
//! The harness is synchronous: the work runs on a blocking thread, on the pooled driver's
//! connection wrapped by diesel-async's `AsyncConnectionWrapper` (still no libpq).

mod apply;
mod dirty;
mod failure;
mod lock;
mod status;
mod step;
mod target;

use std::time::Duration;

use diesel::dsl::{exists as exists_in, not};
use diesel::prelude::*;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

pub use lock::LOCK_KEY;
pub use status::{Applied, HISTORY_DDL, Problem, State, Status};
pub use target::{Direction, Target, Version};

use self::dirty::refuse_dirty;
use self::failure::Failure;
use self::lock::{concurrent_timeouts_sql, refuse_standby, timeouts_sql};
use self::status::{Mark, diesel_history, sums};
use self::step::{Step, write_sum};
use self::target::{find, select_down, select_up};
use super::source::{self, Migration};
use crate::db::fns::to_regclass;
use crate::db::{self, DatabaseUrl};
use crate::{Error, Result};

/// diesel's synchronous API over our async connection: what `MigrationHarness` runs on.
type Conn = AsyncConnectionWrapper<AsyncPgConnection>;

/// How the runner behaves; defaults suit a production deploy.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SET LOCAL lock_timeout` for each migration: how long DDL may queue behind other locks.
    pub lock_timeout: Duration,
    /// `SET LOCAL statement_timeout` for each migration; zero means none.
    pub statement_timeout: Duration,
    /// `lock_timeout` for a migration outside a transaction (`CREATE INDEX CONCURRENTLY`);
    /// zero means none. CIC waits for every transaction older than itself, and its lock
    /// queues no writers, so the short DDL timeout above would only kill it half-built.
    pub concurrent_lock_timeout: Duration,
    /// `statement_timeout` for a migration outside a transaction; zero means none: an index
    /// build takes as long as its table needs.
    pub concurrent_statement_timeout: Duration,
    /// Retries of a migration that hit its lock timeout, with doubling backoff.
    pub lock_retries: u32,
    /// How long to wait for another migrator's advisory lock.
    pub wait: Duration,
    /// Apply a pending migration older than the newest applied one (diesel does silently).
    pub allow_out_of_order: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(300),
            concurrent_lock_timeout: Duration::ZERO,
            concurrent_statement_timeout: Duration::ZERO,
            lock_retries: 3,
            wait: Duration::from_secs(60),
            allow_out_of_order: false,
        }
    }
}

/// A set of migrations and the settings to run them with.
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
    /// Timeouts, retries and waiting.
    pub config: Config,
}

impl Migrator {
    /// The migrations compiled into this binary ([`MIGRATIONS`](super::MIGRATIONS)).
    pub fn embedded() -> Result<Self> {
        Ok(Migrator::new(source::read_all(&super::MIGRATIONS)?))
    }

    /// The migrations in a folder on disk, `migrate test`'s fixtures included.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        Ok(Migrator::new(source::from_dir(dir)?))
    }

    /// Adds `migrate test`'s fixtures, read from the migrations folder `dir`.
    pub fn with_fixtures_from(mut self, dir: &std::path::Path) -> Self {
        source::add_fixtures(&mut self.migrations, dir);
        self
    }

    /// A migrator over these migrations (sorted by version), default settings.
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by(|a, b| a.version.cmp(&b.version));
        let config = Config::default();
        Migrator { migrations, config }
    }

    /// The migrations, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    fn find(&self, version: &str) -> Option<&Migration> {
        find(&self.migrations, version)
    }

    /// Where the database stands. Reads without creating anything: `current` and `history`
    /// must work for a role that may not create tables.
    pub async fn status(&self, url: &DatabaseUrl) -> Result<Status> {
        let this = self.clone();
        blocking(url, move |conn, _| this.status_on(conn)).await
    }

    /// [`Migrator::status`] over an open session, handed back with the answer (`None` when
    /// the thread reading it failed): for a caller that asks often, `/readyz`, and must not
    /// open a session, nor probe for a pooler, each time.
    pub async fn status_over(
        &self,
        conn: AsyncPgConnection,
    ) -> (Result<Status>, Option<AsyncPgConnection>) {
        let this = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut conn = Conn::from(conn);
            (this.status_on(&mut conn), conn.into_inner())
        });
        match read.await {
            Ok((status, conn)) => (status, Some(conn)),
            Err(e) => (
                Err(Error::Migration(format!(
                    "the migration thread failed: {e}"
                ))),
                None,
            ),
        }
    }

    /// What a downgrade to `target` would revert from `status`, newest first; refuses
    /// targets that would revert more than they name. `migrate downgrade` prints it first.
    pub fn plan_down(&self, status: &Status, target: &Target) -> Result<Vec<Migration>> {
        select_down(&self.migrations, &status.applied, target)
    }

    /// Applies pending migrations up to `target`; returns the folders applied. Takes no lock
    /// when nothing is pending, so many instances can start at once.
    pub async fn upgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(url, move |conn, url| {
            // Even with nothing pending: a deploy pointed at a standby is told so.
            refuse_standby(conn, url)?;
            let all = &this.migrations;
            let status = this.status_on(conn)?;
            // A dirty mark is refused before "nothing to apply": the schema is not at any
            // version, whatever the history table says.
            refuse_dirty(conn, &status)?;
            if select_up(all, &status.pending, &target)?.is_empty() {
                return Ok(Vec::new());
            }
            this.locked(conn, url, |conn| {
                // Re-read under the lock: another migrator may have done the work meanwhile.
                let pending = conn
                    .pending_migrations(this.steps(Step::Run))
                    .map_err(harness_error)?;
                let pending: Vec<Migration> = (pending.iter())
                    .filter_map(|m| this.find(&m.name().version().to_string()).cloned())
                    .collect();
                let chosen = select_up(all, &pending, &target)?;
                let newest = conn.applied_migrations().map_err(harness_error)?;
                if let (Some(newest), false) = (newest.first(), this.config.allow_out_of_order) {
                    let newest = newest.to_string();
                    if let Some(old) = chosen.iter().find(|m| m.version < newest) {
                        return Err(Error::Migration(format!(
                            "{} is older than the applied {newest}: rename it to a newer \
                             version, or pass --allow-out-of-order",
                            old.folder
                        )));
                    }
                }
                this.apply_all(conn, url, chosen, Direction::Up)
            })
        })
        .await
    }

    /// Reverts applied migrations down to `target`; returns the folders reverted.
    pub async fn downgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(url, move |conn, url| {
            refuse_standby(conn, url)?;
            // Checked before the lock too, so a refused target writes nothing at all.
            this.plan_down(&this.status_on(conn)?, &target)?;
            this.locked(conn, url, |conn| {
                let chosen = this.plan_down(&this.status_on(conn)?, &target)?;
                this.apply_all(conn, url, &chosen, Direction::Down)
            })
        })
        .await
    }

    /// Records `version` (a [`Version`] or `base`) and everything before it as applied, and
    /// everything after as not, without running any SQL (Alembic's `stamp`): the harness's own
    /// bookkeeping, with steps that run nothing. Rows already right keep their times and
    /// checksums; dirty marks clear.
    pub async fn stamp(&self, url: &DatabaseUrl, version: &str) -> Result<()> {
        // `base` keeps nothing; a version keeps itself and what sorts before it.
        let upto = match (version.trim(), Version::parse(version)) {
            ("base", _) => None,
            (_, Some(v)) => Some(v.find_in(&self.migrations)?.version.clone()),
            (text, None) => {
                return Err(Error::Migration(format!(
                    "{text:?} is not a version: use base, a version or its folder name"
                )));
            }
        };
        let keep = move |v: &str| upto.as_deref().is_some_and(|upto| v <= upto);
        let this = self.clone();
        blocking(url, move |conn, url| {
            refuse_standby(conn, url)?;
            this.locked(conn, url, |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let status = this.status_on(conn)?;
                    for a in status.applied.iter().filter(|a| !keep(&a.version)) {
                        let m = (this.find(&a.version).cloned())
                            .unwrap_or_else(|| Migration::unknown(&a.version));
                        let step = this.step(m, Step::Stamp);
                        conn.revert_migration(&step).map_err(harness_error)?;
                    }
                    for m in status.pending.into_iter().filter(|m| keep(&m.version)) {
                        let step = this.step(m, Step::Stamp);
                        conn.run_migration(&step).map_err(harness_error)?;
                    }
                    // Kept, but applied by another tool: its files, as they are now, are
                    // what `verify` will compare with from here on.
                    for a in status.applied.iter().filter(|a| keep(&a.version)) {
                        if let (Some(m), State::Unrecorded) = (this.find(&a.version), a.state) {
                            write_sum(conn, m, Mark::Applied, None)?;
                        }
                    }
                    // A dirty mark above the stamp belongs to nothing applied any more.
                    let recorded =
                        diesel_history::table.filter(diesel_history::version.eq(sums::version));
                    diesel::delete(sums::table.filter(not(exists_in(recorded)))).execute(conn)?;
                    diesel::update(sums::table.filter(sums::state.eq(Mark::Dirty)))
                        .set(sums::state.eq(Mark::Applied))
                        .execute(conn)?;
                    Ok(())
                })
            })
        })
        .await
    }

    /// The SQL an upgrade (`Up`) or downgrade (`Down`) to `target` would run, without
    /// running it: what `--sql` prints.
    pub async fn preview(
        &self,
        url: &DatabaseUrl,
        way: Direction,
        target: Target,
    ) -> Result<String> {
        let this = self.clone();
        blocking(url, move |conn, _| {
            let status = this.status_on(conn)?;
            let chosen = match way {
                Direction::Up => select_up(&this.migrations, &status.pending, &target)?.to_vec(),
                Direction::Down => this.plan_down(&status, &target)?,
            };
            let scripts: Vec<String> = chosen.iter().map(|m| this.script(m, way)).collect();
            Ok(scripts.join("\n"))
        })
        .await
    }

    fn script(&self, m: &Migration, way: Direction) -> String {
        // A literal in printed SQL: a quote in a folder name must not end it.
        let v = m.version.replace('\'', "''");
        let (file, sql, bookkeeping) = match way {
            Direction::Up => (
                "up.sql",
                m.up.as_str(),
                format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{v}');"),
            ),
            Direction::Down => (
                "down.sql",
                m.down.as_deref().unwrap_or("-- (no down.sql)"),
                format!("DELETE FROM __diesel_schema_migrations WHERE version = '{v}';"),
            ),
        };
        let (begin, end) = if m.run_in_transaction {
            ("BEGIN;\n", "COMMIT;\n")
        } else {
            ("", "")
        };
        let timeouts = match m.run_in_transaction {
            true => timeouts_sql(&self.config, "SET LOCAL"),
            false => concurrent_timeouts_sql(&self.config),
        };
        let folder = &m.folder;
        format!(
            "-- {folder}/{file}\n{begin}{timeouts}{}\n{bookkeeping}\n{end}",
            sql.trim_end()
        )
    }
}

/// Whether a table of this (optionally schema-qualified) name exists.
fn exists(conn: &mut Conn, table: &str) -> Result<bool> {
    Ok(diesel::select(to_regclass(table).is_not_null()).get_result(conn)?)
}

/// Runs `work` on a blocking thread, on a fresh connection to `url` that diesel's synchronous
/// API (and so `MigrationHarness`) can use.
async fn blocking<T: Send + 'static>(
    url: &DatabaseUrl,
    work: impl FnOnce(&mut Conn, &DatabaseUrl) -> Result<T> + Send + 'static,
) -> Result<T> {
    let run = async {
        db::ensure_session(url).await?;
        let mut conn = db::connect(url).await?;
        // A migrate killed mid-statement (Ctrl-C, kill -9, a closed terminal) must not leave
        // its backend building an index or holding locks for nobody: from PostgreSQL 14 the
        // server checks every second that its client is still there.
        use diesel_async::SimpleAsyncConnection;
        conn.batch_execute(
            "SELECT set_config('client_connection_check_interval', '1s', false) \
             WHERE current_setting('server_version_num')::int >= 140000",
        )
        .await?;
        let url = url.clone();
        tokio::task::spawn_blocking(move || work(&mut Conn::from(conn), &url))
            .await
            .map_err(|e| Error::Migration(format!("the migration thread failed: {e}")))?
    };
    run.await.map_err(|e| crossed_sessions(url, e))
}

/// A pooler the probe did not catch still shows: a statement prepared on one server session
/// and run on another ("prepared statement \"s0\" does not exist", or "already exists"
/// where another client's statement of that name sits). Said as what it is. Read from the
/// text, because diesel-async keeps the SQLSTATE (26000, 42P05) to itself.
fn crossed_sessions(url: &DatabaseUrl, err: Error) -> Error {
    let text = err.to_string();
    let prepared = text.contains("prepared statement \"");
    if prepared && (text.contains("does not exist") || text.contains("already exists")) {
        return db::transaction_pooler(url);
    }
    err
}

/// The harness's errors are boxed; ours come back out with their text.
fn harness_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Failure::from_harness(e).error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_shows_each_step_as_the_runner_runs_it() {
        let mut m = Migration::unknown("20240101000000");
        (m.folder, m.up) = (
            "2024-01-01-000000_it's".into(),
            "CREATE TABLE t ();\n\n".into(),
        );
        let migrator = Migrator::new(vec![m.clone()]);
        assert_eq!(
            migrator.script(&m, Direction::Up),
            "-- 2024-01-01-000000_it's/up.sql\nBEGIN;\n\
             SET LOCAL lock_timeout = '5000ms';\nSET LOCAL statement_timeout = '300000ms';\n\
             CREATE TABLE t ();\n\
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101000000');\n\
             COMMIT;\n"
        );
        m.run_in_transaction = false;
        assert_eq!(
            migrator.script(&m, Direction::Down),
            "-- 2024-01-01-000000_it's/down.sql\n\
             SET lock_timeout = '0ms';\nSET statement_timeout = '0ms';\n-- (no down.sql)\n\
             DELETE FROM __diesel_schema_migrations WHERE version = '20240101000000';\n"
        );
    }
}
