//! Token mode end to end over HTTP: signed access tokens, rotating refresh
//! tokens, theft detection and its grace window, instant revocation, the
//! browser flow with two cookies, the JWKS and key rotation.

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{failure, TestServer, ORIGIN, PHONE};
use tessera_server::configuration::TokenConfig;

const OTHER_PHONE: &str = "13912345678";

async fn server() -> TestServer {
    let server = TestServer::spawn_with(|s| s.tokens = Some(TokenConfig::default())).await;
    server.register(PHONE).await;
    server
}

/// A header client's login: (access, refresh).
async fn login(server: &TestServer, phone: &str) -> (String, String) {
    let r = server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": phone, "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let access_header = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    let access = data["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(data["token"], access, "`token` is the access token for clients of the opaque mode");
    assert_eq!(access_header, access);
    assert_eq!(data["tokenType"], "Bearer");
    assert_eq!(data["expiresIn"], 600);
    (access, data["refreshToken"].as_str().unwrap().to_owned())
}

async fn refresh(server: &TestServer, token: &str) -> reqwest::Response {
    server.post("/auth/refresh").json(&json!({"refreshToken": token})).send().await.unwrap()
}

async fn pair(r: reqwest::Response) -> (String, String) {
    assert_eq!(r.status(), 200);
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    (data["accessToken"].as_str().unwrap().to_owned(), data["refreshToken"].as_str().unwrap().to_owned())
}

async fn me(server: &TestServer, access: &str) -> u16 {
    server.get("/user/me").bearer_auth(access).send().await.unwrap().status().as_u16()
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn login_hands_out_a_strict_access_token_and_an_opaque_refresh_token() {
    let server = server().await;
    let (access, refresh_token) = login(&server, PHONE).await;
    let parts: Vec<&str> = access.split('.').collect();
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    for claim in ["iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim} missing from {claims}");
    }
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert_eq!(claims["iss"], "tessera");
    let jwks: Value = server.get("/.well-known/jwks.json").send().await.unwrap().json().await.unwrap();
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert_eq!(kids.len(), 2, "current and next");
    assert!(kids.contains(&&header["kid"]));
    assert_eq!(refresh_token.len(), 86);
    assert!(!refresh_token.contains('.'), "the refresh token is opaque");

    assert_eq!(me(&server, &access).await, 200);
    // The refresh token is no access token, and the reverse.
    assert_eq!(failure(server.get("/user/me").bearer_auth(&refresh_token).send().await.unwrap()).await, (401, 20003));
    assert_eq!(failure(refresh(&server, &access).await).await, (401, 20009));
    // Nothing of either is stored in the clear: not in the database, nor in
    // its write-ahead log, where the node's last writes still are.
    let file = |name: &str| std::fs::read(server.data.path().join(name));
    let mut db = file("tessera.db").unwrap();
    db.extend(file("tessera.db-wal").unwrap_or_default());
    for secret in [&refresh_token[43..], &access] {
        assert!(!db.windows(20).any(|w| w == &secret.as_bytes()[..20]), "a token is stored in the clear");
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let server = server().await;
    let (_, first) = login(&server, PHONE).await;
    let r = refresh(&server, &first).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["data"]["user"]["telephone"], "+8613812345678", "answered like a login: {answer}");
    let access2 = answer["data"]["accessToken"].as_str().unwrap().to_owned();
    let second = answer["data"]["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(me(&server, &access2).await, 200);
    let (access3, third) = pair(refresh(&server, &second).await).await;
    assert_eq!(me(&server, &access3).await, 200);

    // Past the grace window, the rotated-away token comes back: a thief.
    server.clock.advance(Duration::from_secs(11));
    assert_eq!(failure(refresh(&server, &first).await).await, (401, 20009));
    assert_eq!(me(&server, &access3).await, 401, "the family's live access token dies at once");
    assert_eq!(failure(refresh(&server, &third).await).await, (401, 20009), "and so does its refresh token");
}

#[tokio::test]
async fn the_same_refresh_token_sent_twice_concurrently_gets_one_new_pair() {
    let server = server().await;
    let (_, first) = login(&server, PHONE).await;
    let (a, b) = tokio::join!(refresh(&server, &first), refresh(&server, &first));
    let (a, b) = (pair(a).await, pair(b).await);
    assert_eq!(a, b, "both callers hold the same new pair");
    assert_eq!(me(&server, &a.0).await, 200, "no theft verdict");
    let (access, _) = pair(refresh(&server, &a.1).await).await;
    assert_eq!(me(&server, &access).await, 200);
}

#[tokio::test]
async fn an_expired_access_token_is_refused_and_a_refresh_brings_the_client_back() {
    let server = server().await;
    let (access, refresh_token) = login(&server, PHONE).await;
    server.clock.advance(Duration::from_secs(600 + 31));
    assert_eq!(me(&server, &access).await, 401);
    let (fresh, _) = pair(refresh(&server, &refresh_token).await).await;
    assert_eq!(me(&server, &fresh).await, 200);
    // A family idle past its timeout is over.
    server.clock.advance(Duration::from_secs(31 * 60));
    let (_, late) = login(&server, PHONE).await;
    server.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(failure(refresh(&server, &late).await).await, (401, 20009));
}

#[tokio::test]
async fn logout_revokes_the_access_token_before_it_expires() {
    let server = server().await;
    let (access, refresh_token) = login(&server, PHONE).await;
    let r = server.post("/user/logout").bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&server, &access).await, 401);
    assert_eq!(failure(refresh(&server, &refresh_token).await).await, (401, 20009));
}

#[tokio::test]
async fn devices_are_token_families_and_revoking_one_kills_its_access_token() {
    let server = server().await;
    let (mine, _) = login(&server, PHONE).await;
    let (theirs, _) = login(&server, PHONE).await;
    let listed: Value = server.get("/user/sessions").bearer_auth(&mine).send().await.unwrap().json().await.unwrap();
    let sessions = listed["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let r = server.delete(&format!("/user/sessions/{other}")).bearer_auth(&mine).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&server, &theirs).await, 401);
    assert_eq!(me(&server, &mine).await, 200);

    let (third, _) = login(&server, PHONE).await;
    let r: Value = server.delete("/user/sessions").bearer_auth(&mine).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["data"]["revoked"], 1);
    assert_eq!(me(&server, &third).await, 401);
}

#[tokio::test]
async fn logout_everywhere_revokes_every_token_of_the_user_and_only_theirs() {
    let server = server().await;
    server.register(OTHER_PHONE).await;
    let (a, _) = login(&server, PHONE).await;
    let (b, b_refresh) = login(&server, PHONE).await;
    let (other, _) = login(&server, OTHER_PHONE).await;
    let r: Value = server.post("/user/logout-everywhere").bearer_auth(&a).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["data"]["revoked"], 2);
    assert_eq!(me(&server, &a).await, 401);
    assert_eq!(me(&server, &b).await, 401);
    assert_eq!(failure(refresh(&server, &b_refresh).await).await, (401, 20009));
    assert_eq!(me(&server, &other).await, 200, "another user is untouched");
    let (again, _) = login(&server, PHONE).await;
    assert_eq!(me(&server, &again).await, 200, "logging in again works at once");
}

fn cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// A browser's login (form post from our own page).
async fn browser_login(server: &TestServer) -> reqwest::Response {
    let form = [("telephone", PHONE), ("password", support::PASSWORD)];
    let r = server.post("/user/login").header("origin", ORIGIN).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r
}

fn cookie_pair(set: &[String], name: &str) -> String {
    tessera_testkit::http::cookie_pair(set.iter().find(|c| c.starts_with(&format!("{name}="))).unwrap())
}

#[tokio::test]
async fn browsers_get_two_http_only_cookies_and_refresh_by_cookie() {
    let server = server().await;
    let r = browser_login(&server).await;
    let set = cookies(&r);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"].get("refreshToken").is_none() && body["data"].get("token").is_none(), "{body}");
    let csrf = body["data"]["csrfToken"].as_str().unwrap().to_owned();
    let access_cookie = set.iter().find(|c| c.starts_with("tessera=")).unwrap();
    let refresh_cookie = set.iter().find(|c| c.starts_with("tessera-refresh=")).unwrap();
    for part in ["HttpOnly", "Path=/", "Max-Age=600"] {
        assert!(access_cookie.contains(part), "{access_cookie}");
    }
    for part in ["HttpOnly", "Path=/auth", "SameSite=Strict"] {
        assert!(refresh_cookie.split("; ").any(|p| p == part), "{part} missing from {refresh_cookie}");
    }
    let access = cookie_pair(&set, "tessera");
    let refresh_pair = cookie_pair(&set, "tessera-refresh");
    let r = server.get("/user/me").header("cookie", &access).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A forged cross-site refresh is refused, whatever it asks to be answered
    // in; our own page refreshes.
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).header("origin", "https://evil.example");
    assert_eq!(failure(r.send().await.unwrap()).await, (403, 10005));
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).header("origin", "https://evil.example");
    assert_eq!(failure(r.header("x-auth-mode", "header").send().await.unwrap()).await, (403, 10005));
    // Neither origin nor token: refused like every cookie-carried change.
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005));
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).header("x-csrf-token", "forged");
    assert_eq!(failure(r.send().await.unwrap()).await, (403, 10005));
    // The page's CSRF token is enough without an Origin (older browsers).
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).header("x-csrf-token", &csrf);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let refresh_pair = cookie_pair(&cookies(&r), "tessera-refresh");
    let r = server.post("/auth/refresh").header("cookie", &refresh_pair).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let set = cookies(&r);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"].get("refreshToken").is_none(), "browsers never see the refresh token: {body}");
    let (access, refresh_pair) = (cookie_pair(&set, "tessera"), cookie_pair(&set, "tessera-refresh"));

    // Cookie-carried state changes need the CSRF token or our origin.
    let r = server.post("/user/logout").header("cookie", &access).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005));
    let r =
        server.post("/user/logout").header("cookie", format!("{access}; {refresh_pair}")).header("x-csrf-token", &csrf);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared = cookies(&r);
    assert!(cleared.iter().any(|c| c.starts_with("tessera=;") && c.contains("Max-Age=0")), "{cleared:?}");
    assert!(cleared.iter().any(|c| c.starts_with("tessera-refresh=;") && c.contains("Max-Age=0")), "{cleared:?}");
    assert_eq!(server.get("/user/me").header("cookie", &access).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_browser_whose_access_token_lapsed_still_logs_out_by_its_refresh_cookie() {
    let server = server().await;
    let set = cookies(&browser_login(&server).await);
    let refresh_pair = cookie_pair(&set, "tessera-refresh");
    let refresh_value = refresh_pair.split_once('=').unwrap().1.to_owned();
    server.clock.advance(Duration::from_secs(700));
    let r = server.post("/auth/logout").header("cookie", &refresh_pair).send().await.unwrap();
    assert_eq!(failure(r).await, (403, 10005), "not without an origin or the CSRF token");
    // The refresh cookie travels only under /auth: that is where a browser logs out.
    let r = server.post("/auth/logout").header("cookie", &refresh_pair).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(failure(refresh(&server, &refresh_value).await).await, (401, 20009), "the family is over");
}

#[tokio::test]
async fn key_rotation_logs_nobody_out_and_is_picked_up_by_the_running_server() {
    let server = server().await;
    let (old_access, old_refresh) = login(&server, PHONE).await;
    let old_kid = decode(old_access.split('.').next().unwrap())["kid"].clone();
    let jwks = |s: &TestServer| {
        let url = s.url("/.well-known/jwks.json");
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    let next_kid = jwks(&server).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .find(|k| *k != old_kid)
        .unwrap();

    let out = std::process::Command::new(support::node::BIN)
        .args(["keys", "rotate", "--data-dir"])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    while jwks(&server).await["keys"].as_array().unwrap().len() != 3 {
        assert!(started.elapsed() < Duration::from_secs(5), "the server never reloaded its keys");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me(&server, &old_access).await, 200, "a token of the previous key stays valid");
    let (new_access, _) = pair(refresh(&server, &old_refresh).await).await;
    assert_eq!(decode(new_access.split('.').next().unwrap())["kid"], next_kid, "the published next key signs now");
    assert_eq!(me(&server, &new_access).await, 200);
}

#[tokio::test]
async fn opaque_mode_has_no_token_endpoints() {
    let server = TestServer::spawn().await;
    assert_eq!(failure(server.get("/.well-known/jwks.json").send().await.unwrap()).await, (404, 10007));
    assert_eq!(failure(refresh(&server, &"A".repeat(86)).await).await, (404, 10007));
}

#[tokio::test]
async fn introspection_answers_for_opaque_session_tokens_too_and_is_off_without_a_secret() {
    use support::introspect::{introspect, INTROSPECTION_SECRET};
    let server = TestServer::spawn_with(|s| s.introspection_secret = Some(INTROSPECTION_SECRET.into())).await;
    let user = server.register(PHONE).await;
    let token = server.login_header(PHONE).await;
    let base = format!("http://{}", server.addr);
    let (code, body) = introspect(&base, INTROSPECTION_SECRET, &token).await;
    assert_eq!(code, 200);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "Bearer", "a session token is a bearer token too");
    assert_eq!(body["sub"], user["id"].to_string());
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    let r = server.post("/user/logout").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&base, INTROSPECTION_SECRET, &token).await.1, json!({"active": false}));

    let closed = TestServer::spawn().await;
    let (code, _) = introspect(&format!("http://{}", closed.addr), INTROSPECTION_SECRET, &token).await;
    assert_eq!(code, 404, "no secret configured, no endpoint");
}

#[tokio::test]
async fn the_per_user_cap_ends_the_oldest_family_and_its_access_token() {
    let server = TestServer::spawn_with(|s| {
        s.tokens = Some(TokenConfig::default());
        s.max_sessions_per_user = Some(2);
    })
    .await;
    server.register(PHONE).await;
    let (oldest, _) = login(&server, PHONE).await;
    server.clock.advance(Duration::from_millis(5));
    let (middle, _) = login(&server, PHONE).await;
    server.clock.advance(Duration::from_millis(5));
    let (newest, _) = login(&server, PHONE).await;
    assert_eq!(me(&server, &oldest).await, 401, "the third login ended the oldest family");
    assert_eq!(me(&server, &middle).await, 200);
    assert_eq!(me(&server, &newest).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_works_on_a_redis_cluster() {
    use tessera::store::redis::RedisTarget;
    use tessera_server::configuration::RedisSettings;
    let cluster = tessera_testkit::RedisCluster::start();
    let url = cluster.url();
    let server = TestServer::spawn_with(move |s| {
        s.tokens = Some(TokenConfig::default());
        s.redis = Some(RedisSettings {
            target: RedisTarget::parse(&url).unwrap(),
            timeout: Duration::from_millis(500),
            near_cache: true,
            cache_lease: Duration::from_millis(250),
        });
    })
    .await;
    server.register(PHONE).await;
    let (access, first) = login(&server, PHONE).await;
    let (other, _) = login(&server, PHONE).await;
    assert_eq!(me(&server, &access).await, 200);
    let (a, b) = tokio::join!(refresh(&server, &first), refresh(&server, &first));
    let ((access2, second), again) = (pair(a).await, pair(b).await);
    assert_eq!(again.1, second, "the grace window holds on a cluster too");
    assert_eq!(me(&server, &access2).await, 200);
    let r: Value = server.delete("/user/sessions").bearer_auth(&access2).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["data"]["revoked"], 1);
    assert_eq!(me(&server, &other).await, 401);
    let r = server.post("/user/logout").bearer_auth(&access2).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&server, &access2).await, 401);
    assert_eq!(failure(refresh(&server, &second).await).await, (401, 20009));
}

#[tokio::test]
async fn keys_rotate_on_their_own_when_the_interval_is_up() {
    let server = TestServer::spawn_with(|s| {
        s.tokens = Some(TokenConfig { rotation_interval: Some(Duration::from_secs(300)), ..TokenConfig::default() })
    })
    .await;
    server.register(PHONE).await;
    let (access, refresh_token) = login(&server, PHONE).await;
    let jwks = || async { server.get("/.well-known/jwks.json").send().await.unwrap().json::<Value>().await.unwrap() };
    assert_eq!(jwks().await["keys"].as_array().unwrap().len(), 2);
    server.clock.advance(Duration::from_secs(301));
    let started = Instant::now();
    while jwks().await["keys"].as_array().unwrap().len() != 3 {
        assert!(started.elapsed() < Duration::from_secs(5), "no automatic rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me(&server, &access).await, 200, "nobody is logged out by a rotation");
    let (fresh, _) = pair(refresh(&server, &refresh_token).await).await;
    let kid = |t: &str| decode(t.split('.').next().unwrap())["kid"].clone();
    assert_ne!(kid(&fresh), kid(&access), "new tokens are signed by the new key");
    assert_eq!(me(&server, &fresh).await, 200);
}
