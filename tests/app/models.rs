//! Create, read, update and delete of every model, and the relationships between them:
//! one-to-many, many-to-many with a payload, self-referential with a recursive subtree.

use crate::support::{self, TestDb, count, task, user};
use app::Error;
use app::models::*;

fn title(raw: &str) -> Title {
    Title::parse(raw).unwrap()
}

#[tokio::test]
async fn user_crud() {
    let db = TestDb::new().await;
    let conn = db.conn().await;

    let email = Email::parse("Ann@Example.com").unwrap();
    let created = User::create(
        &conn,
        &NewUser {
            email: &email,
            display_name: "Ann",
        },
    )
    .await
    .unwrap();
    assert_eq!(User::find(&conn, created.id).await.unwrap(), created);
    assert_eq!(
        User::by_email(&conn, "ann@example.com").await.unwrap(),
        created
    );
    assert_eq!(
        User::by_public_id(&conn, created.public_id).await.unwrap(),
        created
    );

    let changes = UserChanges {
        display_name: Some("Ann B.".into()),
        ..Default::default()
    };
    let updated = User::update(&conn, created.id, &changes).await.unwrap();
    assert_eq!(updated.display_name, "Ann B.");
    assert_eq!(updated.email, created.email, "untouched column kept");

    User::delete(&conn, created.id).await.unwrap();
    assert!(matches!(
        User::find(&conn, created.id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        User::delete(&conn, created.id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn team_crud_and_members_with_payload() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let ben = user(&mut conn, "ben@example.com").await;

    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    assert_eq!(Team::find(&conn, team.id).await.unwrap(), team);
    let changes = TeamChanges {
        name: Some("Core Team".into()),
    };
    let renamed = Team::update(&conn, team.id, &changes).await.unwrap();
    assert_eq!(renamed.name, "Core Team");

    let owner = Team::add_member(&conn, team.id, ann.id, Role::Owner)
        .await
        .unwrap();
    Team::add_member(&conn, team.id, ben.id, Role::Member)
        .await
        .unwrap();
    assert_eq!(owner.role, Role::Owner);

    let members = Team::members(&conn, team.id).await.unwrap();
    let roles: Vec<_> = members.iter().map(|(u, m)| (u.id, m.role)).collect();
    assert_eq!(roles, vec![(ann.id, Role::Owner), (ben.id, Role::Member)]);
    assert!(
        members
            .iter()
            .all(|(_, m)| m.joined_at <= chrono::Utc::now())
    );
    assert_eq!(
        Team::of_user(&conn, &ben).await.unwrap(),
        vec![renamed.clone()]
    );

    Team::remove_member(&conn, team.id, ben.id).await.unwrap();
    assert_eq!(Team::members(&conn, team.id).await.unwrap().len(), 1);

    Team::delete(&conn, team.id).await.unwrap();
    assert!(matches!(
        Team::find(&conn, team.id).await,
        Err(Error::NotFound)
    ));
    assert!(
        Team::of_user(&conn, &ann).await.unwrap().is_empty(),
        "memberships cascade"
    );
}

#[tokio::test]
async fn task_crud_with_partial_update() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;

    let docs = title("Write docs");
    let new = NewTask {
        description: Some("first draft"),
        due_date: chrono::NaiveDate::from_ymd_opt(2030, 1, 31),
        ..NewTask::new(owner.id, &docs)
    };
    let created = Task::create(&conn, &new).await.unwrap();
    assert_eq!(created.status, TaskStatus::Todo, "column default");
    assert_eq!(created.priority, Priority::NORMAL, "column default");
    assert_eq!(Task::find(&conn, created.id).await.unwrap(), created);

    let changes = TaskChanges {
        status: Some(TaskStatus::InProgress),
        description: Some(None),
        ..Default::default()
    };
    let updated = Task::update(&conn, created.id, &changes).await.unwrap();
    assert_eq!(updated.status, TaskStatus::InProgress);
    assert_eq!(updated.description, None, "Some(None) sets NULL");
    assert_eq!(updated.title, created.title, "None leaves the column alone");
    assert_eq!(updated.due_date, created.due_date);

    let unchanged = Task::update(&conn, created.id, &TaskChanges::default())
        .await
        .unwrap();
    assert_eq!(unchanged, updated, "an empty change set writes nothing");

    Task::delete(&conn, created.id).await.unwrap();
    assert!(matches!(
        Task::find(&conn, created.id).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn one_to_many_and_cascades() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let other = user(&mut conn, "other@example.com").await;
    let team = Team::create(&conn, &NewTeam { name: "Ops" }).await.unwrap();

    let a_title = title("A");
    let new = NewTask {
        team_id: Some(team.id),
        ..NewTask::new(owner.id, &a_title)
    };
    let a = Task::create(&conn, &new).await.unwrap();
    let b = task(&mut conn, &owner, "B").await;
    task(&mut conn, &other, "C").await;

    let owned = Task::owned_by(&conn, &owner).await.unwrap();
    assert_eq!(
        owned.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(Task::of_team(&conn, &team).await.unwrap(), vec![a.clone()]);

    // ON DELETE SET NULL: the team goes, its tasks stay unassigned.
    Team::delete(&conn, team.id).await.unwrap();
    assert_eq!(Task::find(&conn, a.id).await.unwrap().team_id, None);

    // ON DELETE CASCADE: the owner goes, their tasks go too.
    User::delete(&conn, owner.id).await.unwrap();
    assert!(matches!(
        Task::find(&conn, a.id).await,
        Err(Error::NotFound)
    ));
    assert_eq!(count(&mut conn, "tasks").await, 1);
}

#[tokio::test]
async fn subtasks_are_self_referential_and_cascade() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let parent = task(&mut conn, &owner, "Release").await;
    let changelog = title("Changelog");
    let new = NewTask {
        parent_id: Some(parent.id),
        ..NewTask::new(owner.id, &changelog)
    };
    let child = Task::create(&conn, &new).await.unwrap();

    assert_eq!(parent.subtasks(&conn).await.unwrap(), vec![child.clone()]);
    assert!(child.subtasks(&conn).await.unwrap().is_empty());

    let own_parent = TaskChanges {
        parent_id: Some(Some(parent.id)),
        ..Default::default()
    };
    let err = Task::update(&conn, parent.id, &own_parent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { constraint, .. } if constraint == "tasks_not_own_parent"),
        "{err:?}"
    );

    Task::delete(&conn, parent.id).await.unwrap();
    assert!(matches!(
        Task::find(&conn, child.id).await,
        Err(Error::NotFound)
    ));
}

async fn subtask(conn: &mut diesel_async::AsyncPgConnection, parent: &Task, name: &str) -> Task {
    let name = title(name);
    let new = NewTask {
        parent_id: Some(parent.id),
        ..NewTask::new(parent.owner_id, &name)
    };
    Task::create(conn, &new).await.unwrap()
}

#[tokio::test]
async fn subtree_walks_every_level_depth_first() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let root = task(&mut conn, &owner, "Root").await;
    let a = subtask(&mut conn, &root, "A").await;
    let a1 = subtask(&mut conn, &a, "A1").await;
    let a1x = subtask(&mut conn, &a1, "A1x").await;
    let b = subtask(&mut conn, &root, "B").await;
    let unrelated = task(&mut conn, &owner, "Elsewhere").await;

    let tree = Task::subtree(&conn, root.id).await.unwrap();
    let shape: Vec<_> = tree.iter().map(|n| (n.task.id, n.depth)).collect();
    assert_eq!(
        shape,
        vec![(root.id, 0), (a.id, 1), (a1.id, 2), (a1x.id, 3), (b.id, 1)]
    );
    assert!(tree.iter().all(|n| n.task.id != unrelated.id));

    // Soft-deleted branches drop out of the tree.
    Task::soft_delete(&conn, a1.id).await.unwrap();
    let ids: Vec<_> = Task::subtree(&conn, root.id)
        .await
        .unwrap()
        .iter()
        .map(|n| n.task.id)
        .collect();
    assert_eq!(ids, vec![root.id, a.id, b.id]);
    assert!(matches!(
        Task::subtree(&conn, -1).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn tags_many_to_many() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let t = task(&mut conn, &owner, "Tagged").await;

    let urgent = Tag::create(&conn, &NewTag { name: "urgent" })
        .await
        .unwrap();
    let same = Tag::find_or_create(&conn, "urgent").await.unwrap();
    assert_eq!(same, urgent, "find_or_create returns the existing row");
    let ops = Tag::find_or_create(&conn, "ops").await.unwrap();

    Tag::attach(&conn, t.id, urgent.id).await.unwrap();
    Tag::attach(&conn, t.id, urgent.id).await.unwrap(); // twice is harmless
    Tag::attach(&conn, t.id, ops.id).await.unwrap();
    assert_eq!(
        Tag::of_task(&conn, &t).await.unwrap(),
        vec![ops.clone(), urgent.clone()]
    );

    let renamed = Tag::rename(&conn, ops.id, "operations").await.unwrap();
    assert_eq!(renamed.name, "operations");

    Tag::detach(&conn, t.id, urgent.id).await.unwrap();
    assert_eq!(
        Tag::of_task(&conn, &t).await.unwrap(),
        vec![renamed.clone()]
    );
    Tag::delete(&conn, renamed.id).await.unwrap();
    assert!(
        Tag::of_task(&conn, &t).await.unwrap().is_empty(),
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
    let again = pool.get().await.unwrap();
    assert_eq!(User::find(&again, owner.id).await.unwrap(), owner);
}

/// `by_email` lowercases in SQL, as the unique index `lower(email)` does: `İ` becomes `i` in
/// PostgreSQL but `i̇` (two characters) in Rust, and the user is still found.
#[tokio::test]
async fn by_email_matches_as_the_unique_index_does() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let created = support::user(&mut conn, "İnfo@example.com").await;
    for asked in ["İnfo@example.com", "İNFO@EXAMPLE.COM", " info@example.com "] {
        let found = User::by_email(&conn, asked).await.unwrap();
        assert_eq!(found.id, created.id, "{asked}");
    }
}
