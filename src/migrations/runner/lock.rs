//! Waiting for others: the session advisory lock one migrate run holds, the lock and
//! statement timeouts each migration runs under, and how a lock timeout is recognised for
//! the retry.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::failure::Failure;
use super::status::HISTORY_DDL;
use super::{Config, Conn, Migrator};
use crate::db::fns::{
    pg_advisory_lock, pg_advisory_unlock, pg_is_in_recovery, pg_try_advisory_lock,
};
use crate::db::{self, DatabaseUrl};
use crate::{Error, Result};

/// The advisory lock every migrate run takes. Any constant works (advisory locks are per
/// database); all migrators must agree on it.
pub const LOCK_KEY: i64 = 0x006d_6967_7261_7465;

impl Migrator {
    /// Runs `work` holding the session advisory lock, waiting up to `config.wait` for it.
    /// Every locked path first creates the history tables.
    pub(super) fn locked<T>(
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
}

/// Refuses a standby before anything is locked or written: on one every write fails, the
/// history tables' creation first. Asked on the session that would do the work, the one a
/// host list led to.
pub(super) fn refuse_standby(conn: &mut Conn, url: &DatabaseUrl) -> Result<()> {
    if diesel::select(pg_is_in_recovery()).get_result::<bool>(conn)? {
        return Err(db::standby(url));
    }
    Ok(())
}

/// The runner's timeouts, set before the migration's own SQL: a migration that needs
/// others sets them itself (`SET LOCAL lock_timeout = '10s';` at the top of up.sql).
pub(super) fn timeouts_sql(config: &Config, set: &str) -> String {
    let (lock, statement) = (
        config.lock_timeout.as_millis(),
        config.statement_timeout.as_millis(),
    );
    format!("{set} lock_timeout = '{lock}ms';\n{set} statement_timeout = '{statement}ms';\n")
}

/// `SET` (session-wide, there is no transaction) the timeouts of a migration that runs
/// outside a transaction.
pub(super) fn concurrent_timeouts_sql(config: &Config) -> String {
    let (lock, statement) = (
        config.concurrent_lock_timeout.as_millis(),
        config.concurrent_statement_timeout.as_millis(),
    );
    format!("SET lock_timeout = '{lock}ms';\nSET statement_timeout = '{statement}ms';\n")
}

/// What a failed step hit, as the retry decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// SQLSTATE 55P03, lock_not_available: a statement waited out `lock_timeout`.
    LockTimeout,
    /// Anything else: reported as it is.
    Other,
}

/// Tells lock timeouts from other failures, for one run.
///
/// diesel-async passes on no SQLSTATE: its `DatabaseErrorKind` names constraint violations,
/// serialization and read-only failures, 55P03 comes out as `Unknown`, and the code stays in
/// a private wrapper. English text would not match under another `lc_messages`. So a second
/// session provokes a lock timeout, on the advisory lock this run holds, and the server's
/// own message for it, in the language its sessions speak, is compared whole with the
/// server's message for the failed statement (never searched for in the report, which
/// quotes the statement). Asked once per run, and only after a failure.
pub(super) struct LockTimeouts {
    url: DatabaseUrl,
    message: Option<String>,
}

impl LockTimeouts {
    /// Recognises lock timeouts of migrations run on `url`.
    pub(super) fn new(url: &DatabaseUrl) -> Self {
        let url = url.clone();
        LockTimeouts { url, message: None }
    }

    /// What `failure` was.
    pub(super) fn cause(&mut self, failure: &Failure) -> Cause {
        let Some(said) = &failure.server_message else {
            return Cause::Other;
        };
        // A probe that fails (the server went away with this session) or does not time
        // out says nothing about this failure: it is reported as it is.
        match self.message() {
            Ok(timeout) if timeout == said => Cause::LockTimeout,
            _ => Cause::Other,
        }
    }

    /// The server's message for a lock timeout, probed on first use.
    fn message(&mut self) -> Result<&str> {
        if self.message.is_none() {
            self.message = Some(probe(&self.url)?);
        }
        Ok(self.message.as_deref().unwrap_or_default())
    }
}

/// Provokes a lock timeout from a second session and returns the server's message for it.
fn probe(url: &DatabaseUrl) -> Result<String> {
    let url = url.clone();
    tokio::runtime::Handle::current().block_on(async move {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_set_in_milliseconds_zero_meaning_none() {
        let config = Config {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_millis(1500),
            ..Config::default()
        };
        assert_eq!(
            timeouts_sql(&config, "SET LOCAL"),
            "SET LOCAL lock_timeout = '5000ms';\nSET LOCAL statement_timeout = '1500ms';\n"
        );
        assert_eq!(
            concurrent_timeouts_sql(&config),
            "SET lock_timeout = '0ms';\nSET statement_timeout = '0ms';\n"
        );
    }

    #[test]
    fn a_failure_without_a_server_message_is_no_lock_timeout_and_asks_nothing() {
        // No runtime and no server here: a probe would panic, so none may be made.
        let url = DatabaseUrl::parse("postgres://nobody@127.0.0.1:9/none").unwrap();
        let failure = Failure {
            error: Error::Migration("m/up.sql: no down.sql".into()),
            server_message: None,
        };
        assert_eq!(LockTimeouts::new(&url).cause(&failure), Cause::Other);
    }
}
