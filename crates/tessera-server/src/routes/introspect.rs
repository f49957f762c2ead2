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
use serde::Serialize;
use subtle::ConstantTimeEq;
use tessera::signed::Rejection;
use tessera::SessionToken;

use super::params::Params;
use super::requests::IntrospectRequest;
use super::responses::{IntrospectionResponse, OAuthErrorResponse};
use super::AppState;
use crate::envelope::{ErrorCode, Failure};

/// Introspects `token`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(request): Params<IntrospectRequest>,
) -> Response {
    let Some(secret) = &state.introspection_secret else {
        return crate::error::codes::NOT_FOUND.into_response();
    };
    if !authenticated(secret, &headers, request.client_secret.as_deref()) {
        let mut response =
            (StatusCode::UNAUTHORIZED, Json(OAuthErrorResponse { error: "invalid_client" })).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tessera\""));
        return response;
    }
    let Some(token) = request.token.as_deref() else {
        return answer(StatusCode::BAD_REQUEST, OAuthErrorResponse { error: "invalid_request" });
    };
    let now = state.clock.now();
    if let Some(tokens) = &state.tokens {
        match tokens.verify(token, now) {
            Ok(claims) => return answer(StatusCode::OK, IntrospectionResponse::access_token(&claims)),
            // This node cannot tell yet: the caller must retry, not conclude.
            Err(Rejection::NotReady) => return Failure::new(ErrorCode::SESSION_STORE_UNAVAILABLE).into_response(),
            Err(_) => {}
        }
    }
    let Ok(session) = SessionToken::parse(token) else { return inactive() };
    let key = session.key();
    match state.sessions.load(&key).await {
        Ok(Some(record)) if !record.is_expired(now) => {
            // Only sessions opened by a session-token login: a token
            // family's key is no credential.
            if tessera::signed::is_token_family(&record) {
                return inactive();
            }
            let Some(user) = record.user_id.clone() else { return inactive() };
            let deadline = record.idle_deadline.min(record.absolute_deadline);
            let body =
                IntrospectionResponse::session(user, key.public_id(), record.created_at.as_secs(), deadline.as_secs());
            answer(StatusCode::OK, body)
        }
        Ok(_) => inactive(),
        Err(e) => tessera::SessionError::from(e).into_response(),
    }
}

fn inactive() -> Response {
    answer(StatusCode::OK, IntrospectionResponse::inactive())
}

fn answer(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The secret as HTTP Basic password or as `client_secret`, compared in
/// constant time.
fn authenticated(secret: &str, headers: &HeaderMap, client_secret: Option<&str>) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, password)| password.to_owned()));
    let presented = basic.or_else(|| client_secret.map(str::to_owned));
    presented.is_some_and(|p| p.len() == secret.len() && bool::from(p.as_bytes().ct_eq(secret.as_bytes())))
}
