//! Forward auth: `/auth/verify` as nginx `auth_request`, Traefik
//! `ForwardAuth` and Envoy's HTTP `ext_authz` call it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::nginx::Nginx;
use support::{failure, on_redis_patient, TestServer, ORIGIN, PHONE};
use tessera_server::configuration::TokenConfig;
use tessera_testkit::{Monitor, RedisServer};

/// The public id `/user/sessions` gives the caller's own session.
async fn own_session_id(request: reqwest::RequestBuilder) -> String {
    let list: Value = request.send().await.unwrap().json().await.unwrap();
    let mine = list["data"].as_array().unwrap().iter().find(|s| s["current"] == true).cloned().unwrap();
    mine["id"].as_str().unwrap().to_owned()
}

fn identity(r: &reqwest::Response) -> (String, String) {
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (header("x-user-id"), header("x-session-id"))
}

#[tokio::test]
async fn a_logged_in_caller_is_named_to_the_proxy_and_nobody_else_is() {
    let app = TestServer::spawn().await;
    let user = app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    let session_id = own_session_id(app.get("/user/sessions").bearer_auth(&token)).await;

    // nginx and Traefik: a GET to /auth/verify; Envoy: the original method
    // and path appended.
    for request in [
        app.get("/auth/verify").bearer_auth(&token),
        app.get("/auth/verify").header("x-auth-token", &token),
        app.post("/auth/verify/orders/42").bearer_auth(&token),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(identity(&r), (user["id"].to_string(), session_id.clone()));
        assert!(!r.headers()["x-session-id"].to_str().unwrap().contains(&token));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["data"]["userId"], user["id"].to_string());
    }

    for request in [
        app.get("/auth/verify"),
        app.get("/auth/verify").bearer_auth("not-a-token"),
        app.get("/auth/verify").bearer_auth("A".repeat(43)),
    ] {
        let r = request.send().await.unwrap();
        assert!(r.headers().get("x-user-id").is_none());
        assert_eq!(failure(r).await, (401, 20003));
    }

    // Ended means ended here too.
    app.post("/user/logout").bearer_auth(&token).send().await.unwrap();
    let r = app.get("/auth/verify").bearer_auth(&token).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20003));
}

#[tokio::test]
async fn cookie_carried_state_changes_are_judged_as_the_original_request() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let (cookie, csrf) = app.login_cookie(PHONE).await;
    let verify = |method: &str, origin: &str| {
        app.get("/auth/verify")
            .header("cookie", &cookie)
            .header("x-original-method", method)
            .header("x-original-uri", "/orders")
            .header("origin", origin)
    };

    // A page of the site reading is fine; a foreign page posting is not.
    assert_eq!(verify("GET", "https://evil.example").send().await.unwrap().status(), 200);
    let r = verify("POST", "https://evil.example").send().await.unwrap();
    assert!(r.headers().get("x-user-id").is_none());
    assert_eq!(failure(r).await, (403, 10005));
    assert_eq!(failure(verify("DELETE", "null").send().await.unwrap()).await, (403, 10005));
    // A client cannot talk its state change down to a read: the strictest
    // method named is judged.
    let r = verify("GET", "https://evil.example").header("x-forwarded-method", "POST");
    assert_eq!(failure(r.send().await.unwrap()).await, (403, 10005));

    // Traefik's header name. A page of the API's own origin needs nothing
    // more; a request that names no origin must echo the synchronizer token.
    let put = || app.get("/auth/verify").header("cookie", &cookie).header("x-forwarded-method", "PUT");
    assert_eq!(put().header("origin", format!("http://{}", app.addr)).send().await.unwrap().status(), 200);
    assert_eq!(failure(put().send().await.unwrap()).await, (403, 10005));
    assert_eq!(failure(put().header("x-csrf-token", "wrong").send().await.unwrap()).await, (403, 10005));
    assert_eq!(put().header("x-csrf-token", &csrf).send().await.unwrap().status(), 200);
    assert_eq!(verify("POST", ORIGIN).send().await.unwrap().status(), 200, "an allowed origin");

    // Envoy sends the original method itself: the layer's own check applies.
    let r = app.post("/auth/verify/orders").header("cookie", &cookie).header("origin", "https://evil.example");
    assert_eq!(failure(r.send().await.unwrap()).await, (403, 10005));

    let r = app.get("/auth/verify").header("cookie", &cookie).header("x-original-method", "NOT A METHOD");
    assert_eq!(failure(r.send().await.unwrap()).await, (400, 10001));
}

#[tokio::test]
async fn signed_access_tokens_are_verified_by_cpu_and_name_their_family() {
    let app = TestServer::spawn_with(|s| s.tokens = Some(TokenConfig::default())).await;
    let user = app.register(PHONE).await;
    let access = app.login_header(PHONE).await;
    let family = own_session_id(app.get("/user/sessions").bearer_auth(&access)).await;
    let r = app.get("/auth/verify").bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(identity(&r), (user["id"].to_string(), family));

    // One character of the signature changed.
    let mut forged = access.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = app.get("/auth/verify").bearer_auth(&forged).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20003));

    app.post("/user/logout").bearer_auth(&access).send().await.unwrap();
    let r = app.get("/auth/verify").bearer_auth(&access).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20003), "a logged-out family's access token is refused at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_hit_asks_redis_nothing_and_a_lost_redis_is_503() {
    let mut redis = RedisServer::start();
    let app = TestServer::spawn_with(on_redis_patient(redis.url())).await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    assert_eq!(app.get("/auth/verify").bearer_auth(&token).send().await.unwrap().status(), 200);

    let monitor = Monitor::start(redis.port());
    for _ in 0..20 {
        assert_eq!(app.get("/auth/verify").bearer_auth(&token).send().await.unwrap().status(), 200);
    }
    assert_eq!(monitor.client_commands(), 0, "every check answered from the near cache");
    drop(monitor);

    redis.kill();
    // Memory answers for at most one lease after the feed is cut (the closed
    // connection usually ends it at once); then every check is a 503.
    let started = std::time::Instant::now();
    let r = loop {
        let r = app.get("/auth/verify").bearer_auth(&token).send().await.unwrap();
        if r.status() != 200 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "answered from memory past its 2 s lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().get("x-user-id").is_none());
    assert_eq!(failure(r).await, (503, 10004));
}

/// The README's nginx configuration, its ports replaced.
fn readme_nginx_site(tessera: std::net::SocketAddr, orders: std::net::SocketAddr, port: u16) -> String {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```nginx\n").expect("the README has an nginx block") + "```nginx\n".len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let site = block
        .replace("127.0.0.1:8080", &tessera.to_string())
        .replace("127.0.0.1:9000", &orders.to_string())
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    assert_ne!(site, block, "the README's ports are the ones replaced here");
    site
}

/// The "order service": answers with the identity headers it was given.
async fn orders_service() -> std::net::SocketAddr {
    use axum::http::HeaderMap;
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?").to_owned());
        axum::Json(serde_json::json!({ "user": get("x-user-id"), "session": get("x-session-id") }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn behind_nginx_the_services_learn_the_caller_and_nobody_can_name_themselves() {
    let app = TestServer::spawn().await;
    let user = app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    let (cookie, csrf) = app.login_cookie(PHONE).await;
    let orders = orders_service().await;
    let nginx = Nginx::start(|port| readme_nginx_site(app.addr, orders, port)).await;
    let site = nginx.url();
    let id = user["id"].to_string();

    // A caller with a token reaches the service, named by the proxy; a
    // name the caller made up is replaced.
    let r =
        app.http.get(format!("{site}/orders/1")).bearer_auth(&token).header("x-user-id", "999").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["user"], id);
    assert!(seen["session"].as_str().is_some_and(|s| !s.is_empty()));

    // Without a credential the service is never reached, whatever it claims.
    let r = app.http.get(format!("{site}/orders/1")).header("x-user-id", &id).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A browser's cookie: reads pass; a foreign page's POST does not; the
    // site's own page does (nginx passes the Host the browser used); a POST
    // naming no origin must echo the token.
    let get = app.http.get(format!("{site}/orders/1")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(get.json::<Value>().await.unwrap()["user"], id);
    let post = || app.http.post(format!("{site}/orders/1")).header("cookie", &cookie);
    assert_eq!(post().header("origin", "https://evil.example").send().await.unwrap().status(), 403);
    let r = post().header("origin", &site).send().await.unwrap();
    assert_eq!(r.status(), 200, "the site's own origin");
    assert_eq!(r.json::<Value>().await.unwrap()["user"], id);
    assert_eq!(post().send().await.unwrap().status(), 403, "no origin, no token");
    assert_eq!(post().header("x-csrf-token", &csrf).send().await.unwrap().status(), 200);

    // A logout through the proxy, and the proxy refuses the token at once.
    let r = app.http.post(format!("{site}/user/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(format!("{site}/orders/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401, "ended means ended behind the proxy too");
}
