//! Tags and the `task_tags` link table (many-to-many between tasks and tags).

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::CommittedDsl;
use crate::models::Task;
use crate::schema::{tags, task_tags};
use crate::{Error, Result};

/// A row of `tags`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = tags, check_for_backend(Pg))]
pub struct Tag {
    /// Primary key.
    pub id: i64,
    /// Unique, lowercase letters, digits and dashes.
    pub name: String,
}

/// A tag to insert: lowercase letters, digits and dashes (`tags_name_format`).
#[derive(Debug, Insertable)]
#[diesel(table_name = tags)]
pub struct NewTag<'a> {
    /// Lowercase letters, digits and dashes.
    pub name: &'a str,
}

/// A tag name as `tags_name_format` allows it: 1 to 50 lowercase letters, digits and
/// dashes, not starting with a dash. Checked before any SQL, so a name PostgreSQL would
/// refuse with an error of its own (a NUL character) is refused like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagName(String);

impl TagName {
    /// Checks the format; outside it is `Error::Invalid { constraint: "tags_name_format" }`.
    pub fn parse(raw: &str) -> Result<TagName> {
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let mut chars = raw.chars();
        // Every character is ASCII once these pass, so bytes count characters.
        let fits = chars.next().is_some_and(plain)
            && chars.all(|c| plain(c) || c == '-')
            && raw.len() <= 50;
        match fits {
            true => Ok(TagName(raw.to_owned())),
            // The name itself is not repeated: it may be anything a client sent.
            false => Err(Error::invalid(
                "tags_name_format",
                "a tag name is 1 to 50 lowercase letters, digits and dashes, \
                 not starting with a dash",
            )),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A row of `task_tags`: one tag on one task.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = task_tags, primary_key(task_id, tag_id))]
#[diesel(belongs_to(Task), belongs_to(Tag), check_for_backend(Pg))]
pub struct TaskTag {
    /// The tagged task.
    pub task_id: i64,
    /// The tag.
    pub tag_id: i64,
    /// When the tag was attached.
    pub tagged_at: DateTime<Utc>,
}

impl Tag {
    /// Inserts a tag; a taken name is `Error::Conflict`.
    pub async fn create(mut conn: &AsyncPgConnection, new: &NewTag<'_>) -> Result<Tag> {
        Ok(diesel::insert_into(tags::table)
            .values(new)
            .returning(Tag::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// The tag with this name, created if missing, in one statement (upsert).
    pub async fn find_or_create(mut conn: &AsyncPgConnection, name: &str) -> Result<Tag> {
        Ok(diesel::insert_into(tags::table)
            .values(tags::name.eq(name))
            // A no-op update, so RETURNING yields the existing row too.
            .on_conflict(tags::name)
            .do_update()
            .set(tags::name.eq(excluded(tags::name)))
            .returning(Tag::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Renames a tag.
    pub async fn rename(mut conn: &AsyncPgConnection, id: i64, name: &str) -> Result<Tag> {
        Ok(diesel::update(tags::table.find(id))
            .set(tags::name.eq(name))
            .returning(Tag::as_returning())
            .get_committed(&mut conn)
            .await?)
    }

    /// Deletes a tag and its links to tasks.
    pub async fn delete(mut conn: &AsyncPgConnection, id: i64) -> Result<()> {
        match diesel::delete(tags::table.find(id))
            .execute(&mut conn)
            .await?
        {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// Puts the tag on the task; doing it twice is harmless.
    pub async fn attach(mut conn: &AsyncPgConnection, task_id: i64, tag_id: i64) -> Result<()> {
        diesel::insert_into(task_tags::table)
            .values((task_tags::task_id.eq(task_id), task_tags::tag_id.eq(tag_id)))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes the tag off the task.
    pub async fn detach(mut conn: &AsyncPgConnection, task_id: i64, tag_id: i64) -> Result<()> {
        let deleted = diesel::delete(task_tags::table.find((task_id, tag_id)))
            .execute(&mut conn)
            .await?;
        match deleted {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// Puts the tag named `name` on a live task, creating the tag if missing, and returns
    /// the task's tags by name: one transaction. Doing it twice is harmless; a task that
    /// does not exist or is soft-deleted is `Error::NotFound`.
    pub async fn tag_task(
        conn: &mut AsyncPgConnection,
        task_id: i64,
        name: &TagName,
    ) -> Result<Vec<Tag>> {
        conn.transaction::<_, Error, _>(async |conn| {
            let task = Task::find(conn, task_id).await?;
            let tag = Tag::find_or_create(conn, name.as_str()).await?;
            Tag::attach(conn, task.id, tag.id).await?;
            Tag::of_task(conn, &task).await
        })
        .await
    }

    /// Takes the tag named `name` off the task in one statement; `Error::NotFound` when
    /// it was not on it (or no such tag exists).
    pub async fn untag_task(
        mut conn: &AsyncPgConnection,
        task_id: i64,
        name: &TagName,
    ) -> Result<()> {
        let tag = tags::table
            .filter(tags::name.eq(name.as_str()))
            .select(tags::id);
        let link = task_tags::table
            .filter(task_tags::task_id.eq(task_id))
            .filter(task_tags::tag_id.eq_any(tag));
        match diesel::delete(link).execute(&mut conn).await? {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    /// The tags of a task, by name, through the link table.
    pub async fn of_task(mut conn: &AsyncPgConnection, task: &Task) -> Result<Vec<Tag>> {
        Ok(TaskTag::belonging_to(task)
            .inner_join(tags::table)
            .order(tags::name)
            .select(Tag::as_select())
            .load(&mut conn)
            .await?)
    }
}
