//! Signed-token revocations in Redis, pushed to every node by pub/sub.
//!
//! Entries live in one sorted set scored by the time they may be forgotten,
//! so loading the current set is one `ZRANGEBYSCORE` and the set prunes
//! itself. A revocation is one script: add, prune, publish. Each node
//! follows the channel like the near cache does; while its subscription is
//! down its list is not ready and access tokens get 503, never a guess.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::conn::RedisConn;
use super::names::replication_marker;
use super::scripts;
use super::subscription::{spawn_listener, Follower};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::lease::Lease;
use crate::revocation::{Revocation, RevocationArchive, RevocationList, RevocationStore};
use crate::store::StoreError;

/// How long `attach` waits for the first subscription and load.
const ATTACH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Revocations shared by every node on one Redis.
#[derive(Debug)]
pub struct RedisRevocations {
    conn: RedisConn,
    set: String,
    channel: String,
    /// Written before waiting for a replica.
    marker: String,
    lease: Duration,
    archive: Option<Arc<dyn RevocationArchive>>,
    /// What "now" is for pruning the set and the lists.
    clock: Arc<dyn Clock>,
    listeners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The listeners hold their followers weakly; these keep them alive
    /// for as long as this store is.
    followers: Mutex<Vec<Arc<ListFollower>>>,
}

impl Drop for RedisRevocations {
    fn drop(&mut self) {
        for listener in self.listeners.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            listener.abort();
        }
    }
}

impl RedisRevocations {
    /// Revocations under `<prefix>:revoked`, announced on `<prefix>:revocations`.
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self {
            set: format!("{prefix}:revoked"),
            channel: format!("{prefix}:revocations"),
            marker: replication_marker(prefix),
            lease: conn.timeout(),
            archive: None,
            clock: Arc::new(SystemClock),
            conn,
            listeners: Mutex::default(),
            followers: Mutex::default(),
        }
    }

    /// Lists are trusted for at most `lease` after their subscription last
    /// proved alive (default and maximum: the command deadline).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.min(self.conn.timeout());
        self
    }

    /// Also records every revocation in `archive`, and merges its entries
    /// into every (re)load, so a Redis that lost them cannot bring them back.
    pub fn with_archive(mut self, archive: Arc<dyn RevocationArchive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Reads time from `clock` instead of the system clock (the one the
    /// signed-token engine judges tokens by, e.g. a `ManualClock` in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The entries of `set` still in force after `now`.
async fn load(conn: &RedisConn, set: &str, now: Timestamp) -> Result<Vec<Revocation>, StoreError> {
    let set = set.to_owned();
    let now = now.as_millis();
    let entries: Vec<String> = conn
        .run(|mut c| async move {
            redis::cmd("ZRANGEBYSCORE").arg(set).arg(format!("({now}")).arg("+inf").query_async(&mut c).await
        })
        .await?;
    Ok(entries.iter().filter_map(|e| Revocation::decode(e)).collect())
}

#[async_trait]
impl RevocationStore for RedisRevocations {
    async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        // The archive first: what Redis acknowledges may still be lost.
        if let Some(archive) = &self.archive {
            archive.record(revocations).await?;
        }
        let mut invocation = scripts::REVOKE.prepare_invoke();
        invocation.key(&self.set).arg(self.clock.now().as_millis()).arg(&self.channel);
        for r in revocations {
            invocation.arg(r.until().as_millis()).arg(r.encode());
        }
        let _: i64 = self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        // Under Sentinel, wait for a replica: a failover must not forget it.
        self.conn.confirm_replicated(&self.marker).await
    }

    async fn attach(&self, list: Arc<RevocationList>) -> Result<(), StoreError> {
        // The list becomes ready only once the listener has subscribed and
        // then loaded (nothing published in between can be missed), and
        // the node starts only then.
        list.set_ready(false);
        list.set_patience(self.lease);
        let follower = Arc::new(ListFollower {
            list: list.clone(),
            conn: self.conn.clone(),
            set: self.set.clone(),
            archive: self.archive.clone(),
            clock: self.clock.clone(),
        });
        let listener = spawn_listener(follower.clone(), self.conn.clone(), self.channel.clone(), self.lease);
        self.followers.lock().unwrap_or_else(|p| p.into_inner()).push(follower);
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(listener);
        let started = std::time::Instant::now();
        while !list.is_ready() {
            if started.elapsed() > ATTACH_WITHIN {
                return Err(StoreError::Unavailable("cannot subscribe to the revocation channel".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Keeps one node's list current.
#[derive(Debug)]
struct ListFollower {
    list: Arc<RevocationList>,
    conn: RedisConn,
    set: String,
    archive: Option<Arc<dyn RevocationArchive>>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Follower for ListFollower {
    async fn subscribed(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.list.merge(&load(&self.conn, &self.set, now).await?);
        if let Some(archive) = &self.archive {
            self.list.merge(&archive.current(now).await?);
        }
        tracing::info!(entries = self.list.len(), "revocation list loaded");
        Ok(())
    }

    fn message(&self, payload: &str) {
        let entries: Vec<Revocation> = payload.lines().filter_map(Revocation::decode).collect();
        tracing::debug!(entries = entries.len(), "revocations received");
        self.list.add(&entries);
        self.list.prune(self.clock.now());
    }

    fn lost(&self) {
        tracing::warn!("revocation subscription lost; refusing access tokens until it is back");
        self.list.set_ready(false);
    }

    fn lease(&self) -> &Lease {
        self.list.lease()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::redis::RedisTarget;

    #[tokio::test]
    async fn the_set_is_pruned_by_the_injected_clock() {
        let server = tessera_testkit::RedisServer::start();
        let target = RedisTarget::parse(&server.url()).unwrap();
        let conn = RedisConn::connect(target, Duration::from_millis(250)).await.unwrap();
        let clock = ManualClock::starting_now();
        let store = RedisRevocations::new(conn.clone(), "t").with_clock(Arc::new(clock.clone()));
        let start = clock.now();
        let family = |sid: &str, hours: u64| Revocation::Family {
            sid: sid.into(),
            until: start + Duration::from_secs(hours * 3600),
        };
        store.revoke(&[family("a", 1)]).await.unwrap();
        clock.advance(Duration::from_secs(2 * 3600));
        store.revoke(&[family("b", 3)]).await.unwrap();
        // Redis's own clock is an hour short of "a"'s time; the store's is past it.
        assert_eq!(load(&conn, &store.set, start).await.unwrap(), vec![family("b", 3)]);
    }
}
