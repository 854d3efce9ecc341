//! Test databases: each test gets its own database, cloned from a migrated template
//! database that is built once per migration set and shared by every test (and every test
//! process on the server), plus small queries tests read state back with.
//!
//! The server comes from `DATABASE_URL` (also read from `.env`), else
//! `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/pg.sh start DIR` starts a
//! private one and prints its URL.

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
