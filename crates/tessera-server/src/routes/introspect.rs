//! `POST /oauth/introspect` (RFC 7662), for services that cannot verify
//! tokens themselves: is this access token (or opaque session token) active,
//! and whose is it?
//!
//! Clients authenticate as RFC 6749 §2.3.1 says: HTTP Basic with the client
//! id and secret each form-urlencoded before the Basic encoding (today's raw
//! form is accepted too: clients written for the single shared secret send
//! it), or `client_id`/`client_secret` in the body. A named client
//! (`--introspection-client ID:SECRET`) must present its own secret; the
//! shared `--introspection-secret` is accepted with any other client id, or
//! none, as it always was. Each client has its own rate limit (all holders
//! of the shared secret count as one client: their ids prove nothing).
//!
//! Answers are RFC 7662 JSON, not the envelope, and never cached. Access
//! tokens and opaque session tokens both answer `token_type: "Bearer"`
//! (RFC 6749 §7.1: how they are presented); refresh tokens are never
//! active (they are no credential for a resource server, and a careless
//! one would accept them if they were). `token_type_hint` is accepted and,
//! as RFC 7662 §2.1 allows, never narrows the search; unknown hints are
//! ignored.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera::signed::Rejection;
use tessera::SessionToken;

use super::params::Params;
use super::requests::IntrospectRequest;
use super::responses::{IntrospectionResponse, OAuthErrorResponse};
use super::AppState;
use crate::configuration::IntrospectionClient;
use crate::envelope::{ErrorCode, Failure};
use crate::limits::{self, Limit};

/// Who may introspect, and how often.
pub struct IntrospectionClients {
    named: Vec<IntrospectionClient>,
    shared_secret: Option<String>,
    limit: Limit,
}

impl std::fmt::Debug for IntrospectionClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClients")
            .field("named", &self.named)
            .field("shared_secret", &self.shared_secret.as_ref().map(|_| "…"))
            .field("limit", &self.limit)
            .finish()
    }
}

/// Which client a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Client {
    /// A named client, by id.
    Named(String),
    /// A holder of the shared secret.
    Shared,
}

impl Client {
    /// Its rate-limit bucket.
    fn bucket(&self) -> String {
        match self {
            Self::Named(id) => format!("introspect:client:{id}"),
            Self::Shared => "introspect:shared".to_owned(),
        }
    }
}

impl IntrospectionClients {
    /// The clients, or `None` (endpoint off) when there is neither a
    /// named client nor a shared secret. `per_minute` requests per client.
    pub fn new(named: Vec<IntrospectionClient>, shared_secret: Option<String>, per_minute: u32) -> Option<Self> {
        if named.is_empty() && shared_secret.is_none() {
            return None;
        }
        Some(Self { named, shared_secret, limit: Limit::new(per_minute.max(1), Duration::from_secs(60)) })
    }

    /// The client `id` (if any) proves to be with `secret`.
    fn check(&self, id: Option<&[u8]>, secret: &[u8]) -> Option<Client> {
        if let Some(named) = id.and_then(|id| self.named.iter().find(|c| c.id.as_bytes() == id)) {
            return same_secret(secret, &named.secret).then(|| Client::Named(named.id.clone()));
        }
        let shared = self.shared_secret.as_deref()?;
        same_secret(secret, shared).then_some(Client::Shared)
    }

    /// RFC 6749 §2.3.1: HTTP Basic (form-encoded id and secret, or the raw
    /// form), else `client_id`/`client_secret` in the body. A Basic header
    /// that does not decode is a failed authentication, not an absent one.
    fn authenticate(&self, headers: &HeaderMap, body_id: Option<&str>, body_secret: Option<&str>) -> Option<Client> {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, encoded)| STANDARD.decode(encoded.trim()).ok());
        match basic {
            Some(None) => None,
            Some(Some(pair)) => {
                let colon = pair.iter().position(|&b| b == b':')?;
                let (id, secret) = (&pair[..colon], &pair[colon + 1..]);
                // As the RFC says first; then as sent, for clients written
                // against the raw form. A secret whose two readings agree
                // is simply checked twice.
                let decoded = form_decode(id).zip(form_decode(secret));
                decoded.and_then(|(id, secret)| self.check(Some(&id), &secret)).or_else(|| self.check(Some(id), secret))
            }
            None => self.check(body_id.map(str::as_bytes), body_secret?.as_bytes()),
        }
    }
}

/// Introspects `token`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(request): Params<IntrospectRequest>,
) -> Response {
    let Some(clients) = &state.introspection else {
        return crate::error::codes::NOT_FOUND.into_response();
    };
    let Some(client) = clients.authenticate(&headers, request.client_id.as_deref(), request.client_secret.as_deref())
    else {
        tracing::info!("introspection client refused");
        let mut response =
            (StatusCode::UNAUTHORIZED, Json(OAuthErrorResponse { error: "invalid_client" })).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tessera\""));
        return response;
    };
    let now = state.clock.now();
    if let Err(e) = limits::check(state.limiter.as_ref(), now, &[(client.bucket(), clients.limit)]).await {
        return e.into_response();
    }
    let Some(token) = request.token.as_deref() else {
        return answer(StatusCode::BAD_REQUEST, OAuthErrorResponse { error: "invalid_request" });
    };
    // `token_type_hint` would only order the lookups below, and the
    // token's shape already decides which one can succeed.
    if let Some(tokens) = &state.tokens {
        match tokens.verify(token, now) {
            Ok(claims) => return answer(StatusCode::OK, IntrospectionResponse::access_token(&claims)),
            // This node cannot tell yet: the caller must retry, not conclude.
            Err(Rejection::NotReady) => return Failure::new(ErrorCode::SESSION_STORE_UNAVAILABLE).into_response(),
            Err(_) => {}
        }
    }
    let Ok(session) = SessionToken::parse(token) else { return inactive() };
    let key = session.key();
    match state.sessions.load(&key).await {
        Ok(Some(record)) if !record.is_expired(now) => {
            // Only sessions opened by a session-token login: a token
            // family's key is no credential.
            if tessera::signed::is_token_family(&record) {
                return inactive();
            }
            let Some(user) = record.user_id.clone() else { return inactive() };
            let deadline = record.idle_deadline.min(record.absolute_deadline);
            let body =
                IntrospectionResponse::session(user, key.public_id(), record.created_at.as_secs(), deadline.as_secs());
            answer(StatusCode::OK, body)
        }
        Ok(_) => inactive(),
        Err(e) => tessera::SessionError::from(e).into_response(),
    }
}

fn inactive() -> Response {
    answer(StatusCode::OK, IntrospectionResponse::inactive())
}

fn answer(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Compares digests in constant time, so neither the secret's content nor
/// its length shows in the time taken.
fn same_secret(presented: &[u8], expected: &str) -> bool {
    bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(expected.as_bytes())))
}

/// `application/x-www-form-urlencoded` decoding of one component: `+` is
/// a space, `%XX` a byte. `None` for a broken escape.
fn form_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [*bytes.next()?, *bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "q8+Vd/3xZk1N7pQ0sT2u5w==";

    fn clients() -> IntrospectionClients {
        let named = vec![
            IntrospectionClient { id: "billing".into(), secret: SECRET.into() },
            IntrospectionClient { id: "order service".into(), secret: "orders-secret-0123456789".into() },
        ];
        IntrospectionClients::new(named, Some("shared-secret-0123456789".into()), 10).unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    /// What RFC 6749 §2.3.1 clients send: each part form-urlencoded.
    fn form(text: &str) -> String {
        serde_urlencoded::to_string([("", text)]).unwrap()[1..].to_owned()
    }

    #[test]
    fn form_decoding_reads_plus_and_percent_escapes() {
        assert_eq!(form_decode(b"q8%2BVd%2F3x%3D%3D+a").unwrap(), b"q8+Vd/3x== a");
        assert_eq!(form(SECRET), "q8%2BVd%2F3xZk1N7pQ0sT2u5w%3D%3D");
        for broken in [&b"%"[..], b"%4", b"%zz"] {
            assert_eq!(form_decode(broken), None);
        }
    }

    #[test]
    fn basic_is_read_form_encoded_or_raw_and_body_credentials_work() {
        let c = clients();
        let billing = Some(Client::Named("billing".into()));
        assert_eq!(c.authenticate(&basic("billing", &form(SECRET)), None, None), billing);
        assert_eq!(c.authenticate(&basic("billing", SECRET), None, None), billing, "the raw form still works");
        let orders = Some(Client::Named("order service".into()));
        assert_eq!(c.authenticate(&basic(&form("order service"), "orders-secret-0123456789"), None, None), orders);
        assert_eq!(c.authenticate(&HeaderMap::new(), Some("billing"), Some(SECRET)), billing);
        // A named client's id takes only its own secret.
        assert_eq!(c.authenticate(&basic("billing", "orders-secret-0123456789"), None, None), None);
        assert_eq!(c.authenticate(&basic("billing", "shared-secret-0123456789"), None, None), None);
        // The shared secret, with any other id or none, as before.
        for headers in [basic("anyone", "shared-secret-0123456789"), basic("", "shared-secret-0123456789")] {
            assert_eq!(c.authenticate(&headers, None, None), Some(Client::Shared));
        }
        assert_eq!(c.authenticate(&HeaderMap::new(), None, Some("shared-secret-0123456789")), Some(Client::Shared));
        // Broken or absent credentials.
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(c.authenticate(&garbage, None, Some("shared-secret-0123456789")), None, "Basic wins, and failed");
        assert_eq!(c.authenticate(&HeaderMap::new(), Some("billing"), None), None);
        assert_eq!(c.authenticate(&basic("billing", &SECRET[..10]), None, None), None);
        let only_named =
            IntrospectionClients::new(vec![IntrospectionClient { id: "a".into(), secret: SECRET.into() }], None, 1);
        assert_eq!(only_named.unwrap().authenticate(&basic("b", SECRET), None, None), None);
        assert!(IntrospectionClients::new(Vec::new(), None, 1).is_none(), "nothing configured: endpoint off");
    }

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", clients());
        assert!(!text.contains(SECRET) && !text.contains("shared-secret"), "{text}");
    }
}
