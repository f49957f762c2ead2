//! One-time codes: lifetime, single use, attempt cap, replacement,
//! throttles, and no account enumeration.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{e164, failure, TestServer, PHONE};

async fn login_with(app: &TestServer, code: &str) -> reqwest::Response {
    app.post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "otpCode": code}))
        .send()
        .await
        .unwrap()
}

fn other_than(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn codes_expire_after_five_minutes() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    app.clock.advance(Duration::from_secs(301));
    assert_eq!(failure(login_with(&app, &code).await).await, (401, 20002));
    app.clock.advance(Duration::from_secs(60));
    let code = app.otp(PHONE).await;
    app.clock.advance(Duration::from_secs(299));
    assert_eq!(login_with(&app, &code).await.status(), 200);
}

#[tokio::test]
async fn codes_work_once() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    assert_eq!(login_with(&app, &code).await.status(), 200);
    assert_eq!(failure(login_with(&app, &code).await).await, (401, 20002));
}

#[tokio::test]
async fn five_wrong_tries_kill_the_code() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    for _ in 0..5 {
        assert_eq!(failure(login_with(&app, &other_than(&code)).await).await, (401, 20002));
    }
    assert_eq!(failure(login_with(&app, &code).await).await, (401, 20002), "the right code is dead too");
}

#[tokio::test]
async fn four_wrong_tries_still_leave_the_right_code_usable() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    for _ in 0..4 {
        login_with(&app, &other_than(&code)).await;
    }
    assert_eq!(login_with(&app, &code).await.status(), 200);
}

#[tokio::test]
async fn a_new_code_replaces_the_old_one() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let old = app.otp(PHONE).await;
    app.clock.advance(Duration::from_secs(61));
    let new = app.otp(PHONE).await;
    if old != new {
        assert_eq!(failure(login_with(&app, &old).await).await, (401, 20002));
    }
    assert_eq!(login_with(&app, &new).await.status(), 200);
}

#[tokio::test]
async fn a_code_for_one_phone_does_not_open_another() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp("13900000001").await;
    assert_eq!(failure(login_with(&app, &code).await).await, (401, 20002));
}

#[tokio::test]
async fn sends_are_throttled_per_phone_per_minute_and_hour() {
    let app = TestServer::spawn().await;
    let send = || app.post("/user/getotp").json(&json!({"telephone": PHONE})).send();
    for _ in 0..5 {
        assert_eq!(send().await.unwrap().status(), 200);
        assert_eq!(send().await.unwrap().status(), 429, "one per minute");
        app.clock.advance(Duration::from_secs(61));
    }
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429, "five per hour");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 60 && retry <= 3600, "{retry}");
    app.clock.advance(Duration::from_secs(retry));
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(app.sink.count(), 6, "refused sends never reached the gateway");
}

#[tokio::test]
async fn sends_are_throttled_per_client_address() {
    let app = TestServer::spawn().await;
    for i in 0..20 {
        let r = app.post("/user/getotp").json(&json!({"telephone": format!("1390000{i:04}")})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = app.post("/user/getotp").json(&json!({"telephone": "13911112222"})).send().await.unwrap();
    assert_eq!(failure(r).await, (429, 10003));
}

#[tokio::test]
async fn known_and_unknown_phones_get_identical_answers() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let known = app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap();
    let unknown = app.post("/user/getotp").json(&json!({"telephone": "13900000000"})).send().await.unwrap();
    assert_eq!(known.status(), unknown.status());
    assert_eq!(known.json::<Value>().await.unwrap(), unknown.json::<Value>().await.unwrap());
    // An unknown phone with a valid code still cannot log in, and says so
    // exactly like a wrong password.
    let code = app.sink.last_code(&e164("13900000000"));
    let r = app.post("/user/login").json(&json!({"telephone": "13900000000", "otpCode": code})).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20002));
}

#[tokio::test]
async fn logins_are_throttled_per_phone() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    for _ in 0..10 {
        let r = app
            .post("/user/login")
            .json(&json!({"telephone": PHONE, "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r =
        app.post("/user/login").json(&json!({"telephone": PHONE, "password": support::PASSWORD})).send().await.unwrap();
    assert_eq!(failure(r).await, (429, 10003));
}

#[tokio::test]
async fn throttles_are_configurable() {
    let app = TestServer::spawn_with(|s| {
        s.throttles.login_per_phone = 2;
        s.throttles.otp_per_ip = 1;
    })
    .await;
    let attempt = || app.post("/user/login").json(&json!({"telephone": PHONE, "password": "whatever it is"})).send();
    assert_eq!(attempt().await.unwrap().status(), 401);
    assert_eq!(attempt().await.unwrap().status(), 401);
    assert_eq!(failure(attempt().await.unwrap()).await, (429, 10003));
    assert_eq!(app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap().status(), 200);
    let r = app.post("/user/getotp").json(&json!({"telephone": "13900000000"})).send().await.unwrap();
    assert_eq!(failure(r).await, (429, 10003), "one send per address per hour");
}

#[tokio::test]
async fn no_store_holds_an_unregistered_phone_in_clear() {
    let app = TestServer::spawn().await;
    let stranger = "13977776666";
    assert_eq!(app.post("/user/getotp").json(&json!({"telephone": stranger})).send().await.unwrap().status(), 200);
    let r =
        app.post("/user/login").json(&json!({"telephone": stranger, "password": "guess guess"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.data.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(!bytes.is_empty());
    for needle in [stranger, "7777666", "127.0.0.1"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found at rest");
    }
}

/// The login throttle's buckets in the SQLite file, by kind (their names
/// end in pseudonyms): `(kind, hits)`, sorted.
async fn login_buckets(app: &TestServer) -> Vec<(String, i64)> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT bucket, hits FROM rate_limit WHERE bucket LIKE 'login-%'")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let mut kinds: Vec<_> = rows.into_iter().map(|(b, hits)| (b.split(':').next().unwrap().to_owned(), hits)).collect();
    kinds.sort();
    kinds
}

fn each(hits: i64) -> Vec<(String, i64)> {
    ["login-ip", "login-phone", "login-phone-ip"].map(|kind| (kind.to_owned(), hits)).into()
}

#[tokio::test]
async fn a_wrong_code_counts_in_every_login_bucket_and_a_right_one_in_none() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    assert_eq!(login_with(&app, &code).await.status(), 200);
    assert_eq!(login_buckets(&app).await, each(0), "a success gives its slot back in every bucket");
    app.clock.advance(Duration::from_secs(61));
    let code = app.otp(PHONE).await;
    assert_eq!(failure(login_with(&app, &other_than(&code)).await).await, (401, 20002));
    assert_eq!(login_buckets(&app).await, each(1), "a failure keeps its slot in every bucket");
    assert_eq!(login_with(&app, &code).await.status(), 200);
    assert_eq!(login_buckets(&app).await, each(1));
}

#[tokio::test]
async fn parallel_tries_of_the_right_code_log_in_once() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let code = app.otp(PHONE).await;
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let request = app
                .post("/user/login")
                .header("x-auth-mode", "header")
                .json(&json!({"telephone": PHONE, "otpCode": code}));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut logged_in = 0;
    for t in tries {
        logged_in += usize::from(t.await.unwrap() == 200);
    }
    assert_eq!(logged_in, 1, "a code is used once, however many race for it");
}
