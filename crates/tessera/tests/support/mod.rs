//! One helper that runs a small axum app behind `SessionLayer` on a random
//! loopback port, over a real store wrapped to count its calls
//! (`tessera_testkit::store::CountingStore`), with the testkit's HTTP client
//! aimed at it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tessera::{
    AuthUser, CarrierKind, Key, ManualClock, MaybeAuthUser, Session, SessionConfig, SessionError, SessionLayer,
    SessionLayerBuilder, SessionStore, UserId,
};
use tessera_testkit::http::{cookie_pair, set_cookie, HttpClient};
use tessera_testkit::store::CountingStore;
use tokio::sync::Barrier;

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
    pub store: Arc<CountingStore<Arc<dyn SessionStore>>>,
    /// `url`, `get`, `post`… on this app, through `Deref`.
    pub client: HttpClient,
}

impl Deref for TestApp {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        &self.client
    }
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
        let store = Arc::new(CountingStore::new(store));
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
        Self { addr, clock, store, client: HttpClient::new(addr) }
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
        let set_cookie = set_cookie(&r);
        let body: Value = r.json().await.unwrap();
        let pair = cookie_pair(&set_cookie);
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
