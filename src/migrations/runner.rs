//! The runner: diesel_migrations' `MigrationHarness` applies and reverts migrations and keeps
//! `__diesel_schema_migrations`; this layer adds what it lacks. One connection holds a session
//! advisory lock while the harness runs each migration as a [`Step`], which sets
//! `lock_timeout` and `statement_timeout`, runs the SQL statement by statement so a failure
//! names its statement, and records a checksum in `migrate.checksums` in the same transaction
//! as diesel's version row.
//!
//! The harness is synchronous: the work runs on a blocking thread, on the pooled driver's
//! connection wrapped by diesel-async's `AsyncConnectionWrapper` (still no libpq).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::connection::{BoxableConnection, SimpleConnection};
use diesel::migration::{
    Migration as DieselMigration, MigrationMetadata, MigrationName, MigrationSource,
    MigrationVersion,
};
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp, Timestamptz};
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;
use serde::Serialize;

use super::source::{self, Migration, statements};
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

/// How the runner behaves; defaults suit a production deploy.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SET LOCAL lock_timeout` for each migration: how long DDL may queue behind other locks.
    pub lock_timeout: Duration,
    /// `SET LOCAL statement_timeout` for each migration; zero means none.
    pub statement_timeout: Duration,
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
            lock_retries: 3,
            wait: Duration::from_secs(60),
            allow_out_of_order: false,
        }
    }
}

/// How far to upgrade or downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every migration (`head`) / none (`base`).
    Head,
    /// Nothing applied (`base`, downgrade only).
    Base,
    /// This many steps (`+N` up, `-N` down).
    Steps(usize),
    /// Up to and including this version (up), or down to and keeping it (down).
    Version(String),
}

impl Target {
    /// Parses `head`, `base`, `+N`, `-N`, `N` (steps when short) or a version.
    pub fn parse(text: &str) -> Result<Target> {
        let text = text.trim();
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-');
        match text {
            "head" => Ok(Target::Head),
            "base" => Ok(Target::Base),
            _ if (text.starts_with('+') || text.starts_with('-'))
                && text[1..].parse::<usize>().is_ok() =>
            {
                Ok(Target::Steps(text[1..].parse().unwrap()))
            }
            _ if digits(text) => Ok(Target::Version(text.replace('-', ""))),
            _ => Err(Error::Migration(format!(
                "{text:?} is not a target: use head, base, +N, -N or a version"
            ))),
        }
    }
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
    /// A non-transactional migration failed part-way: fix the database, then `stamp`.
    #[error("{folder}: failed part-way outside a transaction (dirty)")]
    Dirty {
        /// The migration's folder name.
        folder: String,
    },
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Timestamp)]
    run_on: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    folder: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    checksum: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    state: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    duration_ms: Option<i64>,
}

#[derive(diesel::QueryableByName)]
struct DirtyRow {
    #[diesel(sql_type = Text)]
    folder: String,
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
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

    /// The migrations in a folder on disk.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        Ok(Migrator::new(source::from_dir(dir)?))
    }

    /// Adds `migrate test`'s fixtures, read from the migrations folder `dir`.
    pub fn with_fixtures_from(mut self, dir: &std::path::Path) -> Self {
        source::add_fixtures(&mut self.migrations, dir);
        self
    }

    /// A migrator over these migrations, default settings.
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by(|a, b| a.version.cmp(&b.version));
        Migrator {
            migrations,
            config: Config::default(),
        }
    }

    /// The migrations, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// What the database has applied, oldest first, with each file's checksum state.
    pub async fn applied(&self, url: &DatabaseUrl) -> Result<Vec<Applied>> {
        let this = self.clone();
        blocking(url, move |conn| this.applied_on(conn)).await
    }

    /// Migrations not yet applied, in version order.
    pub async fn pending(&self, url: &DatabaseUrl) -> Result<Vec<Migration>> {
        let this = self.clone();
        blocking(url, move |conn| {
            Ok(this.pending_on(conn)?.into_iter().cloned().collect())
        })
        .await
    }

    /// Folders of migrations that failed part-way outside a transaction.
    pub async fn dirty(&self, url: &DatabaseUrl) -> Result<Vec<String>> {
        blocking(url, dirty_on).await
    }

    /// Everything `verify` reports: changed, missing, out-of-order and dirty migrations.
    pub async fn verify(&self, url: &DatabaseUrl) -> Result<Vec<Problem>> {
        let this = self.clone();
        blocking(url, move |conn| this.verify_on(conn)).await
    }

    /// Reads the history without creating anything: `current` and `history` must work for
    /// a role that may not create tables.
    fn applied_on(&self, conn: &mut Conn) -> Result<Vec<Applied>> {
        if !table_exists(conn, "public.__diesel_schema_migrations")? {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = if table_exists(conn, "migrate.checksums")? {
            diesel::sql_query(
                "SELECT d.version::text AS version, d.run_on, c.folder, c.checksum, c.state, \
                 c.duration_ms FROM __diesel_schema_migrations d \
                 LEFT JOIN migrate.checksums c USING (version) ORDER BY d.version",
            )
            .load(conn)?
        } else {
            diesel::sql_query(
                "SELECT version::text AS version, run_on, NULL::text AS folder, \
                 NULL::text AS checksum, NULL::text AS state, NULL::bigint AS duration_ms \
                 FROM __diesel_schema_migrations ORDER BY version",
            )
            .load(conn)?
        };
        let by_version: BTreeMap<&str, &Migration> = self
            .migrations
            .iter()
            .map(|m| (m.version.as_str(), m))
            .collect();
        Ok(rows
            .into_iter()
            .map(|row| {
                let file = by_version.get(row.version.as_str());
                let state = match (file, row.checksum.as_deref(), row.state.as_deref()) {
                    (_, _, Some("dirty")) => "dirty",
                    (None, _, _) => "missing",
                    (Some(_), None, _) => "unrecorded",
                    (Some(m), Some(sum), _) if m.checksum() == sum => "ok",
                    (Some(_), Some(_), _) => "changed",
                };
                Applied {
                    folder: row.folder.or_else(|| file.map(|m| m.folder.clone())),
                    version: row.version,
                    run_on: row.run_on,
                    duration_ms: row.duration_ms,
                    state: state.to_owned(),
                }
            })
            .collect())
    }

    fn pending_on(&self, conn: &mut Conn) -> Result<Vec<&Migration>> {
        let applied = self.applied_on(conn)?;
        Ok(self
            .migrations
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .collect())
    }

    fn verify_on(&self, conn: &mut Conn) -> Result<Vec<Problem>> {
        let applied = self.applied_on(conn)?;
        let mut problems = Vec::new();
        for a in &applied {
            let folder = a.folder.clone().unwrap_or_else(|| a.version.clone());
            match a.state.as_str() {
                "changed" => problems.push(Problem::Changed { folder }),
                "missing" => problems.push(Problem::Missing {
                    version: a.version.clone(),
                }),
                _ => {}
            }
        }
        for folder in dirty_on(conn)? {
            problems.push(Problem::Dirty { folder });
        }
        if let Some(newest) = applied.iter().map(|a| &a.version).max() {
            for m in self.pending_on(conn)? {
                if &m.version < newest {
                    problems.push(Problem::OutOfOrder {
                        folder: m.folder.clone(),
                        newest_applied: newest.clone(),
                    });
                }
            }
        }
        Ok(problems)
    }

    /// The pending migrations `target` selects, oldest first.
    fn select_up<'a>(
        &'a self,
        pending: Vec<&'a Migration>,
        target: &Target,
    ) -> Result<Vec<&'a Migration>> {
        match target {
            Target::Head => Ok(pending),
            Target::Steps(n) => Ok(pending.into_iter().take(*n).collect()),
            Target::Version(v) => {
                if !self.migrations.iter().any(|m| &m.version == v) {
                    return Err(Error::Migration(format!("no migration has version {v}")));
                }
                Ok(pending.into_iter().filter(|m| &m.version <= v).collect())
            }
            Target::Base => Err(Error::Migration(
                "upgrade to base makes no sense: use downgrade base".into(),
            )),
        }
    }

    /// The applied migrations `target` selects for reverting, newest first.
    fn select_down(&self, applied: &[Applied], target: &Target) -> Result<Vec<Migration>> {
        let mut chosen: Vec<&Applied> = applied.iter().rev().collect();
        match target {
            Target::Base | Target::Head => {}
            Target::Steps(n) => chosen.truncate(*n),
            Target::Version(v) => {
                if !applied.iter().any(|a| &a.version == v) {
                    return Err(Error::Migration(format!("version {v} is not applied")));
                }
                chosen.retain(|a| &a.version > v);
            }
        }
        chosen
            .into_iter()
            .map(|a| {
                self.find(&a.version).cloned().ok_or_else(|| {
                    Error::Migration(format!(
                        "{}: applied, but its folder is gone; cannot revert it",
                        a.version
                    ))
                })
            })
            .collect()
    }

    fn find(&self, version: &str) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.version == version)
    }

    /// Applies pending migrations up to `target`; returns the folders applied. Takes no lock
    /// when nothing is pending, so many instances can start at once.
    pub async fn upgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let (this, shown) = (self.clone(), url.to_string());
        blocking(url, move |conn| {
            if this.select_up(this.pending_on(conn)?, &target)?.is_empty() {
                return Ok(Vec::new());
            }
            this.locked(conn, &shown, |conn| this.upgrade_locked(conn, &target))
        })
        .await
    }

    fn upgrade_locked(&self, conn: &mut Conn, target: &Target) -> Result<Vec<String>> {
        conn.batch_execute(HISTORY_DDL)?;
        refuse_dirty(conn)?;
        // Re-read under the lock, through the harness: another migrator may have done the
        // work meanwhile.
        let pending = conn
            .pending_migrations(self.steps(Step::Run))
            .map_err(harness_error)?;
        let pending: Vec<&Migration> = pending
            .iter()
            .filter_map(|m| self.find(&m.name().version().to_string()))
            .collect();
        let chosen = self.select_up(pending, target)?;
        let applied = conn.applied_migrations().map_err(harness_error)?;
        if let (Some(newest), false) = (applied.first(), self.config.allow_out_of_order) {
            let newest = newest.to_string();
            if let Some(old) = chosen.iter().find(|m| m.version < newest) {
                return Err(Error::Migration(format!(
                    "{} is older than the applied {newest}: rename it to a newer version, or \
                     pass --allow-out-of-order",
                    old.folder
                )));
            }
        }
        let mut done = Vec::new();
        for migration in chosen {
            self.apply(conn, migration, Direction::Up)?;
            done.push(migration.folder.clone());
        }
        Ok(done)
    }

    /// Reverts applied migrations down to `target`; returns the folders reverted.
    pub async fn downgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let (this, shown) = (self.clone(), url.to_string());
        blocking(url, move |conn| {
            this.locked(conn, &shown, |conn| {
                conn.batch_execute(HISTORY_DDL)?;
                refuse_dirty(conn)?;
                let chosen = this.select_down(&this.applied_on(conn)?, &target)?;
                let mut done = Vec::new();
                for migration in &chosen {
                    this.apply(conn, migration, Direction::Down)?;
                    done.push(migration.folder.clone());
                }
                Ok(done)
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
        let (this, shown) = (self.clone(), url.to_string());
        blocking(url, move |conn| {
            this.locked(conn, &shown, |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    conn.batch_execute(HISTORY_DDL)?;
                    let keep = |v: &str| version != "base" && v <= version.as_str();
                    for applied in conn.applied_migrations().map_err(harness_error)? {
                        let applied = applied.to_string();
                        if !keep(&applied) {
                            let m = this
                                .find(&applied)
                                .cloned()
                                .unwrap_or_else(|| Migration::unknown(&applied));
                            conn.revert_migration(&this.step(m, Step::Stamp))
                                .map_err(harness_error)?;
                        }
                    }
                    for m in this.pending_on(conn)? {
                        if keep(&m.version) {
                            conn.run_migration(&this.step(m.clone(), Step::Stamp))
                                .map_err(harness_error)?;
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

    /// The SQL an upgrade to `target` would run, without running it.
    pub async fn upgrade_sql(&self, url: &DatabaseUrl, target: Target) -> Result<String> {
        let this = self.clone();
        blocking(url, move |conn| {
            let chosen = this.select_up(this.pending_on(conn)?, &target)?;
            Ok(this.plan(chosen, Direction::Up))
        })
        .await
    }

    /// The SQL a downgrade to `target` would run, without running it.
    pub async fn downgrade_sql(&self, url: &DatabaseUrl, target: Target) -> Result<String> {
        let this = self.clone();
        blocking(url, move |conn| {
            let chosen = this.select_down(&this.applied_on(conn)?, &target)?;
            Ok(this.plan(&chosen, Direction::Down))
        })
        .await
    }

    /// The scripts of `chosen`, in order: what `--sql` prints.
    fn plan<'a>(
        &self,
        chosen: impl IntoIterator<Item = &'a Migration>,
        direction: Direction,
    ) -> String {
        let scripts: Vec<String> = chosen
            .into_iter()
            .map(|m| self.script(m, direction))
            .collect();
        scripts.join("\n")
    }

    fn script(&self, m: &Migration, direction: Direction) -> String {
        let (file, sql) = match direction {
            Direction::Up => ("up.sql", m.up.as_str()),
            Direction::Down => ("down.sql", m.down.as_deref().unwrap_or("-- (no down.sql)")),
        };
        let bookkeeping = match direction {
            Direction::Up => format!(
                "INSERT INTO __diesel_schema_migrations (version) VALUES ('{}');",
                m.version
            ),
            Direction::Down => format!(
                "DELETE FROM __diesel_schema_migrations WHERE version = '{}';",
                m.version
            ),
        };
        let (begin, end) = if m.run_in_transaction {
            ("BEGIN;\n", "COMMIT;\n")
        } else {
            ("", "")
        };
        format!(
            "-- {}/{file}\n{begin}{}{}\n{bookkeeping}\n{end}",
            m.folder,
            timeouts_sql(&self.config, "SET LOCAL"),
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
        Guarded {
            migration,
            config: self.config.clone(),
            kind,
        }
    }

    /// Runs `work` holding the session advisory lock, waiting up to `config.wait` for it.
    fn locked<T>(
        &self,
        conn: &mut Conn,
        shown: &str,
        work: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.config.wait;
        let mut pause = Duration::from_millis(50);
        loop {
            let got: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS flag")
                .bind::<BigInt, _>(LOCK_KEY)
                .get_result(conn)?;
            if got.flag {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Migration(format!(
                    "another migration run holds the lock on {shown}; gave up after {:?} (--wait to change)",
                    self.config.wait
                )));
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let result = work(conn);
        // Closing the connection would release it too; this makes the release prompt.
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(LOCK_KEY)
            .execute(conn);
        result
    }

    /// Has the harness run (or revert) `m` as the next step, retrying a transactional
    /// migration that hit its lock timeout.
    fn apply(&self, conn: &mut Conn, m: &Migration, direction: Direction) -> Result<()> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let done = match direction {
                Direction::Up => conn.run_next_migration(self.steps(Step::Run)),
                Direction::Down => conn.revert_last_migration(self.steps(Step::Run)),
            };
            let result = match done {
                Ok(version) if version.to_string() == m.version => Ok(()),
                Ok(version) => Err(Error::Migration(format!(
                    "expected to run {}, the harness ran {version}",
                    m.folder
                ))),
                Err(e) => Err(harness_error(e)),
            };
            match result {
                Err(Error::Migration(msg))
                    if m.run_in_transaction
                        && msg.contains("lock timeout")
                        && attempt < self.config.lock_retries =>
                {
                    attempt += 1;
                    eprintln!("{}: lock timeout, retry {attempt} in {pause:?}", m.folder);
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Ok(()) if !m.run_in_transaction => {
                    // Outside a transaction the step marked itself dirty; the harness has
                    // now recorded (or forgotten) the version, so it is clean again.
                    return match direction {
                        Direction::Up => record(conn, m, "applied", Some(elapsed_ms(started))),
                        Direction::Down => forget(conn, m),
                    };
                }
                other => return other,
            }
        }
    }
}

/// Runs `work` on a blocking thread, on a fresh connection to `url` that diesel's synchronous
/// API (and so `MigrationHarness`) can use.
async fn blocking<T: Send + 'static>(
    url: &DatabaseUrl,
    work: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
) -> Result<T> {
    let conn = db::connect(url).await?;
    tokio::task::spawn_blocking(move || work(&mut Conn::from(conn)))
        .await
        .map_err(|e| Error::Migration(format!("the migration thread failed: {e}")))?
}

/// The harness's errors are boxed; ours come back out with their text.
fn harness_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    match e.downcast::<Error>() {
        Ok(ours) => *ours,
        Err(other) => Error::Migration(other.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
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
}

/// Our migrations as a diesel_migrations source.
struct Steps(Vec<Guarded>);

impl MigrationSource<Pg> for Steps {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn DieselMigration<Pg>>>> {
        Ok(self
            .0
            .iter()
            .map(|g| Box::new(g.clone()) as Box<dyn DieselMigration<Pg>>)
            .collect())
    }
}

impl DieselMigration<Pg> for Guarded {
    fn run(&self, conn: &mut dyn BoxableConnection<Pg>) -> diesel::migration::Result<()> {
        Ok(self.execute(ours(conn)?, Direction::Up)?)
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<Pg>) -> diesel::migration::Result<()> {
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
    fn version(&self) -> MigrationVersion<'_> {
        MigrationVersion::from(self.migration.version.as_str())
    }
}

impl std::fmt::Display for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.migration.folder)
    }
}

/// The harness hands steps back the connection it was given: ours.
fn ours(conn: &mut dyn BoxableConnection<Pg>) -> Result<&mut Conn> {
    conn.as_any_mut()
        .downcast_mut::<Conn>()
        .ok_or_else(|| Error::Migration("migrations must run through Migrator".into()))
}

impl Guarded {
    fn execute(&self, conn: &mut Conn, direction: Direction) -> Result<()> {
        let (m, tx) = (&self.migration, self.migration.run_in_transaction);
        let started = Instant::now();
        if self.kind == Step::Run {
            if !tx {
                // Marked dirty first: a crash or error half-way must never look applied.
                record(conn, m, "dirty", None)?;
            }
            conn.batch_execute(&timeouts_sql(
                &self.config,
                if tx { "SET LOCAL" } else { "SET" },
            ))?;
            let outcome = run_statements(conn, m, direction);
            if !tx {
                conn.batch_execute("RESET lock_timeout; RESET statement_timeout;")?;
            }
            outcome?;
            if !tx {
                return Ok(()); // the runner records the outcome once the harness has
            }
        }
        match direction {
            Direction::Up => record(conn, m, "applied", Some(elapsed_ms(started))),
            Direction::Down => forget(conn, m),
        }
    }
}

/// The runner's timeouts, set before the migration's own SQL: a migration that needs
/// others sets them itself (`SET LOCAL lock_timeout = '10s';` at the top of up.sql).
fn timeouts_sql(config: &Config, set: &str) -> String {
    format!(
        "{set} lock_timeout = '{}ms';\n{set} statement_timeout = '{}ms';\n",
        config.lock_timeout.as_millis(),
        config.statement_timeout.as_millis()
    )
}

fn refuse_dirty(conn: &mut Conn) -> Result<()> {
    match dirty_on(conn)?.into_iter().next() {
        None => Ok(()),
        Some(folder) => Err(Error::Migration(format!(
            "{folder} failed part-way outside a transaction: repair the schema by hand, then \
             `migrate stamp <version>` to record where it stands"
        ))),
    }
}

fn dirty_on(conn: &mut Conn) -> Result<Vec<String>> {
    if !table_exists(conn, "migrate.checksums")? {
        return Ok(Vec::new());
    }
    let rows: Vec<DirtyRow> = diesel::sql_query(
        "SELECT folder FROM migrate.checksums WHERE state = 'dirty' ORDER BY version",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.folder).collect())
}

/// Runs a migration file statement by statement, so a failure names its statement.
fn run_statements(conn: &mut Conn, m: &Migration, direction: Direction) -> Result<()> {
    let (file, sql) = match direction {
        Direction::Up => ("up.sql", m.up.as_str()),
        Direction::Down => match m.down.as_deref() {
            Some(sql) => ("down.sql", sql),
            None => {
                return Err(Error::Migration(format!(
                    "{}: no down.sql, cannot revert",
                    m.folder
                )));
            }
        },
    };
    for stmt in statements(sql) {
        if let Err(err) = conn.batch_execute(&stmt.sql) {
            let first_line = stmt
                .sql
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
                .unwrap_or("")
                .trim();
            return Err(Error::Migration(format!(
                "{}/{file}, statement {} (line {}): {first_line}: {err}",
                m.folder, stmt.number, stmt.line
            )));
        }
    }
    Ok(())
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Upserts a migration's checksum row (the tables exist: every locked path creates them first).
fn record(conn: &mut Conn, m: &Migration, state: &str, duration_ms: Option<i64>) -> Result<()> {
    diesel::sql_query(
        "INSERT INTO migrate.checksums (version, folder, checksum, state, duration_ms, applied_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version) DO UPDATE SET folder = EXCLUDED.folder, \
         checksum = EXCLUDED.checksum, state = EXCLUDED.state, duration_ms = EXCLUDED.duration_ms, \
         applied_at = EXCLUDED.applied_at",
    )
    .bind::<Text, _>(&m.version)
    .bind::<Text, _>(&m.folder)
    .bind::<Text, _>(m.checksum())
    .bind::<Text, _>(state)
    .bind::<Nullable<BigInt>, _>(duration_ms)
    .bind::<Timestamptz, _>(Utc::now())
    .execute(conn)?;
    Ok(())
}

/// Deletes a migration's checksum row.
fn forget(conn: &mut Conn, m: &Migration) -> Result<()> {
    diesel::sql_query("DELETE FROM migrate.checksums WHERE version = $1")
        .bind::<Text, _>(&m.version)
        .execute(conn)?;
    Ok(())
}

fn table_exists(conn: &mut Conn, name: &str) -> Result<bool> {
    let found: Flag = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS flag")
        .bind::<Text, _>(name)
        .get_result(conn)?;
    Ok(found.flag)
}
