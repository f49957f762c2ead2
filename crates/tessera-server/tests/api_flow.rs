//! The whole user flow over real HTTP, in both carriers.

mod support;

use serde_json::{json, Value};
use support::{e164, failure, TestServer, ORIGIN, PASSWORD, PHONE};
use tessera::CarrierMode;

#[tokio::test]
async fn cookie_mode_getotp_register_login_me_logout() {
    let app = TestServer::spawn().await;
    // The course's pages: form bodies, `telphone`, cookies.
    let r = app.post("/user/getotp").form(&[("telphone", PHONE)]).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "success", "data": null}));
    let code = app.sink.last_code(&e164(PHONE));
    let form = [
        ("telphone", PHONE),
        ("otpCode", code.as_str()),
        ("name", "张三"),
        ("gender", "1"),
        ("age", "30"),
        ("password", PASSWORD),
    ];
    let r = app.post("/user/register").form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let user = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(user["telephone"], "+8613812345678");
    assert!(user.get("password").is_none() && user.get("encrptPassword").is_none());

    let (cookie, csrf) = app.login_cookie(PHONE).await;
    assert!(cookie.starts_with("tessera="), "--dev uses the plain name: {cookie}");
    let r = app.get("/user/me").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let me = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(me, user);
    assert_eq!(
        me.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
        ["age", "gender", "id", "name", "telephone"]
    );

    let r = app.get(&format!("/user/get?id={}", user["id"])).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"], user);

    let r = app.post("/user/logout").header("cookie", &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let r = app.get("/user/me").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20003));
}

#[tokio::test]
async fn header_mode_getotp_register_login_me_logout() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let r = app
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "header clients get no cookie");
    let header = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["token"], header);
    let me = app.get("/user/me").bearer_auth(&header).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["data"]["telephone"], e164(PHONE));
    let me = app.get("/user/me").header("x-auth-token", &header).send().await.unwrap();
    assert_eq!(me.status(), 200);
    // The answer from the profile cache is framed by its length, not chunked.
    assert!(me.headers().get("transfer-encoding").is_none());
    let length = me.headers()["content-length"].to_str().unwrap().parse::<usize>().unwrap();
    assert_eq!(me.bytes().await.unwrap().len(), length);
    // Header clients need no CSRF token.
    assert_eq!(app.post("/user/logout").bearer_auth(&header).send().await.unwrap().status(), 200);
    assert_eq!(failure(app.get("/user/me").bearer_auth(&header).send().await.unwrap()).await, (401, 20003));
}

#[tokio::test]
async fn a_header_only_client_completes_otp_login_without_any_session() {
    let app = TestServer::spawn_with(|s| s.carrier = CarrierMode::Header).await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    let r = app.post("/user/login").json(&json!({"telephone": PHONE, "otpCode": code})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let token = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/user/me").bearer_auth(&token).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn x_auth_mode_decides_the_carrier_in_auto() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let login = |mode: Option<&'static str>| {
        let mut r =
            app.post("/user/login").header("origin", ORIGIN).json(&json!({"telephone": PHONE, "password": PASSWORD}));
        if let Some(mode) = mode {
            r = r.header("x-auth-mode", mode);
        }
        r.send()
    };
    let r = login(Some("header")).await.unwrap();
    assert!(r.headers().get("x-auth-token").is_some() && r.headers().get("set-cookie").is_none());
    let r = login(None).await.unwrap();
    assert!(r.headers().get("x-auth-token").is_none() && r.headers().get("set-cookie").is_some());
    let body: Value = r.json().await.unwrap();
    assert!(body["data"].get("token").is_none(), "a cookie login never puts the token in the body");
    assert!(body["data"]["csrfToken"].is_string());
    // A cookie-only deployment ignores the request for a header token.
    let cookie_only = TestServer::spawn_with(|s| s.carrier = CarrierMode::Cookie).await;
    cookie_only.register(PHONE).await;
    let r = cookie_only
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_some() && r.headers().get("x-auth-token").is_none());
}

#[tokio::test]
async fn login_rotates_the_token() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let first = app.login_header(PHONE).await;
    let r = app
        .post("/user/login")
        .bearer_auth(&first)
        .json(&json!({"telephone": PHONE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(app.get("/user/me").bearer_auth(&first).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/user/me").bearer_auth(&second).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn csrf_guards_cookie_posts() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let (cookie, csrf) = app.login_cookie(PHONE).await;
    for (name, value) in [("origin", "https://evil.example"), ("origin", "null"), ("sec-fetch-site", "cross-site")] {
        let r = app.post("/user/logout").header("cookie", &cookie).header(name, value).send().await.unwrap();
        assert_eq!(failure(r).await, (403, 10005), "{name}: {value}");
    }
    let r = app.post("/user/logout").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005), "no token, no origin");
    let r = app.delete("/user/sessions").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005));
    // Still logged in: nothing was done.
    assert_eq!(app.get("/user/me").header("cookie", &cookie).send().await.unwrap().status(), 200);
    let r = app.post("/user/logout").header("cookie", &cookie).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (cookie, _) = app.login_cookie(PHONE).await;
    let r = app.get("/user/csrf").header("cookie", &cookie).send().await.unwrap();
    let fresh = r.json::<Value>().await.unwrap()["data"]["csrfToken"].as_str().unwrap().to_owned();
    assert_ne!(fresh, csrf, "each session has its own token");
    let r = app.post("/user/logout").header("cookie", &cookie).header("x-csrf-token", &fresh).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_sites_own_pages_are_same_origin_directly_and_behind_a_trusted_proxy() {
    let app = TestServer::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    app.register(PHONE).await;
    let (cookie, _) = app.login_cookie(PHONE).await;
    let getotp = || app.post("/user/getotp").header("cookie", &cookie).form(&[("telphone", "13900000001")]);
    // Addressed directly: the page's origin is the API's own.
    let r = getotp().header("origin", format!("http://{}", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200, "same origin, not listed in --allowed-origin");
    app.clock.advance(std::time::Duration::from_secs(61));
    // Behind a proxy that reports the host and scheme the browser used.
    let proxied = |origin: &str| {
        getotp().header("origin", origin).header("x-forwarded-proto", "https").header("x-forwarded-host", "shop.site")
    };
    assert_eq!(proxied("https://shop.site").send().await.unwrap().status(), 200);
    let r = proxied(&format!("http://{}", app.addr)).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005), "the proxy's report, not Host, is the target");
    let r = proxied("https://evil.example").send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["data"]["errMsg"].as_str().unwrap().contains("来源"), "the message names the reason: {body}");
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let app = TestServer::spawn().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/user/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-csrf-token")
            .send()
    };
    let r = preflight(ORIGIN).await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_answers() {
    let app = TestServer::spawn().await;
    let r = app.get("/healthz").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "success", "data": {"status": "ok"}}));
}
