//! Spawns the service on a random loopback port, with a manual clock and a
//! webhook sink standing in for the SMS gateway (a real HTTP server that
//! records what it is sent).

#![allow(dead_code)]

pub mod introspect;
pub mod nginx;
pub mod node;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};
use tessera::{AllowedOrigin, ManualClock};
use tessera_server::configuration::{OtpDelivery, Settings};
use tessera_server::startup::Application;
use tessera_testkit::http::{cookie_pair, set_cookie, HttpClient};

pub const PHONE: &str = "13812345678";
pub const PASSWORD: &str = "correct horse battery";
pub const ORIGIN: &str = "https://shop.example";

/// The SMS gateway stand-in.
#[derive(Clone, Default)]
pub struct Sink {
    pub received: Arc<Mutex<Vec<Value>>>,
    /// Status to answer with; 200 unless a test says otherwise.
    pub status: Arc<AtomicU16>,
}

impl Sink {
    pub async fn start() -> (Self, SocketAddr) {
        let sink = Sink { status: Arc::new(AtomicU16::new(200)), ..Default::default() };
        let app = Router::new()
            .route(
                "/sms",
                post(|State(sink): State<Sink>, Json(body): Json<Value>| async move {
                    sink.received.lock().unwrap().push(body);
                    StatusCode::from_u16(sink.status.load(Ordering::SeqCst)).unwrap()
                })
                // What was sent so far, for a test's other process (the
                // browser tests' script reads codes here).
                .get(|State(sink): State<Sink>| async move {
                    Json(Value::from(sink.received.lock().unwrap().clone()))
                }),
            )
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, addr)
    }

    /// The last code sent to `phone` (E.164).
    pub fn last_code(&self, phone_e164: &str) -> String {
        let received = self.received.lock().unwrap();
        let msg = received.iter().rev().find(|m| m["telephone"] == phone_e164).expect("no code was sent");
        msg["code"].as_str().unwrap().to_owned()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub sink: Sink,
    /// `url`, `get`, `post`, `delete` and the `http` client, through `Deref`.
    pub client: HttpClient,
    pub pool: sqlx::SqlitePool,
    pub data: tempfile::TempDir,
}

impl Deref for TestServer {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        &self.client
    }
}

impl TestServer {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let (sink, sink_addr) = Sink::start().await;
        let mut settings = Settings::for_data_dir(data.path().to_path_buf());
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.dev = true;
        settings.otp = OtpDelivery::Webhook(format!("http://{sink_addr}/sms").parse().unwrap());
        settings.allowed_origins = vec![AllowedOrigin::parse(ORIGIN).unwrap()];
        adjust(&mut settings);
        let clock = ManualClock::starting_now();
        let app = Application::build(&settings, Arc::new(clock.clone())).await.unwrap();
        let addr = app.local_addr();
        let pool = app.database().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        Self { addr, clock, sink, client: HttpClient::new(addr), pool, data }
    }

    /// Asks for a code for `phone` and returns it from the sink.
    pub async fn otp(&self, phone: &str) -> String {
        let r = self.post("/user/getotp").json(&json!({"telephone": phone})).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        self.sink.last_code(&e164(phone))
    }

    /// Registers `phone` with [`PASSWORD`]; moves the clock past the send
    /// throttle afterwards so tests can ask for the next code at once.
    pub async fn register(&self, phone: &str) -> Value {
        let code = self.otp(phone).await;
        let r = self
            .post("/user/register")
            .json(&json!({"telephone": phone, "otpCode": code, "name": "张三", "gender": 1, "age": 30, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        self.clock.advance(std::time::Duration::from_secs(61));
        r.json::<Value>().await.unwrap()["data"].clone()
    }

    /// Logs in with the password over the header carrier; returns the token.
    pub async fn login_header(&self, phone: &str) -> String {
        password_login_header(&self.http, &self.url("/user/login"), phone).await["token"].as_str().unwrap().to_owned()
    }

    /// Logs in with the password over the cookie carrier, the way the
    /// course's pages do (form body); returns (cookie pair, csrf token).
    pub async fn login_cookie(&self, phone: &str) -> (String, String) {
        let r = self
            .post("/user/login")
            .header("origin", ORIGIN)
            .form(&[("telphone", phone), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let pair = cookie_pair(&set_cookie(&r));
        let body: Value = r.json().await.unwrap();
        (pair, body["data"]["csrfToken"].as_str().unwrap().to_owned())
    }
}

/// A header client's password login of `phone` (with [`PASSWORD`]) at
/// `url`, which must succeed: the answer's `data`. For in-process servers
/// and `tessera` processes alike.
pub async fn password_login_header(http: &reqwest::Client, url: &str, phone: &str) -> Value {
    let r = http
        .post(url)
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": phone, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"].clone()
}

pub fn e164(mainland: &str) -> String {
    format!("+86{mainland}")
}

/// (HTTP status, errCode) of a failure answer.
pub async fn failure(r: reqwest::Response) -> (u16, u64) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "fail", "{body}");
    (status, body["data"]["errCode"].as_u64().unwrap())
}

/// Settings on the Redis at `url`, with the near cache, a 250 ms command
/// deadline and lease.
pub fn on_redis(url: String) -> impl FnOnce(&mut Settings) {
    on_redis_within(url, std::time::Duration::from_millis(250))
}

/// [`on_redis`] with a 2 s command deadline and lease, for tests that count
/// what a request asks of Redis: a test process starved of CPU for a few
/// hundred milliseconds (other test binaries run alongside) would otherwise
/// see its near cache distrusted and refilled, and count those commands.
pub fn on_redis_patient(url: String) -> impl FnOnce(&mut Settings) {
    on_redis_within(url, std::time::Duration::from_secs(2))
}

fn on_redis_within(url: String, deadline: std::time::Duration) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.redis = Some(tessera_server::configuration::RedisSettings {
            target: tessera::store::redis::RedisTarget::parse(&url).unwrap(),
            timeout: deadline,
            near_cache: true,
            cache_lease: deadline,
        })
    }
}
