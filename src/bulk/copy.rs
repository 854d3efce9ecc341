//! `COPY ... FROM STDIN (FORMAT binary)`, the fastest way in: from a slice, an iterator, a
//! stream, or batch by batch through [`CopyIn`]. diesel-async cannot COPY, so each copy
//! opens its own tokio-postgres connection (TLS and timeouts as every other) and its own
//! transaction: it does not join a transaction of yours.

use std::marker::PhantomData;
use std::pin::Pin;

use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use futures_util::{Stream, StreamExt};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{FromSql, IsNull, Type};

use super::values::{ColumnDefault, Raw};
use super::{BulkRow, Column, CopySql, DEFAULTS_SQL, defaulted, set_defaults, table_sql};
use crate::db::{DatabaseUrl, quote_ident};
use crate::{Error, Result};

/// Rows laid out into columns at a time by the iterator and stream paths: what bounds
/// their memory, whatever the number of rows.
pub const COPY_BATCH_ROWS: usize = 10_000;

/// Inserts every row in one COPY, all or nothing; returns the number inserted.
pub async fn copy_insert<R: BulkRow>(url: &DatabaseUrl, rows: &[R]) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut copy = CopyIn::open(url).await?;
    for batch in rows.chunks(COPY_BATCH_ROWS) {
        copy.write(batch).await?;
    }
    copy.finish().await
}

/// [`copy_insert`] for rows made on the fly: at most [`COPY_BATCH_ROWS`] are held at once,
/// so memory stays flat however many the iterator yields.
pub async fn copy_insert_iter<R, I>(url: &DatabaseUrl, rows: I) -> Result<usize>
where
    R: BulkRow,
    I: IntoIterator<Item = R>,
{
    copy_insert_stream(url, futures_util::stream::iter(rows)).await
}

/// [`copy_insert_iter`] for rows that arrive asynchronously (a file, a socket, another
/// query).
pub async fn copy_insert_stream<R, S>(url: &DatabaseUrl, rows: S) -> Result<usize>
where
    R: BulkRow,
    S: Stream<Item = R>,
{
    let mut rows = std::pin::pin!(rows);
    let mut copy = CopyIn::open(url).await?;
    let mut batch = Vec::with_capacity(COPY_BATCH_ROWS);
    while let Some(row) = rows.next().await {
        batch.push(row);
        if batch.len() == COPY_BATCH_ROWS {
            copy.write(&batch).await?;
            batch.clear();
        }
    }
    copy.write(&batch).await?;
    copy.finish().await
}

/// A COPY into table `T` in progress: write batches of rows, then [`finish`](Self::finish).
/// Nothing is visible to others before `finish` commits; an error, or dropping it
/// unfinished, rolls every batch back. Use it when rows borrow from data you make per batch
/// (as `NewTask` borrows its title).
pub struct CopyIn<T> {
    client: tokio_postgres::Client,
    started: Option<Started>,
    rows: usize,
    table: PhantomData<fn() -> T>,
}

/// The COPY itself, begun by the first batch, whose layout every later batch must share.
struct Started {
    names: Vec<&'static str>,
    defaults: Vec<Option<ColumnDefault>>,
    writer: Pin<Box<BinaryCopyInWriter>>,
}

impl<T: diesel::Table + Default + QueryFragment<Pg>> CopyIn<T> {
    /// Opens a connection to `url` and a transaction on it.
    pub async fn open(url: &DatabaseUrl) -> Result<Self> {
        let client = crate::db::connect_client(url).await?;
        // BEGIN by hand: a tokio-postgres Transaction borrows the client, and the copy
        // must own both to be handed around.
        client.batch_execute("BEGIN").await.map_err(copy_error)?;
        Ok(CopyIn {
            client,
            started: None,
            rows: 0,
            table: PhantomData,
        })
    }

    /// Sends one batch. The first batch fixes the columns; a later batch laid out
    /// differently is refused.
    pub async fn write<R: BulkRow<Table = T>>(&mut self, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns = R::columns(rows);
        let started = match &mut self.started {
            Some(started) => started,
            None => self
                .started
                .insert(start(&self.client, &mut columns).await?),
        };
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        if names != started.names {
            let message = format!(
                "copy: a batch has columns {names:?}, the copy began with {:?}",
                started.names
            );
            return Err(Error::Database(diesel::result::Error::QueryBuilderError(
                message.into(),
            )));
        }
        for (column, default) in columns.iter_mut().zip(&started.defaults) {
            if let (Some(slot), Some(default)) = (column.values.default_slot(), default) {
                *slot = default.clone();
            }
        }
        let mut row: Vec<&(dyn CopySql + Sync)> = Vec::with_capacity(columns.len());
        for i in 0..rows.len() {
            row.clear();
            row.extend(columns.iter().map(|c| c.values.copy_value(i)));
            (started.writer.as_mut().write(&row).await).map_err(copy_error)?;
        }
        self.rows += rows.len();
        Ok(())
    }

    /// Ends the COPY and commits; returns the rows written.
    pub async fn finish(mut self) -> Result<usize> {
        if let Some(mut started) = self.started.take() {
            started.writer.as_mut().finish().await.map_err(copy_error)?;
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(copy_error)?;
        Ok(self.rows)
    }
}

/// Begins the COPY with the layout of `columns`: their defaults read once (the server's own
/// encoding, written for `None`) and their types as the server declares them (enums too).
async fn start<T: Default + QueryFragment<Pg>>(
    client: &tokio_postgres::Client,
    columns: &mut [Column<'_, T>],
) -> Result<Started> {
    let table = table_sql::<T>();
    let wanted = defaulted(columns);
    let mut defaults = Vec::with_capacity(columns.len());
    if !wanted.is_empty() {
        let found = (client.query(DEFAULTS_SQL, &[&table, &wanted]).await).map_err(copy_error)?;
        let found: Vec<(String, Option<String>)> =
            (found.iter()).map(|r| (r.get(0), r.get(1))).collect();
        set_defaults(columns, &found);
    }
    for column in columns.iter_mut() {
        let Some(slot) = column.values.default_slot() else {
            defaults.push(None);
            continue;
        };
        let value = client.query_one(&format!("SELECT {}", slot.sql), &[]).await;
        slot.raw = value.map_err(copy_error)?.get::<_, Option<Raw>>(0);
        defaults.push(Some(slot.clone()));
    }
    let names: Vec<&'static str> = columns.iter().map(|c| c.name).collect();
    let list: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let list = list.join(", ");
    let probe = format!("SELECT {list} FROM {table} LIMIT 0");
    let probe = client.prepare(&probe).await.map_err(copy_error)?;
    let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
    let sql = format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)");
    let sink = client.copy_in(&sql).await.map_err(copy_error)?;
    let writer = Box::pin(BinaryCopyInWriter::new(sink, &types));
    Ok(Started {
        names,
        defaults,
        writer,
    })
}

impl<'a> FromSql<'a> for Raw {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl CopySql for Raw {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
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
        SqlState::CHECK_VIOLATION => Error::Invalid {
            constraint,
            message: db.message().to_owned(),
        },
        SqlState::NOT_NULL_VIOLATION => Error::Invalid {
            constraint: crate::error::not_null(db.table(), db.column()),
            message: db.message().to_owned(),
        },
        _ => Error::Database(diesel::result::Error::QueryBuilderError(
            db.message().to_owned().into(),
        )),
    }
}
