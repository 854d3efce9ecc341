//! Polymorphic association: a comment is on a task or on a team. Each parent kind has its
//! own nullable foreign key (so the database checks and cascades it), and the
//! `comments_one_parent` CHECK demands exactly one; Rust sees a `CommentOn` enum.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::schema::comments;
use crate::{Error, Result};

/// What a comment is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum CommentOn {
    /// Attached to this task id.
    Task(i64),
    /// Attached to this team id.
    Team(i64),
}

/// A row of `comments`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = comments, check_for_backend(Pg))]
pub struct Comment {
    /// Primary key.
    pub id: i64,
    /// The user who wrote it (deleting them is refused while it exists).
    pub author_id: i64,
    /// Set when attached to a task (exactly one of `task_id`, `team_id` is).
    pub task_id: Option<i64>,
    /// Set when attached to a team.
    pub team_id: Option<i64>,
    /// The text, 1 to 10,000 characters.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Last change, kept by the `updated_at` trigger.
    pub updated_at: DateTime<Utc>,
}

impl Comment {
    /// The parent, read from whichever foreign key is set.
    pub fn on(&self) -> Result<CommentOn> {
        match (self.task_id, self.team_id) {
            (Some(task), None) => Ok(CommentOn::Task(task)),
            (None, Some(team)) => Ok(CommentOn::Team(team)),
            // comments_one_parent rules this out; reaching it means the CHECK was dropped.
            _ => Err(Error::invalid(
                "comments_one_parent",
                format!("comment {} must have exactly one parent", self.id),
            )),
        }
    }

    /// Adds a comment by `author_id` on `on`.
    pub async fn create(
        mut conn: &AsyncPgConnection,
        author_id: i64,
        on: CommentOn,
        body: &str,
    ) -> Result<Comment> {
        let (task_id, team_id) = match on {
            CommentOn::Task(id) => (Some(id), None),
            CommentOn::Team(id) => (None, Some(id)),
        };
        Ok(diesel::insert_into(comments::table)
            .values((
                comments::author_id.eq(author_id),
                comments::task_id.eq(task_id),
                comments::team_id.eq(team_id),
                comments::body.eq(body),
            ))
            .returning(Comment::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// The comments on a task or team, oldest first.
    pub async fn list(mut conn: &AsyncPgConnection, on: CommentOn) -> Result<Vec<Comment>> {
        let query = comments::table
            .order((comments::created_at, comments::id))
            .select(Comment::as_select())
            .into_boxed();
        let query = match on {
            CommentOn::Task(id) => query.filter(comments::task_id.eq(id)),
            CommentOn::Team(id) => query.filter(comments::team_id.eq(id)),
        };
        Ok(query.load(&mut conn).await?)
    }

    /// Deletes a comment.
    pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {
        match diesel::delete(comments::table.find(id))
            .execute(&mut conn)
            .await?
        {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }
}
