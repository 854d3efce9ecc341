//! Administering a server: creating a database, quoting the identifiers such statements
//! need, and counting rows for reports.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::fns::pg_is_in_recovery;
use super::{DatabaseUrl, connect};
use crate::Result;

/// Quotes an SQL identifier (database, table, column name) for the few statements that
/// cannot take it as a bind parameter, such as `CREATE DATABASE`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Creates the database named in `url` if it does not exist; returns whether it created it.
/// Connects to the `postgres` maintenance database of the same server to do so; refuses a
/// standby.
pub async fn ensure_database(url: &DatabaseUrl) -> Result<bool> {
    let name = url.database();
    let admin_url = url.with_database("postgres");
    let mut admin = connect(&admin_url).await?;
    // A standby would refuse the CREATE with a bare "read-only transaction".
    refuse_standby(&mut admin, url).await?;
    let exists = |name: String| {
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
    };
    let found: Exists = exists(name.clone()).get_result(&mut admin).await?;
    if found.exists {
        return Ok(false);
    }
    // CREATE DATABASE takes no bind parameters: the name is quoted instead.
    let created = diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut admin)
        .await;
    match created {
        Ok(_) => Ok(true),
        // Another process created it between our check and our CREATE: that is fine.
        Err(err) => {
            let again: Exists = exists(name).get_result(&mut admin).await?;
            if again.exists {
                Ok(false)
            } else {
                Err(err.into())
            }
        }
    }
}

/// Refuses `url`'s server, asked on `conn`, when it is a standby (in recovery): work that
/// writes says so before it starts rather than failing on its first write.
pub async fn refuse_standby(conn: &mut AsyncPgConnection, url: &DatabaseUrl) -> Result<()> {
    if diesel::select(pg_is_in_recovery())
        .get_result::<bool>(conn)
        .await?
    {
        return Err(super::standby(url));
    }
    Ok(())
}

/// `DROP DATABASE IF EXISTS … WITH (FORCE)`: gone, its sessions terminated. For databases
/// this project made for itself (scratch copies, restore staging), never a user's.
pub async fn drop_database(admin: &mut AsyncPgConnection, name: &str) -> Result<()> {
    // DROP DATABASE is DDL: Diesel has no DSL for it.
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    diesel::sql_query(sql).execute(admin).await?;
    Ok(())
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// Every table of the `public` schema with its exact row count, sorted by name
/// (Diesel's own bookkeeping table left out).
pub async fn table_counts(conn: &mut AsyncPgConnection) -> Result<Vec<(String, i64)>> {
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name NOT LIKE '\\_\\_diesel%' ORDER BY table_name",
    )
    .load(conn)
    .await?;
    let mut counts = Vec::with_capacity(tables.len());
    for TableName { table_name } in tables {
        let sql = format!("SELECT count(*) AS count FROM {}", quote_ident(&table_name));
        let Count { count } = diesel::sql_query(sql).get_result(conn).await?;
        counts.push((table_name, count));
    }
    Ok(counts)
}
