//! A session store wrapper that counts the calls made to it, by kind, for
//! tests that assert how many loads and writes a request costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tessera::record::SessionChange;
use tessera::store::KeyedRecord;
use tessera::{SessionKey, SessionRecord, SessionStore, SessionToken, StoreError, Timestamp, UserId};
use tokio::sync::Barrier;

/// A real store with a counter on every call, and optionally a gate that
/// holds the first uncached loads, after they have read, until that many
/// have read (so that concurrent requests certainly start from the same
/// version).
///
/// `load`, `load_uncached` and `list_user` count as loads; every other
/// call except `issue_token` counts as a write of its kind.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    loads: AtomicU64,
    creates: AtomicU64,
    saves: AtomicU64,
    touches: AtomicU64,
    deletes: AtomicU64,
    rotates: AtomicU64,
    other_writes: AtomicU64,
    uncached: AtomicU64,
    conflicts: AtomicU64,
    gate: Option<(u64, Barrier)>,
}

/// A snapshot of a [`CountingStore`]'s counters, to compare before and
/// after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calls {
    /// `load`, `load_uncached` and `list_user`.
    pub loads: u64,
    /// `create`.
    pub creates: u64,
    /// `save`.
    pub saves: u64,
    /// `touch`.
    pub touches: u64,
    /// `delete`.
    pub deletes: u64,
    /// `rotate`.
    pub rotates: u64,
    /// `delete_user` and `purge_expired`.
    pub other_writes: u64,
}

impl Calls {
    /// Every write, whatever its kind.
    pub fn writes(&self) -> u64 {
        self.creates + self.saves + self.touches + self.deletes + self.rotates + self.other_writes
    }

    /// Every call: loads and writes.
    pub fn total(&self) -> u64 {
        self.loads + self.writes()
    }
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::SeqCst)
}

impl<S> CountingStore<S> {
    /// Counts the calls to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            loads: AtomicU64::new(0),
            creates: AtomicU64::new(0),
            saves: AtomicU64::new(0),
            touches: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            rotates: AtomicU64::new(0),
            other_writes: AtomicU64::new(0),
            uncached: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            gate: None,
        }
    }

    /// Like [`CountingStore::new`], and the first `n` uncached loads each
    /// wait, after reading, until all `n` have read.
    pub fn gated(inner: S, n: usize) -> Self {
        Self { gate: Some((n as u64, Barrier::new(n))), ..Self::new(inner) }
    }

    /// The wrapped store, to look past the counters.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counters now.
    pub fn calls(&self) -> Calls {
        let n = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Calls {
            loads: n(&self.loads),
            creates: n(&self.creates),
            saves: n(&self.saves),
            touches: n(&self.touches),
            deletes: n(&self.deletes),
            rotates: n(&self.rotates),
            other_writes: n(&self.other_writes),
        }
    }

    /// Loads so far.
    pub fn loads(&self) -> u64 {
        self.calls().loads
    }

    /// Writes so far, of every kind.
    pub fn writes(&self) -> u64 {
        self.calls().writes()
    }

    /// Saves refused as [`StoreError::Conflict`] so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for CountingStore<S> {
    fn issue_token(&self, user: Option<&UserId>) -> SessionToken {
        self.inner.issue_token(user)
    }
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        bump(&self.creates);
        self.inner.create(key, record).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        bump(&self.loads);
        self.inner.load(key).await
    }
    async fn load_uncached(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        bump(&self.loads);
        let seen = bump(&self.uncached);
        let loaded = self.inner.load_uncached(key).await;
        if let Some((n, barrier)) = &self.gate {
            if seen < *n {
                barrier.wait().await;
            }
        }
        loaded
    }
    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        bump(&self.saves);
        let saved = self.inner.save(key, change).await;
        if matches!(saved, Err(StoreError::Conflict(_))) {
            bump(&self.conflicts);
        }
        saved
    }
    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle: Timestamp) -> Result<(), StoreError> {
        bump(&self.touches);
        self.inner.touch(key, last_seen, idle).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        bump(&self.deletes);
        self.inner.delete(key).await
    }
    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        bump(&self.loads);
        self.inner.list_user(user, now).await
    }
    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        bump(&self.other_writes);
        self.inner.delete_user(user, keep).await
    }
    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        bump(&self.rotates);
        self.inner.rotate(old, new, record).await
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        bump(&self.other_writes);
        self.inner.purge_expired(now).await
    }
}
