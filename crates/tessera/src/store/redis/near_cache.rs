//! Recently used sessions kept in this process, invalidated by push.
//!
//! Every write script publishes the keys it changed on one pub/sub channel;
//! each node subscribes and drops those entries. Pub/sub rather than RESP3
//! client-side caching because it works the same on standalone, Sentinel
//! and Cluster (a `PUBLISH` reaches subscribers on every cluster node), and
//! because the invalidation covers writes made inside Lua scripts.
//!
//! The cache is trusted only while the subscription is up: when it drops,
//! every lookup goes to Redis until the node has resubscribed and flushed.
//! An epoch counter stops a load that raced with an invalidation from
//! putting the stale copy back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quick_cache::sync::Cache;

use super::conn::RedisConn;
use crate::record::SessionRecord;
use crate::token::SessionKey;

/// The near cache of one node.
#[derive(Debug)]
pub struct NearCache {
    entries: Cache<SessionKey, (Arc<SessionRecord>, Instant)>,
    max_age: Duration,
    trusted: AtomicBool,
    epoch: AtomicU64,
}

impl NearCache {
    /// A cache of at most `capacity` sessions, each served for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Cache::new(capacity.max(1)),
            max_age,
            trusted: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
        }
    }

    /// Whether lookups may be answered from memory now.
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
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
        self.trusted.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn trust_afresh(&self) {
        self.entries.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.trusted.store(true, Ordering::Release);
    }
}

/// How often the listener proves its subscription is alive (a `PING` on
/// the pub/sub connection) and, under Sentinel, still on the current master.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Keeps the subscription up for as long as the cache lives: subscribe,
/// flush, trust; on loss, distrust and try again.
///
/// Loss is a closed connection, a `PING` that gets no answer (a half-open
/// TCP connection would otherwise look like a quiet channel), or, under
/// Sentinel, a master that is no longer the one subscribed to (a demoted
/// but reachable master would never see the new master's publishes).
pub fn spawn_invalidation_listener(
    cache: Arc<NearCache>,
    conn: RedisConn,
    channel: String,
    parse: fn(&str) -> Option<SessionKey>,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&cache);
    drop(cache);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(cache) = weak.upgrade() else { return };
            let subscribed = async {
                let client = conn.pubsub_client().await?;
                let server = client.get_connection_info().addr().to_string();
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>((pubsub, server))
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok((mut pubsub, server))) => {
                    cache.trust_afresh();
                    tracing::info!(%server, "near cache subscribed; trusting it");
                    backoff = Duration::from_millis(50);
                    drop(cache);
                    let mut checked = Instant::now();
                    loop {
                        let next = tokio::time::timeout(CHECK_EVERY, pubsub.on_message().next()).await;
                        let Some(cache) = weak.upgrade() else { return };
                        match next {
                            Ok(Some(message)) => {
                                let payload: String = message.get_payload().unwrap_or_default();
                                for key in payload.split(' ').filter_map(parse) {
                                    cache.invalidate(&key);
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                        if checked.elapsed() >= CHECK_EVERY {
                            checked = Instant::now();
                            if !still_good(&conn, &mut pubsub, &server).await {
                                break;
                            }
                        }
                    }
                    let Some(cache) = weak.upgrade() else { return };
                    cache.distrust();
                    tracing::warn!("near cache subscription lost; serving from Redis until it is back");
                }
                Ok(Err(e)) => {
                    cache.distrust();
                    tracing::debug!(error = %e, "near cache cannot subscribe yet");
                }
                Err(_) => cache.distrust(),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// Whether the subscription still answers and is still on the master.
async fn still_good(conn: &RedisConn, pubsub: &mut redis::aio::PubSub, server: &str) -> bool {
    let limit = conn.timeout().max(Duration::from_millis(500));
    let pong = tokio::time::timeout(limit, pubsub.ping::<redis::Value>()).await;
    if !matches!(pong, Ok(Ok(_))) {
        return false;
    }
    if !conn.is_sentinel() {
        return true;
    }
    match tokio::time::timeout(limit, conn.pubsub_client()).await {
        Ok(Ok(client)) => client.get_connection_info().addr().to_string() == server,
        // The sentinels cannot say: keep the subscription rather than flap.
        _ => true,
    }
}
