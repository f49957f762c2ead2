//! Session events for a security team or a user-notification service:
//! `session.created`, `session.ended`, `refresh.reused` and `login.failed`,
//! as JSON, POSTed to `--events-webhook` and/or appended to the Redis
//! stream `tessera:events` (`--events-stream`).
//!
//! A request never waits for a sink: the event is made on the request's
//! task (a few small allocations), then handed with `try_send` to one
//! bounded queue per sink ([`QUEUE_CAPACITY`] events). A full queue drops
//! the event and counts it (`tessera_events_total{outcome="overflow"}`). One
//! background task per sink delivers its queue in order, at least once:
//! a failure that may pass (a 5xx, 408, 429, a timeout, a refused
//! connection, a Redis error) is retried with exponential backoff, up to
//! [`MAX_ATTEMPTS`] attempts; a 4xx is dropped at once (the sink will not
//! change its mind). On shutdown each task goes on delivering what is
//! queued for at most [`FLUSH_BOUND`], then drops the rest.
//!
//! No event holds a token, a code, a password or a full phone number: a
//! session is named by its public id (the one `GET /user/sessions` shows),
//! a phone and an address are masked.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tessera::observe::{EndReason, SessionEvent, SessionObserver};
use tessera::store::redis::RedisConn;
use tessera::Clock;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::domain::Telephone;
use crate::metrics::{EventOutcome, EventSink, LoginMethod, LoginOutcome, Metrics};

/// Events waiting per sink; beyond, new events are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 10_000;
/// Attempts per event and sink, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait after the first failed attempt; doubled after each.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(3_200);
/// How long one webhook attempt may take (connect, send, answer).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the sinks may go on delivering after shutdown has begun.
pub const FLUSH_BOUND: Duration = Duration::from_secs(2);
/// The stream's key (under the store's prefix, `tessera`).
pub const STREAM_KEY: &str = "events";

/// Where events go (from the configuration).
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// POSTed here, one event per request.
    pub webhook: Option<reqwest::Url>,
    /// Appended to the Redis stream `tessera:events`, trimmed to about
    /// this many entries (`XADD … MAXLEN ~ N`).
    pub stream_max_len: Option<u64>,
    /// The `node` field of every event.
    pub node: String,
}

/// The node name when `--node-name` gives none: the host name (as the
/// kernel has it, else `$HOSTNAME`), else `tessera`.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "tessera".into())
}

/// The handle handlers and the session observer emit through; cheap to
/// clone. Without any sink every method returns at once.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<Inner>>);

struct Inner {
    node: String,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    queues: Vec<(EventSink, mpsc::Sender<Arc<Event>>)>,
    /// `Some(deadline)` once shutdown has begun.
    closing: watch::Sender<Option<Instant>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Events(off)"),
            Some(inner) => {
                let sinks: Vec<&str> = inner.queues.iter().map(|(sink, _)| sink.as_str()).collect();
                f.debug_struct("Events").field("node", &inner.node).field("sinks", &sinks).finish()
            }
        }
    }
}

impl Events {
    /// Starts one delivery task per configured sink (the stream needs
    /// `redis`, under `prefix`). No sink: a handle that does nothing.
    pub fn start(
        config: &EventsConfig,
        redis: Option<(RedisConn, &str)>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut sinks: Vec<(EventSink, Box<dyn Deliver>)> = Vec::new();
        if let Some(url) = &config.webhook {
            sinks.push((EventSink::Webhook, Box::new(Webhook::new(url.clone())?)));
        }
        if let Some(max_len) = config.stream_max_len {
            let (conn, prefix) = redis.ok_or("--events-stream needs --redis")?;
            sinks.push((EventSink::Stream, Box::new(Stream { conn, key: format!("{prefix}:{STREAM_KEY}"), max_len })));
        }
        if sinks.is_empty() {
            return Ok(Self(None));
        }
        let (closing, _) = watch::channel(None);
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (sink, deliver) in sinks {
            metrics.events_sink(sink);
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            queues.push((sink, tx));
            let task = SinkTask { sink, deliver, rx, closing: closing.subscribe(), metrics: metrics.clone() };
            tasks.push(tokio::spawn(task.run()));
        }
        tracing::info!(
            sinks = ?queues.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            node = %config.node,
            "session events on"
        );
        Ok(Self(Some(Arc::new(Inner {
            node: config.node.clone(),
            clock,
            metrics,
            queues,
            closing,
            tasks: std::sync::Mutex::new(tasks),
        }))))
    }

    /// Whether any sink is configured.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A [`SessionObserver`] turning the session layer's events into
    /// `session.created`, `session.ended` and `refresh.reused`.
    pub fn session_observer(&self) -> Arc<dyn SessionObserver> {
        let events = self.clone();
        Arc::new(move |event: &SessionEvent<'_>| events.session_event(event))
    }

    fn session_event(&self, event: &SessionEvent<'_>) {
        if self.0.is_none() {
            return;
        }
        match event {
            // Logins only: an anonymous session is nobody's device.
            SessionEvent::Created { session, user: Some(user), client, carrier, .. } => {
                let mut device = Map::new();
                device.insert("user_agent".into(), client.user_agent.as_deref().map_or(Value::Null, Value::from));
                device.insert("address".into(), client.ip.map_or(Value::Null, |ip| Value::from(mask_ip(ip))));
                self.emit(
                    "session.created",
                    json!({
                        "user_id": user.as_str(),
                        "session_id": session.public_id(),
                        "carrier": carrier.as_str(),
                        "device": device,
                    }),
                );
            }
            SessionEvent::Ended { reason, user, session, count, .. } if *count > 0 => {
                let user = user.map(|u| u.as_str().to_owned());
                let session = session.map(|s| s.public_id());
                if *reason == EndReason::RefreshReuse {
                    self.emit("refresh.reused", json!({"user_id": user, "session_id": session}));
                }
                self.ended(reason.as_str(), user, session, *count);
            }
            _ => {}
        }
    }

    /// `session.ended` for sessions the session layer did not report: an
    /// operator's (`reason` `disabled`, or `everywhere` for "end all").
    pub fn sessions_ended(&self, reason: &str, user: i64, count: u64) {
        if count > 0 {
            self.ended(reason, Some(user.to_string()), None, count);
        }
    }

    fn ended(&self, reason: &str, user: Option<String>, session: Option<String>, count: u64) {
        self.emit("session.ended", json!({"reason": reason, "user_id": user, "session_id": session, "count": count}));
    }

    /// `login.failed` for a refused login of `phone` from `ip`. Outcomes
    /// that are not a refused credential (success, a malformed request, a
    /// store failure) make none.
    pub fn login_failed(&self, phone: &Telephone, method: LoginMethod, outcome: LoginOutcome, ip: Option<IpAddr>) {
        if self.0.is_none() {
            return;
        }
        if matches!(outcome, LoginOutcome::Success | LoginOutcome::Invalid | LoginOutcome::Error) {
            return;
        }
        self.emit(
            "login.failed",
            json!({
                "phone": mask_phone(phone),
                "method": method.as_str(),
                "reason": outcome.as_str(),
                "address": ip.map(mask_ip),
            }),
        );
    }

    /// Adds `id`, `type`, `time` and `node` to `fields` and queues the
    /// event on every sink, never waiting.
    fn emit(&self, kind: &'static str, fields: Value) {
        let Some(inner) = &self.0 else { return };
        let mut event = Map::new();
        event.insert("id".into(), Value::from(event_id()));
        event.insert("type".into(), Value::from(kind));
        event.insert("time".into(), Value::from(rfc3339_millis(inner.clock.now().as_millis())));
        event.insert("node".into(), Value::from(inner.node.as_str()));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        let event = Arc::new(Event { kind, body: Value::Object(event).to_string() });
        for (sink, queue) in &inner.queues {
            if queue.try_send(event.clone()).is_err() {
                inner.metrics.event(*sink, EventOutcome::Overflow);
            }
        }
    }

    /// Shutdown: the sinks go on delivering what is queued for at most
    /// [`FLUSH_BOUND`], then drop the rest (counted). Returns when they
    /// are done.
    pub async fn close(&self) {
        let Some(inner) = &self.0 else { return };
        let deadline = Instant::now() + FLUSH_BOUND;
        inner.closing.send_replace(Some(deadline));
        let tasks = std::mem::take(&mut *inner.tasks.lock().expect("not poisoned"));
        for task in tasks {
            // Each task stops at the deadline by itself; the margin only
            // guards against a bug there holding shutdown up.
            let _ = tokio::time::timeout_at(deadline + Duration::from_millis(500), task).await;
        }
    }
}

/// 128 random bits in hex.
fn event_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `+86138****5678`: the country code and up to five leading digits, the
/// last four, and the digits between hidden (at least four).
pub fn mask_phone(phone: &Telephone) -> String {
    let digits = &phone.as_str()[1..];
    let shown = digits.len().saturating_sub(8).min(5);
    let hidden = digits.len() - shown - 4;
    format!("+{}{}{}", &digits[..shown], "*".repeat(hidden), &digits[digits.len() - 4..])
}

/// `203.0.113.x` (the /24), or the /48 of an IPv6 address
/// (`2001:db8:85a3::/48`); an IPv4-mapped IPv6 address as IPv4.
pub fn mask_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => mask_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                format!("{prefix}/48")
            }
        },
    }
}

/// `2026-05-01T09:30:12.345Z` for milliseconds since the Unix epoch.
pub fn rfc3339_millis(ms: i64) -> String {
    utc_format(
        ms,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"),
    )
}

/// Milliseconds since the Unix epoch in `format`, UTC (the `time` crate,
/// already in the tree through `cookie`); the epoch for an out-of-range time.
pub fn utc_format(ms: i64, format: &[time::format_description::FormatItem<'_>]) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(format).expect("a UTC time formats")
}

/// One event, written once for every sink.
#[derive(Debug)]
struct Event {
    /// Its `type`.
    kind: &'static str,
    /// The JSON object.
    body: String,
}

/// Why an attempt failed, and whether another may succeed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (5xx, 408, 429, timeout, connection, Redis).
    Transient(String),
    /// Not (another 4xx): the event is dropped.
    Permanent(String),
}

/// One attempt to hand an event to a sink.
#[async_trait::async_trait]
trait Deliver: Send + Sync + 'static {
    async fn deliver(&self, event: &Event) -> Result<(), Failure>;
}

/// POSTs the event as `application/json`.
struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Webhook {
    fn new(url: reqwest::Url) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, url })
    }
}

#[async_trait::async_trait]
impl Deliver for Webhook {
    async fn deliver(&self, event: &Event) -> Result<(), Failure> {
        let response = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| Failure::Transient(e.without_url().to_string()))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(Failure::Transient(format!("webhook answered {status}"))),
            _ => Err(Failure::Permanent(format!("webhook answered {status}"))),
        }
    }
}

/// `XADD <prefix>:events MAXLEN ~ N * type <type> event <json>`.
struct Stream {
    conn: RedisConn,
    key: String,
    max_len: u64,
}

#[async_trait::async_trait]
impl Deliver for Stream {
    async fn deliver(&self, event: &Event) -> Result<(), Failure> {
        let mut command = redis::cmd("XADD");
        command.arg(&self.key).arg("MAXLEN").arg("~").arg(self.max_len).arg("*");
        command.arg("type").arg(event.kind).arg("event").arg(&event.body);
        self.conn
            .run(|mut c| async move { command.query_async::<String>(&mut c).await })
            .await
            .map(drop)
            .map_err(|e| Failure::Transient(e.to_string()))
    }
}

/// One sink's delivery task.
struct SinkTask {
    sink: EventSink,
    deliver: Box<dyn Deliver>,
    rx: mpsc::Receiver<Arc<Event>>,
    closing: watch::Receiver<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl SinkTask {
    async fn run(mut self) {
        loop {
            let closing = self.closing.borrow().is_some();
            let event = if closing {
                match self.rx.try_recv() {
                    Ok(event) => event,
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    event = self.rx.recv() => match event {
                        Some(event) => event,
                        None => return,
                    },
                    changed = self.closing.changed() => {
                        if changed.is_err() {
                            // The handle is gone without a close: stop.
                            return;
                        }
                        continue;
                    }
                }
            };
            if !self.deliver(&event).await {
                // Out of time: this event and what is still queued are lost.
                let left = 1 + self.rx.len();
                for _ in 0..left {
                    self.metrics.event(self.sink, EventOutcome::Dropped);
                }
                tracing::warn!(
                    sink = self.sink.as_str(),
                    dropped = left,
                    "shutdown: undelivered session events dropped"
                );
                return;
            }
        }
    }

    /// Delivers `event` with retries; `false` when the shutdown deadline
    /// came first (the event is then not counted yet).
    async fn deliver(&mut self, event: &Event) -> bool {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(result) = self.before_deadline(self.deliver.deliver(event)).await else { return false };
            let reason = match result {
                Ok(()) => {
                    self.metrics.event(self.sink, EventOutcome::Delivered);
                    return true;
                }
                Err(Failure::Permanent(reason)) => {
                    tracing::warn!(sink = self.sink.as_str(), %reason, "session event refused by its sink: dropped");
                    self.metrics.event(self.sink, EventOutcome::Dropped);
                    return true;
                }
                Err(Failure::Transient(reason)) => reason,
            };
            if attempt == MAX_ATTEMPTS {
                tracing::warn!(sink = self.sink.as_str(), %reason, attempts = attempt, "session event dropped");
                self.metrics.event(self.sink, EventOutcome::Dropped);
                return true;
            }
            tracing::debug!(sink = self.sink.as_str(), %reason, attempt, "session event delivery failed; retrying");
            self.metrics.event(self.sink, EventOutcome::Retried);
            if self.before_deadline(tokio::time::sleep(backoff)).await.is_none() {
                return false;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        true
    }

    /// `work`'s result, or `None` if the shutdown deadline passes first.
    async fn before_deadline<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let mut closing = self.closing.clone();
        let deadline = async move {
            loop {
                let deadline = *closing.borrow_and_update();
                if let Some(deadline) = deadline {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
                if closing.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            result = work => Some(result),
            () = deadline => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_keep_their_prefix_and_last_four_digits() {
        let phone = |s| mask_phone(&Telephone::parse(s).unwrap());
        assert_eq!(phone("13812345678"), "+86138****5678");
        assert_eq!(phone("+12025550123"), "+120****0123");
        assert_eq!(phone("+4930123456"), "+49****3456");
        assert_eq!(phone("+12345678"), "+****5678");
        assert_eq!(phone("+123456789012345"), "+12345******2345");
    }

    #[test]
    fn addresses_keep_their_network_only() {
        assert_eq!(mask_ip("203.0.113.77".parse().unwrap()), "203.0.113.x");
        assert_eq!(mask_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348".parse().unwrap()), "2001:db8:85a3::/48");
        assert_eq!(mask_ip("::ffff:198.51.100.9".parse().unwrap()), "198.51.100.x");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_millis(1_777_627_812_345), "2026-05-01T09:30:12.345Z");
    }

    /// A full queue drops new events at once, counted; the request's side
    /// never waits (the sink here accepts connections and never answers).
    #[tokio::test]
    async fn a_full_queue_overflows_without_waiting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let clock: Arc<dyn Clock> = Arc::new(tessera::SystemClock);
        let metrics = Arc::new(Metrics::new(&["/"], clock.clone()));
        let config = EventsConfig {
            webhook: Some(format!("http://{addr}/").parse().unwrap()),
            stream_max_len: None,
            node: "n".into(),
        };
        let events = Events::start(&config, None, clock, metrics.clone()).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..QUEUE_CAPACITY + 10 {
            events.emit("login.failed", json!({"reason": "bad_password"}));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "emitting waited: {:?}", started.elapsed());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry()).unwrap();
        let overflow = text
            .lines()
            .find_map(|l| l.strip_prefix("tessera_events_total{sink=\"webhook\",outcome=\"overflow\"} "))
            .unwrap_or_else(|| panic!("{text}"));
        // The task may have taken one event off the queue before it hung.
        assert!(["10", "11"].contains(&overflow), "{overflow}");
        held.abort();
    }

    #[test]
    fn ids_are_128_random_bits_in_hex() {
        let (a, b) = (event_id(), event_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
