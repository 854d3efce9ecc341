//! `POST /tasks`, and `GET`, `PATCH`, `DELETE /tasks/{id}`.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Body, Id};
use super::input::{Day, Text, not_null, present};
use super::{AppState, DbConn, ReadConn};
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
    title: Text,
    priority: Option<i64>,
    description: Option<Text>,
    due_date: Option<Day>,
}

async fn create(
    conn: DbConn,
    Body(body): Body<CreateTask>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let title = Title::parse(&body.title.0)?;
    let mut new = NewTask::new(body.owner_id, &title);
    new.priority = body.priority.map(Priority::new).transpose()?;
    new.description = body.description.as_ref().map(|text| text.0.as_str());
    new.due_date = body.due_date.map(|day| day.0);
    let task = Task::create(&conn, &new).await?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

async fn find(Id(id): Id, conn: ReadConn) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(Task::find(&conn, id).await?.into()))
}

/// The body of `PATCH /tasks/{id}`: a missing field is left alone; `null` clears
/// `description` or `due_date`, and is refused for the others, which cannot be cleared.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeTask {
    #[serde(default, deserialize_with = "not_null")]
    title: Option<Text>,
    #[serde(default, deserialize_with = "not_null")]
    status: Option<Status>,
    #[serde(default, deserialize_with = "not_null")]
    priority: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<Text>>,
    #[serde(default, deserialize_with = "present")]
    due_date: Option<Option<Day>>,
}

/// The labels of `task_status`, so an unknown one is refused as the wrong shape (422).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Todo,
    InProgress,
    Done,
}

async fn update(
    Id(id): Id,
    conn: DbConn,
    Body(body): Body<ChangeTask>,
) -> Result<Json<TaskView>, ApiError> {
    let changes = TaskChanges {
        title: body.title.map(|t| Title::parse(&t.0)).transpose()?,
        status: body.status.map(|status| match status {
            Status::Todo => TaskStatus::Todo,
            Status::InProgress => TaskStatus::InProgress,
            Status::Done => TaskStatus::Done,
        }),
        priority: body.priority.map(Priority::new).transpose()?,
        description: body.description.map(|text| text.map(|t| t.0)),
        due_date: body.due_date.map(|day| day.map(|d| d.0)),
        ..TaskChanges::default()
    };
    Ok(Json(Task::update(&conn, id, &changes).await?.into()))
}

/// A soft delete: the task is hidden, `Task::restore` brings it back.
async fn soft_delete(Id(id): Id, conn: DbConn) -> Result<StatusCode, ApiError> {
    Task::soft_delete(&conn, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
