//! The runner: diesel_migrations' `MigrationHarness` applies, reverts and records migrations;
//! this layer adds what it lacks. One connection holds a session advisory lock while the
//! harness runs each migration as a [`Guarded`] step, which sets `lock_timeout` and
//! `statement_timeout`, runs the SQL statement by statement so a failure names its statement,
//! and records a checksum in `migrate.checksums` in the harness's transaction.
//!
//! The harness is synchronous: the work runs on a blocking thread, on the pooled driver's
//! connection wrapped by diesel-async's `AsyncConnectionWrapper` (still no libpq).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::connection::{BoxableConnection, SimpleConnection};
use diesel::migration::{self, MigrationMetadata, MigrationName, MigrationSource};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;
use serde::Serialize;

use super::source::{self, Migration, Statement, statements};
use crate::db::fns::{pg_advisory_lock, pg_advisory_unlock, pg_try_advisory_lock, to_regclass};
use crate::db::{self, DatabaseUrl};
use crate::{Error, Result};

/// diesel's synchronous API over our async connection: what `MigrationHarness` runs on.
type Conn = AsyncConnectionWrapper<AsyncPgConnection>;

/// The advisory lock every migrate run takes. Any constant works (advisory locks are per
/// database); all migrators must agree on it.
pub const LOCK_KEY: i64 = 0x006d_6967_7261_7465;

/// Creates the migration history tables if missing: diesel_cli's version table and our
/// checksums beside it. Idempotent.
pub const HISTORY_DDL: &str = "
CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
    version VARCHAR(50) PRIMARY KEY NOT NULL,
    run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE SCHEMA IF NOT EXISTS migrate;
CREATE TABLE IF NOT EXISTS migrate.checksums (
    version VARCHAR(50) PRIMARY KEY,
    folder TEXT NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms BIGINT
);";

diesel::table! {
    /// diesel's version table, read for `run_on` (the harness only reports versions).
    #[sql_name = "__diesel_schema_migrations"]
    diesel_history (version) {
        version -> VarChar,
        run_on -> Timestamp,
    }
}

diesel::table! {
    /// Our side table, `migrate.checksums`: what diesel does not record.
    #[sql_name = "checksums"]
    migrate.sums (version) {
        version -> VarChar,
        folder -> Text,
        checksum -> Text,
        state -> Text,
        applied_at -> Timestamptz,
        duration_ms -> Nullable<BigInt>,
    }
}

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

/// How far to upgrade or downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every pending migration.
    Head,
    /// Nothing applied (downgrade only).
    Base,
    /// This many steps (`+N` up, `-N` down).
    Steps(usize),
    /// Up to and including this version (up), or down to and keeping it (down).
    Version(String),
}

impl Target {
    /// Parses `head`, `base`, `+N` (upgrade), `-N` (downgrade) or a version (dashes allowed).
    pub fn parse(text: &str, way: Direction) -> Result<Target> {
        let text = text.trim();
        let sign = if way == Direction::Up { '+' } else { '-' };
        let steps = text
            .strip_prefix(sign)
            .and_then(|n| n.parse::<usize>().ok());
        match (text, steps) {
            ("head", _) => Ok(Target::Head),
            ("base", _) => Ok(Target::Base),
            (_, Some(n)) => Ok(Target::Steps(n)),
            _ if text.starts_with(['+', '-']) && text[1..].parse::<usize>().is_ok() => Err(
                Error::Migration(format!("{text:?}: steps go {sign}N in this direction")),
            ),
            _ if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                Ok(Target::Version(text.replace('-', "")))
            }
            _ => Err(Error::Migration(format!(
                "{text:?} is not a target: use head, base, {sign}N or a version"
            ))),
        }
    }
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// up.sql.
    Up,
    /// down.sql.
    Down,
}

/// One applied migration, as the database records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// Diesel's version.
    pub version: String,
    /// The folder name, when known (recorded by us, or found among the files).
    pub folder: Option<String>,
    /// When diesel's table says it ran (UTC).
    pub run_on: NaiveDateTime,
    /// How long it took, when this runner applied it.
    pub duration_ms: Option<i64>,
    /// `ok`, `changed` (file differs), `missing` (no such file), `unrecorded` (applied by
    /// another tool, no checksum) or `dirty` (a non-transactional migration that failed).
    pub state: String,
}

/// What `verify` finds wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// An applied migration's files changed since it ran.
    #[error("{folder}: changed after it was applied")]
    Changed {
        /// The migration's folder name.
        folder: String,
    },
    /// An applied migration has no folder any more.
    #[error("{version}: applied, but its folder is gone")]
    Missing {
        /// The version recorded in the history table.
        version: String,
    },
    /// A pending migration sorts before the newest applied one.
    #[error("{folder}: pending, but older than the applied {newest_applied}")]
    OutOfOrder {
        /// The pending migration's folder name.
        folder: String,
        /// The newest applied version, which sorts after it.
        newest_applied: String,
    },
    /// An applied migration has no checksum row (applied by another tool, or the row was
    /// deleted): nothing says its files are what ran.
    #[error("{version}: applied, but no checksum was recorded (`migrate stamp` records one)")]
    Unrecorded {
        /// The version recorded in the history table.
        version: String,
    },
    /// A checksum row whose version is not applied: the two tables disagree.
    #[error("{version}: has a checksum, but is not applied (`migrate stamp` clears it)")]
    Orphaned {
        /// The version of the checksum row.
        version: String,
    },
    /// A non-transactional migration failed part-way: fix the database, then `stamp`.
    #[error("{folder}: failed part-way outside a transaction (dirty)")]
    Dirty {
        /// The migration's folder name.
        folder: String,
    },
}

/// Where a database stands: what it has applied, what is left, what failed part-way.
#[derive(Debug, Clone)]
pub struct Status {
    /// Applied migrations, oldest first, each with its checksum state.
    pub applied: Vec<Applied>,
    /// Migrations not applied yet, in version order.
    pub pending: Vec<Migration>,
    /// Folders of migrations that failed part-way outside a transaction.
    pub dirty: Vec<String>,
    /// Versions with an `applied` checksum row but no row in diesel's history table.
    pub orphaned: Vec<String>,
}

impl Status {
    /// The newest applied version, if any.
    pub fn newest(&self) -> Option<&str> {
        self.applied.last().map(|a| a.version.as_str())
    }

    /// Everything `verify` reports: changed, missing, out-of-order and dirty migrations.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self
            .applied
            .iter()
            .filter_map(|a| {
                let folder = a.folder.clone().unwrap_or_else(|| a.version.clone());
                match a.state.as_str() {
                    "changed" => Some(Problem::Changed { folder }),
                    "missing" => Some(Problem::Missing {
                        version: a.version.clone(),
                    }),
                    "unrecorded" => Some(Problem::Unrecorded {
                        version: a.version.clone(),
                    }),
                    _ => None,
                }
            })
            .collect();
        problems.extend(self.dirty.iter().map(|folder| Problem::Dirty {
            folder: folder.clone(),
        }));
        problems.extend(self.orphaned.iter().map(|version| Problem::Orphaned {
            version: version.clone(),
        }));
        if let Some(newest) = self.newest() {
            problems.extend(
                self.pending
                    .iter()
                    .filter(|m| m.version.as_str() < newest)
                    .map(|m| Problem::OutOfOrder {
                        folder: m.folder.clone(),
                        newest_applied: newest.to_owned(),
                    }),
            );
        }
        problems
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
        self.migrations.iter().find(|m| m.version == version)
    }

    /// Where the database stands. Reads without creating anything: `current` and `history`
    /// must work for a role that may not create tables.
    pub async fn status(&self, url: &DatabaseUrl) -> Result<Status> {
        let this = self.clone();
        blocking(url, move |conn, _| this.status_on(conn)).await
    }

    fn status_on(&self, conn: &mut Conn) -> Result<Status> {
        let rows: Vec<(String, NaiveDateTime)> = if exists(conn, "__diesel_schema_migrations")? {
            diesel_history::table
                .select((diesel_history::version, diesel_history::run_on))
                .order(diesel_history::version)
                .load(conn)?
        } else {
            Vec::new()
        };
        let with_sums = exists(conn, "migrate.checksums")?;
        let sums: BTreeMap<String, (String, String, String, Option<i64>)> = if with_sums {
            use self::sums::dsl::*;
            sums.select((version, (folder, checksum, state, duration_ms)))
                .load(conn)?
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
        let applied: Vec<Applied> = rows
            .into_iter()
            .map(|(version, run_on)| {
                let file = self.find(&version);
                let sum = sums.get(&version);
                let state = match (file, sum) {
                    (_, Some((_, _, s, _))) if s == "dirty" => "dirty",
                    (None, _) => "missing",
                    (Some(_), None) => "unrecorded",
                    (Some(m), Some((_, c, _, _))) if &m.checksum() == c => "ok",
                    (Some(_), Some(_)) => "changed",
                };
                Applied {
                    folder: sum.map(|s| s.0.clone()).or(file.map(|m| m.folder.clone())),
                    duration_ms: sum.and_then(|s| s.3),
                    state: state.to_owned(),
                    version,
                    run_on,
                }
            })
            .collect();
        let pending = (self.migrations.iter())
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .cloned()
            .collect();
        // A dirty row has no history row by design (the migration never finished).
        let orphaned = (sums.iter())
            .filter(|(v, s)| s.2 != "dirty" && !applied.iter().any(|a| &a.version == *v))
            .map(|(v, _)| v.clone())
            .collect();
        let dirty = sums
            .into_values()
            .filter(|s| s.2 == "dirty")
            .map(|s| s.0)
            .collect();
        Ok(Status {
            applied,
            pending,
            dirty,
            orphaned,
        })
    }

    /// The pending migrations `target` selects, oldest first.
    fn select_up<'a>(&self, pending: &'a [Migration], target: &Target) -> Result<&'a [Migration]> {
        match target {
            Target::Head => Ok(pending),
            Target::Steps(n) => Ok(&pending[..pending.len().min(*n)]),
            Target::Version(v) if self.find(v).is_none() => {
                Err(Error::Migration(format!("no migration has version {v}")))
            }
            Target::Version(v) => Ok(&pending[..pending.partition_point(|m| &m.version <= v)]),
            Target::Base => Err(Error::Migration(
                "upgrade to base makes no sense: use downgrade base".into(),
            )),
        }
    }

    /// What a downgrade to `target` would revert from `status`, newest first; refuses
    /// targets that would revert more than they name. `migrate downgrade` prints it first.
    pub fn plan_down(&self, status: &Status, target: &Target) -> Result<Vec<Migration>> {
        self.select_down(&status.applied, target)
    }

    /// The applied migrations `target` selects for reverting, newest first. Never more than
    /// asked: reverting everything takes the explicit `base`.
    fn select_down(&self, applied: &[Applied], target: &Target) -> Result<Vec<Migration>> {
        let refuse = |why: String| Err(Error::Migration(why));
        let current = applied
            .last()
            .map_or("base (nothing applied)", |a| &a.version);
        let mut chosen: Vec<&Applied> = applied.iter().rev().collect();
        match target {
            Target::Base => {}
            Target::Head => {
                return refuse(format!(
                    "downgrade head would revert nothing it names: the current version is \
                     {current}; use -N, a version below it, or base to revert everything"
                ));
            }
            Target::Steps(n) if *n > applied.len() => {
                return refuse(format!(
                    "-{n} asks for more than is applied ({}); use base to revert everything",
                    applied.len()
                ));
            }
            Target::Steps(n) => chosen.truncate(*n),
            Target::Version(v) if v.as_str() >= current || applied.is_empty() => {
                return refuse(format!("{v} is not below the current version {current}"));
            }
            Target::Version(v) if !applied.iter().any(|a| &a.version == v) => {
                return refuse(format!("version {v} is not applied"));
            }
            Target::Version(v) => chosen.retain(|a| &a.version > v),
        }
        (chosen.into_iter())
            .map(|a| {
                self.find(&a.version).cloned().ok_or_else(|| {
                    let v = &a.version;
                    Error::Migration(format!(
                        "{v}: applied, but its folder is gone; cannot revert it"
                    ))
                })
            })
            .collect()
    }

    /// Applies pending migrations up to `target`; returns the folders applied. Takes no lock
    /// when nothing is pending, so many instances can start at once.
    pub async fn upgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(url, move |conn, url| {
            let status = this.status_on(conn)?;
            // A dirty mark is refused before "nothing to apply": the schema is not at any
            // version, whatever the history table says.
            refuse_dirty(conn, &status)?;
            if this.select_up(&status.pending, &target)?.is_empty() {
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
                let chosen = this.select_up(&pending, &target)?;
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
            // Checked before the lock too, so a refused target writes nothing at all.
            this.select_down(&this.status_on(conn)?.applied, &target)?;
            this.locked(conn, url, |conn| {
                let chosen = this.select_down(&this.status_on(conn)?.applied, &target)?;
                this.apply_all(conn, url, &chosen, Direction::Down)
            })
        })
        .await
    }

    /// Records `version` and everything before it as applied, and everything after as not,
    /// without running any SQL (Alembic's `stamp`): the harness's own bookkeeping, with steps
    /// that run nothing. Rows already right keep their times and checksums; dirty marks clear.
    pub async fn stamp(&self, url: &DatabaseUrl, version: &str) -> Result<()> {
        let version = version.replace('-', "");
        if version != "base" && self.find(&version).is_none() {
            return Err(Error::Migration(format!(
                "no migration has version {version}"
            )));
        }
        let keep = move |v: &str| version != "base" && v <= version.as_str();
        let this = self.clone();
        blocking(url, move |conn, url| {
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
                        if let (Some(m), "unrecorded") = (this.find(&a.version), a.state.as_str()) {
                            write_sum(conn, m, "applied", None)?;
                        }
                    }
                    // A dirty mark above the stamp belongs to nothing applied any more.
                    conn.batch_execute(
                        "DELETE FROM migrate.checksums c WHERE NOT EXISTS \
                         (SELECT FROM __diesel_schema_migrations d WHERE d.version = c.version); \
                         UPDATE migrate.checksums SET state = 'applied' WHERE state = 'dirty';",
                    )?;
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
                Direction::Up => this.select_up(&status.pending, &target)?.to_vec(),
                Direction::Down => this.select_down(&status.applied, &target)?,
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

    /// Every migration as the harness should run it.
    fn steps(&self, kind: Step) -> Steps {
        Steps(
            self.migrations
                .iter()
                .map(|m| self.step(m.clone(), kind))
                .collect(),
        )
    }

    fn step(&self, migration: Migration, kind: Step) -> Guarded {
        let config = self.config.clone();
        Guarded {
            migration,
            config,
            kind,
            failed: Default::default(),
        }
    }

    /// Runs `work` holding the session advisory lock, waiting up to `config.wait` for it.
    /// Every locked path first creates the history tables.
    fn locked<T>(
        &self,
        conn: &mut Conn,
        url: &DatabaseUrl,
        work: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let asked = Instant::now();
        let deadline = asked + self.config.wait;
        let mut pause = Duration::from_millis(50);
        tracing::debug!(key = LOCK_KEY, "taking the migration lock");
        while !diesel::select(pg_try_advisory_lock(LOCK_KEY)).get_result::<bool>(conn)? {
            tracing::info!(
                waited_ms = asked.elapsed().as_millis() as u64,
                "another run holds the migration lock: waiting"
            );
            if Instant::now() >= deadline {
                return Err(Error::Migration(format!(
                    "another migration run holds the lock on {url}; gave up after {:?} \
                     (--wait to change)",
                    self.config.wait
                )));
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let waited_ms = asked.elapsed().as_millis() as u64;
        tracing::debug!(waited_ms, "migration lock taken");
        let result = conn
            .batch_execute(HISTORY_DDL)
            .map_err(Error::from)
            .and_then(|()| work(conn));
        // Closing the connection would release it too; this makes the release prompt.
        let _ = diesel::select(pg_advisory_unlock(LOCK_KEY)).execute(conn);
        tracing::debug!("migration lock released");
        result
    }

    /// Has the harness run (or revert) each of `chosen` in turn; returns their folders.
    /// Refuses to start while a migration is dirty.
    fn apply_all(
        &self,
        conn: &mut Conn,
        url: &DatabaseUrl,
        chosen: &[Migration],
        way: Direction,
    ) -> Result<Vec<String>> {
        let status = self.status_on(conn)?;
        refuse_dirty(conn, &status)?;
        let mut lock_text = None;
        (chosen.iter())
            .map(|m| {
                self.apply(conn, url, &mut lock_text, m, way)
                    .map(|()| m.folder.clone())
            })
            .collect()
    }

    /// Has the harness run (or revert) `m` as the next step, retrying a transactional
    /// migration that hit its lock timeout. `lock_text` caches [`lock_timeout_text`].
    fn apply(
        &self,
        conn: &mut Conn,
        url: &DatabaseUrl,
        lock_text: &mut Option<String>,
        m: &Migration,
        way: Direction,
    ) -> Result<()> {
        let mut pause = Duration::from_millis(200);
        // The step chosen, not the harness's idea of "next": they differ when another
        // migration is pending below it (out of order) or was applied meanwhile.
        let step = self.step(m.clone(), Step::Run);
        // A file that cannot be split is refused here, before a non-transactional step
        // marks itself dirty.
        parse(m, way)?;
        // What was INVALID before: a failure's repair names only the indexes it left.
        let invalid_before: Vec<String> = match m.run_in_transaction {
            true => Vec::new(),
            false => invalid_indexes()
                .load::<Invalid>(conn)?
                .into_iter()
                .map(|i| i.name)
                .collect(),
        };
        for attempt in 1.. {
            let started = Instant::now();
            let done = match way {
                Direction::Up => conn.run_migration(&step),
                Direction::Down => conn.revert_migration(&step),
            };
            let failure = match done.map_err(harness_error) {
                // Outside a transaction the step marked itself dirty; the harness has now
                // recorded (or forgotten) the version, so it is clean again.
                Ok(_) => {
                    if !m.run_in_transaction {
                        record(conn, m, way, started)?;
                    }
                    applied(m, way, started);
                    return Ok(());
                }
                Err(e) => {
                    let own = step.failed.lock().ok().and_then(|mut f| f.take());
                    own.map_or(e, Error::Migration)
                }
            };
            if !m.run_in_transaction {
                let previous = (self.migrations.iter().rev())
                    .find(|p| p.version < m.version)
                    .map_or("base", |p| p.version.as_str());
                let stamp = match way {
                    Direction::Up => {
                        format!("migrate stamp {previous}, then migrate upgrade again")
                    }
                    Direction::Down => format!(
                        "migrate stamp {} if it is still applied, else migrate stamp {previous}",
                        m.version
                    ),
                };
                return Err(left_dirty(conn, url, m, failure, &invalid_before, stamp));
            }
            let retry = attempt <= self.config.lock_retries;
            let Error::Migration(msg) = &failure else {
                return Err(failure);
            };
            // A probe that fails (the server went away with this session) or does not time
            // out says nothing about this failure: report the failure itself.
            let timed_out =
                retry && lock_timeout_text(url, lock_text).is_ok_and(|text| msg.contains(text));
            if !timed_out {
                return Err(failure);
            }
            tracing::warn!(migration = %m.folder, attempt, pause_ms = pause.as_millis() as u64,
                "{}: lock timeout, retry {attempt} in {pause:?}", m.folder);
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the retry loop returns")
    }
}

/// The server's own message for a lock timeout (SQLSTATE 55P03), in the language its
/// sessions speak. diesel-async reports no SQLSTATE for it, and English text would not match
/// under another `lc_messages`; so a second session provokes one, on the advisory lock this
/// run holds, and keeps its message. Asked once per run, and only after a failure.
fn lock_timeout_text<'a>(url: &DatabaseUrl, cached: &'a mut Option<String>) -> Result<&'a str> {
    if cached.is_none() {
        let url = url.clone();
        let text = tokio::runtime::Handle::current().block_on(async move {
            use diesel_async::SimpleAsyncConnection;
            let mut probe = db::connect(&url).await?;
            probe.batch_execute("SET lock_timeout = '1ms'").await?;
            let query = diesel::select(pg_advisory_lock(LOCK_KEY));
            let waited = diesel_async::RunQueryDsl::execute(query, &mut probe).await;
            match waited {
                Err(diesel::result::Error::DatabaseError(_, info)) => Ok(info.message().to_owned()),
                other => Err(Error::Migration(format!(
                    "the lock-timeout probe did not time out: {other:?}"
                ))),
            }
        })?;
        *cached = Some(text);
    }
    Ok(cached.as_deref().unwrap_or_default())
}

fn exists(conn: &mut Conn, table: &str) -> Result<bool> {
    Ok(diesel::select(to_regclass(table).is_not_null()).get_result(conn)?)
}

/// The event for a migration applied or reverted, with how long it took.
fn applied(m: &Migration, way: Direction, started: Instant) {
    let ms = started.elapsed().as_millis() as u64;
    match way {
        Direction::Up => tracing::info!(migration = %m.folder, ms, "applied"),
        Direction::Down => tracing::info!(migration = %m.folder, ms, "reverted"),
    }
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
/// where another client's statement of that name sits). Said as what it is.
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
    match e.downcast::<Error>() {
        Ok(ours) => *ours,
        Err(other) => Error::Migration(other.to_string()),
    }
}

/// What a [`Guarded`] migration does when the harness runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Its SQL, with timeouts and checksum bookkeeping.
    Run,
    /// Only the bookkeeping (`stamp`).
    Stamp,
}

/// One migration as the harness runs it.
#[derive(Clone)]
struct Guarded {
    migration: Migration,
    config: Config,
    kind: Step,
    /// The step's own error, kept for the runner: when a statement broke the connection,
    /// the harness reports the ROLLBACK that failed after it instead.
    failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// Our migrations as a diesel_migrations source.
struct Steps(Vec<Guarded>);

impl MigrationSource<Pg> for Steps {
    fn migrations(&self) -> migration::Result<Vec<Box<dyn migration::Migration<Pg>>>> {
        let boxed = |g: &Guarded| Box::new(g.clone()) as Box<dyn migration::Migration<Pg>>;
        Ok(self.0.iter().map(boxed).collect())
    }
}

impl migration::Migration<Pg> for Guarded {
    fn run(&self, conn: &mut dyn BoxableConnection<Pg>) -> migration::Result<()> {
        Ok(self.execute(ours(conn)?, Direction::Up)?)
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<Pg>) -> migration::Result<()> {
        Ok(self.execute(ours(conn)?, Direction::Down)?)
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self
    }

    fn name(&self) -> &dyn MigrationName {
        self
    }
}

impl MigrationMetadata for Guarded {
    fn run_in_transaction(&self) -> bool {
        self.migration.run_in_transaction
    }
}

impl MigrationName for Guarded {
    fn version(&self) -> migration::MigrationVersion<'_> {
        self.migration.version.as_str().into()
    }
}

impl std::fmt::Display for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.migration.folder)
    }
}

/// The harness hands steps back the connection it was given: ours.
fn ours(conn: &mut dyn BoxableConnection<Pg>) -> Result<&mut Conn> {
    (conn.as_any_mut().downcast_mut::<Conn>())
        .ok_or_else(|| Error::Migration("migrations must run through Migrator".into()))
}

impl Guarded {
    fn execute(&self, conn: &mut Conn, way: Direction) -> Result<()> {
        let outcome = self.execute_inner(conn, way);
        if let (Err(Error::Migration(why)), Ok(mut slot)) = (&outcome, self.failed.lock()) {
            *slot = Some(why.clone());
        }
        outcome
    }

    fn execute_inner(&self, conn: &mut Conn, way: Direction) -> Result<()> {
        let (m, tx) = (&self.migration, self.migration.run_in_transaction);
        let started = Instant::now();
        if self.kind == Step::Stamp || tx {
            if self.kind == Step::Run {
                conn.batch_execute(&timeouts_sql(&self.config, "SET LOCAL"))?;
                run_statements(conn, m, way)?;
            }
            return record(conn, m, way, started);
        }
        // Marked dirty first: a crash or error half-way must never look applied. The runner
        // records the outcome once the harness has.
        mark_dirty(conn, m)?;
        conn.batch_execute(&concurrent_timeouts_sql(&self.config))?;
        let outcome = run_statements(conn, m, way);
        // The statement's own error is the one to report; a RESET on a connection that
        // statement broke would only say "connection closed".
        let reset = conn.batch_execute("RESET lock_timeout; RESET statement_timeout;");
        outcome?;
        Ok(reset?)
    }
}

/// The runner's timeouts, set before the migration's own SQL: a migration that needs
/// others sets them itself (`SET LOCAL lock_timeout = '10s';` at the top of up.sql).
fn timeouts_sql(config: &Config, set: &str) -> String {
    let (lock, statement) = (
        config.lock_timeout.as_millis(),
        config.statement_timeout.as_millis(),
    );
    format!("{set} lock_timeout = '{lock}ms';\n{set} statement_timeout = '{statement}ms';\n")
}

/// `SET` (session-wide, there is no transaction) the timeouts of a migration that runs
/// outside a transaction.
fn concurrent_timeouts_sql(config: &Config) -> String {
    let (lock, statement) = (
        config.concurrent_lock_timeout.as_millis(),
        config.concurrent_statement_timeout.as_millis(),
    );
    format!("SET lock_timeout = '{lock}ms';\nSET statement_timeout = '{statement}ms';\n")
}

/// Refuses to go on while a migration is marked dirty, as `current --check` does.
/// The INVALID indexes are named: a run killed during `CREATE INDEX CONCURRENTLY` never
/// printed its repair.
fn refuse_dirty(conn: &mut Conn, status: &Status) -> Result<()> {
    let Some(folder) = status.dirty.first() else {
        return Ok(());
    };
    let invalid: Vec<String> = (invalid_indexes().load::<Invalid>(conn)?.into_iter())
        .map(|i| {
            format!(
                "\n  DROP INDEX CONCURRENTLY IF EXISTS {}; -- INVALID",
                i.name
            )
        })
        .collect();
    Err(Error::Migration(format!(
        "{folder} failed part-way outside a transaction: repair the schema by hand \
         (`migrate verify` says what is dirty), then `migrate stamp <version>` to record \
         where it stands{}",
        invalid.concat()
    )))
}

/// The error of a non-transactional migration that failed part-way, with what to do: a
/// failed `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind, which the migration
/// cannot create again until it is dropped. Asked on a fresh connection, because the
/// failure may have broken this one.
fn left_dirty(
    conn: &mut Conn,
    url: &DatabaseUrl,
    m: &Migration,
    failure: Error,
    invalid_before: &[String],
    stamp: String,
) -> Error {
    let Error::Migration(why) = failure else {
        return failure;
    };
    let invalid = invalid_indexes().load::<Invalid>(conn).or_else(|_| {
        let url = url.clone();
        tokio::runtime::Handle::current().block_on(async move {
            let mut conn = db::connect(&url).await?;
            let rows = diesel_async::RunQueryDsl::load(invalid_indexes(), &mut conn).await?;
            Ok::<_, Error>(rows)
        })
    });
    let mut repair: Vec<String> = (invalid.unwrap_or_default().iter())
        .filter(|i| !invalid_before.contains(&i.name))
        .map(|i| format!("DROP INDEX CONCURRENTLY IF EXISTS {};", i.name))
        .collect();
    repair.push(format!(
        "statements before the one that failed ran and stay: undo them, or make them \
         idempotent (IF NOT EXISTS), then {stamp}"
    ));
    Error::Migration(format!(
        "{why}\n{} is marked dirty; to repair:\n  {}",
        m.folder,
        repair.join("\n  ")
    ))
}

/// An INVALID index (left by a failed `CREATE INDEX CONCURRENTLY`), schema-qualified and
/// quoted as `regclass` prints it.
#[derive(QueryableByName)]
struct Invalid {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The query for [`Invalid`] indexes; pg_index has no Diesel schema here.
fn invalid_indexes() -> diesel::query_builder::SqlQuery {
    diesel::sql_query(
        "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid ORDER BY 1",
    )
}

/// Runs a migration file statement by statement, so a failure names its statement.
fn run_statements(conn: &mut Conn, m: &Migration, way: Direction) -> Result<()> {
    let (folder, (file, all)) = (&m.folder, parse(m, way)?);
    for stmt in all {
        if let Err(err) = conn.batch_execute(&stmt.sql) {
            let first_line = (stmt.sql.lines())
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("--"))
                .unwrap_or("");
            let (n, line) = (stmt.number, stmt.line);
            return Err(Error::Migration(format!(
                "{folder}/{file}, statement {n} (line {line}): {first_line}: {err}"
            )));
        }
    }
    Ok(())
}

/// The file a step runs and its statements; refused (naming the file) when it cannot be
/// split, before anything runs or is marked.
fn parse(m: &Migration, way: Direction) -> Result<(&'static str, Vec<Statement>)> {
    let folder = &m.folder;
    let (file, sql) = match (way, m.down.as_deref()) {
        (Direction::Up, _) => ("up.sql", m.up.as_str()),
        (Direction::Down, Some(sql)) => ("down.sql", sql),
        (Direction::Down, None) => {
            return Err(Error::Migration(format!(
                "{folder}: no down.sql, cannot revert"
            )));
        }
    };
    let all = statements(sql).map_err(|e| match e {
        Error::Migration(why) => Error::Migration(format!("{folder}/{file}, {why}")),
        other => other,
    })?;
    Ok((file, all))
}

/// Writes down a migration's checksum (up) or deletes it (down).
fn record(conn: &mut Conn, m: &Migration, way: Direction, started: Instant) -> Result<()> {
    if way == Direction::Down {
        diesel::delete(sums::table.find(&m.version)).execute(conn)?;
        return Ok(());
    }
    let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    write_sum(conn, m, "applied", Some(took))
}

/// Marks a non-transactional migration dirty before it runs.
fn mark_dirty(conn: &mut Conn, m: &Migration) -> Result<()> {
    write_sum(conn, m, "dirty", None)
}

fn write_sum(conn: &mut Conn, m: &Migration, new_state: &str, took: Option<i64>) -> Result<()> {
    use self::sums::dsl::*;
    let row = (
        folder.eq(&m.folder),
        checksum.eq(m.checksum()),
        state.eq(new_state),
        duration_ms.eq(took),
        applied_at.eq(Utc::now()),
    );
    diesel::insert_into(sums)
        .values((version.eq(&m.version), row.clone()))
        .on_conflict(version)
        .do_update()
        .set(row)
        .execute(conn)?;
    Ok(())
}
