//! The query patterns of `src/reports.rs`, each against a small, known data set.

use crate::support::{TestDb, user};
use app::models::*;
use app::reports;
use diesel_async::AsyncPgConnection;

struct Fixture {
    ann: User,
    ben: User,
    cat: User,
    core: Team,
    web: Team,
}

async fn task(
    conn: &mut AsyncPgConnection,
    owner: &User,
    team: Option<&Team>,
    title: &str,
    priority: i64,
    status: TaskStatus,
) -> Task {
    let title = Title::parse(title).unwrap();
    let new = NewTask {
        team_id: team.map(|t| t.id),
        priority: Some(Priority::new(priority).unwrap()),
        status: Some(status),
        ..NewTask::new(owner.id, &title)
    };
    Task::create(conn, &new).await.unwrap()
}

async fn fixture(conn: &mut AsyncPgConnection) -> Fixture {
    let ann = user(conn, "ann@example.com").await;
    let ben = user(conn, "ben@example.com").await;
    let cat = user(conn, "cat@example.com").await;
    let core = Team::create(conn, &NewTeam { name: "Core" }).await.unwrap();
    let web = Team::create(conn, &NewTeam { name: "Web" }).await.unwrap();
    use TaskStatus::*;
    task(conn, &ann, Some(&core), "Core 1", 2, Todo).await;
    task(conn, &ben, Some(&core), "Core 2", 1, InProgress).await;
    task(conn, &ann, Some(&core), "Core 3", 2, Done).await;
    task(conn, &ann, Some(&web), "Web 1", 3, Todo).await;
    task(conn, &cat, None, "Solo", 1, Done).await;
    let hidden = task(conn, &cat, Some(&web), "Deleted", 1, Todo).await;
    Task::soft_delete(conn, hidden.id).await.unwrap();
    Fixture {
        ann,
        ben,
        cat,
        core,
        web,
    }
}

#[tokio::test]
async fn join_aggregation_and_subquery() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let f = fixture(&mut conn).await;

    let rows = reports::team_tasks_with_owners(&conn, &f.core)
        .await
        .unwrap();
    let seen: Vec<_> = rows
        .iter()
        .map(|(t, u)| (t.title.as_str().to_owned(), u.id))
        .collect();
    assert_eq!(
        seen,
        [
            ("Core 2".into(), f.ben.id),
            ("Core 1".into(), f.ann.id),
            ("Core 3".into(), f.ann.id)
        ]
    );

    let counts = reports::status_counts_per_team(&conn).await.unwrap();
    use TaskStatus::*;
    assert_eq!(
        counts,
        [
            ("Core".into(), Todo, 1),
            ("Core".into(), InProgress, 1),
            ("Core".into(), Done, 1),
            ("Web".into(), Todo, 1)
        ],
        "soft-deleted and team-less tasks are not counted"
    );

    let idle: Vec<_> = reports::users_without_open_tasks(&conn)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(idle, [f.cat.id], "cat's only open task is soft-deleted");
}

#[tokio::test]
async fn window_function_ranks_by_priority_within_each_team() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let f = fixture(&mut conn).await;
    let ranked = reports::priority_rank_within_team(&conn).await.unwrap();
    let shape: Vec<_> = ranked
        .iter()
        .map(|(t, r)| (t.team_id.unwrap(), t.title.as_str().to_owned(), *r))
        .collect();
    assert_eq!(
        shape,
        [
            (f.core.id, "Core 2".into(), 1),
            (f.core.id, "Core 1".into(), 2),
            (f.core.id, "Core 3".into(), 2),
            (f.web.id, "Web 1".into(), 1),
        ],
        "ties share a rank; each team starts at 1"
    );
}

#[tokio::test]
async fn cte_finds_the_busiest_owners() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let f = fixture(&mut conn).await;
    let busy = reports::busiest_owners(&conn, 1).await.unwrap();
    let shape: Vec<_> = busy.iter().map(|o| (o.user_id, o.open_tasks)).collect();
    assert_eq!(shape, [(f.ann.id, 2), (f.ben.id, 1)]);
    assert_eq!(busy[0].display_name, "Test User");
    assert!(reports::busiest_owners(&conn, 3).await.unwrap().is_empty());
}

/// The pipelined dashboard reads what the sequential one reads: ann's open live tasks
/// (done and soft-deleted ones left out), her teams by name, her tasks per status.
#[tokio::test]
async fn dashboard_pipelined_matches_sequential() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let f = fixture(&mut conn).await;
    Team::add_member(&conn, f.web.id, f.ann.id, Role::Member)
        .await
        .unwrap();
    Team::add_member(&conn, f.core.id, f.ann.id, Role::Admin)
        .await
        .unwrap();
    let piped = reports::dashboard(&conn, f.ann.id).await.unwrap();
    assert_eq!(
        piped,
        reports::dashboard_sequential(&conn, f.ann.id)
            .await
            .unwrap()
    );
    assert_eq!(piped.user, f.ann);
    let titles: Vec<&str> = piped.open_tasks.iter().map(|t| t.title.as_str()).collect();
    let mut sorted = titles.clone();
    sorted.sort();
    assert_eq!(sorted, ["Core 1", "Web 1"]);
    let teams: Vec<&str> = piped.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(teams, ["Core", "Web"]);
    use TaskStatus::*;
    assert_eq!(piped.status_counts, [(Todo, 2), (Done, 1)]);
    let missing = reports::dashboard(&conn, f.cat.id + 1_000)
        .await
        .unwrap_err();
    assert!(matches!(missing, app::Error::NotFound), "{missing:?}");
}
