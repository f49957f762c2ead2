//! What clients get back, one struct per answer: the `data` of the
//! envelope ([`crate::envelope::Success`]), or RFC 7662's own JSON for
//! introspection. Endpoints that answer `"data": null` answer `()`.
//!
//! Fields are declared in alphabetical order, and optional ones are left
//! out or sent as `null` exactly where the hand-built `json!` maps they
//! replace did: serde_json sorted those maps' keys, so the bytes on the
//! wire stay what they were.

use std::net::IpAddr;

use serde::Serialize;
use tessera::signed::AccessClaims;
use tessera::{CarrierKind, LoginGrant, SessionInfo, Timestamp, UserId};
use utoipa::ToSchema;

use crate::users::User;

/// A user's whole profile: `/user/register`, `/user/me`, the caller's own
/// `/user/get`, and the `user` of a login.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserResponse {
    /// Age.
    pub age: i64,
    /// 1 = male, 2 = female.
    pub gender: i64,
    /// The user's id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// E.164 phone number.
    pub telephone: String,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self { age: u.age, gender: u.gender, id: u.id, name: u.name, telephone: u.telephone }
    }
}

/// What any logged-in user may see of another: no telephone, which is its
/// owner's business, never a directory to harvest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicUserResponse {
    /// Age.
    pub age: i64,
    /// 1 = male, 2 = female.
    pub gender: i64,
    /// The user's id.
    pub id: i64,
    /// Display name.
    pub name: String,
}

impl From<User> for PublicUserResponse {
    fn from(u: User) -> Self {
        Self { age: u.age, gender: u.gender, id: u.id, name: u.name }
    }
}

/// `GET /user/get`: the whole profile for the caller's own id, the public
/// part for anyone else's.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum GetUserResponse {
    /// The caller's own profile.
    Own(UserResponse),
    /// Someone else's.
    Other(PublicUserResponse),
}

/// What a login or refresh tells the client. Header clients get their
/// credentials in the body (`token` is the access token in token mode, so
/// clients written for opaque tokens keep working); browsers get cookies
/// and only the CSRF token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantResponse {
    /// Token mode, header clients: the access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Cookie clients: the token to echo in `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// Token mode: seconds until the access token expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Token mode, header clients: the refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Header clients: what to present from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Token mode, header clients: `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The profile; `null` after a refresh of a session that has none.
    pub user: Option<UserResponse>,
}

impl GrantResponse {
    /// The answer to `grant`, handed out at `now`, for `user`.
    pub fn new(grant: &LoginGrant, now: Timestamp, user: Option<User>) -> Self {
        let header = grant.carrier == CarrierKind::Header;
        let expires_in = grant.expires_in(now);
        // The pair goes in the body only in token mode (an expiry) and
        // only to header clients: a browser's stay in cookies.
        let pair = header && expires_in.is_some();
        Self {
            access_token: pair.then(|| grant.token()),
            csrf_token: (!header).then(|| grant.csrf_token.expose()),
            expires_in,
            refresh_token: if pair { grant.refresh_token() } else { None },
            token: header.then(|| grant.token()),
            token_type: pair.then_some("Bearer"),
            user: user.map(UserResponse::from),
        }
    }
}

// No `Debug` on `GrantResponse`: it holds credentials.

/// RFC 6749 §5.1: what `POST /auth/refresh` answers an RFC 6749 §6
/// request (no envelope). No `Debug`: it holds credentials.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// The new access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The new refresh token; the one presented is now dead.
    pub refresh_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
}

/// `POST /user/logout-everywhere` and `DELETE /user/sessions`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RevokedResponse {
    /// How many sessions were ended.
    pub revoked: u64,
}

/// `/auth/verify`: who the proxy's request comes from (also in the
/// `X-User-Id` and `X-Session-Id` headers, which proxies pass upstream).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// The session's public id, as `/user/sessions` lists it.
    pub session_id: String,
    /// The user's id.
    pub user_id: String,
}

/// `GET /user/csrf`. No `Debug`: it holds the token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsrfResponse {
    /// The session's synchronizer token.
    pub csrf_token: String,
}

/// One entry of `GET /user/sessions`. The server's own copy of the
/// library's [`SessionInfo`], so that the wire stays put if that changes.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Whether this is the caller's own session.
    pub current: bool,
    /// An opaque id, for `DELETE /user/sessions/{id}`.
    pub id: String,
    /// The address it was opened from.
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    /// Last activity, milliseconds since the epoch.
    pub last_seen: i64,
    /// The browser or app that opened it.
    pub user_agent: Option<String>,
}

impl From<SessionInfo> for SessionResponse {
    fn from(s: SessionInfo) -> Self {
        Self {
            created_at: s.created_at,
            current: s.current,
            id: s.id,
            ip: s.ip,
            last_seen: s.last_seen,
            user_agent: s.user_agent,
        }
    }
}

/// One entry of `GET /admin/users/{id}/sessions`: what the user's own
/// listing shows (the same opaque ids), without `current`. Read back by
/// the operator CLI through `--admin-url`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminSessionResponse {
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// An opaque id: never the token, nor the store key.
    pub id: String,
    /// The address it was opened from.
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    /// Last activity, milliseconds since the epoch.
    pub last_seen: i64,
    /// The browser or app that opened it.
    pub user_agent: Option<String>,
}

impl From<SessionInfo> for AdminSessionResponse {
    fn from(s: SessionInfo) -> Self {
        Self { created_at: s.created_at, id: s.id, ip: s.ip, last_seen: s.last_seen, user_agent: s.user_agent }
    }
}

/// `POST /user/password`: the caller's rotated credentials (as a login
/// answers them) and how many other sessions ended. No `Debug`: it holds
/// credentials.
#[derive(Serialize, ToSchema)]
pub struct PasswordChangedResponse {
    /// The rotated session, in a login's shape.
    #[serde(flatten)]
    pub grant: GrantResponse,
    /// How many of the caller's other sessions were ended.
    pub revoked: u64,
}

/// `GET /healthz` when ready.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: &'static str,
}

/// `GET /readyz`: each dependency this node uses, `ok` or `down`; a check
/// that does not apply (no Redis, no revocation list) is left out.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct ReadyChecks {
    /// The near cache's invalidation feed (its lease), with `--redis` and
    /// the near cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidation: Option<&'static str>,
    /// The revocation feed (its lease), with `--redis` or in token mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocations: Option<&'static str>,
    /// The session store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
    /// The user database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<&'static str>,
}

/// `GET /readyz` when ready.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// What was checked.
    pub checks: ReadyChecks,
    /// `ready`.
    pub status: &'static str,
}

/// `GET /readyz` when not ready (503): the envelope's failure, with why.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct NotReadyResponse {
    /// What was checked; left out while draining (nothing is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<ReadyChecks>,
    /// 10004, as every unavailable answer.
    #[serde(rename = "errCode")]
    pub err_code: u32,
    /// Its message.
    #[serde(rename = "errMsg")]
    pub err_msg: &'static str,
    /// `draining` (shutting down) or `unavailable` (a check failed).
    pub status: &'static str,
}

/// `GET /`: what this is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct AboutResponse {
    /// Where to read more.
    pub docs: &'static str,
    /// `tessera`.
    pub service: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// The token type of RFC 6749 §7.1 that Tessera's tokens are.
pub const BEARER: &str = "Bearer";

/// `POST /oauth/introspect`'s answer (RFC 7662 §2.2), not in the envelope.
/// An inactive token gets `{"active":false}` and nothing more.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the token is active.
    pub active: bool,
    /// Access tokens: the audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Access tokens: issued at, milliseconds, when the token carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// Access tokens: the issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Access tokens: the token's unique id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Access tokens: not valid before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The session (or token family) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sub: Option<UserId>,
    /// `Bearer` (RFC 6749 §7.1, RFC 7662 §2.2): access tokens and opaque
    /// session tokens alike are bearer tokens; `sid` without `iss`/`jti`
    /// tells a session token apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl IntrospectionResponse {
    /// `{"active":false}`: unknown, expired, ended or not a credential.
    pub fn inactive() -> Self {
        Self::default()
    }

    /// An active signed access token: its claims.
    pub fn access_token(claims: &AccessClaims) -> Self {
        Self {
            active: true,
            aud: Some(claims.aud.clone()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iat_ms: claims.iat_ms,
            iss: Some(claims.iss.clone()),
            jti: Some(claims.jti.clone()),
            nbf: Some(claims.nbf),
            sid: Some(claims.sid.clone()),
            sub: Some(claims.sub.clone()),
            token_type: Some(BEARER),
        }
    }

    /// An active opaque session token.
    pub fn session(sub: UserId, sid: String, iat: i64, exp: i64) -> Self {
        Self {
            active: true,
            exp: Some(exp),
            iat: Some(iat),
            sid: Some(sid),
            sub: Some(sub),
            token_type: Some(BEARER),
            ..Self::default()
        }
    }
}

/// An RFC 6749 §5.2 error, as introspection answers a bad client or
/// request, and an RFC 6749 §6 refresh a bad grant.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct OAuthErrorResponse {
    /// `invalid_client`, `invalid_request`, `invalid_grant`,
    /// `unsupported_grant_type`, `temporarily_unavailable` or `server_error`.
    pub error: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> User {
        User { id: 7, name: "张三".into(), gender: 1, age: 30, telephone: "+8613812345678".into() }
    }

    #[test]
    fn profiles_keep_the_bytes_of_the_json_maps_they_replace() {
        let u = user();
        let own = serde_json::to_string(&UserResponse::from(u.clone())).unwrap();
        assert_eq!(own, json!(u).to_string());
        let other = serde_json::to_string(&GetUserResponse::Other(u.into())).unwrap();
        assert_eq!(other, r#"{"age":30,"gender":1,"id":7,"name":"张三"}"#);
    }

    #[test]
    fn an_access_token_is_introspected_with_every_claim() {
        let claims = AccessClaims {
            iss: "https://tessera.test".into(),
            aud: "api".into(),
            sub: UserId::from(7),
            sid: "family".into(),
            iat: 1,
            nbf: 1,
            exp: 901,
            jti: "j".into(),
            iat_ms: Some(1000),
        };
        // The claims as the library serializes them, plus two members. A claim the
        // library adds later fails this test rather than going missing.
        let mut expected = serde_json::to_value(&claims).unwrap();
        expected["active"] = json!(true);
        expected["token_type"] = json!("Bearer");
        let answer = serde_json::to_string(&IntrospectionResponse::access_token(&claims)).unwrap();
        assert_eq!(answer, expected.to_string());
        assert_eq!(serde_json::to_string(&IntrospectionResponse::inactive()).unwrap(), r#"{"active":false}"#);
    }
}
