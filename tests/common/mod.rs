//! Test databases: each test gets its own database, cloned from a migrated template
//! database that is built once per migration set and shared by every test process.
//!
//! The server comes from `DATABASE_URL` (also read from `.env`), else
//! `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/pg.sh start DIR` starts a
//! private one and prints its URL.

#![allow(dead_code)] // each test file uses its own part of this module

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use app::db::{self, DatabaseUrl, DbConfig, Pool, quote_ident};
use app::migrations;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    /// URL of the test's database.
    pub url: DatabaseUrl,
    admin: DatabaseUrl,
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The server under test, as an admin URL on its `postgres` database.
pub fn server_url() -> DatabaseUrl {
    let _ = dotenvy::dotenv();
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    DatabaseUrl::parse(&raw)
        .expect("DATABASE_URL is not a valid postgres URL")
        .with_database("postgres")
}

/// Database names start with the crate name, cut so names stay under PostgreSQL's 63 bytes.
fn prefix() -> String {
    let name = env!("CARGO_PKG_NAME").replace('-', "_").to_lowercase();
    name.chars().take(20).collect()
}

/// A name no other test, in this or another process, is using.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

impl TestDb {
    /// A fresh, fully migrated database.
    pub async fn new() -> TestDb {
        let admin = server_url();
        let template = TEMPLATE
            .get_or_init(|| build_template(admin.clone()))
            .await
            .clone();
        let name = unique_name(&prefix());
        let mut conn = admin_conn(&admin).await;
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(&name),
            quote_ident(&template)
        );
        // A run of another version of this project on the same server drops templates it
        // sees as stale; if ours is gone, build it again (idempotent, locked) and retry.
        if let Err(first) = diesel::sql_query(sql.clone()).execute(&mut conn).await {
            build_template(admin.clone()).await;
            diesel::sql_query(sql)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("create test database: {e} (first try: {first})"));
        }
        TestDb {
            url: admin.with_database(&name),
            admin,
        }
    }

    /// A fresh database with nothing in it, not even migrations.
    pub async fn empty() -> TestDb {
        let db = TestDb::not_created();
        db::ensure_database(&db.url)
            .await
            .expect("create empty database");
        db
    }

    /// A name for a database that does not exist yet, dropped with this value if created.
    pub fn not_created() -> TestDb {
        let admin = server_url();
        let name = unique_name(&format!("{}_new", prefix()));
        TestDb {
            url: admin.with_database(&name),
            admin,
        }
    }

    /// One connection to the test database.
    pub async fn conn(&self) -> AsyncPgConnection {
        db::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// A pool on the test database.
    pub fn pool(&self, max_size: usize) -> Pool {
        let mut config = DbConfig::new(self.url.clone());
        config.max_size = max_size;
        db::build_pool(&config).expect("build pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.url.database();
        cleanup(async move {
            if let Ok(mut conn) = db::connect(&admin).await {
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                );
                let _ = diesel::sql_query(sql).execute(&mut conn).await;
            }
        });
    }
}

/// Runs async clean-up from `Drop`, which runs inside a Tokio runtime and so cannot
/// block on it: the work gets a thread and a runtime of its own.
pub fn cleanup(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join();
}

async fn admin_conn(admin: &DatabaseUrl) -> AsyncPgConnection {
    db::connect(admin).await.unwrap_or_else(|e| {
        panic!(
            "tests need a PostgreSQL server: {e}\n\
             Set DATABASE_URL, start one at 127.0.0.1:5432, or run scripts/pg.sh start /tmp/pg and set DATABASE_URL to the URL it prints"
        )
    })
}

/// Creates `<crate>_tpl_<hash of migrations>` once (under an advisory lock, so parallel
/// test processes agree) and returns its name.
async fn build_template(admin: DatabaseUrl) -> String {
    let name = format!("{}_tpl_{:016x}", prefix(), migrations_hash());
    let mut conn = admin_conn(&admin).await;
    let lock_key = 0x7e57_0000_i64; // any constant shared by all test processes
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await
        .expect("lock");
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let found: Found =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(&name)
            .get_result(&mut conn)
            .await
            .expect("look up template");
    if found.n == 0 {
        // Build under a temporary name and rename when complete, so a crash half-way
        // never leaves a half-migrated template behind.
        let wip = format!("{name}_wip");
        let drop_wip = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&wip));
        diesel::sql_query(drop_wip)
            .execute(&mut conn)
            .await
            .expect("drop stale template");
        let url = admin.with_database(&wip);
        db::ensure_database(&url).await.expect("create template");
        migrations::run_pending(&url)
            .await
            .expect("migrate template");
        let rename = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&wip),
            quote_ident(&name)
        );
        diesel::sql_query(rename)
            .execute(&mut conn)
            .await
            .expect("publish template");
        drop_stale_templates(&mut conn, &name).await;
    }
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await
        .expect("unlock");
    name
}

/// Templates of older migration sets are dead weight once a new one exists.
async fn drop_stale_templates(conn: &mut AsyncPgConnection, current: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let pattern = format!("{}\\_tpl\\_%", prefix());
    let stale: Vec<Name> = diesel::sql_query(
        // Not `_wip`: that is another run's build in progress.
        "SELECT datname::text AS datname FROM pg_database \
         WHERE datname LIKE $1 AND datname <> $2 AND datname NOT LIKE '%\\_wip'",
    )
    .bind::<Text, _>(pattern)
    .bind::<Text, _>(current)
    .load(conn)
    .await
    .unwrap_or_default();
    for Name { datname } in stale {
        // Without FORCE: a template another test run is still cloning stays.
        let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(&datname));
        let _ = diesel::sql_query(sql).execute(conn).await;
    }
}

/// Changes whenever a migration file or the runner's code changes, so either gets a new
/// template.
fn migrations_hash() -> u64 {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = walk(&root.join("migrations"));
    files.extend(walk(&root.join("src/migrations")));
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.strip_prefix(root).unwrap().hash(&mut hasher);
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    hasher.finish()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Inserts a user with this email (which must be valid).
pub async fn user(conn: &mut AsyncPgConnection, email: &str) -> app::models::User {
    use app::models::{Email, NewUser, User};
    let email = Email::parse(email).expect("valid test email");
    User::create(
        conn,
        &NewUser {
            email: &email,
            display_name: "Test User",
        },
    )
    .await
    .expect("insert test user")
}

/// Inserts a task with this title for `owner`.
pub async fn task(
    conn: &mut AsyncPgConnection,
    owner: &app::models::User,
    title: &str,
) -> app::models::Task {
    use app::models::{NewTask, Task, Title};
    let title = Title::parse(title).expect("valid test title");
    Task::create(conn, &NewTask::new(owner.id, &title))
        .await
        .expect("insert test task")
}

/// Exact row count of a table (name quoted, never interpolated raw).
pub async fn count(conn: &mut AsyncPgConnection, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let sql = format!("SELECT count(*) AS n FROM {}", quote_ident(table));
    let Count { n } = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .expect("count rows");
    n
}

/// One boolean, selected `AS flag`.
#[derive(diesel::QueryableByName)]
pub struct Flag {
    /// The value.
    #[diesel(sql_type = Bool)]
    pub flag: bool,
}

/// Runs `sql`, a query selecting one boolean `AS flag`, and returns it.
pub async fn flag(conn: &mut AsyncPgConnection, sql: &str) -> bool {
    let row: Flag = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.flag
}

/// Whether a table (any relation) of this name exists.
pub async fn table_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    let row: Flag = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS flag")
        .bind::<Text, _>(name)
        .get_result(conn)
        .await
        .unwrap();
    row.flag
}

/// Versions in diesel's history table, sorted; none when the table does not exist yet.
pub async fn versions(conn: &mut AsyncPgConnection) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let rows: Vec<Version> = diesel::sql_query(
        "SELECT version::text AS version FROM __diesel_schema_migrations ORDER BY 1",
    )
    .load(conn)
    .await
    .unwrap_or_default();
    rows.into_iter().map(|r| r.version).collect()
}

/// A folder of its own under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates an empty folder.
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(label));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

/// A copy of the project's migrations in a temp folder, for tests that add their own.
pub fn copy_of_migrations(label: &str) -> TempDir {
    let dir = TempDir::new(label);
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let from = entry.unwrap().path();
        let to = dir.0.join(from.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    }
    dir
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `scripts/pg.sh` (without DATABASE_URL: it manages private clusters) with extra
/// environment variables.
pub fn pg_sh(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run scripts/pg.sh")
}

/// True if PostgreSQL's server binaries (initdb, pg_ctl) are installed. Otherwise the test
/// says it is skipped, or fails when REQUIRE_PG_BINARIES=1 (CI sets it).
pub fn pg_binaries_present() -> bool {
    let probe = std::process::Command::new("bash")
        .arg("-c")
        .arg(concat!(
            ". ",
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg.sh && pg_bindir"
        ))
        .output()
        .expect("bash");
    if !probe.status.success() {
        assert!(
            std::env::var("REQUIRE_PG_BINARIES").as_deref() != Ok("1"),
            "REQUIRE_PG_BINARIES=1 but initdb/pg_ctl were not found"
        );
        eprintln!("skipped: PostgreSQL server binaries (initdb, pg_ctl) not found");
    }
    probe.status.success()
}

/// A private cluster of this test's own, stopped and removed when dropped.
pub struct Cluster(pub std::path::PathBuf);

impl Cluster {
    /// A cluster directory that does not exist yet; nothing starts until [`Cluster::start`].
    pub fn new(label: &str) -> Cluster {
        // Unix socket paths are short: a directory directly under /tmp.
        Cluster(std::path::PathBuf::from(format!(
            "/tmp/{}",
            unique_name(label)
        )))
    }

    /// Starts (or restarts) the cluster with `scripts/pg.sh start` and returns its URL.
    pub fn start(&self, env: &[(&str, &str)]) -> String {
        let out = pg_sh(&["start", self.0.to_str().unwrap()], env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A streaming replica of this (running) cluster, started with `scripts/pg.sh
    /// replica`, and its URL.
    pub fn replica(&self, label: &str) -> (Cluster, String) {
        let replica = Cluster::new(label);
        let out = pg_sh(
            &[
                "replica",
                self.0.to_str().unwrap(),
                replica.0.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (replica, url)
    }

    /// A pgbouncer in `mode` (transaction or session) with `pool_size` server connections
    /// in front of this (running) cluster, and its URL; stopped when dropped.
    pub fn bouncer(&self, label: &str, mode: &str, pool_size: usize) -> (Bouncer, String) {
        self.bouncer_with(label, mode, pool_size, "")
    }

    /// [`Cluster::bouncer`] with `extra` lines in its `[pgbouncer]` section.
    pub fn bouncer_with(
        &self,
        label: &str,
        mode: &str,
        pool_size: usize,
        extra: &str,
    ) -> (Bouncer, String) {
        let bouncer = Bouncer(Cluster::new(label).0.clone());
        let size = pool_size.to_string();
        let out = pg_sh(
            &[
                "bouncer",
                self.0.to_str().unwrap(),
                bouncer.0.to_str().unwrap(),
                mode,
            ],
            &[("POOL_SIZE", &size), ("PGB_EXTRA", extra)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (bouncer, url)
    }

    /// The server's processes: the postmaster (from `postmaster.pid`) and its children.
    fn pids(&self) -> Vec<String> {
        let Ok(file) = std::fs::read_to_string(self.0.join("data/postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = file.lines().next().map(str::trim).map(str::to_owned) else {
            return Vec::new();
        };
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep");
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        pids.push(postmaster);
        pids
    }

    /// Sends `signal` to every process of the server.
    fn signal(&self, signal: &str) {
        let pids = self.pids();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .args(&pids)
                .status();
        }
    }

    /// Freezes the server (SIGSTOP to every process): its sockets stay open and the
    /// kernel keeps accepting, but nothing answers, as with a hung host. The postmaster
    /// first, so no backend is forked after its children were listed.
    pub fn freeze(&self) {
        if let Some(postmaster) = self.pids().pop() {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &postmaster])
                .status();
        }
        self.signal("STOP");
    }

    /// Undoes [`Cluster::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Stops the server, keeping its files.
    pub fn stop(&self) {
        let out = pg_sh(&["stop", self.0.to_str().unwrap()], &[]);
        assert!(out.status.success(), "pg.sh stop failed");
    }
}

/// A pgbouncer process of a test's own (see [`Cluster::bouncer`]).
pub struct Bouncer(pub std::path::PathBuf);

impl Drop for Bouncer {
    fn drop(&mut self) {
        pg_sh(&["bouncer-stop", self.0.to_str().unwrap()], &[]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `pgbouncer` is installed; otherwise says the test is skipped, or fails when
/// REQUIRE_PG_BINARIES=1.
pub fn pgbouncer_present() -> bool {
    let found = ["pgbouncer", "/usr/sbin/pgbouncer"].iter().any(|bin| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        assert!(
            std::env::var("REQUIRE_PG_BINARIES").as_deref() != Ok("1"),
            "REQUIRE_PG_BINARIES=1 but pgbouncer was not found (apt-get install pgbouncer)"
        );
        eprintln!("skipped: pgbouncer not found");
    }
    found
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A frozen server cannot be stopped.
        self.thaw();
        pg_sh(&["stop", self.0.to_str().unwrap()], &[]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `migrate` binary from the project folder, without `DATABASE_URL`.
pub fn migrate(url: Option<&DatabaseUrl>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(url) = url {
        cmd.args(["--url", url.expose()]);
    }
    cmd.output().expect("run migrate")
}

/// A command's standard output, lossily decoded.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, lossily decoded.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard output of a command that must have succeeded.
#[track_caller]
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}
