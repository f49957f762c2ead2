//! How the library's refusals and failures become answers, and how an
//! application changes that.
//!
//! The layer and the extractors never pick a wire format of their own
//! accord: each refusal is a [`FailureKind`], rendered by default as an RFC
//! 9457 `application/problem+json` document with the right status (and
//! `Retry-After` on 503). An application that speaks another dialect plugs
//! one function into the layer ([`crate::SessionLayerBuilder::render_failures_with`]);
//! every refusal on the routes under that layer, including a
//! [`SessionError`](crate::SessionError) a handler returns, then wears the
//! application's shape.
//!
//! Whatever the renderer, a 401 for [`FailureKind::NotLoggedIn`] gets the
//! RFC 6750 §3 challenge that HTTP asks for, unless the renderer set its
//! own `WWW-Authenticate`: `Bearer realm="tessera", error="invalid_token"`
//! when an `Authorization: Bearer` token was refused, `Bearer
//! realm="tessera"` when the request carried no credential at all (layers
//! that accept header tokens only; cookie- and `X-Auth-Token`-carried
//! requests get none).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::carrier::BearerChallenge;
use crate::csrf::CsrfReason;

/// Why a request was refused or a session operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// No live session with a user (absent, malformed, expired, ended): 401.
    NotLoggedIn,
    /// A cookie-carried state change failed the CSRF rules, for this
    /// reason: 403.
    CsrfRejected(CsrfReason),
    /// Another request changed the same session attribute first: 409.
    Conflict,
    /// The session store (or revocation feed) cannot be asked: 503.
    Unavailable,
    /// A refresh token was malformed, unknown, expired or reused: 401.
    RefreshRejected,
    /// A misuse or internal failure (details only in the log): 500.
    Internal,
}

impl FailureKind {
    /// The HTTP status this kind answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotLoggedIn | Self::RefreshRejected => StatusCode::UNAUTHORIZED,
            Self::CsrfRejected(_) => StatusCode::FORBIDDEN,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short English sentence for people reading the answer.
    pub fn detail(self) -> &'static str {
        match self {
            Self::NotLoggedIn => "No valid session accompanies this request.",
            Self::CsrfRejected(reason) => reason.detail(),
            Self::Conflict => "Another request changed the same session data first; retry.",
            Self::Unavailable => "The session store cannot be reached; retry shortly.",
            Self::RefreshRejected => "The refresh token is not valid; log in again.",
            Self::Internal => "The server failed to handle the session.",
        }
    }

    /// A stable, machine-readable name (`not-logged-in`, …), used as the
    /// problem document's `type` suffix.
    pub fn slug(self) -> &'static str {
        match self {
            Self::NotLoggedIn => "not-logged-in",
            Self::CsrfRejected(_) => "csrf-rejected",
            Self::Conflict => "session-conflict",
            Self::Unavailable => "store-unavailable",
            Self::RefreshRejected => "refresh-rejected",
            Self::Internal => "internal",
        }
    }
}

/// How refusals are rendered: a function from the kind to the answer.
#[derive(Clone)]
pub struct RenderFailure(Arc<dyn Fn(FailureKind) -> Response + Send + Sync>);

impl RenderFailure {
    /// A renderer from a function.
    pub fn new(render: impl Fn(FailureKind) -> Response + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The answer for `kind`.
    pub fn render(&self, kind: FailureKind) -> Response {
        (self.0)(kind)
    }
}

impl std::fmt::Debug for RenderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderFailure(..)")
    }
}

/// The default rendering: RFC 9457 `application/problem+json` with the
/// kind's status, `type` `urn:tessera:<slug>`, its reason phrase as `title`
/// and [`FailureKind::detail`]; `Retry-After: 1` on 503.
pub fn problem_json(kind: FailureKind) -> Response {
    let status = kind.status();
    let body = serde_json::json!({
        "type": format!("urn:tessera:{}", kind.slug()),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": kind.detail(),
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if kind == FailureKind::Unavailable {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Renders `kind` with the default and marks the answer with it, so that a
/// layer with another renderer can replace it on the way out.
pub(crate) fn default_response(kind: FailureKind) -> Response {
    let mut response = problem_json(kind);
    response.extensions_mut().insert(kind);
    response
}

/// A handler may answer a failure by its kind: the default rendering,
/// marked, so the layer replaces it with the application's own.
impl IntoResponse for FailureKind {
    fn into_response(self) -> Response {
        default_response(self)
    }
}

/// The layer's last step: an answer marked with a [`FailureKind`] is
/// rendered again by the application's renderer, if it has one.
pub(crate) fn rerender(response: Response, render: Option<&RenderFailure>) -> Response {
    match (render, response.extensions().get::<FailureKind>().copied()) {
        (Some(render), Some(kind)) => render.render(kind),
        _ => response,
    }
}

/// [`rerender`], then the RFC 6750 challenge on a 401 for
/// [`FailureKind::NotLoggedIn`] (the header is HTTP's, not the
/// application's wire format, so no renderer has to remember it).
pub(crate) fn finish(response: Response, render: Option<&RenderFailure>, challenge: BearerChallenge) -> Response {
    let kind = response.extensions().get::<FailureKind>().copied();
    let mut response = rerender(response, render);
    if kind == Some(FailureKind::NotLoggedIn) && response.status() == StatusCode::UNAUTHORIZED {
        let value = match challenge {
            BearerChallenge::None => return response,
            BearerChallenge::Bare => "Bearer realm=\"tessera\"",
            BearerChallenge::InvalidToken => "Bearer realm=\"tessera\", error=\"invalid_token\"",
        };
        response.headers_mut().entry(header::WWW_AUTHENTICATE).or_insert(HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn the_default_is_a_problem_document() {
        let r = problem_json(FailureKind::Unavailable);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_slice(&to_bytes(r.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["type"], "urn:tessera:store-unavailable");
        assert_eq!(body["title"], "Service Unavailable");
        let r = problem_json(FailureKind::NotLoggedIn);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_marked_answer_is_rendered_again_only_with_a_renderer() {
        let marked = default_response(FailureKind::CsrfRejected(CsrfReason::MissingToken));
        let render = RenderFailure::new(|kind| (StatusCode::IM_A_TEAPOT, kind.slug()).into_response());
        assert_eq!(rerender(marked, Some(&render)).status(), StatusCode::IM_A_TEAPOT);
        let unmarked = StatusCode::FORBIDDEN.into_response();
        assert_eq!(rerender(unmarked, Some(&render)).status(), StatusCode::FORBIDDEN);
        let marked = default_response(FailureKind::CsrfRejected(CsrfReason::MissingToken));
        assert_eq!(rerender(marked, None).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_401_for_no_session_carries_the_bearer_challenge_whatever_the_renderer() {
        let render = RenderFailure::new(|kind| (kind.status(), kind.slug()).into_response());
        let challenge =
            |r: &Response| r.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        for renderer in [None, Some(&render)] {
            let refused = finish(default_response(FailureKind::NotLoggedIn), renderer, BearerChallenge::InvalidToken);
            assert_eq!(challenge(&refused).as_deref(), Some("Bearer realm=\"tessera\", error=\"invalid_token\""));
            let bare = finish(default_response(FailureKind::NotLoggedIn), renderer, BearerChallenge::Bare);
            assert_eq!(challenge(&bare).as_deref(), Some("Bearer realm=\"tessera\""));
            let cookie = finish(default_response(FailureKind::NotLoggedIn), renderer, BearerChallenge::None);
            assert_eq!(challenge(&cookie), None);
            // Other refusals, and 401s the application made itself, get none.
            let refresh = finish(default_response(FailureKind::RefreshRejected), renderer, BearerChallenge::Bare);
            assert_eq!(challenge(&refresh), None);
            let own = finish(StatusCode::UNAUTHORIZED.into_response(), renderer, BearerChallenge::Bare);
            assert_eq!(challenge(&own), None);
        }
        // A renderer that answers otherwise than 401, or sets its own, wins.
        let teapot = RenderFailure::new(|_| StatusCode::IM_A_TEAPOT.into_response());
        let r = finish(default_response(FailureKind::NotLoggedIn), Some(&teapot), BearerChallenge::Bare);
        assert_eq!(challenge(&r), None);
        let own = RenderFailure::new(|kind| {
            (kind.status(), [(header::WWW_AUTHENTICATE, "Bearer realm=\"app\"")]).into_response()
        });
        let r = finish(default_response(FailureKind::NotLoggedIn), Some(&own), BearerChallenge::Bare);
        assert_eq!(challenge(&r).as_deref(), Some("Bearer realm=\"app\""));
    }
}
