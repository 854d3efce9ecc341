//! `COPY ... FROM STDIN (FORMAT binary)`, the fastest way in: from a slice, an iterator, a
//! stream, or batch by batch through [`CopyIn`]. diesel-async cannot COPY, so each copy
//! opens its own tokio-postgres connection (TLS and timeouts as every other) and its own
//! transaction: it does not join a transaction of yours.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;

use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use futures_util::{Stream, StreamExt};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::{BulkRow, Column, CopySql, table_sql};
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
///
/// A row's `None` in a defaulted column leaves that column out of its COPY, so the server
/// evaluates the default for each row as `INSERT` does (`gen_random_uuid()`, `nextval`,
/// `clock_timestamp()` differ per row). PostgreSQL 15's COPY has no per-row `DEFAULT`, so
/// rows that leave different columns to their defaults go in separate COPY statements of the
/// same transaction: within a batch, the rows are grouped by those columns (the group the
/// open COPY takes first, then the others in order of appearance; input order holds within
/// each group). When all rows default the same columns, as usual, it stays one COPY.
pub struct CopyIn<T> {
    client: tokio_postgres::Client,
    started: Option<Started>,
    rows: usize,
    /// A write failed: the transaction is lost, and `finish` must not report a commit.
    failed: bool,
    table: PhantomData<fn() -> T>,
}

/// The layout the first batch fixed, which every later batch must share.
struct Started {
    table: String,
    names: Vec<&'static str>,
    /// Each column's type as the server declares it (enums too).
    types: Vec<Type>,
    /// The COPY statement in progress, if any.
    open: Option<Open>,
}

/// One COPY statement: the columns it leaves out (to their defaults) and its writer.
struct Open {
    omitted: Vec<bool>,
    writer: Pin<Box<BinaryCopyInWriter>>,
}

/// Rows of a batch that leave the same columns to their defaults.
struct Group {
    omitted: Vec<bool>,
    rows: Vec<usize>,
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
            failed: false,
            table: PhantomData,
        })
    }

    /// Sends one batch. The first batch fixes the columns; a later batch laid out
    /// differently is refused (and the copy goes on). Any other error loses the copy.
    pub async fn write<R: BulkRow<Table = T>>(&mut self, rows: &[R]) -> Result<()> {
        if self.failed {
            return Err(lost());
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns = R::columns(rows);
        let names: Vec<&'static str> = columns.iter().map(|c| c.name).collect();
        if let Some(started) = &self.started
            && names != started.names
        {
            let message = format!(
                "copy: a batch has columns {names:?}, the copy began with {:?}",
                started.names
            );
            return Err(Error::Database(diesel::result::Error::QueryBuilderError(
                message.into(),
            )));
        }
        let groups = group_rows(&mut columns, rows.len());
        let written = self.send(&columns, groups).await;
        if written.is_err() {
            self.failed = true;
        }
        written?;
        self.rows += rows.len();
        Ok(())
    }

    /// Writes each group through a COPY that leaves out the group's defaulted columns.
    async fn send(&mut self, columns: &[Column<'_, T>], mut groups: Vec<Group>) -> Result<()> {
        let started = match &mut self.started {
            Some(started) => started,
            None => self
                .started
                .insert(start::<T>(&self.client, columns).await?),
        };
        // The open COPY's group first: a batch like the last one switches nothing.
        if let Some(open) = &started.open
            && let Some(at) = groups.iter().position(|g| g.omitted == open.omitted)
        {
            groups[..=at].rotate_right(1);
        }
        let mut row: Vec<&(dyn CopySql + Sync)> = Vec::with_capacity(columns.len());
        for group in groups {
            if started.open.as_ref().map(|o| &o.omitted) != Some(&group.omitted) {
                if let Some(mut open) = started.open.take() {
                    open.writer.as_mut().finish().await.map_err(copy_error)?;
                }
                if group.omitted.iter().all(|&o| o) {
                    // Every column defaulted: nothing for COPY to carry.
                    let sql = format!(
                        "INSERT INTO {} SELECT FROM generate_series(1, $1::bigint)",
                        started.table
                    );
                    let n = group.rows.len() as i64;
                    (self.client.execute(&sql, &[&n]).await).map_err(copy_error)?;
                    continue;
                }
                let open = begin(&self.client, started, group.omitted).await?;
                started.open = Some(open);
            }
            let open = started.open.as_mut().expect("opened above");
            let kept: Vec<&Column<'_, T>> = (columns.iter().zip(&open.omitted))
                .filter(|(_, omitted)| !**omitted)
                .map(|(c, _)| c)
                .collect();
            for &i in &group.rows {
                row.clear();
                row.extend(kept.iter().map(|c| c.values.copy_value(i)));
                (open.writer.as_mut().write(&row).await).map_err(copy_error)?;
            }
        }
        Ok(())
    }

    /// Ends the COPY and commits; returns the rows written.
    pub async fn finish(mut self) -> Result<usize> {
        if self.failed {
            return Err(lost());
        }
        if let Some(mut open) = self.started.take().and_then(|s| s.open) {
            open.writer.as_mut().finish().await.map_err(copy_error)?;
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(copy_error)?;
        Ok(self.rows)
    }
}

/// The error for a copy used after a failed write: its transaction is already lost (a
/// `COMMIT` now would roll back, silently).
fn lost() -> Error {
    let message = "copy: an earlier write failed; nothing was written";
    Error::Database(diesel::result::Error::QueryBuilderError(message.into()))
}

/// Groups the rows of a batch by the columns they leave to their defaults: groups in order
/// of first appearance, rows in input order within each.
fn group_rows<T>(columns: &mut [Column<'_, T>], n: usize) -> Vec<Group> {
    let slots: Vec<usize> = (columns.iter_mut().enumerate())
        .filter_map(|(i, c)| c.values.default_slot().map(|_| i))
        .collect();
    let none = vec![false; columns.len()];
    if slots.is_empty() {
        let rows = (0..n).collect();
        return vec![Group {
            omitted: none,
            rows,
        }];
    }
    // One bit per defaulted column, `words` per row, in one buffer.
    let words = slots.len().div_ceil(64);
    let mut keys = vec![0u64; n * words];
    for (bit, &column) in slots.iter().enumerate() {
        let values = &columns[column].values;
        for row in 0..n {
            if values.is_default(row) {
                keys[row * words + bit / 64] |= 1 << (bit % 64);
            }
        }
    }
    let omitted_by = |key: &[u64]| {
        let mut omitted = none.clone();
        for (bit, &column) in slots.iter().enumerate() {
            omitted[column] = key[bit / 64] & (1 << (bit % 64)) != 0;
        }
        omitted
    };
    // The usual batch: every row defaults the same columns, one group, no hashing.
    let first = &keys[..words];
    if keys.chunks_exact(words).all(|key| key == first) {
        let rows = (0..n).collect();
        let omitted = omitted_by(first);
        return vec![Group { omitted, rows }];
    }
    let mut index: HashMap<&[u64], usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for row in 0..n {
        let key = &keys[row * words..(row + 1) * words];
        let at = *index.entry(key).or_insert_with(|| {
            let (omitted, rows) = (omitted_by(key), Vec::new());
            groups.push(Group { omitted, rows });
            groups.len() - 1
        });
        groups[at].rows.push(row);
    }
    groups
}

/// Fixes the layout of `columns`: their types as the server declares them, read once.
async fn start<T: Default + QueryFragment<Pg>>(
    client: &tokio_postgres::Client,
    columns: &[Column<'_, T>],
) -> Result<Started> {
    let table = table_sql::<T>();
    let names: Vec<&'static str> = columns.iter().map(|c| c.name).collect();
    let list: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let probe = format!("SELECT {} FROM {table} LIMIT 0", list.join(", "));
    let probe = client.prepare(&probe).await.map_err(copy_error)?;
    let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
    Ok(Started {
        table,
        names,
        types,
        open: None,
    })
}

/// Begins a COPY of every column but the `omitted` ones, which take their defaults.
async fn begin(
    client: &tokio_postgres::Client,
    started: &Started,
    omitted: Vec<bool>,
) -> Result<Open> {
    let kept = |i: &usize| !omitted[*i];
    let indices: Vec<usize> = (0..started.names.len()).filter(kept).collect();
    let list: Vec<String> = (indices.iter())
        .map(|&i| quote_ident(started.names[i]))
        .collect();
    let types: Vec<Type> = indices.iter().map(|&i| started.types[i].clone()).collect();
    let sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        started.table,
        list.join(", ")
    );
    let sink = client.copy_in(&sql).await.map_err(copy_error)?;
    let writer = Box::pin(BinaryCopyInWriter::new(sink, &types));
    Ok(Open { omitted, writer })
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
