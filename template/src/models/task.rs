//! Tasks: owned by a user (one-to-many), optionally in a team, optionally the subtask of
//! another task (self-referential), with a PostgreSQL enum for the status.

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::models::{Team, User};
use crate::schema::{sql_types, tasks};
use crate::{Error, Result};

/// The `task_status` enum of PostgreSQL, as a Rust enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[diesel(sql_type = sql_types::TaskStatus)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    Done,
}

// PostgreSQL sends enum values as their label in text: map labels both ways.
impl ToSql<sql_types::TaskStatus, Pg> for TaskStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        let label: &[u8] = match self {
            TaskStatus::Todo => b"todo",
            TaskStatus::InProgress => b"in_progress",
            TaskStatus::Done => b"done",
        };
        out.write_all(label)?;
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

/// A row of `tasks`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations, Serialize)]
#[diesel(table_name = tasks, check_for_backend(Pg))]
#[diesel(belongs_to(User, foreign_key = owner_id), belongs_to(Team))]
pub struct Task {
    pub id: i64,
    pub owner_id: i64,
    pub team_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: i16,
    pub due_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A task to insert. `None` for status or priority takes the column default.
#[derive(Debug, Clone, Default, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask<'a> {
    pub owner_id: i64,
    pub title: &'a str,
    pub team_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub description: Option<&'a str>,
    pub status: Option<TaskStatus>,
    pub priority: Option<i16>,
    pub due_date: Option<NaiveDate>,
}

/// A partial update. `None` leaves a column alone; for nullable columns
/// `Some(None)` sets NULL, `Some(Some(v))` sets `v`.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<TaskStatus>,
    pub priority: Option<i16>,
    pub due_date: Option<Option<NaiveDate>>,
    pub team_id: Option<Option<i64>>,
    pub parent_id: Option<Option<i64>>,
}

impl TaskChanges {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.priority.is_none()
            && self.due_date.is_none()
            && self.team_id.is_none()
            && self.parent_id.is_none()
    }
}

impl Task {
    /// Inserts a task and returns the stored row.
    pub async fn create(conn: &mut AsyncPgConnection, new: &NewTask<'_>) -> Result<Task> {
        Ok(diesel::insert_into(tasks::table)
            .values(new)
            .returning(Task::as_returning())
            .get_result(conn)
            .await?)
    }

    /// The task with this id.
    pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> Result<Task> {
        Ok(tasks::table
            .find(id)
            .select(Task::as_select())
            .first(conn)
            .await?)
    }

    /// Applies the set fields of `changes`, leaving the others untouched.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        id: i64,
        changes: &TaskChanges,
    ) -> Result<Task> {
        if changes.is_empty() {
            return Task::find(conn, id).await;
        }
        Ok(diesel::update(tasks::table.find(id))
            .set(changes)
            .returning(Task::as_returning())
            .get_result(conn)
            .await?)
    }

    /// Deletes the task with its subtasks and tag links (ON DELETE CASCADE).
    pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> Result<()> {
        match diesel::delete(tasks::table.find(id)).execute(conn).await? {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// A user's tasks (one-to-many through `belonging_to`), by id.
    pub async fn owned_by(conn: &mut AsyncPgConnection, owner: &User) -> Result<Vec<Task>> {
        Ok(Task::belonging_to(owner)
            .order(tasks::id)
            .select(Task::as_select())
            .load(conn)
            .await?)
    }

    /// A team's tasks, by id.
    pub async fn of_team(conn: &mut AsyncPgConnection, team: &Team) -> Result<Vec<Task>> {
        Ok(Task::belonging_to(team)
            .order(tasks::id)
            .select(Task::as_select())
            .load(conn)
            .await?)
    }

    /// The direct subtasks of this task, by id.
    pub async fn subtasks(&self, conn: &mut AsyncPgConnection) -> Result<Vec<Task>> {
        Ok(tasks::table
            .filter(tasks::parent_id.eq(self.id))
            .order(tasks::id)
            .select(Task::as_select())
            .load(conn)
            .await?)
    }
}
