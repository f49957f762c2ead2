//! Recently used sessions kept in this process, invalidated by push.
//!
//! Every write script publishes the keys it changed on one pub/sub channel;
//! each node subscribes and drops those entries. Pub/sub rather than RESP3
//! client-side caching because it works the same on standalone, Sentinel
//! and Cluster (a `PUBLISH` reaches subscribers on every cluster node), and
//! because the invalidation covers writes made inside Lua scripts.
//!
//! The cache is trusted only under a [`Lease`] that the subscription's
//! heartbeats renew: once the last heartbeat that came back is older than
//! the lease, every lookup goes to Redis; when the subscription drops, the
//! cache is flushed and trusted again only after resubscribing.
//! An epoch counter stops a load that raced with an invalidation from
//! putting the stale copy back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quick_cache::sync::Cache;

use super::subscription::Follower;
use crate::lease::Lease;
use crate::record::SessionRecord;
use crate::store::StoreError;
use crate::token::SessionKey;

/// The near cache of one node.
#[derive(Debug)]
pub struct NearCache {
    entries: Cache<SessionKey, (Arc<SessionRecord>, Instant)>,
    max_age: Duration,
    lease: Lease,
    epoch: AtomicU64,
}

impl NearCache {
    /// A cache of at most `capacity` sessions, each served for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self { entries: Cache::new(capacity.max(1)), max_age, lease: Lease::new(), epoch: AtomicU64::new(0) }
    }

    /// Whether lookups may be answered from memory now.
    pub fn is_trusted(&self) -> bool {
        self.lease.is_valid()
    }

    /// Whether the cache is trusted now or becomes so within `wait` (a
    /// late heartbeat rather than a lost feed).
    pub async fn trusted_within(&self, wait: Duration) -> bool {
        self.lease.valid_within(wait).await
    }

    /// The epoch to pass to [`NearCache::insert`] after a load.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A cached copy, if trusted and fresh.
    pub fn get(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        if !self.is_trusted() {
            return None;
        }
        let (record, at) = self.entries.get(key)?;
        if at.elapsed() > self.max_age {
            self.entries.remove(key);
            return None;
        }
        Some(record)
    }

    /// Keeps a copy loaded at `epoch`, unless an invalidation came since.
    pub fn insert(&self, key: SessionKey, record: Arc<SessionRecord>, epoch: u64) {
        if self.is_trusted() && self.epoch() == epoch {
            self.entries.insert(key, (record, Instant::now()));
        }
    }

    /// Applies this node's own touch to its copy, so a touch does not cost
    /// the next request a reload.
    pub fn update(&self, key: &SessionKey, change: impl FnOnce(&mut SessionRecord)) {
        if let Some((record, at)) = self.entries.get(key) {
            let mut record = (*record).clone();
            change(&mut record);
            self.entries.insert(*key, (Arc::new(record), at));
        }
    }

    /// Drops one entry (a write here or an invalidation from anywhere).
    pub fn invalidate(&self, key: &SessionKey) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
    }

    fn distrust(&self) {
        self.lease.end();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Resubscribed: whatever was missed meanwhile is flushed; the next
    /// heartbeat grants the lease.
    fn start_afresh(&self) {
        self.lease.end();
        self.entries.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl Follower for NearCache {
    async fn subscribed(&self) -> Result<(), StoreError> {
        self.start_afresh();
        tracing::info!("near cache subscribed");
        Ok(())
    }

    fn message(&self, payload: &str) {
        for key in payload.split(' ').filter_map(super::key_from_name) {
            self.invalidate(&key);
        }
    }

    fn lost(&self) {
        self.distrust();
        tracing::warn!("near cache subscription lost; serving from Redis until it is back");
    }

    fn lease(&self) -> &Lease {
        &self.lease
    }
}
