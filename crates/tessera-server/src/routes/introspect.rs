//! `POST /oauth/introspect` (RFC 7662), for services that cannot verify
//! tokens themselves: is this access token (or opaque session token) active,
//! and whose is it?
//!
//! The caller authenticates with the configured secret as the HTTP Basic
//! password (any client id) or as `client_secret`. Answers are RFC 7662
//! JSON, not the envelope, and never cached.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tessera::signed::Rejection;
use tessera::SessionToken;

use crate::envelope::{ErrorCode, Failure};

use super::params::Params;
use super::AppState;

/// Introspects `token`.
pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    let Some(secret) = &state.introspection_secret else {
        return crate::error::codes::NOT_FOUND.into_response();
    };
    if !authenticated(secret, &headers, &params) {
        let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tessera\""));
        return response;
    }
    let Some(token) = params.raw("token").filter(|t| !t.is_empty()) else {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"}));
    };
    let now = state.clock.now();
    if let Some(tokens) = &state.tokens {
        match tokens.verify(token, now) {
            Ok(claims) => {
                let mut body = serde_json::to_value(&*claims).expect("claims serialize");
                body["active"] = json!(true);
                body["token_type"] = json!("access_token");
                return answer(StatusCode::OK, body);
            }
            // This node cannot tell yet: the caller must retry, not conclude.
            Err(Rejection::NotReady) => return Failure::new(ErrorCode::SESSION_STORE_UNAVAILABLE).into_response(),
            Err(_) => {}
        }
    }
    let Ok(session) = SessionToken::parse(token) else { return inactive() };
    let key = session.key();
    match state.sessions.load(&key).await {
        Ok(Some(record)) if !record.is_expired(now) && record.user_id.is_some() => {
            // Only sessions opened by a session-token login: a token
            // family's key is no credential.
            if tessera::signed::is_token_family(&record) {
                return inactive();
            }
            let deadline = record.idle_deadline.min(record.absolute_deadline);
            answer(
                StatusCode::OK,
                json!({
                    "active": true,
                    "token_type": "session",
                    "sub": record.user_id,
                    "sid": key.public_id(),
                    "iat": record.created_at.as_secs(),
                    "exp": deadline.as_secs(),
                }),
            )
        }
        Ok(_) => inactive(),
        Err(e) => tessera::SessionError::from(e).into_response(),
    }
}

fn inactive() -> Response {
    answer(StatusCode::OK, json!({"active": false}))
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The secret as HTTP Basic password or as `client_secret`, compared in
/// constant time.
fn authenticated(secret: &str, headers: &HeaderMap, params: &Params) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, password)| password.to_owned()));
    let presented = basic.or_else(|| params.raw("client_secret").map(str::to_owned));
    presented.is_some_and(|p| p.len() == secret.len() && bool::from(p.as_bytes().ct_eq(secret.as_bytes())))
}
