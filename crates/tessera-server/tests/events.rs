//! Session events over real HTTP: a sink server in the test receives
//! `session.created`, `session.ended`, `refresh.reused` and `login.failed`
//! with their fields and never a token, a code, a password or a full phone
//! number; a sink answering 500 gets the event again; a hung sink slows no
//! request and holds shutdown up only for the flush bound; with `--redis`
//! the stream `tessera:events` holds the events and stays bounded.

#[path = "support/prometheus.rs"]
#[allow(dead_code)]
mod prometheus;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use support::{e164, on_redis, TestServer, PASSWORD, PHONE};
use tessera::ManualClock;
use tessera_server::configuration::{MetricsExposure, Settings, TokenConfig};
use tessera_server::events::EventsConfig;
use tessera_server::startup::Application;
use tessera_testkit::RedisServer;

const OTHER_PHONE: &str = "13912345678";
const ADMIN: &str = "operator-token-0123456789abcdef0123456789";
const AGENT: &str = "EventsTest/1.0 (a phone)";

/// The events endpoint stand-in: records each body as received (raw text,
/// so a secret anywhere in it is found), and can fail or hang on demand.
#[derive(Clone, Default)]
struct EventSink {
    bodies: Arc<Mutex<Vec<String>>>,
    /// Requests received, answered or not.
    attempts: Arc<AtomicUsize>,
    /// The next this many requests are answered with `fail_status`.
    fail_next: Arc<AtomicUsize>,
    fail_status: Arc<AtomicU16>,
    /// Never answer (the connection stays open).
    hang: Arc<AtomicBool>,
}

impl EventSink {
    async fn start() -> (Self, String) {
        let sink = EventSink { fail_status: Arc::new(AtomicU16::new(500)), ..Default::default() };
        let app = Router::new().route("/events", post(receive)).with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, format!("http://{addr}/events"))
    }

    fn events(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect()
    }

    /// Waits (up to 10 s) for an event of `kind` whose fields include
    /// `fields`, and returns it.
    async fn wait_for(&self, kind: &str, fields: Value) -> Value {
        let started = Instant::now();
        loop {
            let found = self
                .events()
                .into_iter()
                .find(|e| e["type"] == kind && fields.as_object().unwrap().iter().all(|(k, v)| &e[k.as_str()] == v));
            if let Some(event) = found {
                return event;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no {kind} with {fields} in {:#?}", self.events());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(sink): State<EventSink>, headers: http::HeaderMap, body: String) -> impl IntoResponse {
    sink.attempts.fetch_add(1, Ordering::SeqCst);
    if sink.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    assert_eq!(headers["content-type"], "application/json");
    let failing = sink.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if failing {
        return StatusCode::from_u16(sink.fail_status.load(Ordering::SeqCst)).unwrap();
    }
    sink.bodies.lock().unwrap().push(body);
    StatusCode::OK
}

fn webhook(url: &str) -> impl FnOnce(&mut Settings) + '_ {
    move |s| {
        s.events = EventsConfig { webhook: Some(url.parse().unwrap()), stream_max_len: None, node: "node-a".into() }
    }
}

async fn login(server: &TestServer, phone: &str, proof: Value) -> reqwest::Response {
    let mut body = json!({"telephone": phone});
    body.as_object_mut().unwrap().extend(proof.as_object().unwrap().clone());
    server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .header("user-agent", AGENT)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn data(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"].clone()
}

/// The public id `GET /user/sessions` gives the caller's own session.
async fn own_session_id(server: &TestServer, token: &str) -> String {
    let listed = data(server.get("/user/sessions").bearer_auth(token).send().await.unwrap()).await;
    let own = listed.as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
    own["id"].as_str().unwrap().to_owned()
}

fn assert_envelope(event: &Value) {
    let id = event["id"].as_str().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{event}");
    assert_eq!(event["node"], "node-a");
    let time = event["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
}

#[tokio::test]
async fn every_kind_arrives_with_its_fields_and_no_secret() {
    let (sink, url) = EventSink::start().await;
    let server = TestServer::spawn_with(|s| {
        webhook(&url)(s);
        s.admin_token = Some(ADMIN.into());
        s.max_sessions_per_user = Some(3);
        s.throttles.login_per_phone = 4;
    })
    .await;
    let user = server.register(PHONE).await;
    let user_id = user["id"].to_string();
    let mut secrets = vec![PASSWORD.to_owned(), e164(PHONE), PHONE.to_owned(), e164(OTHER_PHONE), ADMIN.to_owned()];
    let masked = "+86138****5678";

    // A login: session.created with the device, masked.
    let first = data(login(&server, PHONE, json!({"password": PASSWORD})).await).await;
    let token = first["token"].as_str().unwrap().to_owned();
    secrets.push(token.clone());
    let session_id = own_session_id(&server, &token).await;
    let created = sink.wait_for("session.created", json!({"session_id": session_id})).await;
    assert_envelope(&created);
    assert_eq!(created["user_id"], user_id.as_str());
    assert_eq!(created["carrier"], "header");
    assert_eq!(created["device"], json!({"user_agent": AGENT, "address": "127.0.0.x"}));

    // Refused logins: login.failed with the reason, the phone masked.
    let r = login(&server, PHONE, json!({"password": "not the password"})).await;
    assert_ne!(r.status(), 200);
    let failed = sink.wait_for("login.failed", json!({"reason": "bad_password"})).await;
    assert_envelope(&failed);
    assert_eq!(failed["phone"], masked);
    assert_eq!(failed["method"], "password");
    assert_eq!(failed["address"], "127.0.0.x");
    let r = login(&server, PHONE, json!({"otpCode": "123456"})).await;
    assert_ne!(r.status(), 200);
    let failed = sink.wait_for("login.failed", json!({"reason": "expired_code"})).await;
    assert_eq!((&failed["phone"], &failed["method"]), (&json!(masked), &json!("otp")));
    let code = server.otp(PHONE).await;
    secrets.push(code.clone());
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = login(&server, PHONE, json!({"otpCode": wrong})).await;
    assert_ne!(r.status(), 200);
    sink.wait_for("login.failed", json!({"reason": "wrong_code", "phone": masked})).await;
    for _ in 0..4 {
        let r = login(&server, OTHER_PHONE, json!({"password": PASSWORD})).await;
        assert_ne!(r.status(), 200);
    }
    sink.wait_for("login.failed", json!({"reason": "unknown_user", "phone": "+86139****5678"})).await;
    let r = login(&server, OTHER_PHONE, json!({"password": PASSWORD})).await;
    assert_eq!(r.status(), 429);
    sink.wait_for("login.failed", json!({"reason": "throttled", "phone": "+86139****5678"})).await;

    // The code logs in (a second session); the first is ended from it.
    let second = data(login(&server, PHONE, json!({"otpCode": code})).await).await;
    let second_token = second["token"].as_str().unwrap().to_owned();
    secrets.push(second_token.clone());
    let second_id = own_session_id(&server, &second_token).await;
    let r = server.delete(&format!("/user/sessions/{session_id}")).bearer_auth(&second_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ended = sink.wait_for("session.ended", json!({"reason": "revoked"})).await;
    assert_envelope(&ended);
    assert_eq!(
        (&ended["session_id"], &ended["user_id"], &ended["count"]),
        (&json!(session_id), &json!(user_id), &json!(1))
    );
    let r = server.post("/user/logout").bearer_auth(&second_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sink.wait_for("session.ended", json!({"reason": "logout", "session_id": second_id, "count": 1})).await;

    // A cookie login says so; four logins beyond a cap of three end the oldest.
    let (cookie, csrf) = server.login_cookie(PHONE).await;
    secrets.extend([cookie.split_once('=').unwrap().1.to_owned(), csrf]);
    sink.wait_for("session.created", json!({"carrier": "cookie"})).await;
    for _ in 0..3 {
        let r = data(login(&server, PHONE, json!({"password": PASSWORD})).await).await;
        secrets.push(r["token"].as_str().unwrap().to_owned());
    }
    sink.wait_for("session.ended", json!({"reason": "capped", "count": 1})).await;
    let last = secrets.last().unwrap().clone();
    let r = server.post("/user/logout-everywhere").bearer_auth(&last).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sink.wait_for("session.ended", json!({"reason": "everywhere", "count": 3, "session_id": null})).await;

    // An operator disables the account: its sessions end, its logins fail.
    let live = data(login(&server, PHONE, json!({"password": PASSWORD})).await).await;
    secrets.push(live["token"].as_str().unwrap().to_owned());
    let r =
        server.post(&format!("/admin/users/{user_id}/disable")).header("x-admin-token", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sink.wait_for("session.ended", json!({"reason": "disabled", "user_id": user_id, "count": 1})).await;
    let r = login(&server, PHONE, json!({"password": PASSWORD})).await;
    assert_ne!(r.status(), 200);
    sink.wait_for("login.failed", json!({"reason": "disabled", "phone": masked})).await;

    let bodies = sink.bodies.lock().unwrap().clone();
    let ids: std::collections::HashSet<String> =
        sink.events().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), bodies.len(), "every event has its own id");
    for body in &bodies {
        for secret in &secrets {
            assert!(!body.contains(secret.as_str()), "{secret:?} in {body}");
        }
    }
}

#[tokio::test]
async fn session_events_are_sent_on_a_node_with_metrics_off() {
    // Off, the metrics observe no session; the events' sink still must.
    let (sink, url) = EventSink::start().await;
    let server = TestServer::spawn_with(|s| {
        webhook(&url)(s);
        s.metrics = MetricsExposure::Off;
    })
    .await;
    let user = server.register(PHONE).await;
    let r = login(&server, PHONE, json!({"password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
    sink.wait_for("session.created", json!({"user_id": user["id"].to_string()})).await;
    assert_eq!(server.get("/metrics").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_reused_refresh_token_is_reported_as_theft() {
    let (sink, url) = EventSink::start().await;
    let server = TestServer::spawn_with(|s| {
        webhook(&url)(s);
        s.tokens = Some(TokenConfig::default());
    })
    .await;
    let user = server.register(PHONE).await;
    let grant = data(login(&server, PHONE, json!({"password": PASSWORD})).await).await;
    let first = grant["refreshToken"].as_str().unwrap().to_owned();
    let created = sink.wait_for("session.created", json!({"carrier": "header"})).await;
    let renewed = data(server.post("/auth/refresh").json(&json!({"refreshToken": first})).send().await.unwrap()).await;
    server.clock.advance(Duration::from_secs(11));
    // Past the grace window the rotated-away token comes back: theft.
    let r = server.post("/auth/refresh").json(&json!({"refreshToken": first})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let family = json!({"session_id": created["session_id"], "user_id": user["id"].to_string()});
    let reused = sink.wait_for("refresh.reused", family.clone()).await;
    assert_envelope(&reused);
    sink.wait_for("session.ended", json!({"reason": "refresh_reuse", "session_id": created["session_id"]})).await;
    let mut secrets = vec![first.clone()];
    for value in [&grant["accessToken"], &grant["token"], &renewed["refreshToken"], &renewed["accessToken"]] {
        secrets.push(value.as_str().unwrap_or_else(|| panic!("{value}")).to_owned());
    }
    for body in sink.bodies.lock().unwrap().iter() {
        for secret in &secrets {
            assert!(!body.contains(secret.as_str()), "a token in {body}");
        }
    }
}

async fn scrape(server: &TestServer) -> prometheus::Exposition {
    let r = server.get("/metrics").send().await.unwrap();
    prometheus::parse(&r.text().await.unwrap())
}

#[tokio::test]
async fn a_failing_sink_gets_the_event_again_and_a_refusing_one_drops_it() {
    let (sink, url) = EventSink::start().await;
    let server = TestServer::spawn_with(webhook(&url)).await;
    server.register(PHONE).await;
    sink.fail_next.store(2, Ordering::SeqCst);
    data(login(&server, PHONE, json!({"password": PASSWORD})).await).await;
    sink.wait_for("session.created", json!({})).await;
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 3, "two 500s, then delivered");
    let counted = |m: &prometheus::Exposition, outcome| {
        m.get("tessera_events_total", &[("sink", "webhook"), ("outcome", outcome)])
    };
    let m = scrape(&server).await;
    assert_eq!((counted(&m, "delivered"), counted(&m, "retried"), counted(&m, "dropped")), (1.0, 2.0, 0.0));
    assert_eq!(counted(&m, "overflow"), 0.0);

    // A 4xx (other than 408 and 429) is final: dropped at once.
    sink.fail_status.store(400, Ordering::SeqCst);
    sink.fail_next.store(1, Ordering::SeqCst);
    let r = login(&server, PHONE, json!({"password": "not the password"})).await;
    assert_ne!(r.status(), 200);
    let started = Instant::now();
    while counted(&scrape(&server).await, "dropped") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the refused event was never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = scrape(&server).await;
    assert_eq!((counted(&m, "delivered"), counted(&m, "retried"), counted(&m, "dropped")), (1.0, 2.0, 1.0));
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 4);
    assert!(sink.events().iter().all(|e| e["type"] != "login.failed"));
}

/// The slowest of `rounds` logins and `/user/me` calls on `server`.
async fn slowest_request(http: &reqwest::Client, addr: SocketAddr, rounds: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        let r = http
            .post(format!("http://{addr}/user/login"))
            .header("x-auth-mode", "header")
            .json(&json!({"telephone": OTHER_PHONE, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
        slowest = slowest.max(started.elapsed());
        let started = Instant::now();
        let r = http.get(format!("http://{addr}/user/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

async fn register_at(http: &reqwest::Client, addr: SocketAddr, sms: &support::Sink) {
    let r = http.post(format!("http://{addr}/user/getotp")).json(&json!({"telephone": OTHER_PHONE})).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let code = sms.last_code(&e164(OTHER_PHONE));
    let body = json!({"telephone": OTHER_PHONE, "otpCode": code, "name": "李四", "gender": 1, "age": 30, "password": PASSWORD});
    let r = http.post(format!("http://{addr}/user/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_hung_sink_slows_no_request_and_holds_shutdown_only_briefly() {
    let http = reqwest::Client::new();
    let mut slowest = Vec::new();
    for hung in [false, true] {
        let (sink, url) = EventSink::start().await;
        sink.hang.store(hung, Ordering::SeqCst);
        let (sms, sms_addr) = support::Sink::start().await;
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_data_dir(data.path().to_path_buf());
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.dev = true;
        settings.otp =
            tessera_server::configuration::OtpDelivery::Webhook(format!("http://{sms_addr}/sms").parse().unwrap());
        webhook(&url)(&mut settings);
        let app = Application::build(&settings, Arc::new(ManualClock::starting_now())).await.unwrap();
        let addr = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        register_at(&http, addr, &sms).await;
        let slowest_here = slowest_request(&http, addr, 10).await;
        slowest.push(slowest_here);
        assert!(slowest_here < Duration::from_secs(1), "hung sink: {hung}; a request took {slowest_here:?}");
        if hung {
            // The sink has the first event and holds it: the rest wait in the queue.
            assert!(sink.attempts.load(Ordering::SeqCst) >= 1);
            assert!(sink.bodies.lock().unwrap().is_empty());
        } else {
            let started = Instant::now();
            while sink.bodies.lock().unwrap().len() < 10 {
                assert!(started.elapsed() < Duration::from_secs(10), "events not delivered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Shutdown flushes for at most its bound (2 s), then gives up.
        let started = Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(8), run).await.expect("shutdown held up").unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
        drop(sms);
    }
    eprintln!("slowest request: {:?} with a working sink, {:?} with a hung one", slowest[0], slowest[1]);
}

#[tokio::test]
async fn the_redis_stream_holds_the_events_and_stays_bounded() {
    let redis = RedisServer::start();
    let max_len = 100u64;
    let server = TestServer::spawn_with(|s| {
        on_redis(redis.url())(s);
        s.events = EventsConfig { webhook: None, stream_max_len: Some(max_len), node: "node-a".into() };
        s.throttles.login_per_phone = 2;
    })
    .await;
    server.register(PHONE).await;
    let token =
        data(login(&server, PHONE, json!({"password": PASSWORD})).await).await["token"].as_str().unwrap().to_owned();
    // Failed logins, most of them throttled (cheap): one event each.
    let failures = 400;
    for _ in 0..failures {
        let r = login(&server, OTHER_PHONE, json!({"password": PASSWORD})).await;
        assert_ne!(r.status(), 200);
    }
    let delivered =
        |m: &prometheus::Exposition| m.get("tessera_events_total", &[("sink", "stream"), ("outcome", "delivered")]);
    let started = Instant::now();
    while delivered(&scrape(&server).await) < f64::from(failures + 1) {
        assert!(started.elapsed() < Duration::from_secs(20), "events not all appended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = redis::cmd("XLEN").arg("tessera:events").query_async(&mut conn).await.unwrap();
    // MAXLEN ~ trims whole radix-tree nodes (100 entries by default).
    assert!((max_len..=max_len + 100).contains(&len), "XLEN {len} with MAXLEN ~ {max_len}");
    let entries: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg("tessera:events").arg("-").arg("+").query_async(&mut conn).await.unwrap();
    assert_eq!(entries.len() as u64, len);
    let (_, last) = entries.last().unwrap();
    assert_eq!(last[0], "type");
    assert_eq!(last[1], "login.failed");
    assert_eq!(last[2], "event");
    let event: Value = serde_json::from_str(&last[3]).unwrap();
    assert_envelope(&event);
    assert_eq!(event["reason"], "throttled");
    assert_eq!(event["phone"], "+86139****5678");
    for (_, fields) in &entries {
        assert!(!fields[3].contains(&token) && !fields[3].contains(&e164(OTHER_PHONE)));
    }
}
