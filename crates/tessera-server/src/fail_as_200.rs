//! `--fail-as-200`: the course's controllers answered every business
//! failure with HTTP 200 and the envelope, and pages written for them read
//! `data.status` in jQuery's `success` branch only; a 4xx lands in `error`,
//! where they show raw JSON. In this mode the user API (`/user/…`) answers
//! its business failures with 200 and the same envelope; failures of
//! transport and capacity keep their status, so retries, proxies and
//! monitoring still see them: 413, 429, 500 and 503.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::Response;
use http::{header, Request, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Marks an envelope failure (set by [`crate::envelope::Failure`]), so this
/// mode changes nothing else: not a proxy's answer, not a plain-text error.
#[derive(Debug, Clone, Copy)]
pub struct BusinessFailure;

/// Statuses that keep their meaning in this mode.
const KEPT: [StatusCode; 4] = [
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// The layer: with `on` (`--fail-as-200`), outside the session layer so it
/// sees refusals in their final shape; off, it passes everything through.
/// A plain service, not `from_fn` middleware: nothing is boxed per request.
#[derive(Debug, Clone, Copy)]
pub struct FailAs200Layer {
    on: bool,
}

impl FailAs200Layer {
    /// The mode, on or off.
    pub fn new(on: bool) -> Self {
        Self { on }
    }
}

impl<S> Layer<S> for FailAs200Layer {
    type Service = FailAs200<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FailAs200 { inner, on: self.on }
    }
}

/// See [`FailAs200Layer`].
#[derive(Debug, Clone)]
pub struct FailAs200<S> {
    inner: S,
    on: bool,
}

impl<S, B> Service<Request<B>> for FailAs200<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FailAs200Future<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let course_api = self.on && req.uri().path().starts_with("/user/");
        FailAs200Future { inner: self.inner.call(req), course_api }
    }
}

pin_project! {
    /// The future of [`FailAs200`].
    pub struct FailAs200Future<F> {
        #[pin]
        inner: F,
        course_api: bool,
    }
}

impl<F, E> Future for FailAs200Future<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if *this.course_api
            && response.extensions().get::<BusinessFailure>().is_some()
            && !KEPT.contains(&response.status())
        {
            *response.status_mut() = StatusCode::OK;
            // A challenge belongs to a 401, not to the 200 it became.
            response.headers_mut().remove(header::WWW_AUTHENTICATE);
        }
        Poll::Ready(Ok(response))
    }
}
