//! Loading parents with their children without the N+1 problem (SQLAlchemy's selectinload /
//! joinedload), next to the naive version for comparison. Query counts are in the docs of
//! each function and asserted in `tests/app/loaders.rs`.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::Result;
use crate::models::{Tag, Task, TaskTag, User};
use crate::schema::{tags, task_tags, tasks, users};

/// A user with their live tasks, each with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct UserTasks {
    /// The user.
    pub user: User,
    /// The user's live tasks, each with its tags, in id order.
    pub tasks: Vec<(Task, Vec<Tag>)>,
}

/// The N+1 way: one query for the users, then one per user for tasks and one per task for
/// tags. Shown for comparison (and the benchmark); do not write this.
pub async fn naive(mut conn: &AsyncPgConnection, user_ids: &[i64]) -> Result<Vec<UserTasks>> {
    let users: Vec<User> = users::table
        .filter(users::id.eq_any(user_ids))
        .order(users::id)
        .select(User::as_select())
        .load(&mut conn)
        .await?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let mut with_tags = Vec::new();
        for task in Task::owned_by(conn, &user).await? {
            let tags = Tag::of_task(conn, &task).await?;
            with_tags.push((task, tags));
        }
        out.push(UserTasks {
            user,
            tasks: with_tags,
        });
    }
    Ok(out)
}

/// selectinload: three queries whatever the number of users (the users, their tasks, and
/// the tags of those tasks through the link table), each filtered by the ids alone, so all
/// three are sent at once on the one connection (pipelined): one round trip, not three.
/// `belonging_to` + `grouped_by` fit them together.
pub async fn eager(conn: &AsyncPgConnection, user_ids: &[i64]) -> Result<Vec<UserTasks>> {
    let (mut c1, mut c2, mut c3) = (conn, conn, conn);
    let users = users::table
        .filter(users::id.eq_any(user_ids))
        .order(users::id)
        .select(User::as_select())
        .load::<User>(&mut c1);
    let tasks = tasks::table
        .filter(tasks::owner_id.eq_any(user_ids))
        .filter(Task::is_live())
        .order(tasks::id)
        .select(Task::as_select())
        .load::<Task>(&mut c2);
    let links = task_tags::table
        .inner_join(tags::table)
        .inner_join(tasks::table)
        .filter(tasks::owner_id.eq_any(user_ids))
        .filter(Task::is_live())
        .order((task_tags::task_id, tags::name))
        .select((TaskTag::as_select(), Tag::as_select()))
        .load::<(TaskTag, Tag)>(&mut c3);
    let (users, tasks, links) = tokio::try_join!(users, tasks, links)?;
    let tags_per_task = links.grouped_by(&tasks);
    let tasks_with_tags: Vec<(Task, Vec<Tag>)> = tasks
        .into_iter()
        .zip(tags_per_task)
        .map(|(task, links)| (task, links.into_iter().map(|(_, tag)| tag).collect()))
        .collect();
    let per_user = tasks_with_tags.grouped_by(&users);
    Ok(users
        .into_iter()
        .zip(per_user)
        .map(|(user, tasks)| UserTasks { user, tasks })
        .collect())
}

/// The tags of each task, by name (selectinload for tasks already loaded, a page say): one
/// query through the link table whatever the number of tasks, none for no tasks, fitted
/// to them by `belonging_to` + `grouped_by`. The tasks keep their order.
pub async fn with_tags(
    mut conn: &AsyncPgConnection,
    tasks: Vec<Task>,
) -> Result<Vec<(Task, Vec<Tag>)>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let links = TaskTag::belonging_to(&tasks)
        .inner_join(tags::table)
        .order((task_tags::task_id, tags::name))
        .select((TaskTag::as_select(), Tag::as_select()))
        .load::<(TaskTag, Tag)>(&mut conn)
        .await?;
    let per_task = links.grouped_by(&tasks);
    Ok(tasks
        .into_iter()
        .zip(per_task)
        .map(|(task, links)| (task, links.into_iter().map(|(_, tag)| tag).collect()))
        .collect())
}

/// joinedload: one query, users LEFT JOIN tasks LEFT JOIN tags, folded in Rust. Fewer round
/// trips, but each user row repeats once per task and tag: better for few children per parent.
pub async fn joined(mut conn: &AsyncPgConnection, user_ids: &[i64]) -> Result<Vec<UserTasks>> {
    let rows: Vec<(User, Option<Task>, Option<Tag>)> = users::table
        .left_join(tasks::table.on(tasks::owner_id.eq(users::id).and(Task::is_live())))
        .left_join(task_tags::table.on(task_tags::task_id.eq(tasks::id)))
        .left_join(tags::table.on(tags::id.eq(task_tags::tag_id)))
        .filter(users::id.eq_any(user_ids))
        .order((users::id, tasks::id, tags::name))
        .select((
            User::as_select(),
            Option::<Task>::as_select(),
            Option::<Tag>::as_select(),
        ))
        .load(&mut conn)
        .await?;
    let mut out: Vec<UserTasks> = Vec::new();
    let mut task_index: HashMap<i64, usize> = HashMap::new();
    for (user, task, tag) in rows {
        if out.last().is_none_or(|last| last.user.id != user.id) {
            out.push(UserTasks {
                user,
                tasks: Vec::new(),
            });
            task_index.clear();
        }
        let current = out.last_mut().expect("pushed above");
        let Some(task) = task else { continue };
        let slot = *task_index.entry(task.id).or_insert_with(|| {
            current.tasks.push((task, Vec::new()));
            current.tasks.len() - 1
        });
        if let Some(tag) = tag {
            current.tasks[slot].1.push(tag);
        }
    }
    Ok(out)
}
