//! Bulk writes: all-or-nothing, past the 65,535-parameter limit, for any model with BulkRow.

mod common;

use app::Error;
use app::bulk::{self, OnConflict};
use app::models::*;
use app::schema::{tasks, team_members};
use common::{TestDb, count, user};
use diesel_async::AsyncPgConnection;

/// `n` users via the bulk path; returns their ids.
async fn users(conn: &mut AsyncPgConnection, n: usize) -> Vec<i64> {
    let rows: Vec<UserRow> = (0..n)
        .map(|i| UserRow {
            email: Email::parse(&format!("bulk{i}@example.com")).unwrap(),
            display_name: format!("Bulk {i}"),
        })
        .collect();
    assert_eq!(bulk::insert(conn, &rows).await.unwrap(), n);
    User::all(conn)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect()
}

fn tasks<'a>(owners: &[i64], title: &'a Title, n: usize) -> Vec<NewTask<'a>> {
    (0..n)
        .map(|i| NewTask::new(owners[i % owners.len()], title))
        .collect()
}

#[tokio::test]
async fn inserts_100k_rows_in_one_call() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 1_000).await;
    let title = Title::parse("Bulk task").unwrap();
    let rows = tasks(&owners, &title, 100_000);
    assert_eq!(bulk::insert(&mut conn, &rows).await.unwrap(), 100_000);
    assert_eq!(count(&mut conn, "tasks").await, 100_000);
    let first = User::find(&conn, owners[0]).await.unwrap();
    let sample = Task::owned_by(&conn, &first).await.unwrap();
    assert_eq!(sample.len(), 100);
    assert!(
        sample
            .iter()
            .all(|t| t.status == TaskStatus::Todo && t.priority == Priority::NORMAL)
    );
}

#[tokio::test]
async fn one_bad_row_in_100k_writes_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 100).await;
    let title = Title::parse("Bulk task").unwrap();
    let mut rows = tasks(&owners, &title, 100_000);
    rows[50_000].owner_id = -1; // no such user, in a later chunk than the first
    let err = bulk::insert(&mut conn, &rows).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey"),
        "{err:?}"
    );
    assert_eq!(
        count(&mut conn, "tasks").await,
        0,
        "not even the first chunk"
    );

    let dup = vec![
        UserRow {
            email: Email::parse("new@example.com").unwrap(),
            display_name: "New".into(),
        },
        UserRow {
            email: Email::parse("bulk5@example.com").unwrap(),
            display_name: "Dup".into(),
        },
    ];
    let err = bulk::insert(&mut conn, &dup).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict { constraint } if constraint == "users_email_key"));
    assert_eq!(count(&mut conn, "users").await, 100);
}

#[tokio::test]
async fn diesel_batched_insert_is_chunked_past_65535_parameters() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let title = Title::parse("Batched").unwrap();
    // 20,000 rows x 9 columns = 180,000 parameters: three statements, one transaction.
    let rows = tasks(&[owner.id], &title, 20_000);
    assert_eq!(
        Task::insert_batched(&mut conn, &rows).await.unwrap(),
        20_000
    );
    assert_eq!(count(&mut conn, "tasks").await, 20_000);

    let mut bad = tasks(&[owner.id], &title, 20_000);
    bad[19_999].owner_id = -1; // in the last chunk
    assert!(matches!(
        Task::insert_batched(&mut conn, &bad).await,
        Err(Error::ForeignKey { .. })
    ));
    assert_eq!(
        count(&mut conn, "tasks").await,
        20_000,
        "the earlier chunks rolled back"
    );
}

#[tokio::test]
async fn upsert_updates_or_ignores_existing_keys() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ids = users(&mut conn, 3).await;
    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    let member = |user_id, role| Membership {
        team_id: team.id,
        user_id,
        role,
    };

    bulk::insert(
        &mut conn,
        &[member(ids[0], Role::Member), member(ids[1], Role::Member)],
    )
    .await
    .unwrap();
    let rows = [member(ids[0], Role::Admin), member(ids[2], Role::Member)];
    let ignored = bulk::upsert(
        &mut conn,
        &rows,
        (team_members::team_id, team_members::user_id),
        OnConflict::Ignore,
    )
    .await
    .unwrap();
    assert_eq!(ignored, 1, "only the new member is written");
    let roles = |members: Vec<(User, TeamMember)>| {
        members
            .into_iter()
            .map(|(u, m)| (u.id, m.role))
            .collect::<Vec<_>>()
    };
    let after = roles(Team::members(&conn, team.id).await.unwrap());
    assert!(after.contains(&(ids[0], Role::Member)), "{after:?}");

    let updated = bulk::upsert(
        &mut conn,
        &rows,
        (team_members::team_id, team_members::user_id),
        OnConflict::update((team_members::role,)),
    )
    .await
    .unwrap();
    assert_eq!(updated, 2);
    let after = roles(Team::members(&conn, team.id).await.unwrap());
    assert!(
        after.contains(&(ids[0], Role::Admin)) && after.len() == 3,
        "{after:?}"
    );
}

#[tokio::test]
async fn update_by_key_delete_and_soft_delete_by_ids() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 10).await;
    let title = Title::parse("Bulk").unwrap();
    bulk::insert(&mut conn, &tasks(&owners, &title, 1_000))
        .await
        .unwrap();
    let all: Vec<i64> = {
        let owner = User::find(&conn, owners[0]).await.unwrap();
        let mut ids: Vec<i64> = Task::owned_by(&conn, &owner)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        ids
    };
    let changes: Vec<_> = all
        .iter()
        .map(|&id| TaskStatusUpdate {
            id,
            status: TaskStatus::Done,
            priority: Priority::new(1).unwrap(),
        })
        .collect();
    assert_eq!(
        bulk::update_by_key(&mut conn, &changes, (tasks::id,))
            .await
            .unwrap(),
        all.len()
    );
    let t = Task::find(&conn, all[0]).await.unwrap();
    assert_eq!((t.status, t.priority.get()), (TaskStatus::Done, 1));
    assert_eq!(t.title, title, "columns not in the update are untouched");

    assert_eq!(
        bulk::soft_delete_by_ids(&conn, tasks::id, tasks::deleted_at, &all[..50])
            .await
            .unwrap(),
        50
    );
    assert_eq!(
        bulk::soft_delete_by_ids(&conn, tasks::id, tasks::deleted_at, &all[..50])
            .await
            .unwrap(),
        0,
        "already deleted"
    );
    assert!(matches!(
        Task::find(&conn, all[0]).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        bulk::delete_by_ids(&conn, tasks::id, &all).await.unwrap(),
        all.len()
    );
    assert_eq!(count(&mut conn, "tasks").await, 1_000 - all.len() as i64);
}

#[tokio::test]
async fn copy_inserts_all_or_nothing_with_typed_errors() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 100).await;
    let title = Title::parse("Copied").unwrap();
    let mut rows = tasks(&owners, &title, 100_000);
    rows[99_999].owner_id = -1;
    let err = bulk::copy_insert(&db.url, &rows).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey"),
        "{err:?}"
    );
    assert_eq!(count(&mut conn, "tasks").await, 0);
    rows[99_999].owner_id = owners[0];
    rows[7].status = Some(TaskStatus::Done);
    assert_eq!(bulk::copy_insert(&db.url, &rows).await.unwrap(), 100_000);
    assert_eq!(count(&mut conn, "tasks").await, 100_000);
    let done: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM tasks WHERE status = 'done')",
        )),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(done, 1, "enum values go through COPY as labels");
}

/// Rows from an iterator go in batch by batch, yet as one transaction: a bad row in the
/// last batch leaves nothing from the earlier ones.
#[tokio::test]
async fn streamed_copy_is_all_or_nothing_across_batches() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 10).await;
    let title = Title::parse("Streamed").unwrap();
    let n = 2 * bulk::COPY_BATCH_ROWS + 7;
    let rows = |bad: Option<usize>| {
        let (owners, title) = (&owners, &title);
        (0..n).map(move |i| NewTask {
            owner_id: if Some(i) == bad {
                -1
            } else {
                owners[i % owners.len()]
            },
            ..NewTask::new(owners[i % owners.len()], title)
        })
    };
    let err = bulk::copy_insert_iter(&db.url, rows(Some(n - 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignKey { .. }), "{err:?}");
    assert_eq!(count(&mut conn, "tasks").await, 0);
    let stream = futures_util::stream::iter(rows(None));
    assert_eq!(bulk::copy_insert_stream(&db.url, stream).await.unwrap(), n);
    assert_eq!(count(&mut conn, "tasks").await, n as i64);
}

/// `CopyIn` commits only on `finish`: dropped unfinished, or refused for a batch laid out
/// unlike the first, it leaves nothing.
#[tokio::test]
async fn copy_in_writes_nothing_until_finished() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owners = users(&mut conn, 3).await;
    let title = Title::parse("Batched").unwrap();
    let batch = tasks(&owners, &title, 500);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    copy.write(&batch).await.unwrap();
    drop(copy);
    assert_eq!(count(&mut conn, "tasks").await, 0);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    copy.write(&batch).await.unwrap();
    let other = [TaskStatusUpdate {
        id: 1,
        status: TaskStatus::Done,
        priority: Priority::NORMAL,
    }];
    let err = copy.write(&other).await.unwrap_err();
    assert!(err.to_string().contains("the copy began with"), "{err}");
    drop(copy);
    assert_eq!(count(&mut conn, "tasks").await, 0);

    let mut copy = bulk::CopyIn::open(&db.url).await.unwrap();
    for _ in 0..3 {
        copy.write(&batch).await.unwrap();
    }
    assert_eq!(copy.finish().await.unwrap(), 1_500);
    assert_eq!(count(&mut conn, "tasks").await, 1_500);
}

/// Every field of `NewTask`, set away from its default, is stored by each bulk path; a row
/// of `None`s takes the columns' defaults. The destructuring below has no `..`: a new field
/// of `NewTask` does not compile here until this test checks it.
#[tokio::test]
async fn every_field_of_new_task_is_stored_by_each_bulk_path() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "fields@example.com").await;
    let team = Team::create(&conn, &NewTeam { name: "fields" })
        .await
        .unwrap();
    let parent_title = Title::parse("parent").unwrap();
    let parent = Task::create(&conn, &NewTask::new(owner.id, &parent_title))
        .await
        .unwrap();
    let title = Title::parse("every field").unwrap();
    let checklist = [
        "one",
        "two, \"quoted\"",
        "{braces}",
        "back\\slash",
        "",
        "NULL",
        "ünï",
    ];
    let full = NewTask {
        owner_id: owner.id,
        title: &title,
        team_id: Some(team.id),
        parent_id: Some(parent.id),
        description: Some("described, \"quoted\" \\ and ünïcode"),
        status: Some(TaskStatus::InProgress),
        priority: Some(Priority::new(5).unwrap()),
        due_date: chrono::NaiveDate::from_ymd_opt(2031, 2, 3),
        checklist: Some(checklist.iter().map(|s| s.to_string()).collect()),
    };
    let defaults = NewTask::new(owner.id, &title);
    for path in [
        "insert",
        "upsert",
        "copy_insert",
        "copy_insert_iter",
        "copy_insert_stream",
    ] {
        let rows = [full.clone(), defaults.clone()];
        let written = match path {
            "insert" => bulk::insert(&mut conn, &rows).await,
            "upsert" => bulk::upsert(&mut conn, &rows, (tasks::id,), OnConflict::Ignore).await,
            "copy_insert" => bulk::copy_insert(&db.url, &rows).await,
            "copy_insert_iter" => bulk::copy_insert_iter(&db.url, rows).await,
            _ => bulk::copy_insert_stream(&db.url, futures_util::stream::iter(rows)).await,
        };
        assert_eq!(written.unwrap(), 2, "{path}");
        let mut stored: Vec<Task> = Task::owned_by(&conn, &owner)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.id != parent.id)
            .collect();
        stored.sort_by_key(|t| t.id);
        let [got, plain] = &stored[..] else {
            panic!("{path}: {stored:?}")
        };
        let NewTask {
            owner_id,
            title: t,
            team_id,
            parent_id,
            description,
            status,
            priority,
            due_date,
            checklist,
        } = &full;
        assert_eq!(got.owner_id, *owner_id, "{path}");
        assert_eq!(&got.title, *t, "{path}");
        assert_eq!(got.team_id, *team_id, "{path}");
        assert_eq!(got.parent_id, *parent_id, "{path}");
        assert_eq!(got.description.as_deref(), *description, "{path}");
        assert_eq!(Some(got.status), *status, "{path}");
        assert_eq!(Some(got.priority), *priority, "{path}");
        assert_eq!(got.due_date, *due_date, "{path}");
        assert_eq!(Some(&got.checklist), checklist.as_ref(), "{path}");
        // The migration's defaults, not values repeated in Rust.
        assert_eq!(plain.status, TaskStatus::Todo, "{path}");
        assert_eq!(plain.priority, Priority::NORMAL, "{path}");
        assert!(plain.checklist.is_empty(), "{path}");
        let ids: Vec<i64> = stored.iter().map(|t| t.id).collect();
        bulk::delete_by_ids(&conn, tasks::id, &ids).await.unwrap();
    }
}

/// The key of `update_by_key` is always named, and must be a column the rows carry.
#[tokio::test]
async fn update_by_key_refuses_a_key_the_rows_do_not_carry() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let change = TaskStatusUpdate {
        id: 1,
        status: TaskStatus::Done,
        priority: Priority::NORMAL,
    };
    let err = bulk::update_by_key(&mut conn, &[change], (tasks::title,))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("key \"title\""), "{err}");
}
