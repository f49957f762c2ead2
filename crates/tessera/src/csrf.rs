//! Cross-site request forgery defence for cookie-carried sessions.
//!
//! A browser attaches the session cookie to any request, including one a
//! hostile page triggers. So a state-changing request that relies on the
//! cookie must prove it comes from our own pages: by its own origin (the
//! `Origin` equals the origin the request was addressed to, or the browser
//! marks it `Sec-Fetch-Site: same-origin`), by an `Origin` we allow, or by
//! echoing the session's synchronizer token in `X-CSRF-Token`, which
//! a foreign page cannot read. Header-carried tokens need neither: browsers
//! never attach them on their own.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, Method};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::token::{SessionKey, SessionToken};

/// The request header that carries the synchronizer token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session's synchronizer token: 256 bits, unpadded base64url.
///
/// Derived, never stored: an opaque session's token is a hash of the
/// session token the browser holds ([`CsrfToken::of_session`]), a token
/// family's a keyed hash of the family's key under the nodes' shared
/// derivation key. A dump of the store (which holds only the session
/// token's SHA-256) therefore yields no CSRF token, and the token changes
/// whenever the session token does (at login).
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken([u8; 32]);

impl CsrfToken {
    /// Draws a random token from the OS CSPRNG (for tests and for
    /// applications with their own scheme; sessions derive theirs).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
        Self(bytes)
    }

    /// The token of the opaque session `token` names: SHA-256 over a label
    /// and the token's 256 secret bits. The store keys the session by the
    /// plain SHA-256 of those bits, a different function of them, so the
    /// key tells nothing of this token; and the token, shown to pages,
    /// tells nothing of the session token.
    pub fn of_session(token: &SessionToken) -> Self {
        Self(Sha256::new().chain_update(b"tessera/csrf/session/v1\0").chain_update(token.secret()).finalize().into())
    }

    /// The token of the token family `family` (token mode), keyed by the
    /// derivation key every node shares: the family's session token is
    /// never handed out, so there is no client secret to derive from.
    #[cfg_attr(not(feature = "signed"), allow(dead_code))] // token mode only
    pub(crate) fn of_family(derive_key: &[u8; 32], family: &SessionKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"tessera/csrf/family/v1\0")
            .chain_update(derive_key)
            .chain_update(family.as_bytes())
            .finalize();
        Self(digest.into())
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

/// The origin a request was addressed to (scheme, host and port as the
/// client wrote them): what a same-origin page's `Origin` equals.
///
/// An application behind a reverse proxy it trusts inserts this as a
/// request extension (from `X-Forwarded-Proto`/`X-Forwarded-Host` or
/// `Forwarded`) before the layer runs; otherwise the layer takes the `Host`
/// header, with `https` when session cookies are `Secure` (a deployment that
/// is served over TLS) and `http` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOrigin(String);

impl TargetOrigin {
    /// The origin of `scheme` (`http` or `https`) and `authority`
    /// (`host[:port]`), normalized as browsers write an `Origin`: lower
    /// case, the scheme's default port left out. `None` if it cannot be one.
    pub fn new(scheme: &str, authority: &str) -> Option<Self> {
        let scheme = scheme.trim().to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => ":443",
            "http" => ":80",
            _ => return None,
        };
        let authority = authority.trim().to_ascii_lowercase();
        let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
        let bad = |c: char| matches!(c, '/' | '?' | '#' | '@' | ' ' | ',') || c.is_control();
        if authority.is_empty() || authority.contains(bad) {
            return None;
        }
        Some(Self(format!("{scheme}://{authority}")))
    }

    /// The target origin as the request's `Host` header names it.
    pub fn from_host(headers: &HeaderMap, secure: bool) -> Option<Self> {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Self::new(if secure { "https" } else { "http" }, host)
    }

    /// The origin, e.g. `https://shop.example:8443`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a browser's `Origin` header names this origin.
    fn is(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some((scheme, authority)) => Self::new(scheme, authority).is_some_and(|o| o == *self),
            None => false,
        }
    }
}

/// Why the CSRF rules refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CsrfReason {
    /// `Origin` is neither the request's own origin nor an allowed one.
    ForeignOrigin,
    /// `Origin: null`: a page opened from a file, a sandboxed frame, or a
    /// redirect across origins.
    NullOrigin,
    /// The browser marked the request `Sec-Fetch-Site: cross-site`.
    CrossSite,
    /// Nothing proves the origin, and `X-CSRF-Token` is missing or wrong.
    MissingToken,
}

impl CsrfReason {
    /// A short English explanation for an answer body.
    pub fn detail(self) -> &'static str {
        match self {
            Self::ForeignOrigin => "A request from a foreign origin was refused: list it as an allowed origin.",
            Self::NullOrigin => "A request with Origin: null (a local file or a sandboxed page) was refused.",
            Self::CrossSite => "A request the browser marked cross-site was refused.",
            Self::MissingToken => "The request did not echo the session's CSRF token in X-CSRF-Token.",
        }
    }
}

/// What the CSRF rules say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfVerdict {
    /// Safe method, same origin or trusted origin: go on.
    Allowed,
    /// Go on only if `X-CSRF-Token` matches the session's token.
    NeedsToken,
    /// Cross-site: refuse with 403, for this reason.
    Rejected(CsrfReason),
}

/// The CSRF rules of a deployment.
#[derive(Debug, Clone, Default)]
pub struct CsrfPolicy {
    allowed: Vec<AllowedOrigin>,
}

impl CsrfPolicy {
    /// Rules that trust exactly `allowed` as origins (besides each
    /// request's own).
    pub fn new(allowed: Vec<AllowedOrigin>) -> Self {
        Self { allowed }
    }

    /// The trusted origins.
    pub fn allowed_origins(&self) -> &[AllowedOrigin] {
        &self.allowed
    }

    /// Judges a request that relies on the session cookie. `target` is the
    /// origin the request was addressed to, if known: a page of that origin
    /// is same-origin, no forgery, whether or not it is listed.
    pub fn evaluate(&self, method: &Method, headers: &HeaderMap, target: Option<&TargetOrigin>) -> CsrfVerdict {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            return CsrfVerdict::Allowed;
        }
        // Set by the browser itself; page scripts cannot forge either header.
        let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase());
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("\u{0}");
            if origin.eq_ignore_ascii_case("null") {
                return CsrfVerdict::Rejected(CsrfReason::NullOrigin);
            }
            let listed = self.allowed.iter().any(|a| a.0.eq_ignore_ascii_case(origin));
            if listed || target.is_some_and(|t| t.is(origin)) {
                return CsrfVerdict::Allowed;
            }
            return CsrfVerdict::Rejected(CsrfReason::ForeignOrigin);
        }
        match fetch_site.as_deref() {
            Some(b"cross-site") => CsrfVerdict::Rejected(CsrfReason::CrossSite),
            Some(b"same-origin") => CsrfVerdict::Allowed,
            // No Origin, no verdict from the browser (an old browser, or
            // `same-site`: a sibling subdomain may not be ours): the token.
            _ => CsrfVerdict::NeedsToken,
        }
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
    fn derived_tokens_follow_their_session_and_nothing_else() {
        let (a, b) = (SessionToken::generate(), SessionToken::generate());
        assert_eq!(CsrfToken::of_session(&a), CsrfToken::of_session(&SessionToken::parse(&a.expose()).unwrap()));
        assert_ne!(CsrfToken::of_session(&a), CsrfToken::of_session(&b));
        // Not the store's key, in any encoding.
        let derived = CsrfToken::of_session(&a);
        assert_ne!(&derived.0, a.key().as_bytes());
        let key = [7u8; 32];
        assert_eq!(CsrfToken::of_family(&key, &a.key()), CsrfToken::of_family(&key, &a.key()));
        assert_ne!(CsrfToken::of_family(&key, &a.key()), CsrfToken::of_family(&[8u8; 32], &a.key()));
        assert_ne!(CsrfToken::of_family(&key, &a.key()), CsrfToken::of_family(&key, &b.key()));
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

    fn target(s: &str) -> TargetOrigin {
        let (scheme, authority) = s.split_once("://").unwrap();
        TargetOrigin::new(scheme, authority).unwrap()
    }

    #[test]
    fn safe_methods_pass() {
        let h = headers(&[("origin", "https://evil.example")]);
        assert_eq!(policy().evaluate(&Method::GET, &h, None), CsrfVerdict::Allowed);
    }

    #[test]
    fn allowed_origin_passes_without_a_token() {
        let h = headers(&[("origin", "https://shop.example"), ("sec-fetch-site", "same-site")]);
        assert_eq!(policy().evaluate(&Method::POST, &h, None), CsrfVerdict::Allowed);
    }

    #[test]
    fn the_requests_own_origin_passes_without_being_listed() {
        let own = target("http://127.0.0.1:8080");
        let h = headers(&[("origin", "http://127.0.0.1:8080")]);
        assert_eq!(policy().evaluate(&Method::POST, &h, Some(&own)), CsrfVerdict::Allowed);
        // Default ports are the same origin; another scheme or port is not.
        assert_eq!(target("https://site.example:443"), target("HTTPS://Site.Example"));
        let own = target("https://site.example");
        for (origin, verdict) in [
            ("https://site.example", CsrfVerdict::Allowed),
            ("https://site.example:443", CsrfVerdict::Allowed),
            ("http://site.example", CsrfVerdict::Rejected(CsrfReason::ForeignOrigin)),
            ("https://site.example:8443", CsrfVerdict::Rejected(CsrfReason::ForeignOrigin)),
            ("https://site.example.evil.example", CsrfVerdict::Rejected(CsrfReason::ForeignOrigin)),
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", HeaderValue::from_static(origin));
            assert_eq!(policy().evaluate(&Method::POST, &h, Some(&own)), verdict, "{origin}");
        }
        for bad in [("ftp", "a"), ("https", ""), ("https", "a/b"), ("https", "u@a"), ("https", "a, b")] {
            assert_eq!(TargetOrigin::new(bad.0, bad.1), None, "{bad:?}");
        }
    }

    #[test]
    fn the_browsers_same_origin_mark_passes_and_its_cross_site_mark_does_not() {
        let h = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(policy().evaluate(&Method::POST, &h, None), CsrfVerdict::Allowed);
        let h = headers(&[("sec-fetch-site", "same-site")]);
        assert_eq!(policy().evaluate(&Method::POST, &h, None), CsrfVerdict::NeedsToken);
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
            let own = TargetOrigin::from_host(&h, true);
            let reason = if origin == "null" { CsrfReason::NullOrigin } else { CsrfReason::ForeignOrigin };
            assert_eq!(policy().evaluate(&Method::DELETE, &h, own.as_ref()), CsrfVerdict::Rejected(reason), "{origin}");
        }
    }

    #[test]
    fn cross_site_fetch_metadata_is_rejected() {
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(policy().evaluate(&Method::POST, &h, None), CsrfVerdict::Rejected(CsrfReason::CrossSite));
    }

    #[test]
    fn no_origin_needs_the_token() {
        assert_eq!(policy().evaluate(&Method::PATCH, &HeaderMap::new(), None), CsrfVerdict::NeedsToken);
        let h = headers(&[("host", "127.0.0.1:8080")]);
        let own = TargetOrigin::from_host(&h, false);
        assert_eq!(policy().evaluate(&Method::PUT, &h, own.as_ref()), CsrfVerdict::NeedsToken);
    }
}
