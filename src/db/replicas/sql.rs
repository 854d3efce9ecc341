//! The SQL the router sends (hand-written: Diesel has no DSL for these system functions),
//! and how it sends it through a transaction pooler.

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{PgLsn, WalPosition};
use crate::Result;
use crate::db::Pooler;

/// What a replica says of itself, in one round trip. Without `pg_read_all_stats` (or
/// `pg_monitor`) the role sees the WAL receiver's process but not its status: a running
/// receiver then counts as streaming, and the replay position still decides.
pub(super) const PROBE: &str = "SELECT pg_is_in_recovery() AS recovering, \
     pg_last_wal_replay_lsn() AS replayed, \
     EXISTS (SELECT 1 FROM pg_stat_wal_receiver \
             WHERE status IS NULL OR status = 'streaming') AS streaming";

#[derive(QueryableByName)]
pub(super) struct ProbeRow {
    #[diesel(sql_type = Bool)]
    pub(super) recovering: bool,
    #[diesel(sql_type = Nullable<PgLsn>)]
    pub(super) replayed: Option<WalPosition>,
    #[diesel(sql_type = Bool)]
    pub(super) streaming: bool,
}

#[derive(QueryableByName)]
pub(super) struct Lsn {
    #[diesel(sql_type = Nullable<PgLsn>)]
    pub(super) lsn: Option<WalPosition>,
}

#[derive(QueryableByName)]
pub(super) struct Position {
    #[diesel(sql_type = PgLsn)]
    pub(super) lsn: WalPosition,
    #[diesel(sql_type = Bool)]
    pub(super) open: bool,
    #[diesel(sql_type = BigInt)]
    pub(super) block: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) segment: i64,
}

/// The one row of `sql` (hand-written: Diesel has no DSL for these system functions).
/// Behind a transaction pooler it runs in a transaction, so its prepare and its execute
/// reach the same server session.
pub(super) async fn fetch<T>(
    conn: &mut AsyncPgConnection,
    pooler: Pooler,
    sql: &'static str,
) -> Result<T>
where
    T: QueryableByName<Pg> + Send + 'static,
{
    let query = diesel::sql_query(sql);
    Ok(match pooler {
        Pooler::Session => query.get_result(conn).await?,
        Pooler::Transaction => {
            conn.transaction(async |c| query.get_result(c).await)
                .await?
        }
    })
}
