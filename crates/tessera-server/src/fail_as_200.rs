//! `--fail-as-200`: the course's controllers answered every business
//! failure with HTTP 200 and the envelope, and pages written for them read
//! `data.status` in jQuery's `success` branch only; a 4xx lands in `error`,
//! where they show raw JSON. In this mode the user API (`/user/…`) answers
//! its business failures with 200 and the same envelope; failures of
//! transport and capacity keep their status, so retries, proxies and
//! monitoring still see them: 413, 429, 500 and 503.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{header, StatusCode};

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

/// Middleware (installed only with `--fail-as-200`, outside the session
/// layer so it sees refusals in their final shape).
pub async fn answer_failures_with_200(req: Request, next: Next) -> Response {
    let course_api = req.uri().path().starts_with("/user/");
    let mut response = next.run(req).await;
    if course_api && response.extensions().get::<BusinessFailure>().is_some() && !KEPT.contains(&response.status()) {
        *response.status_mut() = StatusCode::OK;
        // A challenge belongs to a 401, not to the 200 it became.
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}
