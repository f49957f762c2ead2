//! The store trait and the stores that ship with Tessera.
//!
//! A store files [`SessionRecord`]s under [`SessionKey`]s (token digests).
//! The trait is shaped for networked stores: each method is one logical
//! operation that a Redis store can do in one round trip or one script, and
//! the layer calls at most one of them per request in the common case.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::record::{SessionChange, SessionRecord, UserId};
use crate::token::{SessionKey, SessionToken};

pub mod memory;
#[cfg(feature = "sqlite")]
mod record_cache;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_revocations;
#[cfg(feature = "sqlite")]
mod sqlite_touches;
#[cfg(feature = "sqlite")]
mod sqlite_wal;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisRevocations, RedisStore};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
#[cfg(feature = "sqlite")]
pub use sqlite_revocations::SqliteRevocations;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session under that key (never created, deleted or purged).
    #[error("no such session")]
    NotFound,
    /// The write lost a race: a key collision on create, or an attribute
    /// changed by someone else since this request loaded the session.
    #[error("conflicting write: {0}")]
    Conflict(String),
    /// The store could not be reached or did not answer in time. The layer
    /// answers 503: a session that cannot be checked is never treated as
    /// absent, and never as valid.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Wraps any backend error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A session with the key it is filed under.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRecord {
    /// The store key.
    pub key: SessionKey,
    /// The record.
    pub record: SessionRecord,
}

/// Where sessions live.
///
/// Contract (checked by the conformance suite in `store::conformance`):
/// - `create` never overwrites: an existing key is a [`StoreError::Conflict`].
/// - `load` returns what was stored, expired or not; the caller judges expiry.
/// - `save` applies only the changed attributes, atomically, by the rule of
///   [`SessionRecord::apply`]: a change to an attribute that another writer
///   changed after `base_version` is a conflict and nothing is written;
///   changes to different attributes all persist.
/// - `touch` moves `last_seen` and the idle deadline forward, nothing else.
/// - `list_user` and `delete_user` see every live session of a user.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Draws the token for a new session of `user` (`None`: anonymous).
    /// Stores that shard by user override this to place the session next to
    /// the user's other keys; the default is a plain CSPRNG draw.
    fn issue_token(&self, user: Option<&UserId>) -> SessionToken {
        let _ = user;
        SessionToken::generate()
    }

    /// Stores a new session.
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError>;

    /// Loads a session, `None` if there is none under `key`. Shared, so a
    /// store that caches can hand out its copy without cloning it.
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError>;

    /// The session under `key` from a copy this store holds in memory, or
    /// `None`: then ask [`SessionStore::load`]. A store answers here only
    /// what `load` would answer now, so a cache that may be stale (the Redis
    /// near cache while its invalidation feed is down) answers `None`.
    ///
    /// Not async, so a hit costs no future: the layer asks it first on every
    /// load. The default has no copy; a wrapper that must see every load
    /// (one that counts or audits them) keeps the default.
    fn load_cached(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        let _ = key;
        None
    }

    /// Loads a session past any cache this store keeps, for decisions that
    /// must see the latest write (refresh-token rotation).
    async fn load_uncached(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.load(key).await
    }

    /// Saves changed attributes; returns the record's new version.
    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError>;

    /// Records activity without changing attributes.
    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError>;

    /// Deletes a session; `false` if there was none.
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// The user's sessions that are live at `now`.
    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError>;

    /// Deletes all the user's sessions except `keep`; returns how many.
    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError>;

    /// Replaces the session under `old` by a new one under `new`: the new
    /// record is written before the old one is deleted, so a failure in
    /// between leaves the caller logged in rather than logged out.
    /// Networked stores override this to do it in one round trip.
    ///
    /// Returns how many sessions the record's user has now, when the store
    /// learns it for free (the layer enforces the per-user cap with it, and
    /// lists the sessions itself when the answer is `None`).
    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        self.create(new, record).await?;
        if let Some(old) = old {
            self.delete(old).await?;
        }
        Ok(None)
    }

    /// Deletes sessions that lapsed before `now`; returns how many. Stores
    /// that expire keys on their own keep the default, which does nothing.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }
}

/// A shared store is a store, so wrappers and tests can hold `Arc`s.
#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    fn issue_token(&self, user: Option<&UserId>) -> SessionToken {
        (**self).issue_token(user)
    }
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        (**self).create(key, record).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        (**self).load(key).await
    }
    fn load_cached(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        (**self).load_cached(key)
    }
    async fn load_uncached(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        (**self).load_uncached(key).await
    }
    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        (**self).save(key, change).await
    }
    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        (**self).touch(key, last_seen, idle_deadline).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        (**self).delete(key).await
    }
    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        (**self).list_user(user, now).await
    }
    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        (**self).delete_user(user, keep).await
    }
    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        (**self).rotate(old, new, record).await
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        (**self).purge_expired(now).await
    }
}

/// Runs [`SessionStore::purge_expired`] every `every` until the returned
/// task is aborted. Failures are logged and retried at the next tick.
pub fn spawn_purger(
    store: std::sync::Arc<dyn SessionStore>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.purge_expired(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired sessions purged"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
            }
        }
    })
}
