//! Forward auth: a reverse proxy (nginx `auth_request`, Traefik
//! `ForwardAuth`, Envoy's HTTP `ext_authz`) asks whether the request it
//! holds comes from a logged-in caller before passing it to a service that
//! knows nothing of sessions.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tessera::{Session, SessionError};

use super::responses::VerifyResponse;
use crate::envelope::Success;
use crate::error::ApiError;

/// The header the answer names the user in, for the proxy to pass upstream.
pub const USER_ID_HEADER: HeaderName = HeaderName::from_static("x-user-id");
/// The header the answer names the session in (its public id, as in
/// `/user/sessions`; never the token).
pub const SESSION_ID_HEADER: HeaderName = HeaderName::from_static("x-session-id");

/// Where proxies put the original method: nginx by configuration
/// (`X-Original-Method`), Traefik by itself (`X-Forwarded-Method`).
const ORIGINAL_METHOD_HEADERS: [&str; 2] = ["x-original-method", "x-forwarded-method"];
/// Where proxies put the original URI, logged with a refusal.
const ORIGINAL_URI_HEADERS: [&str; 2] = ["x-original-uri", "x-forwarded-uri"];

/// `GET /auth/verify` (any method; Envoy appends the original path):
/// 200 with `X-User-Id` and `X-Session-Id` for a logged-in caller, 401
/// without a valid credential, 403 when the original request is a
/// cookie-carried state change that fails the CSRF rules, 503 when the
/// session store cannot be asked. Cookie, header and signed carriers all
/// work, as on every other route.
pub async fn verify(session: Session, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some((user, session_id)) = session.identity().await? else {
        return Err(SessionError::NotLoggedIn.into());
    };
    // The proxy's sub-request is a GET, which the CSRF rules let through;
    // the request it asks about may be a POST riding on a cookie.
    let original = method_to_judge(method, &headers)?;
    if let Err(refusal) = session.check_csrf(&original, &headers).await {
        let uri = first_header(&headers, &ORIGINAL_URI_HEADERS).unwrap_or("?");
        tracing::info!(method = %original, uri, "forward auth: cross-site state change refused");
        return Ok(refusal.into_response());
    }
    let mut response =
        Success(VerifyResponse { session_id: session_id.clone(), user_id: user.to_string() }).into_response();
    let answer = response.headers_mut();
    for (name, value) in [(USER_ID_HEADER, user.to_string()), (SESSION_ID_HEADER, session_id)] {
        // User ids are checked printable at parse time; an id that still
        // cannot be a header value is better refused than half-told.
        let value = HeaderValue::try_from(value).map_err(|_| ApiError::Internal("unprintable identity".into()))?;
        answer.insert(name, value);
    }
    Ok(response)
}

/// The method to judge the original request by. Proxies name it in
/// `X-Original-Method` (nginx, by configuration) or `X-Forwarded-Method`
/// (Traefik, by itself); a client may send either too, and a proxy that sets
/// one passes the other through. So the strictest wins: if any of them, or
/// the request's own method, is a state change, the request is judged as one.
fn method_to_judge(request: Method, headers: &HeaderMap) -> Result<Method, ApiError> {
    let mut judged = request;
    for name in ORIGINAL_METHOD_HEADERS {
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| bad_method())?;
            let named = Method::from_bytes(text.trim().as_bytes()).map_err(|_| bad_method())?;
            if is_safe(&judged) && !is_safe(&named) {
                judged = named;
            }
        }
    }
    Ok(judged)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

fn bad_method() -> ApiError {
    ApiError::invalid(crate::lang::Msg::OriginalMethodInvalid)
}

fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| headers.get(*name)).and_then(|v| v.to_str().ok())
}
