//! Indexes the queries rely on, proven with `EXPLAIN (FORMAT JSON)` on tables with enough
//! rows that a sequential scan would lose: single, composite, partial, expression and GIN.

use crate::support::TestDb;
use app::db::fns::lower;
use app::explain::{indexes_used, plan};
use app::models::*;
use app::schema::{tasks, users};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// 20,000 users (0.2% with dark theme), 40 teams, 40,000 tasks (90% done), then ANALYZE.
/// Owners of open tasks are users 1, 11, 21, ...: `1 + g % 2000` where `g % 10 = 0`.
async fn fill(conn: &mut AsyncPgConnection) {
    for sql in [
        "INSERT INTO users (email, display_name, preferences) \
         SELECT 'user' || g || '@example.com', 'User ' || g, \
                CASE WHEN g % 500 = 0 THEN '{\"theme\": \"dark\"}'::jsonb ELSE '{}' END \
         FROM generate_series(1, 20000) g",
        "INSERT INTO teams (name) SELECT 'Team ' || g FROM generate_series(1, 40) g",
        "INSERT INTO tasks (owner_id, team_id, title, status, due_date) \
         SELECT 1 + g % 2000, 1 + g % 40, 'Task ' || g, \
                (CASE WHEN g % 10 = 0 THEN 'todo' ELSE 'done' END)::task_status, \
                DATE '2030-01-01' + (g % 365) \
         FROM generate_series(1, 40000) g",
        "ANALYZE",
    ] {
        diesel::sql_query(sql).execute(conn).await.unwrap();
    }
}

/// A user with open tasks in the filled tables.
const OPEN_OWNER: i64 = 41;

fn assert_uses<T: std::fmt::Debug>(plan: &serde_json::Value, index: &str, context: T) {
    let used = indexes_used(plan);
    assert!(
        used.iter().any(|i| i == index),
        "{index} not used by {context:?}: {used:?}\n{plan:#}"
    );
}

#[tokio::test]
async fn the_planner_uses_each_index() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    fill(&mut conn).await;

    // Single column: tasks by title.
    let q = tasks::table
        .filter(tasks::title.eq("Task 1234"))
        .select(tasks::id);
    assert_uses(
        &plan(&mut conn, q).await.unwrap(),
        "tasks_title_idx",
        "title",
    );

    // Composite: a team's tasks in one status.
    let q = tasks::table
        .filter(tasks::team_id.eq(7_i64))
        .filter(tasks::status.eq(TaskStatus::Todo))
        .select(tasks::id);
    assert_uses(
        &plan(&mut conn, q).await.unwrap(),
        "tasks_team_id_status_idx",
        "team+status",
    );

    // Partial: the model's own query for open tasks of an owner.
    let q = Task::open_for_owner(OPEN_OWNER).select(Task::as_select());
    assert_uses(
        &plan(&mut conn, q).await.unwrap(),
        "tasks_open_by_owner_idx",
        "open tasks",
    );

    // Expression: lower(email), as User::by_email filters.
    let q = users::table
        .filter(lower(users::email).eq("user77@example.com"))
        .select(users::id);
    assert_uses(
        &plan(&mut conn, q).await.unwrap(),
        "users_email_key",
        "lower(email)",
    );

    // GIN: jsonb containment, as User::with_preferences filters.
    let dark = serde_json::json!({"theme": "dark"});
    let q = users::table
        .filter(users::preferences.contains(dark))
        .select(users::id);
    assert_uses(
        &plan(&mut conn, q).await.unwrap(),
        "users_preferences_idx",
        "jsonb @>",
    );
}

#[tokio::test]
async fn explain_analyze_reports_actual_rows() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    fill(&mut conn).await;
    let q = Task::open_for_owner(OPEN_OWNER).select(Task::as_select());
    let analyzed = app::explain::analyze(&mut conn, q).await.unwrap();
    let top = &analyzed[0]["Plan"];
    assert!(top["Actual Rows"].as_f64().is_some(), "{analyzed:#}");
    let open: Vec<Task> = Task::open_for_owner(OPEN_OWNER)
        .select(Task::as_select())
        .load(&mut conn)
        .await
        .unwrap();
    assert!(!open.is_empty());
    assert_eq!(top["Actual Rows"].as_f64().unwrap() as usize, open.len());
}
