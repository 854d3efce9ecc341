//! Eager loading: the same result as the N+1 version, in a number of queries that does not
//! depend on the number of parents (counted with Diesel's instrumentation).

use crate::support::TestDb;
use app::db::instrument::QueryCounter;
use app::loaders;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// `users` users with 3 tasks each (one soft-deleted), each live task with 2 tags.
async fn fill(conn: &mut AsyncPgConnection, users: i64) -> Vec<i64> {
    for sql in [
        "INSERT INTO users (email, display_name) \
         SELECT 'u' || g || '@example.com', 'U' || g FROM generate_series(1, $1) g",
        "INSERT INTO tasks (owner_id, title, deleted_at) \
         SELECT u.id, 'Task ' || n, CASE WHEN n = 3 THEN now() END \
         FROM users u, generate_series(1, 3) n WHERE $1 > 0",
        "INSERT INTO tags (name) SELECT 'tag-' || g FROM generate_series(1, 5) g WHERE $1 > 0",
        "INSERT INTO task_tags (task_id, tag_id) \
         SELECT t.id, tg.id FROM tasks t JOIN tags tg ON tg.id IN (1 + t.id % 5, 1 + (t.id + 1) % 5) \
         WHERE t.deleted_at IS NULL AND $1 > 0",
    ] {
        diesel::sql_query(sql)
            .bind::<BigInt, _>(users)
            .execute(conn)
            .await
            .unwrap();
    }
    (1..=users).collect()
}

#[tokio::test]
async fn eager_and_joined_match_the_naive_loader() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ids = fill(&mut conn, 20).await;
    let naive = loaders::naive(&conn, &ids).await.unwrap();
    assert_eq!(naive.len(), 20);
    assert!(
        naive.iter().all(|u| u.tasks.len() == 2),
        "soft-deleted tasks hidden"
    );
    assert!(
        naive
            .iter()
            .flat_map(|u| &u.tasks)
            .all(|(_, tags)| tags.len() == 2)
    );
    assert_eq!(loaders::eager(&conn, &ids).await.unwrap(), naive);
    assert_eq!(loaders::joined(&conn, &ids).await.unwrap(), naive);
}

#[tokio::test]
async fn eager_query_count_does_not_grow_with_parents() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ids = fill(&mut conn, 1_000).await;
    let counter = QueryCounter::install(&mut conn);

    let (few, eager_10) = counter.during(loaders::eager(&conn, &ids[..10])).await;
    let (many, eager_1000) = counter.during(loaders::eager(&conn, &ids)).await;
    assert_eq!((few.unwrap().len(), many.unwrap().len()), (10, 1_000));
    assert_eq!(eager_10, 3, "users, tasks, tags");
    assert_eq!(eager_1000, eager_10);

    let (_, joined_10) = counter.during(loaders::joined(&conn, &ids[..10])).await;
    let (_, joined_1000) = counter.during(loaders::joined(&conn, &ids)).await;
    assert_eq!((joined_10, joined_1000), (1, 1));

    let (_, naive_10) = counter.during(loaders::naive(&conn, &ids[..10])).await;
    assert_eq!(
        naive_10,
        1 + 10 + 10 * 2,
        "the N+1 problem: users, tasks per user, tags per task"
    );
}
