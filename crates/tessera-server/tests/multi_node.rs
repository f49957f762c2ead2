//! Three `tessera` processes sharing one Redis (and one data directory for
//! the users' SQLite file): sessions, logouts, revocations and throttles
//! hold across nodes, and losing a node loses nobody's session.

mod support;

use serde_json::{json, Value};
use support::node::Node;
use support::{e164, Sink, PASSWORD, PHONE};
use tessera_testkit::RedisServer;

async fn login(http: &reqwest::Client, node: &Node) -> String {
    node.login_header(http).await["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_sessions_revocations_and_throttles() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(data.path(), &sink_url, &["--redis", &redis.url()]).await);
    }
    let http = reqwest::Client::new();

    // Register through node 1 with a code asked for on node 2.
    let r = http.post(nodes[1].url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = sink.last_code(&e164(PHONE));
    let r = http
        .post(nodes[0].url("/user/register"))
        .json(&json!({"telephone": PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a code sent by one node is checked by another");

    // Log in through node 1; the token works everywhere.
    let token = login(&http, &nodes[0]).await;
    for node in &nodes {
        assert_eq!(node.me_status(&http, &token).await, 200);
    }

    // Log out on node 3: nodes 1 and 2 (which have the session cached) refuse it.
    let r = http.post(nodes[2].url("/user/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for node in &nodes[..2] {
        let took = node.until_status(&http, &token, 401).await;
        eprintln!("logout on node 3 honoured by {} after {took:?}", node.base);
    }

    // Revoke-others on node 2 reaches node 1 and node 3.
    let a = login(&http, &nodes[0]).await;
    let b = login(&http, &nodes[1]).await;
    for node in &nodes {
        assert_eq!(node.me_status(&http, &a).await, 200);
    }
    let r = http.delete(nodes[1].url("/user/sessions")).bearer_auth(&b).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 1);
    for node in [&nodes[0], &nodes[2]] {
        node.until_status(&http, &a, 401).await;
    }

    // Node 1 dies hard: sessions keep working on the others.
    nodes[0].child.start_kill().unwrap();
    nodes[0].child.wait().await.unwrap();
    for node in &nodes[1..] {
        assert_eq!(node.me_status(&http, &b).await, 200);
    }

    // OTP send throttles are counted across nodes.
    let other = "13900000009";
    let r = http.post(nodes[1].url("/user/getotp")).json(&json!({"telephone": other})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.post(nodes[2].url("/user/getotp")).json(&json!({"telephone": other})).send().await.unwrap();
    assert_eq!(r.status(), 429, "the per-phone minute is shared");
}
