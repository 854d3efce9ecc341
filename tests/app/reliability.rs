//! Faults and hostile input: each test names the protection it proves and fails without it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, TestDb, count, table_exists, user, versions};
use app::bulk;
use app::db::{self, DbConfig};
use app::models::*;
use app::schema::tasks;
use app::{Error, Result};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Polls `sql` (returning `flag`) until true or the deadline passes.
async fn wait_for(conn: &mut AsyncPgConnection, sql: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if support::flag(conn, sql).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn pool_exhaustion_times_out_with_a_clear_error() {
    let db = TestDb::new().await;
    let mut config = DbConfig::new(db.url.clone());
    config.max_size = 2;
    config.wait_timeout = Duration::from_millis(200);
    let pool = db::build_pool(&config).unwrap();
    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let started = Instant::now();
    let Err(err) = pool.get().await.map_err(Error::from) else {
        panic!("a third connection from a pool of two");
    };
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited the configured time"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no deadlock");
    assert!(matches!(err, Error::PoolTimeout), "{err:?}");
    assert!(
        err.to_string().contains("DATABASE_POOL_SIZE"),
        "says what to change"
    );
    drop(held);
    let mut conn = pool.get().await.expect("a connection once one is returned");
    user(&mut conn, "after@example.com").await;
}

#[tokio::test]
async fn connection_killed_mid_bulk_insert_leaves_no_rows_and_the_pool_recovers() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let mut writer = pool.get().await.unwrap();
    let owner = user(&mut writer, "owner@example.com").await;
    let title = Title::parse("Doomed").unwrap();
    let rows: Vec<NewTask> = (0..600_000)
        .map(|_| NewTask::new(owner.id, &title))
        .collect();

    let mut killer = db.conn().await;
    // Each chunk's statement counts itself (a sequence: visible outside the transaction) and
    // lingers a moment after writing its rows, so the kill lands while the second chunk runs,
    // the first written but not committed. Without it a loaded machine could see only the
    // last chunk, which may commit before the kill.
    killer
        .batch_execute(
            "CREATE SEQUENCE chunks; \
             CREATE FUNCTION linger() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM nextval('chunks'); PERFORM pg_sleep(0.2); RETURN NULL; END $$; \
             CREATE TRIGGER linger AFTER INSERT ON tasks FOR EACH STATEMENT \
             EXECUTE FUNCTION linger();",
        )
        .await
        .unwrap();
    let writer_pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut writer)
    .await
    .unwrap();
    let kill = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let active: support::Flag = diesel::sql_query(
                "SELECT (SELECT last_value >= 2 FROM chunks) AND EXISTS (SELECT 1 \
                 FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'INSERT INTO \"tasks\"%' \
                 AND state = 'active') AS flag",
            )
            .bind::<diesel::sql_types::Integer, _>(writer_pid)
            .get_result(&mut killer)
            .await
            .unwrap();
            if active.flag {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the bulk insert never reached its second chunk"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed: support::Flag = diesel::sql_query("SELECT pg_terminate_backend($1) AS flag")
            .bind::<diesel::sql_types::Integer, _>(writer_pid)
            .get_result(&mut killer)
            .await
            .unwrap();
        assert!(killed.flag, "the writer's backend was terminated");
    };
    let (result, ()) = tokio::join!(bulk::insert(&mut writer, &rows), kill);
    assert!(
        result.is_err(),
        "the insert must fail, not succeed or panic"
    );
    drop(writer);

    let mut check = db.conn().await;
    assert_eq!(count(&mut check, "tasks").await, 0, "nothing persisted");
    let again = pool
        .get()
        .await
        .expect("the pool hands out a working connection");
    assert_eq!(User::find(&again, owner.id).await.unwrap(), owner);
}

/// The first characters of a case, for messages that stay readable with 1 MB inputs.
fn short(case: &str) -> String {
    case.chars().take(40).collect()
}

/// Text that breaks naive SQL or encodings: injection, quotes, placeholders, emoji, control
/// characters, NUL and one megabyte.
pub fn hostile_cases() -> Vec<String> {
    let mut cases: Vec<String> = [
        "plain-text-42",
        "'; DROP TABLE tasks; --",
        "Robert'); DROP TABLE users;--",
        "o'brien+x@example.com",
        "quotes ' \" `backticks` and \\ backslashes \\' \\\\",
        "$1 $$ dollar $$ quotes %s %I :name ?",
        "emoji 🦀🔥 combining e\u{301}, RTL \u{202e}text, zero\u{200b}width",
        "  spaces around  ",
        "line\nbreaks\r\n\ttabs",
        "nul \0 byte",
    ]
    .map(String::from)
    .to_vec();
    cases.push("x".repeat(1 << 20));
    cases
}

/// A write either stored `expected` exactly or was refused with a typed validation error.
/// PostgreSQL text cannot hold NUL, which the server refuses (`Error::Database`).
/// Returns whether the value was stored.
pub fn stored_or_refused(field: &str, case: &str, expected: &str, result: Result<String>) -> bool {
    match result {
        Ok(back) => {
            assert!(back == expected, "{field} changed {:?}", short(case));
            true
        }
        Err(Error::Invalid { .. }) => false,
        Err(Error::Database(err)) if case.contains('\0') => {
            assert!(err.to_string().contains("0x00"), "{field}: {err}");
            false
        }
        Err(other) => panic!("{field} with {:?}: {other:?}", short(case)),
    }
}

#[tokio::test]
async fn hostile_text_in_every_field_round_trips_exactly_or_is_refused_with_a_typed_error() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let task_on = support::task(&mut conn, &owner, "Commented").await;
    let cases = hostile_cases();
    let plain = Title::parse("Hostile").unwrap();
    for (i, case) in cases.iter().enumerate() {
        let case = case.as_str();
        let tasks_before = count(&mut conn, "tasks").await;
        let email = async {
            let email = Email::parse(case)?;
            let new = NewUser {
                email: &email,
                display_name: "Hostile",
            };
            let id = User::create(&conn, &new).await?.id;
            Ok(User::find(&conn, id).await?.email.as_str().to_owned())
        }
        .await;
        stored_or_refused("users.email", case, case.trim(), email);

        let email = Email::parse(&format!("name{i}@example.com")).unwrap();
        let name = async {
            let new = NewUser {
                email: &email,
                display_name: case,
            };
            let id = User::create(&conn, &new).await?.id;
            Ok(User::find(&conn, id).await?.display_name)
        }
        .await;
        stored_or_refused("users.display_name", case, case, name);

        let team = async {
            let id = Team::create(&conn, &NewTeam { name: case }).await?.id;
            Ok(Team::find(&conn, id).await?.name)
        }
        .await;
        stored_or_refused("teams.name", case, case, team);

        let tag = Tag::create(&conn, &NewTag { name: case }).await;
        stored_or_refused("tags.name", case, case, tag.map(|t| t.name));

        let title = async {
            let title = Title::parse(case)?;
            let id = Task::create(&conn, &NewTask::new(owner.id, &title))
                .await?
                .id;
            Ok(Task::find(&conn, id).await?.title.as_str().to_owned())
        }
        .await;
        stored_or_refused("tasks.title", case, case.trim(), title);

        let new = NewTask {
            description: Some(case),
            ..NewTask::new(owner.id, &plain)
        };
        let description = async {
            let id = Task::create(&conn, &new).await?.id;
            Ok(Task::find(&conn, id).await?.description.unwrap_or_default())
        }
        .await;
        let stored = stored_or_refused("tasks.description", case, case, description);
        assert_eq!(
            stored,
            !case.contains('\0'),
            "every other string is valid text"
        );

        let checklist = async {
            let new = NewTask {
                checklist: Some(vec![case.to_owned(), "second".into()]),
                ..NewTask::new(owner.id, &plain)
            };
            let id = Task::create(&conn, &new).await?.id;
            Ok(Task::find(&conn, id).await?.checklist.join("|"))
        }
        .await;
        stored_or_refused(
            "tasks.checklist",
            case,
            &format!("{case}|second"),
            checklist,
        );

        let body = async {
            Comment::create(&conn, owner.id, CommentOn::Task(task_on.id), case).await?;
            let all = Comment::list(&conn, CommentOn::Task(task_on.id)).await?;
            Ok(all.last().unwrap().body.clone())
        }
        .await;
        stored_or_refused("comments.body", case, case, body);

        // The bulk path binds arrays: the same strings, the same outcome.
        let rows = vec![new.clone(), new.clone()];
        let bulk_result = async {
            bulk::insert(&mut conn, &rows).await?;
            let newest: Vec<Option<String>> = tasks::table
                .select(tasks::description)
                .order(tasks::id.desc())
                .limit(2)
                .load(&mut conn)
                .await?;
            assert_eq!(newest[0], newest[1]);
            Ok(newest[0].clone().unwrap_or_default())
        }
        .await;
        stored_or_refused("bulk tasks.description", case, case, bulk_result);
        if case.contains('\0') {
            assert_eq!(
                count(&mut conn, "tasks").await,
                tasks_before,
                "nothing written"
            );
        }
    }
    // The tables the injection strings name are all still there.
    for table in ["users", "tasks", "teams", "tags", "comments"] {
        assert!(count(&mut conn, table).await > 0, "{table}");
    }
}

#[tokio::test]
async fn huge_and_negative_numbers_are_refused_before_any_sql() {
    let db = TestDb::new().await;
    let conn = db.conn().await;
    for bad in [i64::MAX, i64::MIN, -1, 0, 6, 32_768, -32_769] {
        let err = Priority::new(bad).expect_err("out of range");
        assert!(
            matches!(&err, Error::Invalid { constraint, .. } if constraint == "tasks_priority_range"),
            "{err:?}"
        );
    }
    for good in 1..=5 {
        assert_eq!(i64::from(Priority::new(good).unwrap().get()), good);
    }
    // Ids that do not exist are not found, whatever their size or sign.
    for id in [i64::MAX, i64::MIN, -1, 0] {
        assert!(matches!(Task::find(&conn, id).await, Err(Error::NotFound)));
    }
    // A name that must be interpolated is quoted, whatever it contains.
    assert_eq!(
        db::quote_ident("a\"b; DROP TABLE x"),
        "\"a\"\"b; DROP TABLE x\""
    );
}

#[test]
fn passwords_never_appear_in_help_or_errors() {
    let _bench = support::running_bench();
    let secret = "hunter2-secret";
    let url = format!("postgres://app:{secret}@127.0.0.1:1/app");
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_init_db"), vec!["--help"]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["--help"]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["upgrade", "--help"]),
        (env!("CARGO_BIN_EXE_init_db"), vec![]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["current"]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["upgrade"]),
        (env!("CARGO_BIN_EXE_bench"), vec!["--rows", "10"]),
    ] {
        let out = Command::new(bin)
            .args(&args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(secret),
            "{bin} {args:?} leaked the password:\n{all}"
        );
        assert!(!all.contains("panicked"), "{bin} {args:?} panicked:\n{all}");
    }
}

/// The version of the slow migration below.
const SLOW: &str = "20990101000000";

/// Our migrations plus a slow one, in a directory of their own.
fn migrations_with_slow(metadata: Option<&str>) -> support::TempDir {
    let dir = support::copy_of_migrations("killed");
    let slow = dir.0.join("2099-01-01-000000_slow");
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::write(
        slow.join("up.sql"),
        "CREATE TABLE half_done (id int);\nSELECT pg_sleep(2);\n",
    )
    .unwrap();
    std::fs::write(slow.join("down.sql"), "DROP TABLE half_done;\n").unwrap();
    if let Some(metadata) = metadata {
        std::fs::write(slow.join("metadata.toml"), metadata).unwrap();
    }
    dir
}

fn migrate(db: &TestDb, dir: &support::TempDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.args(args)
        .args(["--url", db.url.expose(), "--dir", dir.0.to_str().unwrap()])
        .env_remove("DATABASE_URL");
    cmd
}

/// Starts `migrate upgrade` and SIGKILLs it while the slow migration sleeps.
async fn kill_during_slow_migration(db: &TestDb, dir: &support::TempDir) -> AsyncPgConnection {
    let mut child = migrate(db, dir, &["upgrade"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = db.conn().await;
    let sleeping = wait_for(
        &mut conn,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'SELECT pg_sleep(2)%') AS flag",
        Duration::from_secs(30),
    )
    .await;
    assert!(sleeping, "the slow migration never started");
    child.kill().unwrap(); // SIGKILL: no cleanup runs in the migrator
    child.wait().unwrap();
    conn
}

#[tokio::test]
async fn a_killed_migrator_leaves_the_schema_as_it_was_and_the_next_run_completes() {
    let db = TestDb::empty().await;
    let dir = migrations_with_slow(None);
    let mut conn = kill_during_slow_migration(&db, &dir).await;
    assert!(
        !versions(&mut conn).await.contains(&SLOW.to_owned()),
        "not recorded as applied"
    );
    assert!(
        !table_exists(&mut conn, "half_done").await,
        "its first statement is not visible"
    );

    // The orphaned backend finishes its sleep, finds its client gone and rolls back,
    // releasing the advisory lock; the next run waits for that and completes.
    let out = migrate(&db, &dir, &["upgrade", "--wait", "30s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied 2099-01-01-000000_slow"));
    assert!(table_exists(&mut conn, "half_done").await);
}

#[tokio::test]
async fn a_killed_non_transactional_migration_is_dirty_never_applied() {
    let db = TestDb::empty().await;
    let dir = migrations_with_slow(Some("run_in_transaction = false\n"));
    let mut conn = kill_during_slow_migration(&db, &dir).await;
    assert!(
        !versions(&mut conn).await.contains(&SLOW.to_owned()),
        "never recorded as applied"
    );
    assert!(
        table_exists(&mut conn, "half_done").await,
        "outside a transaction its first statement stays: the reason it is marked dirty"
    );

    let current = migrate(&db, &dir, &["current", "--check"])
        .output()
        .unwrap();
    assert_eq!(current.status.code(), Some(1));
    let report = String::from_utf8_lossy(&current.stdout);
    assert!(
        report.contains("2099-01-01-000000_slow") && report.contains("dirty"),
        "{report}"
    );
    let again = migrate(&db, &dir, &["upgrade", "--wait", "30s"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("stamp"), "refuses until repaired: {err}");
    assert!(!versions(&mut conn).await.contains(&SLOW.to_owned()));
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    let row: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(conn)
        .await
        .unwrap();
    row.pid
}

/// Protection: a pooled connection the server closed is never handed out again, with
/// either recycle check; the fast one (the default) needs no round trip to know it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_is_replaced_on_checkout() {
    let db = TestDb::new().await;
    let mut admin = db.conn().await;
    for recycle in [db::Recycle::Fast, db::Recycle::Verified] {
        let pool = db::build_pool(&DbConfig {
            max_size: 1,
            recycle,
            ..DbConfig::new(db.url.clone())
        })
        .unwrap();
        let mut held = pool.get().await.unwrap();
        let before = backend_pid(&mut held).await;
        let kill = format!("SELECT pg_terminate_backend({before})");
        diesel::sql_query(kill).execute(&mut admin).await.unwrap();
        // The driver task reads the server's goodbye on its own: wait until the connection
        // knows, then hand it back to the pool.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !held.is_broken() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            held.is_broken(),
            "the connection never noticed the server closed it"
        );
        drop(held);
        let mut conn = pool.get().await.unwrap();
        let after = backend_pid(&mut conn).await;
        assert_ne!(
            before, after,
            "{recycle:?}: the closed connection came back"
        );
    }
}

/// Protection: a statement its caller gave up on (a timeout dropped the future) never
/// comes back with the connection. The next borrower gets another session, and the server
/// is asked to cancel the abandoned statement instead of running it to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_by_a_timeout_never_reaches_the_next_borrower() {
    let db = TestDb::new().await;
    let mut admin = db.conn().await;
    let pool = db.pool(1);
    let mut conn = db::checkout(&pool).await.unwrap();
    let before = backend_pid(&mut conn).await;
    let slow = diesel::sql_query("SELECT pg_sleep(60)").execute(&mut conn);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), slow).await;
    assert!(gave_up.is_err(), "pg_sleep(60) finished within 300 ms");
    drop(conn);

    let mut next = db::checkout(&pool).await.unwrap();
    let after = backend_pid(&mut next).await;
    assert_ne!(before, after, "the busy connection was handed out again");
    let gone = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {before} \
         AND state = 'active') AS flag"
    );
    assert!(
        wait_for(&mut admin, &gone, Duration::from_secs(30)).await,
        "the abandoned pg_sleep(60) still runs"
    );
}

/// Protection: a TCP connection to a server that vanished (power, network, a failover that
/// sent no FIN) is found out in under a minute, not after the kernel's 2 h idle plus
/// retries: keepalives start after 30 s unless the URL says otherwise. Checked on the
/// socket itself (`ss`); skipped when the test server is on a Unix socket.
#[tokio::test]
async fn tcp_connections_carry_keepalives_by_default() {
    let db = TestDb::new().await;
    if db.url.expose().contains("%2F")
        || std::process::Command::new("ss").arg("-V").output().is_err()
    {
        eprintln!("skipped: the test server is not on TCP, or ss is missing");
        return;
    }
    #[derive(diesel::QueryableByName)]
    struct Port {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        port: i32,
    }
    let timer = async |url: &app::db::DatabaseUrl| {
        let mut conn = db::connect(url).await.unwrap();
        let Port { port } = diesel::sql_query(
            "SELECT client_port AS port FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        let out = Command::new("ss")
            .args([
                "-tnoH",
                "state",
                "established",
                &format!("( sport = :{port} )"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let seconds = |line: &str| -> Option<u64> {
        let rest = line.split("timer:(keepalive,").nth(1)?;
        let field = rest.split(',').next()?;
        let secs = field.trim_end_matches("sec");
        // ss prints "1min2sec" past a minute: read that as over a minute.
        secs.parse().ok().or(Some(u64::MAX))
    };
    let default = timer(&db.url).await;
    let idle = seconds(&default).unwrap_or_else(|| panic!("no keepalive timer: {default}"));
    assert!(idle <= 30, "keepalive in {idle} s: {default}");
    let own = format!("{}?keepalives=0", db.url.expose());
    let off = timer(&app::db::DatabaseUrl::parse(&own).unwrap()).await;
    assert!(
        seconds(&off).is_none(),
        "keepalives=0 in the URL is kept: {off}"
    );
}
