//! When a replica may serve reads, as plain data and no I/O, so each rule is a unit test.
//! The router feeds it the primary's WAL position over time ([`Samples`]) and what each
//! replica says of itself ([`Probe`]); it answers serve, not now, or bench.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::WalPosition;

/// How often a replica is checked; between checks the last answer stands.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The primary's flush position as seen over time, oldest first: a position is kept with
/// the first and the last time it was seen, so an idle primary is one entry.
#[derive(Debug, Default)]
pub(super) struct Samples(VecDeque<Sample>);

#[derive(Debug, Clone, Copy)]
struct Sample {
    lsn: WalPosition,
    /// When the primary was first seen at `lsn` (the answer's arrival).
    first_seen: Instant,
    /// When it was last seen still at `lsn` (the question's departure).
    last_seen: Instant,
}

impl Samples {
    /// Records that the primary was at `lsn` between `asked` and `answered`; forgets what
    /// is older than `keep`, but always keeps the newest.
    pub(super) fn record(
        &mut self,
        lsn: WalPosition,
        asked: Instant,
        answered: Instant,
        keep: Duration,
    ) {
        // Lower than before: another server answers for the primary now (a failover). What
        // was learnt of the old one says nothing of it.
        if self.0.back().is_some_and(|last| lsn < last.lsn) {
            self.0.clear();
        }
        match self.0.back_mut() {
            Some(last) if last.lsn == lsn => last.last_seen = asked,
            _ => self.0.push_back(Sample {
                lsn,
                first_seen: answered,
                last_seen: asked,
            }),
        }
        while self.0.len() > 1 && self.0[0].last_seen + keep < answered {
            self.0.pop_front();
        }
    }

    /// When the newest sample was taken, if any.
    pub(super) fn taken(&self) -> Option<Instant> {
        self.0.back().map(|s| s.last_seen)
    }

    /// The latest instant by which the primary had flushed no more than `replayed`: the
    /// replica has everything the primary had then.
    fn fresh_as_of(&self, replayed: WalPosition) -> Option<Instant> {
        self.0
            .iter()
            .rev()
            .find(|s| s.lsn <= replayed)
            .map(|s| s.last_seen)
    }

    /// The earliest instant at which the primary was seen past `replayed`: the replica has
    /// lacked that WAL at least since then.
    fn behind_since(&self, replayed: WalPosition) -> Option<Instant> {
        self.0
            .iter()
            .find(|s| s.lsn > replayed)
            .map(|s| s.first_seen)
    }
}

/// What one check of a replica found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    /// `pg_is_in_recovery()`: false once it has been promoted.
    pub recovering: bool,
    /// `pg_last_wal_replay_lsn()`.
    pub replayed: Option<WalPosition>,
    /// A WAL receiver runs and streams (or runs, where the role may not see its status).
    pub streaming: bool,
}

/// The bounds the rules apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub max_lag: Duration,
    pub retry_after: Duration,
}

/// What a read may do with a replica before any round trip.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Leave it out: benched, or stale, or another request is checking it.
    Skip,
    /// The last check stands and says it is fresh.
    Cached,
    /// This request checks it (and must report through [`Health::judge`] or
    /// [`Health::release`]).
    Check,
}

/// The outcome of a check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Fresh: it takes reads.
    Serve,
    /// Maybe behind, not known to be: the primary serves this read, the next check decides.
    NotNow,
    /// Left out for the retry time, for this reason.
    Bench(String),
}

/// One replica's state between checks.
#[derive(Debug, Default)]
pub(super) struct Health {
    benched_until: Option<Instant>,
    checking: bool,
    checked_at: Option<Instant>,
    /// It had replayed everything the primary had flushed by this instant.
    fresh_as_of: Option<Instant>,
    /// The first check that found no WAL streaming in.
    not_streaming_since: Option<Instant>,
}

impl Health {
    /// Decides what a read may do now. Only one request at a time checks a replica: when a
    /// bench ends, one request probes it while the others keep reading elsewhere.
    pub(super) fn claim(&mut self, now: Instant, bounds: Bounds) -> Claim {
        if self.checking || self.benched_until.is_some_and(|t| now < t) {
            return if self.checking && self.fresh(now, bounds) {
                Claim::Cached
            } else {
                Claim::Skip
            };
        }
        let due = self.benched_until.take().is_some()
            || self.checked_at.is_none_or(|t| now >= t + CHECK_EVERY);
        if due {
            self.checking = true;
            Claim::Check
        } else if self.fresh(now, bounds) {
            Claim::Cached
        } else {
            Claim::Skip
        }
    }

    /// The last check's answer, aged to `now`.
    fn fresh(&self, now: Instant, bounds: Bounds) -> bool {
        self.fresh_as_of
            .is_some_and(|t| now.saturating_duration_since(t) <= bounds.max_lag)
    }

    /// Applies the rules to a check made at `now` (after `samples` was brought up to date).
    pub(super) fn judge(
        &mut self,
        probe: Probe,
        samples: &Samples,
        now: Instant,
        bounds: Bounds,
    ) -> Verdict {
        self.checking = false;
        self.checked_at = Some(now);
        if !probe.recovering {
            return self.bench(
                now,
                bounds,
                "it is not in recovery: promoted, or no replica at all".into(),
            );
        }
        if probe.streaming {
            self.not_streaming_since = None;
        } else {
            let since = *self.not_streaming_since.get_or_insert(now);
            let for_how_long = now.saturating_duration_since(since);
            if for_how_long >= bounds.max_lag {
                return self.bench(
                    now,
                    bounds,
                    format!(
                        "no WAL streaming in from the primary for {:.1}s (cut off, or its \
                         primary_conninfo is wrong)",
                        for_how_long.as_secs_f64()
                    ),
                );
            }
        }
        let Some(replayed) = probe.replayed else {
            return Verdict::NotNow;
        };
        if let Some(t) = samples.fresh_as_of(replayed) {
            self.fresh_as_of = Some(self.fresh_as_of.map_or(t, |old| old.max(t)));
        }
        if self.fresh(now, bounds) {
            return Verdict::Serve;
        }
        match samples.behind_since(replayed) {
            Some(since) if now.saturating_duration_since(since) > bounds.max_lag => {
                let behind = now.saturating_duration_since(since);
                self.bench(
                    now,
                    bounds,
                    format!(
                        "{:.1}s behind the primary (DATABASE_REPLICA_MAX_LAG_MS is {})",
                        behind.as_secs_f64(),
                        bounds.max_lag.as_millis()
                    ),
                )
            }
            _ => Verdict::NotNow,
        }
    }

    /// Leaves the replica out for the retry time.
    pub(super) fn bench(&mut self, now: Instant, bounds: Bounds, why: String) -> Verdict {
        self.checking = false;
        self.checked_at = Some(now);
        self.fresh_as_of = None;
        self.benched_until = Some(now + bounds.retry_after);
        Verdict::Bench(why)
    }

    /// A check given up without a verdict (its pool was busy, the primary gave no
    /// position, its caller went away): nothing is concluded; the next check comes after
    /// [`CHECK_EVERY`], as after any other.
    pub(super) fn release(&mut self, now: Instant) {
        self.checking = false;
        self.checked_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_lag: Duration::from_millis(1000),
        retry_after: Duration::from_millis(5000),
    };

    fn lsn(n: u64) -> WalPosition {
        WalPosition::new(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn streaming(replayed: u64) -> Probe {
        Probe {
            recovering: true,
            replayed: Some(lsn(replayed)),
            streaming: true,
        }
    }

    /// Samples the primary at `at` (asked and answered then) and judges `probe`.
    fn check(h: &mut Health, s: &mut Samples, at: Instant, primary: u64, probe: Probe) -> Verdict {
        s.record(lsn(primary), at, at, ms(10_000));
        assert_eq!(h.claim(at, BOUNDS), Claim::Check);
        h.judge(probe, s, at, BOUNDS)
    }

    #[test]
    fn a_caught_up_replica_of_an_idle_primary_keeps_serving() {
        let (mut h, mut s, t0) = (Health::default(), Samples::default(), Instant::now());
        assert_eq!(
            check(&mut h, &mut s, t0, 100, streaming(100)),
            Verdict::Serve
        );
        // 54 s without a write: still fresh.
        let idle = t0 + Duration::from_secs(54);
        assert_eq!(
            check(&mut h, &mut s, idle, 100, streaming(100)),
            Verdict::Serve
        );
        // Then a write the replica has not replayed yet, after another idle spell.
        let t1 = idle + Duration::from_secs(54);
        assert_eq!(
            check(&mut h, &mut s, t1, 200, streaming(100)),
            Verdict::NotNow
        );
        let t2 = t1 + ms(150);
        assert_eq!(
            check(&mut h, &mut s, t2, 200, streaming(200)),
            Verdict::Serve
        );
    }

    #[test]
    fn a_cut_off_replica_is_benched_once_behind_longer_than_the_bound() {
        let (mut h, mut s, t0) = (Health::default(), Samples::default(), Instant::now());
        assert_eq!(
            check(&mut h, &mut s, t0, 100, streaming(100)),
            Verdict::Serve
        );
        // Streaming still reported (the receiver has not noticed), the primary moves on.
        let mut t = t0;
        let mut verdict = Verdict::Serve;
        for step in 1..=20 {
            t = t0 + ms(150) * step;
            verdict = check(&mut h, &mut s, t, 100 + u64::from(step), streaming(100));
            if matches!(verdict, Verdict::Bench(_)) {
                break;
            }
            // Reads it still took were at most the bound stale.
            if verdict == Verdict::Serve {
                assert!(t - t0 <= BOUNDS.max_lag);
            }
        }
        assert!(matches!(verdict, Verdict::Bench(ref why) if why.contains("behind the primary")));
        assert!(t - t0 <= BOUNDS.max_lag + ms(2 * 150));
        // Benched: left out until the retry time, then one request checks it.
        assert_eq!(h.claim(t + ms(10), BOUNDS), Claim::Skip);
        let later = t + BOUNDS.retry_after;
        assert_eq!(h.claim(later, BOUNDS), Claim::Check);
        assert_eq!(
            h.claim(later, BOUNDS),
            Claim::Skip,
            "a second request waits"
        );
    }

    #[test]
    fn no_wal_streaming_in_benches_after_the_bound_even_on_an_idle_primary() {
        let (mut h, mut s, t0) = (Health::default(), Samples::default(), Instant::now());
        let cut = Probe {
            streaming: false,
            ..streaming(100)
        };
        assert_eq!(check(&mut h, &mut s, t0, 100, cut), Verdict::Serve);
        let t1 = t0 + ms(500);
        assert_eq!(check(&mut h, &mut s, t1, 100, cut), Verdict::Serve);
        let t2 = t0 + BOUNDS.max_lag;
        let verdict = check(&mut h, &mut s, t2, 100, cut);
        assert!(matches!(verdict, Verdict::Bench(ref why) if why.contains("no WAL streaming")));
    }

    #[test]
    fn a_promoted_replica_is_never_served() {
        let (mut h, mut s, t0) = (Health::default(), Samples::default(), Instant::now());
        let promoted = Probe {
            recovering: false,
            ..streaming(100)
        };
        let verdict = check(&mut h, &mut s, t0, 100, promoted);
        assert!(matches!(verdict, Verdict::Bench(ref why) if why.contains("promoted")));
        assert_eq!(h.claim(t0 + ms(200), BOUNDS), Claim::Skip);
    }

    #[test]
    fn between_checks_the_last_answer_stands_and_ages() {
        let (mut h, mut s, t0) = (Health::default(), Samples::default(), Instant::now());
        assert_eq!(
            check(&mut h, &mut s, t0, 100, streaming(100)),
            Verdict::Serve
        );
        assert_eq!(h.claim(t0 + ms(50), BOUNDS), Claim::Cached);
        // Another request is checking: the cached answer serves while it is young enough.
        assert_eq!(h.claim(t0 + ms(150), BOUNDS), Claim::Check);
        assert_eq!(h.claim(t0 + ms(160), BOUNDS), Claim::Cached);
        assert_eq!(h.claim(t0 + ms(1500), BOUNDS), Claim::Skip);
        h.release(t0 + ms(1550));
        assert_eq!(
            h.claim(t0 + ms(1600), BOUNDS),
            Claim::Skip,
            "stale, checked 50 ms ago"
        );
        assert_eq!(h.claim(t0 + ms(1650), BOUNDS), Claim::Check);
    }

    #[test]
    fn samples_keep_one_entry_for_an_idle_primary_and_forget_old_ones() {
        let (mut s, t0) = (Samples::default(), Instant::now());
        for i in 0..100 {
            s.record(lsn(7), t0 + ms(i * 100), t0 + ms(i * 100), ms(2000));
        }
        assert_eq!(s.0.len(), 1);
        for i in 0..100 {
            let at = t0 + ms(10_000 + i * 100);
            s.record(lsn(8 + i), at, at, ms(2000));
        }
        assert!(s.0.len() <= 22, "{} samples kept", s.0.len());
        assert_eq!(s.fresh_as_of(lsn(7)), None, "the idle entry was forgotten");
    }

    #[test]
    fn a_primary_position_that_goes_back_starts_the_samples_afresh() {
        let (mut s, t0) = (Samples::default(), Instant::now());
        s.record(lsn(500), t0, t0, ms(2000));
        let t1 = t0 + ms(100);
        s.record(lsn(80), t1, t1, ms(2000));
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.fresh_as_of(lsn(80)), Some(t1));
        assert_eq!(s.behind_since(lsn(80)), None);
    }
}
