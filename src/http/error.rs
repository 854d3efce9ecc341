//! `app::Error` and axum's rejections as HTTP answers, in one place. The body is always
//! `{"error": "...", "constraint": "..."}`, the constraint only where one refused the request.
//! A database's own message never leaves the server: a 500 is logged (inside the request's
//! span, so with its request id) and answered without details.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Serialize;

use crate::Error;

/// An answer other than success: a status and what to tell the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// The JSON of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraint: Option<String>,
}

impl ApiError {
    /// An answer with this status and message, naming no constraint.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let body = ErrorBody {
            error: message.into(),
            constraint: None,
        };
        ApiError { status, body }
    }

    fn naming(status: StatusCode, message: impl Into<String>, constraint: String) -> ApiError {
        let mut error = ApiError::new(status, message);
        error.body.constraint = Some(constraint);
        error
    }

    /// A 500: what went wrong is logged, never sent.
    fn internal(err: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        match err {
            Error::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not found"),
            Error::Conflict { constraint } => ApiError::naming(
                StatusCode::CONFLICT,
                "conflicts with an existing row",
                constraint,
            ),
            // Our validation explains itself; PostgreSQL's own message names tables and
            // columns ("new row for relation ... violates check constraint ..."): the
            // constraint's name says enough.
            Error::Invalid {
                constraint,
                message,
            } => {
                let message = match message.contains("violates") {
                    true => "invalid value".to_owned(),
                    false => message,
                };
                ApiError::naming(StatusCode::UNPROCESSABLE_ENTITY, message, constraint)
            }
            // Only inserts and updates reach a foreign key here: the row referred to is
            // missing.
            Error::ForeignKey { constraint } => ApiError::naming(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refers to a row that does not exist",
                constraint,
            ),
            // A failover, a restart: the client may try again (Retry-After, below).
            Error::Unavailable { .. } => {
                tracing::warn!(error = %err, "the database was unavailable for a request");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
            Error::PoolTimeout | Error::Pool(_) | Error::Connection { .. } => {
                tracing::warn!(error = %err, "no database connection for a request");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
            Error::Database(ref e) if interrupted(e) => {
                tracing::warn!(error = %err, "the database ended or cancelled the request's statement");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
            other => ApiError::internal(&other),
        }
    }
}

/// Whether the server, not the request, ended the statement: its session closed or was
/// terminated (57P01, `pg_terminate_backend`, a restart), or the statement was cancelled
/// (57014: a cancel request, `statement_timeout`). Worth a retry, so 503. Read from the
/// text: diesel-async keeps the SQLSTATE to itself.
fn interrupted(err: &DieselError) -> bool {
    let DieselError::DatabaseError(kind, info) = err else {
        return false;
    };
    let message = info.message();
    matches!(kind, DatabaseErrorKind::ClosedConnection)
        || message.starts_with("terminating connection due to")
        || message.starts_with("canceling statement due to")
        || message.contains("connection closed")
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        // axum's statuses: 400 for a body that is not JSON, 422 for JSON of the wrong
        // shape, 415 without `content-type: application/json`, 413 past the body limit.
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        // 413 past the body limit, 400 for a body that broke off.
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        // A query string that names a number but holds none (`?limit=ten`) is input of the
        // wrong type, as in a body: 422, where axum says 400.
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        // Every 503 is passing (a busy pool, a timeout, a restart): try again in a second.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let headers = response.headers_mut();
            headers.insert(axum::http::header::RETRY_AFTER, 1.into());
        }
        response
    }
}

/// `Json<T>` whose rejections answer in the API's error shape, and which takes a JSON
/// object only: serde would also fill a struct from an array of its fields in order
/// (`[1, "title"]`), a shape no client should come to rely on.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            let message = "expected a request with `content-type: application/json`";
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
        }
        let bytes = Bytes::from_request(request, state).await?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            let message = "the body must be a JSON object, not an array";
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(Body(value))
    }
}

/// `application/json`, or a `+json` type, as axum's `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let kind = headers.get(axum::http::header::CONTENT_TYPE);
    let Some(kind) = kind.and_then(|k| k.to_str().ok()) else {
        return false;
    };
    let essence = kind
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `{id}` of a path, as a number; anything else answers in the API's error shape (400).
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<i64>::from_request_parts(parts, state).await?;
        Ok(Id(id))
    }
}

/// The segments of a path as a tuple (`/teams/{id}/members/{user_id}` as `(i64, i64)`);
/// anything that does not parse answers in the API's error shape (400), as [`Id`] does.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Segments(value))
    }
}

/// `Query<T>` whose rejections answer in the API's error shape (422).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

/// The answers no handler wrote (413 past the body limit, 503 past the request timeout,
/// 405 for a method a path lacks) in the API's error shape too.
pub(super) async fn json_errors<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = response.status();
    let json = (response.headers().get(axum::http::header::CONTENT_TYPE))
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response.into_response();
    }
    let reason = status.canonical_reason().unwrap_or("error");
    ApiError::new(status, reason.to_lowercase()).into_response()
}

#[cfg(test)]
mod tests {
    use super::{ApiError, DatabaseErrorKind, DieselError, StatusCode};
    use crate::Error;

    fn answer(err: Error) -> (StatusCode, String) {
        let api = ApiError::from(err);
        (api.status, serde_json::to_string(&api.body).unwrap())
    }

    #[test]
    fn errors_become_statuses_and_never_leak_a_server_message() {
        let ours = Error::invalid("tasks_priority_range", "priority is 1 to 5, not 9");
        let (status, body) = answer(ours);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains("not 9") && body.contains("tasks_priority_range"),
            "{body}"
        );
        let theirs = Error::invalid(
            "users_display_name_not_blank",
            "new row for relation \"users\" violates check constraint \"users_display_name_not_blank\"",
        );
        let (_, body) = answer(theirs);
        assert!(!body.contains("relation"), "{body}");
        let (status, body) = answer(Error::Backup("pg_dump at /srv/secret failed".into()));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, r#"{"error":"internal error"}"#);
        assert_eq!(
            answer(Error::PoolTimeout).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(answer(Error::NotFound).0, StatusCode::NOT_FOUND);
        for message in [
            "terminating connection due to administrator command",
            "canceling statement due to user request",
        ] {
            let kind = DatabaseErrorKind::Unknown;
            let err = DieselError::DatabaseError(kind, Box::new(message.to_owned()));
            assert_eq!(
                answer(Error::Database(err)).0,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        let failover = Error::Unavailable {
            reason: "the server refused a write, being read-only (a standby?)".into(),
        };
        let api = ApiError::from(failover);
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        let response = axum::response::IntoResponse::into_response(api);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let taken = Error::Conflict {
            constraint: "users_email_key".into(),
        };
        assert_eq!(answer(taken).0, StatusCode::CONFLICT);
    }
}
