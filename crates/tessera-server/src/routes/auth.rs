//! Token mode's own endpoints: refresh, and the public keys.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header;
use tessera::Session;

use super::params::Params;
use super::requests::RefreshRequest;
use super::responses::GrantResponse;
use super::user::LOGIN_USER;
use super::AppState;
use crate::envelope::Success;
use crate::error::ApiError;

/// `POST /auth/refresh {refreshToken}` (header clients) or with the
/// refresh cookie (browsers): a new pair, the old refresh token dead,
/// answered like a login (the profile comes from the family record the
/// refresh has just read, so it costs nothing more).
pub async fn refresh(
    session: Session,
    Params(request): Params<RefreshRequest>,
) -> Result<Success<GrantResponse>, ApiError> {
    let grant = session.refresh(request.refresh_token.as_deref()).await?;
    let user = session.get(LOGIN_USER).await?;
    Ok(Success(GrantResponse::new(&grant, session.now(), user)))
}

/// `GET /.well-known/jwks.json`: current, next and still-valid retired
/// public keys, as a plain JWKS (no envelope: verifiers expect RFC 7517).
pub async fn jwks(State(state): State<AppState>) -> Response {
    let Some(tokens) = &state.tokens else { return crate::error::codes::NOT_FOUND.into_response() };
    let mut response = Json(tokens.jwks()).into_response();
    // The next key is published ahead of use, so a short cache is safe as
    // long as rotations are further apart (the interval is at least 300 s).
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=60"));
    response
}
