//! A write's row is returned only once it has committed: `db::one`, not `get_result`, for
//! statements that write outside a transaction (see `src/db/committed.rs`).

use diesel::sql_types::Integer;
use diesel_async::SimpleAsyncConnection;

use crate::support::{TestDb, count};

#[derive(diesel::QueryableByName, Debug)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

/// A deferred foreign key is checked at commit, after PostgreSQL has sent the row. With
/// `get_result` the caller gets the row of a statement that then failed; `db::one` waits
/// for the commit and returns its error.
#[tokio::test]
async fn a_row_is_returned_only_once_its_statement_has_committed() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    conn.batch_execute(
        "CREATE TABLE deferred_demo (id int PRIMARY KEY, parent int \
         REFERENCES deferred_demo (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await
    .unwrap();
    // A row whose parent does not exist: refused at commit. Hand-written SQL: a table of
    // this test's own, not in the schema.
    let insert = |id: i32| {
        diesel::sql_query(format!(
            "INSERT INTO deferred_demo VALUES ({id}, 999) RETURNING id"
        ))
    };

    let got = app::db::one::<_, _, Id>(insert(1), &mut conn).await;
    let err = got.expect_err("the commit failed, so there is no row to return");
    assert!(err.to_string().contains("foreign key"), "{err}");
    assert_eq!(count(&mut conn, "deferred_demo").await, 0);

    // The trap itself: diesel-async's get_result hands over the row before the commit.
    // When this assertion fails, diesel-async waits for the commit and `db::one` can go.
    let trap = diesel_async::RunQueryDsl::get_result::<Id>(insert(2), &mut conn).await;
    assert_eq!(trap.map(|row| row.id).ok(), Some(2), "get_result now waits");
    assert_eq!(
        count(&mut conn, "deferred_demo").await,
        0,
        "yet no row was stored"
    );
}
