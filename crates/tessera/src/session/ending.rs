//! What is remembered when sessions end: revocations pushed to every node
//! (and, where configured, an archive that outlives the store), so that an
//! ended session stays ended even if the store brings its record back.

use super::{Ending, Session, Shared};
use crate::error::SessionError;
use crate::record::{SessionRecord, UserId};
use crate::revocation::{sid_of, Revocation};
use crate::token::SessionKey;
use crate::Timestamp;

impl Session {
    /// Revokes `families` (sessions, or token families) on every node, as
    /// far as `ending` requires it (see [`Ending`]).
    pub(super) async fn revoke_families(&self, families: &[SessionKey], ending: Ending) -> Result<(), SessionError> {
        if !self.0.shared.token_mode() && ending == Ending::Logout {
            return Ok(());
        }
        self.revoke_with(families, None).await
    }

    /// "Everywhere": `families` by name, and everything `user` was issued
    /// before now by a per-user cutoff.
    pub(super) async fn revoke_everywhere(&self, user: &UserId, families: &[SessionKey]) -> Result<(), SessionError> {
        revoke_everywhere(&self.0.shared, self.now(), user, families).await
    }

    /// "End my others": `families` by name, and everything else `user` was
    /// issued before now but the `keep` family, by a cutoff that holds even
    /// for families a store lost (no listing could name them).
    pub(super) async fn revoke_all_but(
        &self,
        user: &UserId,
        keep: &SessionKey,
        families: &[SessionKey],
    ) -> Result<(), SessionError> {
        let (not_before_ms, until) = (self.now().as_millis(), remembered_until(&self.0.shared, self.now()));
        let cutoff = Revocation::Others { user: user.clone(), not_before_ms, keep: sid_of(keep), until };
        revoke_with(&self.0.shared, self.now(), families, Some(cutoff)).await
    }

    /// Revokes `families` by name, and `cutoff` if any, in one call.
    async fn revoke_with(&self, families: &[SessionKey], cutoff: Option<Revocation>) -> Result<(), SessionError> {
        revoke_with(&self.0.shared, self.now(), families, cutoff).await
    }

    /// The keys of `user`'s sessions (families) but `except`, to revoke
    /// before deleting them; none when nothing is revoked by name.
    pub(super) async fn families_of(
        &self,
        user: &UserId,
        except: Option<SessionKey>,
    ) -> Result<Vec<SessionKey>, SessionError> {
        families_of(&self.0.shared, self.now(), user, except).await
    }

    /// Deletes the user's sessions but `keep` (see [`delete_ended`]).
    pub(super) async fn delete_ended(
        &self,
        user: &UserId,
        keep: Option<&SessionKey>,
        revoked: &[SessionKey],
    ) -> Result<u64, SessionError> {
        delete_ended(&self.0.shared, user, keep, revoked).await
    }

    /// Opaque mode: whether a record the store returned was revoked (a
    /// store that lost the deletion brought it back).
    pub(super) fn revoked_yet_stored(&self, key: &SessionKey, record: &SessionRecord) -> bool {
        match (&self.0.shared.revocations, &record.user_id) {
            (Some(revocations), Some(user)) => {
                revocations.list().revokes_session(key, user, record.created_at.as_millis())
            }
            _ => false,
        }
    }
}

// What ending sessions takes, for a request's handle and for the
// operator's [`super::UserSessions`] alike: the layer's shared state and
// the time of the ending.

/// "Everywhere": `families` by name, and everything `user` was issued
/// before `now` by a per-user cutoff.
pub(super) async fn revoke_everywhere(
    shared: &Shared,
    now: Timestamp,
    user: &UserId,
    families: &[SessionKey],
) -> Result<(), SessionError> {
    let until = remembered_until(shared, now);
    let cutoff = Revocation::User { user: user.clone(), not_before_ms: now.as_millis(), until };
    revoke_with(shared, now, families, Some(cutoff)).await
}

/// Revokes `families` by name only (one device ended), where the layer
/// keeps revocations.
pub(super) async fn revoke_families_by_name(
    shared: &Shared,
    now: Timestamp,
    families: &[SessionKey],
) -> Result<(), SessionError> {
    revoke_with(shared, now, families, None).await
}

/// Revokes `families` by name, and `cutoff` if any, in one call.
async fn revoke_with(
    shared: &Shared,
    now: Timestamp,
    families: &[SessionKey],
    cutoff: Option<Revocation>,
) -> Result<(), SessionError> {
    let Some(revocations) = &shared.revocations else { return Ok(()) };
    let until = remembered_until(shared, now);
    let mut entries: Vec<Revocation> = families.iter().map(|f| Revocation::Family { sid: sid_of(f), until }).collect();
    entries.extend(cutoff);
    Ok(revocations.revoke(&entries).await?)
}

/// How long a revocation made at `now` must be remembered: until every
/// access token it could concern has expired (token mode), or for as long
/// as the session could otherwise have lived (opaque mode).
fn remembered_until(shared: &Shared, now: Timestamp) -> Timestamp {
    let lifetime = shared.token_revocation_lifetime().unwrap_or_else(|| shared.config.expiry.absolute());
    now + lifetime
}

/// The keys of `user`'s sessions (families) but `except`, to revoke
/// before deleting them; none when nothing is revoked by name.
pub(super) async fn families_of(
    shared: &Shared,
    now: Timestamp,
    user: &UserId,
    except: Option<SessionKey>,
) -> Result<Vec<SessionKey>, SessionError> {
    if shared.revocations.is_none() {
        return Ok(vec![]);
    }
    let listed = shared.store().list_user(user, now).await?;
    Ok(listed.into_iter().map(|k| k.key).filter(|k| Some(*k) != except).collect())
}

/// Deletes the user's sessions but `keep`: exactly the `revoked` ones
/// when sessions are revoked by name (one opened meanwhile was not
/// revoked, so it is not deleted either: deleting it would end its
/// refresh token but leave its access token alive); else all at once.
pub(super) async fn delete_ended(
    shared: &Shared,
    user: &UserId,
    keep: Option<&SessionKey>,
    revoked: &[SessionKey],
) -> Result<u64, SessionError> {
    let store = shared.store();
    if shared.revocations.is_none() {
        return Ok(store.delete_user(user, keep).await?);
    }
    let mut deleted = 0;
    for key in revoked {
        deleted += u64::from(store.delete(key).await?);
    }
    Ok(deleted)
}
