//! Running the chosen steps in turn: each through the harness, a transactional one again
//! after a lock timeout (with doubling pauses), a failed one outside a transaction
//! reported with its repair.

use std::time::{Duration, Instant};

use diesel_migrations::MigrationHarness;

use super::dirty::{invalid_index_names, left_dirty, refuse_dirty};
use super::failure::Failure;
use super::lock::{Cause, LockTimeouts};
use super::step::{Step, parse, record};
use super::{Conn, Direction, Migrator};
use crate::Result;
use crate::db::DatabaseUrl;
use crate::migrations::Migration;

impl Migrator {
    /// Has the harness run (or revert) each of `chosen` in turn; returns their folders.
    /// Refuses to start while a migration is dirty.
    pub(super) fn apply_all(
        &self,
        conn: &mut Conn,
        url: &DatabaseUrl,
        chosen: &[Migration],
        way: Direction,
    ) -> Result<Vec<String>> {
        let status = self.status_on(conn)?;
        refuse_dirty(conn, &status)?;
        let mut timeouts = LockTimeouts::new(url);
        (chosen.iter())
            .map(|m| {
                self.apply(conn, url, &mut timeouts, m, way)
                    .map(|()| m.folder.clone())
            })
            .collect()
    }

    /// Has the harness run (or revert) `m` as the next step, retrying a transactional
    /// migration that hit its lock timeout.
    fn apply(
        &self,
        conn: &mut Conn,
        url: &DatabaseUrl,
        timeouts: &mut LockTimeouts,
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
        let invalid_before = match m.run_in_transaction {
            true => Vec::new(),
            false => invalid_index_names(conn)?,
        };
        for attempt in 1.. {
            let started = Instant::now();
            let done = match way {
                Direction::Up => conn.run_migration(&step),
                Direction::Down => conn.revert_migration(&step),
            };
            let failure = match done {
                // Outside a transaction the step marked itself dirty; the harness has now
                // recorded (or forgotten) the version, so it is clean again.
                Ok(_) => {
                    if !m.run_in_transaction {
                        record(conn, m, way, started)?;
                    }
                    applied(m, way, started);
                    return Ok(());
                }
                Err(e) => step
                    .take_failure()
                    .unwrap_or_else(|| Failure::from_harness(e)),
            };
            if !m.run_in_transaction {
                let (all, error) = (&self.migrations, failure.error);
                return Err(left_dirty(conn, url, all, (m, way), error, &invalid_before));
            }
            let retry = attempt <= self.config.lock_retries;
            if !retry || timeouts.cause(&failure) != Cause::LockTimeout {
                return Err(failure.error);
            }
            tracing::warn!(migration = %m.folder, attempt, pause_ms = pause.as_millis() as u64,
                "{}: lock timeout, retry {attempt} in {pause:?}", m.folder);
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the retry loop returns")
    }
}

/// The event for a migration applied or reverted, with how long it took.
fn applied(m: &Migration, way: Direction, started: Instant) {
    let ms = started.elapsed().as_millis() as u64;
    match way {
        Direction::Up => tracing::info!(migration = %m.folder, ms, "applied"),
        Direction::Down => tracing::info!(migration = %m.folder, ms, "reverted"),
    }
}
