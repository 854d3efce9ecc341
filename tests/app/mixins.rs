//! Reusable column sets: `created_at`/`updated_at` kept by a trigger, and soft delete.

use crate::support::{TestDb, task, user};
use app::Error;
use app::models::*;
use app::schema::tasks;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[tokio::test]
async fn updates_move_updated_at_and_keep_created_at() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let changes = UserChanges {
        display_name: Some("Ann B.".into()),
        ..Default::default()
    };
    let updated = User::update(&conn, ann.id, &changes).await.unwrap();
    assert!(updated.updated_at > ann.updated_at, "users trigger");
    assert_eq!(updated.created_at, ann.created_at);

    let t = task(&mut conn, &ann, "Timestamps").await;
    let done = TaskChanges {
        status: Some(TaskStatus::Done),
        ..Default::default()
    };
    let after = Task::update(&conn, t.id, &done).await.unwrap();
    assert!(after.updated_at > t.updated_at, "tasks trigger");

    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    let renamed = Team::update(
        &conn,
        team.id,
        &TeamChanges {
            name: Some("Kernel".into()),
        },
    )
    .await
    .unwrap();
    assert!(renamed.updated_at > team.updated_at, "teams trigger");
}

#[tokio::test]
async fn an_explicit_updated_at_is_kept() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let t = task(&mut conn, &ann, "Backfilled").await;
    let past = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let stored: Task = diesel::update(tasks::table.find(t.id))
        .set((
            tasks::priority.eq(Priority::new(1).unwrap()),
            tasks::updated_at.eq(past),
        ))
        .returning(Task::as_returning())
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored.updated_at, past,
        "the trigger only fills in what the UPDATE left alone"
    );
}

#[tokio::test]
async fn soft_deleted_tasks_are_hidden_restorable_and_purgeable() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let keep = task(&mut conn, &ann, "Keep").await;
    let gone = task(&mut conn, &ann, "Gone").await;

    let deleted = Task::soft_delete(&conn, gone.id).await.unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(matches!(
        Task::find(&conn, gone.id).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        Task::owned_by(&conn, &ann).await.unwrap(),
        vec![keep.clone()]
    );
    let open: Vec<Task> = Task::open_for_owner(ann.id)
        .select(Task::as_select())
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(open, vec![keep.clone()]);
    assert_eq!(
        Task::find_with_deleted(&conn, gone.id).await.unwrap().id,
        gone.id
    );
    let edit = TaskChanges {
        title: Some(Title::parse("Edited").unwrap()),
        ..Default::default()
    };
    assert!(matches!(
        Task::update(&conn, gone.id, &edit).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        Task::soft_delete(&conn, gone.id).await,
        Err(Error::NotFound)
    ));

    let restored = Task::restore(&conn, gone.id).await.unwrap();
    assert_eq!(restored.deleted_at, None);
    assert_eq!(Task::find(&conn, gone.id).await.unwrap().id, gone.id);
    assert!(
        matches!(Task::restore(&conn, gone.id).await, Err(Error::NotFound)),
        "not deleted"
    );

    Task::soft_delete(&conn, gone.id).await.unwrap();
    let earlier = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        Task::purge_deleted_before(&conn, earlier).await.unwrap(),
        0,
        "too recent"
    );
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(Task::purge_deleted_before(&conn, later).await.unwrap(), 1);
    assert!(matches!(
        Task::find_with_deleted(&conn, gone.id).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        Task::find(&conn, keep.id).await.unwrap(),
        keep,
        "live tasks untouched"
    );
}
