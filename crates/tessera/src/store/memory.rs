//! An in-process store for tests and development. Sessions die with the
//! process and are not shared between processes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{KeyedRecord, SessionStore, StoreError};
use crate::clock::Timestamp;
use crate::record::{SessionChange, SessionRecord, UserId};
use crate::token::SessionKey;

/// Sessions in a `HashMap` behind a mutex, with a per-user index.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionKey, SessionRecord>,
    by_user: HashMap<UserId, BTreeSet<SessionKey>>,
}

impl Inner {
    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let record = self.sessions.remove(key)?;
        if let Some(user) = &record.user_id {
            if let Some(keys) = self.by_user.get_mut(user) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        Some(record)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written record
        // (every mutation is a single map operation), so poison is harmless.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(key) {
            return Err(StoreError::Conflict("session key exists".into()));
        }
        if let Some(user) = &record.user_id {
            inner.by_user.entry(user.clone()).or_default().insert(*key);
        }
        inner.sessions.insert(*key, record.clone());
        Ok(())
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self.load_cached(key))
    }

    fn load_cached(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        self.lock().sessions.get(key).cloned().map(Arc::new)
    }

    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let record = inner.sessions.get_mut(key).ok_or(StoreError::NotFound)?;
        record.apply(change).map_err(|c| StoreError::Conflict(format!("attribute {:?}", c.0)))
    }

    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let record = inner.sessions.get_mut(key).ok_or(StoreError::NotFound)?;
        record.last_seen = record.last_seen.max(last_seen);
        record.idle_deadline = record.idle_deadline.max(idle_deadline);
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.lock().remove(key).is_some())
    }

    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        let inner = self.lock();
        let Some(keys) = inner.by_user.get(user) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .iter()
            .filter_map(|k| inner.sessions.get(k).map(|r| (k, r)))
            .filter(|(_, r)| !r.is_expired(now))
            .map(|(k, r)| KeyedRecord { key: *k, record: r.clone() })
            .collect())
    }

    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let keys: Vec<SessionKey> = inner
            .by_user
            .get(user)
            .map(|keys| keys.iter().filter(|k| Some(*k) != keep).copied().collect())
            .unwrap_or_default();
        for key in &keys {
            inner.remove(key);
        }
        Ok(keys.len() as u64)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let expired: Vec<SessionKey> =
            inner.sessions.iter().filter(|(_, r)| r.is_expired(now)).map(|(k, _)| *k).collect();
        for key in &expired {
            inner.remove(key);
        }
        Ok(expired.len() as u64)
    }
}
