//! One helper that runs a small axum app behind `SessionLayer` on a random
//! loopback port, over a real store wrapped to count its calls.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tessera::record::SessionChange;
use tessera::store::KeyedRecord;
use tessera::{
    AuthUser, CarrierKind, Key, ManualClock, MaybeAuthUser, Session, SessionConfig, SessionError, SessionKey,
    SessionLayer, SessionLayerBuilder, SessionRecord, SessionStore, StoreError, Timestamp, UserId,
};
use tokio::sync::Barrier;

/// A real store with counters on every call, and optionally a gate that
/// holds the first uncached loads, after they have read, until that many
/// requests have read (so concurrent requests see the same version for certain).
#[derive(Debug)]
pub struct Counting<S> {
    pub inner: S,
    pub loads: AtomicU64,
    pub writes: AtomicU64,
    pub uncached: AtomicU64,
    pub conflicts: AtomicU64,
    gate: Option<(u64, Barrier)>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            loads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            uncached: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            gate: None,
        }
    }

    /// The first `n` uncached loads each wait until all `n` have started.
    pub fn gated(inner: S, n: usize) -> Self {
        Self { gate: Some((n as u64, Barrier::new(n))), ..Self::new(inner) }
    }
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn calls(&self) -> u64 {
        self.loads() + self.writes()
    }
    fn read(&self) {
        self.loads.fetch_add(1, Ordering::SeqCst);
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Counting<S> {
    fn issue_token(&self, user: Option<&UserId>) -> tessera::SessionToken {
        self.inner.issue_token(user)
    }
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.write();
        self.inner.create(key, record).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.read();
        self.inner.load(key).await
    }
    async fn load_uncached(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.read();
        let seen = self.uncached.fetch_add(1, Ordering::SeqCst);
        let loaded = self.inner.load_uncached(key).await;
        if let Some((n, barrier)) = &self.gate {
            if seen < *n {
                barrier.wait().await;
            }
        }
        loaded
    }
    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        self.write();
        let saved = self.inner.save(key, change).await;
        if matches!(saved, Err(StoreError::Conflict(_))) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        saved
    }
    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle: Timestamp) -> Result<(), StoreError> {
        self.write();
        self.inner.touch(key, last_seen, idle).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(key).await
    }
    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        self.read();
        self.inner.list_user(user, now).await
    }
    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        self.write();
        self.inner.delete_user(user, keep).await
    }
    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        r: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        self.write();
        self.inner.rotate(old, new, r).await
    }
}

pub const A: Key<String> = Key::new("a");
pub const B: Key<String> = Key::new("b");
pub const VISITS: Key<u32> = Key::new("visits");

#[derive(Clone)]
struct AppState {
    barrier: Arc<Barrier>,
}

async fn login(session: Session, Json(body): Json<Value>) -> Result<Success<Value>, SessionError> {
    let user = UserId::parse(body["user"].as_str().unwrap_or("alice")).unwrap();
    let grant = session.login(user).await?;
    Ok(Success(match grant.carrier {
        CarrierKind::Header => json!({"token": grant.token()}),
        CarrierKind::Cookie => json!({"csrfToken": grant.csrf_token.expose()}),
    }))
}

async fn me(user: AuthUser) -> Result<Success<Value>, SessionError> {
    let a = user.session.get(A).await?;
    let b = user.session.get(B).await?;
    Ok(Success(json!({"user": user.user_id.as_str(), "a": a, "b": b})))
}

async fn maybe(MaybeAuthUser(user): MaybeAuthUser) -> Success<Value> {
    Success(json!(user.map(|u| u.user_id.as_str().to_owned())))
}

async fn logout(session: Session) -> Result<Success<Value>, SessionError> {
    Ok(Success(json!({"ended": session.logout().await?})))
}

async fn visit(session: Session) -> Result<Success<Value>, SessionError> {
    let n = session.get(VISITS).await?.unwrap_or(0) + 1;
    session.insert(VISITS, &n).await?;
    Ok(Success(json!(n)))
}

/// Loads the session, waits until a second request has loaded it too, then
/// writes: both requests are guaranteed to start from the same version.
async fn set_together(
    State(state): State<AppState>,
    user: AuthUser,
    Path((name, value)): Path<(String, String)>,
) -> Result<Success<Value>, SessionError> {
    let _ = user.session.get(A).await?;
    state.barrier.wait().await;
    let key = if name == "a" { A } else { B };
    user.session.insert(key, &value).await?;
    Ok(Success(Value::Null))
}

async fn sessions(user: AuthUser) -> Result<Success<Value>, SessionError> {
    Ok(Success(json!(user.session.list_mine().await?)))
}

/// The test app's own success shape (the library imposes none):
/// `{"status":"success","data":…}`.
pub struct Success<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Success<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(json!({"status": "success", "data": self.0})).into_response()
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub store: Arc<Counting<Arc<dyn SessionStore>>>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(config: SessionConfig) -> Self {
        Self::spawn_on(Arc::new(tessera::MemoryStore::new()), config).await
    }

    pub async fn spawn_on(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::spawn_with(store, config, |builder| builder).await
    }

    /// Like [`TestApp::spawn_on`], with the layer's builder adjusted.
    pub async fn spawn_with(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
        adjust: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Self {
        let clock = ManualClock::starting_now();
        let store = Arc::new(Counting::new(store));
        let builder = SessionLayer::builder(store.clone()).config(config).clock(Arc::new(clock.clone()));
        let layer = adjust(builder).build();
        let app = Router::new()
            .route("/public", get(|| async { "ok" }))
            .route("/login", post(login))
            .route("/me", get(me))
            .route("/maybe", get(maybe))
            .route("/logout", post(logout))
            .route("/visit", post(visit))
            .route("/sessions", get(sessions))
            .route("/together/{name}/{value}", post(set_together))
            .with_state(AppState { barrier: Arc::new(Barrier::new(2)) })
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { addr, clock, store, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// Logs `user` in over the header carrier; returns the token.
    pub async fn login_header(&self, user: &str) -> String {
        let r = self.post("/login").header("x-auth-mode", "header").json(&json!({"user": user})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    /// Logs `user` in over the cookie carrier; returns (cookie pair, csrf token, Set-Cookie).
    pub async fn login_cookie(&self, user: &str) -> (String, String, String) {
        let r = self.post("/login").json(&json!({"user": user})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        (pair, body["data"]["csrfToken"].as_str().unwrap().to_owned(), set_cookie)
    }
}

/// The kind of a refusal in the library's default rendering (an RFC 9457
/// problem document): `not-logged-in`, `csrf-rejected`, …
pub async fn problem(r: reqwest::Response) -> String {
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    body["type"].as_str().unwrap().strip_prefix("urn:tessera:").unwrap().to_owned()
}
