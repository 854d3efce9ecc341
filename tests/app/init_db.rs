//! `init_db` end to end: creates, migrates and seeds once; a second run changes nothing;
//! bad input fails with one clear line, password masked.

use std::process::{Command, Output};

use crate::support::{self, TestDb};
use app::db;
use diesel_async::RunQueryDsl;

fn init_db(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(args)
        // No URL from the developer's environment or .env may leak into these runs.
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run init_db")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run printed exactly one line, without the password.
fn assert_one_clear_line(out: &Output, password: &str, expect: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expect), "{expect:?} not in {stderr:?}");
    let all = format!("{stderr}{}", text(&out.stdout));
    assert!(!all.contains(password), "password leaked: {all}");
}

#[tokio::test]
async fn creates_migrates_seeds_and_second_run_changes_nothing() {
    let db = TestDb::not_created();
    let url = db.url.expose().to_owned();

    let first = init_db(&["--url", &url, "--seed"]);
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{}{}", stdout, text(&first.stderr));
    assert!(stdout.contains(": created"), "{stdout}");
    assert!(stdout.contains("migrations: applied"), "{stdout}");
    assert!(stdout.contains("seed: demo data inserted"), "{stdout}");

    let mut conn = db.conn().await;
    let after_first = db::table_counts(&mut conn).await.unwrap();
    // Tables the seed does not know (a model added later) may stay empty.
    let filled = |table: &str| after_first.iter().any(|(t, rows)| t == table && *rows > 0);
    assert!(filled("users") && filled("tasks"), "{after_first:?}");

    let second = init_db(&["--url", &url, "--seed"]);
    let stdout = text(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(stdout.contains(": exists"), "{stdout}");
    assert!(stdout.contains("migrations: up to date"), "{stdout}");
    assert!(stdout.contains("already present"), "{stdout}");
    assert_eq!(db::table_counts(&mut conn).await.unwrap(), after_first);
}

#[tokio::test]
async fn without_seed_tables_are_empty() {
    let db = TestDb::not_created();
    let out = init_db(&["--url", db.url.expose()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut conn = db.conn().await;
    // Every table the migrations made, whatever they are: none has a row.
    let counts = db::table_counts(&mut conn).await.unwrap();
    assert!(counts.iter().any(|(t, _)| t == "users"), "{counts:?}");
    assert!(counts.iter().all(|(_, rows)| *rows == 0), "{counts:?}");
}

#[test]
fn malformed_url_is_one_line_with_password_masked() {
    let out = init_db(&[
        "--url",
        "postgres://app:hunter2@db.example.com:notaport/app",
    ]);
    assert_one_clear_line(&out, "hunter2", "invalid database URL");
    let out = init_db(&["--url", "mysql://app:hunter2@localhost/app"]);
    assert_one_clear_line(&out, "hunter2", "scheme must be postgres");
    let out = init_db(&["--url", "postgres://app:hunter2@localhost"]);
    assert_one_clear_line(&out, "hunter2", "no database name");
}

#[test]
fn unreachable_server_is_one_line_with_password_masked() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app");
    let out = init_db(&["--url", &url]);
    assert_one_clear_line(
        &out,
        "hunter2",
        "cannot connect to postgres://app:***@127.0.0.1",
    );
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "the cause is named"
    );
}

#[test]
fn refused_login_is_one_line_with_password_masked() {
    let mut url = support::server_url();
    let raw = url.expose().replacen("://", "://no_such_role:hunter2@", 1);
    // Keep only our credentials if the server URL carried its own.
    let raw = match raw.find('@') {
        Some(at) if raw[at + 1..].contains('@') => {
            let second = at + 1 + raw[at + 1..].find('@').unwrap();
            format!("{}{}", &raw[..at], &raw[second..])
        }
        _ => raw,
    };
    url = db::DatabaseUrl::parse(&raw).unwrap().with_database("app");
    let out = init_db(&["--url", url.expose()]);
    assert_one_clear_line(&out, "hunter2", "no_such_role");
}

/// Needs a server that checks passwords: a private scram-sha-256 cluster (skipped without
/// PostgreSQL's server binaries unless REQUIRE_PG_BINARIES=1).
#[test]
fn wrong_password_is_one_line_with_password_masked() {
    if !support::pg_binaries_present() {
        return;
    }
    let cluster = support::Cluster::new("pw");
    let server = cluster.start(&[("PG_PASSWORD", "right-secret")]);
    let good = db::DatabaseUrl::parse(&server)
        .unwrap()
        .with_database("pw_check");
    let good = good.expose();

    let out = init_db(&["--url", &good.replace(":right-secret@", ":wrong-secret@")]);
    assert_one_clear_line(&out, "wrong-secret", "password authentication failed");
    assert!(text(&out.stderr).contains("postgres:***@"));

    let out = init_db(&["--url", good]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("right-secret"), "{stdout}");
}

#[test]
fn missing_url_says_how_to_give_one() {
    let out = init_db(&[]);
    assert_one_clear_line(
        &out,
        "\u{0}",
        "no database URL: pass --url or set DATABASE_URL",
    );
}

#[test]
fn invalid_utf8_in_the_url_is_one_clear_line() {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"postgres://app:hunter2\xff@127.0.0.1/app");
    let out = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .env("DATABASE_URL", raw)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_one_clear_line(&out, "hunter2", "$DATABASE_URL: it is not valid UTF-8");
    let out = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .arg("--url")
        .arg(raw)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    // clap refuses it before our code runs, with its usage lines.
    let all = format!("{}{}", text(&out.stderr), text(&out.stdout));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("invalid UTF-8"), "{all}");
    assert!(
        !all.contains("hunter2") && !all.contains("panicked"),
        "{all}"
    );
}

#[tokio::test]
async fn app_role_flag_grants_row_access_or_fails_with_nothing_granted() {
    let db = TestDb::not_created();
    let url = db.url.expose().to_owned();
    let out = init_db(&["--url", &url, "--app-role", "no_such_role_for_init_db"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("role \"no_such_role_for_init_db\" does not exist"),
        "{stderr}"
    );
    // pg_monitor exists on every server: a real role to grant to, no cleanup needed
    // beyond the database, which holds the grants.
    let out = init_db(&["--url", &url, "--app-role", "pg_monitor"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("roles: pg_monitor may read and write rows"));
    let mut conn = db.conn().await;
    let granted = support::flag(
        &mut conn,
        "SELECT has_table_privilege('pg_monitor', 'tasks', 'INSERT') \
         AND NOT has_table_privilege('pg_monitor', '__diesel_schema_migrations', 'INSERT') AS flag",
    )
    .await;
    assert!(granted);
}

#[tokio::test]
async fn volume_seed_uses_the_bulk_path_once() {
    let db = TestDb::not_created();
    let url = db.url.expose().to_owned();
    let args = ["--url", &url, "--seed", "--users", "50", "--tasks", "25000"];
    let first = init_db(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("50 users and 25000 tasks inserted"));
    let mut conn = db.conn().await;
    let counts = db::table_counts(&mut conn).await.unwrap();
    let rows = |table: &str| counts.iter().find(|(t, _)| t == table).unwrap().1;
    let (users, tasks) = (rows("users"), rows("tasks"));
    assert!(users >= 50 && tasks >= 25_000, "{counts:?}");

    let second = init_db(&args);
    assert!(text(&second.stdout).contains("volume data already present"));
    assert_eq!(db::table_counts(&mut conn).await.unwrap(), counts);
}

#[tokio::test]
async fn a_database_name_with_awkward_characters_is_created_under_that_exact_name() {
    // `_` stays as it is in the URL (diesel_cli, for one, does not decode it); a space and a
    // slash are escaped and come back out unchanged.
    let mut db = TestDb::not_created();
    assert!(db.url.expose().ends_with(&db.url.database()), "{}", db.url);
    let name = format!("{} x/y", db.url.database());
    db.url = db.url.with_database(&name);
    assert_eq!(db.url.database(), name);
    assert!(db.url.expose().ends_with("%20x%2Fy"), "{}", db.url);

    let out = init_db(&["--url", db.url.expose()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut admin = db::connect(&support::server_url()).await.unwrap();
    let found: support::Flag =
        diesel::sql_query("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1) AS flag")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut admin)
            .await
            .unwrap();
    assert!(found.flag, "no database named {name:?}");
}

/// `--env-file`: written once, 0600, with the URL read back exactly by the binaries; never
/// over a file that exists; the pooler's URL stays DATABASE_URL with the server's beside it.
#[tokio::test]
async fn env_file_is_written_once_private_and_read_back() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::not_created();
    let dir = support::TempDir::new("env-file");
    // A password (trust auth ignores it) and characters dotenvy would read otherwise.
    let url = db
        .url
        .expose()
        .replacen("postgres@", "postgres:s3cr%24t%23x@", 1);
    let env = dir.0.join(".env");
    let out = init_db(&["--url", &url, "--env-file", env.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("env: wrote DATABASE_URL to"), "{stdout}");
    assert!(!stdout.contains("s3cr"), "password shown: {stdout}");
    let mode = std::fs::metadata(&env).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // From that folder, with nothing in the environment, migrate finds the database.
    let current = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("current")
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_DIRECT_URL")
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(current.status.success(), "{}", text(&current.stderr));

    // A file that exists is left exactly as it is, and says so.
    std::fs::write(&env, "MINE=1\n").unwrap();
    let out = init_db(&["--url", &url, "--env-file", env.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("exists, not changed"));
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "MINE=1\n");

    // Through a pooler: DATABASE_URL is the application's, the direct one beside it.
    std::fs::remove_file(&env).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--env-file", env.to_str().unwrap()])
        .env("DATABASE_URL", db.url.with_database("pooled_name").expose())
        .env("DATABASE_DIRECT_URL", db.url.expose())
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&env).unwrap();
    let lines: Vec<&str> = written.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!(
                "DATABASE_URL='{}'",
                db.url.with_database("pooled_name").expose()
            ),
            format!("DATABASE_DIRECT_URL='{}'", db.url.expose()),
        ]
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
}
