//! `GET /healthz`: the process answers. `GET /readyz`: it can serve, because the database
//! answers and its schema is at this build's head, the check the service makes as it
//! starts. What an orchestrator polls before it sends traffic.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::db;

/// The longest `/readyz` takes: a frozen database is "not ready", never a hung probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, not_ready(&state)).await {
        Ok(None) => Ok(Json(json!({"status": "ready"}))),
        Ok(Some(reason)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)),
        Err(_) => {
            let secs = READY_TIMEOUT.as_secs();
            tracing::warn!("readiness: the database gave no answer within {secs}s");
            let reason = format!("the database gave no answer within {secs}s");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
    }
}

/// Why the service cannot serve, or `None`. The reasons name migrations, never a host or
/// a server's message: those go to the log.
async fn not_ready(state: &AppState) -> Option<String> {
    // The pool's way in (through a pooler, if any) and the server itself, side by side.
    let pooled = async {
        use diesel_async::SimpleAsyncConnection;
        let mut conn = db::checkout(&state.pool).await?;
        conn.batch_execute("SELECT 1").await?;
        crate::Result::Ok(())
    };
    let schema = &state.schema;
    let (pooled, status) = tokio::join!(pooled, schema.migrator.status(&schema.direct));
    let unreachable = |err: crate::Error| {
        tracing::warn!(error = %err, "readiness: the database does not answer");
        Some("the database does not answer".to_owned())
    };
    if let Err(err) = pooled {
        return unreachable(err);
    }
    let status = match status {
        Ok(status) => status,
        Err(err) => return unreachable(err),
    };
    if let Some(folder) = status.dirty.first() {
        return Some(format!("migration {folder} failed part-way"));
    }
    if !status.pending.is_empty() {
        let pending: Vec<&str> = status.pending.iter().map(|m| m.folder.as_str()).collect();
        return Some(format!(
            "the database is behind this build: {} pending ({})",
            pending.len(),
            pending.join(", ")
        ));
    }
    None
}
