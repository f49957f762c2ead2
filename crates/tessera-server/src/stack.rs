//! The middleware stack, put together once around the whole router.
//!
//! `Router::layer` wraps every route (and the fallback) in its own copy of
//! a layer, boxed once more per `.layer` call: each request then cloned a
//! chain of boxed services as deep as the stack (one allocation per level,
//! the CORS configuration's vectors included). Here the layers wrap the
//! router as one concrete service instead, which the HTTP front clones
//! once per connection, not per request.
//!
//! The outermost layer (`crate::outer`) reads the request's language (from
//! `Accept-Language`, for `crate::lang::current`) and sets it on the thread
//! while the request's code runs ([`InLanguage`]), and finds the request's
//! route ([`RouteMatcher`]) for the metrics and the access log.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::{Method, Request};
use pin_project_lite::pin_project;
use tower::util::Either;
use tower::util::MapFuture;
use tower::{Layer, Service};
use tower_http::cors::{Cors, CorsLayer};

use crate::access_log::SessionTag;
use crate::dispatch::Dispatch;
use crate::lang::Lang;
use crate::metrics::Metrics;
use crate::outer::Outer;

/// What the CORS layer wraps.
type BelowCors = tessera::SessionService<SessionTag<Dispatch>>;

/// The server's whole service: the layers of `startup::router`, outermost
/// first, around the router.
pub type Stack = Outer<Either<BoxedCors, NoCorsOrigins<BelowCors>>>;

/// tower-http's CORS future around what it wraps.
type CorsFuture = tower_http::cors::ResponseFuture<<BelowCors as Service<Request<Body>>>::Future>;

/// tower-http's CORS layer with its future boxed.
///
/// The stack's future is either CORS's or [`NoCorsOrigins`]'s, so it is
/// as large as the larger: tower-http's, 176 bytes more, which every
/// request moved several times on its way to hyper whether any origin was
/// trusted or not. Boxed, a node that trusts origins pays one allocation
/// per request and one without pays nothing.
pub type BoxedCors = MapFuture<Cors<BelowCors>, fn(CorsFuture) -> Pin<Box<CorsFuture>>>;

/// Makes [`BoxedCors`] from tower-http's `CorsLayer`.
#[derive(Debug, Clone)]
pub struct BoxedCorsLayer(pub CorsLayer);

impl Layer<BelowCors> for BoxedCorsLayer {
    type Service = BoxedCors;

    fn layer(&self, inner: BelowCors) -> BoxedCors {
        MapFuture::new(self.0.layer(inner), Box::pin)
    }
}

thread_local! {
    /// The language of the request whose future this thread is polling.
    static LANGUAGE: Cell<Option<Lang>> = const { Cell::new(None) };
}

/// The language of the request being served; `None` outside a request.
pub fn request_language() -> Option<Lang> {
    LANGUAGE.get()
}

/// While alive, the code on this thread serves a request in `lang`; on
/// drop (an unwind included) the thread reads what it read before.
///
/// What tokio's `task_local!` does, less its work: a request's code runs
/// only inside its own future's `poll` (and its service's `call`), on the
/// thread that polls it, so a thread-local set around each poll is all it
/// takes. tokio's scope moved the whole nested request future into one
/// more wrapper and swapped a `RefCell` in and out on every poll
/// (callgrind, `GET /`: ~150 instructions per request).
#[must_use = "the language holds only while the guard lives"]
pub struct InLanguage {
    previous: Option<Lang>,
}

impl InLanguage {
    /// Serves in `lang` until the guard is dropped.
    pub fn enter(lang: Lang) -> Self {
        Self { previous: LANGUAGE.replace(Some(lang)) }
    }
}

impl Drop for InLanguage {
    fn drop(&mut self) {
        LANGUAGE.set(self.previous);
    }
}

pin_project! {
    /// `future`, polled as a request in `lang` ([`request_scope`]).
    pub struct InRequestLanguage<F> {
        lang: Lang,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for InRequestLanguage<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _in = InLanguage::enter(*this.lang);
        this.future.poll(cx)
    }
}

/// Runs `future` as a request in `lang` (tests, and work a handler hands
/// to another task; the server's own requests get theirs from
/// `crate::outer`).
pub fn request_scope<F: Future>(lang: Lang, future: F) -> InRequestLanguage<F> {
    InRequestLanguage { lang, future }
}

/// A request's route: the template its path matched, and its slot in the
/// HTTP metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The route template, e.g. `/user/sessions/{id}`.
    pub template: &'static str,
    /// Its slot in [`Metrics`]' HTTP series.
    pub slot: usize,
}

/// Finds a request's route from its path, before the router runs, with the
/// router's own matcher (matchit) over the templates the router serves.
///
/// The metrics and the access log need the route template. Read from the
/// router's `MatchedPath`, it was known only inside the router, which took
/// a layer on every route (`Router::route_layer`): one more boxed service
/// cloned and one more boxed future per request. Matched here, it is known
/// from the start (the request span carries it while handlers log), and a
/// path whose route exists but not for the request's method (a 405) counts
/// under its route.
///
/// Most requests are for a template without parameters (`/user/me`), which
/// only its own path matches: those are found by one hash of the path. The
/// tree walk, which matches every prefix the templates share byte by byte
/// (~200 instructions for `/user/me`, on top of the router's own walk),
/// is left to paths that name no such template.
#[derive(Debug)]
pub struct RouteMatcher {
    exact: HashMap<&'static str, Route, BuildHasherDefault<Fnv1a>>,
    routes: matchit::Router<Route>,
}

impl RouteMatcher {
    /// A matcher for `templates` (those a router serves), each given its
    /// slot in `metrics`.
    ///
    /// # Panics
    /// When two templates conflict, which the router itself would have
    /// refused first.
    pub fn new(templates: &[&'static str], metrics: &Metrics) -> Self {
        let mut routes = matchit::Router::new();
        let mut exact = HashMap::default();
        for &template in templates {
            let route = Route { template, slot: metrics.route_slot(Some(template)) };
            routes.insert(template, route).expect("the router accepted these templates");
            if !crate::routes::has_parameter(template) {
                exact.insert(template, route);
            }
        }
        Self { exact, routes }
    }

    /// The route whose template `path` matches, if any.
    pub fn find(&self, path: &str) -> Option<Route> {
        if let Some(route) = self.exact.get(path) {
            return Some(*route);
        }
        self.routes.at(path).ok().map(|found| *found.value)
    }
}

/// FNV-1a, for the tables of a few dozen short paths of [`RouteMatcher`]
/// and `crate::dispatch`: a few instructions a byte where SipHash's setup
/// alone costs more than the whole of it. The table is filled once from the
/// server's own templates, so a client's path can only be looked up, never
/// make entries collide.
pub(crate) struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What tower-http's `CorsLayer::new()` (no origin trusted) answers, less
/// its work per request: an `OPTIONS` request is answered at once, 200 with
/// no body, and everything else passes through. tower-http also adds `Vary:
/// origin, access-control-request-method, access-control-request-headers`
/// to every answer; with no origin trusted no answer depends on those
/// headers, so this leaves it out (a cache keyed on them would only keep
/// more copies of the same answer, and the header cost every answer). A
/// test holds the two side by side.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCorsOriginsLayer;

impl<S> Layer<S> for NoCorsOriginsLayer {
    type Service = NoCorsOrigins<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoCorsOrigins { inner }
    }
}

/// See [`NoCorsOriginsLayer`].
#[derive(Debug, Clone)]
pub struct NoCorsOrigins<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for NoCorsOrigins<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = NoCorsOriginsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::OPTIONS {
            return NoCorsOriginsFuture { inner: None };
        }
        NoCorsOriginsFuture { inner: Some(self.inner.call(req)) }
    }
}

pin_project! {
    /// The future of [`NoCorsOrigins`]; `inner` is `None` for a preflight.
    pub struct NoCorsOriginsFuture<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F, E> Future for NoCorsOriginsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => Poll::Ready(Ok(Response::default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use http::{header, HeaderValue};
    use tower::ServiceExt;
    use tower_http::cors::CorsLayer;

    async fn answer<S>(service: S, method: Method) -> (u16, Vec<(String, String)>, axum::body::Bytes)
    where
        S: Service<Request<Body>, Response = Response, Error = std::convert::Infallible>,
    {
        let request = Request::builder()
            .method(method)
            .uri("/x")
            .header(header::ORIGIN, "https://elsewhere.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let headers =
            response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        (response.status().as_u16(), headers, to_bytes(response.into_body(), 1 << 12).await.unwrap())
    }

    #[test]
    fn a_path_finds_the_template_it_matches_among_those_routed_and_its_metrics_slot() {
        let metrics = Metrics::new(crate::routes::TEMPLATES, std::sync::Arc::new(tessera::SystemClock));
        let routed = ["/", "/user/me", "/user/sessions/{id}", "/auth/verify/{*original_path}"];
        let matcher = RouteMatcher::new(&routed, &metrics);
        let cases = [
            ("/", Some("/")),
            ("/user/me", Some("/user/me")),
            ("/user/sessions/abc-123", Some("/user/sessions/{id}")),
            ("/auth/verify/a/b/c", Some("/auth/verify/{*original_path}")),
            ("/user/me/", None),
            ("/user/sessions", None),
            ("/oauth/introspect", None), // a server template, not routed here
            ("/nowhere", None),
        ];
        for (path, template) in cases {
            let found = matcher.find(path);
            assert_eq!(found.map(|r| r.template), template, "{path}");
            assert_eq!(
                found.map_or_else(|| metrics.route_slot(None), |r| r.slot),
                metrics.route_slot(template),
                "{path}"
            );
        }
        assert_ne!(metrics.route_slot(Some("/user/me")), metrics.route_slot(None));
    }

    #[test]
    fn a_path_named_by_a_template_wins_over_a_parameter_that_could_take_it() {
        let metrics = Metrics::new(crate::routes::TEMPLATES, std::sync::Arc::new(tessera::SystemClock));
        let routed = ["/user/me", "/user/{name}", "/user/{name}/x", "/files/{*rest}", "/files/index"];
        let matcher = RouteMatcher::new(&routed, &metrics);
        let template = |path| matcher.find(path).map(|r| r.template);
        assert_eq!(template("/user/me"), Some("/user/me"));
        assert_eq!(template("/user/you"), Some("/user/{name}"));
        assert_eq!(template("/user/me/x"), Some("/user/{name}/x"));
        assert_eq!(template("/files/index"), Some("/files/index"));
        assert_eq!(template("/files/index/more"), Some("/files/{*rest}"));
        assert_eq!(template("/USER/me"), None, "paths are matched as they are, case and all");
    }

    #[tokio::test]
    async fn without_origins_the_answers_are_tower_https_less_its_vary() {
        let app = || {
            tower::service_fn(|_: Request<Body>| async {
                let mut r = Response::new(Body::from("hi"));
                r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                Ok::<_, std::convert::Infallible>(r)
            })
        };
        let cors_vary = "origin, access-control-request-method, access-control-request-headers";
        for method in [Method::GET, Method::POST, Method::OPTIONS, Method::DELETE] {
            let (status, mut headers, body) = answer(CorsLayer::new().layer(app()), method.clone()).await;
            let before = headers.len();
            headers.retain(|(name, value)| !(name == "vary" && value == cors_vary));
            assert_eq!(headers.len(), before - 1, "tower-http adds its Vary to every answer ({method})");
            let ours = answer(NoCorsOriginsLayer.layer(app()), method.clone()).await;
            assert_eq!(ours, (status, headers, body), "{method}");
        }
    }
}
