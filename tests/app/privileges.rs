//! Least privilege: the owner role migrates; the application role reads and writes rows
//! but cannot change the schema, including tables created by later migrations.

use crate::support::{self, TestDb, count, server_url, unique_name};
use app::db::{self, DatabaseUrl, quote_ident};
use app::models::*;
use app::{Error, migrations, roles};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Two login roles for one test, dropped (with their grants) when the test ends.
struct Roles {
    owner: String,
    app: String,
    password: String,
}

impl Roles {
    async fn create() -> Roles {
        let roles = Roles {
            owner: unique_name("owner"),
            app: unique_name("app"),
            password: unique_name("pw"),
        };
        let mut admin = db::connect(&server_url()).await.unwrap();
        for role in [&roles.owner, &roles.app] {
            // Utility statements take no bind parameters: the server quotes the values.
            #[derive(diesel::QueryableByName)]
            struct Sql {
                #[diesel(sql_type = Text)]
                sql: String,
            }
            let create: Sql = diesel::sql_query(
                "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1, $2) AS sql",
            )
            .bind::<Text, _>(role)
            .bind::<Text, _>(&roles.password)
            .get_result(&mut admin)
            .await
            .unwrap();
            admin.batch_execute(&create.sql).await.unwrap();
        }
        roles
    }

    /// `url` as `role` instead of its own user.
    fn url_as(&self, url: &DatabaseUrl, role: &str) -> DatabaseUrl {
        let mut raw = url::Url::parse(url.expose()).unwrap();
        raw.set_username(role).unwrap();
        raw.set_password(Some(&self.password)).unwrap();
        DatabaseUrl::parse(raw.as_str()).unwrap()
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names = [self.app.clone(), self.owner.clone()];
        support::cleanup(async move {
            let Ok(mut admin) = db::connect(&server_url()).await else {
                return;
            };
            for name in names {
                let _ = admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
                    .await;
            }
        });
    }
}

async fn refused(conn: &mut AsyncPgConnection, sql: &str) -> String {
    match conn.batch_execute(sql).await {
        Ok(()) => panic!("the application role ran {sql:?}"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn the_app_role_writes_rows_but_cannot_alter_the_schema() {
    let roles = Roles::create().await; // declared first: dropped after the database
    let db = TestDb::empty().await;
    let mut admin = db::connect(&server_url()).await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            quote_ident(&db.url.database()),
            quote_ident(&roles.owner)
        ))
        .await
        .unwrap();
    let owner_url = roles.url_as(&db.url, &roles.owner);
    let app_url = roles.url_as(&db.url, &roles.app);

    migrations::run_pending(&owner_url)
        .await
        .expect("the owner runs every migration");
    let mut owner = db::connect(&owner_url).await.unwrap();
    roles::grant_app_role(&mut owner, &roles.app).await.unwrap();

    let mut app = db::connect(&app_url).await.unwrap();
    let created = support::user(&mut app, "app@example.com").await;
    let title = Title::parse("Written by the app").unwrap();
    let task = Task::create(&app, &NewTask::new(created.id, &title))
        .await
        .expect("and rows with identity columns");
    Task::soft_delete(&app, task.id)
        .await
        .expect("updates them");
    assert_eq!(count(&mut app, "users").await, 1, "reads them");

    for ddl in [
        "CREATE TABLE sneaky (id int)",
        "ALTER TABLE users ADD COLUMN sneaky int",
        "DROP TABLE comments",
        "CREATE INDEX sneaky ON tasks (title)",
        "TRUNCATE tasks",
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')",
        "DELETE FROM migrate.checksums",
    ] {
        let err = refused(&mut app, ddl).await;
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{ddl}: {err}"
        );
    }
    assert!(
        matches!(migrations::run_pending(&app_url).await, Ok(applied) if applied.is_empty()),
        "nothing pending: the app may check the version"
    );

    // A later migration by the owner: the app can use the new table without a new grant.
    owner
        .batch_execute(
            "CREATE TABLE later (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)",
        )
        .await
        .unwrap();
    app.batch_execute("INSERT INTO later (note) VALUES ('default privileges')")
        .await
        .expect("default privileges cover tables the owner creates later");
    let err = refused(&mut app, "DROP TABLE later").await;
    assert!(err.contains("must be owner"), "{err}");
}

async fn public_may_create(conn: &mut AsyncPgConnection) -> bool {
    support::flag(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_namespace, aclexplode(nspacl) AS acl \
         WHERE nspname = 'public' AND acl.grantee = 0 AND acl.privilege_type = 'CREATE') AS flag",
    )
    .await
}

#[tokio::test]
async fn granting_to_a_missing_role_fails_and_changes_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    // As on PostgreSQL 14 and older, where everyone may create tables in `public`.
    conn.batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await
        .unwrap();
    let missing = unique_name("no_such_role");
    let err = roles::grant_app_role(&mut conn, &missing)
        .await
        .expect_err("an unknown role");
    assert!(
        matches!(&err, Error::Database(_)) && err.to_string().contains("does not exist"),
        "{err}"
    );
    assert!(
        public_may_create(&mut conn).await,
        "the REVOKE before the failing GRANT was rolled back with it"
    );
}
