//! Diesel's instrumentation hook, bridged to `tracing`: every connection `db` opens reports
//! each finished statement as one event (target `app::instrument`, `debug`, or `warn` when
//! slower than `DATABASE_SLOW_QUERY_MS`) with its SQL and duration, never its bind values,
//! which may hold secrets. For subscribers that process spans, each statement is also a
//! `query` span and each transaction a `transaction` span. The library only emits: the
//! binaries, or your application, choose a subscriber. [`QueryCounter`] counts the same
//! statements for tests.

use std::borrow::Cow;
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
    running: VecDeque<Running>,
    transactions: Vec<Span>,
    counter: Option<QueryCounter>,
    /// Why this connection must not be reused, once a statement said its server went away
    /// or is read-only (see [`crate::Error::Unavailable`]): the pool reads it back.
    lost: Option<String>,
    /// Whether the session began read-only (a replica): then read-only later is no news.
    began_read_only: bool,
    /// [`crate::error::unavailable_seen`] when the pool last checked this connection.
    checked_at: u64,
}

/// A statement sent and not answered yet.
#[derive(Debug)]
struct Running {
    started: Instant,
    span: Span,
    /// Its SQL, when the span wanted it: rendered once for the span and the event.
    sql: Option<String>,
}

impl QueryTracing {
    /// Warns about statements that take `slow` or longer.
    pub fn new(slow: Duration) -> Self {
        QueryTracing {
            slow,
            running: VecDeque::new(),
            transactions: Vec::new(),
            counter: None,
            lost: None,
            began_read_only: false,
            checked_at: crate::error::unavailable_seen(),
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

    /// Why the connection is no use any more, if a statement on it said so: lost or
    /// terminated (a crash, a failover), or refused a write on a server now read-only. The
    /// socket may still look open (a standby answers; a goodbye not read yet), so the pool
    /// asks this too, not only whether the connection is closed.
    pub(crate) fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// This bridge for a session that began read-only, or not.
    pub(crate) fn began(mut self, read_only: bool) -> Self {
        self.began_read_only = read_only;
        self
    }

    /// Whether the session began read-only.
    pub(crate) fn began_read_only(&self) -> bool {
        self.began_read_only
    }

    /// True once after the process met an `Error::Unavailable` that this connection has not
    /// been checked since: a failover's errors may arrive on another connection, or in a
    /// statement's rows, past this bridge (diesel-async reports a statement finished before
    /// its rows, and an error among them, arrive).
    pub(crate) fn due_for_check(&mut self) -> bool {
        let seen = crate::error::unavailable_seen();
        std::mem::replace(&mut self.checked_at, seen) != seen
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
        Field::Done => mask_secrets(&sql.out).into_owned(),
        _ => "(SQL not shown: unexpected form)".to_owned(),
    }
}

/// `sql` with every string literal that may hold a secret shown as `'***'`: in a statement
/// that mentions `password` anywhere (`ALTER ROLE .. PASSWORD E'..'`, `OPTIONS ("password"
/// $$..$$)`), every literal, whatever its spelling; elsewhere, a literal holding a URL with
/// user info (a conninfo for dblink or a subscription). Values travel as binds, which are
/// never shown; this is for secrets written into SQL text, in a migration say. Masking
/// every literal of such a statement, rather than the one after PASSWORD, leaves no
/// spelling of PostgreSQL's (E'', U&'', dollar quotes, quoted names) to get past it.
pub fn mask_secrets(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    let secret_statement = lower.contains("password");
    if !secret_statement && !lower.contains("://") {
        return Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &sql[i..];
        let (len, literal) = if rest.starts_with("--") {
            (rest.find('\n').unwrap_or(rest.len()), false)
        } else if rest.starts_with("/*") {
            (rest.find("*/").map_or(rest.len(), |end| end + 2), false)
        } else if let Some(tag) = dollar_tag(rest) {
            let body = rest[tag.len()..].find(tag);
            (body.map_or(rest.len(), |end| end + 2 * tag.len()), true)
        } else if bytes[i] == b'\'' {
            // E'..' takes backslash escapes; '' is a quote in either kind.
            let escapes = i > 0 && bytes[i - 1].eq_ignore_ascii_case(&b'e');
            (literal_len(&bytes[i..], escapes), true)
        } else {
            (rest.chars().next().map_or(1, char::len_utf8), false)
        };
        let text = &lower[i..i + len];
        let url = text.contains("://") && text.contains('@');
        if literal && (secret_statement || url) {
            out.push_str("'***'");
        } else {
            out.push_str(&rest[..len]);
        }
        i += len;
    }
    Cow::Owned(out)
}

/// The `$tag$` opening a dollar-quoted string at the start of `text`, if one does.
fn dollar_tag(text: &str) -> Option<&str> {
    let body = text.strip_prefix('$')?;
    let end = body.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    let starts_like_tag = !body.starts_with(|c: char| c.is_ascii_digit());
    (body[end..].starts_with('$') && starts_like_tag).then(|| &text[..end + 2])
}

/// The length of the quoted literal at the start of `bytes`, quotes included (all of it
/// when unterminated).
fn literal_len(bytes: &[u8], escapes: bool) -> usize {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
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

impl QueryTracing {
    /// What a statement's event hangs under: the open transaction, else whatever span the
    /// caller is in. Never the statement's own span, whose `sql` field a text subscriber
    /// would print again in front of the event's.
    fn parent(&self) -> Option<tracing::Id> {
        match self.transactions.last() {
            Some(tx) => tx.id(),
            None => Span::current().id(),
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
                // Rendering the SQL costs; only for a subscriber that wants it. The event
                // at the end reuses it.
                let mut sql = None;
                if !span.is_disabled() {
                    let text = sql_of(query);
                    span.record("sql", text.as_str());
                    sql = Some(text);
                }
                let started = Instant::now();
                self.running.push_back(Running { started, span, sql });
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let Some(mut running) = self.running.pop_front() else {
                    return;
                };
                let took = running.started.elapsed();
                let ms = millis(took);
                running.span.record("ms", ms);
                if let Some(error) = error {
                    running.span.record("error", tracing::field::display(error));
                    if self.lost.is_none() {
                        self.lost = crate::error::unavailable(error);
                    }
                }
                // One event per statement, which any subscriber prints (spans need span
                // processing): a warning when slow, else at debug. Field values are only
                // evaluated when the event is enabled, so the SQL is rendered only then.
                let mut sql = || running.sql.take().unwrap_or_else(|| sql_of(query));
                let error = error.map(tracing::field::display);
                if took >= self.slow {
                    let threshold = self.slow.as_millis() as u64;
                    tracing::warn!(target: TARGET, parent: self.parent(), sql = %sql(), ms, threshold_ms = threshold, error,
                        "slow query: {ms:.0} ms (DATABASE_SLOW_QUERY_MS is {threshold})");
                } else {
                    tracing::debug!(target: TARGET, parent: self.parent(), sql = %sql(), ms, error, "query");
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

/// Reports a statement sent past Diesel, on a tokio-postgres client of our own, as the
/// bridge reports Diesel's: the same `query` event with its SQL (secrets masked), duration
/// and error. For statements without bind values (the simple protocol).
pub(crate) async fn traced<T, E: std::fmt::Display>(
    sql: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let out = work.await;
    let ms = millis(started.elapsed());
    let error = out.as_ref().err().map(tracing::field::display);
    tracing::debug!(target: TARGET, sql = %mask_secrets(sql), ms, error, "query");
    out
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

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn passwords_written_into_sql_are_masked() {
        let masked = [
            (
                "ALTER ROLE app PASSWORD 'hunter2'",
                "ALTER ROLE app PASSWORD '***'",
            ),
            (
                "CREATE ROLE r LOGIN ENCRYPTED password 'it''s'",
                "CREATE ROLE r LOGIN ENCRYPTED password '***'",
            ),
            (
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'pw')",
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user '***', password '***')",
            ),
            (
                "-- the role's login\nALTER ROLE a PASSWORD 'x'",
                "-- the role's login\nALTER ROLE a PASSWORD '***'",
            ),
            (
                "SELECT dblink_connect('host=db password=pw')",
                "SELECT dblink_connect('***')",
            ),
            (
                "SELECT dblink_connect(E'postgres://u:p\\'w@db/x')",
                "SELECT dblink_connect(E'***')",
            ),
            // Every spelling of a literal PostgreSQL takes.
            (
                "ALTER ROLE a PASSWORD E'p\\'w'",
                "ALTER ROLE a PASSWORD E'***'",
            ),
            (
                "ALTER ROLE a PASSWORD U&'p\\0077'",
                "ALTER ROLE a PASSWORD U&'***'",
            ),
            (
                "ALTER ROLE a PASSWORD $$pw$$",
                "ALTER ROLE a PASSWORD '***'",
            ),
            (
                "ALTER ROLE a PASSWORD $t$p$$w$t$",
                "ALTER ROLE a PASSWORD '***'",
            ),
            (
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" 'pw')",
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" '***')",
            ),
        ];
        for (sql, want) in masked {
            assert_eq!(mask_secrets(sql), want);
        }
    }

    #[test]
    fn other_sql_is_shown_as_it_is() {
        for sql in [
            "SELECT \"users\".\"email\" FROM \"users\" WHERE \"users\".\"email\" = $1",
            "UPDATE t SET note = 'hello' -- a comment's quote",
            "CREATE FUNCTION f() RETURNS text AS $$ SELECT 'x' $$ LANGUAGE sql",
            "ALTER TABLE users ADD COLUMN password_hash TEXT",
            "SELECT 'unterminated",
        ] {
            assert_eq!(mask_secrets(sql), sql);
        }
    }
}
