//! The middleware stack, put together once around the whole router.
//!
//! `Router::layer` wraps every route (and the fallback) in its own copy of
//! a layer, boxed once more per `.layer` call: each request then cloned a
//! chain of boxed services as deep as the stack (one allocation per level,
//! the CORS configuration's vectors included). Here the layers wrap the
//! router as one concrete service instead, which the HTTP front clones
//! once per connection, not per request.
//!
//! Two layers report the route template, which only the router knows:
//! [`RouteScopeLayer`] (outermost) opens a task-local slot for the
//! request, and [`RouteTagLayer`] (a route layer, on every route) fills it
//! from the router's [`MatchedPath`] and names it in the request span.
//! [`matched_route`] reads it, for the metrics and the access log.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::response::Response;
use axum::Router;
use http::Request;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tower_http::cors::Cors;
use tower_http::set_header::SetResponseHeader;

use crate::access_log::{AccessLog, SessionTag};
use crate::client_ip::ClientIpService;
use crate::fail_as_200::FailAs200;
use crate::lang::LanguageService;
use crate::metrics::HttpMetricsService;

/// The server's whole service: the layers of `startup::router`, outermost
/// first, around the router.
pub type Stack = RouteScope<
    HttpMetricsService<
        AccessLog<
            LanguageService<
                CatchPanic<
                    Cors<
                        ClientIpService<
                            <DefaultBodyLimit as Layer<
                                SetResponseHeader<
                                    FailAs200<tessera::SessionService<SessionTag<Router>>>,
                                    http::HeaderValue,
                                >,
                            >>::Service,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

tokio::task_local! {
    static ROUTE: RefCell<Option<MatchedPath>>;
}

/// The route template of the request being served, once the router has
/// matched one; `None` before, outside a [`RouteScope`], and when no route
/// matched.
pub fn matched_route() -> Option<MatchedPath> {
    ROUTE.try_with(|route| route.borrow().clone()).ok().flatten()
}

/// Opens the slot [`RouteTagLayer`] fills, for everything inside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteScopeLayer;

impl<S> Layer<S> for RouteScopeLayer {
    type Service = RouteScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteScope { inner }
    }
}

/// See [`RouteScopeLayer`].
#[derive(Debug, Clone)]
pub struct RouteScope<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RouteScope<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<RefCell<Option<MatchedPath>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ROUTE.scope(RefCell::new(None), self.inner.call(req))
    }
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
            let _ = ROUTE.try_with(|route| *route.borrow_mut() = Some(matched.clone()));
        }
        self.inner.call(req)
    }
}

/// A panic anywhere inside, while a request is handled, becomes the
/// answer `on_panic` makes (the panic hook has printed the message) (tower-http's `CatchPanic` boxes every answer's
/// body again; this one passes the body through).
#[derive(Clone, Copy)]
pub struct CatchPanicLayer {
    on_panic: fn() -> Response,
}

impl CatchPanicLayer {
    /// Panics are answered with `on_panic()`.
    pub fn new(on_panic: fn() -> Response) -> Self {
        Self { on_panic }
    }
}

impl std::fmt::Debug for CatchPanicLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatchPanicLayer")
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner, on_panic: self.on_panic }
    }
}

/// See [`CatchPanicLayer`].
#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
    on_panic: fn() -> Response,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CatchPanic<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchPanic").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)));
        match inner {
            Ok(future) => CatchPanicFuture { inner: Some(future), on_panic: self.on_panic },
            Err(_) => CatchPanicFuture { inner: None, on_panic: self.on_panic },
        }
    }
}

pin_project! {
    /// The future of [`CatchPanic`]; `inner` is `None` when `call` itself
    /// panicked.
    pub struct CatchPanicFuture<F> {
        #[pin]
        inner: Option<F>,
        on_panic: fn() -> Response,
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok((this.on_panic)()));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(polled) => polled,
            Err(_) => {
                // Never polled again: dropping what panicked is all that is left.
                this.inner.set(None);
                Poll::Ready(Ok((this.on_panic)()))
            }
        }
    }
}
