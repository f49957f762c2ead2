//! Operating the real `tessera` binary: the probes (`/livez`, `/readyz`
//! following Redis and turning 503 at the start of a graceful shutdown),
//! JSON logs with the request fields, request ids, and a redirected text
//! log without colour codes, and the SQLite write-ahead log kept bounded.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::node::{Node, BIN};
use tessera_testkit::RedisServer;

/// Status, headers and JSON body of `GET url` (with an `X-Request-Id` if given).
async fn get(http: &reqwest::Client, url: &str, request_id: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http.get(url);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

/// Polls `GET url` every 20 ms until it answers `want`, for at most
/// `within`; returns the last answer's headers and body.
async fn until(http: &reqwest::Client, url: &str, want: u16, within: Duration) -> (reqwest::header::HeaderMap, Value) {
    let started = Instant::now();
    loop {
        let (status, headers, body) = get(http, url, None).await;
        if status == want {
            return (headers, body);
        }
        assert!(started.elapsed() < within, "{url} never answered {want} within {within:?}; last {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn console_args(data: &Path) -> Vec<&OsStr> {
    vec![OsStr::new("--otp-sender"), OsStr::new("console"), OsStr::new("--data-dir"), data.as_os_str()]
}

#[tokio::test]
async fn livez_answers_and_readyz_follows_redis() {
    let mut redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let url = redis.url();
    let mut args = console_args(data.path());
    args.extend([OsStr::new("--redis"), OsStr::new(&url)]);
    let node = Node::launch(args, &[]).await;
    let http = reqwest::Client::new();

    let (status, headers, body) = get(&http, &node.url("/livez"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success", "data": {"status": "ok"}}));
    assert_eq!(headers["cache-control"], "no-store");

    let (headers, body) = until(&http, &node.url("/readyz"), 200, Duration::from_secs(5)).await;
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        body,
        json!({"status": "success", "data": {"status": "ready",
            "checks": {"store": "ok", "users": "ok", "invalidation": "ok", "revocations": "ok"}}})
    );

    redis.kill();
    let (headers, body) = until(&http, &node.url("/readyz"), 503, Duration::from_secs(5)).await;
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["status"], "fail");
    assert_eq!(body["data"]["errCode"], 10004);
    assert_eq!(body["data"]["status"], "unavailable");
    assert_eq!(body["data"]["checks"]["store"], "down");
    assert_eq!(body["data"]["checks"]["users"], "ok", "the user database is not in Redis");
    assert_eq!(get(&http, &node.url("/livez"), None).await.0, 200, "alive without Redis");

    redis.restart();
    let (_, body) = until(&http, &node.url("/readyz"), 200, Duration::from_secs(20)).await;
    assert_eq!(body["data"]["checks"]["invalidation"], "ok");
    node.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_at_the_start_of_a_graceful_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let mut args = console_args(data.path());
    // Long enough that polling every 20 ms certainly sees the window; the
    // test ends when the process does, well before the delay matters.
    args.extend([OsStr::new("--shutdown-delay-ms"), OsStr::new("3000")]);
    let mut node = Node::launch(args, &[]).await;
    let http = reqwest::Client::new();
    let (status, _, body) = get(&http, &node.url("/readyz"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["checks"], json!({"store": "ok", "users": "ok"}), "no feeds without Redis");

    let pid = node.child.id().unwrap().to_string();
    let signalled = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let (headers, body) = until(&http, &node.url("/readyz"), 503, Duration::from_millis(2500)).await;
    assert!(signalled.elapsed() < Duration::from_secs(3), "503 while the listener still accepts");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["data"]["status"], "draining");
    assert_eq!(get(&http, &node.url("/livez"), None).await.0, 200, "still serving while draining");
    let (status, _, _) = get(&http, &node.url("/"), None).await;
    assert_eq!(status, 200, "requests are still answered during the delay");

    let exit = tokio::time::timeout(Duration::from_secs(15), node.child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(signalled.elapsed() >= Duration::from_secs(3), "the listener stayed open for the delay");
}

/// Registers and logs in [`support::PHONE`] on a console-sender node; the
/// header client's token.
async fn logged_in(node: &mut Node, http: &reqwest::Client) -> String {
    let r = http.post(node.url("/user/getotp")).json(&json!({"telephone": support::PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = node.code().await;
    let r = http
        .post(node.url("/user/register"))
        .json(&json!({"telephone": support::PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30,
            "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.login_header(http).await["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn json_logs_carry_the_request_fields_and_a_trusted_request_id() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("tessera.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let dir = data.path().join("d");
    let mut args = console_args(&dir);
    args.extend(["--log-format", "json", "--trusted-proxy", "127.0.0.1"].map(OsStr::new));
    let mut node = Node::launch_logged(BIN, "info", args, &[], Stdio::from(log)).await;
    let http = reqwest::Client::new();
    let token = logged_in(&mut node, &http).await;

    // From a trusted proxy (the loopback peer), a sane id is kept and echoed.
    let r = http.get(node.url("/user/me")).bearer_auth(&token).header("x-request-id", "trace-me-42").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    // An insane one (a space, or too long) is replaced; none is made up.
    let (_, headers, _) = get(&http, &node.url("/livez"), Some("two words")).await;
    assert_ne!(headers["x-request-id"], "two words");
    let long = "x".repeat(129);
    let (_, headers, _) = get(&http, &node.url("/livez"), Some(&long)).await;
    assert_ne!(headers["x-request-id"], long.as_str());
    let r = http.delete(node.url("/user/sessions/nope")).bearer_auth(&token).send().await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(made.len() > 17 && made.as_bytes()[16] == b'-', "{made}");
    node.stop().await;

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("\x1b["), "no colour codes in JSON");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&Value> =
        lines.iter().filter(|l| l["target"] == "tessera::access" && l["message"] == "request").collect();
    let me = access.iter().find(|l| l["request_id"] == "trace-me-42").expect("the /user/me line");
    assert_eq!(me["level"], "INFO");
    assert_eq!(me["method"], "GET");
    assert_eq!(me["route"], "/user/me");
    assert_eq!(me["status"], 200);
    assert!(me["latency_us"].as_u64().is_some(), "{me}");
    assert!(me["timestamp"].is_string());
    let session = me["session"].as_str().expect("the session's digest prefix");
    assert!(session.len() == 8 && session.bytes().all(|b| b.is_ascii_hexdigit()), "{session}");
    let login = access.iter().find(|l| l["route"] == "/user/login").expect("the login line");
    assert_eq!(login["session"], session, "the login names the session it made; /user/me the same one");
    let delete = access.iter().find(|l| l["request_id"] == made.as_str()).expect("the DELETE line");
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["route"], "/user/sessions/{id}", "the route template, not the path");
    assert!(delete["status"].as_u64().is_some());
    let probe = access.iter().find(|l| l["route"] == "/livez").expect("the /livez line");
    assert!(probe.get("session").is_none(), "no session, no field: {probe}");
    // The library's own line about the login sits in the request span,
    // which carries the request id.
    let rotated = lines.iter().find(|l| l["message"] == "session rotated on login").expect("the library's line");
    assert_eq!(rotated["session"], session);
    assert_eq!(rotated["span"]["name"], "request");
    assert_eq!(rotated["span"]["route"], "/user/login");
    assert_eq!(rotated["span"]["request_id"], login["request_id"]);
}

#[tokio::test]
async fn a_redirected_text_log_has_no_colour_codes_and_clients_do_not_choose_request_ids() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("tessera.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let dir = data.path().join("d");
    // NO_COLOR empty counts as unset: only the terminal test is left.
    let node = Node::launch_logged(BIN, "info", console_args(&dir), &[("NO_COLOR", "")], Stdio::from(log)).await;
    let http = reqwest::Client::new();
    let (status, headers, _) = get(&http, &node.url("/livez"), Some("chosen-by-client")).await;
    assert_eq!(status, 200);
    let made = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made, "chosen-by-client", "no --trusted-proxy: the client's id is not believed");
    assert_eq!(get(&http, &node.url("/nowhere"), None).await.0, 404);
    node.stop().await;

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("\x1b["), "colour codes in a redirected log:\n{text}");
    let line = text.lines().find(|l| l.contains(&made)).unwrap_or_else(|| panic!("no access line:\n{text}"));
    assert!(
        line.contains("tessera::access") && line.contains("route=\"/livez\"") && line.contains("status=200"),
        "{line}"
    );
    assert!(text.contains("shut down cleanly"), "{text}");
}

/// A node empties `tessera.db-wal` once it outgrows 4 MiB (SQLite's own
/// checkpoints reuse the file but never shrink it, and under sustained
/// writes may never start it over at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_emptied_once_it_outgrows_its_limit() {
    let app = support::TestServer::spawn().await;
    let wal = app.data.path().join("tessera.db-wal");
    sqlx::query("CREATE TABLE scratch (v BLOB NOT NULL)").execute(&app.pool).await.unwrap();
    for _ in 0..3 {
        sqlx::query("INSERT INTO scratch (v) VALUES (zeroblob(2097152))").execute(&app.pool).await.unwrap();
    }
    let started = Instant::now();
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the log was never emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM scratch").fetch_one(&app.pool).await.unwrap();
    assert_eq!(rows, 3, "what the log held is in the database");
}
