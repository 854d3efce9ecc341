//! What an operator can get wrong must never lose data, hang, or print a secret: downgrade
//! targets that would revert more than asked, folder names where a version goes (with a
//! wrong name part), `migrate create` twice in a second, malformed URLs, servers that never
//! answer, and connections that must close cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self, TempDir, TestDb, count, migrate, ok, stderr, versions};
use app::db::{self, DatabaseUrl};
use app::migrations;
use tokio::net::TcpStream;

/// A downgrade target that is not below the current version, or more steps than are applied,
/// is refused before anything is written: versions, schema and rows stay as they were.
#[tokio::test]
async fn downgrade_refuses_targets_that_would_revert_more_than_asked() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    support::user(&mut conn, "kept@example.com").await;
    let before = versions(&mut conn).await;
    let schema = migrations::dump_schema(&db.url).unwrap();
    let current = before.last().unwrap().clone();
    let too_many = format!("-{}", before.len() + 1);

    let refused = [
        (vec!["downgrade", "head"], "current version is"),
        (
            vec!["downgrade", "29991231235959"],
            "is not below the current version",
        ),
        (
            vec!["downgrade", &current],
            "is not below the current version",
        ),
        (
            vec!["downgrade", &too_many],
            &*format!("applied ({})", before.len()),
        ),
        (vec!["downgrade", "+1"], "steps go -N"),
        (vec!["upgrade", "-1"], "steps go +N"),
    ];
    for (args, expect) in refused {
        let out = migrate(Some(&db.url), &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {expect:?} not in {err}");
        assert_eq!(
            versions(&mut conn).await,
            before,
            "{args:?} changed versions"
        );
        assert_eq!(
            migrations::dump_schema(&db.url).unwrap(),
            schema,
            "{args:?}"
        );
        assert_eq!(count(&mut conn, "users").await, 1, "{args:?} lost rows");
    }

    // Everything goes only when asked for by name, and the plan is printed first.
    let out = ok(migrate(Some(&db.url), &["downgrade", "base"]));
    let plan = format!("reverting {}: ", before.len());
    assert!(out.starts_with(&plan), "{out}");
    assert!(versions(&mut conn).await.is_empty());
}

/// A folder name, as `current` and `history` print it (or as a path, as tab completion
/// writes it), works wherever a version does, and does what the version does.
#[tokio::test]
async fn folder_names_work_wherever_a_version_does() {
    let db = TestDb::empty().await;
    let (url, mut conn) = (Some(&db.url), db.conn().await);
    let tasks = "2025-01-01-000003_create_tasks";
    ok(migrate(url, &["upgrade", tasks]));
    let at_tasks = versions(&mut conn).await;
    assert!(ok(migrate(url, &["current"])).contains(&format!("current: {tasks}")));
    ok(migrate(url, &["downgrade", "base"]));
    ok(migrate(url, &["upgrade", "2025-01-01-000003"]));
    assert_eq!(versions(&mut conn).await, at_tasks, "upgrade by version");

    ok(migrate(url, &["upgrade"]));
    ok(migrate(
        url,
        &["downgrade", &format!("migrations/{tasks}/")],
    ));
    assert_eq!(versions(&mut conn).await, at_tasks, "downgrade by path");

    ok(migrate(url, &["stamp", "2025-01-01-000005_create_bugs"]));
    let stamped = versions(&mut conn).await;
    assert_eq!(stamped.last().unwrap(), "20250101000005");
    ok(migrate(url, &["stamp", "base"]));
    ok(migrate(url, &["stamp", "20250101000005"]));
    assert_eq!(versions(&mut conn).await, stamped, "stamp by version");
}

/// A folder name whose name part is not its version's folder is refused, naming the real
/// folder, before anything is written.
#[tokio::test]
async fn a_folder_name_with_the_wrong_name_changes_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let before = versions(&mut conn).await;
    let wrong = "2025-01-01-000003_create_tsks";
    for verb in ["upgrade", "downgrade", "stamp"] {
        let out = migrate(Some(&db.url), &[verb, wrong]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{verb} succeeded");
        assert!(
            err.contains("version 20250101000003 is the folder 2025-01-01-000003_create_tasks"),
            "{verb}: {err}"
        );
        assert_eq!(versions(&mut conn).await, before, "{verb} changed versions");
    }
    let out = migrate(None, &["lint", "--baseline", wrong]);
    assert!(stderr(&out).contains("is the folder"), "{}", stderr(&out));
}

/// Every argument that takes a version says a folder name works too.
#[test]
fn version_arguments_say_a_folder_name_works() {
    for verb in ["upgrade", "downgrade", "stamp", "lint"] {
        let help = ok(migrate(None, &[verb, "--help"]));
        assert!(
            help.contains("its folder name") && help.contains("as `current` and `history` print"),
            "{verb}: {help}"
        );
    }
}

/// Two `create` in the same second get distinct versions, and every command still works.
#[tokio::test]
async fn create_twice_in_a_second_gives_two_versions() {
    let db = TestDb::new().await;
    let dir = support::copy_of_migrations("create_twice");
    let dir_arg = dir.0.to_str().unwrap();
    for message in ["add notes", "add notes"] {
        ok(migrate(None, &["create", message, "--dir", dir_arg]));
    }
    let all = folders(&dir);
    let mut versions: Vec<String> = (all.iter())
        .map(|f| f.split('_').next().unwrap().replace('-', ""))
        .collect();
    versions.dedup();
    assert_eq!(versions.len(), all.len(), "a version repeats: {all:?}");
    let url = Some(&db.url);
    ok(migrate(url, &["upgrade", "--dir", dir_arg]));
    ok(migrate(url, &["current", "--check", "--dir", dir_arg]));
    ok(migrate(url, &["verify", "--dir", dir_arg]));
    ok(migrate(url, &["downgrade", "-2", "--dir", dir_arg]));
    ok(migrate(None, &["lint", "--dir", dir_arg]));
}

/// A message never becomes SQL: it is a slug in the folder name and one comment line.
#[test]
fn create_keeps_the_message_out_of_the_sql() {
    let dir = TempDir::new("create_message");
    let dir_arg = dir.0.to_str().unwrap();
    let message = "Zählung\nDROP TABLE users; -- ünïcode Ωmega";
    ok(migrate(None, &["create", message, "--dir", dir_arg]));
    let folder = folders(&dir).pop().unwrap();
    assert!(
        folder.ends_with("_zählung_drop_table_users_ünïcode_ωmega"),
        "{folder}"
    );
    for file in ["up.sql", "down.sql"] {
        let sql = std::fs::read_to_string(dir.0.join(&folder).join(file)).unwrap();
        assert!(
            sql.lines()
                .all(|l| l.trim().is_empty() || l.starts_with("--")),
            "{file} has a live line:\n{sql}"
        );
    }
    let out = migrate(None, &["create", "!!! ---", "--dir", dir_arg]);
    assert!(
        stderr(&out).contains("letters or digits"),
        "{}",
        stderr(&out)
    );
    ok(migrate(None, &["create", "Ωmega", "--dir", dir_arg]));
}

fn folders(dir: &TempDir) -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    all.sort();
    all
}

/// No fragment of a password appears in any output of either binary, however the URL is
/// malformed, given as `--url` or as `DATABASE_URL`.
#[test]
fn no_password_fragment_is_printed_for_malformed_urls() {
    let pw = "Kx9q/Vb7w@Zr4t?Lm2p#Hn5c:Jd8y";
    let fragments = [
        "Kx9q", "Vb7w", "Zr4t", "Lm2p", "Hn5c", "Jd8y", "1234", "5678",
    ];
    let urls = [
        format!("postgres://app:{pw}@127.0.0.1:1/db"),
        format!("postgress://app:{pw}@127.0.0.1:1/db"),
        format!("postgres//app:{pw}@127.0.0.1:1/db"),
        format!("app:{pw}@127.0.0.1:1/db"),
        format!("postgres://app:{pw}"),
        "postgres://app:Kx9q/Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q?Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q#Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:1234/5678@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q%ZZVb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q Vb7w@127.0.0.1:1/db".into(),
        "postgres://app:Kx9q@127.0.0.1:99999/db".into(),
        "postgres://[::1:app:Kx9q@127.0.0.1/db".into(),
        "postgres://app:Kx9q".into(),
        "postgres://127.0.0.1:1/db?password=Kx9q&sslmode=disable".into(),
        format!("host=127.0.0.1 port=1 user=app password={pw} dbname=db"),
        "host=127.0.0.1 password='Kx9q Vb7w' dbname=db".into(),
        "Kx9qVb7w".into(),
    ];
    let bins = [
        (env!("CARGO_BIN_EXE_init_db"), vec![]),
        (env!("CARGO_BIN_EXE_migrate"), vec!["current"]),
    ];
    for url in &urls {
        for (bin, args) in &bins {
            let by_flag = std::process::Command::new(bin)
                .args(args)
                .args(["--url", url])
                .env_remove("DATABASE_URL")
                .output()
                .unwrap();
            let by_env = std::process::Command::new(bin)
                .args(args)
                .env("DATABASE_URL", url)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap();
            for out in [by_flag, by_env] {
                let all = format!("{}{}", support::stdout(&out), stderr(&out));
                assert!(!out.status.success(), "{url}: {all}");
                assert!(!all.contains("panicked"), "{url}: {all}");
                for fragment in fragments {
                    assert!(!all.contains(fragment), "{url}: {fragment} shown in\n{all}");
                }
            }
        }
    }
    // Where a reserved character in the password is the likely cause, the error says so.
    let out = migrate(None, &["current", "--url", &urls[5]]);
    assert!(stderr(&out).contains("percent-encode"), "{}", stderr(&out));
}

/// A URL parameter we do not know, or libpq's that we do not support, is refused by name
/// before any connection, the password masked (it once said only "invalid connection
/// string"). The server's port is 1: nothing must be tried.
#[tokio::test]
async fn unknown_url_parameters_are_named() {
    let cases = [
        ("sslmod=require", "unknown URL parameter \"sslmod\""),
        (
            "application_name=x&Sslmode=require",
            "unknown URL parameter \"Sslmode\"",
        ),
        (
            "sslpassword=k",
            "\"sslpassword\" is libpq's, and not supported here",
        ),
        ("port=fifty", "invalid value for option `port`"),
    ];
    for (query, expected) in cases {
        let raw = format!("postgres://app:Kx9qVb7w@127.0.0.1:1/db?{query}");
        let err = db::connect(&DatabaseUrl::parse(&raw).unwrap())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expected), "{query}: {expected:?} not in {err}");
        assert!(err.contains("app:***@"), "{err}");
        let out = migrate(None, &["current", "--url", &raw]);
        let all = format!("{}{}", support::stdout(&out), stderr(&out));
        assert!(!out.status.success(), "{query}: {all}");
        assert!(all.contains(expected), "{query}: {expected:?} not in {all}");
        assert!(
            !all.contains("Kx9qVb7w"),
            "{query}: password shown in {all}"
        );
    }
}

/// A setting that does not parse stops the service before it connects, naming the variable
/// and what it holds.
#[test]
fn settings_that_do_not_parse_are_refused_by_name() {
    let cases = [
        (
            "DATABASE_POOL_SIZE",
            "ten",
            "must be a whole number, got \"ten\"",
        ),
        (
            "DATABASE_POOL_TIMEOUT_SECS",
            "-1",
            "must be a whole number, got \"-1\"",
        ),
        (
            "DATABASE_CONNECT_TIMEOUT_SECS",
            "soon",
            "must be a whole number, got \"soon\"",
        ),
        (
            "DATABASE_SLOW_QUERY_MS",
            "1s",
            "must be a whole number, got \"1s\"",
        ),
        (
            "DATABASE_POOLER",
            "bouncer",
            "must be one of session, none, transaction, got \"bouncer\"",
        ),
        (
            "DATABASE_POOL_RECYCLE",
            "always",
            "must be one of fast, verified",
        ),
    ];
    for (key, value, expected) in cases {
        refused_by_name(key, value, expected);
    }
}

/// Runs the app with `key=value` and asserts exit 1 with `configuration: KEY EXPECTED`,
/// before any connection: port 1 refuses, so a setting read after connecting would say so.
fn refused_by_name(key: &str, value: &str, expected: &str) {
    let out = Command::new(env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME"))))
        .args(["--url", "postgres://app@127.0.0.1:1/db", "tasks", "a@b.c"])
        .env_remove("DATABASE_URL")
        .env(key, value)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{key}={value}: {err}");
    assert!(
        err.contains(&format!("configuration: {key} {expected}")),
        "{key}={value}: {err}"
    );
    assert!(!err.contains("cannot connect"), "{key}={value}: {err}");
}

/// Numbers that parse but make no sense (a pool of 0 or of 99,999,999, a timeout of 0) are
/// refused by name with exit 1, before any connection: never an abort, a hang or an error
/// that names no setting. So is a RUST_LOG that does not parse.
#[test]
fn settings_out_of_range_are_refused_by_name() {
    let cases = [
        (
            "DATABASE_POOL_SIZE",
            "99999999",
            "must be between 1 and 10000, got 99999999",
        ),
        (
            "DATABASE_POOL_SIZE",
            "0",
            "must be between 1 and 10000, got 0",
        ),
        (
            "DATABASE_POOL_TIMEOUT_SECS",
            "0",
            "must be between 1 and 3600, got 0",
        ),
        (
            "DATABASE_CONNECT_TIMEOUT_SECS",
            "0",
            "must be between 1 and 3600, got 0",
        ),
        (
            "DATABASE_CONNECT_TIMEOUT_SECS",
            "18446744073709551615",
            "must be between 1 and 3600",
        ),
        (
            "DATABASE_SLOW_QUERY_MS",
            "18446744073709551616",
            "must be a whole number",
        ),
        ("RUST_LOG", "app=verbose", "does not parse"),
    ];
    for (key, value, expected) in cases {
        refused_by_name(key, value, expected);
    }
    // A level misspelled as a module name parses; it is said out loud, not refused.
    let out = Command::new(env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME"))))
        .args(["--url", "postgres://app@127.0.0.1:1/db", "tasks", "a@b.c"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "wran")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("warning: RUST_LOG reads \"wran\" as a module name"),
        "{err}"
    );
    assert!(err.contains("did you mean \"warn\""), "{err}");
    // The URL's own connect_timeout=0 is refused too, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args([
            "current",
            "--url",
            "postgres://app@127.0.0.1:1/db?connect_timeout=0",
        ])
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("connect_timeout must be whole seconds from 1 to 3600"),
        "{err}"
    );
}

/// A server that accepts connections and never says a word; returns its port.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    port
}

/// Runs a binary against `url` and returns its output and how long it took.
fn timed(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_CONNECT_TIMEOUT_SECS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// A server that accepts and never answers: every command gives up within its bound (the
/// default 10 s, the URL's `connect_timeout`, or DATABASE_CONNECT_TIMEOUT_SECS) with one
/// clear line, instead of hanging.
#[test]
fn a_server_that_never_answers_fails_within_the_bound() {
    let port = silent_server();
    let url = format!("postgres://app:Kx9q@127.0.0.1:{port}/app");
    let in_url = format!("{url}?connect_timeout=1");
    let runs = [
        (
            env!("CARGO_BIN_EXE_init_db"),
            vec!["--url", &url],
            vec![],
            "10s",
        ),
        (
            env!("CARGO_BIN_EXE_migrate"),
            vec!["current", "--url", &in_url],
            vec![],
            "1s",
        ),
        (
            env!("CARGO_BIN_EXE_migrate"),
            vec!["upgrade", "--url", &url],
            vec![("DATABASE_CONNECT_TIMEOUT_SECS", "2")],
            "2s",
        ),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (runs.iter())
            .map(|(bin, args, env, limit)| {
                scope.spawn(move || (timed(bin, args, env), *limit, args.clone()))
            })
            .collect();
        for handle in handles {
            let ((out, took), limit, args) = handle.join().unwrap();
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?}: {err}");
            assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
            assert!(
                err.contains(&format!("no answer within {limit}")),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(!err.contains("Kx9q"), "{err}");
        }
    });
    // libpq's "0 = wait for ever" is refused rather than obeyed.
    let zero = format!("{url}?connect_timeout=0");
    let (out, _) = timed(
        env!("CARGO_BIN_EXE_migrate"),
        &["current", "--url", &zero],
        &[],
    );
    assert!(stderr(&out).contains("for ever"), "{}", stderr(&out));
}

/// A server whose accept queue is full drops the SYN packets: connecting, from the library
/// and from the pool, still ends within the bound.
#[tokio::test]
async fn a_server_that_drops_packets_fails_within_the_bound() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap(); // never accepts
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    let probe = Duration::from_millis(300);
    while let Ok(Ok(stream)) = tokio::time::timeout(probe, TcpStream::connect(addr)).await {
        queued.push(stream);
        assert!(
            queued.len() < 64,
            "the kernel kept accepting: cannot simulate drops"
        );
    }

    let url = DatabaseUrl::parse(&format!("postgres://app@{addr}/app?connect_timeout=1")).unwrap();
    let started = Instant::now();
    let err = db::connect(&url).await.err().unwrap().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("no answer within 1s"), "{err}");

    let mut config = db::DbConfig::new(url);
    config.wait_timeout = Duration::from_secs(2);
    let pool = db::build_pool(&config).unwrap();
    let started = Instant::now();
    assert!(pool.get().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

/// Every connection says goodbye (Terminate) before the program exits: the server logs no
/// unexpected end of a connection. A connection dropped without Terminate, first, shows
/// that the log would say so.
#[tokio::test]
async fn connections_end_with_a_clean_terminate() {
    if !support::pg_binaries_present() {
        return;
    }
    let cluster = support::Cluster::new("bye");
    let server = cluster.start(&[("PG_EXTRA_OPTS", "-c log_min_messages=debug1")]);
    let url = DatabaseUrl::parse(&server).unwrap().with_database("bye");
    let log = cluster.0.join("server.log");
    let eofs = || {
        let text = std::fs::read_to_string(&log).unwrap();
        text.matches("unexpected EOF on client connection").count()
            + text.matches("could not receive data from client").count()
    };
    let (client, connection) = tokio_postgres::connect(server.as_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.simple_query("SELECT 1").await.unwrap();
    driver.abort();
    let _ = driver.await;
    drop(client);
    let until = Instant::now() + Duration::from_secs(10);
    while eofs() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = eofs();
    assert_eq!(before, 1, "an abandoned connection is logged");

    ok(Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--url", url.expose(), "--seed"])
        .output()
        .unwrap());
    ok(migrate(Some(&url), &["current"]));
    ok(migrate(Some(&url), &["downgrade", "-1"]));
    ok(migrate(Some(&url), &["upgrade"]));
    // A backend logs how its client left before it exits: wait until only ours is left.
    let mut watcher = db::connect(&DatabaseUrl::parse(&server).unwrap())
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while others_connected(&mut watcher).await > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(eofs(), before, "a connection ended without Terminate");
}

/// Client sessions on the server other than this one.
async fn others_connected(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .get_result(conn)
    .await
    .unwrap();
    count.n
}

/// `init_db | head -2` and friends: output to a reader that has gone is dropped, the work
/// is still done, and the exit status is the command's own (no panic, no 101).
#[tokio::test]
async fn a_closed_pipe_ends_quietly_and_the_work_is_done() {
    let db = TestDb::not_created();
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    // Every statement over a 0 ms threshold: warn events go to the closed stderr too.
    let init = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .args(["--url", db.url.expose(), "--seed"])
        .env("DATABASE_SLOW_QUERY_MS", "0")
        .stdout(closed())
        .stderr(closed())
        .status()
        .unwrap();
    assert!(init.success(), "{init:?}");
    let mut conn = db.conn().await;
    assert!(
        count(&mut conn, "users").await > 0,
        "seeded despite the closed pipe"
    );

    let history = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["history", "--url", db.url.expose()])
        .stdout(closed())
        .status()
        .unwrap();
    assert!(history.success(), "{history:?}");
    // A failure still exits 1, its message dropped with the closed stderr.
    let failed = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["downgrade", "head", "--url", db.url.expose()])
        .env("RUST_LOG", "debug")
        .stderr(closed())
        .status()
        .unwrap();
    assert_eq!(failed.code(), Some(1), "{failed:?}");
}

/// Query parameters reach the server as written: `%20` is a space, as libpq reads it (it
/// once became `+` on the way: `options=-c%20statement_timeout%3D1234` failed with
/// `unrecognized configuration parameter "+statement_timeout"`).
#[tokio::test]
async fn url_parameters_keep_their_spaces() {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        timeout: String,
    }
    use diesel_async::RunQueryDsl;
    let db = TestDb::new().await;
    let raw = format!(
        "{}?application_name=my%20app&options=-c%20statement_timeout%3D1234&sslmode=prefer",
        db.url.expose()
    );
    let mut conn = db::connect(&DatabaseUrl::parse(&raw).unwrap())
        .await
        .unwrap();
    let row: Row = diesel::sql_query(
        "SELECT current_setting('application_name') AS name, \
         current_setting('statement_timeout') AS timeout",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.name, "my app");
    assert_eq!(row.timeout, "1234ms");
    // The external tools (pg_dump, psql) get them as written too: psql, through libpq,
    // reads the same settings.
    let (tool_url, env) = db::tool_connection(&DatabaseUrl::parse(&raw).unwrap()).unwrap();
    assert!(tool_url.contains("application_name=my%20app"), "{tool_url}");
    let psql = Command::new("psql")
        .args([
            &tool_url,
            "-XAtc",
            "SHOW application_name; SHOW statement_timeout",
        ])
        .envs(env)
        .output();
    if let Ok(out) = psql {
        assert_eq!(
            support::stdout(&out),
            "my app\n1234ms\n",
            "{}",
            stderr(&out)
        );
    }
    // A `+` is a `+`, as libpq reads it, not a form-encoded space: the password a tool
    // gets in PGPASSWORD included.
    let raw = format!("{}?password=a+b%2Bc", db.url.expose());
    let (_, env) = db::tool_connection(&DatabaseUrl::parse(&raw).unwrap()).unwrap();
    assert!(env.contains(&("PGPASSWORD", "a+b+c".to_owned())), "{env:?}");
}

/// Numbers past what a flag can mean are refused by clap with the reason, before any
/// connection, never by a panic or a wrapped value.
#[test]
fn numbers_that_overflow_are_refused_with_a_clear_error() {
    let cases: [(&str, Vec<&str>, &str); 7] = [
        (
            env!("CARGO_BIN_EXE_migrate"),
            vec!["--wait", "6000000000000h", "current"],
            "too long",
        ),
        (
            env!("CARGO_BIN_EXE_migrate"),
            vec!["--statement-timeout", "99999999999999999999999s", "current"],
            "too long",
        ),
        (
            env!("CARGO_BIN_EXE_migrate"),
            vec!["--lock-timeout", "25d", "current"],
            "too long",
        ),
        (
            env!("CARGO_BIN_EXE_init_db"),
            vec!["--seed", "--users", "1", "--tasks", "18446744073709551615"],
            "100000000",
        ),
        (
            env!("CARGO_BIN_EXE_init_db"),
            vec!["--seed", "--users", "18446744073709551615"],
            "10000000",
        ),
        // The runner's timeouts reach init_db and the service's --migrate too.
        (
            env!("CARGO_BIN_EXE_init_db"),
            vec!["--concurrent-statement-timeout", "25d"],
            "too long",
        ),
        (
            env!("CARGO_BIN_EXE_diesel-app"),
            vec![
                "--migrate",
                "--concurrent-lock-timeout",
                "9999999999h",
                "serve",
            ],
            "too long",
        ),
    ];
    for (binary, args, says) in cases {
        let out = Command::new(binary)
            .args(&args)
            .env_remove("DATABASE_URL")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/never")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            !err.contains("nobody"),
            "refused before any connection: {err}"
        );
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

/// `MIGRATE_*` variables are read like the flags, and checked the same way.
#[test]
fn migration_timeouts_come_from_the_environment_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_init_db"))
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/never")
        .env("MIGRATE_LOCK_TIMEOUT", "25d")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("MIGRATE_LOCK_TIMEOUT") || err.contains("lock-timeout"),
        "{err}"
    );
    assert!(err.contains("too long"), "{err}");
}

/// A binary reads `.env` before its own flags, so a `MIGRATE_*` default set there is used
/// (and a bad one refused by name) as if it were exported; a `.env` that does not parse is
/// refused, once the flags are read, without quoting the line, which may hold a password.
#[test]
fn flags_take_their_environment_defaults_from_dot_env() {
    let migrate_in = |dir: &TempDir| {
        Command::new(env!("CARGO_BIN_EXE_migrate"))
            .arg("current")
            .current_dir(&dir.0)
            .env_remove("MIGRATE_LOCK_TIMEOUT")
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_DIRECT_URL")
            .output()
            .unwrap()
    };
    let dir = TempDir::new("dotenv-flags");
    std::fs::write(dir.0.join(".env"), "MIGRATE_LOCK_TIMEOUT=5parsecs\n").unwrap();
    let out = migrate_in(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("5parsecs") && err.contains("--lock-timeout"),
        "{err}"
    );

    let dir = TempDir::new("dotenv-broken");
    let line = "# the server\nDATABASE_URL=postgres://app:se cret@h/db\n";
    std::fs::write(dir.0.join(".env"), line).unwrap();
    let out = migrate_in(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".env does not parse: line 2, setting DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains("cret"), "{err}");
    // The flags are read first: help works whatever the file holds.
    let help = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--help")
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(help.status.success(), "{}", stderr(&help));
}
