//! What an operator does to a user's sessions from outside any request:
//! list them, end them all. The same listing and the same endings as the
//! user's own `list_mine` and `logout_everywhere`, on the layer's store and
//! revocations, so every node refuses what was ended at once.

use std::sync::Arc;

use super::ending::{delete_ended, families_of, revoke_everywhere, revoke_families_by_name};
use super::{SessionInfo, Shared};
use crate::error::SessionError;
use crate::record::UserId;

/// A user's sessions as an operator sees them; from
/// [`crate::SessionLayer::user_sessions`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UserSessions {
    pub(crate) shared: Arc<Shared>,
}

impl UserSessions {
    /// `user`'s live sessions (token families in token mode), oldest first,
    /// with the same opaque ids the user's own listing shows; none is
    /// `current`.
    pub async fn list(&self, user: &UserId) -> Result<Vec<SessionInfo>, SessionError> {
        let now = self.shared.clock.now();
        let mut listed = self.shared.store().list_user(user, now).await?;
        listed.sort_by_key(|k| (k.record.created_at, k.key));
        Ok(listed
            .into_iter()
            .map(|k| SessionInfo {
                id: k.key.public_id(),
                created_at: k.record.created_at.as_millis(),
                last_seen: k.record.last_seen.as_millis(),
                user_agent: k.record.client.user_agent,
                ip: k.record.client.ip,
                current: false,
            })
            .collect())
    }

    /// Ends every session of `user`, as their own "log out everywhere"
    /// does: by name and by a per-user cutoff (so every access token they
    /// hold is refused on every node, and a session a store brings back
    /// stays ended), then deleted. Returns how many were deleted.
    pub async fn end_all(&self, user: &UserId) -> Result<u64, SessionError> {
        let (shared, now) = (&*self.shared, self.shared.clock.now());
        let families = families_of(shared, now, user, None).await?;
        revoke_everywhere(shared, now, user, &families).await?;
        let ended = delete_ended(shared, user, None, &families).await?;
        tracing::info!(user = %user, sessions = ended, "all sessions ended by an operator");
        Ok(ended)
    }

    /// Ends the one session of `user` whose opaque id (as [`Self::list`]
    /// shows it) is `id`, as the user's own "end that device" does: its
    /// family revoked by name on every node (where the layer keeps
    /// revocations), then deleted. `false` if the user has no such session.
    pub async fn end(&self, user: &UserId, id: &str) -> Result<bool, SessionError> {
        let (shared, now) = (&*self.shared, self.shared.clock.now());
        let listed = shared.store().list_user(user, now).await?;
        let Some(target) = listed.into_iter().find(|k| k.key.public_id() == id) else {
            return Ok(false);
        };
        revoke_families_by_name(shared, now, &[target.key]).await?;
        let deleted = shared.store().delete(&target.key).await?;
        tracing::info!(user = %user, "a session ended by an operator");
        Ok(deleted)
    }
}
