//! Diesel's instrumentation hook, bridged to `tracing`: every connection `db` opens reports
//! each statement as a `query` span (its SQL and duration, never its bind values, which may
//! hold secrets), transactions as `transaction` spans, and a `warn` event for a statement
//! slower than `DATABASE_SLOW_QUERY_MS`. The library only emits: the binaries, or your
//! application, choose a subscriber. [`QueryCounter`] counts the same events for tests.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::Span;
use tracing::field::Empty;

/// The target of every span and event here, kept when the module moved under `db`:
/// `RUST_LOG=app::instrument=debug` shows each statement.
pub const TARGET: &str = "app::instrument";

/// The bridge installed on every connection; see the module docs.
#[derive(Debug)]
pub struct QueryTracing {
    slow: Duration,
    /// Statements sent and not yet answered, oldest first: with pipelining several are in
    /// flight on one connection, and the server answers them in order.
    running: VecDeque<(Instant, Span)>,
    transactions: Vec<Span>,
    counter: Option<QueryCounter>,
}

impl QueryTracing {
    /// Warns about statements that take `slow` or longer.
    pub fn new(slow: Duration) -> Self {
        QueryTracing {
            slow,
            running: VecDeque::new(),
            transactions: Vec::new(),
            counter: None,
        }
    }

    /// The threshold from `DATABASE_SLOW_QUERY_MS` (500 ms when unset).
    pub fn from_env() -> crate::Result<Self> {
        let ms = crate::settings::SLOW_QUERY_MS.get()?;
        Ok(QueryTracing::new(Duration::from_millis(ms)))
    }
}

impl QueryTracing {
    /// Statements sent on this connection and not answered yet. Above 0 when the connection
    /// goes back to its pool, a caller dropped a query mid-flight (a timeout, a cancelled
    /// request): its answer is still to come, so the connection is not handed out again.
    pub(crate) fn in_flight(&self) -> usize {
        self.running.len()
    }
}

/// `d` in milliseconds to the microsecond, which prints short (`1312.553`).
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A statement's SQL without its bind values, read from Diesel's `Debug` form
/// (`Query { sql: "..", binds: [..] }`, or a bare `".."` for SQL sent as text). The SQL is
/// the first field, a quoted string: its end is the first unescaped `"`, which no text in
/// the SQL or in a value can move, and formatting stops there, so the binds are never
/// even rendered. (The `Display` form, `<sql> -- binds: [..]`, cannot be split safely: a
/// value or the SQL may contain ` -- binds: ` itself.) Any other shape is not shown.
fn sql_of(query: &dyn diesel::connection::DebugQuery) -> String {
    use std::fmt::Write;
    let mut sql = SqlField::default();
    let _ = write!(sql, "{query:?}");
    match sql.state {
        Field::Done => sql.out,
        _ => "(SQL not shown: unexpected form)".to_owned(),
    }
}

/// Where [`SqlField`] is in `Query { sql: "..` as the pieces arrive.
#[derive(Debug, Default, PartialEq)]
enum Field {
    /// Before the opening quote; holds what came so far.
    #[default]
    Prefix,
    /// Inside the string.
    Text,
    /// After a backslash.
    Escape,
    /// Inside `\u{..}`, the hex digits so far.
    Unicode(String),
    /// The closing quote was seen: the SQL is complete.
    Done,
    /// Not the form expected.
    Refused,
}

/// A `fmt::Write` sink that unescapes the first Debug-quoted string and fails once it ends,
/// which stops the formatting before any bind value.
#[derive(Default)]
struct SqlField {
    prefix: String,
    out: String,
    state: Field,
}

impl std::fmt::Write for SqlField {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        for c in piece.chars() {
            if matches!(self.state, Field::Done | Field::Refused) {
                return Err(std::fmt::Error);
            }
            self.state = match std::mem::take(&mut self.state) {
                Field::Prefix if c == '"' => match self.prefix.as_str() {
                    "" | "Query { sql: " => Field::Text,
                    _ => Field::Refused,
                },
                // Diesel's own prefix is 13 characters: past that, not its form.
                Field::Prefix if self.prefix.len() > 16 => Field::Refused,
                Field::Prefix => {
                    self.prefix.push(c);
                    Field::Prefix
                }
                Field::Text => match c {
                    '"' => Field::Done,
                    '\\' => Field::Escape,
                    c => {
                        self.out.push(c);
                        Field::Text
                    }
                },
                Field::Escape => match c {
                    'u' => Field::Unicode(String::new()),
                    c => {
                        let c = match c {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            '0' => '\0',
                            c => c,
                        };
                        self.out.push(c);
                        Field::Text
                    }
                },
                Field::Unicode(mut hex) => match c {
                    '{' => Field::Unicode(hex),
                    '}' => {
                        let c = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        self.out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                        Field::Text
                    }
                    c if hex.len() < 6 => {
                        hex.push(c);
                        Field::Unicode(hex)
                    }
                    _ => Field::Refused,
                },
                done => done,
            };
        }
        match self.state {
            Field::Done | Field::Refused => Err(std::fmt::Error),
            _ => Ok(()),
        }
    }
}

impl Instrumentation for QueryTracing {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                if let Some(counter) = &self.counter {
                    counter.0.fetch_add(1, Ordering::Relaxed);
                }
                let span = match self.transactions.last() {
                    Some(tx) => {
                        tracing::debug_span!(target: TARGET, parent: tx, "query", sql = Empty, ms = Empty, error = Empty)
                    }
                    None => {
                        tracing::debug_span!(target: TARGET, "query", sql = Empty, ms = Empty, error = Empty)
                    }
                };
                // Rendering the SQL costs; only for a subscriber that wants it.
                if !span.is_disabled() {
                    span.record("sql", sql_of(query));
                }
                self.running.push_back((Instant::now(), span));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let Some((started, span)) = self.running.pop_front() else {
                    return;
                };
                let took = started.elapsed();
                let ms = millis(took);
                span.record("ms", ms);
                if let Some(error) = error {
                    span.record("error", tracing::field::display(error));
                }
                if took >= self.slow {
                    let threshold = self.slow.as_millis() as u64;
                    tracing::warn!(target: TARGET, parent: &span, sql = %sql_of(query), ms, threshold_ms = threshold,
                        "slow query: {ms:.0} ms (DATABASE_SLOW_QUERY_MS is {threshold})");
                }
            }
            InstrumentationEvent::BeginTransaction { depth, .. } => {
                let depth = depth.get();
                let span = match self.transactions.last() {
                    Some(outer) => {
                        tracing::debug_span!(target: TARGET, parent: outer, "transaction", depth, outcome = Empty)
                    }
                    None => {
                        tracing::debug_span!(target: TARGET, "transaction", depth, outcome = Empty)
                    }
                };
                self.transactions.push(span);
            }
            InstrumentationEvent::CommitTransaction { .. } => {
                if let Some(span) = self.transactions.pop() {
                    span.record("outcome", "commit");
                }
            }
            InstrumentationEvent::RollbackTransaction { .. } => {
                if let Some(span) = self.transactions.pop() {
                    span.record("outcome", "rollback");
                }
            }
            // Connection events carry the URL, password and all: never recorded.
            _ => {}
        }
    }
}

/// A shared count of statements started on one connection (BEGIN and COMMIT included).
#[derive(Debug, Clone, Default)]
pub struct QueryCounter(Arc<AtomicUsize>);

impl QueryCounter {
    /// Installs a fresh counter on `conn`, with the tracing bridge as every connection has it.
    pub fn install(conn: &mut AsyncPgConnection) -> QueryCounter {
        let counter = QueryCounter::default();
        let mut tracing = QueryTracing::new(Duration::from_millis(
            crate::settings::SLOW_QUERY_MS.default,
        ));
        tracing.counter = Some(counter.clone());
        conn.set_instrumentation(tracing);
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
