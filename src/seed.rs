//! Demo data for a fresh database: a few users, teams, tasks with subtasks, and tags.

use chrono::{Days, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::bulk;
use crate::db::fns::{hashtext, pg_advisory_xact_lock};
use crate::models::UserRow;
use crate::models::{
    Channel, Comment, CommentOn, Email, NewTask, NewTeam, NewUser, NotificationChannel, Priority,
    Role, Tag, Task, TaskStatus, Team, Title, User,
};
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
        diesel::select(pg_advisory_xact_lock(hashtext("demo seed")))
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
    let mut users = Vec::new();
    for (email, name) in [
        (DEMO_MARKER_EMAIL, "Alice"),
        ("bob@example.com", "Bob"),
        ("carol@example.com", "Carol"),
    ] {
        let email = Email::parse(email)?;
        users.push(
            User::create(
                conn,
                &NewUser {
                    email: &email,
                    display_name: name,
                },
            )
            .await?,
        );
    }
    let [alice, bob, carol] = [users[0].id, users[1].id, users[2].id];

    let platform = Team::create(conn, &NewTeam { name: "Platform" }).await?;
    let web = Team::create(conn, &NewTeam { name: "Web" }).await?;
    Team::add_member(conn, platform.id, alice, Role::Owner).await?;
    Team::add_member(conn, platform.id, bob, Role::Member).await?;
    Team::add_member(conn, web.id, bob, Role::Admin).await?;
    Team::add_member(conn, web.id, carol, Role::Member).await?;

    let today = Utc::now().date_naive();
    let title = Title::parse("Ship the 1.0 release")?;
    let release = Task::create(
        conn,
        &NewTask {
            team_id: Some(platform.id),
            description: Some("Everything needed before tagging 1.0"),
            priority: Some(Priority::new(1)?),
            due_date: today.checked_add_days(Days::new(14)),
            checklist: Some(vec!["Changelog".into(), "Tag".into(), "Announce".into()]),
            ..NewTask::new(alice, &title)
        },
    )
    .await?;
    let subtasks = [
        ("Write the changelog", alice, TaskStatus::Done),
        ("Run the migration on staging", bob, TaskStatus::InProgress),
        ("Announce the release", alice, TaskStatus::Todo),
    ];
    for (title, owner_id, status) in subtasks {
        let title = Title::parse(title)?;
        let new = NewTask {
            team_id: Some(platform.id),
            parent_id: Some(release.id),
            status: Some(status),
            ..NewTask::new(owner_id, &title)
        };
        Task::create(conn, &new).await?;
    }
    let title = Title::parse("Redesign the landing page")?;
    let new = NewTask {
        team_id: Some(web.id),
        ..NewTask::new(carol, &title)
    };
    let landing = Task::create(conn, &new).await?;
    let title = Title::parse("Renew the TLS certificate")?;
    let new = NewTask {
        priority: Some(Priority::new(2)?),
        due_date: today.checked_add_days(Days::new(3)),
        ..NewTask::new(bob, &title)
    };
    let personal = Task::create(conn, &new).await?;
    // BEGIN example: Bug. A project without the example deletes this block
    // (docs/first-model.md, "Removing an example model").
    let title = Title::parse("Login fails with a plus sign in the email")?;
    let bug = crate::models::NewBug {
        severity: 2,
        reproduction: Some("Sign up as a+b@example.com, then log in"),
        found_in_version: Some("0.9.0"),
    };
    let team_task = NewTask {
        team_id: Some(web.id),
        ..NewTask::new(carol, &title)
    };
    crate::models::Bug::create(conn, &team_task, &bug).await?;
    // END example: Bug

    Comment::create(conn, bob, CommentOn::Task(release.id), "Staging is green.").await?;
    Comment::create(
        conn,
        carol,
        CommentOn::Team(web.id),
        "Design review on Friday.",
    )
    .await?;
    let channels = [
        (
            alice,
            Channel::Email {
                address: Email::parse("alice+alerts@example.com")?,
            },
        ),
        (
            bob,
            Channel::Sms {
                phone: "+4915112345678".into(),
            },
        ),
        (
            carol,
            Channel::Webhook {
                url: "https://hooks.example.com/carol".into(),
            },
        ),
    ];
    for (user_id, channel) in &channels {
        NotificationChannel::create(conn, *user_id, channel).await?;
    }

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

/// Rows per bulk call in [`volume`]: one progress step each.
const VOLUME_CHUNK: usize = 10_000;

/// Inserts `users` users and `tasks` tasks spread over them through the bulk path, in one
/// transaction, calling `progress` with the rows written after each chunk. Skipped (nothing
/// written) when a previous volume seed is present.
pub async fn volume(
    conn: &mut AsyncPgConnection,
    users: usize,
    tasks: usize,
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<Seeded> {
    conn.transaction::<_, Error, _>(async |conn| {
        diesel::select(pg_advisory_xact_lock(hashtext("volume seed")))
            .execute(conn)
            .await?;
        let present: bool = diesel::select(diesel::dsl::exists(
            users::table.filter(users::email.eq("volume0@example.com")),
        ))
        .get_result(conn)
        .await?;
        if present || users == 0 {
            return Ok(Seeded::AlreadyPresent);
        }
        let rows: Vec<UserRow> = (0..users)
            .map(|i| {
                Ok(UserRow {
                    email: Email::parse(&format!("volume{i}@example.com"))?,
                    display_name: format!("Volume user {i}"),
                })
            })
            .collect::<Result<_>>()?;
        for chunk in rows.chunks(VOLUME_CHUNK) {
            bulk::insert(conn, chunk).await?;
            progress(chunk.len());
        }
        let owners: Vec<i64> = users::table
            .filter(users::email.like("volume%@example.com"))
            .order(users::id)
            .select(users::id)
            .load(conn)
            .await?;
        let titles: Vec<Title> = (0..VOLUME_CHUNK.min(tasks))
            .map(|i| Title::parse(&format!("Volume task {i}")))
            .collect::<Result<_>>()?;
        let mut written = 0;
        while written < tasks {
            let n = VOLUME_CHUNK.min(tasks - written);
            let chunk: Vec<NewTask> = (0..n)
                .map(|i| {
                    Ok(NewTask {
                        priority: Some(Priority::new(1 + ((written + i) % 5) as i64)?),
                        ..NewTask::new(owners[(written + i) % owners.len()], &titles[i])
                    })
                })
                .collect::<Result<_>>()?;
            bulk::insert(conn, &chunk).await?;
            written += n;
            progress(n);
        }
        Ok(Seeded::Inserted)
    })
    .await
}
