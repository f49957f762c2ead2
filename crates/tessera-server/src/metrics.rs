//! Prometheus metrics at `/metrics`.
//!
//! What a request counts is plain atomics: fixed arrays indexed by label
//! (route, method, status slot; login method and outcome; …), so the hot
//! path takes no lock and allocates nothing (a route's series are allocated
//! once, the first time the route is used with a method). What other parts
//! of the node already keep (the near cache's counters, the feeds' leases,
//! the signing key's creation time) is read only when `/metrics` is
//! scraped. The answer is written by `prometheus-client`'s Prometheus text
//! encoder (format 0.0.4) through one [`Collector`] over these values.
//!
//! Label values are bounded: the route is the template of the route the
//! request's path matched (`/user/sessions/{id}`; a 405 counts under its
//! route) or `unmatched`, never a raw path; the method
//! one of eight; the status one of the codes the server answers with, or
//! its class (`5xx`) for any other.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tessera::observe::{EndReason, SessionEvent, SessionObserver};
use tessera::store::redis::{CommandObserver, CommandOutcome};
use tessera::Clock;

use crate::error::ApiError;
use crate::readiness::Readiness;

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds (µs) of the HTTP latency buckets: 0.5 ms to 10 s.
const HTTP_BOUNDS_US: [u64; BUCKETS] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];
/// Upper bounds (µs) of the store command buckets: 0.1 ms to 2.5 s.
const STORE_BOUNDS_US: [u64; BUCKETS] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];
const BUCKETS: usize = 14;

/// A histogram of durations in atomics: per-bucket counts (the last one
/// past every bound) and the sum in microseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, bounds: &[u64; BUCKETS], elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = bounds.iter().position(|&bound| us <= bound).unwrap_or(BUCKETS);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts and the total (consistent with each other).
    fn read(&self, bounds: &[u64; BUCKETS]) -> ([(f64, u64); BUCKETS], u64) {
        let mut buckets = [(0.0, 0); BUCKETS];
        for (i, bucket) in buckets.iter_mut().enumerate() {
            *bucket = (bounds[i] as f64 / 1e6, self.buckets[i].load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum::<u64>() + self.buckets[BUCKETS].load(Ordering::Relaxed);
        (buckets, count)
    }

    fn encode(&self, bounds: &[u64; BUCKETS], mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let (buckets, count) = self.read(bounds);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

fn encode_counter(mut encoder: MetricEncoder<'_>, value: u64) -> fmt::Result {
    encoder.encode_counter::<NoLabelSet, u64, f64>(&value, None::<&Exemplar<NoLabelSet, f64>>)
}

fn encode_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    mut encoder: MetricEncoder<'_>,
    value: V,
) -> fmt::Result {
    encoder.encode_gauge(&value)
}

/// The methods counted by name; any other is `OTHER`.
const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER"];

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The status codes counted by their own label; any other by its class.
const STATUSES: [u16; 22] =
    [200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 431, 500, 502, 503, 504];
const STATUS_LABELS: [&str; STATUS_SLOTS] = [
    "200", "201", "204", "301", "302", "304", "400", "401", "403", "404", "405", "408", "409", "413", "415", "422",
    "429", "431", "500", "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx",
];
const STATUS_SLOTS: usize = STATUSES.len() + 5;

fn status_slot(status: StatusCode) -> usize {
    let code = status.as_u16();
    STATUSES.iter().position(|&c| c == code).unwrap_or_else(|| STATUSES.len() + usize::from(code / 100).clamp(1, 5) - 1)
}

/// One route and method: a histogram per status slot.
type StatusSeries = [Histogram; STATUS_SLOTS];

/// The HTTP series of every route template (plus `unmatched`).
struct HttpMetrics {
    /// Route template → slot; the slot after the last is `unmatched`.
    routes: HashMap<&'static str, usize>,
    /// Slot → label.
    labels: Vec<&'static str>,
    /// Slot → method → series, made on first use.
    series: Vec<[OnceLock<Box<StatusSeries>>; METHODS.len()]>,
}

impl HttpMetrics {
    fn new(templates: &[&'static str]) -> Self {
        let mut labels: Vec<&'static str> = Vec::with_capacity(templates.len() + 1);
        for template in templates {
            if !labels.contains(template) {
                labels.push(template);
            }
        }
        let routes = labels.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        labels.push(UNMATCHED);
        let series = labels.iter().map(|_| Default::default()).collect();
        Self { routes, labels, series }
    }

    fn route_slot(&self, template: Option<&str>) -> usize {
        template.and_then(|t| self.routes.get(t).copied()).unwrap_or(self.unmatched())
    }

    fn unmatched(&self) -> usize {
        self.labels.len() - 1
    }

    fn observe(&self, route: usize, method: usize, status: StatusCode, elapsed: Duration) {
        let series = self.series[route][method].get_or_init(Default::default);
        series[status_slot(status)].observe(&HTTP_BOUNDS_US, elapsed);
    }

    /// Every series with at least one request: (route, method, status, histogram).
    fn used(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str, &Histogram)> {
        self.series.iter().enumerate().flat_map(move |(route, methods)| {
            methods.iter().enumerate().filter_map(|(m, s)| s.get().map(|s| (m, s))).flat_map(move |(method, series)| {
                series
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.count() > 0)
                    .map(move |(status, h)| (self.labels[route], METHODS[method], STATUS_LABELS[status], h))
            })
        })
    }
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics").field("routes", &self.labels).finish_non_exhaustive()
    }
}

/// How a login was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// Phone and password.
    Password,
    /// Phone and one-time code.
    Otp,
    /// The request named neither (a malformed request).
    Unknown,
}

impl LoginMethod {
    const ALL: [LoginMethod; 3] = [LoginMethod::Password, LoginMethod::Otp, LoginMethod::Unknown];

    /// `password`, `otp` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Otp => "otp",
            Self::Unknown => "unknown",
        }
    }
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in.
    Success,
    /// The phone is registered, the password is wrong.
    BadPassword,
    /// No user has that phone.
    UnknownUser,
    /// The one-time code is wrong.
    WrongCode,
    /// No usable code (never sent, expired, used or exhausted).
    ExpiredCode,
    /// The credential was right, the account is disabled.
    Disabled,
    /// Refused by a login throttle.
    Throttled,
    /// A malformed request (phone, missing proof).
    Invalid,
    /// A store or the session layer failed.
    Error,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 9] = [
        LoginOutcome::Success,
        LoginOutcome::BadPassword,
        LoginOutcome::UnknownUser,
        LoginOutcome::WrongCode,
        LoginOutcome::ExpiredCode,
        LoginOutcome::Disabled,
        LoginOutcome::Throttled,
        LoginOutcome::Invalid,
        LoginOutcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::BadPassword => "bad_password",
            Self::UnknownUser => "unknown_user",
            Self::WrongCode => "wrong_code",
            Self::ExpiredCode => "expired_code",
            Self::Disabled => "disabled",
            Self::Throttled => "throttled",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }

    /// The outcome of a login that answered `result`, `failure` being the
    /// reason the handler found for a refusal, if it found one.
    pub fn of<T>(result: &Result<T, ApiError>, failure: Option<LoginOutcome>) -> Self {
        match (result, failure) {
            (Ok(_), _) => Self::Success,
            (Err(_), Some(failure)) => failure,
            (Err(ApiError::TooManyRequests(_)), None) => Self::Throttled,
            (Err(ApiError::Validation(_)), None) => Self::Invalid,
            (Err(ApiError::LoginFailed), None) => Self::BadPassword,
            (Err(_), None) => Self::Error,
        }
    }
}

/// How a request for a one-time code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpSendOutcome {
    /// Handed to the gateway.
    Sent,
    /// Refused by a send throttle.
    Throttled,
    /// The gateway failed.
    Failed,
    /// A malformed request.
    Invalid,
    /// A store failed.
    Error,
}

impl OtpSendOutcome {
    const ALL: [OtpSendOutcome; 5] = [
        OtpSendOutcome::Sent,
        OtpSendOutcome::Throttled,
        OtpSendOutcome::Failed,
        OtpSendOutcome::Invalid,
        OtpSendOutcome::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Throttled => "throttled",
            Self::Failed => "failed",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }

    /// The outcome of a send that answered `result`.
    pub fn of<T>(result: &Result<T, ApiError>) -> Self {
        match result {
            Ok(_) => Self::Sent,
            Err(ApiError::TooManyRequests(_)) => Self::Throttled,
            Err(ApiError::OtpSendFailed(_)) => Self::Failed,
            Err(ApiError::Validation(_)) => Self::Invalid,
            Err(_) => Self::Error,
        }
    }
}

const OUTCOMES: [CommandOutcome; 3] = [CommandOutcome::Ok, CommandOutcome::Error, CommandOutcome::Timeout];

/// Where session events go (see [`crate::events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSink {
    /// `--events-webhook`.
    Webhook,
    /// The Redis stream (`--events-stream`).
    Stream,
}

impl EventSink {
    const ALL: [EventSink; 2] = [EventSink::Webhook, EventSink::Stream];

    /// `webhook` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Stream => "stream",
        }
    }
}

/// What became of a session event at one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// The sink took it.
    Delivered,
    /// An attempt failed and another follows (counted per attempt).
    Retried,
    /// Given up: attempts exhausted, refused by the sink (a 4xx), or still
    /// queued when shutdown's flush ran out of time.
    Dropped,
    /// The sink's queue was full: never queued.
    Overflow,
}

impl EventOutcome {
    const ALL: [EventOutcome; 4] =
        [EventOutcome::Delivered, EventOutcome::Retried, EventOutcome::Dropped, EventOutcome::Overflow];

    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Dropped => "dropped",
            Self::Overflow => "overflow",
        }
    }
}

/// Every metric of one node.
pub struct Metrics {
    http: HttpMetrics,
    logins: [[AtomicU64; LoginOutcome::ALL.len()]; LoginMethod::ALL.len()],
    otp_sends: [AtomicU64; OtpSendOutcome::ALL.len()],
    /// Sessions created by a login, and anonymous ones.
    sessions_created: [AtomicU64; 2],
    sessions_ended: [AtomicU64; EndReason::ALL.len()],
    /// Session events by sink and outcome; a sink is reported once configured.
    events: [[AtomicU64; EventOutcome::ALL.len()]; EventSink::ALL.len()],
    events_in_use: [AtomicBool; EventSink::ALL.len()],
    /// Redis calls by outcome; reported only once Redis is in use.
    store_commands: [Histogram; 3],
    store_in_use: AtomicBool,
    /// The current signing key's creation (ms since the epoch); token mode only.
    signing_key_created_ms: AtomicI64,
    signing_keys_in_use: AtomicBool,
    /// The feeds and the near cache, asked at scrape.
    readiness: OnceLock<Arc<Readiness>>,
    clock: Arc<dyn Clock>,
    /// False when nothing will read these (`--metrics-bind off`): requests,
    /// store commands and session events are then neither timed nor counted.
    recording: bool,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").field("http", &self.http).finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics for a server whose routes are `templates` (each route's
    /// template as given to the router); key ages are judged by `clock`.
    pub fn new(templates: &[&'static str], clock: Arc<dyn Clock>) -> Self {
        Self {
            http: HttpMetrics::new(templates),
            logins: Default::default(),
            otp_sends: Default::default(),
            sessions_created: Default::default(),
            sessions_ended: Default::default(),
            events: Default::default(),
            events_in_use: Default::default(),
            store_commands: Default::default(),
            store_in_use: AtomicBool::new(false),
            signing_key_created_ms: AtomicI64::new(0),
            signing_keys_in_use: AtomicBool::new(false),
            readiness: OnceLock::new(),
            clock,
            recording: true,
        }
    }

    /// Metrics that nothing reads (`--metrics-bind off`): no request is
    /// timed ([`Metrics::start`] gives `None`) and there is no observer for
    /// the store or the session layer to call, so the hot paths pay nothing
    /// for them. Counters bumped on rare paths (logins, OTP sends, event
    /// deliveries, the signing key's age) are still kept.
    pub fn unread(templates: &[&'static str], clock: Arc<dyn Clock>) -> Self {
        Self { recording: false, ..Self::new(templates, clock) }
    }

    /// The feeds (and through them the near cache) `/metrics` reports.
    pub fn follow(&self, readiness: Arc<Readiness>) {
        let _ = self.readiness.set(readiness);
    }

    /// One login attempt.
    pub fn login(&self, method: LoginMethod, outcome: LoginOutcome) {
        self.logins[method as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One request for a code.
    pub fn otp_send(&self, outcome: OtpSendOutcome) {
        self.otp_sends[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `sink` is configured: its series are reported.
    pub fn events_sink(&self, sink: EventSink) {
        self.events_in_use[sink as usize].store(true, Ordering::Relaxed);
    }

    /// One session event's `outcome` at `sink`.
    pub fn event(&self, sink: EventSink, outcome: EventOutcome) {
        self.events[sink as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The signing key in use now was created at `created_ms`.
    pub fn signing_key(&self, created_ms: i64) {
        self.signing_key_created_ms.store(created_ms, Ordering::Relaxed);
        self.signing_keys_in_use.store(true, Ordering::Relaxed);
    }

    /// A [`CommandObserver`] for the Redis connection; `None` when these
    /// metrics are [unread](Metrics::unread).
    pub fn store_observer(self: &Arc<Self>) -> Option<Arc<dyn CommandObserver>> {
        if !self.recording {
            return None;
        }
        self.store_in_use.store(true, Ordering::Relaxed);
        let metrics = self.clone();
        Some(Arc::new(move |elapsed: Duration, outcome: CommandOutcome| {
            let slot = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(1);
            metrics.store_commands[slot].observe(&STORE_BOUNDS_US, elapsed);
        }))
    }

    /// A [`SessionObserver`] for the session layer; `None` when these
    /// metrics are [unread](Metrics::unread).
    pub fn session_observer(self: &Arc<Self>) -> Option<Arc<dyn SessionObserver>> {
        self.recording.then(|| {
            let metrics = self.clone();
            Arc::new(move |event: &SessionEvent<'_>| metrics.session_event(event)) as _
        })
    }

    fn session_event(&self, event: &SessionEvent<'_>) {
        match event {
            SessionEvent::Created { user, .. } => {
                self.sessions_created[usize::from(user.is_none())].fetch_add(1, Ordering::Relaxed);
            }
            SessionEvent::Ended { reason, count, .. } => {
                if let Some(slot) = EndReason::ALL.iter().position(|r| r == reason) {
                    self.sessions_ended[slot].fetch_add(*count, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// The slot of the HTTP series of the route with `template`; `None`,
    /// or a template not among the server's, is `unmatched`.
    pub fn route_slot(&self, template: Option<&str>) -> usize {
        self.http.route_slot(template)
    }

    /// A request for `method` on the route in slot `route` (see
    /// [`Metrics::route_slot`]) comes in: its timing, which
    /// [`HttpTiming::finish`] records (called by `crate::outer`); `None`
    /// when these metrics are [unread](Metrics::unread).
    pub fn start(self: &Arc<Self>, method: &Method, route: usize) -> Option<HttpTiming> {
        self.recording.then(|| HttpTiming {
            metrics: self.clone(),
            route,
            method: method_slot(method),
            started: Instant::now(),
        })
    }

    /// The registry `/metrics` encodes.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self.clone())));
        registry
    }
}

/// What `/metrics` writes.
#[derive(Debug)]
struct Scrape(Arc<Metrics>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;

        let mut family = encoder.encode_descriptor(
            "tessera_http_requests",
            "HTTP requests answered, by route template (unmatched: no route), method and status.",
            None,
            MetricType::Counter,
        )?;
        for (route, method, status, h) in m.http.used() {
            let labels = [("route", route), ("method", method), ("status", status)];
            encode_counter(labels_of(&mut family, &labels)?, h.count())?;
        }
        let mut family = encoder.encode_descriptor(
            "tessera_http_request_duration_seconds",
            "Time from a request entering the middleware stack to its response head, by route template, method and status.",
            None,
            MetricType::Histogram,
        )?;
        for (route, method, status, h) in m.http.used() {
            let labels = [("route", route), ("method", method), ("status", status)];
            h.encode(&HTTP_BOUNDS_US, labels_of(&mut family, &labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "tessera_logins",
            "Login attempts by method (password, otp) and outcome (success or the failure's reason).",
            None,
            MetricType::Counter,
        )?;
        for method in LoginMethod::ALL {
            for outcome in LoginOutcome::ALL {
                let value = m.logins[method as usize][outcome as usize].load(Ordering::Relaxed);
                if method != LoginMethod::Unknown || value > 0 {
                    let labels = [("method", method.as_str()), ("outcome", outcome.as_str())];
                    encode_counter(labels_of(&mut family, &labels)?, value)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "tessera_otp_sends",
            "Requests for a one-time code by outcome (sent, throttled, failed: the gateway failed, invalid, error).",
            None,
            MetricType::Counter,
        )?;
        for outcome in OtpSendOutcome::ALL {
            let labels = [("outcome", outcome.as_str())];
            encode_counter(labels_of(&mut family, &labels)?, m.otp_sends[outcome as usize].load(Ordering::Relaxed))?;
        }

        let mut family = encoder.encode_descriptor(
            "tessera_sessions_created",
            "Sessions created: by a login, or anonymous.",
            None,
            MetricType::Counter,
        )?;
        for (i, kind) in ["login", "anonymous"].into_iter().enumerate() {
            encode_counter(labels_of(&mut family, &[("kind", kind)])?, m.sessions_created[i].load(Ordering::Relaxed))?;
        }
        let mut family = encoder.encode_descriptor(
            "tessera_sessions_ended",
            "Sessions ended by reason (logout, replaced, revoked, everywhere, capped, refresh_reuse); timeouts are not counted.",
            None,
            MetricType::Counter,
        )?;
        for (i, reason) in EndReason::ALL.iter().enumerate() {
            let labels = [("reason", reason.as_str())];
            encode_counter(labels_of(&mut family, &labels)?, m.sessions_ended[i].load(Ordering::Relaxed))?;
        }

        let sinks: Vec<EventSink> =
            EventSink::ALL.into_iter().filter(|s| m.events_in_use[*s as usize].load(Ordering::Relaxed)).collect();
        if !sinks.is_empty() {
            let mut family = encoder.encode_descriptor(
                "tessera_events",
                "Session events by sink (webhook, stream) and outcome: delivered; retried (per failed attempt followed by another); dropped (attempts exhausted, refused with a 4xx, or left at shutdown); overflow (the sink's queue was full).",
                None,
                MetricType::Counter,
            )?;
            for sink in sinks {
                for outcome in EventOutcome::ALL {
                    let labels = [("sink", sink.as_str()), ("outcome", outcome.as_str())];
                    let value = m.events[sink as usize][outcome as usize].load(Ordering::Relaxed);
                    encode_counter(labels_of(&mut family, &labels)?, value)?;
                }
            }
        }

        if m.store_in_use.load(Ordering::Relaxed) {
            let mut family = encoder.encode_descriptor(
                "tessera_store_command_duration_seconds",
                "Redis calls (a command, script or pipeline) by outcome (ok, error, timeout: no answer within --redis-timeout-ms).",
                None,
                MetricType::Histogram,
            )?;
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let labels = [("outcome", outcome.as_str())];
                m.store_commands[i].encode(&STORE_BOUNDS_US, labels_of(&mut family, &labels)?)?;
            }
        }

        let readiness = m.readiness.get();
        if let Some(stats) = readiness.and_then(|r| r.near_cache_stats()) {
            let counters = [
                ("tessera_near_cache_hits", "Session lookups answered from the near cache.", stats.hits),
                (
                    "tessera_near_cache_misses",
                    "Session lookups that went to Redis (not cached, too old, or the cache not trusted).",
                    stats.misses,
                ),
                (
                    "tessera_near_cache_evictions",
                    "Near cache entries dropped to stay within its capacity.",
                    stats.evictions,
                ),
                (
                    "tessera_near_cache_invalidations",
                    "Near cache entries dropped because the session changed (pushed invalidation or a local write).",
                    stats.invalidations,
                ),
            ];
            for (name, help, value) in counters {
                encode_counter(encoder.encode_descriptor(name, help, None, MetricType::Counter)?, value)?;
            }
            let family = encoder.encode_descriptor(
                "tessera_near_cache_entries",
                "Sessions held in the near cache now.",
                None,
                MetricType::Gauge,
            )?;
            encode_gauge(family, stats.entries)?;
        }

        let feeds =
            readiness.map(|r| [("invalidation", r.invalidation_feed_now()), ("revocation", r.revocation_feed_now())]);
        let feeds: Vec<(&str, bool)> =
            feeds.into_iter().flatten().filter_map(|(feed, up)| up.map(|up| (feed, up))).collect();
        if !feeds.is_empty() {
            let mut family = encoder.encode_descriptor(
                "tessera_feed_up",
                "Whether a push feed this node's memory depends on is current (1) or not (0): the near cache's invalidations, the revocation list.",
                None,
                MetricType::Gauge,
            )?;
            for (feed, up) in feeds {
                encode_gauge(labels_of(&mut family, &[("feed", feed)])?, i64::from(up))?;
            }
        }

        if m.signing_keys_in_use.load(Ordering::Relaxed) {
            let created = m.signing_key_created_ms.load(Ordering::Relaxed);
            let age = (m.clock.now().as_millis() - created).max(0) as f64 / 1e3;
            let family = encoder.encode_descriptor(
                "tessera_signing_key_age_seconds",
                "Age of the key that signs access tokens now (token mode).",
                None,
                MetricType::Gauge,
            )?;
            encode_gauge(family, age)?;
        }
        Ok(())
    }
}

/// One labelled sample of the family `family` describes.
fn labels_of<'e, S: EncodeLabelSet>(
    family: &'e mut MetricEncoder<'_>,
    labels: &'e S,
) -> Result<MetricEncoder<'e>, fmt::Error> {
    family.encode_family(labels)
}

/// The `/metrics` handler's state: the registry, encoded per scrape.
#[derive(Debug, Clone)]
pub struct Exporter(Arc<Registry>);

impl Exporter {
    /// The exporter of `metrics`.
    pub fn new(metrics: &Arc<Metrics>) -> Self {
        Self(Arc::new(metrics.registry()))
    }
}

/// `GET /metrics`: the Prometheus text format (0.0.4).
pub async fn scrape(State(exporter): State<Exporter>) -> Response {
    let mut body = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::prometheus_text::encode(&mut body, &exporter.0) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// When and how a request came in: made by [`Metrics::start`].
#[derive(Debug)]
pub struct HttpTiming {
    metrics: Arc<Metrics>,
    route: usize,
    method: usize,
    started: Instant,
}

impl HttpTiming {
    /// The request is answered with `status`: counted and timed by route
    /// template, method and status.
    pub fn finish(self, status: StatusCode) {
        self.metrics.http.observe(self.route, self.method, status, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_own_slot_or_their_class() {
        for (i, code) in STATUSES.iter().enumerate() {
            assert_eq!(STATUS_LABELS[status_slot(StatusCode::from_u16(*code).unwrap())], code.to_string());
            assert_eq!(status_slot(StatusCode::from_u16(*code).unwrap()), i);
        }
        assert_eq!(STATUS_LABELS[status_slot(StatusCode::from_u16(418).unwrap())], "4xx");
        assert_eq!(STATUS_LABELS[status_slot(StatusCode::from_u16(101).unwrap())], "1xx");
        assert_eq!(STATUS_LABELS[status_slot(StatusCode::from_u16(599).unwrap())], "5xx");
    }

    #[test]
    fn a_histogram_counts_each_duration_once_in_its_bucket() {
        let h = Histogram::default();
        h.observe(&HTTP_BOUNDS_US, Duration::from_micros(400));
        h.observe(&HTTP_BOUNDS_US, Duration::from_micros(500));
        h.observe(&HTTP_BOUNDS_US, Duration::from_millis(3));
        h.observe(&HTTP_BOUNDS_US, Duration::from_secs(60));
        let (buckets, count) = h.read(&HTTP_BOUNDS_US);
        assert_eq!(count, 4);
        assert_eq!(buckets[0], (0.0005, 2));
        assert_eq!(buckets[3], (0.005, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 3, "60 s is past every bound");
    }

    #[test]
    fn unread_metrics_time_no_request_and_observe_neither_store_nor_sessions() {
        let clock: Arc<dyn Clock> = Arc::new(tessera::SystemClock);
        let read = Arc::new(Metrics::new(&["/x"], clock.clone()));
        let unread = Arc::new(Metrics::unread(&["/x"], clock));
        let slot = read.route_slot(Some("/x"));
        read.start(&Method::GET, slot).expect("recording metrics time requests").finish(StatusCode::OK);
        assert_eq!(read.http.used().count(), 1);
        assert!(read.store_observer().is_some() && read.session_observer().is_some());
        assert!(unread.start(&Method::GET, slot).is_none());
        assert!(unread.store_observer().is_none() && unread.session_observer().is_none());
        assert_eq!(unread.http.used().count(), 0);
    }

    #[test]
    fn unknown_routes_share_one_label() {
        let http = HttpMetrics::new(&["/a", "/b/{id}", "/a"]);
        assert_eq!(http.labels, vec!["/a", "/b/{id}", UNMATCHED]);
        assert_eq!(http.route_slot(None), 2);
    }

    #[test]
    fn every_route_template_of_the_server_finds_its_own_slot() {
        let http = HttpMetrics::new(crate::routes::TEMPLATES);
        for (slot, template) in http.labels.iter().enumerate().take(http.unmatched()) {
            assert_eq!(http.routes.get(template), Some(&slot), "{template}");
        }
        assert_eq!(http.routes.get("/user/me/"), None, "templates match whole, not by prefix");
    }
}
