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
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use super::subscription::Follower;
use crate::lease::Lease;
use crate::record::SessionRecord;
use crate::store::StoreError;
use crate::token::SessionKey;

type Entry = (Arc<SessionRecord>, Instant);

/// The near cache of one node.
#[derive(Debug)]
pub struct NearCache {
    entries: Cache<SessionKey, Entry, UnitWeighter, DefaultHashBuilder, CountEvictions>,
    max_age: Duration,
    lease: Lease,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
    invalidations: AtomicU64,
}

/// Counts entries the cache drops to stay within its capacity.
#[derive(Debug, Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<SessionKey, Entry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: SessionKey, _: Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a near cache has done since it was made (counters only grow), and
/// how many entries it holds now: for metrics, read when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that went to Redis: not cached, too old, or the cache not
    /// trusted (its lease lapsed).
    pub misses: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Entries dropped because a write (here or on another node) changed
    /// the session.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: u64,
}

impl NearCache {
    /// A cache of at most `capacity` sessions, each served for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.max(1);
        let evictions = CountEvictions::default();
        let entries =
            Cache::with(capacity, capacity as u64, UnitWeighter, DefaultHashBuilder::default(), evictions.clone());
        Self {
            entries,
            max_age,
            lease: Lease::new(),
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: evictions.0,
            invalidations: AtomicU64::new(0),
        }
    }

    /// The counters so far and the entries held (relaxed reads: each
    /// counter is exact, the set of them not a snapshot of one instant).
    pub fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
        }
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

    /// A cached copy, if trusted and fresh, the lookup counted as a hit or a miss.
    pub fn get(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        let found = self.hit(key);
        if found.is_none() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// A cached copy, if trusted and fresh, counting only a hit: a miss here
    /// is followed by a load, whose [`NearCache::get`] counts it.
    pub fn hit(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        let found = self.lookup(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(found)
    }

    fn lookup(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        // One reading for the lease and the entry's age. Taken before the
        // lookup, so an entry put in meanwhile reads as no age at all.
        let now = Instant::now();
        if !self.lease.is_valid_at(now) {
            return None;
        }
        let (record, at) = self.entries.get(key)?;
        if now.saturating_duration_since(at) > self.max_age {
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
        if self.entries.remove(key).is_some() {
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        }
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
        for key in payload.split(' ').filter_map(super::names::key_from_name) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::record_for;
    use crate::token::SessionToken;

    fn trusted_cache() -> NearCache {
        let cache = NearCache::new(16, Duration::from_secs(60));
        cache.lease.grant_forever();
        cache
    }

    #[test]
    fn a_peek_counts_its_hit_and_leaves_a_miss_to_the_load_that_follows() {
        let cache = trusted_cache();
        let (cached, absent) = (SessionToken::generate().key(), SessionToken::generate().key());
        cache.insert(cached, Arc::new(record_for(Some("alice"))), cache.epoch());
        assert!(cache.hit(&cached).is_some());
        assert!(cache.hit(&absent).is_none());
        // The load after the missed peek looks again and counts the miss once.
        assert!(cache.get(&absent).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
    }

    #[test]
    fn a_peek_answers_nothing_invalidated_nor_while_the_feed_is_down() {
        let cache = trusted_cache();
        let key = SessionToken::generate().key();
        let record = Arc::new(record_for(Some("alice")));
        cache.insert(key, record.clone(), cache.epoch());
        cache.invalidate(&key);
        assert!(cache.hit(&key).is_none(), "a write anywhere drops the copy");
        cache.insert(key, record, cache.epoch());
        assert!(cache.hit(&key).is_some());
        cache.lost();
        assert!(cache.hit(&key).is_none(), "a cache whose feed is down answers from Redis");
    }
}
