//! The outermost layer: what every request gets on its way in and out, as
//! one service.
//!
//! Seven concerns meet here, five of them kept in their own modules: the
//! request's scope (its language, and its route: [`crate::stack`]), its latency
//! and status in the metrics ([`crate::metrics`]), its id and access line
//! ([`crate::access_log`]), the client's address behind a trusted proxy
//! ([`crate::client_ip`]), `--fail-as-200` ([`crate::fail_as_200`]), and a
//! panic while it is served, which becomes an answer instead of a dropped
//! connection; and every answer whose route set no `Cache-Control` gets
//! `no-store`. As layers, each level moved the request once more on its way
//! in, and the nested request future on its way out, and polled through one
//! more frame (callgrind, `GET /`: 240 instructions per request more for the
//! first four as layers than as this one level); here each concern is a
//! call at the right moment, in the order the layers had: scope outermost,
//! then metrics, then the access log, then the panic catch, then (on the
//! way in) the client's address and (on the way out) `--fail-as-200`. CORS,
//! which came between them, reads neither the address nor the status.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::{header, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::access_log::{RequestIds, RequestLog};
use crate::client_ip::{self, TrustedProxies};
use crate::fail_as_200::FailAs200;
use crate::lang::Lang;
use crate::metrics::{HttpTiming, Metrics};
use crate::stack::{InLanguage, RouteMatcher};

/// See the module documentation.
#[derive(Clone)]
pub struct OuterLayer {
    routes: Arc<RouteMatcher>,
    metrics: Arc<Metrics>,
    ids: RequestIds,
    on_panic: fn() -> Response,
    trusted: TrustedProxies,
    fail_as_200: FailAs200,
}

impl OuterLayer {
    /// Requests find their route with `routes`, are counted in `metrics`
    /// and get their ids from `ids`; a panic while one is served is
    /// answered with `on_panic()` (the panic hook has printed the message).
    /// Forwarding headers are believed from no proxy and `--fail-as-200`
    /// is off until [`OuterLayer::behind`] and [`OuterLayer::fail_as_200`]
    /// say otherwise.
    pub fn new(routes: RouteMatcher, metrics: &Arc<Metrics>, ids: RequestIds, on_panic: fn() -> Response) -> Self {
        Self {
            routes: Arc::new(routes),
            metrics: metrics.clone(),
            ids,
            on_panic,
            trusted: TrustedProxies::default(),
            fail_as_200: FailAs200::new(false),
        }
    }

    /// Forwarding headers are believed from `trusted` ([`client_ip::resolve`]).
    pub fn behind(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    /// `--fail-as-200` in `mode`.
    pub fn fail_as_200(mut self, mode: FailAs200) -> Self {
        self.fail_as_200 = mode;
        self
    }
}

impl std::fmt::Debug for OuterLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OuterLayer").field("ids", &self.ids).finish_non_exhaustive()
    }
}

impl<S> Layer<S> for OuterLayer {
    type Service = Outer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Outer { inner, layer: self.clone() }
    }
}

/// See [`OuterLayer`].
#[derive(Clone, Debug)]
pub struct Outer<S> {
    inner: S,
    layer: OuterLayer,
}

impl<S, B> Service<Request<B>> for Outer<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = OuterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let lang =
            req.headers().get(header::ACCEPT_LANGUAGE).map_or(Lang::Zh, |v| Lang::from_accept_language(v.as_bytes()));
        let route = layer.routes.find(req.uri().path());
        let slot = route.map_or_else(|| layer.metrics.route_slot(None), |r| r.slot);
        let mut answer = OuterFuture {
            inner: None,
            lang,
            timing: layer.metrics.start(req.method(), slot),
            log: layer.ids.begin(&req, route.map(|r| r.template)),
            on_panic: layer.on_panic,
            fail_as_200: layer.fail_as_200.covers(&req),
        };
        {
            let _in = InLanguage::enter(lang);
            let _entered = answer.log.enter();
            // The inner future is written in its place: handed back through
            // `catch_unwind`'s result, the whole nested future was copied
            // several times per request. After a panic it stays `None`.
            let (inner, slot, trusted) = (&mut self.inner, &mut answer.inner, &layer.trusted);
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                client_ip::resolve(trusted, &mut req);
                *slot = Some(inner.call(req));
            }));
        }
        answer
    }
}

pin_project! {
    /// The future of [`Outer`]; `inner` is `None` when the inner service's
    /// `call` panicked.
    pub struct OuterFuture<F> {
        #[pin]
        inner: Option<F>,
        lang: Lang,
        // `None` when the metrics are unread (`--metrics-bind off`).
        timing: Option<HttpTiming>,
        log: RequestLog,
        on_panic: fn() -> Response,
        // Whether `--fail-as-200` rewrites this request's answer.
        fail_as_200: bool,
    }
}

impl<F, E> Future for OuterFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The whole poll, the panic's answer included, is in the request's language.
        let _in = InLanguage::enter(*this.lang);
        let polled = {
            let _entered = this.log.enter();
            match this.inner.as_mut().as_pin_mut() {
                Some(inner) => std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))),
                None => Err(Box::new("the inner service's call panicked") as Box<dyn std::any::Any + Send>),
            }
        };
        let mut response = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => {
                let mut response = result?;
                if *this.fail_as_200 {
                    FailAs200::rewrite(&mut response);
                }
                response
            }
            Err(_) => {
                // Never polled again: dropping what panicked is all that is left.
                this.inner.set(None);
                (this.on_panic)()
            }
        };
        not_kept_unless_said(response.headers_mut());
        this.log.finish(&mut response);
        if let Some(timing) = this.timing.take() {
            timing.finish(response.status());
        }
        Poll::Ready(Ok(response))
    }
}

/// Answers carry personal data (profiles, device lists) or secrets (tokens,
/// CSRF tokens): none may be kept by a browser or a shared cache unless its
/// route said otherwise (the JWKS, which is public and cacheable). Here,
/// where every answer passes, it is one lookup; as tower-http's
/// `SetResponseHeader` layer it was two (a check, then the insert) and one
/// more level of the nested request future.
fn not_kept_unless_said(headers: &mut http::HeaderMap) {
    headers.entry(header::CACHE_CONTROL).or_insert_with(|| http::HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn layer() -> OuterLayer {
        let metrics = Arc::new(Metrics::new(&["/x"], Arc::new(tessera::SystemClock)));
        OuterLayer::new(RouteMatcher::new(&["/x"], &metrics), &metrics, RequestIds::new(Arc::default()), || {
            let mut r = Response::default();
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }

    /// A service whose future panics when polled.
    fn panics_when_polled() -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible> {
        tower::service_fn(|_: Request<Body>| async {
            if true {
                panic!("boom");
            }
            Ok::<Response, std::convert::Infallible>(Response::default())
        })
    }

    #[tokio::test]
    async fn a_panic_while_polled_becomes_the_answer_made_for_it_with_its_request_id() {
        let response = layer().layer(panics_when_polled()).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 500);
        assert!(response.headers().contains_key(&crate::access_log::X_REQUEST_ID));
    }

    #[tokio::test]
    async fn a_panic_in_the_inner_call_becomes_the_answer_made_for_it() {
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<Body>> for PanicsInCall {
            type Response = Response;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Response, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<Body>) -> Self::Future {
                panic!("boom in call")
            }
        }
        let response = layer().layer(PanicsInCall).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 500);
    }

    #[tokio::test]
    async fn answers_are_no_store_unless_their_route_said_otherwise() {
        let says = |cache: Option<&'static str>| {
            tower::service_fn(move |_: Request<Body>| async move {
                let mut r = Response::default();
                if let Some(value) = cache {
                    r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static(value));
                }
                Ok::<_, std::convert::Infallible>(r)
            })
        };
        let silent = layer().layer(says(None)).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(silent.headers().get_all(header::CACHE_CONTROL).iter().collect::<Vec<_>>(), ["no-store"]);
        let public =
            layer().layer(says(Some("public, max-age=300"))).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(public.headers().get_all(header::CACHE_CONTROL).iter().collect::<Vec<_>>(), ["public, max-age=300"]);
        let failed = layer().layer(panics_when_polled()).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(failed.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn the_language_holds_in_the_services_call_and_its_future_and_not_after() {
        #[derive(Clone)]
        struct ReadsInCall;
        impl Service<Request<Body>> for ReadsInCall {
            type Response = Response;
            type Error = std::convert::Infallible;
            type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<Body>) -> Self::Future {
                let in_call = crate::lang::current();
                Box::pin(async move {
                    // Across a yield: the language is set again on the next poll.
                    tokio::task::yield_now().await;
                    let in_future = crate::lang::current();
                    Ok(Response::new(Body::from(format!("{in_call:?} {in_future:?}"))))
                })
            }
        }
        let request = Request::builder().header(header::ACCEPT_LANGUAGE, "en").body(Body::empty()).unwrap();
        let response = layer().layer(ReadsInCall).oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 64).await.unwrap();
        assert_eq!(body, format!("{:?} {:?}", Lang::En, Lang::En));
        assert_eq!(crate::stack::request_language(), None, "the thread is back outside any request");
    }

    #[tokio::test]
    async fn the_inner_service_runs_in_the_requests_language() {
        let echoes = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(format!("{:?}", crate::lang::current()))))
        });
        let request = Request::builder().header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9").body(Body::empty()).unwrap();
        let response = layer().layer(echoes).oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 64).await.unwrap();
        assert_eq!(body, format!("{:?}", Lang::En));
    }

    #[tokio::test]
    async fn the_inner_service_sees_the_address_a_trusted_proxy_forwarded() {
        let records = tower::service_fn(|req: Request<Body>| async move {
            let seen = tessera::ClientIp::of(req.extensions()).map(|ip| ip.to_string()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(seen)))
        });
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = TrustedProxies { proxies: Arc::new(vec![proxy]), secure: false };
        let mut request = Request::builder().header("x-forwarded-for", "1.2.3.4").body(Body::empty()).unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(proxy, 40000)));
        let response = layer().behind(trusted).layer(records).oneshot(request).await.unwrap();
        assert_eq!(axum::body::to_bytes(response.into_body(), 64).await.unwrap(), "1.2.3.4");
    }

    #[tokio::test]
    async fn fail_as_200_rewrites_the_user_apis_business_failures_only() {
        let fails = tower::service_fn(|_: Request<Body>| async {
            let mut r = Response::default();
            *r.status_mut() = http::StatusCode::UNAUTHORIZED;
            r.extensions_mut().insert(crate::fail_as_200::BusinessFailure);
            Ok::<_, std::convert::Infallible>(r)
        });
        let status = |on: bool, path: &'static str| {
            let service = layer().fail_as_200(FailAs200::new(on)).layer(fails);
            async move { service.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap().status() }
        };
        assert_eq!(status(true, "/user/me").await, 200);
        assert_eq!(status(true, "/admin/users").await, 401, "not the user API");
        assert_eq!(status(false, "/user/me").await, 401, "the mode is off");
    }
}
