//! The operator API (`/admin/…`, on only with `--admin-token`): disable
//! and re-enable an account, list a user's sessions, end them all or one
//! (OWASP ASVS V3.3.4). Inside the server, so it acts through the same
//! session layer as the requests it stops: the same store, near cache and
//! revocations, in every deployment (also a single node keeping sessions in
//! its SQLite file, which it caches in memory and locks against other
//! writers; the operator CLI goes through this API there, `--admin-url`).
//! The actions themselves are [`crate::operator::Operator`]'s, shared with
//! the CLI.
//!
//! Authentication: the `X-Admin-Token` header, compared in constant time
//! with the configured token, both hashed first (so lengths do not leak
//! through timing either). Failed attempts count against the client
//! address like failed logins.

use axum::extract::{Path, State};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::responses::{AdminSessionResponse, RevokedResponse};
use super::AppState;
use crate::client_ip::ClientAddress;
use crate::envelope::Success;
use crate::error::ApiError;
use crate::limits;
use crate::operator::Operator;

type ApiResult<T> = Result<Success<T>, ApiError>;

/// The header the operator's token comes in.
pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";

/// The configured admin token, kept as its SHA-256 only.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// The token operators present.
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token.
    fn permits(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Lets the request through if it carries the admin token; each refused
/// attempt takes a slot of the address's failure budget (a success gives
/// its slot back).
async fn authorize(state: &AppState, ip: ClientAddress, headers: &HeaderMap) -> Result<(), ApiError> {
    // The routes exist only with a token configured.
    let Some(token) = &state.admin else { return Err(ApiError::AdminUnauthorized) };
    let ip = ip.key();
    let buckets = [(format!("admin-ip:{}", state.otp.pseudonym(&ip)), state.login_limits.per_ip)];
    limits::check(&*state.limiter, state.clock.now(), &buckets).await?;
    let presented = headers.get(ADMIN_TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if presented.is_empty() || !token.permits(presented) {
        tracing::warn!("operator API: refused a request without the admin token");
        return Err(ApiError::AdminUnauthorized);
    }
    limits::refund(&*state.limiter, &buckets).await
}

fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::invalid(crate::lang::Msg::UserIdNotInteger))
}

/// The same actions as the operator CLI, on this node's session layer.
fn operator(state: &AppState) -> Operator {
    Operator::new(state.users.clone(), state.user_sessions.clone())
}

/// `POST /admin/users/{id}/disable`: refuses the account's logins from now
/// on and ends every session (and token family) it has, on every node.
/// Again on a disabled account, it ends what may have been opened since.
pub async fn disable_user(
    State(state): State<AppState>,
    ip: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<RevokedResponse> {
    authorize(&state, ip, &headers).await?;
    let id = user_id(&id)?;
    let revoked = operator(&state).disable(id).await?;
    state.events.sessions_ended("disabled", id, revoked);
    Ok(Success(RevokedResponse { revoked }))
}

/// `POST /admin/users/{id}/enable`: the account may log in again (sessions
/// ended by the disabling stay ended).
pub async fn enable_user(
    State(state): State<AppState>,
    ip: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<()> {
    authorize(&state, ip, &headers).await?;
    operator(&state).enable(user_id(&id)?).await?;
    Ok(Success(()))
}

/// `GET /admin/users/{id}/sessions`: the user's live sessions, with the
/// opaque ids of `GET /user/sessions` (never a token).
pub async fn list_sessions(
    State(state): State<AppState>,
    ip: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Vec<AdminSessionResponse>> {
    authorize(&state, ip, &headers).await?;
    let sessions = operator(&state).sessions(user_id(&id)?).await?;
    Ok(Success(sessions.into_iter().map(AdminSessionResponse::from).collect()))
}

/// `DELETE /admin/users/{id}/sessions`: ends every session of the user, as
/// their own "log out everywhere" would; the account stays usable.
pub async fn end_sessions(
    State(state): State<AppState>,
    ip: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<RevokedResponse> {
    authorize(&state, ip, &headers).await?;
    let id = user_id(&id)?;
    let revoked = operator(&state).end_sessions(id).await?;
    state.events.sessions_ended("everywhere", id, revoked);
    Ok(Success(RevokedResponse { revoked }))
}

/// `DELETE /admin/users/{id}/sessions/{sid}`: ends one session of the user,
/// named by the opaque id the listing shows.
pub async fn end_session(
    State(state): State<AppState>,
    ip: ClientAddress,
    headers: HeaderMap,
    Path((id, sid)): Path<(String, String)>,
) -> ApiResult<RevokedResponse> {
    authorize(&state, ip, &headers).await?;
    operator(&state).end_session(user_id(&id)?, &sid).await?;
    Ok(Success(RevokedResponse { revoked: 1 }))
}

#[cfg(test)]
mod tests {
    use super::AdminToken;

    #[test]
    fn only_the_token_itself_is_admitted() {
        let token = AdminToken::new("an-admin-token-of-at-least-32-characters");
        assert!(token.permits(b"an-admin-token-of-at-least-32-characters"));
        assert!(!token.permits(b"an-admin-token-of-at-least-32-character"));
        assert!(!token.permits(b""));
        assert!(!format!("{token:?}").contains("admin-token"));
    }
}
