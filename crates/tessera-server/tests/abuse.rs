//! Cheap abuse: locking a phone's owner out by logging in (or failing) in
//! their name, harvesting telephones through `/user/get`, and personal data
//! left in caches.

mod support;

use serde_json::{json, Value};
use support::{failure, TestServer, PASSWORD, PHONE};

/// A server behind a trusted proxy (loopback), so tests choose the client
/// address with `X-Forwarded-For`.
async fn behind_proxy() -> TestServer {
    TestServer::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await
}

async fn login_from(app: &TestServer, address: &str, password: &str) -> reqwest::Response {
    app.post("/user/login")
        .header("x-auth-mode", "header")
        .header("x-forwarded-for", address)
        .json(&json!({"telephone": PHONE, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn successful_logins_never_add_up_to_a_lockout() {
    let app = behind_proxy().await;
    app.register(PHONE).await;
    for i in 0..25 {
        assert_eq!(login_from(&app, "10.0.0.1", PASSWORD).await.status(), 200, "login {i}");
    }
}

#[tokio::test]
async fn failures_lock_out_the_failing_address_not_the_owner() {
    let app = behind_proxy().await;
    app.register(PHONE).await;
    for _ in 0..10 {
        assert_eq!(failure(login_from(&app, "10.6.6.6", "wrong password!").await).await, (401, 20002));
    }
    let r = login_from(&app, "10.6.6.6", "wrong password!").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(failure(r).await, (429, 10003), "the attacker's address is throttled");
    assert_eq!(failure(login_from(&app, "10.6.6.6", PASSWORD).await).await, (429, 10003), "even with the password");
    assert_eq!(login_from(&app, "10.0.0.2", PASSWORD).await.status(), 200, "the owner elsewhere logs in");
}

#[tokio::test]
async fn failures_from_many_addresses_meet_the_per_phone_ceiling() {
    let app = TestServer::spawn_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.throttles.login_ceiling_per_phone = 6;
    })
    .await;
    app.register(PHONE).await;
    for i in 0..6 {
        let r = login_from(&app, &format!("10.1.0.{i}"), "wrong password!").await;
        assert_eq!(failure(r).await, (401, 20002));
    }
    let r = login_from(&app, "10.2.0.1", "wrong password!").await;
    assert_eq!(failure(r).await, (429, 10003), "a distributed guesser meets the ceiling");
}

#[tokio::test]
async fn other_users_profiles_carry_no_telephone() {
    let app = TestServer::spawn().await;
    let me = app.register(PHONE).await;
    let other = app.register("13900000001").await;
    let token = app.login_header(PHONE).await;
    let r = app.get(&format!("/user/get?id={}", other["id"])).bearer_auth(&token).send().await.unwrap();
    let profile: Value = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(profile["name"], other["name"]);
    assert!(profile.get("telephone").is_none(), "{profile}");
    assert!(!profile.to_string().contains("13900000001"), "{profile}");
    // One's own id is one's own business.
    let r = app.get(&format!("/user/get?id={}", me["id"])).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["telephone"], me["telephone"]);
}

#[tokio::test]
async fn personal_answers_are_never_stored_by_caches() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    let (cookie, _) = app.login_cookie(PHONE).await;
    for path in ["/user/me", "/user/sessions", "/user/csrf"] {
        let r = app.get(path).bearer_auth(&token).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let r = app.get("/user/me").send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "failures too");
}
