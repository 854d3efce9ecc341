//! One migration as diesel_migrations' harness runs it: a [`Guarded`] step sets the
//! timeouts, runs the SQL statement by statement so a failure names its statement, and
//! records a checksum in `migrate.checksums`: in the harness's transaction, or, for a
//! migration outside one, marked dirty first so a crash half-way never looks applied.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use diesel::connection::{BoxableConnection, SimpleConnection};
use diesel::migration::{self, MigrationMetadata, MigrationName, MigrationSource};
use diesel::pg::Pg;
use diesel::prelude::*;

use super::failure::Failure;
use super::lock::{concurrent_timeouts_sql, timeouts_sql};
use super::status::{Mark, sums};
use super::{Config, Conn, Direction, Migrator};
use crate::migrations::{Migration, Statement, statements};
use crate::{Error, Result};

/// What a [`Guarded`] migration does when the harness runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Its SQL, with timeouts and checksum bookkeeping.
    Run,
    /// Only the bookkeeping (`stamp`).
    Stamp,
}

/// One migration as the harness runs it.
#[derive(Clone)]
pub(super) struct Guarded {
    migration: Migration,
    config: Config,
    kind: Step,
    /// The step's own failure, kept for the runner: when a statement broke the connection,
    /// the harness reports the ROLLBACK that failed after it instead.
    failed: Arc<Mutex<Option<Failure>>>,
}

/// Our migrations as a diesel_migrations source.
pub(super) struct Steps(Vec<Guarded>);

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

impl Migrator {
    /// Every migration as the harness should run it.
    pub(super) fn steps(&self, kind: Step) -> Steps {
        Steps(
            self.migrations
                .iter()
                .map(|m| self.step(m.clone(), kind))
                .collect(),
        )
    }

    /// `migration` as the harness should run it.
    pub(super) fn step(&self, migration: Migration, kind: Step) -> Guarded {
        let config = self.config.clone();
        Guarded {
            migration,
            config,
            kind,
            failed: Default::default(),
        }
    }
}

impl Guarded {
    /// The failure a statement of this step kept, taken (once).
    pub(super) fn take_failure(&self) -> Option<Failure> {
        self.failed.lock().ok().and_then(|mut f| f.take())
    }

    fn execute(&self, conn: &mut Conn, way: Direction) -> Result<()> {
        let (m, tx) = (&self.migration, self.migration.run_in_transaction);
        let started = Instant::now();
        if self.kind == Step::Stamp || tx {
            if self.kind == Step::Run {
                conn.batch_execute(&timeouts_sql(&self.config, "SET LOCAL"))?;
                self.run_statements(conn, way)?;
            }
            return record(conn, m, way, started);
        }
        // Marked dirty first: a crash or error half-way must never look applied. The runner
        // records the outcome once the harness has.
        mark_dirty(conn, m)?;
        conn.batch_execute(&concurrent_timeouts_sql(&self.config))?;
        let outcome = self.run_statements(conn, way);
        // The statement's own error is the one to report; a RESET on a connection that
        // statement broke would only say "connection closed".
        let reset = conn.batch_execute("RESET lock_timeout; RESET statement_timeout;");
        outcome?;
        Ok(reset?)
    }

    /// [`run_statements`], keeping its failure for the runner and handing the harness the
    /// same text.
    fn run_statements(&self, conn: &mut Conn, way: Direction) -> Result<()> {
        let Err(failure) = run_statements(conn, &self.migration, way) else {
            return Ok(());
        };
        let copy = match &failure.error {
            Error::Migration(why) => Error::Migration(why.clone()),
            other => Error::Migration(other.to_string()),
        };
        if let Ok(mut slot) = self.failed.lock() {
            *slot = Some(failure);
        }
        Err(copy)
    }
}

/// Runs a migration file statement by statement, so a failure names its statement.
fn run_statements(conn: &mut Conn, m: &Migration, way: Direction) -> Result<(), Failure> {
    let (folder, (file, all)) = (&m.folder, parse(m, way)?);
    for stmt in all {
        let Err(err) = conn.batch_execute(&stmt.sql) else {
            continue;
        };
        let server_message = match &err {
            diesel::result::Error::DatabaseError(_, info) => Some(info.message().to_owned()),
            _ => None,
        };
        let first_line = (stmt.sql.lines())
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("--"))
            .unwrap_or("");
        // As in the statement events: a password written into a migration stays out.
        let first_line = crate::db::instrument::mask_secrets(first_line);
        let (n, line) = (stmt.number, stmt.line);
        let error = Error::Migration(format!(
            "{folder}/{file}, statement {n} (line {line}): {first_line}: {err}"
        ));
        return Err(Failure {
            error,
            server_message,
        });
    }
    Ok(())
}

/// The file a step runs and its statements; refused (naming the file) when it cannot be
/// split, before anything runs or is marked.
pub(super) fn parse(m: &Migration, way: Direction) -> Result<(&'static str, Vec<Statement>)> {
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
pub(super) fn record(
    conn: &mut Conn,
    m: &Migration,
    way: Direction,
    started: Instant,
) -> Result<()> {
    if way == Direction::Down {
        diesel::delete(sums::table.find(&m.version)).execute(conn)?;
        return Ok(());
    }
    let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    write_sum(conn, m, Mark::Applied, Some(took))
}

/// Marks a non-transactional migration dirty before it runs.
fn mark_dirty(conn: &mut Conn, m: &Migration) -> Result<()> {
    write_sum(conn, m, Mark::Dirty, None)
}

/// Inserts or replaces `m`'s checksum row.
pub(super) fn write_sum(
    conn: &mut Conn,
    m: &Migration,
    mark: Mark,
    took: Option<i64>,
) -> Result<()> {
    use super::status::sums::dsl::*;
    let row = (
        folder.eq(&m.folder),
        checksum.eq(m.checksum()),
        state.eq(mark),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_names_the_file_it_would_run_or_refuses_first() {
        let mut m = Migration::unknown("1");
        m.folder = "1_users".into();
        m.up = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);".into();
        let (file, all) = parse(&m, Direction::Up).unwrap();
        assert_eq!((file, all.len()), ("up.sql", 2));
        let why = parse(&m, Direction::Down).unwrap_err().to_string();
        assert!(
            why.ends_with("1_users: no down.sql, cannot revert"),
            "{why}"
        );
        m.down = Some("DROP TABLE a;\nVACUM a".into());
        let why = parse(&m, Direction::Down).unwrap_err().to_string();
        assert!(why.contains("1_users/down.sql, line 2: "), "{why}");
    }

    #[test]
    fn a_harness_error_of_ours_comes_back_as_it_was() {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::NoUrl);
        let failure = Failure::from_harness(boxed);
        assert!(matches!(failure.error, Error::NoUrl));
        assert_eq!(failure.server_message, None);
        let boxed: Box<dyn std::error::Error + Send + Sync> = "the harness's own".into();
        let failure = Failure::from_harness(boxed);
        assert_eq!(
            failure.error.to_string(),
            "migration failed: the harness's own"
        );
    }
}
