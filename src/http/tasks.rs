//! `POST /tasks`, and `GET`, `PATCH`, `DELETE /tasks/{id}`.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::{ApiError, Body, Id};
use super::{AppState, DbConn};
use crate::models::{NewTask, Priority, Task, TaskChanges, TaskStatus, Title};

/// The routes of this file.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", post(create))
        .route("/tasks/{id}", get(find).patch(update).delete(soft_delete))
}

/// A task as the API shows it: the row without what only the server needs (its parent,
/// its deletion time: a deleted task is not shown at all).
#[derive(Debug, Serialize)]
pub(super) struct TaskView {
    id: i64,
    owner_id: i64,
    team_id: Option<i64>,
    title: Title,
    description: Option<String>,
    status: TaskStatus,
    priority: Priority,
    due_date: Option<NaiveDate>,
    checklist: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Task> for TaskView {
    fn from(task: Task) -> TaskView {
        TaskView {
            id: task.id,
            owner_id: task.owner_id,
            team_id: task.team_id,
            title: task.title,
            description: task.description,
            status: task.status,
            priority: task.priority,
            due_date: task.due_date,
            checklist: task.checklist,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

/// The body of `POST /tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    owner_id: i64,
    title: String,
    priority: Option<i64>,
    description: Option<String>,
    due_date: Option<NaiveDate>,
}

async fn create(
    conn: DbConn,
    Body(body): Body<CreateTask>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let title = Title::parse(&body.title)?;
    let mut new = NewTask::new(body.owner_id, &title);
    new.priority = body.priority.map(Priority::new).transpose()?;
    new.description = body.description.as_deref();
    new.due_date = body.due_date;
    let task = Task::create(&conn, &new).await?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

async fn find(Id(id): Id, conn: DbConn) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(Task::find(&conn, id).await?.into()))
}

/// The body of `PATCH /tasks/{id}`: a missing field is left alone; `null` clears
/// `description` or `due_date`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeTask {
    title: Option<String>,
    status: Option<Status>,
    priority: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    due_date: Option<Option<NaiveDate>>,
}

/// The labels of `task_status`, so an unknown one is refused as the wrong shape (422).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Todo,
    InProgress,
    Done,
}

/// A field that is present, `null` included: `Some(None)` for `null`, while an absent
/// field keeps the `default` (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    field: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(field).map(Some)
}

async fn update(
    Id(id): Id,
    conn: DbConn,
    Body(body): Body<ChangeTask>,
) -> Result<Json<TaskView>, ApiError> {
    let changes = TaskChanges {
        title: body.title.as_deref().map(Title::parse).transpose()?,
        status: body.status.map(|status| match status {
            Status::Todo => TaskStatus::Todo,
            Status::InProgress => TaskStatus::InProgress,
            Status::Done => TaskStatus::Done,
        }),
        priority: body.priority.map(Priority::new).transpose()?,
        description: body.description,
        due_date: body.due_date,
        ..TaskChanges::default()
    };
    Ok(Json(Task::update(&conn, id, &changes).await?.into()))
}

/// A soft delete: the task is hidden, `Task::restore` brings it back.
async fn soft_delete(Id(id): Id, conn: DbConn) -> Result<StatusCode, ApiError> {
    Task::soft_delete(&conn, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
