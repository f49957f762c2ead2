//! The layer and extractors over real HTTP on a random loopback port.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{problem, TestApp};
use tessera::{AllowedOrigin, CarrierMode, CookieSettings, CsrfPolicy, ExpiryPolicy, SessionConfig, SqliteStore};
use tessera_testkit::http::cookie_pair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIN: Duration = Duration::from_secs(60);

fn dev() -> SessionConfig {
    SessionConfig {
        cookie: CookieSettings::insecure_dev(),
        csrf: CsrfPolicy::new(vec![AllowedOrigin::parse("https://shop.example").unwrap()]),
        ..SessionConfig::default()
    }
}

#[tokio::test]
async fn cookie_flow_logs_in_serves_and_logs_out() {
    let app = TestApp::spawn(dev()).await;
    let r = app.post("/login").json(&json!({"user": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("x-auth-token").is_none(), "a browser gets no header token");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert!(body["data"].get("token").is_none(), "the token never goes in a cookie-mode body");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(part), "{part} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"));
    let pair: &str = &cookie_pair(&set_cookie);
    let csrf = body["data"]["csrfToken"].as_str().unwrap();

    let r = app.get("/me").header("cookie", pair).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["user"], "alice");

    let r = app.post("/logout").header("cookie", pair).header("x-csrf-token", csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let expired = r.headers()["set-cookie"].to_str().unwrap();
    assert!(expired.starts_with("tessera=;") && expired.contains("Max-Age=0"), "{expired}");
    // The client may keep the cookie; the server has forgotten it.
    let r = app.get("/me").header("cookie", pair).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(problem(r).await, "not-logged-in");
}

#[tokio::test]
async fn secure_deployments_use_the_host_prefix_and_secure() {
    let app = TestApp::spawn(SessionConfig::default()).await;
    let (pair, _, set_cookie) = app.login_cookie("alice").await;
    assert!(pair.starts_with("__Host-tessera="), "{pair}");
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    let r = app.get("/me").header("cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The unprefixed name is not a credential there.
    let plain = pair.replacen("__Host-", "", 1);
    assert_eq!(app.get("/me").header("cookie", plain).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn header_flow_uses_bearer_or_x_auth_token_without_cookies() {
    let app = TestApp::spawn(dev()).await;
    let r = app.post("/login").header("x-auth-mode", "header").json(&json!({"user": "bob"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let header_token = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    let token = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token, header_token);
    for (name, value) in [("authorization", format!("Bearer {token}")), ("x-auth-token", token.clone())] {
        let r = app.get("/me").header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["data"]["user"], "bob");
    }
    // Header-carried state changes need no CSRF token.
    let r = app.post("/logout").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn tokens_are_never_read_from_the_url() {
    let app = TestApp::spawn(dev()).await;
    let token = app.login_header("alice").await;
    let r = app.get(&format!("/me?token={token}")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn header_only_and_cookie_only_deployments_ignore_the_other_carrier() {
    let header_only = TestApp::spawn(SessionConfig { carrier: CarrierMode::Header, ..dev() }).await;
    let r = header_only.post("/login").json(&json!({"user": "h"})).send().await.unwrap();
    assert!(r.headers().get("set-cookie").is_none(), "header mode never sets a cookie");
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    let r = header_only.get("/me").header("cookie", format!("tessera={token}")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let cookie_only = TestApp::spawn(SessionConfig { carrier: CarrierMode::Cookie, ..dev() }).await;
    let r = cookie_only.post("/login").header("x-auth-mode", "header").json(&json!({})).send().await.unwrap();
    let pair = cookie_pair(&tessera_testkit::http::set_cookie(&r));
    let token = pair.split_once('=').unwrap().1.to_owned();
    assert_eq!(cookie_only.get("/me").bearer_auth(&token).send().await.unwrap().status(), 401);
    assert_eq!(cookie_only.get("/me").header("cookie", pair).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn auto_prefers_a_header_token_over_the_cookie() {
    let app = TestApp::spawn(dev()).await;
    let (cookie, _, _) = app.login_cookie("cookie-user").await;
    let token = app.login_header("header-user").await;
    let r = app.get("/me").header("cookie", &cookie).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["user"], "header-user");
    // A bad header token does not fall back to the cookie.
    let r = app.get("/me").header("cookie", &cookie).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn login_rotates_the_token_and_the_old_one_dies() {
    let app = TestApp::spawn(dev()).await;
    // An anonymous session first (as during an OTP step), with data.
    let r = app.post("/visit").header("x-auth-mode", "header").send().await.unwrap();
    let anon = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    let r = app.post("/login").bearer_auth(&anon).json(&json!({"user": "alice"})).send().await.unwrap();
    let fresh = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, anon);
    assert_eq!(app.get("/me").bearer_auth(&anon).send().await.unwrap().status(), 401, "fixation");
    assert_eq!(app.get("/me").bearer_auth(&fresh).send().await.unwrap().status(), 200);
    // The anonymous session's data came along.
    let r = app.post("/visit").bearer_auth(&fresh).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"], 2);
    // Logging in again from a logged-in session rotates again.
    let r = app.post("/login").bearer_auth(&fresh).json(&json!({"user": "alice"})).send().await.unwrap();
    let third = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/me").bearer_auth(&fresh).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/me").bearer_auth(&third).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = TestApp::spawn(dev()).await;
    let token = app.login_header("alice").await;
    app.clock.advance(29 * MIN);
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    // That request touched the session: another 29 minutes are fine...
    app.clock.advance(29 * MIN);
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    // ...but 30 minutes of silence end it.
    app.clock.advance(30 * MIN);
    let r = app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(problem(r).await, "not-logged-in");
}

#[tokio::test]
async fn activity_never_extends_the_absolute_deadline() {
    let expiry = ExpiryPolicy::new(30 * MIN, 60 * MIN).unwrap();
    let app = TestApp::spawn(SessionConfig { expiry, ..dev() }).await;
    let token = app.login_header("alice").await;
    for _ in 0..5 {
        app.clock.advance(10 * MIN);
        assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    app.clock.advance(10 * MIN); // 60 minutes after login, active all along
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn read_only_requests_write_only_when_a_touch_is_due() {
    let app = TestApp::spawn(dev()).await; // touch interval: 3 minutes
    let token = app.login_header("alice").await;
    let writes = app.store.writes();
    for _ in 0..10 {
        app.clock.advance(Duration::from_secs(10));
        assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    assert_eq!(app.store.writes(), writes, "no write within the touch interval");
    app.clock.advance(3 * MIN);
    app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(app.store.writes(), writes + 1, "one touch once due");
    for _ in 0..5 {
        app.get("/me").bearer_auth(&token).send().await.unwrap();
    }
    assert_eq!(app.store.writes(), writes + 1, "and then none until the next interval");
}

#[tokio::test]
async fn routes_that_never_touch_the_session_cost_no_store_call() {
    let app = TestApp::spawn(dev()).await;
    let token = app.login_header("alice").await;
    let calls = app.store.calls();
    let r = app.get("/public").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.store.calls(), calls);
    let r = app.get("/maybe").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"], Value::Null);
    assert_eq!(app.store.calls(), calls, "no credential, no store call");
}

#[tokio::test]
async fn concurrent_updates_to_different_attributes_both_persist() {
    let app = TestApp::spawn(dev()).await;
    let token = app.login_header("alice").await;
    let (a, b) = tokio::join!(
        app.post("/together/a/apple").bearer_auth(&token).send(),
        app.post("/together/b/banana").bearer_auth(&token).send(),
    );
    assert_eq!((a.unwrap().status().as_u16(), b.unwrap().status().as_u16()), (200, 200));
    let me: Value = app.get("/me").bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["data"]["a"].as_str(), me["data"]["b"].as_str()), (Some("apple"), Some("banana")));
}

#[tokio::test]
async fn concurrent_updates_to_one_attribute_have_one_winner_and_one_409() {
    let app = TestApp::spawn(dev()).await;
    let token = app.login_header("alice").await;
    let (x, y) = tokio::join!(
        app.post("/together/a/first").bearer_auth(&token).send(),
        app.post("/together/a/second").bearer_auth(&token).send(),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let loser = if x.status() == 409 { x } else { y };
    assert_eq!(problem(loser).await, "session-conflict");
    let me: Value = app.get("/me").bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(["first", "second"].contains(&me["data"]["a"].as_str().unwrap()));
}

#[tokio::test]
async fn same_origin_pages_need_no_listing_and_refusals_say_why() {
    let app = TestApp::spawn(dev()).await;
    let (cookie, _, _) = app.login_cookie("alice").await;
    let visit = || app.post("/visit").header("cookie", &cookie);
    // A page served from the address the browser used: its own origin, no
    // token echo, no entry in the allowed list. Likewise the browser's mark.
    let own = format!("http://{}", app.addr);
    assert_eq!(visit().header("origin", &own).send().await.unwrap().status(), 200);
    assert_eq!(visit().header("sec-fetch-site", "same-origin").send().await.unwrap().status(), 200);
    // The same host on another scheme or port is another origin.
    let other_port = format!("http://{}:1", app.addr.ip());
    for (request, reason) in [
        (visit().header("origin", "https://evil.example"), "foreign origin"),
        (visit().header("origin", &other_port), "foreign origin"),
        (visit().header("origin", own.replace("http:", "https:")), "foreign origin"),
        (visit().header("origin", "null"), "Origin: null"),
        (visit().header("sec-fetch-site", "cross-site"), "marked cross-site"),
        (visit(), "CSRF token"),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains(reason), "{reason}: {body}");
    }
}

#[tokio::test]
async fn behind_a_proxy_the_application_names_the_target_origin() {
    // The application (trusting its proxy's X-Forwarded-Host) says which
    // origin the browser addressed; Host names the proxy's upstream.
    let app = TestApp::spawn_with(std::sync::Arc::new(tessera::MemoryStore::new()), dev(), |b| b).await;
    let (cookie, _, _) = app.login_cookie("alice").await;
    let site = tessera::TargetOrigin::new("https", "site.example").unwrap();
    let router = axum::Router::new()
        .route("/visit", axum::routing::post(|| async { "ok" }))
        .layer(tessera::SessionLayer::builder(tessera::MemoryStore::new()).config(dev()).build())
        .layer(axum::Extension(site));
    let request = |origin: &str| {
        http::Request::post("/visit")
            .header("origin", origin)
            .header("host", "upstream:8080")
            .header("cookie", &cookie)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    use tower::ServiceExt;
    let same = router.clone().oneshot(request("https://site.example")).await.unwrap();
    assert_eq!(same.status(), 200, "the named origin is this request's own");
    let host_only = router.oneshot(request("http://upstream:8080")).await.unwrap();
    assert_eq!(host_only.status(), 403, "Host no longer decides once the application named the origin");
}

#[tokio::test]
async fn csrf_rules_guard_cookie_carried_state_changes() {
    let app = TestApp::spawn(dev()).await;
    let (cookie, csrf, _) = app.login_cookie("alice").await;
    let visit = || app.post("/visit").header("cookie", &cookie);

    let refused = [
        visit(),
        visit().header("x-csrf-token", "wrong"),
        visit().header("x-csrf-token", tessera::CsrfToken::generate().expose()),
        visit().header("origin", "null"),
        visit().header("origin", "https://evil.example"),
        visit().header("origin", "https://shop.example.evil.example"),
        visit().header("origin", "http://shop.example"),
        visit().header("origin", "https://evil.example").header("x-csrf-token", &csrf),
        visit().header("sec-fetch-site", "cross-site"),
    ];
    for request in refused {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(problem(r).await, "csrf-rejected");
    }
    let accepted = [
        visit().header("x-csrf-token", &csrf),
        visit().header("origin", "https://shop.example"),
        visit().header("origin", format!("http://{}", app.addr)).header("x-csrf-token", &csrf),
    ];
    for request in accepted {
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    // A foreign page cannot log a browser into someone's account either.
    let r = app.post("/login").header("origin", "https://evil.example").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // GET never needs a token.
    assert_eq!(
        app.get("/me")
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn malformed_tokens_get_401_without_a_store_call() {
    let app = TestApp::spawn(dev()).await;
    let long = "A".repeat(4096);
    let cases = ["", long.as_str(), "abc%00def", "abc%0D%0Adef", "not base64!!", "' OR 1=1 --", "\u{7f}"];
    for case in cases {
        for (name, value) in [("x-auth-token", case.to_owned()), ("cookie", format!("tessera={case}"))] {
            let Ok(value) = reqwest::header::HeaderValue::from_str(&value) else {
                continue;
            };
            let r = app.get("/me").header(name, value).send().await.unwrap();
            assert_eq!(r.status(), 401, "{name}: {case:?}");
            assert_eq!(problem(r).await, "not-logged-in");
        }
        let r = app.get("/me").header("authorization", format!("Bearer {case}")).send().await;
        if let Ok(r) = r {
            assert_eq!(r.status(), 401);
        }
    }
    assert_eq!(app.store.calls().total(), 0);
}

#[tokio::test]
async fn raw_nul_and_crlf_in_a_token_are_refused_before_any_store_call() {
    let app = TestApp::spawn(dev()).await;
    for raw in [&b"X-Auth-Token: abc\0def"[..], b"Cookie: tessera=abc\rdef", b"X-Auth-Token: abc\r def"] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let mut request = b"GET /me HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
        request.extend_from_slice(raw);
        request.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let head = String::from_utf8_lossy(&answer);
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(status == 400 || status == 401, "{raw:?} got {head}");
    }
    assert_eq!(app.store.calls().total(), 0);
}

/// The embedded store reports the user's session count with the login
/// itself, and the layer trusts it to skip the listing: at the cap nothing
/// ends, one past it the oldest does, and logging in again from one's own
/// session replaces it rather than adding one.
#[tokio::test]
async fn the_per_user_cap_holds_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let app = TestApp::spawn_on(Arc::new(sqlite), SessionConfig { max_sessions_per_user: Some(2), ..dev() }).await;
    let first = app.login_header("alice").await;
    app.clock.advance(Duration::from_secs(1));
    let second = app.login_header("alice").await;
    app.clock.advance(Duration::from_secs(1));
    let me = |token: &str| app.get("/me").bearer_auth(token).send();
    assert_eq!(me(&first).await.unwrap().status(), 200, "at the cap, nothing ends");
    let r = app.post("/login").bearer_auth(&second).json(&json!({"user": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let again = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(me(&second).await.unwrap().status(), 401, "replaced by the new login");
    assert_eq!(me(&first).await.unwrap().status(), 200, "a login from one's own session adds none");
    app.clock.advance(Duration::from_secs(1));
    let third = app.login_header("alice").await;
    assert_eq!(me(&first).await.unwrap().status(), 401, "one past the cap, the oldest went");
    for token in [&again, &third] {
        assert_eq!(me(token).await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn a_store_that_is_down_yields_503_not_an_empty_session() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let app = TestApp::spawn_on(Arc::new(sqlite.clone()), dev()).await;
    let token = app.login_header("alice").await;
    sqlite.close().await;
    for r in [
        app.get("/me").bearer_auth(&token).send().await.unwrap(),
        app.get("/maybe").bearer_auth(&token).send().await.unwrap(),
        app.post("/login").header("x-auth-mode", "header").json(&json!({})).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(problem(r).await, "store-unavailable");
    }
    // A request with no credential never touches the store.
    assert_eq!(app.get("/public").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn users_list_their_sessions_without_seeing_tokens() {
    let app = TestApp::spawn(dev()).await;
    let phone = app.login_header("alice").await;
    let laptop = app.login_header("alice").await;
    let _other = app.login_header("bob").await;
    let r = app.get("/sessions").bearer_auth(&phone).header("user-agent", "phone/1").send().await.unwrap();
    let list = r.json::<Value>().await.unwrap()["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&phone) && !text.contains(&laptop));
    assert_eq!(list[0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn a_login_beyond_the_per_user_cap_ends_the_oldest_session() {
    let app = TestApp::spawn(SessionConfig { max_sessions_per_user: Some(2), ..dev() }).await;
    let first = app.login_header("alice").await;
    app.clock.advance(Duration::from_secs(1));
    let second = app.login_header("alice").await;
    app.clock.advance(Duration::from_secs(1));
    let bob = app.login_header("bob").await;
    let third = app.login_header("alice").await;
    assert_eq!(app.get("/me").bearer_auth(&first).send().await.unwrap().status(), 401, "the oldest went");
    for token in [&second, &third, &bob] {
        assert_eq!(app.get("/me").bearer_auth(token).send().await.unwrap().status(), 200);
    }
}
