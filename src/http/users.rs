//! `POST /users`, `GET /users/{id}` and `GET /users/{id}/tasks` (a keyset page).

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiError, Body, Id, Params};
use super::input::{PageParams, Text};
use super::tasks::TaskView;
use super::{AppState, DbConn, ReadConn};
use crate::models::{Email, NewUser, Page, Task, User};

/// The routes of this file.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(find))
        .route("/users/{id}/tasks", get(tasks))
}

/// The body of `POST /users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: Text,
    display_name: Text,
}

async fn create(
    conn: DbConn,
    Body(body): Body<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let email = Email::parse(&body.email.0)?;
    let new = NewUser {
        email: &email,
        display_name: &body.display_name.0,
    };
    Ok((StatusCode::CREATED, Json(User::create(&conn, &new).await?)))
}

async fn find(Id(id): Id, conn: ReadConn) -> Result<Json<User>, ApiError> {
    Ok(Json(User::find(&conn, id).await?))
}

/// A page of the user's live tasks; an unknown user has an empty one, as in the model.
async fn tasks(
    Id(id): Id,
    Params(params): Params<PageParams>,
    conn: ReadConn,
) -> Result<Json<Page<TaskView>>, ApiError> {
    let request = params.request()?;
    let page = Task::list_for_owner(&conn, id, request).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(TaskView::from).collect(),
        next: page.next,
    }))
}
