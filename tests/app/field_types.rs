//! Field types: a PostgreSQL enum as a Rust enum, `jsonb` as a typed struct, `text[]` as
//! `Vec<String>`, newtypes over `text`/`smallint`, and a `uuid` public id.

use crate::support::{TestDb, task, user};
use app::Error;
use app::models::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::json;

#[tokio::test]
async fn every_enum_variant_round_trips() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let t = task(&mut conn, &ann, "States").await;
    for status in [TaskStatus::InProgress, TaskStatus::Done, TaskStatus::Todo] {
        let changes = TaskChanges {
            status: Some(status),
            ..Default::default()
        };
        assert_eq!(
            Task::update(&conn, t.id, &changes).await.unwrap().status,
            status
        );
        assert_eq!(Task::find(&conn, t.id).await.unwrap().status, status);
    }
    // A label the enum does not have is refused by PostgreSQL itself.
    let err = diesel::sql_query("UPDATE tasks SET status = $2::task_status WHERE id = $1")
        .bind::<BigInt, _>(t.id)
        .bind::<Text, _>("blocked")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid input value for enum task_status"),
        "{err}"
    );
}

#[tokio::test]
async fn jsonb_preferences_round_trip_and_query_by_containment() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let ben = user(&mut conn, "ben@example.com").await;
    assert_eq!(
        ann.preferences,
        Preferences::default(),
        "an empty object loads with defaults"
    );

    let dark = Preferences {
        theme: Theme::Dark,
        daily_digest: true,
        time_zone: Some("Europe/Berlin".into()),
    };
    let changes = UserChanges {
        preferences: Some(dark.clone()),
        ..Default::default()
    };
    let updated = User::update(&conn, ann.id, &changes).await.unwrap();
    assert_eq!(updated.preferences, dark);
    assert_eq!(User::find(&conn, ann.id).await.unwrap().preferences, dark);

    let found = User::with_preferences(&conn, &json!({"theme": "dark"}))
        .await
        .unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ann.id]);
    let light = User::with_preferences(&conn, &json!({"theme": "light"}))
        .await
        .unwrap();
    assert!(
        light.is_empty(),
        "defaults are not stored, only what was set"
    );
    assert_eq!(
        User::find(&conn, ben.id).await.unwrap().preferences,
        Preferences::default()
    );

    // The CHECK keeps other clients from storing a non-object.
    let err = diesel::sql_query("UPDATE users SET preferences = '[1, 2]' WHERE id = $1")
        .bind::<BigInt, _>(ann.id)
        .execute(&mut conn)
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { constraint, .. } if constraint == "users_preferences_object")
    );
}

#[tokio::test]
async fn text_array_round_trips_awkward_strings() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let t = task(&mut conn, &ann, "List").await;
    assert!(t.checklist.is_empty(), "empty by the column default");
    let items = vec![
        "plain".to_owned(),
        "with, comma".to_owned(),
        "{braces} and \"quotes\"".to_owned(),
        String::new(),
        "NULL".to_owned(),
        "emoji ✅".to_owned(),
    ];
    let changes = TaskChanges {
        checklist: Some(items.clone()),
        ..Default::default()
    };
    assert_eq!(
        Task::update(&conn, t.id, &changes).await.unwrap().checklist,
        items
    );
    assert_eq!(Task::find(&conn, t.id).await.unwrap().checklist, items);
}

#[tokio::test]
async fn public_ids_are_generated_unique_uuids() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "ann@example.com").await;
    let ben = user(&mut conn, "ben@example.com").await;
    assert_ne!(ann.public_id, ben.public_id);
    assert_eq!(
        ann.public_id.get_version_num(),
        4,
        "gen_random_uuid() is v4"
    );
    assert_eq!(User::by_public_id(&conn, ben.public_id).await.unwrap(), ben);
    let err = diesel::sql_query(
        "UPDATE users SET public_id = (SELECT public_id FROM users WHERE id = $1) WHERE id <> $1",
    )
    .bind::<BigInt, _>(ann.id)
    .execute(&mut conn)
    .await
    .map_err(Error::from)
    .unwrap_err();
    assert!(matches!(&err, Error::Conflict { constraint } if constraint == "users_public_id_key"));
}

#[tokio::test]
async fn newtypes_round_trip_through_their_sql_types() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "Ann.Smith@Example.com").await;
    assert_eq!(
        ann.email.as_str(),
        "Ann.Smith@Example.com",
        "stored as given, matched without case"
    );
    let title = Title::parse("  Ünïcode title  ").unwrap();
    let new = NewTask {
        priority: Some(Priority::new(5).unwrap()),
        ..NewTask::new(ann.id, &title)
    };
    let t = Task::create(&conn, &new).await.unwrap();
    assert_eq!(t.title.as_str(), "Ünïcode title");
    assert_eq!(t.priority.get(), 5);
}
