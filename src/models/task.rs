//! Tasks: owned by a user (one-to-many), optionally in a team, optionally the subtask of
//! another task (self-referential, with a recursive subtree query). Shows a PostgreSQL enum
//! (`TaskStatus`), validated newtypes (`Title`, `Priority`), a `text[]` column and soft delete.

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Integer, SmallInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::models::{Team, User};
use crate::schema::{sql_types, tasks};
use crate::{Error, Result};

/// The `task_status` enum of PostgreSQL, as a Rust enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = sql_types::TaskStatus)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started (the default).
    Todo,
    /// Being worked on.
    InProgress,
    /// Finished.
    Done,
}

impl TaskStatus {
    /// The enum label in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
        }
    }
}

// PostgreSQL sends enum values as their label in text: map labels both ways.
impl ToSql<sql_types::TaskStatus, Pg> for TaskStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<sql_types::TaskStatus, Pg> for TaskStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match bytes.as_bytes() {
            b"todo" => Ok(TaskStatus::Todo),
            b"in_progress" => Ok(TaskStatus::InProgress),
            b"done" => Ok(TaskStatus::Done),
            other => {
                Err(format!("unknown task_status {:?}", String::from_utf8_lossy(other)).into())
            }
        }
    }
}

/// A task title: trimmed, 1 to 200 characters (the `tasks_title_length` CHECK).
#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = Text)]
pub struct Title(String);

impl Title {
    /// Trims and checks the length.
    pub fn parse(raw: &str) -> Result<Title> {
        let title = raw.trim();
        match title.chars().count() {
            1..=200 => Ok(Title(title.to_owned())),
            n => Err(Error::invalid(
                "tasks_title_length",
                format!("a title has 1 to 200 characters, not {n}"),
            )),
        }
    }

    /// The title as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ToSql<Text, Pg> for Title {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Text, Pg> for Title {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Pg>>::from_sql(bytes).map(Title)
    }
}

/// Priority 1 (highest) to 5 (lowest), the `tasks_priority_range` CHECK.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow, Serialize,
)]
#[diesel(sql_type = SmallInt)]
pub struct Priority(i16);

impl Priority {
    /// The default of the column.
    pub const NORMAL: Priority = Priority(3);

    /// Checks the range.
    pub fn new(value: i64) -> Result<Priority> {
        match i16::try_from(value) {
            Ok(v @ 1..=5) => Ok(Priority(v)),
            _ => Err(Error::invalid(
                "tasks_priority_range",
                format!("priority is 1 to 5, not {value}"),
            )),
        }
    }

    /// The number stored.
    pub fn get(self) -> i16 {
        self.0
    }
}

impl ToSql<SmallInt, Pg> for Priority {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <i16 as ToSql<SmallInt, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<SmallInt, Pg> for Priority {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <i16 as FromSql<SmallInt, Pg>>::from_sql(bytes).map(Priority)
    }
}

/// A row of `tasks`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    QueryableByName,
    Selectable,
    Identifiable,
    Associations,
    Serialize,
)]
#[diesel(table_name = tasks, check_for_backend(Pg))]
#[diesel(belongs_to(User, foreign_key = owner_id), belongs_to(Team))]
pub struct Task {
    /// Primary key.
    pub id: i64,
    /// The user who owns it; deleting them deletes it.
    pub owner_id: i64,
    /// The team it belongs to, if any; deleting the team sets NULL.
    pub team_id: Option<i64>,
    /// The parent task, for subtasks; deleting the parent deletes it.
    pub parent_id: Option<i64>,
    /// Validated title, 1 to 200 characters (`tasks_title_length`).
    pub title: Title,
    /// Free text, if any.
    pub description: Option<String>,
    /// Workflow state.
    pub status: TaskStatus,
    /// 1 (highest) to 5 (lowest).
    pub priority: Priority,
    /// Due date, if any.
    pub due_date: Option<NaiveDate>,
    /// Checklist items, in order (`text[]`, never NULL elements).
    pub checklist: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change, kept by the `updated_at` trigger.
    pub updated_at: DateTime<Utc>,
    /// Set by [`Task::soft_delete`]; such tasks are hidden from the default queries.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A task to insert. `None` for status, priority or checklist takes the column default.
/// Start from [`NewTask::new`] and set what differs.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask<'a> {
    /// The owning user.
    pub owner_id: i64,
    /// Validated title.
    pub title: &'a Title,
    /// Team, if any.
    pub team_id: Option<i64>,
    /// Parent task, for subtasks.
    pub parent_id: Option<i64>,
    /// Free text, if any.
    pub description: Option<&'a str>,
    /// `None` takes the default, `todo`.
    pub status: Option<TaskStatus>,
    /// `None` takes the default, 3.
    pub priority: Option<Priority>,
    /// Due date, if any.
    pub due_date: Option<NaiveDate>,
    /// `None` takes the default, empty.
    pub checklist: Option<Vec<String>>,
}

impl<'a> NewTask<'a> {
    /// A task with only the required fields set.
    pub fn new(owner_id: i64, title: &'a Title) -> Self {
        NewTask {
            owner_id,
            title,
            team_id: None,
            parent_id: None,
            description: None,
            status: None,
            priority: None,
            due_date: None,
            checklist: None,
        }
    }
}

/// A partial update. `None` leaves a column alone; for nullable columns
/// `Some(None)` sets NULL, `Some(Some(v))` sets `v`.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChanges {
    /// New title.
    pub title: Option<Title>,
    /// New description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New status.
    pub status: Option<TaskStatus>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New due date; `Some(None)` clears it.
    pub due_date: Option<Option<NaiveDate>>,
    /// New checklist.
    pub checklist: Option<Vec<String>>,
    /// New team; `Some(None)` detaches it.
    pub team_id: Option<Option<i64>>,
    /// New parent; `Some(None)` makes it a root task.
    pub parent_id: Option<Option<i64>>,
}

impl TaskChanges {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.priority.is_none()
            && self.due_date.is_none()
            && self.checklist.is_none()
            && self.team_id.is_none()
            && self.parent_id.is_none()
    }
}

/// A task in a subtree, with its depth below the root (the root is 0).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TreeTask {
    /// The task row.
    #[diesel(embed)]
    pub task: Task,
    /// Levels below the root: 0 for the root itself.
    #[diesel(sql_type = Integer)]
    pub depth: i32,
}

/// Tasks not soft-deleted: the start of every default query.
type Live = diesel::dsl::Filter<tasks::table, diesel::dsl::IsNull<tasks::deleted_at>>;

impl Task {
    /// The one definition of "not soft-deleted": every query that shows tasks filters on it
    /// (directly, in a join's `ON`, or through [`Task::live`]).
    pub fn is_live() -> diesel::dsl::IsNull<tasks::deleted_at> {
        tasks::deleted_at.is_null()
    }

    /// All tasks that are not soft-deleted.
    pub fn live() -> Live {
        tasks::table.filter(Task::is_live())
    }

    /// Open (not done), live tasks of an owner, soonest due first. Its WHERE clause matches
    /// the partial index `tasks_open_by_owner_idx`, so the planner can use it.
    pub fn open_for_owner(owner_id: i64) -> tasks::BoxedQuery<'static, Pg> {
        Task::live()
            .filter(tasks::owner_id.eq(owner_id))
            .filter(tasks::status.ne(TaskStatus::Done))
            .order((tasks::due_date.asc().nulls_last(), tasks::id))
            .into_boxed()
    }

    /// Inserts a task and returns the stored row.
    pub async fn create(mut conn: &AsyncPgConnection, new: &NewTask<'_>) -> Result<Task> {
        Ok(diesel::insert_into(tasks::table)
            .values(new)
            .returning(Task::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// The task with this id, unless soft-deleted.
    pub async fn find(mut conn: &AsyncPgConnection, id: i64) -> Result<Task> {
        Ok(Task::live()
            .filter(tasks::id.eq(id))
            .select(Task::as_select())
            .first(&mut conn)
            .await?)
    }

    /// The task with this id, soft-deleted or not.
    pub async fn find_with_deleted(mut conn: &AsyncPgConnection, id: i64) -> Result<Task> {
        Ok(tasks::table
            .find(id)
            .select(Task::as_select())
            .first(&mut conn)
            .await?)
    }

    /// Applies the set fields of `changes`, leaving the others untouched.
    pub async fn update(
        mut conn: &AsyncPgConnection,
        id: i64,
        changes: &TaskChanges,
    ) -> Result<Task> {
        if changes.is_empty() {
            return Task::find(conn, id).await;
        }
        Ok(diesel::update(Task::live().filter(tasks::id.eq(id)))
            .set(changes)
            .returning(Task::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Hides the task from the default queries; [`Task::restore`] brings it back.
    pub async fn soft_delete(mut conn: &AsyncPgConnection, id: i64) -> Result<Task> {
        Ok(diesel::update(Task::live().filter(tasks::id.eq(id)))
            .set(tasks::deleted_at.eq(diesel::dsl::now))
            .returning(Task::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Undoes [`Task::soft_delete`].
    pub async fn restore(mut conn: &AsyncPgConnection, id: i64) -> Result<Task> {
        Ok(diesel::update(tasks::table.find(id))
            .filter(tasks::deleted_at.is_not_null())
            .set(tasks::deleted_at.eq(None::<DateTime<Utc>>))
            .returning(Task::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Deletes for good the tasks soft-deleted before `cutoff`; returns how many.
    pub async fn purge_deleted_before(
        mut conn: &AsyncPgConnection,
        cutoff: DateTime<Utc>,
    ) -> Result<usize> {
        Ok(
            diesel::delete(tasks::table.filter(tasks::deleted_at.lt(cutoff)))
                .execute(&mut conn)
                .await?,
        )
    }

    /// Deletes the task for good, with its subtasks and tag links (ON DELETE CASCADE).
    pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {
        match diesel::delete(tasks::table.find(id))
            .execute(&mut conn)
            .await?
        {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// A user's tasks (one-to-many through `belonging_to`), by id.
    pub async fn owned_by(mut conn: &AsyncPgConnection, owner: &User) -> Result<Vec<Task>> {
        Ok(Task::belonging_to(owner)
            .filter(Task::is_live())
            .order(tasks::id)
            .select(Task::as_select())
            .load(&mut conn)
            .await?)
    }

    /// A team's tasks, by id.
    pub async fn of_team(mut conn: &AsyncPgConnection, team: &Team) -> Result<Vec<Task>> {
        Ok(Task::belonging_to(team)
            .filter(Task::is_live())
            .order(tasks::id)
            .select(Task::as_select())
            .load(&mut conn)
            .await?)
    }

    /// The direct subtasks of this task, by id.
    pub async fn subtasks(&self, mut conn: &AsyncPgConnection) -> Result<Vec<Task>> {
        Ok(Task::live()
            .filter(tasks::parent_id.eq(self.id))
            .order(tasks::id)
            .select(Task::as_select())
            .load(&mut conn)
            .await?)
    }

    /// The task and every live task below it, depth-first by path. Diesel has no CTE
    /// builder (diesel issue 356), so this is typed `sql_query` with a bound parameter.
    pub async fn subtree(mut conn: &AsyncPgConnection, root_id: i64) -> Result<Vec<TreeTask>> {
        let rows: Vec<TreeTask> = diesel::sql_query(
            "WITH RECURSIVE tree AS ( \
                 SELECT t.*, 0 AS depth, ARRAY[t.id] AS path \
                 FROM tasks t WHERE t.id = $1 AND t.deleted_at IS NULL \
               UNION ALL \
                 SELECT c.*, tree.depth + 1, tree.path || c.id \
                 FROM tasks c JOIN tree ON c.parent_id = tree.id \
                 WHERE c.deleted_at IS NULL AND NOT c.id = ANY(tree.path) \
             ) SELECT * FROM tree ORDER BY path",
        )
        .bind::<BigInt, _>(root_id)
        .load(&mut conn)
        .await?;
        if rows.is_empty() {
            return Err(Error::NotFound);
        }
        Ok(rows)
    }
}

/// A bulk change to existing tasks, matched by id: status and priority.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatusUpdate {
    /// The task to change.
    pub id: i64,
    /// Its new status.
    pub status: TaskStatus,
    /// Its new priority.
    pub priority: Priority,
}

impl Task {
    /// The portable path: Diesel's multi-row `INSERT ... VALUES (..), (..)`, chunked to stay
    /// under PostgreSQL's 65,535 bind parameters, in one transaction.
    pub async fn insert_batched(
        conn: &mut AsyncPgConnection,
        rows: &[NewTask<'_>],
    ) -> Result<usize> {
        // NewTask has 9 insertable columns; every row binds each one (or DEFAULT).
        const PER_CHUNK: usize = 65_535 / 9;
        use diesel_async::AsyncConnection;
        conn.transaction::<_, Error, _>(async |conn| {
            let mut inserted = 0;
            for chunk in rows.chunks(PER_CHUNK) {
                inserted += diesel::insert_into(tasks::table)
                    .values(chunk)
                    .execute(conn)
                    .await?;
            }
            Ok(inserted)
        })
        .await
    }
}
