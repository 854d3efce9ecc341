//! Bulk writes for any model: insert, upsert, update by key, delete and soft-delete by ids.
//!
//! Rows travel as one array per column (`INSERT ... SELECT * FROM unnest($1::bigint[], ...)`),
//! so a statement has one bind parameter per column however many rows it carries: no
//! 65,535-parameter limit, one round trip per chunk, and PostgreSQL plans it once. Each call
//! runs in one transaction: one bad row fails the whole call with a typed error naming the
//! constraint, and nothing is written. A model opts in by implementing [`BulkRow`]: it names
//! its table and lays its rows out as columns; every operation here then works for it. Our
//! models' implementations are in `bulk/rows.rs`.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::pg::Pg;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{Array, BigInt, Date, Nullable, SmallInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::quote_ident;
use crate::models::TaskStatus;
use crate::schema::sql_types;
use crate::{Error, Result};

mod rows;

/// Rows per statement: large enough to amortise the round trip, small enough to keep each
/// statement's memory modest. Every chunk runs in the same transaction.
pub const CHUNK_ROWS: usize = 50_000;

/// One column's values for every row of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `bigint NOT NULL`.
    BigInt(Vec<i64>),
    /// `bigint`, NULL where `None`.
    NullableBigInt(Vec<Option<i64>>),
    /// `smallint NOT NULL`.
    SmallInt(Vec<i16>),
    /// `text NOT NULL`.
    Text(Vec<String>),
    /// `text`, NULL where `None`.
    NullableText(Vec<Option<String>>),
    /// `date`, NULL where `None`.
    NullableDate(Vec<Option<NaiveDate>>),
    /// `timestamptz NOT NULL`.
    Timestamptz(Vec<DateTime<Utc>>),
    /// The `task_status` enum.
    TaskStatus(Vec<TaskStatus>),
}

impl Values {
    /// The PostgreSQL array type to cast the parameter to.
    fn sql_array_type(&self) -> &'static str {
        match self {
            Values::BigInt(_) | Values::NullableBigInt(_) => "bigint[]",
            Values::SmallInt(_) => "smallint[]",
            Values::Text(_) | Values::NullableText(_) => "text[]",
            Values::NullableDate(_) => "date[]",
            Values::Timestamptz(_) => "timestamptz[]",
            Values::TaskStatus(_) => "task_status[]",
        }
    }

    fn bind<'a>(
        self,
        query: BoxedSqlQuery<'a, Pg, diesel::query_builder::SqlQuery>,
    ) -> BoxedSqlQuery<'a, Pg, diesel::query_builder::SqlQuery> {
        match self {
            Values::BigInt(v) => query.bind::<Array<BigInt>, _>(v),
            Values::NullableBigInt(v) => query.bind::<Array<Nullable<BigInt>>, _>(v),
            Values::SmallInt(v) => query.bind::<Array<SmallInt>, _>(v),
            Values::Text(v) => query.bind::<Array<Text>, _>(v),
            Values::NullableText(v) => query.bind::<Array<Nullable<Text>>, _>(v),
            Values::NullableDate(v) => query.bind::<Array<Nullable<Date>>, _>(v),
            Values::Timestamptz(v) => query.bind::<Array<Timestamptz>, _>(v),
            Values::TaskStatus(v) => query.bind::<Array<sql_types::TaskStatus>, _>(v),
        }
    }
}

/// A named column of values.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name in the table.
    pub name: &'static str,
    /// One value per row.
    pub values: Values,
}

impl Column {
    /// A column from a name and its values.
    pub fn new(name: &'static str, values: Values) -> Self {
        Column { name, values }
    }
}

/// A row type the bulk operations can write: its table, and its rows as columns.
pub trait BulkRow: Sized + Sync {
    /// The table the rows go to.
    const TABLE: &'static str;
    /// The rows, one [`Column`] per table column written, values in row order.
    fn columns(rows: &[Self]) -> Vec<Column>;
}

/// What an upsert does with a row whose key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict<'a> {
    /// Keep the existing row (`DO NOTHING`).
    Ignore,
    /// Overwrite these columns with the new values (`DO UPDATE SET c = EXCLUDED.c`).
    Update(&'a [&'a str]),
}

/// `unnest($1::bigint[], $2::text[], ...) AS v(a, b, ...)` and the binds it needs.
fn unnest_source(columns: &[Column]) -> (String, String) {
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.values.sql_array_type()))
        .collect();
    let names: Vec<String> = columns.iter().map(|c| quote_ident(c.name)).collect();
    (format!("unnest({})", casts.join(", ")), names.join(", "))
}

fn bind_all<'a>(
    sql: String,
    columns: Vec<Column>,
) -> BoxedSqlQuery<'a, Pg, diesel::query_builder::SqlQuery> {
    columns
        .into_iter()
        .fold(diesel::sql_query(sql).into_boxed(), |q, c| c.values.bind(q))
}

/// Runs `statement(chunk)` for each chunk of rows inside one transaction; returns the sum of
/// affected rows. Any failure rolls back every chunk.
async fn chunked<R, F>(conn: &mut AsyncPgConnection, rows: &[R], statement: F) -> Result<usize>
where
    R: BulkRow,
    F: Fn(&[R]) -> (String, Vec<Column>) + Sync,
{
    if rows.is_empty() {
        return Ok(0);
    }
    conn.transaction::<_, Error, _>(async |conn| {
        let mut affected = 0;
        for chunk in rows.chunks(CHUNK_ROWS) {
            let (sql, columns) = statement(chunk);
            affected += bind_all(sql, columns).execute(conn).await?;
        }
        Ok(affected)
    })
    .await
}

/// Inserts every row, all or nothing; returns the number inserted.
pub async fn insert<R: BulkRow>(conn: &mut AsyncPgConnection, rows: &[R]) -> Result<usize> {
    chunked(conn, rows, |chunk| {
        let columns = R::columns(chunk);
        let (source, names) = unnest_source(&columns);
        let sql = format!(
            "INSERT INTO {} ({names}) SELECT * FROM {source}",
            quote_ident(R::TABLE)
        );
        (sql, columns)
    })
    .await
}

/// Inserts rows, resolving conflicts on `conflict_target` (a unique key's columns) as
/// `on_conflict` says; returns the rows inserted or updated.
pub async fn upsert<R: BulkRow>(
    conn: &mut AsyncPgConnection,
    rows: &[R],
    conflict_target: &[&str],
    on_conflict: OnConflict<'_>,
) -> Result<usize> {
    let target: Vec<String> = conflict_target.iter().map(|c| quote_ident(c)).collect();
    let action = match on_conflict {
        OnConflict::Ignore => "DO NOTHING".to_owned(),
        OnConflict::Update(columns) => {
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            format!("DO UPDATE SET {}", sets.join(", "))
        }
    };
    chunked(conn, rows, |chunk| {
        let columns = R::columns(chunk);
        let (source, names) = unnest_source(&columns);
        let sql = format!(
            "INSERT INTO {} ({names}) SELECT * FROM {source} ON CONFLICT ({}) {action}",
            quote_ident(R::TABLE),
            target.join(", ")
        );
        (sql, columns)
    })
    .await
}

/// Updates existing rows matched by their first column (the key, e.g. `id`), setting every
/// other column; returns the rows updated. Keys that match nothing are skipped.
pub async fn update_by_key<R: BulkRow>(conn: &mut AsyncPgConnection, rows: &[R]) -> Result<usize> {
    chunked(conn, rows, |chunk| {
        let columns = R::columns(chunk);
        let (source, names) = unnest_source(&columns);
        let key = quote_ident(columns[0].name);
        let sets: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{0} = v.{0}", quote_ident(c.name)))
            .collect();
        let sql = format!(
            "UPDATE {table} AS t SET {sets} FROM {source} AS v({names}) WHERE t.{key} = v.{key}",
            table = quote_ident(R::TABLE),
            sets = sets.join(", "),
        );
        (sql, columns)
    })
    .await
}

/// Deletes the rows of `table` with these ids (one array parameter); returns how many.
pub async fn delete_by_ids(
    conn: &mut AsyncPgConnection,
    table: &str,
    ids: &[i64],
) -> Result<usize> {
    let sql = format!("DELETE FROM {} WHERE id = ANY($1)", quote_ident(table));
    Ok(diesel::sql_query(sql)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?)
}

/// Sets `deleted_at` on the live rows of `table` with these ids; returns how many.
pub async fn soft_delete_by_ids(
    conn: &mut AsyncPgConnection,
    table: &str,
    ids: &[i64],
) -> Result<usize> {
    let sql = format!(
        "UPDATE {} SET deleted_at = now() WHERE id = ANY($1) AND deleted_at IS NULL",
        quote_ident(table)
    );
    Ok(diesel::sql_query(sql)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?)
}

/// A PostgreSQL enum value for tokio-postgres: its label.
#[derive(Debug)]
struct EnumLabel(&'static str);

impl tokio_postgres::types::ToSql for EnumLabel {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        matches!(ty.kind(), tokio_postgres::types::Kind::Enum(_))
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Inserts every row with `COPY ... FROM STDIN (FORMAT binary)`, the fastest path
/// PostgreSQL has, in one transaction. diesel-async cannot COPY, so this opens its own
/// tokio-postgres connection to `url`: it does not join a transaction of yours.
pub async fn copy_insert<R: BulkRow>(url: &crate::db::DatabaseUrl, rows: &[R]) -> Result<usize> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};

    if rows.is_empty() {
        return Ok(0);
    }
    let mut client = crate::db::connect_client(url).await?;
    async {
        let tx = client.transaction().await.map_err(copy_error)?;
        let columns = R::columns(rows);
        let mut types = Vec::with_capacity(columns.len());
        for c in &columns {
            types.push(match &c.values {
                Values::BigInt(_) | Values::NullableBigInt(_) => Type::INT8,
                Values::SmallInt(_) => Type::INT2,
                Values::Text(_) | Values::NullableText(_) => Type::TEXT,
                Values::NullableDate(_) => Type::DATE,
                Values::Timestamptz(_) => Type::TIMESTAMPTZ,
                Values::TaskStatus(_) => {
                    let probe = tx
                        .prepare("SELECT NULL::task_status")
                        .await
                        .map_err(copy_error)?;
                    probe.columns()[0].type_().clone()
                }
            });
        }
        let names: Vec<String> = columns.iter().map(|c| quote_ident(c.name)).collect();
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            quote_ident(R::TABLE),
            names.join(", ")
        );
        let sink = tx.copy_in(&sql).await.map_err(copy_error)?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        // Enum columns as labels tokio-postgres can write; other columns need none.
        let labels: Vec<Vec<EnumLabel>> = columns
            .iter()
            .map(|c| match &c.values {
                Values::TaskStatus(v) => v.iter().map(|s| EnumLabel(s.as_str())).collect(),
                _ => Vec::new(),
            })
            .collect();
        for i in 0..rows.len() {
            let row: Vec<&(dyn ToSql + Sync)> = columns
                .iter()
                .zip(&labels)
                .map(|(c, labels)| -> &(dyn ToSql + Sync) {
                    match &c.values {
                        Values::TaskStatus(_) => &labels[i],
                        Values::BigInt(v) => &v[i],
                        Values::NullableBigInt(v) => &v[i],
                        Values::SmallInt(v) => &v[i],
                        Values::Text(v) => &v[i],
                        Values::NullableText(v) => &v[i],
                        Values::NullableDate(v) => &v[i],
                        Values::Timestamptz(v) => &v[i],
                    }
                })
                .collect();
            writer.as_mut().write(&row).await.map_err(copy_error)?;
        }
        let written = writer.finish().await.map_err(copy_error)?;
        tx.commit().await.map_err(copy_error)?;
        Ok(usize::try_from(written).unwrap_or(usize::MAX))
    }
    .await
}

/// A tokio-postgres error as ours, constraint violations typed like Diesel's.
fn copy_error(err: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return Error::Database(diesel::result::Error::QueryBuilderError(
            err.to_string().into(),
        ));
    };
    let constraint = db.constraint().unwrap_or("unknown").to_owned();
    match *db.code() {
        SqlState::UNIQUE_VIOLATION => Error::Conflict { constraint },
        SqlState::FOREIGN_KEY_VIOLATION => Error::ForeignKey { constraint },
        SqlState::CHECK_VIOLATION | SqlState::NOT_NULL_VIOLATION => Error::Invalid {
            constraint,
            message: db.message().to_owned(),
        },
        _ => Error::Database(diesel::result::Error::QueryBuilderError(
            db.message().to_owned().into(),
        )),
    }
}
