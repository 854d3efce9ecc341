//! The tracing bridge every connection carries (`src/db/instrument.rs`), read back through a
//! capturing subscriber and from the binaries' stderr: an event (and a span) per statement
//! with its SQL and never its binds, a warning instead for a slow one, and no password in
//! anything emitted.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::{self, Cluster, TestDb, pg_binaries_present};
use app::db::instrument::QueryTracing;
use app::db::{self, DatabaseUrl};
use app::models::User;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A second dispatcher, alive for the whole program and the default of no thread. With
/// exactly one live dispatcher tracing-core takes it for the global one and asks the
/// *current* thread's default whether a new callsite is wanted: a span first reached by a
/// test of another module (no subscriber) would be cached as never wanted, and missing
/// here. With two, it asks every live dispatcher.
static BYSTANDER: OnceLock<tracing::Dispatch> = OnceLock::new();

/// A DEBUG subscriber for this thread, writing each span's fields when it closes.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    BYSTANDER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::new()));
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    (out.clone(), tracing::subscriber::set_default(subscriber))
}

/// The event is what every subscriber prints (the binaries' too); the span is for those
/// that process spans. Both carry the SQL with `$1`, and neither the value.
#[tokio::test(flavor = "current_thread")]
async fn a_query_is_one_event_and_one_span_with_its_sql_and_no_binds() {
    let db = TestDb::new().await;
    let conn = db::connect(&db.url).await.unwrap();
    let (out, _guard) = capture();
    let missing = User::by_email(&conn, "bind-value-secret@example.com").await;
    assert!(missing.is_err());
    let text = out.text();
    let events: Vec<&str> = (text.lines())
        .filter(|l| l.contains("DEBUG app::instrument: query sql="))
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert!(events[0].contains(r#"FROM "users""#), "{text}");
    assert!(
        events[0].contains("$1") && events[0].contains("ms="),
        "{text}"
    );
    let spans: Vec<&str> = (text.lines())
        .filter(|l| l.contains("query{") && l.contains("close"))
        .collect();
    assert_eq!(spans.len(), 1, "{text}");
    assert!(
        spans[0].contains(r#"FROM \"users\""#) || spans[0].contains(r#"FROM "users""#),
        "{text}"
    );
    assert!(spans[0].contains("ms="), "{text}");
    assert!(
        !text.contains("bind-value-secret"),
        "a bind value was logged:\n{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_query_warns_once_and_a_fast_one_not_at_all() {
    let db = TestDb::new().await;
    let mut conn = db::connect(&db.url).await.unwrap();
    conn.set_instrumentation(QueryTracing::new(Duration::from_millis(100)));
    let (out, _guard) = capture();
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_sleep(0.3)")
        .execute(&mut conn)
        .await
        .unwrap();
    let text = out.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("slow query") && warnings[0].contains("pg_sleep"),
        "{text}"
    );
    // The warning is the slow statement's event: not reported a second time at debug.
    let events = |needle: &str| {
        (text.lines())
            .filter(|l| l.contains("query sql=") && l.contains(needle))
            .count()
    };
    assert_eq!((events("SELECT 1"), events("pg_sleep")), (1, 0), "{text}");
}

/// The SQL logged comes from Diesel's structure, not from splitting its text at
/// ` -- binds: `: a value holding that marker cannot pull the values before it into the
/// log, and SQL holding it (quotes, backslash, newline and all) is logged whole.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_query_never_logs_a_bind_value_whatever_the_text() {
    use diesel::sql_types::Text;
    let db = TestDb::new().await;
    let mut conn = db::connect(&db.url).await.unwrap();
    conn.set_instrumentation(QueryTracing::new(Duration::from_millis(50)));
    let (out, _guard) = capture();
    let sql = "SELECT pg_sleep(0.1), ' -- binds: \"q\" \\ é\n' AS note, $1::text, $2::text";
    diesel::sql_query(sql)
        .bind::<Text, _>("s3cret-bind-marker")
        .bind::<Text, _>(" -- binds: ")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_sleep(0.1), $1::text")
        .bind::<Text, _>("plain-bind-value")
        .execute(&mut conn)
        .await
        .unwrap();
    let text = out.text();
    let warnings = text.lines().filter(|l| l.contains("slow query")).count();
    assert_eq!(warnings, 2, "{text}");
    assert!(text.contains(sql), "the SQL is logged whole:\n{text}");
    for value in ["s3cret-bind-marker", "plain-bind-value"] {
        assert!(!text.contains(value), "a bind value was logged:\n{text}");
    }
}

/// A password-protected private cluster: the password is in the URL every connection
/// opens with, and appears nowhere in what the bridge emits, failed statements and
/// transactions included.
#[tokio::test(flavor = "current_thread")]
async fn a_password_in_the_url_never_appears_in_any_event() {
    if !pg_binaries_present() {
        return;
    }
    let secret = "tr4cing-p4ssword";
    let cluster = Cluster::new("tracing");
    let url = DatabaseUrl::parse(&cluster.start(&[("PG_PASSWORD", secret)])).unwrap();
    assert!(url.expose().contains(secret));
    let (out, _guard) = capture();
    let pool = db::build_pool(&db::DbConfig::new(url.clone())).unwrap();
    let mut conn = db::checkout(&pool).await.unwrap();
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        diesel::sql_query("SELECT 1").execute(c).await?;
        Ok(())
    })
    .await
    .unwrap();
    let _ = diesel::sql_query("SELEKT broken").execute(&mut conn).await;
    let _ = db::connect(&url.with_database("no_such_database")).await;
    let elsewhere = db::DbConfig::new(url.with_database("no_such_database"));
    let failed = db::checkout(&db::build_pool(&elsewhere).unwrap()).await;
    assert!(failed.is_err());
    let text = out.text();
    assert!(text.contains("could not open a connection"), "{text}");
    assert!(text.contains("transaction{"), "{text}");
    assert!(
        text.contains("SELEKT broken") && text.contains("error="),
        "{text}"
    );
    assert!(!text.contains(secret), "the password was emitted:\n{text}");
}

/// `RUST_LOG=debug migrate upgrade` tells the operator about the lock and each migration
/// with its duration; `--log-format json` writes the same as JSON lines; the answer on
/// stdout is unchanged.
#[tokio::test]
async fn migrate_reports_the_lock_and_each_migration_at_debug() {
    let db = TestDb::empty().await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(args)
            .args(["--url", db.url.expose()])
            .env("RUST_LOG", "debug")
            .env_remove("DATABASE_URL")
            .env_remove("LOG_FORMAT")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = run(&["upgrade"]);
    let (stdout, stderr) = (support::stdout(&out), support::stderr(&out));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("migration lock taken waited_ms="),
        "{stderr}"
    );
    for line in stdout.lines() {
        let folder = line
            .strip_prefix("applied ")
            .expect("stdout stays the answer");
        assert!(
            stderr.lines().any(|l| l.contains("applied")
                && l.contains(&format!("migration={folder}"))
                && l.contains(" ms=")),
            "no event for {folder}:\n{stderr}"
        );
    }
    assert!(!stderr.contains('\u{1b}'), "no colours into a pipe");

    let out = run(&["downgrade", "-1", "--log-format", "json"]);
    let stderr = support::stderr(&out);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = (stderr.lines())
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "reverted" && e["fields"]["ms"].is_u64()),
        "{stderr}"
    );
}

/// The pool's own events: each checkout's wait, a checkout that timed out with the pool's
/// state, and a connection thrown away because the server closed it (deadpool alone says
/// nothing of that).
#[tokio::test(flavor = "current_thread")]
async fn the_pool_reports_waits_timeouts_and_discarded_connections() {
    let db = TestDb::new().await;
    let pool = db::build_pool(&db::DbConfig {
        max_size: 1,
        // It bounds opening a connection too: 200 ms was too short for that on a loaded
        // machine (the template checks run this test inside generated projects).
        wait_timeout: Duration::from_secs(2),
        ..db::DbConfig::new(db.url.clone())
    })
    .unwrap();
    let (out, _guard) = capture();
    use diesel_async::pooled_connection::PoolableConnection;
    let mut held = db::checkout(&pool).await.unwrap();
    let busy = db::checkout(&pool).await;
    assert!(
        matches!(busy, Err(app::Error::PoolTimeout)),
        "{:?}",
        busy.err()
    );
    // The session ends itself; the driver then learns it is closed.
    let ended = diesel::sql_query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut held)
        .await;
    assert!(ended.is_err(), "the server ended the session");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !held.is_broken() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    let mut fresh = db::checkout(&pool).await.unwrap();
    diesel::sql_query("SELECT 1")
        .execute(&mut fresh)
        .await
        .unwrap();
    let text = out.text();
    let lines = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("checked out a connection waited_ms="), 2, "{text}");
    assert_eq!(lines("opened a connection"), 2, "{text}");
    let timeout: Vec<&str> = (text.lines())
        .filter(|l| l.contains("WARN") && l.contains("no connection after"))
        .collect();
    assert_eq!(timeout.len(), 1, "{text}");
    assert!(
        timeout[0].contains("max_size=1") && timeout[0].contains("waiting="),
        "{text}"
    );
    assert_eq!(lines("discarding a connection"), 1, "{text}");
}

/// The application binary, named after the package (`my-service` in a generated project).
const APP: &str = env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME")));

/// `RUST_LOG=debug migrate current` prints each statement it runs, once, with its
/// placeholders: the URL's password and the bind values (table names handed to
/// `to_regclass($1)`) appear nowhere. `RUST_LOG=app::instrument=debug` shows the same.
#[tokio::test]
async fn migrate_current_at_debug_shows_each_statement_without_binds_or_password() {
    let db = TestDb::new().await;
    // Trust auth takes any password: this one only has to be in the URL.
    let mut url = url::Url::parse(db.url.expose()).unwrap();
    url.set_password(Some("s3cret")).unwrap();
    let run = |log: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(["current", "--url", url.as_str()])
            .env("RUST_LOG", log)
            .env_remove("DATABASE_URL")
            .env_remove("LOG_FORMAT")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    for log in ["debug", "app::instrument=debug"] {
        let out = run(log);
        let stderr = support::stderr(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            support::stdout(&out).starts_with("current: "),
            "stdout stays the answer"
        );
        let shown = |needle: &str| (stderr.lines()).filter(|l| l.contains(needle)).count();
        let history = r#"FROM "__diesel_schema_migrations" ORDER BY"#;
        assert_eq!(
            shown(history),
            1,
            "{log}: once, not span and event:\n{stderr}"
        );
        assert_eq!(
            shown("app::instrument: query sql=SET TIME ZONE"),
            1,
            "{stderr}"
        );
        assert_eq!(shown("to_regclass($1)"), 2, "{stderr}");
        for hidden in ["s3cret", "migrate.checksums", "time.busy"] {
            assert!(!stderr.contains(hidden), "{log}: {hidden} shown:\n{stderr}");
        }
    }
}

/// The service's `tasks <email>` shows its select with `$1`, never the email it looked up.
#[tokio::test]
async fn the_app_shows_its_statements_at_debug_without_the_values() {
    let db = TestDb::new().await;
    let email = "bound-not-logged@example.com";
    support::user(&mut db.conn().await, email).await;
    let out = std::process::Command::new(APP)
        .args(["tasks", email, "--url", db.url.expose()])
        .env("RUST_LOG", "debug")
        .env_remove("DATABASE_URL")
        .env_remove("LOG_FORMAT")
        .output()
        .unwrap();
    let stderr = support::stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("app::instrument: query sql=SELECT")
                && l.contains(r#"FROM "users""#)
                && l.contains("lower($1)")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(email),
        "a bind value was logged:\n{stderr}"
    );
}

/// A password written into a migration stays out of the logs and of the failure message,
/// whatever the literal's spelling.
#[tokio::test]
async fn a_password_written_in_a_failing_migration_is_never_shown() {
    let db = TestDb::new().await;
    let dir = support::copy_of_migrations("migrations");
    let folder = dir.0.join("2099-01-01-000000_role_password");
    std::fs::create_dir_all(&folder).unwrap();
    let up = "ALTER ROLE no_such_role_here PASSWORD E'Leak\\'d';\n";
    std::fs::write(folder.join("up.sql"), up).unwrap();
    std::fs::write(folder.join("down.sql"), "SELECT 1;\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["upgrade", "--dir", dir.0.to_str().unwrap()])
        .args(["--url", db.url.expose()])
        .env("RUST_LOG", "debug")
        .env_remove("LOG_FORMAT")
        .output()
        .unwrap();
    let stderr = support::stderr(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("role_password/up.sql, statement 1"),
        "{stderr}"
    );
    assert!(stderr.contains("PASSWORD E'***'"), "{stderr}");
    assert!(!stderr.contains("Leak"), "password shown:\n{stderr}");
}
