//! Verifying an access token, strictly (RFC 8725).
//!
//! Before any cryptography the header is read as plain JSON and refused if
//! it asks for anything this verifier never honours: keys by URL or inline
//! (`jku`, `jwk`, `x5u`, `x5c`: never fetched, never trusted), critical
//! extensions (`crit`: none are understood), a type other than `at+jwt`, a
//! `kid` that is not one of the configured keys, or an `alg` other than the
//! one that key is for. Only then is the signature checked, with a
//! validation that allows that single algorithm; the times are checked
//! against the injected clock with a leeway of at most a minute.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::claims::AccessClaims;
use super::keys::{SigningAlgorithm, VerifyingKeys};
use crate::clock::Timestamp;

/// The longest token considered at all.
pub const MAX_TOKEN_LEN: usize = crate::carrier::MAX_ACCESS_TOKEN_LEN;
/// The longest `kid` looked up.
pub const MAX_KID_LEN: usize = 64;
/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The most clock skew ever forgiven.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Header parameters that are refused outright.
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "jwk", "x5u", "x5c", "x5t#S256", "crit"];

/// Why an access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a compact JWS with JSON header and claims, or a claim missing.
    #[error("malformed token")]
    Malformed,
    /// A header parameter that is never honoured (`jku`, `jwk`, `x5u`, `x5c`, `crit`).
    #[error("forbidden header parameter")]
    ForbiddenHeader,
    /// Not an access token (`typ` is not `at+jwt`).
    #[error("not an access token")]
    WrongType,
    /// The `kid` is missing or names no configured key.
    #[error("unknown signing key")]
    UnknownKey,
    /// The `alg` is not the one algorithm of that key (`none` included).
    #[error("algorithm does not match the key")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// Another issuer's token.
    #[error("wrong issuer")]
    WrongIssuer,
    /// A token for another audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The token's family or user was revoked.
    #[error("revoked")]
    Revoked,
    /// This node has not loaded the revocation set (yet, or since losing
    /// its subscription): it cannot tell, so it answers 503.
    #[error("revocations not loaded")]
    NotReady,
}

/// What a valid token must say, and how much clock skew is forgiven.
#[derive(Debug, Clone)]
pub struct Expectations {
    issuer: String,
    audience: String,
    leeway: Duration,
    validations: [(SigningAlgorithm, Validation); 3],
}

impl Expectations {
    /// Tokens from `issuer` for `audience`; `leeway` is capped at [`MAX_LEEWAY`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, leeway: Duration) -> Self {
        let (issuer, audience) = (issuer.into(), audience.into());
        let validation = |alg: SigningAlgorithm| {
            let mut v = Validation::new(alg.jwt());
            v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            v.set_issuer(&[&issuer]);
            v.set_audience(&[&audience]);
            // Times are judged below, against the injected clock.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            (alg, v)
        };
        let validations = [
            validation(SigningAlgorithm::EdDSA),
            validation(SigningAlgorithm::ES256),
            validation(SigningAlgorithm::HS256),
        ];
        Self { issuer, audience, leeway: leeway.min(MAX_LEEWAY), validations }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The leeway in force.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    fn validation(&self, alg: SigningAlgorithm) -> &Validation {
        &self.validations.iter().find(|(a, _)| *a == alg).expect("one validation per algorithm").1
    }
}

/// Verifies `token` against `keys` at `now`. Revocation is not checked here.
pub fn verify(
    token: &str,
    keys: &VerifyingKeys,
    expect: &Expectations,
    now: Timestamp,
) -> Result<AccessClaims, Rejection> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| Rejection::Malformed)?;
    let header: Map<String, Value> = serde_json::from_slice(&header).map_err(|_| Rejection::Malformed)?;
    if FORBIDDEN_HEADERS.iter().any(|name| header.contains_key(*name)) {
        return Err(Rejection::ForbiddenHeader);
    }
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(Rejection::WrongType);
    }
    let kid = header.get("kid").and_then(Value::as_str).filter(|k| k.len() <= MAX_KID_LEN);
    let (alg, key) = kid.and_then(|kid| keys.get(kid)).ok_or(Rejection::UnknownKey)?;
    if header.get("alg").and_then(Value::as_str) != Some(alg.as_str()) {
        return Err(Rejection::WrongAlgorithm);
    }
    let claims = jsonwebtoken::decode::<AccessClaims>(token, key, expect.validation(*alg))
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Rejection::BadSignature,
            ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
            ErrorKind::InvalidAudience => Rejection::WrongAudience,
            ErrorKind::InvalidAlgorithm => Rejection::WrongAlgorithm,
            _ => Rejection::Malformed,
        })?
        .claims;
    let leeway = expect.leeway.as_secs() as i64;
    let now = now.as_secs();
    if now >= claims.exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if now.saturating_add(leeway) < claims.nbf {
        return Err(Rejection::NotYetValid);
    }
    Ok(claims)
}

/// The claims of a token whose exact bytes [`verify`] accepted before (a
/// hit in a cache of verified tokens): its payload decoded, its signature
/// not checked again. Never for a token that was not verified.
pub(crate) fn decode_verified(token: &str) -> Result<AccessClaims, Rejection> {
    let payload = token.split('.').nth(1).ok_or(Rejection::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)
}
