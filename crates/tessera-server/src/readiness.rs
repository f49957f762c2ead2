//! What `/readyz` consults besides the databases: whether this node is
//! shutting down, and the push feeds its memory depends on (the near
//! cache's invalidations and the revocation list), asked through their
//! leases: no store round trip while a feed's heartbeats come back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tessera::revocation::RevocationList;
use tessera::store::redis::NearCacheStats;
use tessera::RedisStore;

/// This node's readiness beyond what a query can tell.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
    /// The Redis session store, when sessions live there.
    redis_store: Option<Arc<RedisStore>>,
    /// How long a late heartbeat is waited for before a feed counts as down.
    patience: Duration,
    /// The revocation list requests are judged against, when one is.
    revocations: OnceLock<Arc<RevocationList>>,
}

impl Readiness {
    /// Readiness of a node whose sessions are in `redis_store` (`None`:
    /// the SQLite file); a feed whose heartbeat is late by up to `patience`
    /// still counts as up.
    pub fn new(redis_store: Option<Arc<RedisStore>>, patience: Duration) -> Self {
        Self { redis_store, patience, ..Self::default() }
    }

    /// From now on `/readyz` answers 503 (graceful shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether graceful shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The revocation list this node's requests are judged against.
    pub fn follow_revocations(&self, list: Arc<RevocationList>) {
        let _ = self.revocations.set(list);
    }

    /// `None` without a near cache; else whether its lease is valid (its
    /// invalidation feed proved alive within the lease), waiting up to the
    /// patience for a late heartbeat.
    pub async fn invalidation_feed(&self) -> Option<bool> {
        let cache = self.redis_store.as_ref()?.near_cache()?;
        Some(cache.trusted_within(self.patience).await)
    }

    /// `None` without a near cache; else whether its lease is valid now
    /// (no waiting: for `/metrics`).
    pub fn invalidation_feed_now(&self) -> Option<bool> {
        Some(self.redis_store.as_ref()?.near_cache()?.is_trusted())
    }

    /// `None` when no revocation list is consulted; else whether it is
    /// current now (no waiting: for `/metrics`).
    pub fn revocation_feed_now(&self) -> Option<bool> {
        Some(self.revocations.get()?.is_ready())
    }

    /// The near cache's counters, if there is one.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        Some(self.redis_store.as_ref()?.near_cache()?.stats())
    }

    /// `None` when no revocation list is consulted; else whether it is
    /// current (waiting, at most its own patience, for a late renewal).
    pub async fn revocation_feed(&self) -> Option<bool> {
        let list = self.revocations.get()?;
        Some(list.ready_within_patience().await)
    }
}
