//! Liveness and readiness in one: the database answers or we are not ready.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera::{ErrorCode, Success};

use super::AppState;

/// `GET /healthz`
pub async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => Success(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            ErrorCode::SESSION_STORE_UNAVAILABLE.into_response()
        }
    }
}
