//! `POST /teams`, `GET /teams/{id}` (with its members), `POST /teams/{id}/members`,
//! `DELETE /teams/{id}/members/{user_id}` and `GET /teams/{id}/tasks` (a keyset page, each
//! task with its tags).
//!
//! An unknown team or user in `POST /teams/{id}/members` is 422 naming the foreign key
//! (`team_members_team_id_fkey`, `team_members_user_id_fkey`), as an unknown owner is in
//! `POST /tasks`: the one INSERT finds out, with no lookup before it to race.

use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Body, Id, Params, Segments};
use super::input::{PageParams, Text};
use super::tasks::TaskView;
use super::{AppState, DbConn, ReadConn};
use crate::loaders;
use crate::models::{NewTeam, Page, Role, Tag, Task, Team, TeamMember};

/// The routes of this file.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/teams", post(create))
        .route("/teams/{id}", get(find))
        .route("/teams/{id}/members", post(add_member))
        .route("/teams/{id}/members/{user_id}", delete(remove_member))
        .route("/teams/{id}/tasks", get(tasks))
}

/// A team as the API shows it: its row and its members, each
/// `{"team_id","user_id","role","joined_at"}` as `POST /teams/{id}/members` answers, by
/// join date.
#[derive(Serialize)]
struct TeamView {
    #[serde(flatten)]
    team: Team,
    members: Vec<TeamMember>,
}

/// The body of `POST /teams`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    name: Text,
}

/// A new team has no members yet; a taken name is 409 (`teams_name_key`), a blank or long
/// one 422 (`teams_name_not_blank`).
async fn create(
    conn: DbConn,
    Body(body): Body<CreateTeam>,
) -> Result<(StatusCode, Json<TeamView>), ApiError> {
    let new = NewTeam { name: &body.name.0 };
    let team = Team::create(&conn, &new).await?;
    let members = Vec::new();
    Ok((StatusCode::CREATED, Json(TeamView { team, members })))
}

/// The team and its members: two statements sent together (pipelined), one round trip.
async fn find(Id(id): Id, conn: ReadConn) -> Result<Json<TeamView>, ApiError> {
    let (team, members) = tokio::try_join!(Team::find(&conn, id), Team::members(&conn, id))?;
    let members = members.into_iter().map(|(_, member)| member).collect();
    Ok(Json(TeamView { team, members }))
}

/// The body of `POST /teams/{id}/members`; without `role`, the column's default, `member`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    user_id: i64,
    role: Option<Text>,
}

/// Twice is 409 (`team_members_pkey`); an unknown role is 422 (`team_members_role_check`).
async fn add_member(
    Id(id): Id,
    conn: DbConn,
    Body(body): Body<AddMember>,
) -> Result<(StatusCode, Json<TeamMember>), ApiError> {
    let role = body.role.map(|r| Role::parse(&r.0)).transpose()?;
    let member = Team::add_member(&conn, id, body.user_id, role.unwrap_or(Role::Member)).await?;
    Ok((StatusCode::CREATED, Json(member)))
}

/// 404 when the user was not a member of the team.
async fn remove_member(
    Segments((id, user_id)): Segments<(i64, i64)>,
    conn: DbConn,
) -> Result<StatusCode, ApiError> {
    Team::remove_member(&conn, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A task with its tags' names, by name.
#[derive(Serialize)]
struct TaggedTaskView {
    #[serde(flatten)]
    task: TaskView,
    tags: Vec<String>,
}

impl From<(Task, Vec<Tag>)> for TaggedTaskView {
    fn from((task, tags): (Task, Vec<Tag>)) -> TaggedTaskView {
        let tags = tags.into_iter().map(|tag| tag.name).collect();
        let task = task.into();
        TaggedTaskView { task, tags }
    }
}

/// A page of the team's live tasks with their tags: two statements whatever the page's
/// size (the page, then the tags of all its tasks); an unknown team has an empty page,
/// as an unknown user has in `GET /users/{id}/tasks`.
async fn tasks(
    Id(id): Id,
    Params(params): Params<PageParams>,
    conn: ReadConn,
) -> Result<Json<Page<TaggedTaskView>>, ApiError> {
    let request = params.request()?;
    let page = Task::list_for_team(&conn, id, request).await?;
    let items = loaders::with_tags(&conn, page.items).await?;
    Ok(Json(Page {
        items: items.into_iter().map(TaggedTaskView::from).collect(),
        next: page.next,
    }))
}
