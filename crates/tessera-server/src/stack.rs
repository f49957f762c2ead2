//! The middleware stack, put together once around the whole router.
//!
//! `Router::layer` wraps every route (and the fallback) in its own copy of
//! a layer, boxed once more per `.layer` call: each request then cloned a
//! chain of boxed services as deep as the stack (one allocation per level,
//! the CORS configuration's vectors included). Here the layers wrap the
//! router as one concrete service instead, which the HTTP front clones
//! once per connection, not per request.
//!
//! Two layers share what one request is, through a task-local
//! ([`RequestLocal`]), opened once per request: the outermost
//! (`crate::outer`) opens it with the request's language (from
//! `Accept-Language`, for `crate::lang::current`), and [`RouteTagLayer`]
//! (a route layer, on every route) fills in the route template, which only
//! the router knows, and names it in the request span. [`matched_route`]
//! reads it, for the metrics and the access log.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::response::Response;
use axum::Router;
use http::{Method, Request};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::util::Either;
use tower::{Layer, Service};
use tower_http::cors::Cors;
use tower_http::set_header::SetResponseHeader;

use crate::access_log::SessionTag;
use crate::client_ip::ClientIpService;
use crate::fail_as_200::FailAs200;
use crate::lang::Lang;
use crate::outer::Outer;

/// What the CORS layer wraps.
type BelowCors = ClientIpService<
    <DefaultBodyLimit as Layer<
        SetResponseHeader<FailAs200<tessera::SessionService<SessionTag<Router>>>, http::HeaderValue>,
    >>::Service,
>;

/// The server's whole service: the layers of `startup::router`, outermost
/// first, around the router.
pub type Stack = Outer<Either<Cors<BelowCors>, NoCorsOrigins<BelowCors>>>;

/// What the code serving one request knows of it without being handed it.
#[derive(Debug)]
pub struct RequestLocal {
    lang: Lang,
    route: RefCell<Option<MatchedPath>>,
}

tokio::task_local! {
    static REQUEST: RequestLocal;
}

/// The route template of the request being served, once the router has
/// matched one; `None` before, outside a request's scope, and when no
/// route matched.
pub fn matched_route() -> Option<MatchedPath> {
    REQUEST.try_with(|request| request.route.borrow().clone()).ok().flatten()
}

/// The language of the request being served; `None` outside a request.
pub fn request_language() -> Option<Lang> {
    REQUEST.try_with(|request| request.lang).ok()
}

/// Runs `future` as a request in `lang` with no route yet.
pub fn request_scope<F: Future>(lang: Lang, future: F) -> TaskLocalFuture<RequestLocal, F> {
    REQUEST.scope(RequestLocal { lang, route: RefCell::new(None) }, future)
}

/// On every route (`Router::route_layer`): tells [`matched_route`] the
/// route's template and, when the access log is on, names it in the
/// request span.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteTagLayer;

impl<S> Layer<S> for RouteTagLayer {
    type Service = RouteTag<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteTag { inner }
    }
}

/// See [`RouteTagLayer`].
#[derive(Debug, Clone)]
pub struct RouteTag<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RouteTag<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(matched) = req.extensions().get::<MatchedPath>() {
            crate::access_log::name_route(matched.as_str());
            let _ = REQUEST.try_with(|request| *request.route.borrow_mut() = Some(matched.clone()));
        }
        self.inner.call(req)
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
