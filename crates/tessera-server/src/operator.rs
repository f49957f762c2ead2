//! What an operator does to an account, in one place for the operator API
//! (`/admin/…`) and the operator CLI (`tessera users …`, `tessera sessions
//! …`): disable and enable it, list its sessions, end them. Both act on the
//! users repository and on the session layer's [`UserSessions`] (the store,
//! the revocations every node follows and their archive), so an ending is
//! seen by every node at once whichever way it was asked for.

use tessera::{SessionError, SessionInfo, UserId, UserSessions};

use crate::storage::StorageError;
use crate::users::Users;

/// Why an operator's action was not done.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No account has this id.
    #[error("no user {0}")]
    NoSuchUser(i64),
    /// The user has no live session with this opaque id.
    #[error("user {user} has no session {session}")]
    NoSuchSession {
        /// The user.
        user: i64,
        /// The opaque id asked for.
        session: String,
    },
    /// The user database cannot be asked or written.
    #[error("user database: {0}")]
    Storage(#[from] StorageError),
    /// The session store or the revocations cannot be asked or written.
    #[error("sessions: {0}")]
    Session(#[from] SessionError),
}

/// An operator's view of accounts and their sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Operator {
    users: Users,
    sessions: UserSessions,
}

impl Operator {
    /// Over the users repository and the session layer's view of every
    /// user's sessions.
    pub fn new(users: Users, sessions: UserSessions) -> Self {
        Self { users, sessions }
    }

    /// Refuses the account's logins from now on and ends every session
    /// (and token family) it has, on every node; returns how many ended.
    /// Again on a disabled account, it ends what may have been opened since.
    pub async fn disable(&self, id: i64) -> Result<u64, OperatorError> {
        // The flag first: a login racing with this either sees it, or made
        // its session before the sessions are ended below (and login checks
        // the flag again after making one).
        if !self.users.set_disabled(id, true).await? {
            return Err(OperatorError::NoSuchUser(id));
        }
        let ended = self.sessions.end_all(&UserId::from(id)).await?;
        tracing::info!(user = id, ended, "account disabled by an operator");
        Ok(ended)
    }

    /// The account may log in again (sessions ended by the disabling stay
    /// ended).
    pub async fn enable(&self, id: i64) -> Result<(), OperatorError> {
        if !self.users.set_disabled(id, false).await? {
            return Err(OperatorError::NoSuchUser(id));
        }
        tracing::info!(user = id, "account enabled by an operator");
        Ok(())
    }

    /// The user's live sessions, oldest first, with the opaque ids of
    /// `GET /user/sessions` (never a token).
    pub async fn sessions(&self, id: i64) -> Result<Vec<SessionInfo>, OperatorError> {
        self.known(id).await?;
        Ok(self.sessions.list(&UserId::from(id)).await?)
    }

    /// Ends every session of the user, as their own "log out everywhere"
    /// would; the account stays usable. Returns how many ended.
    pub async fn end_sessions(&self, id: i64) -> Result<u64, OperatorError> {
        self.known(id).await?;
        let ended = self.sessions.end_all(&UserId::from(id)).await?;
        tracing::info!(user = id, ended, "all sessions of a user ended by an operator");
        Ok(ended)
    }

    /// Ends the user's one session with opaque id `session`.
    pub async fn end_session(&self, id: i64, session: &str) -> Result<(), OperatorError> {
        self.known(id).await?;
        if !self.sessions.end(&UserId::from(id), session).await? {
            return Err(OperatorError::NoSuchSession { user: id, session: session.to_owned() });
        }
        Ok(())
    }

    async fn known(&self, id: i64) -> Result<(), OperatorError> {
        self.users.by_id(id).await?.map(|_| ()).ok_or(OperatorError::NoSuchUser(id))
    }
}
