//! Least privilege: migrations run as the role that owns the schema; the application
//! connects as a role that may read and write rows but not change the schema.
//!
//! Only a table's owner may ALTER or DROP it, so the split needs no more than grants:
//! the owner grants row access on what exists now and, through default privileges, on
//! every table its later migrations create.

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::Result;
use crate::db::quote_ident;
use crate::migrations::HISTORY_DDL;

/// Grants `app_role` row access (SELECT, INSERT, UPDATE, DELETE) to every table and
/// sequence in `public`, now and in future migrations run by the connected (owner) role,
/// and read-only access to the migration history (created here if missing). `app_role`
/// must exist; creating roles and their passwords is left to whoever administers the server.
pub async fn grant_app_role(conn: &mut AsyncPgConnection, app_role: &str) -> Result<()> {
    let role = quote_ident(app_role);
    let statements = [
        // PostgreSQL 14 and older let every role create tables in `public`.
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ),
        // The app may ask which migrations ran, never record one.
        format!(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON __diesel_schema_migrations FROM {role}"
        ),
        format!("GRANT USAGE ON SCHEMA migrate TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA migrate TO {role}"),
    ];
    // One simple-protocol batch runs as one implicit transaction: a failure (say, an
    // unknown role) grants nothing.
    let batch = format!("{HISTORY_DDL}\n{}", statements.join(";\n"));
    conn.batch_execute(&batch).await?;
    Ok(())
}
