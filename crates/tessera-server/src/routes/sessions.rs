//! A user's list of sessions (devices), and ending them.

use axum::extract::Path;
use tessera::AuthUser;

use super::responses::{RevokedResponse, SessionResponse};
use crate::envelope::Success;
use crate::error::ApiError;

type ApiResult<T> = Result<Success<T>, ApiError>;

/// `GET /user/sessions`
pub async fn list(user: AuthUser) -> ApiResult<Vec<SessionResponse>> {
    let sessions = user.session.list_mine().await?;
    Ok(Success(sessions.into_iter().map(SessionResponse::from).collect()))
}

/// `DELETE /user/sessions/{id}`
pub async fn revoke_one(user: AuthUser, Path(id): Path<String>) -> ApiResult<()> {
    if !user.session.revoke(&id).await? {
        return Err(ApiError::SessionNotFound);
    }
    Ok(Success(()))
}

/// `DELETE /user/sessions`: every session but this one.
pub async fn revoke_others(user: AuthUser) -> ApiResult<RevokedResponse> {
    let revoked = user.session.revoke_others().await?;
    Ok(Success(RevokedResponse { revoked }))
}
