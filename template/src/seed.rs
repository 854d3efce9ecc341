//! Demo data for a fresh database: a few users, teams, tasks with subtasks, and tags.

use chrono::{Days, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::models::{NewTask, NewTeam, NewUser, Role, Tag, Task, TaskStatus, Team, User};
use crate::schema::users;
use crate::{Error, Result};

/// The email that marks demo data as present.
pub const DEMO_MARKER_EMAIL: &str = "alice@example.com";

/// What [`demo`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// The demo rows were inserted.
    Inserted,
    /// Demo data was already there; nothing was written.
    AlreadyPresent,
}

/// Inserts the demo data in one transaction, unless it is already there.
/// Running it twice changes nothing the second time.
pub async fn demo(conn: &mut AsyncPgConnection) -> Result<Seeded> {
    conn.transaction::<_, Error, _>(async |conn| {
        // Serialise concurrent seeders; the lock ends with the transaction.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('demo seed'))")
            .execute(conn)
            .await?;
        let present: bool = diesel::select(diesel::dsl::exists(
            users::table.filter(users::email.eq(DEMO_MARKER_EMAIL)),
        ))
        .get_result(conn)
        .await?;
        if present {
            return Ok(Seeded::AlreadyPresent);
        }
        insert_demo(conn).await?;
        Ok(Seeded::Inserted)
    })
    .await
}

async fn insert_demo(conn: &mut AsyncPgConnection) -> Result<()> {
    let alice = User::create(
        conn,
        &NewUser {
            email: DEMO_MARKER_EMAIL,
            name: "Alice",
        },
    )
    .await?;
    let bob = User::create(
        conn,
        &NewUser {
            email: "bob@example.com",
            name: "Bob",
        },
    )
    .await?;
    let carol = User::create(
        conn,
        &NewUser {
            email: "carol@example.com",
            name: "Carol",
        },
    )
    .await?;

    let platform = Team::create(conn, &NewTeam { name: "Platform" }).await?;
    let web = Team::create(conn, &NewTeam { name: "Web" }).await?;
    Team::add_member(conn, platform.id, alice.id, Role::Owner).await?;
    Team::add_member(conn, platform.id, bob.id, Role::Member).await?;
    Team::add_member(conn, web.id, bob.id, Role::Admin).await?;
    Team::add_member(conn, web.id, carol.id, Role::Member).await?;

    let today = Utc::now().date_naive();
    let release = Task::create(
        conn,
        &NewTask {
            owner_id: alice.id,
            team_id: Some(platform.id),
            title: "Ship the 1.0 release",
            description: Some("Everything needed before tagging 1.0"),
            priority: Some(1),
            due_date: today.checked_add_days(Days::new(14)),
            ..NewTask::default()
        },
    )
    .await?;
    let subtasks = [
        ("Write the changelog", alice.id, TaskStatus::Done),
        (
            "Run the migration on staging",
            bob.id,
            TaskStatus::InProgress,
        ),
        ("Announce the release", alice.id, TaskStatus::Todo),
    ];
    for (title, owner_id, status) in subtasks {
        Task::create(
            conn,
            &NewTask {
                owner_id,
                team_id: Some(platform.id),
                parent_id: Some(release.id),
                title,
                status: Some(status),
                ..NewTask::default()
            },
        )
        .await?;
    }
    let landing = Task::create(
        conn,
        &NewTask {
            owner_id: carol.id,
            team_id: Some(web.id),
            title: "Redesign the landing page",
            priority: Some(3),
            ..NewTask::default()
        },
    )
    .await?;
    let personal = Task::create(
        conn,
        &NewTask {
            owner_id: bob.id,
            title: "Renew the TLS certificate",
            priority: Some(2),
            due_date: today.checked_add_days(Days::new(3)),
            ..NewTask::default()
        },
    )
    .await?;

    for (task, names) in [
        (&release, &["release", "urgent"][..]),
        (&landing, &["frontend"][..]),
        (&personal, &["ops", "urgent"][..]),
    ] {
        for name in names {
            let tag = Tag::find_or_create(conn, name).await?;
            Tag::attach(conn, task.id, tag.id).await?;
        }
    }
    Ok(())
}
