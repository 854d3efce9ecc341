//! `Bug`, the joined-table inheritance example (src/models/bug.rs): a bug is a task with a
//! row of its own in `bugs`. Removing the example removes this file with it
//! (docs/first-model.md, "Removing an example model").

use crate::reliability::{hostile_cases, stored_or_refused};
use crate::support::{TestDb, assert_invalid, count, task, user};
use app::Error;
use app::models::{Bug, NewBug, NewTask, Task, Title};

#[tokio::test]
async fn joined_table_bug_is_a_task_with_its_own_row() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let title = Title::parse("Crash on save").unwrap();
    let details = NewBug {
        severity: 1,
        reproduction: Some("Click save twice"),
        found_in_version: None,
    };
    let bug = Bug::create(&mut conn, &NewTask::new(ann.id, &title), &details)
        .await
        .unwrap();

    assert_eq!(
        bug.task.id, bug.details.task_id,
        "one primary key for both rows"
    );
    assert_eq!(Bug::find(&conn, bug.task.id).await.unwrap(), bug);
    assert_eq!(
        Task::find(&conn, bug.task.id).await.unwrap(),
        bug.task,
        "a bug is a task"
    );

    let plain = task(&mut conn, &ann, "Not a bug").await;
    assert!(matches!(
        Bug::find(&conn, plain.id).await,
        Err(Error::NotFound)
    ));
    let severe: Vec<_> = Bug::at_least(&conn, 2).await.unwrap();
    assert_eq!(severe, vec![bug.clone()]);

    // Deleting the base row deletes the subtype row.
    Task::delete(&conn, bug.task.id).await.unwrap();
    assert_eq!(count(&mut conn, "bugs").await, 0);
}

#[tokio::test]
async fn joined_table_insert_is_all_or_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let title = Title::parse("Bad severity").unwrap();
    let details = NewBug {
        severity: 7,
        reproduction: None,
        found_in_version: None,
    };
    let err = Bug::create(&mut conn, &NewTask::new(ann.id, &title), &details)
        .await
        .unwrap_err();
    assert_invalid(&err, "bugs_severity_range");
    assert_eq!(
        count(&mut conn, "tasks").await,
        0,
        "the task row was rolled back too"
    );
}

#[tokio::test]
async fn severities_the_type_lets_through_are_held_by_the_check() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let plain = Title::parse("Numbers").unwrap();
    for severity in [i16::MIN, -1, 0, 5, i16::MAX] {
        let details = NewBug {
            severity,
            reproduction: None,
            found_in_version: None,
        };
        let err = Bug::create(&mut conn, &NewTask::new(owner.id, &plain), &details)
            .await
            .expect_err("severity out of range");
        assert_invalid(&err, "bugs_severity_range");
    }
    assert_eq!(count(&mut conn, "tasks").await, 0, "no half-written bug");
}

#[tokio::test]
async fn hostile_text_in_a_bug_round_trips_or_is_refused() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let plain = Title::parse("Hostile").unwrap();
    for case in hostile_cases() {
        let case = case.as_str();
        let bug = async {
            let details = NewBug {
                severity: 2,
                reproduction: Some(case),
                found_in_version: Some(case),
            };
            let id = Bug::create(&mut conn, &NewTask::new(owner.id, &plain), &details)
                .await?
                .task
                .id;
            let found = Bug::find(&conn, id).await?.details;
            Ok(format!(
                "{}|{}",
                found.reproduction.unwrap_or_default(),
                found.found_in_version.unwrap_or_default()
            ))
        }
        .await;
        stored_or_refused("bugs.reproduction", case, &format!("{case}|{case}"), bug);
    }
    assert!(count(&mut conn, "bugs").await > 0);
}
