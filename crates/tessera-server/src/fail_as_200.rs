//! `--fail-as-200`: the course's controllers answered every business
//! failure with HTTP 200 and the envelope, and pages written for them read
//! `data.status` in jQuery's `success` branch only; a 4xx lands in `error`,
//! where they show raw JSON. In this mode the user API (`/user/…`) answers
//! its business failures with 200 and the same envelope; failures of
//! transport and capacity keep their status, so retries, proxies and
//! monitoring still see them: 413, 429, 500 and 503.

use axum::response::Response;
use http::{header, Request, StatusCode};

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

/// The mode, on (`--fail-as-200`) or off. `crate::outer` asks
/// [`FailAs200::covers`] of each request and, for one it covers, hands the
/// answer to [`FailAs200::rewrite`] once the session layer has given the
/// answer its final shape (a refusal of the session layer included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailAs200 {
    on: bool,
}

impl FailAs200 {
    /// The mode, on or off.
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    /// Whether `req`'s answer is rewritten: the mode is on and `req` is for
    /// the user API.
    pub fn covers<B>(self, req: &Request<B>) -> bool {
        self.on && req.uri().path().starts_with("/user/")
    }

    /// A business failure becomes a 200 with the same envelope, unless
    /// its status is one of those kept.
    pub fn rewrite(response: &mut Response) {
        if response.extensions().get::<BusinessFailure>().is_some() && !KEPT.contains(&response.status()) {
            *response.status_mut() = StatusCode::OK;
            // A challenge belongs to a 401, not to the 200 it became.
            response.headers_mut().remove(header::WWW_AUTHENTICATE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn answer(status: StatusCode, business: bool) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        if business {
            response.extensions_mut().insert(BusinessFailure);
        }
        response
    }

    #[test]
    fn only_the_user_api_is_covered_and_only_when_on() {
        let user = Request::get("/user/me").body(()).unwrap();
        let other = Request::get("/healthz").body(()).unwrap();
        assert!(FailAs200::new(true).covers(&user));
        assert!(!FailAs200::new(true).covers(&other));
        assert!(!FailAs200::new(false).covers(&user));
    }

    #[test]
    fn a_business_failure_becomes_200_without_its_challenge() {
        let mut response = answer(StatusCode::UNAUTHORIZED, true);
        FailAs200::rewrite(&mut response);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn kept_statuses_and_other_answers_are_left_as_they_are() {
        for status in KEPT {
            let mut response = answer(status, true);
            FailAs200::rewrite(&mut response);
            assert_eq!(response.status(), status);
        }
        let mut response = answer(StatusCode::NOT_FOUND, false);
        FailAs200::rewrite(&mut response);
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "not an envelope failure: a proxy's or a plain one");
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
