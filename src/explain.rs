//! `EXPLAIN` for any Diesel query: wraps the query, keeps its bind parameters, and returns
//! the plan as JSON, so tests can check which index the planner picks.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::Result;

/// `EXPLAIN (FORMAT JSON) <query>`, or with `ANALYZE, BUFFERS` when `analyze` is set.
#[derive(Debug, Clone)]
pub struct Explain<Q> {
    query: Q,
    analyze: bool,
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(if self.analyze {
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
        } else {
            "EXPLAIN (FORMAT JSON) "
        });
        self.query.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    // The plan is one `json` value; its text form loads as Text.
    type SqlType = Text;
}

impl<Q> diesel::RunQueryDsl<AsyncPgConnection> for Explain<Q> {}

/// The planner's plan for `query`, without running it.
pub async fn plan<Q>(conn: &mut AsyncPgConnection, query: Q) -> Result<serde_json::Value>
where
    Q: QueryFragment<Pg> + Send + 'static,
{
    run(
        conn,
        Explain {
            query,
            analyze: false,
        },
    )
    .await
}

/// Runs `query` under `EXPLAIN (ANALYZE, BUFFERS)` and returns the plan with timings.
/// ANALYZE executes the statement: wrap writes in a transaction you roll back.
pub async fn analyze<Q>(conn: &mut AsyncPgConnection, query: Q) -> Result<serde_json::Value>
where
    Q: QueryFragment<Pg> + Send + 'static,
{
    run(
        conn,
        Explain {
            query,
            analyze: true,
        },
    )
    .await
}

async fn run<Q>(conn: &mut AsyncPgConnection, explain: Explain<Q>) -> Result<serde_json::Value>
where
    Q: QueryFragment<Pg> + Send + 'static,
{
    let text: String = RunQueryDsl::get_result(explain, conn).await?;
    serde_json::from_str(&text)
        .map_err(|e| crate::Error::Database(diesel::result::Error::DeserializationError(e.into())))
}

/// Every index name anywhere in a plan.
pub fn indexes_used(plan: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    collect(plan, &mut found);
    found
}

fn collect(node: &serde_json::Value, found: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(name)) = map.get("Index Name") {
                found.push(name.clone());
            }
            map.values().for_each(|v| collect(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}
