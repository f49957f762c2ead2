//! Token mode's own endpoints: refresh, and the public keys.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use tessera::{FailureKind, Session};

use super::params::Params;
use super::requests::RefreshRequest;
use super::responses::{GrantResponse, OAuthErrorResponse, TokenResponse, BEARER};
use super::AppState;
use crate::envelope::Success;
use crate::error::ApiError;

/// `POST /auth/refresh {refreshToken}` (header clients) or with the
/// refresh cookie (browsers): a new pair, the old refresh token dead,
/// answered like a login (the profile from this node's cache).
///
/// With `grant_type` it is an RFC 6749 §6 request from a standard OAuth
/// client, answered in RFC 6749 §5 shapes instead (see [`oauth_refresh`]).
pub async fn refresh(
    State(state): State<AppState>,
    session: Session,
    Params(request): Params<RefreshRequest>,
) -> Response {
    if request.is_oauth() {
        return oauth_refresh(&session, &request).await;
    }
    let answer = async {
        let grant = session.refresh(request.refresh_token.as_deref()).await?;
        let user = match session.user_id().await?.and_then(|id| id.as_str().parse().ok()) {
            Some(id) => state.profiles.get(id).await?,
            None => None,
        };
        Ok::<_, ApiError>(Success(GrantResponse::new(&grant, session.now(), user)))
    };
    answer.await.into_response()
}

/// RFC 6749 §6 → §5.1 `{access_token, token_type, expires_in,
/// refresh_token}` with `Cache-Control: no-store`, or a §5.2 error: 400
/// `unsupported_grant_type` (another grant), `invalid_request` (no
/// `refresh_token`; the refresh cookie does not count here),
/// `invalid_grant` (malformed, unknown, expired or reused: the same
/// verdicts, and the same family revocation on reuse, as the envelope
/// form); 503 `temporarily_unavailable` with `Retry-After` when the store
/// cannot be asked. Always `error`, never the envelope: an OAuth client
/// must not mistake a refusal for a token.
async fn oauth_refresh(session: &Session, request: &RefreshRequest) -> Response {
    if request.grant_type.as_deref() != Some("refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(token) = request.oauth_refresh_token.as_deref() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let grant = match session.refresh(Some(token)).await {
        Ok(grant) => grant,
        Err(e) => {
            let kind = e.kind();
            // The library's rendering logs the error; the answer is ours.
            drop(e.into_response());
            return match kind {
                FailureKind::RefreshRejected | FailureKind::NotLoggedIn => {
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")
                }
                FailureKind::Unavailable | FailureKind::Conflict => {
                    let mut r = oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    r
                }
                _ => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            };
        }
    };
    let (Some(expires_in), Some(refresh_token)) = (grant.expires_in(session.now()), grant.refresh_token()) else {
        tracing::error!("a refresh granted no token pair");
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let body = TokenResponse { access_token: grant.token(), expires_in, refresh_token, token_type: BEARER };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &'static str) -> Response {
    let mut response = (status, Json(OAuthErrorResponse { error })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /.well-known/jwks.json`: current, next and still-valid retired
/// public keys, as a plain JWKS (no envelope: verifiers expect RFC 7517).
pub async fn jwks(State(state): State<AppState>) -> Response {
    let Some(tokens) = &state.tokens else { return crate::error::codes::NOT_FOUND.into_response() };
    let mut response = Json(tokens.jwks()).into_response();
    // The next key is published ahead of use, so a short cache is safe as
    // long as rotations are further apart (the interval is at least 300 s).
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}
