//! `/metrics` over real HTTP, parsed by a strict Prometheus text-format
//! parser (`support/prometheus.rs`): counters move with the requests made,
//! the route label is the template, unknown paths add no series, Redis
//! commands, the near cache and the feeds are reported, token mode reports
//! the signing key's age and refresh-token reuse, and `--metrics-bind`
//! moves `/metrics` to a listener of its own.

#[path = "support/prometheus.rs"]
mod prometheus;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Exposition;
use serde_json::{json, Value};
use support::{on_redis_patient, TestServer, PASSWORD, PHONE};
use tessera::ManualClock;
use tessera_server::configuration::{MetricsExposure, Settings, TokenConfig};
use tessera_server::startup::Application;
use tessera_testkit::RedisServer;

const OTHER_PHONE: &str = "13912345678";

/// `GET http://addr/metrics`, checked and parsed.
async fn scrape_at(addr: SocketAddr) -> Exposition {
    let r = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    prometheus::parse(&r.text().await.unwrap())
}

async fn scrape(server: &TestServer) -> Exposition {
    scrape_at(server.addr).await
}

async fn password_login(server: &TestServer, phone: &str, password: &str) -> reqwest::Response {
    server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": phone, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn token_of(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned()
}

fn delta(before: &Exposition, after: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

#[tokio::test]
async fn counters_move_with_logins_logouts_revocations_and_routes() {
    let server = TestServer::spawn().await;
    server.register(PHONE).await;
    let before = scrape(&server).await;

    let phone_token = token_of(password_login(&server, PHONE, PASSWORD).await).await;
    let laptop_token = token_of(password_login(&server, PHONE, PASSWORD).await).await;
    let refused = password_login(&server, PHONE, "not the password").await;
    assert_ne!(refused.status(), 500);
    let unknown = password_login(&server, OTHER_PHONE, PASSWORD).await;
    assert_ne!(unknown.status(), 500);
    let code = server.otp(OTHER_PHONE).await;
    let r = server.post("/user/login").json(&json!({"telephone": PHONE, "otpCode": code})).send().await.unwrap();
    assert_ne!(r.status(), 500);

    // The laptop's session ended from the phone, by its public id.
    let listed: Value =
        server.get("/user/sessions").bearer_auth(&phone_token).send().await.unwrap().json().await.unwrap();
    let laptop_id = listed["data"].as_array().unwrap().iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.delete(&format!("/user/sessions/{laptop_id}")).bearer_auth(&phone_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.get("/user/me").bearer_auth(&laptop_token).send().await.unwrap().status(), 401);
    let r = server.post("/user/logout").bearer_auth(&phone_token).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let after = scrape(&server).await;
    let logins = "tessera_logins_total";
    assert_eq!(delta(&before, &after, logins, &[("method", "password"), ("outcome", "success")]), 2.0);
    assert_eq!(delta(&before, &after, logins, &[("method", "password"), ("outcome", "bad_password")]), 1.0);
    assert_eq!(delta(&before, &after, logins, &[("method", "password"), ("outcome", "unknown_user")]), 1.0);
    // PHONE has no code pending: its code is not the one just sent to OTHER_PHONE.
    assert_eq!(delta(&before, &after, logins, &[("method", "otp"), ("outcome", "expired_code")]), 1.0);
    assert_eq!(delta(&before, &after, "tessera_otp_sends_total", &[("outcome", "sent")]), 1.0);
    assert_eq!(delta(&before, &after, "tessera_sessions_created_total", &[("kind", "login")]), 2.0);
    assert_eq!(delta(&before, &after, "tessera_sessions_ended_total", &[("reason", "revoked")]), 1.0);
    assert_eq!(delta(&before, &after, "tessera_sessions_ended_total", &[("reason", "logout")]), 1.0);
    assert_eq!(delta(&before, &after, "tessera_sessions_ended_total", &[("reason", "everywhere")]), 0.0);

    // Requests by route template, method and status; the histogram's count
    // is the counter.
    let requests = "tessera_http_requests_total";
    let login_ok = [("route", "/user/login"), ("method", "POST"), ("status", "200")];
    assert_eq!(delta(&before, &after, requests, &login_ok), 2.0);
    assert_eq!(
        after.sum(requests, &[("route", "/user/login")]) - before.sum(requests, &[("route", "/user/login")]),
        5.0
    );
    assert_eq!(after.get("tessera_http_request_duration_seconds_count", &login_ok), after.get(requests, &login_ok));
    assert!(after.get("tessera_http_request_duration_seconds_sum", &login_ok) > 0.0);
    let revoke = [("route", "/user/sessions/{id}"), ("method", "DELETE"), ("status", "200")];
    assert_eq!(after.get(requests, &revoke), 1.0, "the route label is the template, not the path");
    assert!(
        after.series(requests).iter().all(|labels| !labels["route"].contains(&laptop_id)),
        "no raw path in a label"
    );
    assert_eq!(after.get(requests, &[("route", "/user/me"), ("method", "GET"), ("status", "401")]), 1.0);
    assert_eq!(after.types["tessera_http_request_duration_seconds"], "histogram");

    // Without Redis there is no store histogram, near cache or feed.
    assert!(after.series("tessera_store_command_duration_seconds_count").is_empty());
    assert!(after.series("tessera_feed_up").is_empty());
    assert!(after.series("tessera_signing_key_age_seconds").is_empty());
}

#[tokio::test]
async fn unknown_paths_share_one_series() {
    let server = TestServer::spawn().await;
    let r = server.get("/no/such/path").send().await.unwrap();
    assert_eq!(r.status(), 404);
    scrape(&server).await; // so /metrics has its own series before the comparison
    let before = scrape(&server).await;
    for path in ["/another/path", "/user/sessions/abc/def", "/%2e%2e/etc/passwd", "/no/such/path?q=1"] {
        let r = server.get(path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = server.post("/definitely/not/here").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let after = scrape(&server).await;

    let requests = "tessera_http_requests_total";
    let unmatched_get = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(delta(&before, &after, requests, &unmatched_get), 4.0);
    assert_eq!(after.get(requests, &[("route", "unmatched"), ("method", "POST"), ("status", "404")]), 1.0);
    let mut grown: Vec<_> = after.series(requests).difference(&before.series(requests)).cloned().collect();
    grown.retain(|labels| labels["method"] != "POST");
    assert!(grown.is_empty(), "new series for unknown paths: {grown:?}");
    for labels in after.series(requests) {
        assert!(labels["route"] == "unmatched" || labels["route"].starts_with('/'), "{labels:?}");
        assert!(!labels["route"].contains("path"), "a raw path became a label: {labels:?}");
    }
}

#[tokio::test]
async fn redis_commands_the_near_cache_and_the_feeds_are_reported() {
    let redis = RedisServer::start();
    let server = TestServer::spawn_with(on_redis_patient(redis.url())).await;
    server.register(PHONE).await;
    let token = server.login_header(PHONE).await;
    // The feeds come up with their first heartbeat.
    let started = Instant::now();
    let scraped = loop {
        let scraped = scrape(&server).await;
        let up = |feed| scraped.get("tessera_feed_up", &[("feed", feed)]) == 1.0;
        if up("invalidation") && up("revocation") {
            break scraped;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "feeds never came up: {:?}",
            scraped.series("tessera_feed_up")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(scraped.types["tessera_feed_up"], "gauge");
    for _ in 0..3 {
        assert_eq!(server.get("/user/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    let after = scrape(&server).await;
    let ok = after.get("tessera_store_command_duration_seconds_count", &[("outcome", "ok")]);
    assert!(ok >= 3.0, "login, OTP and throttles ran Redis commands: {ok}");
    assert_eq!(after.get("tessera_store_command_duration_seconds_count", &[("outcome", "timeout")]), 0.0);
    let hits = after.get("tessera_near_cache_hits_total", &[]);
    let misses = after.get("tessera_near_cache_misses_total", &[]);
    assert!(hits + misses >= 3.0, "every /user/me looked in the near cache: {hits} hits, {misses} misses");
    assert!(hits >= 1.0, "a repeated /user/me is answered from memory");
    assert_eq!(after.types["tessera_near_cache_evictions_total"], "counter");
    assert!(after.get("tessera_near_cache_entries", &[]) >= 1.0);
}

#[tokio::test]
async fn token_mode_reports_the_signing_key_age_and_refresh_reuse() {
    let server = TestServer::spawn_with(|s| s.tokens = Some(TokenConfig::default())).await;
    server.register(PHONE).await;
    let r = password_login(&server, PHONE, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let first = r.json::<Value>().await.unwrap()["data"]["refreshToken"].as_str().unwrap().to_owned();
    let r = server.post("/auth/refresh").json(&json!({"refreshToken": first})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = scrape(&server).await;
    let age = before.get("tessera_signing_key_age_seconds", &[]);
    server.clock.advance(Duration::from_secs(11));
    // Past the grace window the rotated-away token comes back: theft.
    let r = server.post("/auth/refresh").json(&json!({"refreshToken": first})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let after = scrape(&server).await;
    assert_eq!(delta(&before, &after, "tessera_sessions_ended_total", &[("reason", "refresh_reuse")]), 1.0);
    let later = after.get("tessera_signing_key_age_seconds", &[]);
    assert!((later - age - 11.0).abs() < 0.5, "the key aged with the clock: {age} then {later}");
    assert_eq!(after.get("tessera_feed_up", &[("feed", "revocation")]), 1.0, "{:?}", after.samples);
}

/// A server on `data` with `/metrics` where `exposure` says; (main
/// address, metrics address if separate).
async fn serve_with(data: &std::path::Path, exposure: MetricsExposure) -> (SocketAddr, Option<SocketAddr>) {
    let mut settings = Settings::for_data_dir(data.to_path_buf());
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.metrics = exposure;
    let app = Application::build(&settings, Arc::new(ManualClock::starting_now())).await.unwrap();
    let addrs = (app.local_addr(), app.metrics_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    addrs
}

#[tokio::test]
async fn metrics_bind_serves_metrics_on_its_own_listener_only() {
    let data = tempfile::tempdir().unwrap();
    let (main, metrics) = serve_with(data.path(), MetricsExposure::Bind("127.0.0.1:0".parse().unwrap())).await;
    let metrics = metrics.expect("a listener of its own");
    assert_ne!(main, metrics);
    let r = reqwest::get(format!("http://{main}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404, "not on the main listener");
    let r = reqwest::get(format!("http://{main}/livez")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(format!("http://{metrics}/livez")).await.unwrap();
    assert_eq!(r.status(), 404, "the metrics listener serves nothing else");
    let scraped = scrape_at(metrics).await;
    assert_eq!(
        scraped.get("tessera_http_requests_total", &[("route", "/livez"), ("method", "GET"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        scraped.get("tessera_http_requests_total", &[("route", "unmatched"), ("method", "GET"), ("status", "404")]),
        1.0
    );

    let data = tempfile::tempdir().unwrap();
    let (main, metrics) = serve_with(data.path(), MetricsExposure::Off).await;
    assert_eq!(metrics, None);
    let r = reqwest::get(format!("http://{main}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404, "--metrics-bind off");
}

#[tokio::test]
async fn a_wrong_method_counts_under_its_route_and_an_unserved_route_as_unmatched() {
    let server = TestServer::spawn().await;
    scrape(&server).await;
    let before = scrape(&server).await;
    let r = server.delete("/user/me").send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Signed-token routes exist only in token mode; this server has none.
    let r = server.post("/auth/refresh").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let after = scrape(&server).await;

    let requests = "tessera_http_requests_total";
    let wrong_method = [("route", "/user/me"), ("method", "DELETE"), ("status", "405")];
    assert_eq!(delta(&before, &after, requests, &wrong_method), 1.0);
    let unserved = [("route", "unmatched"), ("method", "POST"), ("status", "404")];
    assert_eq!(delta(&before, &after, requests, &unserved), 1.0);
    assert_eq!(after.get(requests, &[("route", "/auth/refresh"), ("method", "POST"), ("status", "404")]), 0.0);
}
