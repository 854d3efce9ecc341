//! Bulk writes for any model: insert, upsert, update by key, COPY, delete and soft-delete
//! by ids.
//!
//! Rows travel as one array per column (`INSERT ... SELECT ... FROM unnest($1, $2, ...)`), so
//! a statement has one bind parameter per column however many rows it carries: no
//! 65,535-parameter limit, one round trip per chunk, and PostgreSQL plans it once. Each call
//! runs in one transaction: one bad row fails the whole call with a typed error naming the
//! constraint, and nothing is written.
//!
//! Tables and columns come from Diesel's schema types, so a name cannot be misspelt and a
//! column cannot belong to another table. A model opts in by implementing [`BulkRow`]; this
//! module knows no model (ours are laid out in `bulk/rows.rs`).

use std::marker::PhantomData;

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{BoxedSqlQuery, QueryBuilder, QueryFragment, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, HasSqlType, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::quote_ident;
use crate::{Error, Result};

mod copy;
mod rows;
mod values;

pub use copy::{COPY_BATCH_ROWS, CopyIn, copy_insert, copy_insert_iter, copy_insert_stream};
pub use values::{ByLabel, Label};
use values::{ColumnDefault, Defaulted, Plain, TextArrays, Values};

/// The query every chunk builds: SQL plus one array bind per column.
type Query<'q> = BoxedSqlQuery<'q, Pg, SqlQuery>;

/// tokio-postgres's `ToSql`: how COPY writes a value.
pub use tokio_postgres::types::ToSql as CopySql;

/// Rows per statement: large enough to amortise the round trip, small enough to keep each
/// statement's memory modest. Every chunk runs in the same transaction.
pub const CHUNK_ROWS: usize = 50_000;

/// A row type the bulk operations can write: its Diesel table, and its rows as columns of
/// that table. Lay out *every* field (destructure the struct without `..`, so a new field
/// cannot be forgotten): a field left out is silently not stored.
pub trait BulkRow: Sized + Sync {
    /// The table the rows go to, e.g. `tasks::table`.
    type Table: diesel::Table + Default + QueryFragment<Pg>;
    /// The rows, one [`Column`] per field, values in row order.
    fn columns(rows: &[Self]) -> Vec<Column<'_, Self::Table>>;
}

/// One column of a bulk write: a Diesel column of table `T` and every row's value for it.
pub struct Column<'a, T> {
    name: &'static str,
    values: Box<dyn Values + 'a>,
    table: PhantomData<fn() -> T>,
}

impl<'a, T> Column<'a, T> {
    fn of(name: &'static str, values: impl Values + 'a) -> Self {
        let (values, table) = (Box::new(values), PhantomData);
        Column {
            name,
            values,
            table,
        }
    }

    /// Column `C`, one value per row. The value type must be writable by Diesel (the
    /// `unnest` paths) and by tokio-postgres (COPY): integers, strings, `&str`, dates,
    /// times, `Option`s of them, and enums through [`ByLabel`].
    pub fn new<C, V>(_: C, values: Vec<V>) -> Self
    where
        C: diesel::Column<Table = T>,
        C::SqlType: Send + 'static,
        Pg: HasSqlType<C::SqlType>,
        V: ToSql<C::SqlType, Pg> + CopySql + Send + Sync + 'a,
    {
        Column::of(C::NAME, Plain::<C::SqlType, V>(values, PhantomData))
    }

    /// Column `C`, where `None` takes the column's default, evaluated per row as `INSERT`
    /// does. The default comes from the catalog, never repeated here: `COALESCE(value,
    /// default)` for `unnest`; COPY leaves the column out for those rows.
    pub fn or_default<C, V>(_: C, values: Vec<Option<V>>) -> Self
    where
        C: diesel::Column<Table = T>,
        C::SqlType: diesel::sql_types::SqlType<IsNull = diesel::sql_types::is_nullable::NotNull>
            + Send
            + 'static,
        Pg: HasSqlType<C::SqlType>,
        V: ToSql<C::SqlType, Pg> + CopySql + Send + Sync + 'a,
    {
        let default = ColumnDefault::default();
        Column::of(
            C::NAME,
            Defaulted::<C::SqlType, V> {
                values,
                default,
                st: PhantomData,
            },
        )
    }

    /// A `text[]` column `C`, `None` taking its default. `unnest` would flatten an array of
    /// arrays, so each row's array travels as its literal (`{"a","b"}`) and is cast back.
    pub fn text_arrays<C>(_: C, values: Vec<Option<Vec<String>>>) -> Self
    where
        C: diesel::Column<Table = T, SqlType = Array<Text>>,
    {
        Column::of(C::NAME, TextArrays::new(values))
    }
}

/// One or more columns of table `T`, as a tuple: `(tasks::id,)`, `(a, b)`, `(a, b, c)`.
pub trait Columns<T> {
    /// The columns' names.
    fn names(&self) -> Vec<&'static str>;
}

macro_rules! columns_tuple {
    ($($c:ident),+) => {
        impl<T, $($c: diesel::Column<Table = T>),+> Columns<T> for ($($c,)+) {
            fn names(&self) -> Vec<&'static str> {
                vec![$($c::NAME),+]
            }
        }
    };
}
columns_tuple!(A);
columns_tuple!(A, B);
columns_tuple!(A, B, C);
columns_tuple!(A, B, C, D);

/// What an upsert does with a row whose key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep the existing row (`DO NOTHING`).
    Ignore,
    /// Overwrite these columns with the new values (`DO UPDATE SET c = EXCLUDED.c`).
    Update(Vec<&'static str>),
}

impl OnConflict {
    /// Overwrite `columns` (a tuple of Diesel columns) on conflict.
    pub fn update<T>(columns: impl Columns<T>) -> Self {
        OnConflict::Update(columns.names())
    }
}

/// A Diesel table's name as Diesel writes it: quoted, schema-qualified when it has one.
fn table_sql<T: Default + QueryFragment<Pg>>() -> String {
    let mut out = PgQueryBuilder::default();
    T::default()
        .to_sql(&mut out, &Pg)
        .expect("a table name always renders");
    out.finish()
}

/// A statement's column list, `unnest` source and `SELECT` list for some columns.
struct Parts {
    table: String,
    names: Vec<String>,
    source: String,
    selects: Vec<String>,
}

impl Parts {
    fn new<T>(table: &str, columns: &[Column<'_, T>]) -> Self {
        let names: Vec<String> = columns.iter().map(|c| quote_ident(c.name)).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let source = format!("unnest({}) AS v({})", params.join(", "), names.join(", "));
        let selects = (columns.iter().zip(&names))
            .map(|(c, n)| c.values.select(&format!("v.{n}")))
            .collect();
        let table = table.to_owned();
        Parts {
            table,
            names,
            source,
            selects,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct DefaultRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    expr: Option<String>,
}

/// Column defaults as the server has them (`pg_get_expr`), for `names` of `table`.
/// The expression comes cast to the column's type (`3` is an integer, the column smallint).
const DEFAULTS_SQL: &str = "SELECT a.attname::text AS name, \
     '(' || pg_get_expr(d.adbin, d.adrelid) || ')::' || format_type(a.atttypid, a.atttypmod) AS expr \
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE a.attrelid = $1::text::regclass AND a.attname::text = ANY($2::text[]) \
     AND NOT a.attisdropped";

/// The columns whose `None` takes the column default.
fn defaulted<T>(columns: &mut [Column<'_, T>]) -> Vec<String> {
    (columns.iter_mut())
        .filter_map(|c| c.values.default_slot().map(|_| c.name.to_owned()))
        .collect()
}

/// Gives each defaulted column its default's SQL from `found` (`name`, expression) rows;
/// a column without a default takes NULL, as PostgreSQL would.
fn set_defaults<T>(columns: &mut [Column<'_, T>], found: &[(String, Option<String>)]) {
    for column in columns {
        let name = column.name;
        if let Some(slot) = column.values.default_slot() {
            let expr = found.iter().find(|(n, _)| n == name);
            slot.sql = expr
                .and_then(|(_, e)| e.clone())
                .unwrap_or_else(|| "NULL".into());
        }
    }
}

/// The catalog defaults of the defaulted columns among `columns`, read once per call.
async fn load_defaults<T>(
    conn: &mut AsyncPgConnection,
    table: &str,
    columns: &mut [Column<'_, T>],
) -> Result<Vec<(String, Option<String>)>> {
    let wanted = defaulted(columns);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<DefaultRow> = diesel::sql_query(DEFAULTS_SQL)
        .bind::<Text, _>(table)
        .bind::<Array<Text>, _>(&wanted)
        .load(conn)
        .await?;
    Ok(found.into_iter().map(|d| (d.name, d.expr)).collect())
}

/// Runs `statement` (built from each chunk's [`Parts`]) for every chunk inside one
/// transaction; returns the sum of affected rows. Any failure rolls back every chunk.
async fn chunked<R: BulkRow>(
    conn: &mut AsyncPgConnection,
    rows: &[R],
    statement: impl Fn(&Parts) -> String + Sync,
) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let table = table_sql::<R::Table>();
    conn.transaction::<_, Error, _>(async |conn| {
        let defaults = load_defaults(conn, &table, &mut R::columns(&rows[..1])).await?;
        let mut affected = 0;
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut columns = R::columns(chunk);
            set_defaults(&mut columns, &defaults);
            let sql = statement(&Parts::new(&table, &columns));
            let query =
                (columns.iter()).fold(diesel::sql_query(sql).into_boxed(), |q, c| c.values.bind(q));
            affected += query.execute(conn).await?;
        }
        Ok(affected)
    })
    .await
}

/// Inserts every row, all or nothing; returns the number inserted.
pub async fn insert<R: BulkRow>(conn: &mut AsyncPgConnection, rows: &[R]) -> Result<usize> {
    chunked(conn, rows, |p| {
        let (table, names, selects) = (&p.table, p.names.join(", "), p.selects.join(", "));
        format!(
            "INSERT INTO {table} ({names}) SELECT {selects} FROM {}",
            p.source
        )
    })
    .await
}

/// Inserts rows, resolving conflicts on the unique key `target` (a tuple of columns) as
/// `on_conflict` says; returns the rows inserted or updated.
pub async fn upsert<R: BulkRow>(
    conn: &mut AsyncPgConnection,
    rows: &[R],
    target: impl Columns<R::Table>,
    on_conflict: OnConflict,
) -> Result<usize> {
    let target: Vec<String> = target.names().iter().map(|c| quote_ident(c)).collect();
    let action = match on_conflict {
        OnConflict::Ignore => "DO NOTHING".to_owned(),
        OnConflict::Update(columns) => {
            let sets: Vec<String> = (columns.iter())
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            format!("DO UPDATE SET {}", sets.join(", "))
        }
    };
    chunked(conn, rows, |p| {
        let (table, names, selects) = (&p.table, p.names.join(", "), p.selects.join(", "));
        let target = target.join(", ");
        format!(
            "INSERT INTO {table} ({names}) SELECT {selects} FROM {} ON CONFLICT ({target}) {action}",
            p.source
        )
    })
    .await
}

/// Updates existing rows matched on `key` (a tuple of columns, always named: there is no
/// default key), setting every other column of the row type; returns the rows updated.
/// Keys that match nothing are skipped.
pub async fn update_by_key<R: BulkRow>(
    conn: &mut AsyncPgConnection,
    rows: &[R],
    key: impl Columns<R::Table>,
) -> Result<usize> {
    let key: Vec<String> = key.names().iter().map(|c| quote_ident(c)).collect();
    if let Some(row) = rows.first() {
        let laid_out: Vec<String> = (R::columns(std::slice::from_ref(row)).iter())
            .map(|c| quote_ident(c.name))
            .collect();
        if let Some(missing) = key.iter().find(|k| !laid_out.contains(k)) {
            let message = format!("update_by_key: key {missing} is not a column of the rows");
            return Err(Error::Database(diesel::result::Error::QueryBuilderError(
                message.into(),
            )));
        }
    }
    chunked(conn, rows, |p| {
        let sets: Vec<String> = (p.names.iter().zip(&p.selects))
            .filter(|(n, _)| !key.contains(n))
            .map(|(n, s)| format!("{n} = {s}"))
            .collect();
        let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = v.{k}")).collect();
        format!(
            "UPDATE {} AS t SET {} FROM {} WHERE {}",
            p.table,
            sets.join(", "),
            p.source,
            matches.join(" AND ")
        )
    })
    .await
}

/// Deletes the rows whose `key` column is one of `ids` (one array parameter); returns how
/// many. `bulk::delete_by_ids(conn, tasks::id, &ids)`.
pub async fn delete_by_ids<C>(mut conn: &AsyncPgConnection, key: C, ids: &[i64]) -> Result<usize>
where
    C: diesel::Column<SqlType = BigInt>,
    C::Table: Default + QueryFragment<Pg>,
{
    let _ = key;
    let table = table_sql::<C::Table>();
    let sql = format!(
        "DELETE FROM {table} WHERE {} = ANY($1)",
        quote_ident(C::NAME)
    );
    Ok(diesel::sql_query(sql)
        .bind::<Array<BigInt>, _>(ids)
        .execute(&mut conn)
        .await?)
}

/// Sets `deleted_at` to now on the live rows whose `key` is one of `ids`; returns how many.
/// `bulk::soft_delete_by_ids(conn, tasks::id, tasks::deleted_at, &ids)`.
pub async fn soft_delete_by_ids<C, D>(
    mut conn: &AsyncPgConnection,
    key: C,
    deleted_at: D,
    ids: &[i64],
) -> Result<usize>
where
    C: diesel::Column<SqlType = BigInt>,
    C::Table: Default + QueryFragment<Pg>,
    D: diesel::Column<Table = C::Table, SqlType = Nullable<Timestamptz>>,
{
    let _ = (key, deleted_at);
    let (table, key, deleted) = (
        table_sql::<C::Table>(),
        quote_ident(C::NAME),
        quote_ident(D::NAME),
    );
    let sql =
        format!("UPDATE {table} SET {deleted} = now() WHERE {key} = ANY($1) AND {deleted} IS NULL");
    Ok(diesel::sql_query(sql)
        .bind::<Array<BigInt>, _>(ids)
        .execute(&mut conn)
        .await?)
}
