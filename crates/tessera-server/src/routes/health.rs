//! Probes. `/livez`: the process serves (touches nothing). `/readyz`: this
//! node should get traffic: not shutting down, and the session store, the
//! user database and the feeds its memory relies on are usable. `/healthz`
//! (the first probe, kept): the databases and Redis answer a query.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};

use super::responses::{HealthResponse, NotReadyResponse, ReadyChecks, ReadyResponse};
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

/// `GET /livez`: 200 while the process serves requests at all. Nothing is
/// asked of any store: a node whose Redis is down is alive (restarting it
/// would not help), only not ready.
pub async fn livez() -> Success<HealthResponse> {
    Success(HealthResponse { status: "ok" })
}

/// A check that takes longer than this counts as failed, so that a hung
/// database cannot hang the probe (a load balancer's probe timeout is
/// usually a few seconds).
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when this node should get traffic; 503 with
/// `Retry-After` from the moment graceful shutdown begins (before the
/// listener closes, so a load balancer drains the node) and while any
/// dependency is unusable. Checks run concurrently:
///
/// - store: with Redis and a near cache whose lease is valid, nothing is
///   asked (the subscription's heartbeat answered within the lease) unless
///   another check failed; otherwise a `PING` (Redis) or `SELECT 1` (the
///   SQLite file);
/// - users: `SELECT 1` on the user database;
/// - invalidation (near cache) and revocations (token mode, or opaque
///   sessions in Redis): their leases, no round trip.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = &state.readiness;
    if readiness.is_draining() {
        return not_ready("draining", None);
    }
    // The feeds first: a near cache whose lease holds proves Redis answers
    // without another round trip. Only when everything else is fine, though:
    // a node about to answer 503 asks the store itself, so that the checks
    // say which part is down (the two feeds notice a dead server each on its
    // own connection, a moment apart).
    let users = within_deadline(async { state.users.ping().await.is_ok() });
    let (users, invalidation, revocations) =
        tokio::join!(users, readiness.invalidation_feed(), readiness.revocation_feed());
    let others_ready = users && revocations != Some(false);
    let store = (invalidation == Some(true) && others_ready)
        || within_deadline(async {
            match &state.redis {
                None => sqlx::query("SELECT 1").execute(&state.pool).await.is_ok(),
                Some(conn) => {
                    conn.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await }).await.is_ok()
                }
            }
        })
        .await;
    let word = |up: bool| if up { "ok" } else { "down" };
    let checks = ReadyChecks {
        invalidation: invalidation.map(word),
        revocations: revocations.map(word),
        store: Some(word(store)),
        users: Some(word(users)),
    };
    if store && others_ready && invalidation != Some(false) {
        Success(ReadyResponse { checks, status: "ready" }).into_response()
    } else {
        tracing::warn!(?checks, "not ready");
        not_ready("unavailable", Some(checks))
    }
}

async fn within_deadline(check: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(CHECK_DEADLINE, check).await.unwrap_or(false)
}

/// 503 in the envelope's failure shape, with why and `Retry-After: 1`.
fn not_ready(status: &'static str, checks: Option<ReadyChecks>) -> Response {
    let code = ErrorCode::SESSION_STORE_UNAVAILABLE;
    let data =
        NotReadyResponse { checks, err_code: code.code, err_msg: code.message_in(crate::lang::current()), status };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(NotReadyBody { status: "fail", data })).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The envelope around [`NotReadyResponse`] (`status` first, as every
/// envelope).
#[derive(serde::Serialize)]
struct NotReadyBody {
    status: &'static str,
    data: NotReadyResponse,
}

/// `GET /`'s JSON answer, the envelope around
/// [`AboutResponse`](super::responses::AboutResponse), written
/// once: it never changes (a test checks it against the serializer's).
const ABOUT: &str = concat!(
    r#"{"status":"success","data":{"docs":"/README.md","service":"tessera","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}"#
);

/// `GET /`: what this is. Touches nothing, so it doubles as the benchmarks'
/// no-session ceiling (a body about the size of `/user/me`'s). A browser
/// (`Accept: text/html`) gets Tessera's home page instead; both answers say
/// `Vary: Accept`. The request is borrowed whole: a `HeaderMap` extractor
/// would copy every header.
pub async fn about(request: Request) -> Response {
    if crate::pages::wants_html(request.headers()) {
        return crate::pages::home(request.headers());
    }
    static LENGTH: OnceLock<HeaderValue> = OnceLock::new();
    let mut response = Response::new(Body::from(Bytes::from_static(ABOUT.as_bytes())));
    let headers = response.headers_mut();
    headers.reserve(crate::envelope::ANSWER_HEADERS);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Set here, the router need not write the number for every answer.
    headers.insert(header::CONTENT_LENGTH, LENGTH.get_or_init(|| HeaderValue::from(ABOUT.len())).clone());
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

#[cfg(test)]
mod tests {
    use super::super::responses::AboutResponse;
    use super::*;

    #[tokio::test]
    async fn the_written_about_answer_is_the_serializers() {
        let about = AboutResponse { docs: "/README.md", service: "tessera", version: env!("CARGO_PKG_VERSION") };
        let serialized = Success(about).into_response();
        let bytes = axum::body::to_bytes(serialized.into_body(), 1 << 12).await.unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), ABOUT);
    }
}
