//! Liveness and readiness in one: the database answers or we are not ready.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::responses::{AboutResponse, HealthResponse};
use super::AppState;
use crate::envelope::{ErrorCode, Success};

/// `GET /healthz`: 200 when the database (and Redis, if configured)
/// answer, else 503 so that a load balancer routes around this node.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let local = sqlx::query("SELECT 1").execute(&state.pool).await.map(|_| ()).map_err(|e| e.to_string());
    let database = local.and(state.users.ping().await.map_err(|e| e.to_string()));
    let redis = match &state.redis {
        None => Ok(()),
        Some(conn) => conn
            .run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
            .map_err(|e| e.to_string()),
    };
    match database.and(redis) {
        Ok(()) => Success(HealthResponse { status: "ok" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            ErrorCode::SESSION_STORE_UNAVAILABLE.into_response()
        }
    }
}

/// `GET /`: what this is. Touches nothing, so it doubles as the benchmarks'
/// no-session ceiling (a body about the size of `/user/me`'s).
pub async fn about() -> Success<AboutResponse> {
    Success(AboutResponse { docs: "/README.md", service: "tessera", version: env!("CARGO_PKG_VERSION") })
}
