//! Validation in two layers: newtypes refuse bad values before any SQL, and CHECK
//! constraints refuse them from any other client. Both give `Error::Invalid` naming the
//! same constraint, and leave the database unchanged.

use crate::support::{TestDb, count, task, user};
use app::Error;
use app::models::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

fn constraint_of(err: &Error) -> &str {
    match err {
        Error::Invalid { constraint, .. } => constraint,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

/// Runs SQL as another client would, bypassing the Rust types, and returns its error.
async fn raw(conn: &mut AsyncPgConnection, sql: &str, id: i64, text: &str) -> Error {
    diesel::sql_query(sql)
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(text)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(Error::from)
        .expect_err("the database must refuse this row")
}

#[test]
fn email_newtype_refuses_bad_addresses() {
    for bad in [
        "",
        "plain",
        "two@@example.com",
        "a b@example.com",
        "a@nodot",
        "@example.com",
        "a@.com",
    ] {
        let err = Email::parse(bad).expect_err(bad);
        assert_eq!(constraint_of(&err), "users_email_format", "{bad:?}");
    }
    assert!(
        Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err(),
        "too long"
    );
    assert_eq!(
        Email::parse("  ann@example.com ").unwrap().as_str(),
        "ann@example.com"
    );
}

#[test]
fn title_and_priority_newtypes_refuse_out_of_range_values() {
    for bad in ["", "   ", &"x".repeat(201)] {
        assert_eq!(
            constraint_of(&Title::parse(bad).unwrap_err()),
            "tasks_title_length"
        );
    }
    assert_eq!(
        Title::parse(&"é".repeat(200))
            .unwrap()
            .as_str()
            .chars()
            .count(),
        200
    );
    for bad in [0, 6, -1, i64::from(i16::MAX) + 1, i64::MIN] {
        assert_eq!(
            constraint_of(&Priority::new(bad).unwrap_err()),
            "tasks_priority_range"
        );
    }
    assert_eq!(Priority::new(1).unwrap().get(), 1);
}

#[tokio::test]
async fn database_refuses_a_malformed_email_from_other_clients() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let sql = "INSERT INTO users (email, display_name) SELECT $2, 'Raw' WHERE $1 > 0";
    let err = raw(&mut conn, sql, 1, "not-an-email").await;
    assert_eq!(constraint_of(&err), "users_email_format");
    assert_eq!(count(&mut conn, "users").await, 0, "nothing written");
}

#[tokio::test]
async fn database_refuses_bad_titles_and_priorities_from_other_clients() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;

    let sql = "INSERT INTO tasks (owner_id, title) VALUES ($1, $2)";
    let err = raw(&mut conn, sql, owner.id, "   ").await;
    assert_eq!(constraint_of(&err), "tasks_title_length");

    let sql = "INSERT INTO tasks (owner_id, title, priority) VALUES ($1, $2, 9)";
    let err = raw(&mut conn, sql, owner.id, "Too urgent").await;
    assert_eq!(constraint_of(&err), "tasks_priority_range");

    let sql = "INSERT INTO tasks (owner_id, title, checklist) VALUES ($1, $2, ARRAY['a', NULL])";
    let err = raw(&mut conn, sql, owner.id, "Null item").await;
    assert_eq!(constraint_of(&err), "tasks_checklist_no_nulls");

    let sql = "INSERT INTO tags (name) SELECT $2 WHERE $1 > 0";
    let err = raw(&mut conn, sql, 1, "Not Valid!").await;
    assert_eq!(constraint_of(&err), "tags_name_format");

    assert_eq!(count(&mut conn, "tasks").await, 0, "nothing written");
    assert_eq!(count(&mut conn, "tags").await, 0, "nothing written");
}

#[tokio::test]
async fn unique_violations_are_conflicts_and_change_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let ann = user(&mut conn, "dup@example.com").await;

    let shouted = Email::parse("DUP@example.com").unwrap();
    let err = User::create(
        &conn,
        &NewUser {
            email: &shouted,
            display_name: "Again",
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { constraint } if constraint == "users_email_key"),
        "{err:?}"
    );
    assert_eq!(count(&mut conn, "users").await, 1);

    let team = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap();
    let err = Team::create(&conn, &NewTeam { name: "Core" })
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Conflict { constraint } if constraint == "teams_name_key"));

    Team::add_member(&conn, team.id, ann.id, Role::Member)
        .await
        .unwrap();
    let err = Team::add_member(&conn, team.id, ann.id, Role::Admin)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Conflict { constraint } if constraint == "team_members_pkey"));
    let members = Team::members(&conn, team.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].1.role,
        Role::Member,
        "the first membership is untouched"
    );
}

#[tokio::test]
async fn foreign_key_violations_are_typed() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let owner = user(&mut conn, "owner@example.com").await;
    let t = Title::parse("Nobody's").unwrap();
    let orphan = NewTask::new(owner.id + 1000, &t);
    let err = Task::create(&conn, &orphan).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { constraint } if constraint == "tasks_owner_id_fkey"),
        "{err:?}"
    );
    task(&mut conn, &owner, "Real").await;
    assert_eq!(count(&mut conn, "tasks").await, 1);
}

/// A NOT NULL violation names its column, from the Diesel path and from COPY alike.
#[tokio::test]
async fn not_null_violations_name_the_column() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let err: Error = diesel::sql_query("INSERT INTO tags (name) VALUES (NULL)")
        .execute(&mut conn)
        .await
        .unwrap_err()
        .into();
    assert_eq!(constraint_of(&err), "tags_name_not_null", "{err:?}");
    assert_eq!(count(&mut conn, "tags").await, 0);
}

/// `Error::Database` shows Diesel's message and keeps the chain beneath it: its `source()`
/// is the wrapped error's cause.
#[test]
fn database_errors_keep_their_source_chain() {
    #[derive(Debug, thiserror::Error)]
    #[error("building the query failed")]
    struct Outer(#[source] std::io::Error);
    let cause = std::io::Error::other("the underlying cause");
    let err: Error = diesel::result::Error::QueryBuilderError(Box::new(Outer(cause))).into();
    assert_eq!(err.to_string(), "building the query failed");
    let source = std::error::Error::source(&err).expect("a source");
    assert_eq!(source.to_string(), "the underlying cause");
}
