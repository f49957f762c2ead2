//! "Ended means ended" under faults, on real `tessera` processes and real
//! `redis-server`s: a node cut off from Redis (a fault proxy that stops
//! forwarding without closing) stops answering from memory within the lease;
//! a frozen Redis turns into 503 within the lease; revocations outlive a
//! Redis that restarts empty or from an older snapshot; a single logout
//! outlives a crash under the recommended `appendfsync always`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::node::Node;
use support::{e164, Sink, PASSWORD, PHONE};
use tessera_testkit::{FaultProxy, RedisServer};

/// The documented worst case (README "Guarantees"): the 250 ms lease plus
/// scheduling slack on a loaded CI machine.
const STALE_BOUND: Duration = Duration::from_millis(300);

struct Setup {
    data: tempfile::TempDir,
    sink: Sink,
    sink_url: String,
    http: reqwest::Client,
}

impl Setup {
    async fn new() -> Self {
        let (sink, addr) = Sink::start().await;
        Self {
            data: tempfile::tempdir().unwrap(),
            sink,
            sink_url: format!("http://{addr}/sms"),
            http: reqwest::Client::new(),
        }
    }

    async fn node(&self, redis_url: &str, signed: bool) -> Node {
        let mut extra = vec!["--redis", redis_url, "--redis-timeout-ms", "250", "--cache-lease-ms", "250"];
        if signed {
            extra.extend(["--tokens", "signed"]);
        }
        Node::start(self.data.path(), &self.sink_url, &extra).await
    }

    async fn register(&self, node: &Node) {
        let r = self.http.post(node.url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let code = self.sink.last_code(&e164(PHONE));
        let body =
            json!({"telephone": PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30, "password": PASSWORD});
        let r = self.http.post(node.url("/user/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    /// A header login on `node`: the token `/user/me` takes.
    async fn login(&self, node: &Node) -> String {
        node.login_header(&self.http).await["token"].as_str().unwrap().to_owned()
    }

    /// A header login on `node` as soon as it serves again (after a fault).
    async fn login_once_serving(&self, node: &Node) -> String {
        let started = Instant::now();
        loop {
            let r = self
                .http
                .post(node.url("/user/login"))
                .header("x-auth-mode", "header")
                .json(&json!({"telephone": PHONE, "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                return r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{} does not serve again", node.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every node serves a fresh login again and refuses every `ended` token.
    /// Right after a fault a node may still answer 503 until its connection
    /// is back (failing closed, as it should): the login waits for that,
    /// within `login_once_serving`'s bound.
    async fn serve_but_refuse(&self, nodes: &[Node], ended: &[String]) {
        for node in nodes {
            let fresh = self.login_once_serving(node).await;
            node.until_status(&self.http, &fresh, 200).await;
            for t in ended {
                assert_eq!(node.me_status(&self.http, t).await, 401, "{} accepted a revoked credential", node.base);
            }
        }
    }

    async fn post(&self, node: &Node, path: &str, token: &str) -> u16 {
        self.http.post(node.url(path)).bearer_auth(token).send().await.unwrap().status().as_u16()
    }
}

/// Polls `GET /user/me` with `token` on `node` for `window`; returns every
/// (invoked at, status) seen.
async fn watch(http: &reqwest::Client, node: &Node, token: &str, window: Duration) -> Vec<(Instant, u16)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < window {
        let at = Instant::now();
        let r = http.get(node.url("/user/me")).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        if status == 503 {
            assert!(r.headers().contains_key("retry-after"), "503 carries Retry-After");
        }
        seen.push((at, status));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

/// Asserts nothing invoked `bound` after `ended` answered 200; returns when
/// the last 200 was invoked, relative to `ended`.
fn assert_refused_after(seen: &[(Instant, u16)], ended: Instant, bound: Duration, what: &str) -> Option<Duration> {
    let last_ok = seen.iter().filter(|(_, s)| *s == 200).map(|(at, _)| at.saturating_duration_since(ended)).max();
    for (at, status) in seen {
        if *at >= ended + bound {
            assert_ne!(*status, 200, "{what}: 200 at {:?} after the end", at.saturating_duration_since(ended));
        }
    }
    eprintln!("{what}: last 200 invoked {last_ok:?} after the end");
    last_ok
}

async fn a_partitioned_node_stops_answering_from_memory(signed: bool) {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.port());
    let setup = Setup::new().await;
    let healthy = setup.node(&redis.url(), signed).await;
    let cut = setup.node(&proxy.url(), signed).await;
    setup.register(&healthy).await;
    let token = setup.login(&healthy).await;
    assert_eq!(cut.me_status(&setup.http, &token).await, 200, "read (and cached) through the proxy");

    // Half-open partition: the cut node's connections stay open, silent.
    proxy.freeze();
    assert_eq!(setup.post(&healthy, "/user/logout", &token).await, 200);
    let ended = Instant::now();
    let seen = watch(&setup.http, &cut, &token, Duration::from_millis(900)).await;
    assert_refused_after(&seen, ended, STALE_BOUND, "cut-off node");
    let (_, last) = seen.last().unwrap();
    assert_eq!(*last, 503, "a node that cannot ask Redis says so");

    // Healed: the node resubscribes and knows the session ended.
    proxy.heal();
    cut.until_status(&setup.http, &token, 401).await;
    let fresh = setup.login(&healthy).await;
    cut.until_status(&setup.http, &fresh, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_stops_answering_from_memory_opaque() {
    a_partitioned_node_stops_answering_from_memory(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_stops_answering_from_memory_signed() {
    a_partitioned_node_stops_answering_from_memory(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_turns_cached_answers_into_503_within_the_lease() {
    let redis = RedisServer::start();
    let setup = Setup::new().await;
    let node = setup.node(&redis.url(), false).await;
    setup.register(&node).await;
    let token = setup.login(&node).await;
    assert_eq!(node.me_status(&setup.http, &token).await, 200);
    let pid = redis.pid().unwrap().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let frozen = Instant::now();
    let seen = watch(&setup.http, &node, &token, Duration::from_millis(800)).await;
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    // Nothing ended here, but nothing can be known either: memory may not
    // answer past the lease.
    assert_refused_after(&seen, frozen, STALE_BOUND, "frozen Redis");
    node.until_status(&setup.http, &token, 200).await;
}

/// Logs in three times, ends the first by revoking it from the third and
/// the rest by "everywhere" from a fourth; returns the three ended tokens.
async fn end_sessions_by_others(setup: &Setup, node: &Node, before_ending: impl FnOnce()) -> Vec<String> {
    let tokens = [setup.login(node).await, setup.login(node).await, setup.login(node).await];
    before_ending();
    let r = setup.http.get(node.url("/user/sessions")).bearer_auth(&tokens[2]).send().await.unwrap();
    let sessions: Value = r.json().await.unwrap();
    let first = sessions["data"].as_array().unwrap().iter().find(|s| s["current"] == false).unwrap()["id"].clone();
    let r = setup
        .http
        .delete(node.url(&format!("/user/sessions/{}", first.as_str().unwrap())))
        .bearer_auth(&tokens[2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fourth = setup.login(node).await;
    assert_eq!(setup.post(node, "/user/logout-everywhere", &fourth).await, 200);
    for t in &tokens {
        assert_eq!(node.me_status(&setup.http, t).await, 401);
    }
    tokens.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_sessions_stay_revoked_when_redis_restarts_from_an_older_snapshot() {
    let mut redis = RedisServer::start();
    let setup = Setup::new().await;
    let mut nodes = vec![setup.node(&redis.url(), false).await, setup.node(&redis.url(), false).await];
    setup.register(&nodes[0]).await;
    // The snapshot is taken while all three sessions are alive.
    let ended = end_sessions_by_others(&setup, &nodes[0], || assert!(redis.cmd("SAVE").contains("OK"))).await;
    redis.restart(); // kill -9, then load the older dump.rdb
    assert!(redis.cmd("DBSIZE").trim_start_matches(':').trim() != "0", "the snapshot brought sessions back");
    // Every node, including one started after the restart, refuses them.
    nodes.push(setup.node(&redis.url(), false).await);
    setup.serve_but_refuse(&nodes, &ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_revocations_stay_when_redis_restarts_empty() {
    let mut redis = RedisServer::start();
    let setup = Setup::new().await;
    let mut nodes = vec![setup.node(&redis.url(), true).await, setup.node(&redis.url(), true).await];
    setup.register(&nodes[0]).await;
    let logged_out = setup.login(&nodes[0]).await;
    assert_eq!(setup.post(&nodes[0], "/user/logout", &logged_out).await, 200);
    let mut ended = end_sessions_by_others(&setup, &nodes[0], || {}).await;
    ended.push(logged_out);
    redis.restart(); // kill -9; no persistence: Redis comes back empty
    nodes.push(setup.node(&redis.url(), true).await);
    setup.serve_but_refuse(&nodes, &ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_logout_survives_a_crash_with_appendfsync_always() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let setup = Setup::new().await;
    let node = setup.node(&redis.url(), false).await;
    setup.register(&node).await;
    let kept = setup.login(&node).await;
    let ended = setup.login(&node).await;
    assert_eq!(setup.post(&node, "/user/logout", &ended).await, 200);
    redis.restart(); // kill -9, then replay the append-only file
    node.until_status(&setup.http, &kept, 200).await;
    assert_eq!(node.me_status(&setup.http, &ended).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_a_signed_token_node_serves_again_within_two_seconds() {
    // A demoted master still answers reads and PUBLISH: a node whose
    // command connection stayed on it would never hear its own heartbeats
    // on the new master, and would answer 503 for ever.
    let setup = tessera_testkit::SentinelSetup::start();
    let s = Setup::new().await;
    let node = s.node(&setup.url(), true).await;
    s.register(&node).await;
    let token = s.login(&node).await;
    let old = setup.current_master_port();
    let reply = tessera_testkit::command(setup.sentinels[0].port(), &format!("SENTINEL FAILOVER {}", setup.name));
    assert!(reply.unwrap().starts_with("+OK"));
    let started = Instant::now();
    while setup.current_master_port() == old {
        assert!(started.elapsed() < Duration::from_secs(20), "no failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let promoted = Instant::now();
    // Serving again means three 200s in a row after the promotion.
    let mut streak = 0;
    while streak < 3 {
        assert!(promoted.elapsed() < Duration::from_secs(4), "not serving {:?} after the failover", promoted.elapsed());
        streak = if node.me_status(&s.http, &token).await == 200 { streak + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("serving {:?} after the promotion", promoted.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_others_reaches_families_whose_records_redis_lost() {
    // Redis restarts empty: the family record of `lost` is gone, so no
    // listing can name it; "end my other sessions" must still end it.
    let mut redis = RedisServer::start();
    let setup = Setup::new().await;
    let nodes = vec![setup.node(&redis.url(), true).await, setup.node(&redis.url(), true).await];
    setup.register(&nodes[0]).await;
    let lost = setup.login(&nodes[0]).await;
    redis.restart();
    let mine = setup.login_once_serving(&nodes[1]).await;
    // A login needs only the command connection; accepting a token needs the
    // node's revocation feed too, which resubscribes on its own backoff: each
    // node answers 503 until its feed is back, then 200.
    nodes[0].until_status(&setup.http, &lost, 200).await; // a valid token outlives its lost record
    nodes[1].until_status(&setup.http, &mine, 200).await;
    let r = setup.http.delete(nodes[1].url("/user/sessions")).bearer_auth(&mine).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for node in &nodes {
        node.until_status(&setup.http, &lost, 401).await;
        assert_eq!(node.me_status(&setup.http, &mine).await, 200, "the caller's own session stays");
    }
}
