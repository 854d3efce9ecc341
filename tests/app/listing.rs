//! Keyset pages (`models::page`): every row once and in order, `next` only while rows
//! remain, limits checked before any SQL, and an owner's page read from its index in order.

use std::future::Future;

use crate::support::{TestDb, task, user};
use app::Error;
use app::explain::{indexes_used, plan};
use app::models::*;
use app::schema::tasks;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Every page from the first, following `next`; fails if the walk does not end.
async fn walk<T, F, Fut>(limit: i64, mut list: F) -> Vec<Page<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = app::Result<Page<T>>>,
{
    let mut request = Some(PageRequest::new(None, Some(limit)).unwrap());
    let mut pages = Vec::new();
    while let Some(page) = request {
        let got = list(page).await.unwrap();
        request = page.next(&got);
        pages.push(got);
        assert!(pages.len() < 1000, "the walk does not end");
    }
    pages
}

fn ids<T>(pages: &[Page<T>], id: impl Fn(&T) -> i64) -> Vec<i64> {
    pages.iter().flat_map(|p| p.items.iter().map(&id)).collect()
}

fn sizes<T>(pages: &[Page<T>]) -> Vec<usize> {
    pages.iter().map(|p| p.items.len()).collect()
}

#[tokio::test]
async fn pages_walk_every_user_and_team_once_in_order() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    for i in 0..7 {
        user(&mut conn, &format!("u{i}@example.com")).await;
        if i < 5 {
            let name = format!("Team {i}");
            Team::create(&conn, &NewTeam { name: &name }).await.unwrap();
        }
    }

    let pages = walk(3, |p| User::list(&conn, p)).await;
    assert_eq!(sizes(&pages), [3, 3, 1]);
    let all: Vec<i64> = User::all(&conn)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids(&pages, |u| u.id), all, "each user once, by id");
    let last = pages.last().unwrap();
    assert_eq!(last.next, None);
    assert_eq!(
        pages[0].next,
        Some(pages[0].items[2].id),
        "next is the last id"
    );

    let pages = walk(2, |p| Team::list(&conn, p)).await;
    assert_eq!(sizes(&pages), [2, 2, 1]);
    let all: Vec<i64> = Team::all(&conn)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(all.len(), 5);
    assert_eq!(ids(&pages, |t| t.id), all, "each team once, by id");
}

#[tokio::test]
async fn a_page_that_ends_the_rows_exactly_has_no_next() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    for i in 0..6 {
        user(&mut conn, &format!("u{i}@example.com")).await;
    }
    let pages = walk(3, |p| User::list(&conn, p)).await;
    assert_eq!(
        sizes(&pages),
        [3, 3],
        "no empty page after the last full one"
    );
    let one = User::list(&conn, PageRequest::default()).await.unwrap();
    assert_eq!(
        (one.items.len(), one.next),
        (6, None),
        "the default limit is 20"
    );
}

#[tokio::test]
async fn empty_tables_give_one_empty_last_page() {
    let db = TestDb::new().await;
    let conn = db.conn().await;
    let users = User::list(&conn, PageRequest::default()).await.unwrap();
    assert_eq!((users.items.len(), users.next), (0, None));
    let teams = Team::list(&conn, PageRequest::default()).await.unwrap();
    assert_eq!((teams.items.len(), teams.next), (0, None));
    let tasks = Task::list_for_owner(&conn, 42, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (tasks.items.len(), tasks.next),
        (0, None),
        "an unknown owner"
    );
    assert!(Team::all(&conn).await.unwrap().is_empty());
}

// No connection at all: a bad limit never becomes a request, so no list call can send it.
#[test]
fn limits_outside_1_to_100_are_refused_before_any_sql() {
    for bad in [0, 101, -1, i64::MIN, i64::MAX] {
        let err = PageRequest::new(None, Some(bad)).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { constraint, .. } if constraint == "page_limit_range"),
            "{bad}: {err}"
        );
    }
    assert_eq!(Limit::new(1).unwrap().get(), 1);
    assert_eq!(Limit::new(100).unwrap().get(), Limit::MAX);
    let default = PageRequest::new(Some(7), None).unwrap();
    assert_eq!((default.after, default.limit), (Some(7), Limit::DEFAULT));
    assert_eq!(Limit::DEFAULT.get(), 20);
}

#[tokio::test]
async fn an_owners_pages_hold_only_their_live_tasks() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let ben = user(&mut conn, "ben@example.com").await;
    let mut anns = Vec::new();
    for i in 0..7 {
        anns.push(task(&mut conn, &ann, &format!("Ann {i}")).await.id);
        if i % 2 == 0 {
            task(&mut conn, &ben, &format!("Ben {i}")).await;
        }
    }
    for deleted in [anns[0], anns[4]] {
        Task::soft_delete(&conn, deleted).await.unwrap();
    }

    let pages = walk(2, |p| Task::list_for_owner(&conn, ann.id, p)).await;
    assert_eq!(sizes(&pages), [2, 2, 1]);
    let live: Vec<i64> = [1, 2, 3, 5, 6].iter().map(|&i| anns[i]).collect();
    assert_eq!(
        ids(&pages, |t| t.id),
        live,
        "no soft-deleted, no other owner's"
    );
    assert!(
        pages
            .iter()
            .flat_map(|p| &p.items)
            .all(|t| t.owner_id == ann.id)
    );

    let bens = walk(100, |p| Task::list_for_owner(&conn, ben.id, p)).await;
    assert_eq!(sizes(&bens), [4]);
    assert!(bens[0].items.iter().all(|t| t.owner_id == ben.id));
}

/// True when some node of the plan sorts.
fn sorts(node: &serde_json::Value) -> bool {
    match node {
        serde_json::Value::Object(map) => {
            map.get("Node Type").is_some_and(|t| t == "Sort") || map.values().any(sorts)
        }
        serde_json::Value::Array(items) => items.iter().any(sorts),
        _ => false,
    }
}

/// 1,001 users and 100,000 tasks, one in seven soft-deleted; user 1 owns every 200th task
/// (500, spread over the whole table), the others about 100 each. Then ANALYZE.
async fn fill(conn: &mut AsyncPgConnection) {
    for sql in [
        "INSERT INTO users (email, display_name) \
         SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 1001) g",
        "INSERT INTO tasks (owner_id, title, deleted_at) \
         SELECT CASE WHEN g % 200 = 0 THEN 1 ELSE 2 + g % 1000 END, 'Task ' || g, \
                CASE WHEN g % 7 = 0 THEN now() END \
         FROM generate_series(1, 100000) g",
        "ANALYZE",
    ] {
        diesel::sql_query(sql).execute(conn).await.unwrap();
    }
}

#[tokio::test]
async fn an_owners_page_is_read_from_its_index_in_order() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    fill(&mut conn).await;
    // Deep in the table, as the walk's later pages are: an index on owner_id alone made this
    // scan the primary key from `after`, skipping about 5,000 rows of other owners per page.
    for after in [i64::MIN, 50_000] {
        // The statement Task::list_for_owner sends.
        let q = Task::live()
            .filter(tasks::owner_id.eq(1_i64))
            .filter(tasks::id.gt(after))
            .order(tasks::id)
            .limit(21)
            .select(Task::as_select());
        let plan = plan(&mut conn, q).await.unwrap();
        let used = indexes_used(&plan);
        assert_eq!(used, ["tasks_owner_id_id_idx"], "after {after}:\n{plan:#}");
        assert!(!sorts(&plan), "rows come in id order:\n{plan:#}");
    }
    let page = Task::list_for_owner(&conn, 1, PageRequest::new(Some(50_000), Some(20)).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 20);
    assert!(page.items.iter().all(|t| t.id > 50_000 && t.owner_id == 1));
}

#[tokio::test]
async fn a_teams_pages_hold_only_its_live_tasks() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let red = Team::create(&conn, &NewTeam { name: "Red" }).await.unwrap();
    let blue = Team::create(&conn, &NewTeam { name: "Blue" })
        .await
        .unwrap();
    let mut reds = Vec::new();
    for i in 0..7 {
        let title = Title::parse(&format!("Red {i}")).unwrap();
        let mut new = NewTask::new(ann.id, &title);
        new.team_id = Some(red.id);
        reds.push(Task::create(&conn, &new).await.unwrap().id);
        // Tasks of another team, and of none, in between.
        let title = Title::parse(&format!("Blue {i}")).unwrap();
        let mut new = NewTask::new(ann.id, &title);
        new.team_id = Some(blue.id);
        Task::create(&conn, &new).await.unwrap();
        task(&mut conn, &ann, &format!("No team {i}")).await;
    }
    for deleted in [reds[1], reds[6]] {
        Task::soft_delete(&conn, deleted).await.unwrap();
    }

    let pages = walk(2, |p| Task::list_for_team(&conn, red.id, p)).await;
    assert_eq!(sizes(&pages), [2, 2, 1]);
    let live: Vec<i64> = [0, 2, 3, 4, 5].iter().map(|&i| reds[i]).collect();
    assert_eq!(
        ids(&pages, |t| t.id),
        live,
        "no soft-deleted, no other team's"
    );
    assert!(
        pages
            .iter()
            .flat_map(|p| &p.items)
            .all(|t| t.team_id == Some(red.id))
    );
    let nobody = Task::list_for_team(&conn, 999_999, PageRequest::default());
    assert_eq!(nobody.await.unwrap().items.len(), 0, "an unknown team");
}

#[tokio::test]
async fn a_teams_page_is_read_from_its_index_in_order() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    // 100,000 tasks, one in seven soft-deleted, in 40 teams: the first team holds every
    // 200th (500, spread over the whole table), the others about 2,500 each.
    for sql in [
        "INSERT INTO users (email, display_name) VALUES ('ann@example.com', 'Ann')",
        "INSERT INTO teams (name) SELECT 'Team ' || g FROM generate_series(1, 40) g",
        "INSERT INTO tasks (owner_id, team_id, title, deleted_at) \
         SELECT (SELECT min(id) FROM users), \
                (SELECT min(id) FROM teams) + CASE WHEN g % 200 = 0 THEN 0 ELSE 1 + g % 39 END, \
                'Task ' || g, CASE WHEN g % 7 = 0 THEN now() END \
         FROM generate_series(1, 100000) g",
        "ANALYZE",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let team: i64 = diesel::sql_query("SELECT min(id) AS n FROM teams")
        .get_result::<Min>(&mut conn)
        .await
        .unwrap()
        .n;
    // Deep in the table too: the primary key, walked from `after`, would skip about 200
    // rows of other teams per row of this one.
    for after in [i64::MIN, 50_000] {
        // The statement Task::list_for_team sends.
        let q = Task::live()
            .filter(tasks::team_id.eq(team))
            .filter(tasks::id.gt(after))
            .order(tasks::id)
            .limit(21)
            .select(Task::as_select());
        let plan = plan(&mut conn, q).await.unwrap();
        let used = indexes_used(&plan);
        assert_eq!(used, ["tasks_team_id_id_idx"], "after {after}:\n{plan:#}");
        assert!(!sorts(&plan), "rows come in id order:\n{plan:#}");
    }
}

#[derive(diesel::QueryableByName)]
struct Min {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
