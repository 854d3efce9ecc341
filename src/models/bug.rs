//! Joined-table inheritance: a bug is a task. `bugs` shares the primary key of `tasks`
//! (`bugs.task_id`) and adds its own columns; a `Bug` is the two rows joined.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::models::{NewTask, Task};
use crate::schema::{bugs, tasks};
use crate::{Error, Result};

/// The bug-only columns: a row of `bugs`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    Selectable,
    Identifiable,
    Associations,
    Insertable,
    Serialize,
)]
#[diesel(table_name = bugs, primary_key(task_id), check_for_backend(Pg))]
#[diesel(belongs_to(Task))]
pub struct BugDetails {
    /// The task this bug extends (primary key and foreign key).
    pub task_id: i64,
    /// 1 (critical) to 4 (cosmetic): the `bugs_severity_range` CHECK.
    pub severity: i16,
    /// Steps to reproduce, if known.
    pub reproduction: Option<String>,
    /// The version the bug was seen in, if known.
    pub found_in_version: Option<String>,
}

/// A bug: the base task and its bug-only columns.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(check_for_backend(Pg))]
pub struct Bug {
    /// The base `tasks` row.
    #[diesel(embed)]
    pub task: Task,
    /// The `bugs` row.
    #[diesel(embed)]
    pub details: BugDetails,
}

/// The bug-only part of a new bug.
#[derive(Debug, Clone)]
pub struct NewBug<'a> {
    /// 1 (critical) to 4 (cosmetic).
    pub severity: i16,
    /// Steps to reproduce, if known.
    pub reproduction: Option<&'a str>,
    /// The version the bug was seen in, if known.
    pub found_in_version: Option<&'a str>,
}

impl Bug {
    /// Inserts the task row and the bug row in one transaction: both or neither.
    pub async fn create(
        conn: &mut AsyncPgConnection,
        task: &NewTask<'_>,
        bug: &NewBug<'_>,
    ) -> Result<Bug> {
        conn.transaction::<_, Error, _>(async |conn| {
            let task = Task::create(conn, task).await?;
            let details = diesel::insert_into(bugs::table)
                .values((
                    bugs::task_id.eq(task.id),
                    bugs::severity.eq(bug.severity),
                    bugs::reproduction.eq(bug.reproduction),
                    bugs::found_in_version.eq(bug.found_in_version),
                ))
                .returning(BugDetails::as_returning())
                .get_committed(conn)
                .await?;
            Ok(Bug { task, details })
        })
        .await
    }

    /// The bug with this task id; a plain task (no `bugs` row) is `Error::NotFound`.
    pub async fn find(mut conn: &AsyncPgConnection, task_id: i64) -> Result<Bug> {
        Ok(tasks::table
            .inner_join(bugs::table)
            .filter(tasks::id.eq(task_id))
            .filter(Task::is_live())
            .select(Bug::as_select())
            .first(&mut conn)
            .await?)
    }

    /// Live bugs at least as severe as `severity` (1 is the most severe), worst first.
    pub async fn at_least(mut conn: &AsyncPgConnection, severity: i16) -> Result<Vec<Bug>> {
        Ok(tasks::table
            .inner_join(bugs::table)
            .filter(bugs::severity.le(severity))
            .filter(Task::is_live())
            .order((bugs::severity, tasks::id))
            .select(Bug::as_select())
            .load(&mut conn)
            .await?)
    }
}
