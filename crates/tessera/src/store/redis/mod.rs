//! Sessions in Redis: standalone, Sentinel or Cluster, with a near cache.
//!
//! Layout (`names`): a session is one MessagePack value (`codec`, 40 bytes
//! for a typical login) at `<prefix>:{tt}:s:<digest in base64url>`, where
//! `tt` is the first byte of the digest; its TTL is the idle deadline capped
//! by the absolute deadline (`PEXPIREAT`). A user's sessions are filed in
//! one of 64 sorted sets per tag shared by all users of that tag,
//! `<prefix>:{tt}:i:<bucket>` (member: the 32-byte digest and the user id;
//! score: the absolute deadline in seconds), where `tt` and the bucket are
//! bytes of a hash of the user id: small shared sets stay compact listpacks,
//! where a set per user cost a key per user. Tokens for logged-in sessions
//! are drawn so that their digest starts with the user's byte
//! ([`SessionStore::issue_token`]), so every key of one user shares one hash
//! tag: login, logout-everywhere and index upkeep are single scripts, with
//! no CROSSSLOT on a Cluster. A typical session costs Redis 284 bytes at
//! 100 000 sessions, 261 at 1 000 000 (BENCHMARKS.md, 2026-12-06).
//!
//! Upgrade from versions before 2026-12-06 (hex digests in key names, a
//! sorted set per user, absolute times in the value): their sessions are
//! not moved, they live out their TTL where they are. A load looks under
//! the legacy name only when the current one is missing (on a Cluster both
//! in one `MGET`: one slot); the scripts act on whichever name
//! exists, write a value back in the shape they found it (so nodes still
//! on the earlier version read it), and read, prune and remove from the old
//! per-user set but never add to it. Nodes of the earlier version do not
//! see sessions created by upgraded ones: finish a rollout promptly.
//!
//! Round trips: load is one `MGET` (none on a near-cache hit; a second
//! for the legacy names of sessions not found), shared by the loads of
//! concurrent requests except on a Cluster; save,
//! touch, delete and create/rotate are one script each.

mod batch;
#[doc(hidden)] // the stored value's format: public for the benchmarks only
pub mod codec;
pub mod conn;
mod names;
mod near_cache;
mod replication;
mod revocations;
mod scripts;
mod subscription;
pub mod target;
mod user_agent;

pub use revocations::RedisRevocations;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use batch::ReadBatcher;

pub use conn::{AnyConnection, CommandObserver, CommandOutcome, RedisConn};
pub use near_cache::{NearCache, NearCacheStats};
pub use target::{InvalidRedisUrl, RedisTarget};

use names::{index_score, user_tag, Names, UserIndex};

use super::{KeyedRecord, SessionStore, StoreError};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::record::{SessionChange, SessionRecord, UserId};
use crate::token::{SessionKey, SessionToken};

/// How the Redis store behaves.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// Prefix of every key and of the invalidation channel (`tessera`).
    pub prefix: String,
    /// Deadline for each Redis call (250 ms): past it, 503.
    pub timeout: Duration,
    /// The near cache, or `None` to ask Redis every time.
    pub near_cache: Option<NearCacheConfig>,
}

/// Near-cache sizing.
#[derive(Debug, Clone, Copy)]
pub struct NearCacheConfig {
    /// Sessions kept at most (100 000).
    pub capacity: usize,
    /// How long a copy is served before it is read again (60 s), a bound on
    /// staleness should an invalidation ever be missed.
    pub max_age: Duration,
    /// How long copies may be served after the invalidation channel last
    /// proved alive (250 ms, never more than the command deadline): the
    /// worst case for a node cut off from Redis to keep answering from
    /// memory.
    pub lease: Duration,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        Self { capacity: 100_000, max_age: Duration::from_secs(60), lease: Duration::from_millis(250) }
    }
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            prefix: "tessera".into(),
            timeout: Duration::from_millis(250),
            near_cache: Some(NearCacheConfig::default()),
        }
    }
}

/// The Redis session store.
///
/// A store belongs to the Tokio runtime it is connected and first read on:
/// its background tasks (the connection's driver, the near cache's
/// subscription, the batcher of uncached reads) run there and stop with
/// it. Use it from that runtime, the usual case of one runtime per process;
/// a test that makes a runtime per test connects a store per test. Used
/// after its runtime has shut down, it fails closed: once the near cache's
/// lease lapses (250 ms by default), every call is
/// [`StoreError::Unavailable`] at once.
#[derive(Debug)]
pub struct RedisStore {
    conn: RedisConn,
    names: Names,
    channel: String,
    cluster: bool,
    cache: Option<Arc<NearCache>>,
    listener: Option<tokio::task::JoinHandle<()>>,
    /// Coalesces uncached reads (not on a Cluster); started by the first.
    reads: OnceLock<ReadBatcher>,
    /// The time the store prunes user indexes by; the trait methods are
    /// handed `now` where a decision depends on it.
    clock: Arc<dyn Clock>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (see [`RedisTarget`] for the forms).
    pub async fn connect(url: &str, config: RedisStoreConfig) -> Result<Self, StoreError> {
        let target = RedisTarget::parse(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let conn = RedisConn::connect(target, config.timeout).await?;
        Ok(Self::with_connection(conn, config))
    }

    /// A store over an existing connection (which the caller may share,
    /// e.g. for OTP challenges and rate limits).
    pub fn with_connection(conn: RedisConn, config: RedisStoreConfig) -> Self {
        let channel = format!("{}:invalidate", config.prefix);
        let cache = config.near_cache.map(|c| Arc::new(NearCache::new(c.capacity, c.max_age)));
        let lease = config.near_cache.as_ref().map_or(config.timeout, |c| c.lease.min(config.timeout));
        let listener = cache
            .as_ref()
            .map(|cache| subscription::spawn_listener(cache.clone(), conn.clone(), channel.clone(), lease));
        let cluster = matches!(conn.target(), RedisTarget::Cluster(_));
        let names = Names::new(config.prefix);
        Self { conn, names, channel, cluster, cache, listener, reads: OnceLock::new(), clock: Arc::new(SystemClock) }
    }

    /// Reads time from `clock` instead of the system clock (the one the
    /// session layer judges expiry by, so index pruning agrees with it,
    /// e.g. a `ManualClock` in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The connection, for other data that should live next to sessions.
    pub fn connection(&self) -> &RedisConn {
        &self.conn
    }

    /// The near cache, if enabled.
    pub fn near_cache(&self) -> Option<&NearCache> {
        self.cache.as_deref()
    }

    /// The server's `maxmemory-policy` when it may evict keys (anything but
    /// `noeviction`: every session key has a TTL, so `volatile-*` evicts
    /// them too). `None` if it does not, or if `CONFIG` is disabled.
    pub async fn evicting_policy(&self) -> Option<String> {
        let reply: Result<Vec<String>, _> =
            self.conn
                .run(|mut c| async move {
                    redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut c).await
                })
                .await;
        reply.ok().and_then(|pair| pair.get(1).cloned()).filter(|policy| policy != "noeviction")
    }

    /// Whether a script may name a session and a user's index together
    /// (always, but on a Cluster only when they share a slot).
    fn together(&self, key: &SessionKey, index: &UserIndex) -> bool {
        // A session's tag is its digest's first byte (see `Names::session`).
        !self.cluster || key.as_bytes()[0] == index.tag
    }

    fn invalidate_local(&self, key: &SessionKey) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
    }

    async fn create_script(
        &self,
        key: &SessionKey,
        index: Option<&UserIndex>,
        old: Option<&SessionKey>,
        record: &SessionRecord,
    ) -> Result<usize, StoreError> {
        let mut invocation = scripts::CREATE.prepare_invoke();
        invocation.key(self.names.session(key));
        if let Some(index) = index {
            invocation.key(&index.bucket).key(&index.legacy);
            if let Some(old) = old {
                invocation.key(self.names.session(old)).key(self.names.legacy_session(old));
            }
        }
        let expire_at = record.idle_deadline.min(record.absolute_deadline).as_millis();
        invocation
            .arg(expire_at)
            .arg(index_score(record.absolute_deadline))
            .arg(self.clock.now().as_millis())
            .arg(&self.channel)
            .arg(key.as_bytes().as_slice())
            .arg(old.map_or(&[][..], |o| o.as_bytes().as_slice()))
            .arg(codec::encode(record))
            .arg(index.map_or("", |i| i.user.as_str()));
        let created: i64 = self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        if created == 0 {
            return Err(StoreError::Conflict("session key exists".into()));
        }
        Ok(created as usize - 1)
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut invocation = scripts::DELETE.prepare_invoke();
        invocation.key(self.names.session(key)).key(self.names.legacy_session(key)).arg(&self.channel);
        let n: i64 = self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        Ok(n > 0)
    }

    /// The sessions in a user's indexes (after pruning by deadline).
    async fn index_members(&self, index: &UserIndex) -> Result<Vec<SessionKey>, StoreError> {
        let mut invocation = scripts::LIST_INDEX.prepare_invoke();
        invocation.key(&index.bucket).key(&index.legacy).arg(self.clock.now().as_millis()).arg(&index.user);
        let (filed, legacy): (Vec<Vec<u8>>, Vec<String>) =
            self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        let filed = filed.into_iter().filter_map(|d| d.try_into().ok().map(SessionKey::from_bytes));
        Ok(filed.chain(legacy.iter().filter_map(|hex| SessionKey::from_hex(hex))).collect())
    }

    /// Removes sessions from a user's indexes.
    async fn unindex(&self, index: &UserIndex, keys: &[SessionKey]) -> Result<(), StoreError> {
        let mut invocation = scripts::UNINDEX.prepare_invoke();
        invocation.key(&index.bucket).key(&index.legacy).arg(&index.user);
        for key in keys {
            invocation.arg(key.as_bytes().as_slice());
        }
        self.conn.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await }).await
    }

    /// One session, under its current name or, if an earlier version wrote
    /// it, its legacy one: in one `MGET` with the reads of concurrent
    /// requests ([`batch`]), or on a Cluster in one of its own (both names
    /// share a slot).
    async fn get(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let value = if self.cluster {
            self.get_alone(key).await?
        } else {
            let reads = self.reads.get_or_init(|| ReadBatcher::spawn(self.conn.clone(), self.names.clone()));
            reads.read(key).await?
        };
        value.map(|v| codec::decode(&v)).transpose()
    }

    async fn get_alone(&self, key: &SessionKey) -> Result<Option<Vec<u8>>, StoreError> {
        let names = [self.names.session(key), self.names.legacy_session(key)];
        let values: Vec<Option<Vec<u8>>> =
            self.conn.run(|mut c| async move { redis::cmd("MGET").arg(&names).query_async(&mut c).await }).await?;
        Ok(values.into_iter().flatten().next())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn issue_token(&self, user: Option<&UserId>) -> SessionToken {
        match user {
            Some(user) => {
                let tag = user_tag(user);
                SessionToken::generate_where(|k| k.as_bytes()[0] == tag)
            }
            None => SessionToken::generate(),
        }
    }

    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.rotate(None, key, record).await.map(|_| ())
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let epoch = match &self.cache {
            Some(cache) => {
                if let Some(hit) = cache.get(key) {
                    return Ok(Some(hit));
                }
                Some(cache.epoch())
            }
            None => None,
        };
        let record = self.get(key).await?.map(Arc::new);
        if let (Some(cache), Some(epoch), Some(record)) = (&self.cache, epoch, &record) {
            cache.insert(*key, record.clone(), epoch);
        }
        Ok(record)
    }

    fn load_cached(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        self.cache.as_ref()?.hit(key)
    }

    async fn load_uncached(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self.get(key).await?.map(Arc::new))
    }

    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        let mut invocation = scripts::SAVE.prepare_invoke();
        invocation
            .key(self.names.session(key))
            .key(self.names.legacy_session(key))
            .arg(change.base_version)
            .arg(change.last_seen.as_millis())
            .arg(change.idle_deadline.as_millis())
            .arg(&self.channel)
            .arg(change.set.len());
        for (name, value) in &change.set {
            invocation.arg(name).arg(value.to_string());
        }
        invocation.arg(change.removed.len());
        for name in &change.removed {
            invocation.arg(name);
        }
        let reply: Vec<redis::Value> =
            self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        self.invalidate_local(key);
        match reply.as_slice() {
            [redis::Value::Int(-2)] => Err(StoreError::NotFound),
            [redis::Value::Int(-1), name] => {
                let name: String = redis::from_redis_value(name.clone()).unwrap_or_default();
                Err(StoreError::Conflict(format!("attribute {name:?}")))
            }
            [redis::Value::Int(version)] if *version > 0 => Ok(*version as u64),
            other => Err(StoreError::Unavailable(format!("unexpected save reply {other:?}"))),
        }
    }

    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let mut invocation = scripts::TOUCH.prepare_invoke();
        invocation
            .key(self.names.session(key))
            .key(self.names.legacy_session(key))
            .arg("")
            .arg(last_seen.as_millis())
            .arg(idle_deadline.as_millis());
        let touched: i64 = self.conn.run(|mut c| async move { invocation.invoke_async(&mut c).await }).await?;
        if touched == 0 {
            self.invalidate_local(key);
            return Err(StoreError::NotFound);
        }
        // Touches are not broadcast: other nodes' copies only lag on the
        // idle deadline, which is why cached copies have a maximum age.
        if let Some(cache) = &self.cache {
            cache.update(key, |r| {
                r.last_seen = r.last_seen.max(last_seen);
                r.idle_deadline = r.idle_deadline.max(idle_deadline);
            });
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let existed = self.delete_session(key).await?;
        self.invalidate_local(key);
        self.conn.confirm_replicated(self.names.replication_marker()).await?;
        Ok(existed)
    }

    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        let index = self.names.user_index(user);
        let members = self.index_members(&index).await?;
        let records = futures_util::future::join_all(members.iter().map(|key| self.get(key))).await;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (key, record) in members.into_iter().zip(records) {
            match record? {
                Some(record) if record.user_id.as_ref() == Some(user) => {
                    if !record.is_expired(now) {
                        live.push(KeyedRecord { key, record });
                    }
                }
                _ => gone.push(key),
            }
        }
        if !gone.is_empty() {
            // Prune what expired by idleness or was deleted elsewhere.
            self.unindex(&index, &gone).await?;
        }
        Ok(live)
    }

    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        let index = self.names.user_index(user);
        let members: Vec<SessionKey> =
            self.index_members(&index).await?.into_iter().filter(|m| Some(m) != keep).collect();
        if members.is_empty() {
            return Ok(0);
        }
        let deleted = if members.iter().all(|m| self.together(m, &index)) {
            let mut invocation = scripts::DELETE_USER.prepare_invoke();
            invocation.key(&index.bucket).key(&index.legacy).arg(&self.channel).arg(&index.user);
            for member in &members {
                invocation.key(self.names.session(member)).key(self.names.legacy_session(member));
                invocation.arg(member.as_bytes().as_slice());
            }
            self.conn.run(|mut c| async move { invocation.invoke_async::<u64>(&mut c).await }).await?
        } else {
            let mut n = 0;
            for member in &members {
                n += u64::from(self.delete_session(member).await?);
            }
            self.unindex(&index, &members).await?;
            n
        };
        for key in &members {
            self.invalidate_local(key);
        }
        self.conn.confirm_replicated(self.names.replication_marker()).await?;
        Ok(deleted)
    }

    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        let index = record.user_id.as_ref().map(|u| self.names.user_index(u));
        let count = match &index {
            // The common case, one script: create, index, delete the old.
            Some(index) if self.together(new, index) && old.is_none_or(|o| self.together(o, index)) => {
                Some(self.create_script(new, Some(index), old, record).await?)
            }
            // Keys in different Cluster slots (or an anonymous session):
            // new first, then the index, then the old one goes.
            _ => {
                let same_slot_index = index.as_ref().filter(|i| self.together(new, i));
                self.create_script(new, same_slot_index, None, record).await?;
                if let (Some(index), None) = (&index, same_slot_index) {
                    let mut invocation = scripts::INDEX.prepare_invoke();
                    invocation
                        .key(&index.bucket)
                        .arg(new.as_bytes().as_slice())
                        .arg(index_score(record.absolute_deadline))
                        .arg(self.clock.now().as_millis())
                        .arg(&index.user);
                    self.conn.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await }).await?;
                }
                if let Some(old) = old {
                    self.delete_session(old).await?;
                }
                None
            }
        };
        if let Some(old) = old {
            self.invalidate_local(old);
            self.conn.confirm_replicated(self.names.replication_marker()).await?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::record::{Attributes, ClientMeta};

    /// A store without near cache on its own Redis, on a clock the test moves.
    async fn store_on_manual_clock() -> (RedisStore, ManualClock, tessera_testkit::RedisServer) {
        let server = tessera_testkit::RedisServer::start();
        let config = RedisStoreConfig { near_cache: None, ..RedisStoreConfig::default() };
        let clock = ManualClock::starting_now();
        let store = RedisStore::connect(&server.url(), config).await.unwrap().with_clock(Arc::new(clock.clone()));
        (store, clock, server)
    }

    /// `user`'s session opened at `now`, lapsing an hour later at the latest.
    fn opened(user: &UserId, now: Timestamp) -> SessionRecord {
        SessionRecord {
            user_id: Some(user.clone()),
            attributes: Attributes::new(),
            created_at: now,
            last_seen: now,
            idle_deadline: now + Duration::from_secs(1800),
            absolute_deadline: now + Duration::from_secs(3600),
            version: 0,
            client: ClientMeta::new(None, None),
        }
    }

    /// Files a session of `user` opened at `now`, as a login does.
    async fn log_in(store: &RedisStore, user: &UserId, now: Timestamp) -> SessionKey {
        let key = store.issue_token(Some(user)).key();
        store.create(&key, &opened(user, now)).await.unwrap();
        key
    }

    #[tokio::test]
    async fn user_indexes_are_pruned_by_the_injected_clock() {
        let (store, clock, _server) = store_on_manual_clock().await;
        let user = UserId::parse("alice").unwrap();
        let key = log_in(&store, &user, clock.now()).await;
        let index = store.names.user_index(&user);
        assert_eq!(store.index_members(&index).await.unwrap(), vec![key]);

        // Redis still holds the key (its own clock is an hour short of the
        // deadline), but the store's time is past it.
        clock.advance(Duration::from_secs(7200));
        assert!(store.index_members(&index).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_login_drops_what_has_lapsed_from_its_users_bucket() {
        let (store, clock, server) = store_on_manual_clock().await;
        let user = UserId::parse("alice").unwrap();
        log_in(&store, &user, clock.now()).await;
        // Past the first session's deadline by the store's clock (Redis's
        // own still keeps its key): the next login of the user prunes it.
        clock.advance(Duration::from_secs(7200));
        log_in(&store, &user, clock.now()).await;
        let bucket = store.names.user_index(&user).bucket;
        let members = tessera_testkit::command(server.port(), &format!("ZCARD {bucket}")).unwrap();
        assert_eq!(members.trim(), ":1", "only the second session is filed");
    }
}
