//! Counting the statements a connection sends, through Diesel's instrumentation hook: the
//! test-side proof that a loader's query count does not grow with the number of parents.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncConnection, AsyncPgConnection};

/// A shared count of statements started on one connection (BEGIN and COMMIT included).
#[derive(Debug, Clone, Default)]
pub struct QueryCounter(Arc<AtomicUsize>);

impl QueryCounter {
    /// Installs a fresh counter on `conn`, replacing any earlier instrumentation.
    pub fn install(conn: &mut AsyncPgConnection) -> QueryCounter {
        let counter = QueryCounter::default();
        conn.set_instrumentation(counter.clone());
        counter
    }

    /// Statements counted so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Statements counted while `work` ran.
    pub async fn during<T>(&self, work: impl Future<Output = T>) -> (T, usize) {
        let before = self.get();
        let out = work.await;
        (out, self.get() - before)
    }
}

impl Instrumentation for QueryCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}
