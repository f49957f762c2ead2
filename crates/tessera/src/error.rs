//! The errors a session handle reports, and how each becomes an answer.

use axum::response::{IntoResponse, Response};

use crate::failure::{default_response, FailureKind};
use crate::store::StoreError;

/// What can go wrong when a handler uses its session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store could not be reached: 503, never "no session".
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// Another request changed the same attribute first: 409.
    #[error("conflicting session update: {0}")]
    Conflict(String),
    /// The caller has no live session: 401.
    #[error("not logged in")]
    NotLoggedIn,
    /// A cookie-carried state change failed the CSRF rules.
    #[error("cross-site request refused: {0:?}")]
    CsrfRejected(crate::csrf::CsrfReason),
    /// A stored attribute does not decode as the type asked for: 500.
    #[error("session attribute {0:?} has an unexpected shape")]
    Decode(&'static str),
    /// A refresh token that is malformed, unknown, expired, or reused
    /// (whose family is then revoked): 401.
    #[error("refresh token rejected")]
    RefreshRejected,
    /// An access token could not be signed (bad key material): 500.
    #[error("{0}")]
    Signing(String),
    /// The handler asked for a session but `SessionLayer` is not installed: 500.
    #[error("SessionLayer is not installed on this route")]
    MissingLayer,
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Conflict(m) => Self::Conflict(m),
            // A session that vanished between load and write was ended by
            // someone else (logout elsewhere, expiry): the caller is out.
            StoreError::NotFound => Self::NotLoggedIn,
        }
    }
}

impl SessionError {
    /// What kind of failure this is, which decides its answer.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Unavailable(_) => FailureKind::Unavailable,
            Self::Conflict(_) => FailureKind::Conflict,
            Self::NotLoggedIn => FailureKind::NotLoggedIn,
            Self::CsrfRejected(reason) => FailureKind::CsrfRejected(*reason),
            Self::RefreshRejected => FailureKind::RefreshRejected,
            Self::Decode(_) | Self::MissingLayer | Self::Signing(_) => FailureKind::Internal,
        }
    }
}

/// Rendered as the layer's failure renderer says (by default RFC 9457
/// problem+json); the details stay in the log.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(_) => tracing::warn!(error = %self, "session store unavailable"),
            Self::Decode(_) | Self::MissingLayer | Self::Signing(_) => {
                tracing::error!(error = %self, "session misuse")
            }
            Self::CsrfRejected(_) => tracing::info!(error = %self, "cross-site request refused"),
            Self::Conflict(_) | Self::NotLoggedIn | Self::RefreshRejected => tracing::debug!(error = %self),
        }
        default_response(self.kind())
    }
}
