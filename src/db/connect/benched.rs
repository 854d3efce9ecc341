//! The hosts of host lists whose last attempt failed: tried after the others until one of
//! their attempts succeeds again. Without this, a frozen host first in the list costs every
//! new connection a whole connect timeout, for as long as it stays frozen; and a caller
//! with a shorter bound of its own (a pool's create timeout, a readiness check) gives up
//! while still waiting on it, and never reaches the host that would answer. pgjdbc keeps
//! such a memory too (`hostRecheckSeconds`); libpq does not.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

/// The hosts whose last attempt failed, each as `target_session_attrs` and the host as
/// written: a standby fails a read-write attempt and serves a read-only one.
static BENCHED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

fn benched() -> std::sync::MutexGuard<'static, HashSet<String>> {
    BENCHED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `hosts` in the order to try them: those not benched first, then the benched ones, each
/// group in the list's order.
pub(super) fn order<T>(attrs: &str, hosts: Vec<(String, T)>) -> Vec<(String, T)> {
    let benched = benched();
    let (later, first): (Vec<_>, Vec<_>) =
        (hosts.into_iter()).partition(|(host, _)| benched.contains(&key(attrs, host)));
    first.into_iter().chain(later).collect()
}

/// One attempt at one host of a list. Dropped before [`Attempt::succeeded`], because it
/// failed or because its caller stopped waiting, it benches the host.
pub(super) struct Attempt {
    key: Option<String>,
}

impl Attempt {
    /// An attempt at `host` under `attrs` begins.
    pub(super) fn new(attrs: &str, host: &str) -> Attempt {
        Attempt {
            key: Some(key(attrs, host)),
        }
    }

    /// The attempt says nothing about the host (the URL itself is wrong): as it was.
    pub(super) fn inconclusive(mut self) {
        self.key = None;
    }

    /// The host took the session: it is no longer benched.
    pub(super) fn succeeded(mut self) {
        if let Some(key) = self.key.take() {
            benched().remove(&key);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            benched().insert(key);
        }
    }
}

fn key(attrs: &str, host: &str) -> String {
    format!("{attrs} {host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<(String, ())> {
        names.iter().map(|h| (h.to_string(), ())).collect()
    }

    fn names(hosts: Vec<(String, ())>) -> Vec<String> {
        hosts.into_iter().map(|(h, _)| h).collect()
    }

    #[test]
    fn a_failed_or_abandoned_attempt_sends_its_host_last_until_it_succeeds() {
        // Host names of this test only: the memory is process-wide.
        let list = ["bench-a", "bench-b", "bench-c"];
        assert_eq!(names(order("read-write", hosts(&list))), list);
        drop(Attempt::new("read-write", "bench-a"));
        assert_eq!(
            names(order("read-write", hosts(&list))),
            ["bench-b", "bench-c", "bench-a"]
        );
        // Another target_session_attrs keeps its own memory.
        assert_eq!(names(order("any", hosts(&list))), list);
        Attempt::new("read-write", "bench-a").succeeded();
        assert_eq!(names(order("read-write", hosts(&list))), list);
    }
}
