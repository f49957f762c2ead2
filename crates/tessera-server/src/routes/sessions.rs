//! A user's list of sessions (devices), and ending them.

use axum::extract::Path;
use serde_json::{json, Value};
use tessera::AuthUser;

use crate::envelope::Success;

use crate::error::ApiError;

type ApiResult = Result<Success<Value>, ApiError>;

/// `GET /user/sessions`
pub async fn list(user: AuthUser) -> ApiResult {
    Ok(Success(json!(user.session.list_mine().await?)))
}

/// `DELETE /user/sessions/{id}`
pub async fn revoke_one(user: AuthUser, Path(id): Path<String>) -> ApiResult {
    if !user.session.revoke(&id).await? {
        return Err(ApiError::SessionNotFound);
    }
    Ok(Success(Value::Null))
}

/// `DELETE /user/sessions`: every session but this one.
pub async fn revoke_others(user: AuthUser) -> ApiResult {
    let revoked = user.session.revoke_others().await?;
    Ok(Success(json!({"revoked": revoked})))
}
