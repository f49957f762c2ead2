//! The account lifecycle over real HTTP: a password change (the caller's
//! session rotated, the others ended), and the operator API (disable and
//! enable an account, list and end a user's sessions), on one in-process
//! server and on two `tessera` processes sharing Redis in token mode.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::node::Node;
use support::{e164, failure, Sink, TestServer, PASSWORD, PHONE};
use tessera_testkit::RedisServer;

const NEW_PASSWORD: &str = "a brand new passphrase";
const ADMIN: &str = "operator-token-0123456789abcdef0123456789";

async fn me(server: &TestServer, token: &str) -> u16 {
    server.get("/user/me").bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn login_with(server: &TestServer, password: &str) -> reqwest::Response {
    server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_password_change_rotates_the_caller_and_ends_the_others() {
    let server = TestServer::spawn_with(|s| s.throttles.login_per_phone = 2).await;
    server.register(PHONE).await;
    let (mine, other) = (server.login_header(PHONE).await, server.login_header(PHONE).await);

    // Not logged in: no change.
    let r = server.post("/user/password").json(&json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}));
    assert_eq!(failure(r.send().await.unwrap()).await, (401, 20003));
    // A new password that registration would refuse.
    let r = server
        .post("/user/password")
        .bearer_auth(&mine)
        .json(&json!({"oldPassword": PASSWORD, "newPassword": "short"}));
    assert_eq!(failure(r.send().await.unwrap()).await, (400, 10001));
    // A wrong current password is a failed login, and counts as one.
    for _ in 0..2 {
        let r = server
            .post("/user/password")
            .bearer_auth(&mine)
            .json(&json!({"oldPassword": "not it at all", "newPassword": NEW_PASSWORD}));
        assert_eq!(failure(r.send().await.unwrap()).await, (401, 20002));
    }
    assert_eq!(me(&server, &other).await, 200, "a refused change ends nothing");
    let r = server
        .post("/user/password")
        .bearer_auth(&mine)
        .json(&json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}));
    assert_eq!(failure(r.send().await.unwrap()).await, (429, 10003), "the login throttle counted them");
    server.clock.advance(Duration::from_secs(16 * 60));

    let r = server
        .post("/user/password")
        .bearer_auth(&mine)
        .json(&json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    assert_eq!(data["revoked"], 1);
    assert_eq!(data["user"]["telephone"], e164(PHONE));
    let rotated = data["token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, mine, "the caller's session goes on under a new token");
    assert_eq!(me(&server, &rotated).await, 200);
    assert_eq!(me(&server, &mine).await, 401, "the token from before the change is dead");
    assert_eq!(me(&server, &other).await, 401, "the other session ended");

    // Only the new password opens the account now.
    assert_eq!(failure(login_with(&server, PASSWORD).await).await, (401, 20002));
    assert_eq!(login_with(&server, NEW_PASSWORD).await.status(), 200);

    // keepOtherSessions (form body): the others stay.
    let kept = login_with(&server, NEW_PASSWORD).await.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .post("/user/password")
        .bearer_auth(&rotated)
        .form(&[("password", NEW_PASSWORD), ("newPassword", PASSWORD), ("keepOtherSessions", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 0);
    assert_eq!(me(&server, &kept).await, 200);
}

#[tokio::test]
async fn the_operator_api_is_off_without_a_token_and_refuses_a_wrong_one() {
    let off = TestServer::spawn().await;
    assert_eq!(
        failure(off.post("/admin/users/1/disable").header("x-admin-token", ADMIN).send().await.unwrap()).await,
        (404, 10007)
    );

    let server = TestServer::spawn_with(|s| s.admin_token = Some(ADMIN.into())).await;
    let id = server.register(PHONE).await["id"].as_i64().unwrap();
    let session = server.login_header(PHONE).await;
    let path = format!("/admin/users/{id}/sessions");
    assert_eq!(failure(server.get(&path).send().await.unwrap()).await, (401, 10008));
    assert_eq!(failure(server.get(&path).header("x-admin-token", "nope").send().await.unwrap()).await, (401, 10008));
    // A user's session token is no admin token.
    assert_eq!(failure(server.get(&path).header("x-admin-token", &session).send().await.unwrap()).await, (401, 10008));
    assert_eq!(failure(server.delete(&path).bearer_auth(&session).send().await.unwrap()).await, (401, 10008));
    assert_eq!(me(&server, &session).await, 200);

    // The listing shows the ids the user's own listing shows.
    let listed: Value = server.get(&path).header("x-admin-token", ADMIN).send().await.unwrap().json().await.unwrap();
    let own: Value = server.get("/user/sessions").bearer_auth(&session).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["data"][0]["id"], own["data"][0]["id"]);
    assert!(listed["data"][0].get("current").is_none());
    assert!(!listed.to_string().contains(&session), "never a token");
    let unknown = server.get("/admin/users/999/sessions").header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(failure(unknown).await, (404, 20001));

    // Ending them all leaves the account usable.
    let r = server.delete(&path).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 1);
    assert_eq!(me(&server, &session).await, 401);
    assert_eq!(login_with(&server, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions_and_says_so_only_to_its_credential() {
    let server = TestServer::spawn_with(|s| s.admin_token = Some(ADMIN.into())).await;
    let id = server.register(PHONE).await["id"].as_i64().unwrap();
    let (a, b) = (server.login_header(PHONE).await, server.login_header(PHONE).await);
    let r = server.post(&format!("/admin/users/{id}/disable")).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 2);
    assert_eq!((me(&server, &a).await, me(&server, &b).await), (401, 401));

    // A wrong password learns nothing (the usual answer); the right one
    // is told the account is disabled, and gets no session.
    let r = login_with(&server, "not the password").await;
    assert_eq!(failure(r).await, (401, 20002));
    let disabled = login_with(&server, PASSWORD).await;
    assert!(disabled.headers().get("x-auth-token").is_none());
    assert_eq!(failure(disabled).await, (403, 20010));
    // Nor does a code open it.
    server.clock.advance(Duration::from_secs(61));
    let code = server.otp(PHONE).await;
    let r = server.post("/user/login").json(&json!({"telephone": PHONE, "otpCode": code})).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 20010));

    let r = server.post(&format!("/admin/users/{id}/enable")).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let back = login_with(&server, PASSWORD).await;
    assert_eq!(back.status(), 200);
    assert_eq!(me(&server, &a).await, 401, "enabling brings no ended session back");
    let r = server.post("/admin/users/999/disable").header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(failure(r).await, (404, 20001));
}

/// Two `tessera` processes on one Redis in token mode: a password change
/// made on one node and a disabling made on the other end the other
/// sessions' signed access tokens on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_nodes_signed_tokens_end_with_a_password_change_and_a_disabling() {
    let redis = RedisServer::start();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--redis", &redis.url(), "--tokens", "signed", "--admin-token", ADMIN];
    let a = Node::start(dir.path(), &sink_url, &flags).await;
    let b = Node::start(dir.path(), &sink_url, &flags).await;
    let http = reqwest::Client::new();

    let r = http.post(a.url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = sink.last_code(&e164(PHONE));
    let r = http
        .post(b.url("/user/register"))
        .json(&json!({"telephone": PHONE, "otpCode": code, "name": "n", "gender": 1, "age": 30, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["data"]["id"].as_i64().unwrap();

    let mine = a.login_header(&http).await["accessToken"].as_str().unwrap().to_owned();
    let other = b.login_header(&http).await["accessToken"].as_str().unwrap().to_owned();
    for node in [&a, &b] {
        assert_eq!(node.me_status(&http, &other).await, 200);
    }
    let r = http
        .post(a.url("/user/password"))
        .bearer_auth(&mine)
        .json(&json!({"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    let rotated = data["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(a.me_status(&http, &other).await, 401, "refused at once where it was ended");
    assert!(b.until_status(&http, &other, 401).await < Duration::from_secs(3), "and on the other node");
    for node in [&a, &b] {
        assert_eq!(node.me_status(&http, &mine).await, 401, "the token from before the change is dead");
        assert_eq!(node.me_status(&http, &rotated).await, 200, "the caller goes on");
    }

    let r =
        http.post(b.url(&format!("/admin/users/{id}/disable"))).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b.me_status(&http, &rotated).await, 401);
    assert!(a.until_status(&http, &rotated, 401).await < Duration::from_secs(3));
    let refresh = data["refreshToken"].as_str().unwrap();
    let r = http.post(a.url("/auth/refresh")).json(&json!({"refreshToken": refresh})).send().await.unwrap();
    assert_eq!(r.status(), 401, "nor does its refresh token work");
    let r = http
        .post(a.url("/user/login"))
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(failure(r).await, (403, 20010));

    let r = http.post(a.url(&format!("/admin/users/{id}/enable"))).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let url = b.url("/user/login");
    let r =
        http.post(&url).json(&json!({"telephone": PHONE, "password": NEW_PASSWORD})).header("x-auth-mode", "header");
    assert_eq!(r.send().await.unwrap().status(), 200);
}
