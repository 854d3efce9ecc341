//! Create, read, update and delete of every model, and the relationships between them.

mod common;

use common::TestDb;
use {{crate_name}}::Error;
use {{crate_name}}::models::*;

async fn user(conn: &mut diesel_async::AsyncPgConnection, email: &str) -> User {
    User::create(
        conn,
        &NewUser {
            email,
            name: "Test User",
        },
    )
    .await
    .unwrap()
}

fn task<'a>(owner: &User, title: &'a str) -> NewTask<'a> {
    NewTask {
        owner_id: owner.id,
        title,
        ..NewTask::default()
    }
}

#[tokio::test]
async fn user_crud() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;

    let created = User::create(
        &mut conn,
        &NewUser {
            email: "Ann@Example.com",
            name: "Ann",
        },
    )
    .await
    .unwrap();
    assert_eq!(User::find(&mut conn, created.id).await.unwrap(), created);
    assert_eq!(
        User::by_email(&mut conn, "ann@example.com")
            .await
            .unwrap()
            .id,
        created.id
    );

    let changes = UserChanges {
        name: Some("Ann B.".into()),
        ..Default::default()
    };
    let updated = User::update(&mut conn, created.id, &changes).await.unwrap();
    assert_eq!(updated.name, "Ann B.");
    assert_eq!(updated.email, created.email, "untouched column kept");
    assert!(
        updated.updated_at > created.updated_at,
        "trigger moves updated_at"
    );

    User::delete(&mut conn, created.id).await.unwrap();
    assert!(matches!(
        User::find(&mut conn, created.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        User::delete(&mut conn, created.id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn duplicate_email_ignoring_case_is_a_conflict() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    user(&mut conn, "dup@example.com").await;
    let err = User::create(
        &mut conn,
        &NewUser {
            email: "DUP@example.com",
            name: "Again",
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { constraint } if constraint == "users_email_key"),
        "{err:?}"
    );
    assert_eq!(User::all(&mut conn).await.unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_email_is_refused_by_the_database() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let err = User::create(
        &mut conn,
        &NewUser {
            email: "not-an-email",
            name: "X",
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { constraint } if constraint == "users_email_format"),
        "{err:?}"
    );
}

#[tokio::test]
async fn team_crud_and_members_with_payload() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let ben = user(&mut conn, "ben@example.com").await;

    let team = Team::create(&mut conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    assert_eq!(Team::find(&mut conn, team.id).await.unwrap(), team);
    let renamed = Team::update(
        &mut conn,
        team.id,
        &TeamChanges {
            name: Some("Core Team".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.name, "Core Team");

    let owner = Team::add_member(&mut conn, team.id, ann.id, Role::Owner)
        .await
        .unwrap();
    Team::add_member(&mut conn, team.id, ben.id, Role::Member)
        .await
        .unwrap();
    assert_eq!(owner.role, Role::Owner);

    let members = Team::members(&mut conn, team.id).await.unwrap();
    let roles: Vec<_> = members.iter().map(|(u, m)| (u.id, m.role)).collect();
    assert_eq!(roles, vec![(ann.id, Role::Owner), (ben.id, Role::Member)]);
    assert!(
        members
            .iter()
            .all(|(_, m)| m.joined_at <= chrono::Utc::now())
    );
    assert_eq!(
        Team::of_user(&mut conn, &ben).await.unwrap(),
        vec![renamed.clone()]
    );

    let again = Team::add_member(&mut conn, team.id, ben.id, Role::Admin)
        .await
        .unwrap_err();
    assert!(matches!(&again, Error::Conflict { constraint } if constraint == "team_members_pkey"));

    Team::remove_member(&mut conn, team.id, ben.id)
        .await
        .unwrap();
    assert_eq!(Team::members(&mut conn, team.id).await.unwrap().len(), 1);

    Team::delete(&mut conn, team.id).await.unwrap();
    assert!(matches!(
        Team::find(&mut conn, team.id).await,
        Err(Error::NotFound)
    ));
    assert!(
        Team::of_user(&mut conn, &ann).await.unwrap().is_empty(),
        "memberships cascade"
    );
}

#[tokio::test]
async fn task_crud_with_partial_update() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;

    let new = NewTask {
        description: Some("first draft"),
        due_date: chrono::NaiveDate::from_ymd_opt(2030, 1, 31),
        ..task(&owner, "Write docs")
    };
    let created = Task::create(&mut conn, &new).await.unwrap();
    assert_eq!(created.status, TaskStatus::Todo, "column default");
    assert_eq!(created.priority, 2, "column default");
    assert_eq!(Task::find(&mut conn, created.id).await.unwrap(), created);

    let changes = TaskChanges {
        status: Some(TaskStatus::InProgress),
        description: Some(None),
        ..Default::default()
    };
    let updated = Task::update(&mut conn, created.id, &changes).await.unwrap();
    assert_eq!(updated.status, TaskStatus::InProgress);
    assert_eq!(updated.description, None, "Some(None) sets NULL");
    assert_eq!(updated.title, created.title, "None leaves the column alone");
    assert_eq!(updated.due_date, created.due_date);
    assert!(updated.updated_at > created.updated_at);

    let unchanged = Task::update(&mut conn, created.id, &TaskChanges::default())
        .await
        .unwrap();
    assert_eq!(unchanged, updated, "an empty change set writes nothing");

    Task::delete(&mut conn, created.id).await.unwrap();
    assert!(matches!(
        Task::find(&mut conn, created.id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn task_constraints_give_typed_errors() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;

    let empty = Task::create(&mut conn, &task(&owner, "   "))
        .await
        .unwrap_err();
    assert!(matches!(&empty, Error::Invalid { constraint } if constraint == "tasks_title_length"));

    let priority = NewTask {
        priority: Some(9),
        ..task(&owner, "Too urgent")
    };
    let err = Task::create(&mut conn, &priority).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { constraint } if constraint == "tasks_priority_range"));

    let orphan = NewTask {
        owner_id: owner.id + 1000,
        ..task(&owner, "Nobody's")
    };
    let err = Task::create(&mut conn, &orphan).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey")
    );

    assert!(
        Task::owned_by(&mut conn, &owner).await.unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn one_to_many_and_cascades() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let other = user(&mut conn, "other@example.com").await;
    let team = Team::create(&mut conn, &NewTeam { name: "Ops" })
        .await
        .unwrap();

    let a = Task::create(
        &mut conn,
        &NewTask {
            team_id: Some(team.id),
            ..task(&owner, "A")
        },
    )
    .await
    .unwrap();
    let b = Task::create(&mut conn, &task(&owner, "B")).await.unwrap();
    Task::create(&mut conn, &task(&other, "C")).await.unwrap();

    let ids: Vec<_> = Task::owned_by(&mut conn, &owner)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec![a.id, b.id]);
    assert_eq!(
        Task::of_team(&mut conn, &team).await.unwrap(),
        vec![a.clone()]
    );

    // ON DELETE SET NULL: the team goes, its tasks stay unassigned.
    Team::delete(&mut conn, team.id).await.unwrap();
    assert_eq!(Task::find(&mut conn, a.id).await.unwrap().team_id, None);

    // ON DELETE CASCADE: the owner goes, their tasks go too.
    User::delete(&mut conn, owner.id).await.unwrap();
    assert!(matches!(
        Task::find(&mut conn, a.id).await,
        Err(Error::NotFound)
    ));
    assert_eq!(Task::owned_by(&mut conn, &other).await.unwrap().len(), 1);
}

#[tokio::test]
async fn subtasks_are_self_referential_and_cascade() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let parent = Task::create(&mut conn, &task(&owner, "Release"))
        .await
        .unwrap();
    let child = Task::create(
        &mut conn,
        &NewTask {
            parent_id: Some(parent.id),
            ..task(&owner, "Changelog")
        },
    )
    .await
    .unwrap();

    assert_eq!(
        parent.subtasks(&mut conn).await.unwrap(),
        vec![child.clone()]
    );
    assert!(child.subtasks(&mut conn).await.unwrap().is_empty());

    let own_parent = TaskChanges {
        parent_id: Some(Some(parent.id)),
        ..Default::default()
    };
    let err = Task::update(&mut conn, parent.id, &own_parent)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Invalid { constraint } if constraint == "tasks_not_own_parent"));

    Task::delete(&mut conn, parent.id).await.unwrap();
    assert!(matches!(
        Task::find(&mut conn, child.id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn tags_many_to_many() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let t = Task::create(&mut conn, &task(&owner, "Tagged"))
        .await
        .unwrap();

    let urgent = Tag::create(&mut conn, &NewTag { name: "urgent" })
        .await
        .unwrap();
    let same = Tag::find_or_create(&mut conn, "urgent").await.unwrap();
    assert_eq!(same, urgent, "find_or_create returns the existing row");
    let ops = Tag::find_or_create(&mut conn, "ops").await.unwrap();

    Tag::attach(&mut conn, t.id, urgent.id).await.unwrap();
    Tag::attach(&mut conn, t.id, urgent.id).await.unwrap(); // twice is harmless
    Tag::attach(&mut conn, t.id, ops.id).await.unwrap();
    assert_eq!(
        Tag::of_task(&mut conn, &t).await.unwrap(),
        vec![ops.clone(), urgent.clone()]
    );

    let renamed = Tag::rename(&mut conn, ops.id, "operations").await.unwrap();
    assert_eq!(renamed.name, "operations");
    let bad = Tag::rename(&mut conn, ops.id, "Not Valid!")
        .await
        .unwrap_err();
    assert!(matches!(&bad, Error::Invalid { constraint } if constraint == "tags_name_format"));
    let dup = Tag::create(&mut conn, &NewTag { name: "urgent" })
        .await
        .unwrap_err();
    assert!(matches!(&dup, Error::Conflict { constraint } if constraint == "tags_name_key"));

    Tag::detach(&mut conn, t.id, urgent.id).await.unwrap();
    assert_eq!(
        Tag::of_task(&mut conn, &t).await.unwrap(),
        vec![renamed.clone()]
    );
    Tag::delete(&mut conn, renamed.id).await.unwrap();
    assert!(
        Tag::of_task(&mut conn, &t).await.unwrap().is_empty(),
        "links cascade"
    );
}

#[tokio::test]
async fn pool_hands_out_connections_to_the_test_database() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let mut conn = pool.get().await.unwrap();
    let owner = user(&mut conn, "pooled@example.com").await;
    drop(conn);
    let mut again = pool.get().await.unwrap();
    assert_eq!(User::find(&mut again, owner.id).await.unwrap(), owner);
}
