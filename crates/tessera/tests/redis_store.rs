//! The Redis store against real servers: standalone, Sentinel (master,
//! replica, three sentinels) and a three-master Cluster, each started by
//! the test harness on free loopback ports.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use support::TestApp;
use tessera::record::SessionRecord;
use tessera::store::conformance::record_for;
use tessera::store::redis::{NearCacheConfig, RedisConn, RedisStoreConfig, RedisTarget};
use tessera::{CookieSettings, RedisStore, SessionConfig, SessionKey, SessionStore, SessionToken, StoreError, UserId};
use tessera_testkit::{RedisCluster, RedisServer, SentinelSetup};

fn standalone() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn sentinel() -> &'static SentinelSetup {
    static SETUP: OnceLock<SentinelSetup> = OnceLock::new();
    SETUP.get_or_init(SentinelSetup::start)
}

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// A store with its own key prefix, so tests sharing a server never meet.
fn config(near_cache: bool) -> RedisStoreConfig {
    RedisStoreConfig {
        prefix: format!("t{}", &SessionToken::generate().key().to_hex()[..10]),
        near_cache: near_cache.then(NearCacheConfig::default),
        ..RedisStoreConfig::default()
    }
}

/// [`config`] with a 2 s command deadline and near-cache lease, for tests
/// that count round trips or rely on a cached copy: a test process starved
/// of CPU for a few hundred milliseconds (other test binaries run alongside)
/// would otherwise see its near cache distrusted and refilled from Redis.
fn patient(near_cache: bool) -> RedisStoreConfig {
    let deadline = Duration::from_secs(2);
    let near_cache = near_cache.then(|| NearCacheConfig { lease: deadline, ..NearCacheConfig::default() });
    RedisStoreConfig { timeout: deadline, near_cache, ..config(false) }
}

/// How a session's key name spells its digest (unpadded base64url).
fn digest(key: &tessera::SessionKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

async fn store(url: &str, near_cache: bool) -> RedisStore {
    RedisStore::connect(url, config(near_cache)).await.unwrap()
}

mod standalone_with_near_cache {
    tessera::store_conformance_tests!(async {
        std::sync::Arc::new(super::store(&super::standalone().url(), true).await)
    });
}

mod standalone_without_near_cache {
    tessera::store_conformance_tests!(async {
        std::sync::Arc::new(super::store(&super::standalone().url(), false).await)
    });
}

mod sentinel_master_replica {
    tessera::store_conformance_tests!(async {
        std::sync::Arc::new(super::store(&super::sentinel().url(), true).await)
    });
}

mod three_master_cluster {
    tessera::store_conformance_tests!(async { std::sync::Arc::new(super::store(&super::cluster().url(), true).await) });
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn trusted(store: &RedisStore) {
    eventually("near cache subscribed", async || store.near_cache().unwrap().is_trusted()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_node_reaches_the_near_cache_of_another() {
    let url = standalone().url();
    let cfg = config(true);
    let a = RedisStore::connect(&url, cfg.clone()).await.unwrap();
    let b = RedisStore::connect(&url, cfg).await.unwrap();
    trusted(&a).await;
    trusted(&b).await;
    let user = UserId::parse("alice").unwrap();
    let key = b.issue_token(Some(&user)).key();
    a.create(&key, &record_for(Some("alice"))).await.unwrap();
    assert!(b.load(&key).await.unwrap().is_some(), "b caches it");
    let started = Instant::now();
    a.delete(&key).await.unwrap();
    eventually("b forgets the session", async || b.load(&key).await.unwrap().is_none()).await;
    eprintln!("invalidation reached the other node after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_users_sessions_on_one_node_reaches_another_on_a_cluster() {
    let url = cluster().url();
    let cfg = config(true);
    let a = RedisStore::connect(&url, cfg.clone()).await.unwrap();
    let b = RedisStore::connect(&url, cfg).await.unwrap();
    trusted(&b).await;
    let user = UserId::parse("bob").unwrap();
    let keys: Vec<_> = (0..3).map(|_| a.issue_token(Some(&user)).key()).collect();
    for key in &keys {
        a.create(key, &record_for(Some("bob"))).await.unwrap();
        assert!(b.load(key).await.unwrap().is_some());
    }
    assert_eq!(a.delete_user(&user, Some(&keys[0])).await.unwrap(), 2);
    for key in &keys[1..] {
        eventually("b forgets ended sessions", async || b.load(key).await.unwrap().is_none()).await;
    }
    assert!(b.load(&keys[0]).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_keys_share_one_cluster_slot() {
    let c = cluster();
    let cfg = config(false);
    let prefix = cfg.prefix.clone();
    let store = RedisStore::connect(&c.url(), cfg).await.unwrap();
    let user = UserId::parse("carol").unwrap();
    let key = store.issue_token(Some(&user)).key();
    store.create(&key, &record_for(Some("carol"))).await.unwrap();
    let names: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| {
            let reply = n.cmd("KEYS *");
            reply.lines().filter(|l| l.contains(":{")).map(str::to_owned).collect::<Vec<_>>()
        })
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let slots: Vec<String> = names.iter().map(|n| c.nodes[0].cmd(&format!("CLUSTER KEYSLOT {n}"))).collect();
    assert_eq!(slots[0], slots[1], "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_expire_at_the_idle_deadline_and_hold_no_token() {
    let server = standalone();
    let store = store(&server.url(), false).await;
    let token = SessionToken::generate();
    store.create(&token.key(), &record_for(Some("dave"))).await.unwrap();
    let name = format!("*{}", digest(&token.key()));
    let keys = server.cmd(&format!("KEYS {name}"));
    let key_name = keys.lines().find(|l| l.contains(":s:")).unwrap().to_owned();
    let ttl: i64 = server.cmd(&format!("PTTL {key_name}")).trim_start_matches(':').trim().parse().unwrap();
    assert!((29 * 60_000..=30 * 60_000).contains(&ttl), "TTL follows the idle deadline: {ttl}");
    let dump = server.cmd(&format!("GET {key_name}"));
    assert!(!dump.contains(&token.expose()) && !key_name.contains(&token.expose()));
}

fn dev() -> SessionConfig {
    SessionConfig { cookie: CookieSettings::insecure_dev(), ..SessionConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request_are_counted() {
    let server = RedisServer::start();
    let monitor = tessera_testkit::Monitor::start(server.port());
    let round_trips = |_: &RedisServer| monitor.client_commands() as u64;
    let uncached = Arc::new(RedisStore::connect(&server.url(), patient(false)).await.unwrap());
    let app = TestApp::spawn_on(uncached, dev()).await;
    // Load every script once (the first call of each costs a NOSCRIPT
    // retry), so that the counts below are the steady state.
    let warm = app.login_header("warm").await;
    app.clock.advance(Duration::from_secs(181));
    app.get("/me").bearer_auth(&warm).send().await.unwrap();

    let before = round_trips(&server);
    let token = app.login_header("alice").await;
    assert_eq!(round_trips(&server) - before, 1, "login is one script");

    let before = round_trips(&server);
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(round_trips(&server) - before, 1, "a read-only request is one GET");

    app.clock.advance(Duration::from_secs(181));
    let before = round_trips(&server);
    app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(round_trips(&server) - before, 2, "plus one touch once due");
    let before = round_trips(&server);
    app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(round_trips(&server) - before, 1, "and no touch right after");

    let before = round_trips(&server);
    app.get("/public").send().await.unwrap();
    app.get("/me").send().await.unwrap();
    app.get("/me").bearer_auth("malformed").send().await.unwrap();
    assert_eq!(round_trips(&server) - before, 0, "no credential, no Redis");

    // With the near cache: the second read costs nothing.
    let cached = Arc::new(RedisStore::connect(&server.url(), patient(true)).await.unwrap());
    trusted(&cached).await;
    let app = TestApp::spawn_on(cached, dev()).await;
    let token = app.login_header("bob").await;
    app.get("/me").bearer_auth(&token).send().await.unwrap();
    let before = round_trips(&server);
    for _ in 0..5 {
        assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    assert_eq!(round_trips(&server) - before, 0, "near-cache hits cost no round trip");
}

/// `MGET` calls the server has answered so far.
fn mgets(server: &RedisServer) -> u64 {
    server.commandstats().get("mget").copied().unwrap_or(0)
}

// On a one-thread runtime, so that which reads share a batch is decided by
// the scheduler alone: every read queued before the batcher's turn.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_uncached_reads_share_one_mget_and_its_fate() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), config(false)).await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..64 {
        let (key, user) = (SessionToken::generate().key(), format!("user-{i}"));
        store.create(&key, &record_for(Some(&user))).await.unwrap();
        sessions.push((key, user));
    }
    let unknown = SessionToken::generate().key();

    let before = mgets(&server);
    let reads = sessions.iter().map(|(key, _)| store.load(key)).chain([store.load(&unknown)]);
    let loaded = futures_util::future::join_all(reads).await;
    assert_eq!(
        mgets(&server) - before,
        2,
        "65 reads queued together are one MGET, and one more for the legacy name of the one not found"
    );
    for ((_, user), record) in sessions.iter().zip(&loaded) {
        let record = record.as_ref().unwrap().as_ref().expect("stored, so found");
        assert_eq!(record.user_id.as_ref().map(UserId::as_str), Some(user.as_str()), "each read gets its own session");
    }
    assert!(matches!(loaded.last(), Some(Ok(None))), "an unknown key is absent, not an error: {:?}", loaded.last());

    // A read alone is not held back waiting for company.
    let before = mgets(&server);
    assert!(store.load(&sessions[0].0).await.unwrap().is_some());
    assert_eq!(mgets(&server) - before, 1);

    // A batch that fails fails every read in it, as unavailable: never absent.
    server.kill();
    let loaded = futures_util::future::join_all(sessions.iter().take(16).map(|(key, _)| store.load(key))).await;
    for result in loaded {
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    }
}

/// Lookups of the master through the sentinels so far, counted where a
/// sentinel's `INFO` cannot: each one checks the named master's `ROLE`
/// (once per sentinel it heard from, so one lookup is 1 to 3 of these).
fn master_lookups(setup: &SentinelSetup) -> u64 {
    [&setup.master, &setup.replica].iter().map(|s| s.commandstats().get("role").copied().unwrap_or(0)).sum()
}

// After a failover every request in flight finds no master connection at
// once. Each asking the sentinels in turn kept a node answering 503 for
// seconds under load; one lookup must serve them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_find_no_master_connection_ask_the_sentinels_once() {
    let setup = tokio::task::block_in_place(SentinelSetup::start);
    let target = RedisTarget::parse(&setup.url()).unwrap();
    let ping = |conn: RedisConn| async move {
        conn.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await
    };
    let before = master_lookups(&setup);
    let conn = RedisConn::connect(target, Duration::from_secs(2)).await.unwrap();
    let pings = futures_util::future::join_all((0..32).map(|_| ping(conn.clone()))).await;
    assert!(pings.iter().all(|p| matches!(p.as_deref(), Ok("PONG"))), "{pings:?}");
    let lookups = master_lookups(&setup) - before;
    assert!(
        (1..=setup.sentinels.len() as u64).contains(&lookups),
        "32 requests without a connection make one lookup (at most one question per sentinel), made {lookups}"
    );
}

fn signal(server: &RedisServer, signal: &str) {
    let pid = server.pid().expect("the server runs").to_string();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
}

// While a failover has left the master without a replica, every wait for
// one runs out. Sent on the connection every request shares, each wait held
// back all the node's commands for half the deadline, and the waits of
// concurrent logouts queued one behind another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_missing_replica_are_shared_and_hold_nothing_else_back() {
    let setup = tokio::task::block_in_place(SentinelSetup::start);
    let target = RedisTarget::parse(&setup.url()).unwrap();
    let conn = RedisConn::connect(target, Duration::from_secs(1)).await.unwrap();
    let ping = |conn: RedisConn| async move {
        conn.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await.unwrap()
    };
    ping(conn.clone()).await;
    let waits = || setup.master.commandstats().get("wait").copied().unwrap_or(0);
    let waits_before = waits();

    signal(&setup.replica, "-STOP");
    let confirmations: Vec<_> = (0..8)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let confirmed = conn.confirm_replicated("test:replicated").await;
                (confirmed, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ping(conn.clone()).await;
    let pinged = Instant::now();
    let confirmed = futures_util::future::join_all(confirmations).await;
    signal(&setup.replica, "-CONT");

    for (result, finished) in confirmed.into_iter().map(Result::unwrap) {
        assert!(result.is_ok(), "an unconfirmed write stands (logged), it is not an error: {result:?}");
        assert!(finished > pinged, "a command sent while the waits run is answered before any of them ends");
    }
    let sent = waits() - waits_before;
    assert!(
        (1..=2).contains(&sent),
        "8 concurrent writers share the wait in flight and at most one more: {sent} WAITs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_in_bounded_time_and_service_resumes() {
    let mut server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.url(), config(true)).await.unwrap());
    trusted(&store).await;
    let app = TestApp::spawn_on(store.clone(), dev()).await;
    let token = app.login_header("alice").await;
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200, "cached now");

    server.kill();
    eventually("the node stops trusting its cache", async || !store.near_cache().unwrap().is_trusted()).await;
    let started = Instant::now();
    let r = app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 503, "a session that cannot be checked is never served");
    assert!(started.elapsed() < Duration::from_secs(2), "bounded: {:?}", started.elapsed());
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(support::problem(r).await, "store-unavailable");
    assert_eq!(app.get("/public").send().await.unwrap().status(), 200, "no credential, no Redis needed");

    // Redis comes back empty (no persistence): the node serves again, and
    // the lost session is honestly gone rather than served from memory.
    server.restart();
    eventually("the node serves again", async || {
        app.get("/me").bearer_auth(&token).send().await.map(|r| r.status() == 401).unwrap_or(false)
    })
    .await;
    let token = app.login_header("alice").await;
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_a_503_too() {
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.url(), config(false)).await.unwrap());
    let key = SessionToken::generate().key();
    // CLIENT PAUSE holds every other client's commands for 3 s; its `+OK`
    // comes back only once the pause is in force, so no head start is needed.
    let paused = tessera_testkit::command(server.port(), "CLIENT PAUSE 3000 ALL").unwrap();
    assert!(paused.starts_with("+OK"), "{paused}");
    let started = Instant::now();
    let err = store.load(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Gave up at the command deadline, not when the server answered again.
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_maxmemory_policy_is_reported() {
    let safe = store(&standalone().url(), false).await;
    assert_eq!(safe.evicting_policy().await, None, "the harness runs noeviction, Redis's default");
    let lru = RedisServer::start_with(&["--maxmemory-policy", "volatile-lru"]);
    let risky = store(&lru.url(), false).await;
    assert_eq!(risky.evicting_policy().await.as_deref(), Some("volatile-lru"));
}

/// The PTTL of the one key matching `pattern` on any of `nodes`.
fn pttl(nodes: &[&RedisServer], pattern: &str) -> i64 {
    for node in nodes {
        let keys = node.cmd(&format!("KEYS {pattern}"));
        if let Some(name) = keys.lines().find(|l| !l.starts_with('*') && !l.starts_with('$')) {
            return node.cmd(&format!("PTTL {name}")).trim_start_matches(':').trim().parse().unwrap();
        }
    }
    panic!("no key matches {pattern}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_indexes_expire_with_their_last_session_on_every_topology() {
    let c = cluster();
    let nodes: Vec<&RedisServer> = c.nodes.iter().collect();
    for (url, nodes, steered) in
        [(standalone().url(), vec![standalone()], true), (c.url(), nodes.clone(), true), (c.url(), nodes, false)]
    {
        let cfg = config(false);
        let prefix = cfg.prefix.clone();
        let store = RedisStore::connect(&url, cfg).await.unwrap();
        let user = UserId::parse(format!("ttl-{}", &SessionToken::generate().key().to_hex()[..8])).unwrap();
        // Unsteered keys land in another slot than the index on a Cluster.
        let key = if steered { store.issue_token(Some(&user)).key() } else { SessionToken::generate().key() };
        store.create(&key, &record_for(Some(user.as_str()))).await.unwrap();
        let ttl = pttl(&nodes, &format!("{prefix}:*:i:*"));
        // The deadline rounded up to the second, as index scores are.
        assert!(
            ttl > 11 * 3600 * 1000 && ttl <= 12 * 3600 * 1000 + 1000,
            "index TTL {ttl} ({url}, steered: {steered})"
        );
        assert_eq!(store.list_user(&user, tessera::Clock::now(&tessera::SystemClock)).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_already_past_its_deadlines_is_stored_and_gone_not_an_error() {
    for url in [standalone().url(), cluster().url()] {
        let store = store(&url, false).await;
        let user = UserId::parse("late").unwrap();
        let key = store.issue_token(Some(&user)).key();
        let mut record = record_for(Some("late"));
        record.idle_deadline = record.created_at - Duration::from_secs(1);
        record.absolute_deadline = record.created_at - Duration::from_secs(1);
        store.create(&key, &record).await.unwrap();
        assert_eq!(store.load(&key).await.unwrap(), None, "expired on arrival ({url})");
        assert!(store.list_user(&user, record.created_at).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_stops_answering_is_not_trusted() {
    let server = RedisServer::start();
    let store = store(&server.url(), true).await;
    trusted(&store).await;
    // The connection stays open but nothing answers: only the listener's
    // PING can tell this from a quiet channel.
    tessera_testkit::command(server.port(), "CLIENT PAUSE 3000 ALL").unwrap();
    eventually("distrust while Redis does not answer", async || !store.near_cache().unwrap().is_trusted()).await;
    eventually("trust again once it answers", async || store.near_cache().unwrap().is_trusted()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_cap_holds_on_redis() {
    let store = Arc::new(store(&standalone().url(), true).await);
    let app = TestApp::spawn_on(store, SessionConfig { max_sessions_per_user: Some(2), ..dev() }).await;
    let user = format!("cap-{}", &SessionToken::generate().key().to_hex()[..8]);
    let first = app.login_header(&user).await;
    app.clock.advance(Duration::from_secs(1));
    let second = app.login_header(&user).await;
    app.clock.advance(Duration::from_secs(1));
    let third = app.login_header(&user).await;
    assert_eq!(app.get("/me").bearer_auth(&first).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/me").bearer_auth(&second).send().await.unwrap().status(), 200);
    assert_eq!(app.get("/me").bearer_auth(&third).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_uncached_goes_past_the_near_cache() {
    let server = standalone();
    let cfg = patient(true);
    let prefix = cfg.prefix.clone();
    let store = RedisStore::connect(&server.url(), cfg).await.unwrap();
    trusted(&store).await;
    let user = UserId::parse("uncached").unwrap();
    let key = store.issue_token(Some(&user)).key();
    store.create(&key, &record_for(Some("uncached"))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some(), "now cached");
    // Deleted behind the store's back: no invalidation is published.
    let pattern = format!("{prefix}:*:s:{}", digest(&key));
    let script =
        "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('DEL', k) end return n";
    let deleted: i64 = store
        .connection()
        .run(|mut c| async move { redis::cmd("EVAL").arg(script).arg(0).arg(pattern).query_async(&mut c).await })
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store.load(&key).await.unwrap().is_some(), "the near cache still has its copy");
    assert!(store.load_uncached(&key).await.unwrap().is_none(), "load_uncached asks Redis");
}

/// A session where versions before 2026-12-06 kept it: `value` under the
/// digest in hex, filed in the user's own sorted set by absolute deadline.
async fn write_legacy(store: &RedisStore, prefix: &str, key: &SessionKey, record: &SessionRecord, value: Vec<u8>) {
    let tag = format!("{:02x}", key.as_bytes()[0]);
    let name = format!("{prefix}:{{{tag}}}:s:{}", key.to_hex());
    let user = record.user_id.as_ref().unwrap().as_str();
    let index = format!("{prefix}:{{{tag}}}:u:{user}");
    let (expire_at, score) = (record.idle_deadline.as_millis(), record.absolute_deadline.as_millis());
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(&name).arg(value).arg("PXAT").arg(expire_at).ignore();
    pipe.cmd("ZADD").arg(&index).arg(score).arg(key.to_hex()).ignore();
    pipe.cmd("PEXPIREAT").arg(&index).arg(score).ignore();
    store.connection().run(|mut c| async move { pipe.query_async::<()>(&mut c).await }).await.unwrap();
}

/// The value of a legacy session, as `cmd` reads it.
fn legacy_value(server: &RedisServer, prefix: &str, key: &SessionKey) -> String {
    server.cmd(&format!("GET {prefix}:{{{:02x}}}:s:{}", key.as_bytes()[0], key.to_hex()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_written_as_json_by_earlier_versions_are_read_saved_and_touched() {
    use tessera::record::SessionChange;
    let server = standalone();
    let cfg = config(false);
    let prefix = cfg.prefix.clone();
    let store = RedisStore::connect(&server.url(), cfg).await.unwrap();
    let user = UserId::parse("erin").unwrap();
    let (saved, touched) = (store.issue_token(Some(&user)).key(), store.issue_token(Some(&user)).key());
    for key in [&saved, &touched] {
        let record = record_for(Some("erin"));
        // What the JSON codec wrote: a CSRF token and a profile included.
        let (c, i, x) =
            (record.created_at.as_millis(), record.idle_deadline.as_millis(), record.absolute_deadline.as_millis());
        let json = format!(
            r#"{{"u":"erin","c":{c},"l":{c},"i":{i},"x":{x},"v":0,"m":{{"user_agent":"old\/1.0","ip":"10.0.0.9"}},"t":"Oq3vB5Xwq2yq0rq5R1xQ0s2wq9m7kQm3cJ0Wc2xYb1Q","a":{{"cart":[0,"[1,2]"],"gone":[0,null]}}}}"#
        );
        write_legacy(&store, &prefix, key, &record, json.into_bytes()).await;
        let old = store.load(key).await.unwrap().expect("the old value is read");
        assert_eq!(old.user_id.as_ref().map(UserId::as_str), Some("erin"));
        assert_eq!(
            (old.client.user_agent.as_deref(), old.attribute("cart")),
            (Some("old/1.0"), Some(&serde_json::json!([1, 2])))
        );
    }

    let now = tessera::Timestamp::from_millis(record_for(None).last_seen.as_millis() + 1000);
    let change = SessionChange {
        base_version: 0,
        set: [("cart".to_owned(), serde_json::json!([3]))].into(),
        removed: ["gone".to_owned()].into(),
        last_seen: now,
        idle_deadline: now + Duration::from_secs(1800),
    };
    assert_eq!(store.save(&saved, &change).await.unwrap(), 1);
    store.touch(&touched, now, now + Duration::from_secs(1800)).await.unwrap();

    let after = store.load(&saved).await.unwrap().unwrap();
    assert_eq!((after.version, after.attribute("cart")), (1, Some(&serde_json::json!([3]))));
    assert_eq!(after.attributes["gone"].value, None, "the removal is a tombstone");
    assert_eq!(after.client.ip, Some([10, 0, 0, 9].into()));
    let touched_after = store.load(&touched).await.unwrap().unwrap();
    assert_eq!((touched_after.last_seen, touched_after.attribute("cart")), (now, Some(&serde_json::json!([1, 2]))));
    for key in [&saved, &touched] {
        let value = legacy_value(server, &prefix, key);
        assert!(!value.contains("\"u\"") && !value.contains("Oq3vB5"), "written back as MessagePack: {value}");
    }
    assert_eq!(store.list_user(&user, now).await.unwrap().len(), 2, "listed from the legacy index");
}

/// `record` as versions before 2026-12-06 wrote it: a MessagePack array of
/// absolute times, the user agent and address as text (built by Redis's
/// own cmsgpack, as their scripts wrote it back).
async fn previous_value(store: &RedisStore, record: &SessionRecord) -> Vec<u8> {
    let script = "return cmsgpack.pack({ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), \
                  tonumber(ARGV[5]), 0, ARGV[6], ARGV[7], {}})";
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(0).arg(record.user_id.as_ref().unwrap().as_str());
    for time in [record.created_at, record.last_seen, record.idle_deadline, record.absolute_deadline] {
        cmd.arg(time.as_millis());
    }
    cmd.arg(record.client.user_agent.as_deref().unwrap()).arg(record.client.ip.unwrap().to_string());
    store.connection().run(|mut c| async move { cmd.query_async(&mut c).await }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_indexes_of_the_previous_version_keep_working_next_to_new_ones() {
    use tessera::record::SessionChange;
    let server = standalone();
    let cfg = config(true);
    let prefix = cfg.prefix.clone();
    let store = RedisStore::connect(&server.url(), cfg).await.unwrap();
    let user = UserId::parse("frank").unwrap();
    let record = record_for(Some("frank"));
    let old: Vec<SessionKey> = (0..3).map(|_| store.issue_token(Some(&user)).key()).collect();
    for key in &old {
        write_legacy(&store, &prefix, key, &record, previous_value(&store, &record).await).await;
    }
    let new = store.issue_token(Some(&user)).key();
    assert_eq!(store.rotate(None, &new, &record).await.unwrap(), Some(4), "the cap counts both indexes");
    assert_eq!(store.load(&old[0]).await.unwrap().as_deref(), Some(&record), "read as written");
    let listed = |keys: Vec<tessera::store::KeyedRecord>| {
        let mut keys: Vec<SessionKey> = keys.into_iter().map(|k| k.key).collect();
        keys.sort();
        keys
    };
    let mut all = vec![old[0], old[1], old[2], new];
    all.sort();
    assert_eq!(listed(store.list_user(&user, record.created_at).await.unwrap()), all);

    // Touched and saved in place, in the shape the previous version reads.
    let later = record.last_seen + Duration::from_secs(60);
    store.touch(&old[0], later, later + Duration::from_secs(1800)).await.unwrap();
    let change = SessionChange {
        base_version: 0,
        set: [("cart".to_owned(), serde_json::json!([3]))].into(),
        removed: Default::default(),
        last_seen: later,
        idle_deadline: later + Duration::from_secs(1800),
    };
    assert_eq!(store.save(&old[1], &change).await.unwrap(), 1);
    assert_eq!(store.load(&old[0]).await.unwrap().unwrap().last_seen, later);
    assert_eq!(store.load(&old[1]).await.unwrap().unwrap().attribute("cart"), Some(&serde_json::json!([3])));
    for key in &old[..2] {
        let value = legacy_value(server, &prefix, key);
        assert!(value.contains("frank") && value.contains("127.0.0.1"), "still the previous shape: {value}");
    }

    // Deleted, rotated away and ended with the user's other sessions.
    assert!(store.delete(&old[2]).await.unwrap());
    assert_eq!(store.list_user(&user, record.created_at).await.unwrap().len(), 3, "and pruned from the index");
    let rotated = store.issue_token(Some(&user)).key();
    assert_eq!(store.rotate(Some(&old[0]), &rotated, &record).await.unwrap(), Some(3));
    assert_eq!(store.load(&old[0]).await.unwrap(), None);
    assert_eq!(store.delete_user(&user, Some(&new)).await.unwrap(), 2, "the old one left and the rotated one");
    assert_eq!(listed(store.list_user(&user, record.created_at).await.unwrap()), vec![new]);
    let legacy_index = format!("{prefix}:{{{:02x}}}:u:frank", new.as_bytes()[0]);
    assert_eq!(server.cmd(&format!("EXISTS {legacy_index}")).trim_start_matches(':').trim(), "0");
}

/// A `RedisStore` belongs to the runtime it was connected on: its
/// connection driver, near-cache subscription and read batcher run there.
/// Used after that runtime has shut down (an embedder that makes a runtime
/// per test or per job, a shutdown race), it must fail closed: once the
/// near cache's lease has lapsed, every read and write is `Unavailable`,
/// promptly, with no panic, no hang and no record served from memory.
#[test]
fn a_store_used_after_its_runtime_shut_down_fails_closed_and_promptly() {
    let url = standalone().url();
    let user = UserId::parse("orphaned").unwrap();
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (store, key) = first.block_on(async {
        let store = store(&url, true).await;
        trusted(&store).await;
        let key = store.issue_token(Some(&user)).key();
        store.create(&key, &record_for(Some("orphaned"))).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_some(), "read once: in the near cache now");
        (store, key)
    });
    first.shutdown_timeout(Duration::from_secs(5));

    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    second.block_on(async {
        eventually("the near cache stops trusting itself", async || !store.near_cache().unwrap().is_trusted()).await;
        let bounded = Duration::from_secs(3);
        let started = Instant::now();
        let read = tokio::time::timeout(bounded, store.load(&key)).await.expect("a read answers, it does not hang");
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        let other = SessionToken::generate().key();
        let uncached = tokio::time::timeout(bounded, store.load(&other)).await.expect("an uncached read answers");
        assert!(matches!(uncached, Err(StoreError::Unavailable(_))), "{uncached:?}");
        let write = tokio::time::timeout(bounded, store.delete(&key)).await.expect("a write answers");
        assert!(matches!(write, Err(StoreError::Unavailable(_))), "{write:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "each answer within the command timeout: {:?}",
            started.elapsed()
        );
    });
}
