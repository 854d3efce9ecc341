//! Retrying idempotent work through a passing outage: a restart, a failover. Only
//! [`Error::Unavailable`] is retried, a bounded number of times, with jittered exponential
//! backoff, within an overall deadline; every other error returns at once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How [`retry`] retries: how often, how long it waits between attempts, and for how long
/// in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts, the first included (at least 1).
    pub attempts: u32,
    /// The longest wait after the first failure; each later one may be twice the last.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// The whole budget, attempts and waits, from the first attempt: an attempt still
    /// running then is dropped (the pool cancels its statement) and the call fails.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 20 attempts, 100 ms doubling to 2 s, within 30 s: enough for a failover of some
    /// seconds (this project's test measures one), short of a client's own timeout.
    fn default() -> Self {
        RetryPolicy {
            attempts: 20,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The longest wait after `failures` failures (1 or more): `first_delay` doubled for
    /// each failure after the first, at most `max_delay`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let delay = self.first_delay.saturating_mul(1 << doublings);
        delay.min(self.max_delay)
    }

    /// The wait after `failures` failures for a draw `unit` in `[0, 1)`: between half the
    /// ceiling and the ceiling, so clients that failed together do not return together,
    /// and none comes back at once.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Runs `work` until it succeeds, fails with an error other than [`Error::Unavailable`],
/// or `policy` runs out (attempts or deadline): then the last error is returned. Each
/// retry is a `warn` event with the attempt and the reason.
///
/// For idempotent work only: a write whose connection was lost may have committed, and
/// runs again. Make the write safe to repeat (a key of the caller's, then
/// `ON CONFLICT DO NOTHING` or a look-up on conflict) before you wrap it. Each attempt
/// takes its own connection, so the pool's replacement for a lost one is used.
///
/// ```no_run
/// # async fn example(pool: &app::db::Pool) -> app::Result<()> {
/// use app::db::{self, RetryPolicy};
/// use app::models::{Email, NewUser, User};
/// use app::Error;
///
/// // The email is the key: a retry after a create that did commit finds the row.
/// let email = Email::parse("ada@example.com")?;
/// let new = NewUser { email: &email, display_name: "Ada" };
/// let user = db::retry(&RetryPolicy::default(), || async {
///     let conn = db::checkout(pool).await?;
///     match User::create(&conn, &new).await {
///         Err(Error::Conflict { .. }) => User::by_email(&conn, email.as_str()).await,
///         created => created,
///     }
/// })
/// .await?;
/// # let _ = user;
/// # Ok(())
/// # }
/// ```
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut work: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let out_of_time = |why: &str| Error::Unavailable {
        reason: format!(
            "{why}, the retry deadline of {:?} has passed",
            policy.deadline
        ),
    };
    let mut failures = 0;
    loop {
        let left = policy.deadline.saturating_sub(started.elapsed());
        let err = match tokio::time::timeout(left, work()).await {
            Ok(Err(err @ Error::Unavailable { .. })) => err,
            Ok(done) => return done,
            Err(_) => return Err(out_of_time("an attempt was still running")),
        };
        failures += 1;
        let wait = policy.delay(failures, draw());
        if failures >= policy.attempts || started.elapsed() + wait >= policy.deadline {
            return Err(err);
        }
        tracing::warn!(attempt = failures, wait_ms = wait.as_millis() as u64, error = %err,
            "retrying after the database was unavailable");
        tokio::time::sleep(wait).await;
    }
}

/// A number in `[0, 1)`, different for each call and each process: std's hasher keys are
/// random, which is all the jitter needs (no random-number crate for one draw).
fn draw() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            deadline: Duration::from_secs(5),
        }
    }

    fn unavailable() -> Error {
        Error::Unavailable {
            reason: "the connection to the server was lost".into(),
        }
    }

    #[test]
    fn the_ceiling_doubles_from_the_first_delay_up_to_the_cap() {
        let ms = |n| policy().ceiling(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 350, 350]);
        assert_eq!(policy().ceiling(u32::MAX), Duration::from_millis(350));
    }

    #[test]
    fn each_wait_lies_between_half_the_ceiling_and_the_ceiling() {
        let p = policy();
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(150));
        assert_eq!(p.delay(2, 1.0), Duration::from_millis(200));
        for _ in 0..1000 {
            let unit = draw();
            assert!((0.0..1.0).contains(&unit), "{unit}");
            let wait = p.delay(3, unit);
            assert!(wait >= Duration::from_millis(175) && wait <= Duration::from_millis(350));
        }
        let draws: std::collections::HashSet<u64> = (0..100).map(|_| draw().to_bits()).collect();
        assert!(draws.len() > 90, "the draws vary: {}", draws.len());
    }

    #[tokio::test]
    async fn unavailable_is_retried_until_the_work_succeeds() {
        let mut calls = 0;
        let got = retry(&policy(), || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(unavailable()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(got.unwrap(), 3);
    }

    #[tokio::test]
    async fn other_errors_return_at_once() {
        let mut calls = 0;
        let got: Result<()> = retry(&policy(), || {
            calls += 1;
            async { Err(Error::NotFound) }
        })
        .await;
        assert!(matches!(got, Err(Error::NotFound)));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn attempts_and_the_deadline_bound_the_retries() {
        let mut calls = 0;
        let got: Result<()> = retry(&policy(), || {
            calls += 1;
            async { Err(unavailable()) }
        })
        .await;
        assert!(matches!(got, Err(Error::Unavailable { .. })));
        assert_eq!(calls, 5, "attempts");

        let short = RetryPolicy {
            attempts: 1000,
            deadline: Duration::from_millis(400),
            ..policy()
        };
        let started = Instant::now();
        let got: Result<()> = retry(&short, || async { Err(unavailable()) }).await;
        assert!(matches!(got, Err(Error::Unavailable { .. })));
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );

        // An attempt that hangs is dropped at the deadline.
        let started = Instant::now();
        let got: Result<()> = retry(&short, std::future::pending).await;
        let Err(Error::Unavailable { reason }) = got else {
            panic!("{got:?}")
        };
        assert!(reason.contains("deadline"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
