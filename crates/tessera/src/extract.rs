//! Axum extractors: the filter that decides who is calling.

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::error::SessionError;
use crate::record::UserId;
use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or(SessionError::MissingLayer)
    }
}

/// A logged-in caller. Rejects with 401 / 20003 (USER_NOT_LOGIN) when there
/// is no live session with a user, and 503 when the store cannot tell.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// Who is calling.
    pub user_id: UserId,
    /// Their session, for logout, listing and the like.
    pub session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        let user_id = session.user_id().await?.ok_or(SessionError::NotLoggedIn)?;
        Ok(Self { user_id, session })
    }
}

/// A caller who may or may not be logged in. Never rejects for that, but
/// still answers 503 when the store cannot tell: a session that cannot be
/// checked is not the same as no session.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match AuthUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(Self(Some(user))),
            Err(SessionError::NotLoggedIn) => Ok(Self(None)),
            Err(e) => Err(e),
        }
    }
}
