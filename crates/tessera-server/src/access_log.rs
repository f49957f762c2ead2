//! Request ids and the access log.
//!
//! Every answer carries `X-Request-Id`: the one a trusted reverse proxy
//! (`--trusted-proxy`) sent, if it is sane (1 to [`MAX_REQUEST_ID`]
//! visible ASCII characters, one header), else one made here. A client that
//! is not a trusted proxy cannot choose the id its request is logged under.
//!
//! The access log is one event per request at INFO with the target
//! [`TARGET`] (`tessera::access`): `method`, `route` (the route template,
//! e.g. `/user/sessions/{id}`; absent when no route matched), `status`,
//! `latency_us`, `session` (the session's digest prefix, when the request
//! learnt which session it is) and `request_id`. Events logged while a
//! request is served sit in a span `request` (same target) with `method`,
//! `route` and `request_id`. A filter that leaves `tessera::access` out
//! (`--log info,tessera::access=off`, or any level above INFO) skips the
//! span, the clock reads and every formatting: what is left per request is
//! the request id.
//!
//! [`RequestIds::begin`] and [`RequestLog::finish`] are called on each
//! request's way in and out by `crate::outer`; [`SessionTag`] is a
//! hand-written layer, not `from_fn` middleware, so no future is boxed per
//! request.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use pin_project_lite::pin_project;
use tessera::Session;
use tower::{Layer, Service};
use tracing::Level;

/// The target of the access log and of the request span.
pub const TARGET: &str = "tessera::access";

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a proxy.
pub const MAX_REQUEST_ID: usize = 128;

fn access_log_enabled() -> bool {
    tracing::enabled!(target: TARGET, Level::INFO)
}

/// Where request ids come from: decides each request's id (see
/// [`RequestIds::begin`]).
#[derive(Debug, Clone)]
pub struct RequestIds {
    shared: Arc<Ids>,
}

#[derive(Debug)]
struct Ids {
    trusted: Arc<Vec<IpAddr>>,
    /// 16 hex digits drawn at start, so ids of different processes differ.
    prefix: [u8; 16],
    next: AtomicU64,
}

impl RequestIds {
    /// Request ids from `trusted` proxies are believed (the list
    /// `client_ip::TrustedProxies` holds, shared).
    pub fn new(trusted: Arc<Vec<IpAddr>>) -> Self {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS CSPRNG is unavailable");
        let mut prefix = [0u8; 16];
        for (i, byte) in random.iter().enumerate() {
            prefix[2 * i] = HEX[usize::from(byte >> 4)];
            prefix[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        Self { shared: Arc::new(Ids { trusted, prefix, next: AtomicU64::new(0) }) }
    }

    /// A request for `route` (its template, if its path matched one)
    /// comes in: its id, and, when the access log is on, its span and what
    /// its line will need that the answer does not tell.
    pub fn begin<B>(&self, req: &Request<B>, route: Option<&'static str>) -> RequestLog {
        let id = self.shared.for_request(req);
        let pending = access_log_enabled().then(|| {
            let span = tracing::info_span!(
                target: TARGET,
                "request",
                method = %req.method(),
                route,
                request_id = id.to_str().unwrap_or_default(),
            );
            Box::new(Pending { started: Instant::now(), method: req.method().clone(), route, span })
        });
        RequestLog { id: Some(id), pending }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Ids {
    /// The proxy's id if the peer is trusted and the id sane, else a new one.
    fn for_request<B>(&self, req: &Request<B>) -> HeaderValue {
        if self.trusted.is_empty() {
            return self.make();
        }
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if peer.is_some_and(|peer| self.trusted.contains(&peer)) {
            if let Some(given) = sane_request_id(req.headers()) {
                return given.clone();
            }
        }
        self.make()
    }

    /// `<16 hex digits of this process>-<counter in hex>`: unique per
    /// process without a random draw per request.
    fn make(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 16 + 1 + 16];
        buf[..16].copy_from_slice(&self.prefix);
        buf[16] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            buf[17 + i] = HEX[nibble as usize];
        }
        HeaderValue::from_bytes(&buf[..17 + digits]).expect("hex digits and a dash are a valid header value")
    }
}

/// The request's one `X-Request-Id`, if it is 1 to [`MAX_REQUEST_ID`]
/// visible ASCII characters (no spaces, no control characters).
fn sane_request_id(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(&X_REQUEST_ID).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let sane = !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    sane.then_some(value)
}

/// One request's id and, when the access log is on, its span and the
/// start of its line: made by [`RequestIds::begin`], ended by
/// [`RequestLog::finish`].
#[derive(Debug)]
pub struct RequestLog {
    id: Option<HeaderValue>,
    // Boxed: with the access log off (`None`) the request's future, which
    // every outer level moves, holds a pointer here instead of ~100 bytes.
    pending: Option<Box<Pending>>,
}

/// What the access line needs that the response does not tell.
#[derive(Debug)]
struct Pending {
    started: Instant,
    method: Method,
    route: Option<&'static str>,
    span: tracing::Span,
}

impl RequestLog {
    /// Enters the request's span (when the access log is on) until the
    /// guard is dropped: whatever serving the request logs sits in it.
    pub fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.pending.as_ref().map(|p| p.span.enter())
    }

    /// The request is answered with `response`: the id goes on it as
    /// `X-Request-Id`, and the access line is written (when on).
    ///
    /// # Panics
    /// When called twice (the request's future polled after it finished).
    pub fn finish(&mut self, response: &mut Response) {
        let seen = response.extensions_mut().remove::<SessionSeen>();
        let id = self.id.take().expect("polled after completion");
        if let Some(pending) = self.pending.take() {
            let latency_us = u64::try_from(pending.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let session = seen.and_then(|s| s.0.digest_prefix());
            tracing::info!(
                target: TARGET,
                method = %pending.method,
                route = pending.route,
                status = response.status().as_u16(),
                latency_us,
                session = session.as_deref(),
                request_id = id.to_str().unwrap_or_default(),
                "request"
            );
        }
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
}

/// The session a request used, handed from inside the session layer to the
/// access log in the response's extensions.
#[derive(Clone)]
struct SessionSeen(Session);

/// The innermost layer, between the session layer and the handlers: when
/// the access log is on, hands the request's [`Session`] out with the
/// response so the access log can name it (after the session layer has
/// committed; a refusal the session layer renders itself names none).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionTagLayer;

impl<S> Layer<S> for SessionTagLayer {
    type Service = SessionTag<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionTag { inner }
    }
}

/// See [`SessionTagLayer`].
#[derive(Debug, Clone)]
pub struct SessionTag<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SessionTag<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = SessionTagFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let session = if access_log_enabled() { req.extensions().get::<Session>().cloned() } else { None };
        SessionTagFuture { inner: self.inner.call(req), session }
    }
}

pin_project! {
    /// The future of [`SessionTag`].
    pub struct SessionTagFuture<F> {
        #[pin]
        inner: F,
        session: Option<Session>,
    }
}

impl<F, E> Future for SessionTagFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(session) = this.session.take() {
            response.extensions_mut().insert(SessionSeen(session));
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, ids: &[&str]) -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1)));
        for id in ids {
            req.headers_mut().append(&X_REQUEST_ID, HeaderValue::from_str(id).unwrap());
        }
        req
    }

    #[test]
    fn a_trusted_proxys_sane_id_is_kept_and_anything_else_replaced() {
        let ids = RequestIds::new(Arc::new(vec!["10.0.0.1".parse().unwrap()]));
        let ids = &ids.shared;
        assert_eq!(ids.for_request(&request("10.0.0.1", &["abc-123"])), "abc-123");
        for insane in [&["a b"][..], &[""], &["x", "y"], &[&"x".repeat(MAX_REQUEST_ID + 1)]] {
            assert_ne!(ids.for_request(&request("10.0.0.1", insane)).as_bytes().first(), Some(&b'x'), "{insane:?}");
        }
        let made = ids.for_request(&request("10.0.0.9", &["abc-123"]));
        assert_ne!(made, "abc-123", "an untrusted peer does not choose its id");
        let next = ids.for_request(&request("10.0.0.9", &[]));
        assert_ne!(made, next);
        let text = next.to_str().unwrap();
        assert_eq!(text.len(), 18);
        assert_eq!(text.as_bytes()[16], b'-', "{text}");
        assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }
}
