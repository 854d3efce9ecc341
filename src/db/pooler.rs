//! What a connection must know of a pooler between it and the server, and the set-up a
//! transaction-mode pooler needs.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{Error, Result};

/// A connection pooler in front of the server, as far as the connections must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// None, or one in session mode: each connection is one server session.
    #[default]
    Session,
    /// PgBouncer (< 1.21) in transaction mode: a server session is lent per transaction, so
    /// a statement prepared in one transaction is gone in the next. Connections keep no
    /// prepared statements and resolve every enum type when they open; callers must run
    /// each unit of work in `conn.transaction(..)` (docs/scale-out.md).
    Transaction,
}

/// Readies a connection for a transaction-mode pooler: no statement cache (a statement
/// prepared on one server session is missing on the next), and every user-defined type of
/// the search path (enums, domains, ranges, extension types, and arrays of them) resolved
/// now, in one transaction, so tokio-postgres never has to look a type up again on a session
/// that lacks its look-up statements.
///
/// Those look-ups are named statements that tokio-postgres keeps for the life of the
/// connection; left on the shared server session, they collide with the next client's
/// statements of the same name (`prepared statement "s9" already exists`). So the same
/// transaction ends with `DEALLOCATE ALL`: the server session goes back to the pooler as
/// clean as it came. Both set-up transactions also start with one: statements a wrongly
/// configured client left on those sessions cannot collide with the set-up's. (Later
/// transactions may meet other sessions; docs/scale-out.md has PgBouncer's own cure.)
pub(super) async fn for_transaction_pooler(conn: &mut AsyncPgConnection) -> Result<()> {
    use diesel_async::SimpleAsyncConnection;
    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
    conn.transaction::<_, Error, _>(async |conn| {
        conn.batch_execute("DEALLOCATE ALL").await?;
        #[derive(QueryableByName)]
        struct Probe {
            #[diesel(sql_type = Text)]
            sql: String,
        }
        // Builds `SELECT NULL::"t1", NULL::"t1"[], ...` (sql_query: a catalog query Diesel
        // has no schema for).
        let probe: Probe = diesel::sql_query(
            "WITH own AS (SELECT t.oid, t.typarray FROM pg_type t \
               JOIN pg_namespace n ON n.oid = t.typnamespace \
               WHERE n.nspname = ANY (current_schemas(false)) AND t.oid >= 16384 \
               AND t.typtype IN ('b', 'd', 'e', 'r', 'm') AND t.typelem = 0) \
             SELECT 'SELECT ' || COALESCE(string_agg('NULL::' || format_type(oid, NULL), ', '), \
               'NULL') AS sql \
             FROM (SELECT oid FROM own UNION SELECT typarray FROM own WHERE typarray <> 0) t",
        )
        .get_result(conn)
        .await?;
        // Prepared (not batch_execute): preparing is what makes tokio-postgres look the
        // types up and keep them.
        diesel::sql_query(probe.sql).execute(conn).await?;
        conn.batch_execute("DEALLOCATE ALL").await?;
        Ok(())
    })
    .await
}
