//! The guide's query patterns: a join, an aggregation, a subquery, a window function and a
//! plain CTE (the recursive one is `Task::subtree`). DSL where Diesel has the construct;
//! typed `sql_query` where it has not (CTEs), with bound parameters.

use diesel::dsl::{count_star, exists, not, rank};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::Result;
use crate::models::{Task, TaskStatus, Team, User};
use crate::schema::{tasks, team_members, teams, users};

// Grouping by columns of two tables needs Diesel's permission; schema.rs is generated, so
// it is granted here, next to the query that needs it.
diesel::allow_columns_to_appear_in_same_group_by_clause!(teams::name, tasks::status);

/// Join: a team's live tasks with their owners, by priority then id.
pub async fn team_tasks_with_owners(
    mut conn: &AsyncPgConnection,
    team: &Team,
) -> Result<Vec<(Task, User)>> {
    Ok(tasks::table
        .inner_join(users::table)
        .filter(tasks::team_id.eq(team.id))
        .filter(Task::is_live())
        .order((tasks::priority, tasks::id))
        .select((Task::as_select(), User::as_select()))
        .load(&mut conn)
        .await?)
}

/// Aggregation: live tasks per status per team (`GROUP BY team, status`), by team name.
pub async fn status_counts_per_team(
    mut conn: &AsyncPgConnection,
) -> Result<Vec<(String, TaskStatus, i64)>> {
    Ok(tasks::table
        .inner_join(teams::table)
        .filter(Task::is_live())
        .group_by((teams::name, tasks::status))
        .select((teams::name, tasks::status, count_star()))
        .order((teams::name, tasks::status))
        .load(&mut conn)
        .await?)
}

/// Subquery: users with no open live task (`NOT EXISTS (SELECT ... )`), by id.
pub async fn users_without_open_tasks(mut conn: &AsyncPgConnection) -> Result<Vec<User>> {
    let open = tasks::table
        .filter(tasks::owner_id.eq(users::id))
        .filter(tasks::status.ne(TaskStatus::Done))
        .filter(Task::is_live());
    Ok(users::table
        .filter(not(exists(open)))
        .order(users::id)
        .select(User::as_select())
        .load(&mut conn)
        .await?)
}

/// Window function: each live team task with its rank by priority within its team
/// (`rank() OVER (PARTITION BY team_id ORDER BY priority)`); ties share a rank.
pub async fn priority_rank_within_team(mut conn: &AsyncPgConnection) -> Result<Vec<(Task, i64)>> {
    Ok(tasks::table
        .filter(tasks::team_id.is_not_null())
        .filter(Task::is_live())
        .order((tasks::team_id, tasks::priority, tasks::id))
        .select((
            Task::as_select(),
            rank()
                .partition_by(tasks::team_id)
                .window_order(tasks::priority),
        ))
        .load(&mut conn)
        .await?)
}

/// A row of [`busiest_owners`].
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct OwnerLoad {
    /// The owner.
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    /// Their display name.
    #[diesel(sql_type = Text)]
    pub display_name: String,
    /// Their tasks not yet done.
    #[diesel(sql_type = BigInt)]
    pub open_tasks: i64,
}

/// Plain CTE: owners with at least `min_open` open live tasks, busiest first. Diesel has no
/// `WITH` builder (diesel issue 356): typed `sql_query`, the threshold a bound parameter.
pub async fn busiest_owners(mut conn: &AsyncPgConnection, min_open: i64) -> Result<Vec<OwnerLoad>> {
    Ok(diesel::sql_query(
        "WITH open_per_owner AS ( \
             SELECT owner_id, count(*) AS open_tasks FROM tasks \
             WHERE status <> 'done' AND deleted_at IS NULL GROUP BY owner_id) \
         SELECT u.id AS user_id, u.display_name, o.open_tasks \
         FROM open_per_owner o JOIN users u ON u.id = o.owner_id \
         WHERE o.open_tasks >= $1 ORDER BY o.open_tasks DESC, u.id",
    )
    .bind::<BigInt, _>(min_open)
    .load(&mut conn)
    .await?)
}

/// What a user's home page shows: four reads that do not depend on each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The user.
    pub user: User,
    /// Their open live tasks, soonest due first.
    pub open_tasks: Vec<Task>,
    /// The teams they belong to, by name.
    pub teams: Vec<Team>,
    /// Their live tasks per status.
    pub status_counts: Vec<(TaskStatus, i64)>,
}

/// The dashboard's four reads sent together on one connection (pipelining): the server
/// still runs them one by one, but the client waits for one round trip, not four.
pub async fn dashboard(conn: &AsyncPgConnection, user_id: i64) -> Result<Dashboard> {
    let (user, open_tasks, teams, status_counts) = tokio::try_join!(
        User::find(conn, user_id),
        open_tasks(conn, user_id),
        teams_of(conn, user_id),
        status_counts(conn, user_id),
    )?;
    Ok(Dashboard {
        user,
        open_tasks,
        teams,
        status_counts,
    })
}

/// [`dashboard`] one read after another, each waiting for the one before: the comparison
/// `bench` measures it against.
pub async fn dashboard_sequential(conn: &AsyncPgConnection, user_id: i64) -> Result<Dashboard> {
    Ok(Dashboard {
        user: User::find(conn, user_id).await?,
        open_tasks: open_tasks(conn, user_id).await?,
        teams: teams_of(conn, user_id).await?,
        status_counts: status_counts(conn, user_id).await?,
    })
}

async fn open_tasks(mut conn: &AsyncPgConnection, user_id: i64) -> Result<Vec<Task>> {
    Ok(Task::open_for_owner(user_id)
        .select(Task::as_select())
        .load(&mut conn)
        .await?)
}

async fn teams_of(mut conn: &AsyncPgConnection, user_id: i64) -> Result<Vec<Team>> {
    Ok(team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq(user_id))
        .order(teams::name)
        .select(Team::as_select())
        .load(&mut conn)
        .await?)
}

async fn status_counts(
    mut conn: &AsyncPgConnection,
    user_id: i64,
) -> Result<Vec<(TaskStatus, i64)>> {
    Ok(Task::live()
        .filter(tasks::owner_id.eq(user_id))
        .group_by(tasks::status)
        .select((tasks::status, count_star()))
        .order(tasks::status)
        .load(&mut conn)
        .await?)
}
