//! [`one`]: `get_result` that waits for the whole answer. diesel-async's `get_result`
//! returns on the first row and drops the rest of the response. For a statement outside a
//! transaction, PostgreSQL sends the row (`RETURNING`) *before* it commits: the commit, its
//! WAL flush, a synchronous standby's acknowledgement, a deferred constraint, all come after.
//! So a row `get_result` returned may never have committed: lost in a crash in that window,
//! or refused at commit time with an error nobody reads.

use diesel::QueryResult;
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncConnectionCore, RunQueryDsl};

/// The one row of `query`, returned only once the server has finished the statement (and
/// committed it, outside a transaction): `get_result` for statements that write. No row is
/// `diesel::NotFound`, as with `get_result`.
pub async fn one<'query, 'conn, Q, Conn, U>(query: Q, conn: &'conn mut Conn) -> QueryResult<U>
where
    Conn: AsyncConnectionCore,
    Q: LoadQuery<'query, Conn, U> + RunQueryDsl<Conn> + 'query,
    U: Send + 'conn,
    'query: 'conn,
{
    query.get_committed(conn).await
}

/// [`one`] as a method, beside diesel-async's `get_result`:
/// `insert_into(..).values(..).returning(..).get_committed(&mut conn)`.
pub trait CommittedDsl<Conn: AsyncConnectionCore>: RunQueryDsl<Conn> + Sized {
    /// The one row, once the statement has finished and (outside a transaction) committed.
    fn get_committed<'query, 'conn, U>(
        self,
        conn: &'conn mut Conn,
    ) -> impl Future<Output = QueryResult<U>> + Send + 'conn
    where
        Self: LoadQuery<'query, Conn, U> + 'query,
        U: Send + 'conn,
        'query: 'conn,
    {
        let rows = self.get_results(conn);
        async move {
            let rows: Vec<U> = rows.await?;
            rows.into_iter()
                .next()
                .ok_or(diesel::result::Error::NotFound)
        }
    }
}

impl<T: RunQueryDsl<Conn>, Conn: AsyncConnectionCore> CommittedDsl<Conn> for T {}
