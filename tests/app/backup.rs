//! Backup before migrating, and a restore that works: history, schema and rows agree again,
//! the next upgrade succeeds, and a failed restore leaves the database as it was.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::{self, TempDir, TestDb, count, migrate, ok, stderr, stdout, versions};
use app::db::{DatabaseUrl, quote_ident};
use app::migrations;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

// Multi-threaded: a dropped connection's goodbye is sent by its driver task while this
// test blocks on the migrate process, and the restore waits for the database to be free.
#[tokio::test(flavor = "multi_thread")]
async fn restore_puts_back_schema_history_and_rows_and_upgrade_runs_again() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    support::user(&mut conn, "kept@example.com").await;
    let before_versions = versions(&mut conn).await;
    let before_schema = migrations::dump_schema(&db.url).unwrap();
    drop(conn);

    let dir = support::copy_of_migrations("backup");
    let extra = dir.0.join("2099-01-01-000000_extra");
    std::fs::create_dir_all(&extra).unwrap();
    let up = "CREATE TABLE extra (id bigint PRIMARY KEY);\nINSERT INTO extra VALUES (1), (2);\n";
    std::fs::write(extra.join("up.sql"), up).unwrap();
    std::fs::write(extra.join("down.sql"), "DROP TABLE extra;\n").unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let files = TempDir::new("dumps");
    let dump = files.0.join("before.dump");
    let dump_arg = dump.to_str().unwrap();

    let out = ok(migrate(
        Some(&db.url),
        &["upgrade", "--dir", dir_arg, "--backup", dump_arg],
    ));
    assert!(out.contains("backup:") && out.contains("applied 2099-01-01-000000_extra"));
    let mut conn = db.conn().await;
    assert_eq!(count(&mut conn, "extra").await, 2);
    drop(conn);

    let out = ok(migrate(Some(&db.url), &["restore", dump_arg]));
    let kept = out
        .split("kept as ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = db.conn().await;
    assert_eq!(
        versions(&mut conn).await,
        before_versions,
        "history as before"
    );
    assert_eq!(
        migrations::dump_schema(&db.url).unwrap(),
        before_schema,
        "schema as before"
    );
    assert_eq!(count(&mut conn, "users").await, 1, "rows as before");
    ok(migrate(Some(&db.url), &["verify", "--dir", dir_arg]));
    drop(conn);
    ok(migrate(Some(&db.url), &["upgrade", "--dir", dir_arg]));

    // The database from before the restore is kept, with the migration applied.
    let kept_url = db.url.with_database(&kept);
    let mut old = app::db::connect(&kept_url).await.unwrap();
    assert_eq!(count(&mut old, "extra").await, 2);
    drop(old);
    let mut admin = app::db::connect(&db.url.with_database("postgres"))
        .await
        .unwrap();
    let sql = format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&kept));
    diesel::sql_query(sql).execute(&mut admin).await.unwrap();
}

#[tokio::test]
async fn a_failed_restore_leaves_the_database_as_it_was() {
    let db = TestDb::new().await;
    let files = TempDir::new("bad_dump");
    let bad = files.0.join("not-a-dump");
    std::fs::write(&bad, "this is not pg_dump output").unwrap();
    let out = migrate(Some(&db.url), &["restore", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pg_restore failed") && err.contains("is as it was"),
        "{err}"
    );
    // Found out before any database is made.
    assert!(
        err.contains("a backup made by `migrate upgrade --backup`")
            && err.contains("nothing created")
            && !err.contains("dropped"),
        "{err}"
    );
    let mut conn = db.conn().await;
    assert!(!versions(&mut conn).await.is_empty(), "still migrated");

    // A session on the database blocks the swap: refused, nothing changed.
    let good = files.0.join("good.dump");
    app::backup::dump(&db.url, &good, std::future::pending())
        .await
        .unwrap();
    // A 1 ms slow-query threshold: the restore's own CREATE/DROP DATABASE are not reported.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["restore", good.to_str().unwrap(), "--url", db.url.expose()])
        .env_remove("DATABASE_URL")
        .env("DATABASE_SLOW_QUERY_MS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("1 session is connected") && err.contains("stop the application"),
        "{err}"
    );
    assert!(!err.contains("slow query"), "{err}");
    assert!(!versions(&mut conn).await.is_empty());
}

async fn admin(url: &DatabaseUrl) -> AsyncPgConnection {
    app::db::connect(&url.with_database("postgres"))
        .await
        .unwrap()
}

/// Databases whose names start with `prefix`.
async fn databases_starting(admin: &mut AsyncPgConnection, prefix: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT datname::text AS datname FROM pg_database \
         WHERE left(datname, length($1)) = $1 ORDER BY 1",
    )
    .bind::<Text, _>(prefix)
    .load(admin)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.datname).collect()
}

async fn drop_database(admin: &mut AsyncPgConnection, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    diesel::sql_query(sql).execute(admin).await.unwrap();
}

// Multi-threaded: see the first test.
#[tokio::test(flavor = "multi_thread")]
async fn restore_into_a_database_that_is_gone_creates_it() {
    let db = TestDb::new().await;
    let name = db.url.database();
    let mut conn = db.conn().await;
    support::user(&mut conn, "survivor@example.com").await;
    drop(conn);
    let files = TempDir::new("gone_dump");
    let dump = files.0.join("before.dump");
    app::backup::dump(&db.url, &dump, std::future::pending())
        .await
        .unwrap();

    let mut admin = admin(&db.url).await;
    drop_database(&mut admin, &name).await;
    // A half-loaded copy left by a restore that was killed: cleared by the next one. A
    // database that only looks like one by its name is someone's data: kept.
    let (stale, lookalike) = (
        format!("{name}_restoring_20000101000000"),
        format!("{name}_restoring_20000101000001"),
    );
    for db in [&stale, &lookalike] {
        let sql = format!("CREATE DATABASE {}", quote_ident(db));
        diesel::sql_query(sql).execute(&mut admin).await.unwrap();
    }
    let mark = format!(
        "COMMENT ON DATABASE {} IS '{}'",
        quote_ident(&stale),
        app::backup::STAGING_MARK
    );
    diesel::sql_query(mark).execute(&mut admin).await.unwrap();

    let out = ok(migrate(Some(&db.url), &["restore", dump.to_str().unwrap()]));
    assert!(
        out.contains("did not exist") && !out.contains("kept as"),
        "{out}"
    );
    assert!(out.contains("re-apply"), "{out}");
    let mut conn = db.conn().await;
    assert_eq!(count(&mut conn, "users").await, 1, "the rows are back");
    assert!(!versions(&mut conn).await.is_empty(), "and the history");
    drop(conn);
    let left = databases_starting(&mut admin, &format!("{name}_")).await;
    assert_eq!(
        left,
        std::slice::from_ref(&lookalike),
        "nothing beside it but the look-alike"
    );
    #[derive(diesel::QueryableByName)]
    struct Comment {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        comment: Option<String>,
    }
    let restored: Comment = diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database \
         WHERE datname = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&name)
    .get_result(&mut admin)
    .await
    .unwrap();
    assert_eq!(restored.comment, None, "the staging mark is gone");
    drop_database(&mut admin, &lookalike).await;
}

// Multi-threaded: see the first test.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_restore_stops_pg_restore_and_drops_its_copy() {
    let db = TestDb::new().await;
    let name = db.url.database();
    let mut conn = db.conn().await;
    // An index whose function sleeps while the database is being restored: pg_restore
    // spends seconds building it, inside its one transaction, whatever the machine.
    conn.batch_execute(
        "CREATE FUNCTION slow_key(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ \
         BEGIN IF current_database() LIKE '%\\_restoring\\_%' THEN PERFORM pg_sleep(0.002); \
         END IF; RETURN n; END $$; \
         CREATE TABLE slow AS SELECT g AS n FROM generate_series(1, 20000) g; \
         CREATE INDEX slow_idx ON slow (slow_key(n));",
    )
    .await
    .unwrap();
    support::user(&mut conn, "original@example.com").await;
    let files = TempDir::new("interrupt_dump");
    let dump = files.0.join("slow.dump");
    app::backup::dump(&db.url, &dump, std::future::pending())
        .await
        .unwrap();
    // The live database now differs from the backup: a restore that went through would show.
    support::user(&mut conn, "after-backup@example.com").await;
    drop(conn);
    let mut admin = admin(&db.url).await;
    let staging_prefix = format!("{name}_restoring_");

    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"));
        command
            .args(["restore", dump.to_str().unwrap(), "--url", db.url.expose()])
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Under `nohup` (a CI runner may start the suite so) SIGHUP is ignored, and
        // migrate rightly keeps it so: give the child the default a terminal gives.
        support::default_signals(&mut command);
        let mut child = command.spawn().unwrap();
        let staging = pg_restore_at_work(&mut admin, &staging_prefix, &mut child).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "migrate did not stop on SIG{signal}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "SIG{signal}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));

        let pg_restore = std::process::Command::new("pgrep")
            .args(["-f", &format!("pg_restore.*{staging}")])
            .output()
            .unwrap();
        assert!(
            stdout(&pg_restore).trim().is_empty(),
            "pg_restore still running after SIG{signal}: {}",
            stdout(&pg_restore)
        );
        let left = databases_starting(&mut admin, &format!("{name}_")).await;
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
        let mut conn = db.conn().await;
        assert_eq!(
            count(&mut conn, "users").await,
            2,
            "the live database untouched"
        );
    }

    // SIGKILL: no clean-up is possible, but pg_restore dies with migrate instead of
    // loading on; the half-loaded copy is for the next restore to drop.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["restore", dump.to_str().unwrap(), "--url", db.url.expose()])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging = pg_restore_at_work(&mut admin, &staging_prefix, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pg_restore = std::process::Command::new("pgrep")
            .args(["-f", &format!("pg_restore.*{staging}")])
            .output()
            .unwrap();
        if stdout(&pg_restore).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_restore still running 5 s after SIGKILL: {}",
            stdout(&pg_restore)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop_database(&mut admin, &staging).await;
}

/// Waits for `child` (`migrate restore`) to have pg_restore loading a database whose name
/// starts with `prefix`; returns that name.
async fn pg_restore_at_work(
    admin: &mut AsyncPgConnection,
    prefix: &str,
    child: &mut std::process::Child,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            datname: String,
        }
        let loading: Vec<Name> = diesel::sql_query(
            "SELECT datname::text AS datname FROM pg_stat_activity \
             WHERE left(datname, length($1)) = $1 AND application_name = 'pg_restore'",
        )
        .bind::<Text, _>(prefix)
        .load(&mut *admin)
        .await
        .unwrap();
        if let Some(n) = loading.into_iter().next() {
            return n.datname;
        }
        assert!(Instant::now() < deadline, "pg_restore never started");
        assert!(child.try_wait().unwrap().is_none(), "migrate ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_crashing_pg_restore_is_reported_and_changes_nothing() {
    let db = TestDb::new().await;
    let name = db.url.database();
    let mut conn = db.conn().await;
    support::user(&mut conn, "kept@example.com").await;
    let files = TempDir::new("crash_dump");
    let good = files.0.join("good.dump");
    app::backup::dump(&db.url, &good, std::future::pending())
        .await
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Cut short: pg_restore says so.
    let truncated = files.0.join("truncated.dump");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // A negative length for a table's access method ("heap") in the table of contents:
    // pg_restore reads no name and dies of SIGSEGV, saying nothing.
    let mut corrupt = bytes.clone();
    let at = corrupt
        .windows(9)
        .position(|w| w == b"\x00\x04\x00\x00\x00heap")
        .expect("a table entry in the dump");
    corrupt[at + 4] = 0xc4;
    let crashing = files.0.join("corrupt.dump");
    std::fs::write(&crashing, &corrupt).unwrap();

    for (file, says) in [
        (&truncated, "end of file"),
        (&crashing, "was killed by signal 11 (SIGSEGV); is "),
    ] {
        let out = migrate(Some(&db.url), &["restore", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(says) && err.contains("is as it was"), "{err}");
        assert!(!err.contains("failed: ;"), "{err}");
        assert_eq!(count(&mut conn, "users").await, 1);
        assert!(!versions(&mut conn).await.is_empty());
        let mut admin = admin(&db.url).await;
        let left = databases_starting(&mut admin, &format!("{name}_")).await;
        assert!(left.is_empty(), "{left:?}");
    }
}

/// `migrate` with `args` under umask 000: whatever it creates, it creates with the mode it
/// asks for, not one narrowed by the caller's umask.
fn migrate_with_open_umask(url: &DatabaseUrl, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .args(["--url", url.expose()])
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[tokio::test]
async fn backups_are_private_and_never_overwrite_a_file() {
    let db = TestDb::new().await;
    let dir = support::copy_of_migrations("private_backup");
    let extra = dir.0.join("2099-01-01-000000_extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("up.sql"), "CREATE TABLE extra (id bigint);\n").unwrap();
    std::fs::write(extra.join("down.sql"), "DROP TABLE extra;\n").unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let files = TempDir::new("private_dumps");

    let taken = files.0.join("taken.dump");
    std::fs::write(&taken, "precious").unwrap();
    let out = migrate_with_open_umask(
        &db.url,
        &[
            "upgrade",
            "--dir",
            dir_arg,
            "--backup",
            taken.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("exists already") && err.contains("nothing applied"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "precious");
    let mut conn = db.conn().await;
    assert!(
        !support::table_exists(&mut conn, "extra").await,
        "upgrade did not run"
    );

    let fresh = files.0.join("fresh.dump");
    let out = migrate_with_open_umask(
        &db.url,
        &[
            "upgrade",
            "--dir",
            dir_arg,
            "--backup",
            fresh.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(support::table_exists(&mut conn, "extra").await);

    // A dump that fails leaves nothing behind, not even a partial file.
    let failed = files.0.join("failed.dump");
    let gone = db.url.with_database(&support::unique_name("no_such_db"));
    let err = app::backup::dump(&gone, &failed, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pg_dump failed"), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&files.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fresh.dump", "taken.dump"]);
}

// Multi-threaded: see the first test.
#[tokio::test(flavor = "multi_thread")]
async fn database_settings_grants_and_comment_survive_a_restore() {
    let db = TestDb::new().await;
    let name = quote_ident(&db.url.database());
    let role = support::unique_name("backup_role");
    let mut admin = admin(&db.url).await;
    let role_q = quote_ident(&role);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role_q} NOLOGIN; \
             ALTER DATABASE {name} SET work_mem = '7MB'; \
             ALTER DATABASE {name} SET search_path = \"$user\", public, \"odd, name\"; \
             ALTER ROLE {role_q} IN DATABASE {name} SET statement_timeout = '42s'; \
             REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC; \
             GRANT CONNECT ON DATABASE {name} TO {role_q}; \
             COMMENT ON DATABASE {name} IS 'it''s ours'; \
             ALTER DATABASE {name} CONNECTION LIMIT 50;"
        ))
        .await
        .unwrap();
    let files = TempDir::new("settings_dump");
    let dump = files.0.join("settings.dump");
    app::backup::dump(&db.url, &dump, std::future::pending())
        .await
        .unwrap();

    let out = ok(migrate(Some(&db.url), &["restore", dump.to_str().unwrap()]));
    let kept = out
        .split("kept as ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct State {
        #[diesel(sql_type = Text)]
        state: String,
    }
    // Everything but the name, as text, for one database.
    let state = async |admin: &mut AsyncPgConnection, db: &str| -> String {
        let rows: Vec<State> = diesel::sql_query(
            "SELECT concat_ws(' | ', d.datconnlimit, shobj_description(d.oid, 'pg_database'), \
               (SELECT string_agg(coalesce(r.rolname, 'PUBLIC') || ' ' || a.privilege_type \
                  || ' ' || a.is_grantable, ', ' ORDER BY 1) \
                FROM aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee), \
               (SELECT string_agg(coalesce(r.rolname, '*') || ' ' || s.setconfig::text, ', ' \
                  ORDER BY 1) \
                FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole \
                WHERE s.setdatabase = d.oid)) AS state \
             FROM pg_database d WHERE d.datname = $1",
        )
        .bind::<Text, _>(db)
        .load(admin)
        .await
        .unwrap();
        rows.into_iter().next().unwrap().state
    };
    let restored = state(&mut admin, &db.url.database()).await;
    let before = state(&mut admin, kept).await;
    assert_eq!(restored, before);
    for part in [
        "50 | it's ours",
        &format!("{role} CONNECT false"),
        "work_mem=7MB",
        "odd, name",
        "statement_timeout=42s",
    ] {
        assert!(restored.contains(part), "{part} in {restored}");
    }
    assert!(!restored.contains("PUBLIC CONNECT"), "{restored}");

    // The server applies them: a session on the restored database gets the settings.
    let mut conn = db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        setting: String,
    }
    let Setting { setting } = diesel::sql_query("SELECT current_setting('search_path') AS setting")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(setting, "\"$user\", public, \"odd, name\"");
    drop(conn);

    drop_database(&mut admin, kept).await;
    drop_database(&mut admin, &db.url.database()).await;
    admin
        .batch_execute(&format!("DROP OWNED BY {role_q}; DROP ROLE {role_q}"))
        .await
        .unwrap();
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Encoding, collation, ctype and owner of database `name`, as one line.
async fn database_line(admin: &mut AsyncPgConnection, name: &str) -> String {
    let Line { line } = diesel::sql_query(
        "SELECT concat_ws(' ', pg_encoding_to_char(encoding), datcollate, datctype, \
           pg_get_userbyid(datdba)) AS line FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .get_result(admin)
    .await
    .unwrap();
    line
}

/// Owners of schema `s` and table `s.t`, and the table's grants, as one line.
async fn owners_line(conn: &mut AsyncPgConnection) -> String {
    let Line { line } = diesel::sql_query(
        "SELECT concat_ws(' ', pg_get_userbyid(n.nspowner), pg_get_userbyid(c.relowner), \
           c.relacl::text) AS line \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 's' AND c.relname = 't'",
    )
    .get_result(conn)
    .await
    .unwrap();
    line
}

// Multi-threaded: see the first test.
#[tokio::test(flavor = "multi_thread")]
async fn owners_encoding_and_collation_survive_a_restore() {
    let server = support::server_url();
    let name = support::unique_name("enc");
    let owner = support::unique_name("app_owner");
    let url = server.with_database(&name);
    let mut admin = admin(&server).await;
    let (name_q, owner_q) = (quote_ident(&name), quote_ident(&owner));
    admin
        .batch_execute(&format!("CREATE ROLE {owner_q} NOLOGIN"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name_q} TEMPLATE template0 ENCODING 'SQL_ASCII' \
               LC_COLLATE 'C' LC_CTYPE 'C' OWNER {owner_q}"
        ))
        .await
        .unwrap();
    let mut conn = app::db::connect(&url).await.unwrap();
    conn.batch_execute(&format!(
        "CREATE SCHEMA s AUTHORIZATION {owner_q}; CREATE TABLE s.t (a int); \
         ALTER TABLE s.t OWNER TO {owner_q}; SET ROLE {owner_q}; \
         GRANT SELECT ON s.t TO PUBLIC; RESET ROLE;"
    ))
    .await
    .unwrap();
    let before_db = database_line(&mut admin, &name).await;
    assert_eq!(before_db, format!("SQL_ASCII C C {owner}"));
    let before_owners = owners_line(&mut conn).await;
    assert!(before_owners.starts_with(&format!("{owner} {owner}")));
    drop(conn);
    let files = TempDir::new("owners_dump");
    let dump = files.0.join("b.dump");
    let dump_arg = dump.to_str().unwrap();
    ok(migrate(Some(&url), &["upgrade", "--backup", dump_arg]));

    let out = ok(migrate(Some(&url), &["restore", dump_arg]));
    let kept = out
        .split("kept as ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert_eq!(database_line(&mut admin, &name).await, before_db);
    let mut conn = app::db::connect(&url).await.unwrap();
    assert_eq!(owners_line(&mut conn).await, before_owners);
    drop(conn);
    drop_database(&mut admin, kept).await;

    // The database gone: encoding, locale and owner come from the backup.
    drop_database(&mut admin, &name).await;
    ok(migrate(Some(&url), &["restore", dump_arg]));
    assert_eq!(database_line(&mut admin, &name).await, before_db);
    let mut conn = app::db::connect(&url).await.unwrap();
    assert_eq!(owners_line(&mut conn).await, before_owners);
    drop(conn);

    // An owner role that is gone: refused by name, with the way out; --no-owner takes it.
    let renamed = support::unique_name("renamed_owner");
    let renamed_q = quote_ident(&renamed);
    admin
        .batch_execute(&format!("ALTER ROLE {owner_q} RENAME TO {renamed_q}"))
        .await
        .unwrap();
    let out = migrate(Some(&url), &["restore", dump_arg]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("role \"{owner}\" does not exist"))
            && err.contains("--no-owner")
            && err.contains("is as it was"),
        "{err}"
    );
    let out = ok(migrate(Some(&url), &["restore", dump_arg, "--no-owner"]));
    let kept = out
        .split("kept as ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    drop_database(&mut admin, kept).await;
    drop_database(&mut admin, &name).await;
    admin
        .batch_execute(&format!("DROP OWNED BY {renamed_q}; DROP ROLE {renamed_q}"))
        .await
        .unwrap();
}

// Multi-threaded: see the first test.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_backup_stops_pg_dump_leaves_no_file_and_applies_nothing() {
    let db = TestDb::new().await;
    let name = db.url.database();
    let dir = support::copy_of_migrations("interrupted_backup");
    let extra = dir.0.join("2099-01-01-000000_extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("up.sql"), "CREATE TABLE extra (id bigint);\n").unwrap();
    std::fs::write(extra.join("down.sql"), "DROP TABLE extra;\n").unwrap();
    let files = TempDir::new("interrupted_backup_dumps");
    let dump = files.0.join("b.dump");
    // The partial file of a backup whose migrate was killed: removed by the next backup.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let stale = files.0.join(format!(".b.dump.partial-{}", gone.id()));
    std::fs::write(&stale, "half a dump").unwrap();

    // A lock pg_dump has to wait for: the backup takes as long as we like.
    let mut blocker = db.conn().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["upgrade", "--dir", dir.0.to_str().unwrap()])
        .args(["--backup", dump.to_str().unwrap(), "--url", db.url.expose()])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = admin(&db.url).await;
    #[derive(diesel::QueryableByName)]
    struct Sessions {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let pg_dumps = async |admin: &mut AsyncPgConnection| -> i64 {
        let Sessions { n } = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'pg_dump'",
        )
        .bind::<Text, _>(&name)
        .get_result(admin)
        .await
        .unwrap();
        n
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg_dumps(&mut admin).await == 0 {
        assert!(Instant::now() < deadline, "pg_dump never started");
        assert!(child.try_wait().unwrap().is_none(), "migrate ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "migrate did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let pg_dump = std::process::Command::new("pgrep")
        .args(["-f", &format!("pg_dump.*{name}")])
        .output()
        .unwrap();
    assert!(
        stdout(&pg_dump).trim().is_empty(),
        "pg_dump still running: {}",
        stdout(&pg_dump)
    );
    let left: Vec<_> = std::fs::read_dir(&files.0).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        !support::table_exists(&mut blocker, "extra").await,
        "nothing applied"
    );
    // Its session is gone too (the server notices the closed connection).
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg_dumps(&mut admin).await != 0 {
        assert!(Instant::now() < deadline, "pg_dump's session remains");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn database_names_longer_than_63_bytes_are_refused() {
    let long = support::server_url().with_database(&"é".repeat(32));
    for args in [&["current"][..], &["restore", "/nonexistent.dump"]] {
        let out = migrate(Some(&long), args);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("64 bytes") && err.contains("at most 63"),
            "{err}"
        );
    }
}
