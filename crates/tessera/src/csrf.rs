//! Cross-site request forgery defence for cookie-carried sessions.
//!
//! A browser attaches the session cookie to any request, including one a
//! hostile page triggers. So a state-changing request that relies on the
//! cookie must prove it comes from our own pages: by an `Origin` we allow,
//! or by echoing the session's synchronizer token in `X-CSRF-Token`, which
//! a foreign page cannot read. Header-carried tokens need neither: browsers
//! never attach them on their own.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, Method};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// The request header that carries the synchronizer token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session's synchronizer token: 256 random bits, unpadded base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken([u8; 32]);

impl CsrfToken {
    /// Draws a fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
        Self(bytes)
    }

    /// The token as pages must echo it.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(presented.as_bytes(), &mut bytes) {
            Ok(32) => bytes.ct_eq(&self.0).into(),
            _ => false,
        }
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(<redacted>)")
    }
}

impl Serialize for CsrfToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for CsrfToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(32) => Ok(Self(bytes)),
            _ => Err(serde::de::Error::custom("malformed CSRF token")),
        }
    }
}

/// An origin a deployment trusts: `scheme://host[:port]`, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin(String);

/// Why a string is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an origin is http(s)://host[:port] with nothing after it: {0:?}")]
pub struct InvalidOrigin(pub String);

impl AllowedOrigin {
    /// Parses an origin as an operator writes it, e.g. `https://shop.example`.
    pub fn parse(s: &str) -> Result<Self, InvalidOrigin> {
        let lower = s.trim().to_ascii_lowercase();
        let authority = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .ok_or_else(|| InvalidOrigin(s.to_owned()))?;
        let bad = |c: char| matches!(c, '/' | '?' | '#' | '@' | ' ') || c.is_control();
        if authority.is_empty() || authority.contains(bad) {
            return Err(InvalidOrigin(s.to_owned()));
        }
        Ok(Self(lower))
    }

    /// The origin as browsers send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the CSRF rules say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfVerdict {
    /// Safe method or trusted origin: go on.
    Allowed,
    /// Go on only if `X-CSRF-Token` matches the session's token.
    NeedsToken,
    /// Cross-site: refuse with 403.
    Rejected,
}

/// The CSRF rules of a deployment.
#[derive(Debug, Clone, Default)]
pub struct CsrfPolicy {
    allowed: Vec<AllowedOrigin>,
}

impl CsrfPolicy {
    /// Rules that trust exactly `allowed` as origins.
    pub fn new(allowed: Vec<AllowedOrigin>) -> Self {
        Self { allowed }
    }

    /// The trusted origins.
    pub fn allowed_origins(&self) -> &[AllowedOrigin] {
        &self.allowed
    }

    /// Judges a request that relies on the session cookie.
    pub fn evaluate(&self, method: &Method, headers: &HeaderMap) -> CsrfVerdict {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            return CsrfVerdict::Allowed;
        }
        let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
        if let Some(origin) = origin {
            if origin.eq_ignore_ascii_case("null") {
                return CsrfVerdict::Rejected;
            }
            if self.allowed.iter().any(|a| a.0.eq_ignore_ascii_case(origin)) {
                return CsrfVerdict::Allowed;
            }
            // An untrusted origin is accepted only as our own host (a page we
            // served that still has to echo the token); anything else, a
            // look-alike included, is foreign.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let authority = origin.split_once("://").map(|(_, a)| a);
            match (authority, host) {
                (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => {}
                _ => return CsrfVerdict::Rejected,
            }
        }
        let cross_site =
            headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return CsrfVerdict::Rejected;
        }
        CsrfVerdict::NeedsToken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy() -> CsrfPolicy {
        CsrfPolicy::new(vec![AllowedOrigin::parse("https://shop.example").unwrap()])
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn tokens_verify_only_themselves() {
        let t = CsrfToken::generate();
        assert!(t.verify(&t.expose()));
        assert!(!t.verify(&CsrfToken::generate().expose()));
        assert!(!t.verify(""));
        assert!(!t.verify(&"A".repeat(4096)));
        assert!(!format!("{t:?}").contains(&t.expose()));
    }

    #[test]
    fn tokens_survive_serde() {
        let t = CsrfToken::generate();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<CsrfToken>(&json).unwrap(), t);
        assert!(serde_json::from_str::<CsrfToken>("\"short\"").is_err());
    }

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(AllowedOrigin::parse("HTTPS://Shop.Example:8443").unwrap().as_str(), "https://shop.example:8443");
        for bad in ["shop.example", "https://", "https://a.example/", "ftp://a", "https://u@a", "*"] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_methods_pass() {
        let h = headers(&[("origin", "https://evil.example")]);
        assert_eq!(policy().evaluate(&Method::GET, &h), CsrfVerdict::Allowed);
    }

    #[test]
    fn allowed_origin_passes_without_a_token() {
        let h = headers(&[("origin", "https://shop.example"), ("sec-fetch-site", "same-site")]);
        assert_eq!(policy().evaluate(&Method::POST, &h), CsrfVerdict::Allowed);
    }

    #[test]
    fn null_foreign_and_look_alike_origins_are_rejected() {
        for origin in [
            "null",
            "https://evil.example",
            "https://shop.example.evil.example",
            "http://shop.example",
            "https://shop.example:444",
            "https://shop-example",
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", HeaderValue::from_str(origin).unwrap());
            h.insert("host", HeaderValue::from_static("api.shop.example"));
            assert_eq!(policy().evaluate(&Method::DELETE, &h), CsrfVerdict::Rejected, "{origin}");
        }
    }

    #[test]
    fn cross_site_fetch_metadata_is_rejected() {
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(policy().evaluate(&Method::POST, &h), CsrfVerdict::Rejected);
    }

    #[test]
    fn own_host_or_no_origin_needs_the_token() {
        let h = headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]);
        assert_eq!(policy().evaluate(&Method::PUT, &h), CsrfVerdict::NeedsToken);
        assert_eq!(policy().evaluate(&Method::PATCH, &HeaderMap::new()), CsrfVerdict::NeedsToken);
    }
}
