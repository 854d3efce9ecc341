//! `PUT /tasks/{id}/tags/{name}` (tag a task, creating the tag; idempotent) and
//! `DELETE /tasks/{id}/tags/{name}`.
//!
//! The name is checked as `tags_name_format` allows it before any SQL: whatever a path
//! holds (a NUL, `../` percent-encoded, 10 KB, bytes that are not UTF-8) is a 422 naming
//! that constraint, never a statement PostgreSQL refuses with an error of its own.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::put;
use axum::{Json, Router};
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, DbConn};
use crate::models::{Tag, TagName};

/// The routes of this file.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/tasks/{id}/tags/{name}", put(tag).delete(untag))
}

/// `/tasks/{id}/tags/{name}`: the task's id and the tag's name, checked.
struct TagPath(i64, TagName);

impl<S: Send + Sync> FromRequestParts<S> for TagPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(i64, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, name))) => Ok(TagPath(id, TagName::parse(&name)?)),
            // A name whose percent-encoding is not UTF-8 is a name out of format, not a
            // malformed path: the model's refusal, as for any other (the empty name is one).
            Err(PathRejection::FailedToDeserializePathParams(e)) if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { key } if key == "name") => {
                Err(TagName::parse("").unwrap_err().into())
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// What `PUT` answers: the task's tags after it, by name.
#[derive(Serialize)]
struct TagsView {
    tags: Vec<String>,
}

/// 200 with the task's tags, the same however often it is sent; 404 for a task that does
/// not exist or is soft-deleted. Three statements in one transaction.
async fn tag(TagPath(id, name): TagPath, mut conn: DbConn) -> Result<Json<TagsView>, ApiError> {
    let tags = Tag::tag_task(&mut conn, id, &name).await?;
    let tags = tags.into_iter().map(|tag| tag.name).collect();
    Ok(Json(TagsView { tags }))
}

/// 204; 404 when the task did not carry the tag.
async fn untag(TagPath(id, name): TagPath, conn: DbConn) -> Result<StatusCode, ApiError> {
    Tag::untag_task(&conn, id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
