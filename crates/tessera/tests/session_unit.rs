//! The `Session` handle through its public API, without a socket: a small
//! axum router behind `SessionLayer`, called with `tower::ServiceExt::oneshot`,
//! over a `MemoryStore` that counts every call and a `ManualClock`.
//!
//! Each test pins down something an application relies on: what login does
//! to the old token, when a request costs a write, when sessions expire, and
//! what the ending operations end.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tessera::{
    AuthUser, CarrierMode, Clock, ExpiryPolicy, Key, ManualClock, MemoryStore, Session, SessionConfig, SessionError,
    SessionLayer, SessionRecord, SessionStore, SessionToken, UserId,
};
use tessera_testkit::store::CountingStore;
use tokio::sync::Barrier;
use tower::ServiceExt;

const MIN: Duration = Duration::from_secs(60);

const A: Key<String> = Key::new("a");
const B: Key<String> = Key::new("b");
const VISITS: Key<u32> = Key::new("visits");

/// A `MemoryStore` that counts its calls by kind.
type Counting = CountingStore<MemoryStore>;

/// What the store holds under `token`, read past the counters.
async fn record_of(store: &Counting, token: &str) -> Option<Arc<SessionRecord>> {
    store.inner().load(&SessionToken::parse(token).unwrap().key()).await.unwrap()
}

async fn login(session: Session, Path(user): Path<String>) -> Result<Json<Value>, SessionError> {
    let grant = session.login(UserId::parse(&user).unwrap()).await?;
    Ok(Json(json!({"token": grant.token()})))
}

async fn me(user: AuthUser) -> Result<Json<Value>, SessionError> {
    let (a, b, visits) = (user.session.get(A).await?, user.session.get(B).await?, user.session.get(VISITS).await?);
    Ok(Json(json!({"user": user.user_id.as_str(), "a": a, "b": b, "visits": visits})))
}

/// Counts visits in the session; a caller without one gets an anonymous one.
async fn visit(session: Session) -> Result<Json<Value>, SessionError> {
    let n = session.get(VISITS).await?.unwrap_or(0) + 1;
    session.insert(VISITS, &n).await?;
    // The handle answers with its own pending write.
    assert_eq!(session.get(VISITS).await?, Some(n));
    Ok(Json(json!(n)))
}

async fn logout(session: Session) -> Result<Json<Value>, SessionError> {
    Ok(Json(json!(session.logout().await?)))
}

async fn revoke_others(user: AuthUser) -> Result<Json<Value>, SessionError> {
    Ok(Json(json!(user.session.revoke_others().await?)))
}

async fn everywhere(user: AuthUser) -> Result<Json<Value>, SessionError> {
    Ok(Json(json!(user.session.logout_everywhere().await?)))
}

/// Loads the session, waits until the other request has loaded it too, then
/// sets one attribute: both writes start from the same version for certain.
async fn together(
    State(barrier): State<Arc<Barrier>>,
    user: AuthUser,
    Path((name, value)): Path<(String, String)>,
) -> Result<Json<Value>, SessionError> {
    let _ = user.session.get(A).await?;
    barrier.wait().await;
    user.session.insert(if name == "a" { A } else { B }, &value).await?;
    Ok(Json(Value::Null))
}

/// The router, its store and its clock.
struct Harness {
    app: Router,
    store: Arc<Counting>,
    clock: ManualClock,
}

impl Harness {
    /// Header carrier (no cookies, no CSRF), the given expiry, no session cap.
    fn new(expiry: ExpiryPolicy) -> Self {
        let store = Arc::new(Counting::new(MemoryStore::new()));
        let clock = ManualClock::starting_now();
        let config = SessionConfig {
            carrier: CarrierMode::Header,
            expiry,
            max_sessions_per_user: None,
            ..SessionConfig::default()
        };
        let layer = SessionLayer::with_clock(store.clone(), config, Arc::new(clock.clone()));
        let app = Router::new()
            .route("/public", get(|| async { "ok" }))
            .route("/login/{user}", post(login))
            .route("/me", get(me))
            .route("/visit", post(visit))
            .route("/logout", post(logout))
            .route("/revoke-others", post(revoke_others))
            .route("/everywhere", post(everywhere))
            .route("/together/{name}/{value}", post(together))
            .with_state(Arc::new(Barrier::new(2)))
            .layer(layer);
        Self { app, store, clock }
    }

    fn with_defaults() -> Self {
        Self::new(ExpiryPolicy::default())
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> Response {
        self.call("GET", path, Some(token)).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> Response {
        self.call("POST", path, token).await
    }

    /// The status of `GET /me` with `token`.
    async fn me_status(&self, token: &str) -> StatusCode {
        self.get("/me", token).await.status()
    }

    /// Logs `user` in from `token` (or from nothing); returns the new token.
    async fn login(&self, user: &str, token: Option<&str>) -> String {
        let r = self.post(&format!("/login/{user}"), token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let header = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
        let body = body_json(r).await;
        assert_eq!(body["token"], header.as_str(), "the body and the header hand out one token");
        header
    }
}

async fn body_json(r: Response) -> Value {
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `GET /me`'s answer, which must be 200.
async fn me_json(h: &Harness, token: &str) -> Value {
    let r = h.get("/me", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    body_json(r).await
}

#[tokio::test]
async fn a_request_is_judged_at_one_time_read_when_the_session_is_first_asked() {
    let clock = ManualClock::starting_now();
    let layer =
        SessionLayer::with_clock(Arc::new(MemoryStore::new()), SessionConfig::default(), Arc::new(clock.clone()));
    // The handler lets time pass before and while it uses its session.
    let times = |clock: ManualClock| {
        async move |session: Session| {
            clock.advance(MIN);
            let first = session.now();
            clock.advance(60 * MIN);
            Json(json!([first.as_millis(), session.now().as_millis(), clock.now().as_millis()]))
        }
    };
    let app = Router::new().route("/times", get(times(clock.clone()))).layer(layer);
    let started = clock.now().as_millis();
    let r = app.oneshot(Request::get("/times").body(Body::empty()).unwrap()).await.unwrap();
    let [first, second, after]: [i64; 3] = serde_json::from_value(body_json(r).await).unwrap();
    assert_eq!(first, started + 60_000, "the time is read when first asked, not when the request came in");
    assert_eq!(second, first, "and stays the request's time");
    assert_eq!(after, first + 3_600_000);
}

#[tokio::test]
async fn a_handle_kept_past_the_answer_still_commits_what_the_request_changed() {
    let store = Arc::new(MemoryStore::new());
    let config = SessionConfig { carrier: CarrierMode::Header, ..SessionConfig::default() };
    let layer = SessionLayer::with_clock(store.clone(), config, Arc::new(ManualClock::starting_now()));
    // A handler that hands a clone of its session to work outliving the
    // request: the layer is then not alone with the handle when it commits.
    let kept: Arc<std::sync::Mutex<Vec<Session>>> = Arc::default();
    let visit_and_keep = {
        let kept = kept.clone();
        async move |session: Session| {
            kept.lock().unwrap().push(session.clone());
            visit(session).await
        }
    };
    let app = Router::new().route("/visit", post(visit_and_keep)).layer(layer);
    let call = |token: Option<&str>| {
        let mut request = Request::post("/visit");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let r = call(None).await.unwrap();
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    assert_eq!(body_json(r).await, 1);
    assert_eq!(body_json(call(Some(&token)).await.unwrap()).await, 2, "the second visit was saved too");
    assert_eq!(kept.lock().unwrap().len(), 2);
    let key = SessionToken::parse(&token).unwrap().key();
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().attributes.get("visits").and_then(|a| a.value.clone()),
        Some(json!(2))
    );
}

#[tokio::test]
async fn login_rotates_the_token_and_carries_the_attributes_over() {
    let h = Harness::with_defaults();
    // An anonymous session with data first (a cart before signing in).
    let r = h.post("/visit", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let anon = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    assert_eq!(body_json(h.post("/visit", Some(&anon)).await).await, 2);
    let before = h.store.calls();

    let fresh = h.login("alice", Some(&anon)).await;
    assert_ne!(fresh, anon);
    assert_eq!(h.store.calls().rotates, before.rotates + 1, "login is one rotate");
    assert!(record_of(&h.store, &anon).await.is_none(), "the old record is gone from the store");
    assert_eq!(h.me_status(&anon).await, StatusCode::UNAUTHORIZED, "a token planted before login is worth nothing");
    let me = me_json(&h, &fresh).await;
    assert_eq!((me["user"].as_str(), me["visits"].as_u64()), (Some("alice"), Some(2)));

    // Logging in again from a logged-in session rotates again.
    let third = h.login("alice", Some(&fresh)).await;
    assert_ne!(third, fresh);
    assert_eq!(h.me_status(&fresh).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_json(&h, &third).await["visits"], 2);
}

#[tokio::test]
async fn read_only_requests_write_nothing_until_a_touch_is_due() {
    let h = Harness::with_defaults(); // touch interval: 3 minutes
    let token = h.login("alice", None).await;
    let before = h.store.calls();
    for _ in 0..10 {
        h.clock.advance(Duration::from_secs(10));
        assert_eq!(h.me_status(&token).await, StatusCode::OK);
    }
    let after = h.store.calls();
    assert_eq!(after.writes(), before.writes(), "no write within the touch interval");
    assert_eq!(after.loads, before.loads + 10, "one load per authenticated read");

    h.clock.advance(3 * MIN);
    assert_eq!(h.me_status(&token).await, StatusCode::OK);
    let touched = h.store.calls();
    assert_eq!((touched.touches, touched.writes()), (before.touches + 1, before.writes() + 1), "one touch once due");
    for _ in 0..5 {
        assert_eq!(h.me_status(&token).await, StatusCode::OK);
    }
    assert_eq!(h.store.calls().writes(), touched.writes(), "and none until the next interval");
}

#[tokio::test]
async fn routes_that_never_ask_for_the_session_cost_no_store_call() {
    let h = Harness::with_defaults();
    let token = h.login("alice", None).await;
    let before = h.store.calls();
    assert_eq!(h.get("/public", &token).await.status(), StatusCode::OK);
    h.clock.advance(10 * MIN); // a touch would be due, had the session been loaded
    assert_eq!(h.get("/public", &token).await.status(), StatusCode::OK);
    assert_eq!(h.store.calls(), before);
}

#[tokio::test]
async fn an_attribute_write_is_one_save_and_stands_in_for_the_touch() {
    let h = Harness::with_defaults();
    let token = h.login("alice", None).await;
    h.clock.advance(5 * MIN); // a touch is due
    let before = h.store.calls();
    assert_eq!(body_json(h.post("/visit", Some(&token)).await).await, 1);
    let after = h.store.calls();
    assert_eq!((after.saves, after.touches), (before.saves + 1, before.touches), "the save records the activity");
    assert_eq!(after.writes(), before.writes() + 1);
    // The save moved last_seen: the next read is within the interval again.
    h.clock.advance(MIN);
    assert_eq!(me_json(&h, &token).await["visits"], 1);
    assert_eq!(h.store.calls().writes(), after.writes());
}

#[tokio::test]
async fn a_due_touch_moves_the_idle_deadline_and_a_throttled_read_does_not() {
    let expiry = ExpiryPolicy::with_touch_interval(10 * MIN, 12 * 60 * MIN, 2 * MIN).unwrap();

    // Active past the idle timeout: each read after the interval touches.
    let h = Harness::new(expiry);
    let token = h.login("alice", None).await;
    h.clock.advance(9 * MIN);
    assert_eq!(h.me_status(&token).await, StatusCode::OK);
    h.clock.advance(9 * MIN); // 18 minutes after login, 9 after the touch
    assert_eq!(h.me_status(&token).await, StatusCode::OK);
    assert_eq!(h.store.calls().touches, 2);

    // A read within the touch interval writes nothing, so it does not
    // extend the session: the idle deadline stays 10 minutes after login.
    let h = Harness::new(expiry);
    let token = h.login("alice", None).await;
    h.clock.advance(MIN);
    assert_eq!(h.me_status(&token).await, StatusCode::OK);
    h.clock.advance(9 * MIN);
    assert_eq!(h.me_status(&token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.store.calls().touches, 0);
}

#[tokio::test]
async fn idle_sessions_expire_at_the_idle_deadline() {
    let h = Harness::with_defaults(); // 30 minutes idle
    let token = h.login("alice", None).await;
    h.clock.advance(30 * MIN - Duration::from_millis(1));
    assert_eq!(h.me_status(&token).await, StatusCode::OK);
    h.clock.advance(30 * MIN);
    assert_eq!(h.me_status(&token).await, StatusCode::UNAUTHORIZED);
    // An expired session is not revived by a write either: the caller gets
    // a new anonymous session, not the old user.
    let r = h.post("/visit", Some(&token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let anon = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
    assert_ne!(anon, token);
    assert_eq!(h.me_status(&anon).await, StatusCode::UNAUTHORIZED, "anonymous, not alice");
    assert_eq!(h.me_status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn activity_never_extends_the_absolute_deadline() {
    let h = Harness::new(ExpiryPolicy::new(30 * MIN, 60 * MIN).unwrap());
    let token = h.login("alice", None).await;
    for n in 1..=5 {
        h.clock.advance(10 * MIN);
        assert_eq!(body_json(h.post("/visit", Some(&token)).await).await, n);
    }
    h.clock.advance(10 * MIN - Duration::from_millis(1));
    assert_eq!(h.me_status(&token).await, StatusCode::OK, "just before the absolute deadline");
    h.clock.advance(Duration::from_millis(1)); // 60 minutes after login, active all along
    assert_eq!(h.me_status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_callers_session_only() {
    let h = Harness::with_defaults();
    let phone = h.login("alice", None).await;
    let laptop = h.login("alice", None).await;
    let r = h.post("/logout", Some(&phone)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(r).await, true, "there was a session to end");
    assert!(record_of(&h.store, &phone).await.is_none(), "deleted from the store, not only forgotten");
    assert_eq!(h.me_status(&phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me_status(&laptop).await, StatusCode::OK, "the user's other session lives on");
    // Logging out again says there was nothing to end.
    assert_eq!(body_json(h.post("/logout", Some(&phone)).await).await, false);
}

#[tokio::test]
async fn concurrent_writes_to_one_attribute_have_one_winner_and_one_409() {
    let h = Harness::with_defaults();
    let token = h.login("alice", None).await;
    let (x, y) = tokio::join!(h.post("/together/a/first", Some(&token)), h.post("/together/a/second", Some(&token)),);
    let mut statuses = [x.status(), y.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let winner = if x.status() == StatusCode::OK { "first" } else { "second" };
    assert_eq!(me_json(&h, &token).await["a"], winner, "the winner's value stands, not the loser's");
}

#[tokio::test]
async fn concurrent_writes_to_different_attributes_both_persist() {
    let h = Harness::with_defaults();
    let token = h.login("alice", None).await;
    let (x, y) = tokio::join!(h.post("/together/a/apple", Some(&token)), h.post("/together/b/banana", Some(&token)),);
    assert_eq!((x.status(), y.status()), (StatusCode::OK, StatusCode::OK));
    let me = me_json(&h, &token).await;
    assert_eq!((me["a"].as_str(), me["b"].as_str()), (Some("apple"), Some("banana")));
}

#[tokio::test]
async fn revoke_others_and_logout_everywhere_count_what_they_end() {
    let h = Harness::with_defaults();
    let [one, two, three] = [h.login("alice", None).await, h.login("alice", None).await, h.login("alice", None).await];
    let bob = h.login("bob", None).await;

    let r = h.post("/revoke-others", Some(&two)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(r).await, 2);
    assert_eq!(h.me_status(&one).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me_status(&three).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me_status(&two).await, StatusCode::OK, "the caller's own session stays");
    assert_eq!(h.me_status(&bob).await, StatusCode::OK, "another user's sessions are not touched");
    // Nothing left to end.
    assert_eq!(body_json(h.post("/revoke-others", Some(&two)).await).await, 0);

    let four = h.login("alice", None).await;
    let r = h.post("/everywhere", Some(&two)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(r).await, 2, "the caller's session and the other one");
    assert_eq!(h.me_status(&two).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me_status(&four).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.me_status(&bob).await, StatusCode::OK);
    // An ended session cannot end anything.
    assert_eq!(h.post("/everywhere", Some(&two)).await.status(), StatusCode::UNAUTHORIZED);
}
