//! The accept loop: HTTP/1.1 connections with the bounds `axum::serve`
//! does not offer.
//!
//! - a header-read timeout: from a connection's start, or from the first
//!   byte of a later request, its line and headers must be complete within
//!   the bound (a slowloris client trickling a header line every few
//!   seconds is cut off when the deadline passes, not reset by each byte);
//! - an idle keep-alive timeout: a kept-alive connection that sends no
//!   next request is closed (both deadlines are checked a few times per
//!   deadline by each connection's companion task, which also stamps the
//!   connection's marks with the time: no timer is armed and no clock read
//!   per request);
//! - a cap on open connections below the process's file limit, so `accept`
//!   never fails with `EMFILE` in a hot loop (an `accept` error is answered
//!   by a short pause, never a spin); at the cap a new connection takes the
//!   place of the one that has waited longest without being served (idle
//!   between requests, or still trickling its headers), so a flood of slow
//!   connections cannot make normal requests queue behind it;
//! - limits on the number and total size of request headers (431 beyond);
//! - graceful shutdown: stop accepting, let in-flight requests finish
//!   (bounded), then return.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// How the front treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this after its first byte is
    /// awaited.
    pub header_read_timeout: Duration,
    /// A kept-alive connection is closed after this long without a request.
    pub keep_alive_timeout: Duration,
    /// Open connections at most; see [`HttpLimits::effective_max_connections`].
    pub max_connections: usize,
    /// Request header fields at most.
    pub max_headers: usize,
    /// Bytes of request line plus headers at most.
    pub max_header_bytes: usize,
    /// In-flight requests get this long to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_millis(crate::configuration::DEFAULT_HEADER_READ_TIMEOUT_MS),
            keep_alive_timeout: Duration::from_millis(crate::configuration::DEFAULT_KEEP_ALIVE_TIMEOUT_MS),
            max_connections: crate::configuration::DEFAULT_MAX_CONNECTIONS,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept free for everything but client connections
/// (database, Redis, key file, logs).
const RESERVED_FDS: usize = 128;

impl HttpLimits {
    /// The connection cap, lowered to fit under the process's open-file
    /// limit so the cap is reached before `EMFILE` is.
    pub fn effective_max_connections(&self) -> usize {
        match open_file_limit() {
            Some(limit) => self.max_connections.min(limit.saturating_sub(RESERVED_FDS).max(16)),
            None => self.max_connections,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `service` (a router, or the router inside its middleware stack)
/// on `listener` until `shutdown` completes. Each connection has a clone of
/// `service` of its own, which serves its requests one after another: no
/// clone per request.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let cap = limits.effective_max_connections();
    let permits = Arc::new(Semaphore::new(cap));
    let (stop, stopped) = watch::channel(false);
    let mut builder = http1::Builder::new();
    // No hyper timer: it would arm a timer for every request. Both the
    // header deadline and the keep-alive timeout are the companion task's,
    // checked a few times per deadline from the connection's timestamps.
    builder.header_read_timeout(None).max_header_size(limits.max_header_bytes).keep_alive(true);
    // hyper's own count limit initialises two arrays of that many header
    // slots for every request (~2 % of a request's time); under hyper's
    // built-in ceiling the count is checked in `PerConnection` instead,
    // with hyper's answer.
    if limits.max_headers > HYPER_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    let builder = Arc::new(builder);
    let open = Arc::new(OpenConnections::default());
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits, &open) => accepted,
        };
        let Some((stream, peer, permit)) = accepted else { continue };
        // Registered here, not in the task: the next accept may need to
        // choose among every connection accepted so far.
        let (id, activity) = open.register();
        let (builder, service, stopped, open) = (builder.clone(), service.clone(), stopped.clone(), open.clone());
        let max_headers = limits.max_headers;
        tokio::spawn(async move {
            let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
            let connection =
                builder.serve_connection(io, PerConnection::new(service, peer, activity.clone(), max_headers));
            if let Err(e) = drive(connection, activity, limits, stopped).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            open.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it is gone.
    let all_closed = permits.acquire_many(u32::try_from(cap).unwrap_or(u32::MAX));
    if tokio::time::timeout(limits.shutdown_grace, all_closed).await.is_err() {
        tracing::warn!("shutdown grace period over; dropping the remaining connections");
    }
    Ok(())
}

/// The next connection and its slot. At the cap the connection is accepted
/// anyway (the descriptors kept free leave room for one more) and the open
/// connection that has waited longest without being served gives up its
/// slot. `None` after an accept error, which has already been waited out.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    open: &OpenConnections,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let free = permits.clone().try_acquire_owned().ok();
    let (stream, peer) = match listener.accept().await {
        Ok(accepted) => accepted,
        Err(e) => {
            // EMFILE/ENFILE and friends: the condition lasts until some
            // connection closes, so retrying at once would only spin.
            tracing::warn!(error = %e, "accept failed; pausing before the next accept");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let permit = match free {
        Some(permit) => permit,
        None => {
            if !open.evict_longest_waiting() {
                tracing::warn!("at the connection cap with every connection in a request; waiting for one to end");
            }
            permits.clone().acquire_owned().await.expect("the semaphore is never closed")
        }
    };
    Some((stream, peer, permit))
}

/// The open connections, for choosing one to close at the cap.
#[derive(Debug, Default)]
struct OpenConnections {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl OpenConnections {
    fn register(&self) -> (u64, Arc<Activity>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(id, activity.clone());
        (id, activity)
    }

    fn remove(&self, id: u64) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Asks the connection that has waited longest without being served
    /// to close; `false` when every connection is in a request.
    fn evict_longest_waiting(&self) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = entries.values().filter_map(|a| a.waiting_since().map(|since| (since, a))).min_by_key(|(s, _)| *s);
        match oldest {
            Some((_, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }
}

/// One connection's service, as hyper calls it: tells handlers the peer
/// address and tells `activity` when a request's headers are complete and
/// answered. hyper serves a connection's requests one at a time and the
/// service's future owns what it needs, so the connection's own clone is
/// borrowed only for the call itself.
struct PerConnection<S> {
    service: RefCell<S>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    max_headers: usize,
}

impl<S> PerConnection<S> {
    fn new(service: S, peer: SocketAddr, activity: Arc<Activity>, max_headers: usize) -> Self {
        Self { service: RefCell::new(service), peer, activity, max_headers }
    }
}

/// The most header fields hyper takes when it is not told a number (its
/// `DEFAULT_MAX_HEADERS`); past it hyper answers 431 itself.
const HYPER_MAX_HEADERS: usize = 100;

/// An empty extension map with room for the seven a request gathers on
/// its way through the stack (the peer, the session, the route and its
/// parameters, …). An empty map starts with room for three, so the fourth
/// insert of every request re-allocated and re-hashed it; a clone of this
/// one keeps its room.
fn roomy_extensions() -> http::Extensions {
    static EMPTY: std::sync::LazyLock<http::Extensions> = std::sync::LazyLock::new(|| {
        #[derive(Clone, Copy)]
        struct Slot<const N: u8>;
        let mut map = http::Extensions::new();
        map.insert(Slot::<0>);
        map.insert(Slot::<1>);
        map.insert(Slot::<2>);
        map.insert(Slot::<3>);
        // Clearing keeps the room.
        map.clear();
        map
    });
    EMPTY.clone()
}

/// hyper's answer to a request with too many header fields: 431, no body,
/// and the connection closed after it.
fn too_many_headers() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

impl<S> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answered<S>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.headers_complete();
        let activity = self.activity.clone();
        if request.headers().len() > self.max_headers {
            return Answered { state: AnsweredState::Refused { response: Some(too_many_headers()) }, activity };
        }
        let mut request = request.map(Body::new);
        let extensions = request.extensions_mut();
        let from_hyper = std::mem::replace(extensions, roomy_extensions());
        extensions.extend(from_hyper);
        extensions.insert(ConnectInfo(self.peer));
        let mut service = self.service.borrow_mut();
        // Every layer of the stack is ready at once; were one not, the
        // request would wait on a clone of its own (`Oneshot`).
        match service.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => {
                Answered { state: AnsweredState::Called { future: service.call(request) }, activity }
            }
            Poll::Ready(Err(e)) => match e {},
            Poll::Pending => {
                let future = service.clone().oneshot(request);
                Answered { state: AnsweredState::Waiting { future }, activity }
            }
        }
    }
}

pin_project! {
    /// The answer to one request; tells the connection's [`Activity`]
    /// when it is ready.
    struct Answered<S: Service<Request<Body>>> {
        #[pin]
        state: AnsweredState<S>,
        activity: Arc<Activity>,
    }
}

pin_project! {
    #[project = AnsweredProj]
    enum AnsweredState<S: Service<Request<Body>>> {
        Called { #[pin] future: S::Future },
        Waiting { #[pin] future: Oneshot<S, Request<Body>> },
        Refused { response: Option<Response> },
    }
}

impl<S> Future for Answered<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = match this.state.project() {
            AnsweredProj::Called { future } => ready!(future.poll(cx)),
            AnsweredProj::Waiting { future } => ready!(future.poll(cx)),
            AnsweredProj::Refused { response } => Ok(response.take().expect("polled after completion")),
        };
        this.activity.answered();
        Poll::Ready(answered)
    }
}

/// Runs one connection until it ends. A request whose headers are not
/// complete within `header_timeout` of its first byte (or of the
/// connection's start) ends the connection at once, as does making room at
/// the cap; a server shutdown asks it to close gracefully (the request in
/// flight, if any, is answered first).
///
/// The deadlines, the cap and the shutdown are watched by a companion task
/// that sends one word when it is time: the connection's own future, woken
/// for every read and write, then polls one cheap receiver beside hyper
/// instead of a timer, a notification and a watch channel each time.
async fn drive<C>(
    connection: C,
    activity: Arc<Activity>,
    limits: HttpLimits,
    stopped: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>> + GracefulConnection,
{
    let mut connection = pin!(connection);
    // One word at most: a oneshot, the cheapest receiver to poll beside
    // hyper each time the connection is woken.
    let (tell, mut told) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_connection(activity, limits, stopped, tell));
    let result = tokio::select! {
        biased;
        result = connection.as_mut() => result,
        word = &mut told => match word {
            Ok(Word::Close) => {
                connection.as_mut().close_gracefully();
                // Nothing more to say; the connection ends by itself.
                connection.as_mut().await
            }
            Ok(Word::End) | Err(_) => Ok(()),
        },
    };
    watcher.abort();
    result
}

/// What the companion task tells a connection.
enum Word {
    /// Finish the request in flight, then close (shutdown).
    Close,
    /// Close now (headers too slow, or room needed at the cap).
    End,
}

/// The companion of one connection: its header deadline, its keep-alive
/// timeout, eviction and the server's shutdown.
async fn watch_connection(
    activity: Arc<Activity>,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
    tell: tokio::sync::oneshot::Sender<Word>,
) {
    let shortest = limits.header_read_timeout.min(limits.keep_alive_timeout);
    let every = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut check = tokio::time::interval(every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let word = loop {
        tokio::select! {
            () = activity.evicted.notified() => {
                tracing::debug!("connection closed to make room at the connection cap");
                break Word::End;
            }
            _ = stopped.changed() => break Word::Close,
            _ = check.tick() => {
                let now = now_ms();
                activity.stamp(now);
                if activity.headers_overdue(limits.header_read_timeout, now) {
                    tracing::debug!("request headers too slow; connection closed");
                    break Word::End;
                }
                if activity.idle_longer_than(limits.keep_alive_timeout, now) {
                    tracing::debug!("kept-alive connection idle too long; closed");
                    break Word::End;
                }
            }
        }
    };
    let _ = tell.send(word);
}

/// A connection that can be asked to finish its current request and close.
trait GracefulConnection {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Milliseconds since the first call, one time line for every connection
/// (so that waits can be compared across connections).
fn now_ms() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(UNSTAMPED - 1)
}

/// Where a connection is in its request cycle, for its deadlines.
///
/// A request only marks here what happened (atomics, no clock); the
/// connection's companion task reads the clock once per check and stamps
/// each mark with the time it first sees it ([`Activity::stamp`]). Read at
/// every request's first byte and at its answer instead, the clock cost
/// each request two readings. The price: a deadline counts from up to one
/// check after its start, and is seen at the first check after it ends, so
/// a connection is closed within two check intervals after its timeout
/// instead of one (never before it).
#[derive(Debug)]
struct Activity {
    /// When the current request's head began arriving, in [`now_ms`]'s
    /// count (the connection's start for the first request);
    /// [`UNSTAMPED`] when it began since the last check;
    /// [`NOT_READING_HEAD`] between requests and while one is served.
    head_since: AtomicU64,
    /// A request's headers are complete and its answer is not yet given:
    /// bytes now are its body, not a new head.
    serving: AtomicBool,
    /// When the connection last began waiting for a request (its start, or
    /// its last answer), in [`now_ms`]'s count; [`UNSTAMPED`] when that was
    /// since the last check.
    idle_since: AtomicU64,
    /// Told to close to make room at the connection cap.
    evicted: Notify,
    /// Already chosen to close: not to be chosen again.
    evicting: AtomicBool,
}

const NOT_READING_HEAD: u64 = u64::MAX;

/// Happened since the last check; the check stamps it with its own time.
/// Above every time [`now_ms`] gives, so that a connection just answered
/// counts as the one that has waited least.
const UNSTAMPED: u64 = u64::MAX - 1;

impl Default for Activity {
    fn default() -> Self {
        let now = now_ms();
        Self {
            head_since: AtomicU64::new(now),
            serving: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            evicted: Notify::new(),
            evicting: AtomicBool::new(false),
        }
    }
}

impl Activity {
    /// Bytes arrived: between requests they begin the next head.
    fn bytes_read(&self) {
        if !self.serving.load(Ordering::Acquire) {
            let _ = self.head_since.compare_exchange(NOT_READING_HEAD, UNSTAMPED, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn headers_complete(&self) {
        self.serving.store(true, Ordering::Release);
        self.head_since.store(NOT_READING_HEAD, Ordering::Release);
    }

    fn answered(&self) {
        self.idle_since.store(UNSTAMPED, Ordering::Release);
        self.serving.store(false, Ordering::Release);
    }

    /// Gives what happened since the last check the time `now` (a check's).
    fn stamp(&self, now: u64) {
        for mark in [&self.head_since, &self.idle_since] {
            let _ = mark.compare_exchange(UNSTAMPED, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Since when the connection has been waiting for a request (idle, or
    /// reading a head); `None` while one is served.
    fn waiting_since(&self) -> Option<u64> {
        let waiting = !self.serving.load(Ordering::Acquire) && !self.evicting.load(Ordering::Acquire);
        waiting.then(|| self.idle_since.load(Ordering::Acquire))
    }

    fn evict(&self) {
        self.evicting.store(true, Ordering::Release);
        // Stored if the connection is not awaiting it yet.
        self.evicted.notify_one();
    }

    /// Between requests (no byte of a next one yet) for at least `limit`
    /// at `now`.
    fn idle_longer_than(&self, limit: Duration, now: u64) -> bool {
        let idle = !self.serving.load(Ordering::Acquire) && self.head_since.load(Ordering::Acquire) == NOT_READING_HEAD;
        idle && older_than(self.idle_since.load(Ordering::Acquire), limit, now)
    }

    /// Reading a head for at least `limit` at `now`.
    fn headers_overdue(&self, limit: Duration, now: u64) -> bool {
        let started = self.head_since.load(Ordering::Acquire);
        started != NOT_READING_HEAD && older_than(started, limit, now)
    }
}

/// Whether the mark `since` (a time or [`UNSTAMPED`]) is at least `limit`
/// before `now`; a mark not yet stamped is not.
fn older_than(since: u64, limit: Duration, now: u64) -> bool {
    since != UNSTAMPED && Duration::from_millis(now.saturating_sub(since)) >= limit
}

/// A stream that tells its [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(500);
    /// A check long after every other time of a test.
    const MUCH_LATER: u64 = UNSTAMPED - 1;

    #[test]
    fn a_head_counts_from_the_first_check_that_sees_it_never_from_before() {
        let activity = Activity::default();
        activity.headers_complete();
        activity.answered();
        activity.stamp(1_000);
        activity.bytes_read();
        assert!(!activity.headers_overdue(LIMIT, MUCH_LATER), "not stamped yet: not overdue");
        activity.stamp(1_200);
        activity.bytes_read(); // more bytes of the same head move nothing
        activity.stamp(1_400);
        assert!(!activity.headers_overdue(LIMIT, 1_699));
        assert!(activity.headers_overdue(LIMIT, 1_700));
        activity.headers_complete();
        assert!(!activity.headers_overdue(LIMIT, 9_999), "a head complete is not overdue");
    }

    #[test]
    fn an_idle_connection_counts_from_the_check_after_its_answer() {
        let activity = Activity::default();
        activity.headers_complete();
        assert!(!activity.idle_longer_than(LIMIT, MUCH_LATER), "serving is not idle");
        activity.answered();
        assert!(!activity.idle_longer_than(LIMIT, MUCH_LATER), "not stamped yet: not idle long");
        activity.stamp(2_000);
        assert!(!activity.idle_longer_than(LIMIT, 2_499));
        assert!(activity.idle_longer_than(LIMIT, 2_500));
        activity.bytes_read();
        assert!(!activity.idle_longer_than(LIMIT, 9_999), "a next head has begun: not idle");
    }

    #[test]
    fn a_connection_answered_since_the_last_check_has_waited_least() {
        let (earlier, just_answered) = (Activity::default(), Activity::default());
        for activity in [&earlier, &just_answered] {
            activity.headers_complete();
            assert_eq!(activity.waiting_since(), None, "in a request: not waiting");
        }
        earlier.answered();
        earlier.stamp(5_000);
        just_answered.answered();
        assert!(earlier.waiting_since() < just_answered.waiting_since());
    }
}
