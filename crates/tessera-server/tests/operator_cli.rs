//! The operator CLI (`tessera users …`, `tessera sessions …`) as a separate
//! process beside running `tessera` nodes: with Redis it acts on the shared
//! stores and both nodes honour it at once (opaque sessions and signed
//! access tokens); without Redis a node holds its data directory, so the
//! CLI refuses, or acts through that node's `/admin` API with
//! `--admin-url`, and works on the files only once no node runs.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::node::{Node, BIN, SECRET};
use support::{e164, failure, Sink, PASSWORD, PHONE};
use tessera_testkit::RedisServer;

const ADMIN: &str = "operator-token-0123456789abcdef0123456789";

/// What a `tessera` command did: exit code, stdout, stderr.
struct Run {
    code: i32,
    out: String,
    err: String,
}

/// `tessera ARGS --data-dir DATA` with the nodes' secret and `env`.
async fn tessera(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("TESSERA_SECRET", SECRET)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8(output.stdout).unwrap(),
        err: String::from_utf8(output.stderr).unwrap(),
    };
    eprintln!("tessera {args:?} -> {}\n{}{}", run.code, run.out, run.err);
    run
}

/// Registers [`PHONE`] through `node` (codes go to `sink`); its user id.
async fn register(http: &reqwest::Client, node: &Node, sink: &Sink) -> i64 {
    let r = http.post(node.url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = sink.last_code(&e164(PHONE));
    let r = http
        .post(node.url("/user/register"))
        .json(&json!({"telephone": PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"]["id"].as_i64().unwrap()
}

/// A password login with the right password, answered as is.
async fn login(http: &reqwest::Client, node: &Node) -> reqwest::Response {
    let body = json!({"telephone": PHONE, "password": PASSWORD});
    http.post(node.url("/user/login")).header("x-auth-mode", "header").json(&body).send().await.unwrap()
}

/// The opaque ids `GET /user/sessions` shows `token`'s user.
async fn listed_ids(http: &reqwest::Client, node: &Node, token: &str) -> Vec<String> {
    let r = http.get(node.url("/user/sessions")).bearer_auth(token).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    body["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

/// Two nodes on one Redis, opaque sessions: list, end one, end all,
/// disable, enable, each by a CLI process, honoured on both nodes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_cli_reaches_every_node_at_once() {
    let redis = RedisServer::start();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let dir = tempfile::tempdir().unwrap();
    let redis_url = redis.url();
    let flags = ["--redis", redis_url.as_str()];
    let a = Node::start(dir.path(), &sink_url, &flags).await;
    let b = Node::start(dir.path(), &sink_url, &flags).await;
    let http = reqwest::Client::new();
    let id = register(&http, &a, &sink).await;
    let user = id.to_string();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags);
        all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| {
        let data = dir.path().to_owned();
        async move { tessera(&data, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await }
    };

    let first = a.login_header(&http).await["token"].as_str().unwrap().to_owned();
    let second = b.login_header(&http).await["token"].as_str().unwrap().to_owned();
    for node in [&a, &b] {
        for token in [&first, &second] {
            assert_eq!(node.me_status(&http, token).await, 200, "cached on both nodes");
        }
    }

    // The listing: the ids the user's own listing shows, and no token.
    let ids = listed_ids(&http, &a, &first).await;
    assert_eq!(ids.len(), 2);
    let listed = run(cli(&["sessions", "list", "--user", &user])).await;
    assert_eq!(listed.code, 0, "{}", listed.err);
    assert!(listed.out.starts_with("SESSION "), "a table: {}", listed.out);
    for sid in &ids {
        assert!(listed.out.contains(sid.as_str()), "{sid} in {}", listed.out);
    }
    for token in [&first, &second] {
        assert!(!listed.out.contains(token.as_str()) && !listed.err.contains(token.as_str()), "never a token");
    }
    let json = run(cli(&["sessions", "list", "--user", &user, "--json"])).await;
    assert_eq!(json.code, 0);
    let entries: Vec<Value> = serde_json::from_str(&json.out).unwrap();
    let mut from_json: Vec<String> = entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let mut expected = ids.clone();
    from_json.sort();
    expected.sort();
    assert_eq!(from_json, expected);
    assert!(entries.iter().all(|e| e["createdAt"].is_i64() && e["lastSeen"].is_i64()));

    // One session ended: the second login's, on both nodes; the first lives.
    let r = http.get(b.url("/user/sessions")).bearer_auth(&second).send().await.unwrap();
    let mine = r.json::<Value>().await.unwrap()["data"].clone();
    let current = mine.as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
    let second_sid = current["id"].as_str().unwrap().to_owned();
    let ended = run(cli(&["sessions", "end", "--user", &user, "--session", &second_sid])).await;
    assert_eq!(ended.code, 0, "{}", ended.err);
    for node in [&b, &a] {
        assert!(node.until_status(&http, &second, 401).await < Duration::from_secs(3));
        assert_eq!(node.me_status(&http, &first).await, 200, "the other session lives");
    }
    let again = run(cli(&["sessions", "end", "--user", &user, "--session", &second_sid])).await;
    assert_eq!(again.code, 1);
    assert!(again.err.contains("has no session"), "{}", again.err);

    // Without the nodes' --redis: the data directory's SQLite file holds
    // none of their sessions, so the CLI refuses rather than report "0
    // sessions ended" while they live on.
    let forgot = tessera(dir.path(), &["sessions", "end", "--user", &user], &[]).await;
    assert_eq!(forgot.code, 1);
    assert!(forgot.err.contains("keeps its sessions in Redis") && forgot.err.contains("--redis"), "{}", forgot.err);
    assert!(forgot.out.is_empty(), "no success reported");
    for node in [&a, &b] {
        assert_eq!(node.me_status(&http, &first).await, 200);
    }

    // All of them.
    let ended = run(cli(&["sessions", "end", "--user", &user])).await;
    assert_eq!(ended.code, 0, "{}", ended.err);
    assert!(ended.out.contains("1 session(s)"), "{}", ended.out);
    for node in [&a, &b] {
        assert!(node.until_status(&http, &first, 401).await < Duration::from_secs(3));
    }
    assert_eq!(login(&http, &a).await.status(), 200, "ending sessions is no disabling");

    // Disabled: its sessions end on both nodes, its logins are refused.
    let third = b.login_header(&http).await["token"].as_str().unwrap().to_owned();
    for node in [&a, &b] {
        assert_eq!(node.me_status(&http, &third).await, 200);
    }
    let disabled = run(cli(&["users", "disable", &user])).await;
    assert_eq!(disabled.code, 0, "{}", disabled.err);
    assert!(disabled.out.contains(&format!("user {id} disabled")), "{}", disabled.out);
    for node in [&a, &b] {
        assert!(node.until_status(&http, &third, 401).await < Duration::from_secs(3));
        assert_eq!(failure(login(&http, node).await).await, (403, 20010), "the right password is refused");
    }

    // Enabled: logins work again (the ended sessions stay ended).
    let enabled = run(cli(&["users", "enable", &user])).await;
    assert_eq!(enabled.code, 0, "{}", enabled.err);
    for node in [&a, &b] {
        assert_eq!(login(&http, node).await.status(), 200);
        assert_eq!(node.me_status(&http, &third).await, 401);
    }

    // Failures: an unknown user (1), Redis out of reach (1), usage (2).
    let unknown = run(cli(&["users", "disable", "999"])).await;
    assert_eq!(unknown.code, 1);
    assert!(unknown.err.contains("no user 999"), "{}", unknown.err);
    let unknown = run(cli(&["sessions", "list", "--user", "999"])).await;
    assert_eq!(unknown.code, 1);
    let down = tessera(dir.path(), &["users", "disable", &user, "--redis", "redis://127.0.0.1:1"], &[]).await;
    assert_eq!(down.code, 1);
    assert!(down.err.contains("Redis"), "{}", down.err);
    assert_eq!(run(cli(&["sessions", "list"])).await.code, 2, "--user is required");
    assert_eq!(run(cli(&["users", "disable", "seven"])).await.code, 2);
}

/// Two nodes on one Redis in token mode: a CLI disabling ends the signed
/// access tokens and the refresh tokens on both nodes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_cli_disabling_ends_signed_tokens_on_both_nodes() {
    let redis = RedisServer::start();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let dir = tempfile::tempdir().unwrap();
    let redis_url = redis.url();
    let flags = ["--redis", redis_url.as_str(), "--tokens", "signed"];
    let a = Node::start(dir.path(), &sink_url, &flags).await;
    let b = Node::start(dir.path(), &sink_url, &flags).await;
    let http = reqwest::Client::new();
    let id = register(&http, &b, &sink).await;

    let on_a = a.login_header(&http).await;
    let on_b = b.login_header(&http).await;
    let tokens: Vec<String> = [&on_a, &on_b].iter().map(|d| d["accessToken"].as_str().unwrap().to_owned()).collect();
    for node in [&a, &b] {
        for token in &tokens {
            assert_eq!(node.me_status(&http, token).await, 200);
        }
    }
    let mut args = vec!["users", "disable"];
    let user = id.to_string();
    args.push(&user);
    args.extend(flags);
    let disabled = tessera(dir.path(), &args, &[]).await;
    assert_eq!(disabled.code, 0, "{}", disabled.err);
    assert!(disabled.out.contains("2 session(s) ended"), "{}", disabled.out);
    for node in [&a, &b] {
        for token in &tokens {
            assert!(node.until_status(&http, token, 401).await < Duration::from_secs(3), "signed token refused");
        }
        assert_eq!(failure(login(&http, node).await).await, (403, 20010));
    }
    let refresh = on_a["refreshToken"].as_str().unwrap();
    let r = http.post(b.url("/auth/refresh")).json(&json!({"refreshToken": refresh})).send().await.unwrap();
    assert_eq!(r.status(), 401, "nor does a refresh token work");
}

/// Without Redis the node holds its data directory: the CLI refuses (and
/// changes nothing), or acts through the node's `/admin` API with
/// `--admin-url`; with the node stopped it works on the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_the_cli_goes_through_the_node_or_refuses() {
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &sink_url, &["--admin-token", ADMIN]).await;
    let http = reqwest::Client::new();
    let id = register(&http, &node, &sink).await;
    let user = id.to_string();
    let token = node.login_header(&http).await["token"].as_str().unwrap().to_owned();

    // No --admin-url: refused, naming both ways, and nothing changed.
    let refused = tessera(dir.path(), &["users", "disable", &user], &[]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.err.contains("--admin-url") && refused.err.contains("TESSERA_ADMIN_TOKEN"), "{}", refused.err);
    assert!(refused.out.is_empty(), "no success reported");
    assert_eq!(node.me_status(&http, &token).await, 200, "the session lives");
    assert_eq!(login(&http, &node).await.status(), 200, "the account is not disabled");
    assert_eq!(tessera(dir.path(), &["sessions", "list", "--user", &user], &[]).await.code, 1);

    // --admin-url without the token: usage.
    let base = node.base.clone();
    let no_token = tessera(dir.path(), &["users", "disable", &user, "--admin-url", &base], &[]).await;
    assert_eq!(no_token.code, 2);
    let wrong = [("TESSERA_ADMIN_TOKEN", "a-wrong-token-0123456789abcdef0123456789")];
    let refused = tessera(dir.path(), &["users", "disable", &user, "--admin-url", &base], &wrong).await;
    assert_eq!(refused.code, 1);
    assert!(refused.err.contains("refused the admin token"), "{}", refused.err);

    // Through the node: list, end one, disable, enable.
    let env = [("TESSERA_ADMIN_TOKEN", ADMIN), ("TESSERA_ADMIN_URL", base.as_str())];
    let sids = listed_ids(&http, &node, &token).await;
    let listed = tessera(dir.path(), &["sessions", "list", "--user", &user, "--json"], &env).await;
    assert_eq!(listed.code, 0, "{}", listed.err);
    let entries: Vec<Value> = serde_json::from_str(&listed.out).unwrap();
    let listed_sids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed_sids.len(), sids.len());
    assert!(sids.iter().all(|s| listed_sids.contains(&s.as_str())));
    assert!(!listed.out.contains(&token));
    let other = node.login_header(&http).await["token"].as_str().unwrap().to_owned();
    let now = listed_ids(&http, &node, &other).await;
    let other_sid = now.iter().find(|s| !sids.contains(s)).unwrap();
    let ended = tessera(dir.path(), &["sessions", "end", "--user", &user, "--session", other_sid], &env).await;
    assert_eq!(ended.code, 0, "{}", ended.err);
    assert_eq!(node.me_status(&http, &other).await, 401);
    assert_eq!(node.me_status(&http, &token).await, 200);
    let unknown = tessera(dir.path(), &["users", "disable", "999"], &env).await;
    assert_eq!(unknown.code, 1);
    assert!(unknown.err.contains("no user 999"), "{}", unknown.err);

    let disabled = tessera(dir.path(), &["users", "disable", &user], &env).await;
    assert_eq!(disabled.code, 0, "{}", disabled.err);
    assert_eq!(node.me_status(&http, &token).await, 401, "ended at once in the node's own cache");
    assert_eq!(failure(login(&http, &node).await).await, (403, 20010));
    let enabled = tessera(dir.path(), &["users", "enable", &user], &env).await;
    assert_eq!(enabled.code, 0, "{}", enabled.err);
    let token = node.login_header(&http).await["token"].as_str().unwrap().to_owned();

    // No node running: the CLI works on the files, and a node started
    // afterwards finds the change.
    node.stop().await;
    // Not on a store the node does not use, nor on a directory no node
    // has served from (which the CLI must not create).
    let elsewhere = tessera(dir.path(), &["users", "disable", &user, "--redis", "redis://127.0.0.1:1"], &[]).await;
    assert_eq!(elsewhere.code, 1);
    assert!(elsewhere.err.contains("keeps its sessions in that directory's SQLite file"), "{}", elsewhere.err);
    let missing = dir.path().join("no-such-node");
    let nowhere = tessera(&missing, &["sessions", "end", "--user", &user], &[]).await;
    assert_eq!(nowhere.code, 1);
    assert!(nowhere.err.contains("no tessera node keeps its sessions in"), "{}", nowhere.err);
    assert!(!missing.exists(), "the CLI made no data directory");
    let disabled = tessera(dir.path(), &["users", "disable", &user], &[]).await;
    assert_eq!(disabled.code, 0, "{}", disabled.err);
    assert!(disabled.out.contains("1 session(s) ended"), "{}", disabled.out);
    let node = Node::start(dir.path(), &sink_url, &[]).await;
    assert_eq!(node.me_status(&http, &token).await, 401);
    assert_eq!(failure(login(&http, &node).await).await, (403, 20010));
}
