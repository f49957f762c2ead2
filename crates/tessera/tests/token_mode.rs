//! The layer in token mode over real HTTP: what a request with an access
//! token costs the store (nothing), and the refresh race decided by the
//! store's version check.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use support::Success;
use tessera::revocation::MemoryRevocations;
use tessera::signed::{KeySet, SigningAlgorithm};
use tessera::{
    AuthUser, Clock, MemoryStore, Session, SessionConfig, SessionError, SessionLayer, SignedTokens, SystemClock,
    TokenSettings, UserId,
};
use tessera_testkit::store::CountingStore;

async fn login(session: Session) -> Result<Success<Value>, SessionError> {
    let grant = session.login(UserId::from(7)).await?;
    Ok(Success(json!({"access": grant.token(), "refresh": grant.refresh_token()})))
}

async fn refresh(session: Session, Json(body): Json<Value>) -> Result<Success<Value>, SessionError> {
    let grant = session.refresh(body["refresh"].as_str()).await?;
    Ok(Success(json!({"access": grant.token(), "refresh": grant.refresh_token()})))
}

async fn me(user: AuthUser) -> Success<Value> {
    Success(json!({"user": user.user_id.as_str()}))
}

async fn spawn(store: Arc<CountingStore<MemoryStore>>) -> SocketAddr {
    spawn_with_tokens(store).await.0
}

async fn spawn_with_tokens(store: Arc<CountingStore<MemoryStore>>) -> (SocketAddr, SignedTokens) {
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, SystemClock.now());
    let tokens =
        SignedTokens::new(TokenSettings::default(), &keys, Arc::new(MemoryRevocations::new()), [5; 32]).await.unwrap();
    let app = Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/me", get(me))
        .layer(SessionLayer::new(store, SessionConfig::default()).with_signed_tokens(tokens.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, tokens)
}

async fn post_json(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(url).header("x-auth-mode", "header").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn an_access_token_costs_the_store_nothing() {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let addr = spawn(store.clone()).await;
    let http = reqwest::Client::new();
    let grant = post_json(&http, format!("http://{addr}/login"), json!({})).await;
    let before = store.calls().total();
    for _ in 0..5 {
        let r = http.get(format!("http://{addr}/me")).bearer_auth(grant["access"].as_str().unwrap()).send().await;
        assert_eq!(r.unwrap().json::<Value>().await.unwrap()["data"]["user"], "7");
    }
    assert_eq!(store.calls().total() - before, 0, "verified by CPU alone: no load, no touch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refreshes_that_read_the_same_version_end_with_one_pair() {
    // Both refreshes are held until each has read the family: both see the
    // token as current, both try to rotate, the store lets one commit.
    let store = Arc::new(CountingStore::gated(MemoryStore::new(), 2));
    let addr = spawn(store.clone()).await;
    let http = reqwest::Client::new();
    let grant = post_json(&http, format!("http://{addr}/login"), json!({})).await;
    let url = format!("http://{addr}/refresh");
    let body = json!({"refresh": grant["refresh"]});
    let (a, b) = tokio::join!(post_json(&http, url.clone(), body.clone()), post_json(&http, url, body));
    assert_eq!(a, b, "the loser of the race gets the winner's pair");
    assert_eq!(store.conflicts(), 1, "decided by the version check");
    let r = http.get(format!("http://{addr}/me")).bearer_auth(a["access"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_revoked_family_cannot_refresh_even_while_its_record_remains() {
    // Revocation is recorded before the record is deleted; should the
    // deletion fail, the family's refresh token must still be dead.
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let (addr, tokens) = spawn_with_tokens(store.clone()).await;
    let http = reqwest::Client::new();
    let grant = post_json(&http, format!("http://{addr}/login"), json!({})).await;
    let refresh = tessera::signed::RefreshToken::parse(grant["refresh"].as_str().unwrap()).unwrap();
    tokens.revoke(&[tokens.family_revocation(&refresh.family(), SystemClock.now())]).await.unwrap();
    let r = http.post(format!("http://{addr}/refresh")).json(&json!({"refresh": grant["refresh"]})).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "urn:tessera:refresh-rejected");
    assert!(
        tessera::SessionStore::load(&*store, &refresh.family()).await.unwrap().is_some(),
        "the record is still there"
    );
}

#[tokio::test]
async fn only_the_verified_bytes_ride_on_the_verified_token_cache() {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let addr = spawn(store).await;
    let http = reqwest::Client::new();
    let grant = post_json(&http, format!("http://{addr}/login"), json!({})).await;
    let access = grant["access"].as_str().unwrap().to_owned();
    let me = |token: Vec<u8>| {
        let value = reqwest::header::HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &token].concat()).unwrap();
        http.get(format!("http://{addr}/me")).header("authorization", value).send()
    };
    // Verified once, so the cache holds these bytes.
    assert_eq!(me(access.clone().into_bytes()).await.unwrap().status(), 200);

    let (head, rest) = access.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    // {"sub":"8"}: another user's claim under the cached token's signature.
    let other_payload = format!("{head}.eyJzdWIiOiI4In0.{signature}");
    let mut not_ascii = access.clone().into_bytes();
    not_ascii[head.len() + 3] = 0xe9;
    let variants: [(&str, Vec<u8>); 5] = [
        ("another payload, the same signature", other_payload.into_bytes()),
        ("a fourth segment", format!("{access}.x").into_bytes()),
        ("the signature alone", signature.as_bytes().to_vec()),
        ("a byte outside the alphabet", access.replacen('.', "%", 1).into_bytes()),
        ("a byte that is not ASCII", not_ascii),
    ];
    for (what, token) in variants {
        let r = me(token).await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(r#"error="invalid_token""#), "{what}: {challenge}");
    }
    assert_eq!(me(access.into_bytes()).await.unwrap().status(), 200, "the verified token still passes");
}
