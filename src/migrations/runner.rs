//! The runner. Applies migrations on one connection that holds a session advisory lock, each
//! in its own transaction (unless metadata.toml says otherwise) with `lock_timeout` and
//! `statement_timeout` set, recording them in diesel's `__diesel_schema_migrations` (so
//! diesel_cli agrees) and their checksums in `migrate.checksums`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde::Serialize;

use super::source::{self, Migration, statements};
use crate::db::{self, DatabaseUrl};
use crate::{Error, Result};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// An applied migration's files changed since it ran.
    Changed {
        /// The migration's folder name.
        folder: String,
    },
    /// An applied migration has no folder any more.
    Missing {
        /// The version recorded in the history table.
        version: String,
    },
    /// A pending migration sorts before the newest applied one.
    OutOfOrder {
        /// The pending migration's folder name.
        folder: String,
        /// The newest applied version, which sorts after it.
        newest_applied: String,
    },
    /// A non-transactional migration failed part-way: fix the database, then `stamp`.
    Dirty {
        /// The migration's folder name.
        folder: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed { folder } => write!(f, "{folder}: changed after it was applied"),
            Problem::Missing { version } => write!(f, "{version}: applied, but its folder is gone"),
            Problem::OutOfOrder {
                folder,
                newest_applied,
            } => {
                write!(
                    f,
                    "{folder}: pending, but older than the applied {newest_applied}"
                )
            }
            Problem::Dirty { folder } => {
                write!(f, "{folder}: failed part-way outside a transaction (dirty)")
            }
        }
    }
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

    /// Adds `migrate test`'s fixtures, read from the migrations folder `dir`.
    pub fn with_fixtures_from(mut self, dir: &std::path::Path) -> Self {
        source::add_fixtures(&mut self.migrations, dir);
        self
    }

    /// The migrations in a folder on disk.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        Ok(Migrator::new(source::from_dir(dir)?))
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
    pub async fn applied(&self, conn: &mut AsyncPgConnection) -> Result<Vec<Applied>> {
        if !table_exists(conn, "public.__diesel_schema_migrations").await? {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = if table_exists(conn, "migrate.checksums").await? {
            diesel::sql_query(
                "SELECT d.version::text AS version, d.run_on, c.folder, c.checksum, c.state, \
                 c.duration_ms FROM __diesel_schema_migrations d \
                 LEFT JOIN migrate.checksums c USING (version) ORDER BY d.version",
            )
            .load(conn)
            .await?
        } else {
            diesel::sql_query(
                "SELECT version::text AS version, run_on, NULL::text AS folder, \
                 NULL::text AS checksum, NULL::text AS state, NULL::bigint AS duration_ms \
                 FROM __diesel_schema_migrations ORDER BY version",
            )
            .load(conn)
            .await?
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

    /// Migrations not yet applied, in version order.
    pub async fn pending(&self, conn: &mut AsyncPgConnection) -> Result<Vec<&Migration>> {
        let applied = self.applied(conn).await?;
        Ok(self
            .migrations
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .collect())
    }

    /// Folders of migrations that failed part-way outside a transaction.
    pub async fn dirty(&self, conn: &mut AsyncPgConnection) -> Result<Vec<String>> {
        if !table_exists(conn, "migrate.checksums").await? {
            return Ok(Vec::new());
        }
        let rows: Vec<DirtyRow> = diesel::sql_query(
            "SELECT folder FROM migrate.checksums WHERE state = 'dirty' ORDER BY version",
        )
        .load(conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.folder).collect())
    }

    /// Everything `verify` reports: changed, missing, out-of-order and dirty migrations.
    pub async fn verify(&self, conn: &mut AsyncPgConnection) -> Result<Vec<Problem>> {
        let applied = self.applied(conn).await?;
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
        for folder in self.dirty(conn).await? {
            problems.push(Problem::Dirty { folder });
        }
        if let Some(newest) = applied.iter().map(|a| &a.version).max() {
            for m in self.pending(conn).await? {
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
                self.migrations
                    .iter()
                    .find(|m| m.version == a.version)
                    .cloned()
                    .ok_or_else(|| {
                        Error::Migration(format!(
                            "{}: applied, but its folder is gone; cannot revert it",
                            a.version
                        ))
                    })
            })
            .collect()
    }

    /// Applies pending migrations up to `target`; returns the folders applied. Takes no lock
    /// when nothing is pending, so many instances can start at once.
    pub async fn upgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let mut conn = db::connect(url).await?;
        if self
            .select_up(self.pending(&mut conn).await?, &target)?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        self.lock(&mut conn, url).await?;
        let result = self.upgrade_locked(&mut conn, &target).await;
        unlock(&mut conn).await;
        result
    }

    async fn upgrade_locked(
        &self,
        conn: &mut AsyncPgConnection,
        target: &Target,
    ) -> Result<Vec<String>> {
        conn.batch_execute(HISTORY_DDL).await?;
        self.refuse_dirty(conn).await?;
        // Re-read under the lock: another migrator may have done the work meanwhile.
        let pending = self.pending(conn).await?;
        let chosen = self.select_up(pending, target)?;
        let newest = self
            .applied(conn)
            .await?
            .into_iter()
            .map(|a| a.version)
            .max();
        let too_old = chosen
            .iter()
            .find(|m| newest.as_ref().is_some_and(|newest| &m.version < newest));
        if let (Some(old), Some(newest), false) = (too_old, &newest, self.config.allow_out_of_order)
        {
            return Err(Error::Migration(format!(
                "{} is older than the applied {newest}: rename it to a newer version, or pass \
                 --allow-out-of-order",
                old.folder
            )));
        }
        let mut done = Vec::new();
        for migration in chosen {
            self.apply(conn, migration, Direction::Up).await?;
            done.push(migration.folder.clone());
        }
        Ok(done)
    }

    /// Reverts applied migrations down to `target`; returns the folders reverted.
    pub async fn downgrade(&self, url: &DatabaseUrl, target: Target) -> Result<Vec<String>> {
        let mut conn = db::connect(url).await?;
        self.lock(&mut conn, url).await?;
        let result = async {
            conn.batch_execute(HISTORY_DDL).await?;
            self.refuse_dirty(&mut conn).await?;
            let applied = self.applied(&mut conn).await?;
            let chosen = self.select_down(&applied, &target)?;
            let mut done = Vec::new();
            for migration in &chosen {
                self.apply(&mut conn, migration, Direction::Down).await?;
                done.push(migration.folder.clone());
            }
            Ok(done)
        }
        .await;
        unlock(&mut conn).await;
        result
    }

    /// Records `version` and everything before it as applied, and everything after as not,
    /// without running any SQL (Alembic's `stamp`). Clears dirty marks.
    pub async fn stamp(&self, url: &DatabaseUrl, version: &str) -> Result<()> {
        let version = version.replace('-', "");
        if version != "base" && !self.migrations.iter().any(|m| m.version == version) {
            return Err(Error::Migration(format!(
                "no migration has version {version}"
            )));
        }
        let mut conn = db::connect(url).await?;
        self.lock(&mut conn, url).await?;
        let result = conn
            .transaction::<_, Error, _>(async |conn| {
                conn.batch_execute(HISTORY_DDL).await?;
                conn.batch_execute(
                    "DELETE FROM __diesel_schema_migrations; DELETE FROM migrate.checksums;",
                )
                .await?;
                for m in self
                    .migrations
                    .iter()
                    .filter(|m| version != "base" && m.version <= version)
                {
                    record(conn, m, "applied", None).await?;
                }
                Ok(())
            })
            .await;
        unlock(&mut conn).await;
        result
    }

    /// The SQL an upgrade to `target` would run, without running it.
    pub async fn upgrade_sql(
        &self,
        conn: &mut AsyncPgConnection,
        target: Target,
    ) -> Result<String> {
        let chosen = self.select_up(self.pending(conn).await?, &target)?;
        Ok(chosen
            .iter()
            .map(|m| self.script(m, Direction::Up))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The SQL a downgrade to `target` would run, without running it.
    pub async fn downgrade_sql(
        &self,
        conn: &mut AsyncPgConnection,
        target: Target,
    ) -> Result<String> {
        let applied = self.applied(conn).await?;
        let chosen = self.select_down(&applied, &target)?;
        Ok(chosen
            .iter()
            .map(|m| self.script(m, Direction::Down))
            .collect::<Vec<_>>()
            .join("\n"))
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
            self.timeouts_sql("SET LOCAL"),
            sql.trim_end()
        )
    }

    /// The runner's timeouts, set before the migration's own SQL: a migration that needs
    /// others sets them itself (`SET LOCAL lock_timeout = '10s';` at the top of up.sql).
    fn timeouts_sql(&self, set: &str) -> String {
        format!(
            "{set} lock_timeout = '{}ms';\n{set} statement_timeout = '{}ms';\n",
            self.config.lock_timeout.as_millis(),
            self.config.statement_timeout.as_millis()
        )
    }

    async fn refuse_dirty(&self, conn: &mut AsyncPgConnection) -> Result<()> {
        match self.dirty(conn).await?.into_iter().next() {
            None => Ok(()),
            Some(folder) => Err(Error::Migration(format!(
                "{folder} failed part-way outside a transaction: repair the schema by hand, then \
                 `migrate stamp <version>` to record where it stands"
            ))),
        }
    }

    /// Takes the session advisory lock, waiting up to `config.wait`.
    async fn lock(&self, conn: &mut AsyncPgConnection, url: &DatabaseUrl) -> Result<()> {
        let deadline = Instant::now() + self.config.wait;
        let mut pause = Duration::from_millis(50);
        loop {
            let got: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS flag")
                .bind::<BigInt, _>(LOCK_KEY)
                .get_result(conn)
                .await?;
            if got.flag {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Migration(format!(
                    "another migration run holds the lock on {url}; gave up after {:?} (--wait to change)",
                    self.config.wait
                )));
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Runs one migration, retrying on lock timeout when it is transactional.
    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        m: &Migration,
        direction: Direction,
    ) -> Result<()> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = if m.run_in_transaction {
                conn.transaction::<_, Error, _>(async |conn| {
                    conn.batch_execute(&self.timeouts_sql("SET LOCAL")).await?;
                    run_statements(conn, m, direction).await?;
                    bookkeep(conn, m, direction, started).await
                })
                .await
            } else {
                self.apply_outside_transaction(conn, m, direction, started)
                    .await
            };
            match result {
                Err(Error::Migration(msg))
                    if m.run_in_transaction
                        && msg.contains("lock timeout")
                        && attempt < self.config.lock_retries =>
                {
                    attempt += 1;
                    eprintln!("{}: lock timeout, retry {attempt} in {pause:?}", m.folder);
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
    }

    async fn apply_outside_transaction(
        &self,
        conn: &mut AsyncPgConnection,
        m: &Migration,
        direction: Direction,
        started: Instant,
    ) -> Result<()> {
        // Marked dirty first: a crash or error half-way must never look applied.
        conn.batch_execute(HISTORY_DDL).await?;
        record(conn, m, "dirty", None).await?;
        conn.batch_execute(&self.timeouts_sql("SET")).await?;
        let outcome = run_statements(conn, m, direction).await;
        conn.batch_execute("RESET lock_timeout; RESET statement_timeout;")
            .await?;
        outcome?;
        conn.transaction::<_, Error, _>(async |conn| bookkeep(conn, m, direction, started).await)
            .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// Runs a migration file statement by statement, so a failure names its statement.
async fn run_statements(
    conn: &mut AsyncPgConnection,
    m: &Migration,
    direction: Direction,
) -> Result<()> {
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
        if let Err(err) = conn.batch_execute(&stmt.sql).await {
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

/// Records (up) or forgets (down) a migration in both version tables.
async fn bookkeep(
    conn: &mut AsyncPgConnection,
    m: &Migration,
    direction: Direction,
    started: Instant,
) -> Result<()> {
    match direction {
        Direction::Up => {
            conn.batch_execute(HISTORY_DDL).await?;
            let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            record(conn, m, "applied", Some(ms)).await
        }
        Direction::Down => {
            diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
                .bind::<Text, _>(&m.version)
                .execute(conn)
                .await?;
            diesel::sql_query("DELETE FROM migrate.checksums WHERE version = $1")
                .bind::<Text, _>(&m.version)
                .execute(conn)
                .await?;
            Ok(())
        }
    }
}

/// Upserts a checksum row; `applied` also writes diesel's version row.
async fn record(
    conn: &mut AsyncPgConnection,
    m: &Migration,
    state: &str,
    duration_ms: Option<i64>,
) -> Result<()> {
    if state == "applied" {
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(&m.version)
        .execute(conn)
        .await?;
    }
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
    .execute(conn)
    .await?;
    Ok(())
}

async fn unlock(conn: &mut AsyncPgConnection) {
    // Closing the connection would release it too; this makes the release prompt.
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(LOCK_KEY)
        .execute(conn)
        .await;
}

async fn table_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool> {
    let found: Flag = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS flag")
        .bind::<Text, _>(name)
        .get_result(conn)
        .await?;
    Ok(found.flag)
}
