//! Token mode on three `tessera` processes sharing one Redis and one key
//! file: a revocation on one node is refused on the others long before the
//! token would expire, a node started after a revocation refuses too, and
//! a service in another language introspects tokens.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::introspect::{introspect, INTROSPECTION_SECRET};
use support::node::Node;
use support::{e164, Sink, PASSWORD, PHONE};
use tessera_testkit::RedisServer;

/// (access, refresh) from a header login on `node`.
async fn login(http: &reqwest::Client, node: &Node) -> (String, String) {
    let data = node.login_header(http).await;
    (data["accessToken"].as_str().unwrap().to_owned(), data["refreshToken"].as_str().unwrap().to_owned())
}

async fn refresh(http: &reqwest::Client, node: &Node, token: &str) -> reqwest::Response {
    http.post(node.url("/auth/refresh")).json(&json!({"refreshToken": token})).send().await.unwrap()
}

struct Cluster {
    _redis: RedisServer,
    data: tempfile::TempDir,
    sink: Sink,
    sink_url: String,
    redis_url: String,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let data = tempfile::tempdir().unwrap();
        let (sink, sink_addr) = Sink::start().await;
        let mut cluster = Cluster {
            redis_url: redis.url(),
            _redis: redis,
            data,
            sink,
            sink_url: format!("http://{sink_addr}/sms"),
            nodes: Vec::new(),
        };
        for _ in 0..3 {
            let node = cluster.node().await;
            cluster.nodes.push(node);
        }
        cluster
    }

    async fn node(&self) -> Node {
        // A one-second refresh grace window, so the theft test waits little.
        let extra = [
            "--redis",
            &self.redis_url,
            "--tokens",
            "signed",
            "--refresh-grace",
            "1",
            "--introspection-secret",
            INTROSPECTION_SECRET,
        ];
        Node::start(self.data.path(), &self.sink_url, &extra).await
    }
}

async fn register(http: &reqwest::Client, cluster: &Cluster) {
    let r = http.post(cluster.nodes[1].url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = cluster.sink.last_code(&e164(PHONE));
    let body = json!({"telephone": PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30, "password": PASSWORD});
    let r = http.post(cluster.nodes[0].url("/user/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_node_at_once_and_survive_a_restart() {
    let mut cluster = Cluster::start().await;
    let http = reqwest::Client::new();
    register(&http, &cluster).await;

    // Any node verifies a token another node signed, and refreshes it.
    let (access, refresh_token) = login(&http, &cluster.nodes[0]).await;
    for node in &cluster.nodes {
        assert_eq!(node.me_status(&http, &access).await, 200);
    }
    let r = refresh(&http, &cluster.nodes[1], &refresh_token).await;
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().await.unwrap()["data"]["accessToken"].as_str().unwrap().to_owned();

    // Logout on node 1: nodes 2 and 3 refuse the token within moments,
    // though it has ten minutes left.
    let r = http.post(cluster.nodes[0].url("/user/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for node in &cluster.nodes[1..] {
        let took = node.until_status(&http, &access, 401).await;
        eprintln!("revocation reached {} after {took:?}", node.base);
        assert!(took < Duration::from_secs(3), "revocation took {took:?} to reach {}", node.base);
    }

    // Logout everywhere on node 3 ends two families opened on nodes 1 and 2.
    let (a, _) = login(&http, &cluster.nodes[0]).await;
    let (b, b_refresh) = login(&http, &cluster.nodes[1]).await;
    let r = http.post(cluster.nodes[2].url("/user/logout-everywhere")).bearer_auth(&b).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for node in &cluster.nodes {
        node.until_status(&http, &a, 401).await;
        node.until_status(&http, &b, 401).await;
    }
    assert_eq!(refresh(&http, &cluster.nodes[0], &b_refresh).await.status(), 401);

    // A node that was down during a revocation loads it before it serves.
    let (c, _) = login(&http, &cluster.nodes[0]).await;
    let stopped = cluster.nodes.remove(2);
    stopped.stop().await;
    let r = http.post(cluster.nodes[0].url("/user/logout")).bearer_auth(&c).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let restarted = cluster.node().await;
    assert_eq!(restarted.me_status(&http, &c).await, 401, "the first answer of the restarted node already refuses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_theft_is_detected_across_nodes() {
    let cluster = Cluster::start().await;
    let http = reqwest::Client::new();
    register(&http, &cluster).await;
    let (_, stolen) = login(&http, &cluster.nodes[0]).await;
    // The thief refreshes first, on node 2 ...
    let r = refresh(&http, &cluster.nodes[1], &stolen).await;
    let thief: Value = r.json().await.unwrap();
    let thief_access = thief["data"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(cluster.nodes[2].me_status(&http, &thief_access).await, 200);
    // ... the victim comes back after the grace window, on node 3.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(refresh(&http, &cluster.nodes[2], &stolen).await.status(), 401);
    for node in &cluster.nodes {
        node.until_status(&http, &thief_access, 401).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_language_introspects_tokens() {
    let cluster = Cluster::start().await;
    let http = reqwest::Client::new();
    register(&http, &cluster).await;
    let (access, refresh_token) = login(&http, &cluster.nodes[0]).await;
    let base = cluster.nodes[2].base.clone();

    let (code, body) = introspect(&base, INTROSPECTION_SECRET, &access).await;
    assert_eq!(code, 200);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["iss"], "tessera");
    assert!(body["sub"].is_string() && body["sid"].is_string() && body["exp"].is_i64(), "{body}");

    let (code, body) = introspect(&base, "wrong-secret-wrong-secret", &access).await;
    assert_eq!((code, &body["error"]), (401, &json!("invalid_client")));
    for junk in [refresh_token.as_str(), "not-a-token", "a.b.c"] {
        assert_eq!(introspect(&base, INTROSPECTION_SECRET, junk).await.1, json!({"active": false}), "{junk}");
    }

    let r = http.post(cluster.nodes[0].url("/user/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    while introspect(&base, INTROSPECTION_SECRET, &access).await.1["active"] != false {
        assert!(started.elapsed() < Duration::from_secs(5), "introspection still says active after logout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_rust_service_verifies_with_the_jwks_and_follows_revocations() {
    use std::sync::Arc;
    use tessera::revocation::{RevocationList, RevocationStore};
    use tessera::signed::{Rejection, Verifier};
    use tessera::store::redis::{RedisConn, RedisTarget};
    use tessera::store::RedisRevocations;

    let cluster = Cluster::start().await;
    let http = reqwest::Client::new();
    register(&http, &cluster).await;

    // The other service: the issuer's JWKS over HTTP, and its Redis for revocations.
    let jwks = http.get(cluster.nodes[0].url("/.well-known/jwks.json")).send().await.unwrap().text().await.unwrap();
    let conn =
        RedisConn::connect(RedisTarget::parse(&cluster.redis_url).unwrap(), Duration::from_millis(500)).await.unwrap();
    let feed = RedisRevocations::new(conn, "tessera");
    let revoked = Arc::new(RevocationList::new());
    feed.attach(revoked.clone()).await.unwrap();
    let verifier = Verifier::from_jwks(&jwks, "tessera", "tessera").unwrap().with_revocations(revoked);

    let (access, _) = login(&http, &cluster.nodes[1]).await;
    let claims = verifier.verify(&access).unwrap();
    assert_eq!(claims.iss, "tessera");
    let r = http.post(cluster.nodes[2].url("/user/logout")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    while verifier.verify(&access) != Err(Rejection::Revoked) {
        assert!(started.elapsed() < Duration::from_secs(2), "the revocation never reached the other service");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("revocation reached the other service after {:?}", started.elapsed());
}
