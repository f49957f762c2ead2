//! Profiles by user id for "who am I", kept in this node's memory.
//!
//! The session store never holds a profile: a Redis dump must show no
//! phone number or name. So that `GET /user/me` still costs no database
//! query on a warm path, each node keeps the profiles it has served (or
//! seen at login) for a while, bounded in number and age. With each
//! profile it keeps `/user/me`'s whole answer, serialized once: that read
//! is the hottest of the service, and its answer only changes with the
//! profile.
//!
//! Nothing changes a profile today but registration, so a copy is only
//! ever stale by being absent. A route that edits profiles must call
//! [`Profiles::forget`] on every node (as sessions are invalidated), or
//! accept [`Profiles::MAX_AGE`] of staleness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::sync::Cache;

use crate::envelope::Success;
use crate::routes::responses::UserResponse;
use crate::storage::StorageError;
use crate::users::{User, Users};

/// The user repository with this node's profile cache in front of it
/// (quick_cache, as the library's near cache: bounded, no global lock).
#[derive(Debug)]
pub struct Profiles {
    users: Users,
    cache: Cache<i64, Cached>,
}

#[derive(Debug, Clone)]
struct Cached {
    profile: Arc<Profile>,
    at: Instant,
}

/// A profile as kept: the record, and `/user/me`'s answer body.
#[derive(Debug)]
struct Profile {
    user: User,
    me: Bytes,
}

impl Profiles {
    /// How long a copy is served before the database is asked again.
    pub const MAX_AGE: Duration = Duration::from_secs(300);
    /// Profiles kept at most (a few hundred bytes each).
    pub const CAPACITY: usize = 100_000;

    /// A cache of [`Profiles::CAPACITY`] profiles in front of `users`.
    pub fn new(users: Users) -> Self {
        Self::with_capacity(users, Self::CAPACITY)
    }

    fn with_capacity(users: Users, capacity: usize) -> Self {
        Self { users, cache: Cache::new(capacity.max(1)) }
    }

    /// The profile of user `id`: from memory when a fresh copy is there,
    /// else from the database (and kept). `None`: no such user.
    pub async fn get(&self, id: i64) -> Result<Option<User>, StorageError> {
        Ok(self.profile(id).await?.map(|p| p.user.clone()))
    }

    /// `GET /user/me`'s answer body for user `id`, as [`Profiles::get`]
    /// finds the profile. `None`: no such user.
    pub async fn me_answer(&self, id: i64) -> Result<Option<Bytes>, StorageError> {
        Ok(self.profile(id).await?.map(|p| p.me.clone()))
    }

    async fn profile(&self, id: i64) -> Result<Option<Arc<Profile>>, StorageError> {
        if let Some(profile) = self.cached(id) {
            return Ok(Some(profile));
        }
        Ok(self.users.by_id(id).await?.map(|user| self.kept(user)))
    }

    /// Keeps a profile just read elsewhere (at login).
    pub fn keep(&self, user: User) {
        self.kept(user);
    }

    fn kept(&self, user: User) -> Arc<Profile> {
        let me = Success(UserResponse::from(user.clone())).to_body();
        let profile = Arc::new(Profile { user, me });
        self.cache.insert(profile.user.id, Cached { profile: profile.clone(), at: Instant::now() });
        profile
    }

    /// Drops this node's copy of user `id`'s profile.
    pub fn forget(&self, id: i64) {
        self.cache.remove(&id);
    }

    fn cached(&self, id: i64) -> Option<Arc<Profile>> {
        self.cache.get(&id).filter(|c| c.at.elapsed() < Self::MAX_AGE).map(|c| c.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User { id, name: format!("u{id}"), gender: 1, age: 30, telephone: format!("+86138000000{id:02}") }
    }

    async fn profiles(capacity: usize) -> (Profiles, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("users.db").display());
        let users = Users::connect(&url).await.unwrap();
        (Profiles::with_capacity(users, capacity), dir)
    }

    #[tokio::test]
    async fn a_kept_profile_is_served_without_the_database() {
        let (profiles, _dir) = profiles(10).await;
        // User 7 is in no database: only the cache can answer for it.
        assert!(profiles.get(7).await.unwrap().is_none());
        profiles.keep(user(7));
        assert_eq!(profiles.get(7).await.unwrap().unwrap().name, "u7");
        let me = profiles.me_answer(7).await.unwrap().unwrap();
        assert_eq!(me, Success(UserResponse::from(user(7))).to_body(), "the answer is the serializer's");
        profiles.forget(7);
        assert!(profiles.get(7).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_capacity() {
        let (profiles, _dir) = profiles(3).await;
        for id in 0..10 {
            profiles.keep(user(id));
        }
        assert_eq!(profiles.cache.len(), 3);
        assert!(profiles.cached(9).is_some(), "the newest is kept");
    }
}
