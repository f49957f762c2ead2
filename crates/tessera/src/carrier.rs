//! Reading a token from a request and writing one onto a response.
//!
//! Tokens travel in the session cookie, in `Authorization: Bearer`, or in
//! `X-Auth-Token`; never in the URL. The format is checked here, so a
//! malformed token never reaches the store.

use std::fmt;
use std::time::Duration;

use cookie::Cookie;
use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::{CarrierMode, CookieSettings};
use crate::token::SessionToken;

/// The response and request header for header-carried tokens.
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";
/// The request header a client sends to ask for a header-carried token on login.
pub const AUTH_MODE_HEADER: &str = "x-auth-mode";

/// [`AUTH_TOKEN_HEADER`] as a name made once: a lookup by `&str` parses
/// and hashes the text again on every request.
pub(crate) static AUTH_TOKEN: HeaderName = HeaderName::from_static(AUTH_TOKEN_HEADER);
/// [`AUTH_MODE_HEADER`], likewise.
static AUTH_MODE: HeaderName = HeaderName::from_static(AUTH_MODE_HEADER);

/// The longest text taken for an access token: longer is malformed unread.
pub(crate) const MAX_ACCESS_TOKEN_LEN: usize = 8 * 1024;

/// How a token travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierKind {
    /// In the session cookie.
    Cookie,
    /// In `Authorization: Bearer` or `X-Auth-Token`.
    Header,
}

impl CarrierKind {
    /// `cookie` or `header`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Header => "header",
        }
    }
}

/// What a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No credential at all.
    Nothing,
    /// Something in a carrier that is not a well-formed token.
    Malformed(CarrierKind),
    /// A well-formed session token (which may still be unknown to the store).
    Token(SessionToken, CarrierKind),
    /// What a signed access token would be (token mode), within the length
    /// limit but neither verified nor even checked for the token's shape:
    /// that check runs only when the verified-token cache does not know
    /// these bytes (see [`AccessText`]).
    Access(AccessText, CarrierKind),
}

impl Presented {
    /// The carrier the request used, if any.
    pub fn carrier(&self) -> Option<CarrierKind> {
        match self {
            Self::Nothing => None,
            Self::Malformed(c) | Self::Token(_, c) | Self::Access(_, c) => Some(*c),
        }
    }

    /// Whether the request presented a well-formed token (which may still
    /// be unknown, expired or forged). An access token's shape is checked
    /// here, when asked (see [`AccessText`]), not when it is read.
    pub fn is_well_formed(&self) -> bool {
        match self {
            Self::Token(..) => true,
            Self::Access(text, _) => text.is_well_formed(),
            Self::Nothing | Self::Malformed(_) => false,
        }
    }
}

/// An access token as a request presented it, still inside its header's
/// value. A value hyper parsed shares the buffer the request was read into,
/// so keeping it costs a reference count, where a copy of the token (~400
/// bytes) cost an allocation and the copy on every request.
///
/// Its shape is not checked when it is read: a token the verified-token
/// cache holds is these very bytes, verified before, so a hit needs no
/// check, and [`AccessText::is_well_formed`] runs only on a miss (the check
/// reads every byte: ~800 instructions, 4 % of a cached request's).
///
/// Not `Debug` beyond its name: it is a credential.
#[derive(Clone)]
pub(crate) struct AccessText {
    value: HeaderValue,
    start: usize,
    end: usize,
}

impl AccessText {
    /// A token read out of a cookie (already a copy), if it is a header
    /// value's text, as what a `Cookie` header held always is.
    fn from_text(text: &str) -> Option<Self> {
        let value = HeaderValue::from_str(text).ok()?;
        Some(Self { start: 0, end: value.len(), value })
    }

    /// The token's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.value.as_bytes()[self.start..self.end]
    }

    /// Three base64url segments within the size limit: worth verifying.
    pub(crate) fn is_well_formed(&self) -> bool {
        looks_like_jwt(self.as_bytes())
    }
}

impl PartialEq for AccessText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for AccessText {}

impl fmt::Debug for AccessText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessText(<redacted>)")
    }
}

#[cfg(test)]
impl From<&str> for AccessText {
    fn from(text: &str) -> Self {
        Self::from_text(text).expect("a header value")
    }
}

/// Where a token lies in a request header's value: after the scheme of
/// `Authorization: Bearer`, or all of `X-Auth-Token` or a cookie's value.
#[derive(Clone, Copy)]
pub(crate) struct TokenSpan<'h> {
    value: &'h HeaderValue,
    start: usize,
    end: usize,
}

impl<'h> TokenSpan<'h> {
    /// All of `value`.
    fn whole(value: &'h HeaderValue) -> Self {
        Self { value, start: 0, end: value.len() }
    }

    /// What follows byte `from` of `value`, without surrounding spaces.
    fn trimmed_after(value: &'h HeaderValue, from: usize) -> Self {
        let rest = &value.as_bytes()[from..];
        let start = from + (rest.len() - rest.trim_ascii_start().len());
        Self { value, start, end: start + rest.trim_ascii().len() }
    }

    fn bytes(&self) -> &'h [u8] {
        &self.value.as_bytes()[self.start..self.end]
    }

    fn keep(&self) -> AccessText {
        AccessText { value: self.value.clone(), start: self.start, end: self.end }
    }
}

/// Which kind of credential a deployment hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFormat {
    /// Opaque session tokens.
    Session,
    /// Signed access tokens (JWT).
    Signed,
}

impl TokenFormat {
    /// What `token` is in this format; `keep` makes the access token a
    /// request holds on to (only token mode asks for it).
    fn classify(self, token: &[u8], carrier: CarrierKind, keep: impl FnOnce() -> Option<AccessText>) -> Presented {
        let malformed = Presented::Malformed(carrier);
        match self {
            Self::Session => SessionToken::parse_bytes(token).map_or(malformed, |t| Presented::Token(t, carrier)),
            // Only the length here: the shape is checked when the cache of
            // verified tokens does not know the token (see `AccessText`).
            Self::Signed if token.len() <= MAX_ACCESS_TOKEN_LEN => {
                keep().map_or(malformed, |t| Presented::Access(t, carrier))
            }
            Self::Signed => malformed,
        }
    }
}

/// Three base64url segments within the size limit: worth verifying. This
/// runs for every access token the verified-token cache does not hold, over
/// ~400 bytes, so it is written for the compiler to run 16 bytes at a time:
/// sixteen lanes that each gather "a byte outside the alphabet" and a count
/// of dots, combined at the end. A byte loop that returned at the first bad
/// byte took 6 % of a cached request's CPU (when every request ran it); a
/// plain fold over the bytes, still one byte at a time, 0.5 µs a token;
/// this, about a fifth of that.
pub(crate) fn looks_like_jwt(bytes: &[u8]) -> bool {
    const LANES: usize = 16;
    if bytes.len() > MAX_ACCESS_TOKEN_LEN {
        return false;
    }
    let judge = |b: u8| (u8::from(!(is_base64url(b) | (b == b'.'))), u8::from(b == b'.'));
    let (mut strange, mut dots) = ([0u8; LANES], [0u8; LANES]);
    let chunks = bytes.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            let (bad, dot) = judge(chunk[lane]);
            strange[lane] |= bad;
            // Saturating: a lane past 255 dots still counts more than two.
            dots[lane] = dots[lane].saturating_add(dot);
        }
    }
    let mut any_strange = strange.iter().fold(0, |a, &s| a | s);
    let mut dot_count: u32 = dots.iter().map(|&d| u32::from(d)).sum();
    for &b in rest {
        let (bad, dot) = judge(b);
        any_strange |= bad;
        dot_count += u32::from(dot);
    }
    any_strange == 0 && dot_count == 2
}

/// A byte of the base64url alphabet, without branches (see [`looks_like_jwt`]).
fn is_base64url(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// The headers the layer asks about, found in one walk over the request's
/// headers: a request carries a handful, and comparing each name (a tag for
/// the standard ones) costs less than hashing each of the five names for a
/// lookup, most of which find nothing.
///
/// Not `Debug`: it holds the request's credentials.
#[derive(Clone, Copy)]
pub(crate) struct RequestHeaders<'h> {
    headers: &'h HeaderMap,
    authorization: AuthorizationScan<'h>,
    /// The first `X-Auth-Token` value, and whether another followed.
    auth_token: (Option<&'h HeaderValue>, bool),
    /// Whether `X-Auth-Mode` (its first value) asks for `header`.
    header_mode_asked: Option<bool>,
    has_cookie: bool,
    user_agent: Option<&'h HeaderValue>,
}

impl<'h> RequestHeaders<'h> {
    /// Walks `headers` once.
    pub(crate) fn scan(headers: &'h HeaderMap) -> Self {
        let mut found = Self {
            headers,
            authorization: AuthorizationScan::default(),
            auth_token: (None, false),
            header_mode_asked: None,
            has_cookie: false,
            user_agent: None,
        };
        // Values of one name come in order, so "the first" means what
        // `HeaderMap::get` would return.
        for (name, value) in headers {
            if name == header::AUTHORIZATION {
                found.authorization.add(value);
            } else if name == header::COOKIE {
                found.has_cookie = true;
            } else if name == header::USER_AGENT {
                found.user_agent.get_or_insert(value);
            } else if name == AUTH_TOKEN {
                match found.auth_token.0 {
                    None => found.auth_token.0 = Some(value),
                    Some(_) => found.auth_token.1 = true,
                }
            } else if name == AUTH_MODE {
                found.header_mode_asked.get_or_insert_with(|| value.as_bytes().eq_ignore_ascii_case(b"header"));
            }
        }
        found
    }

    /// The request's `User-Agent`, if any.
    pub(crate) fn user_agent(&self) -> Option<&'h HeaderValue> {
        self.user_agent
    }

    /// Whether the request has a `Cookie` header at all.
    pub(crate) fn has_cookie(&self) -> bool {
        self.has_cookie
    }
}

/// Finds the request's credential under `mode`, and the challenge a 401
/// to the request carries.
pub(crate) fn read(
    mode: CarrierMode,
    cookie: &CookieSettings,
    found: &RequestHeaders<'_>,
    format: TokenFormat,
) -> (Presented, BearerChallenge) {
    if mode == CarrierMode::Cookie {
        return (read_session_cookie(cookie, found, format), BearerChallenge::None);
    }
    let authorization = found.authorization;
    // A header token wins outright: falling back to the cookie would let a
    // cross-site request ride on it.
    let presented = match read_header(found, authorization.token, format) {
        Some(found) => found,
        None if mode == CarrierMode::Header => Presented::Nothing,
        None => read_session_cookie(cookie, found, format),
    };
    let challenge = match (authorization.bearer, &presented) {
        (Some(true), _) => BearerChallenge::InvalidToken,
        (Some(false), _) | (None, Presented::Nothing) => BearerChallenge::Bare,
        (None, _) => BearerChallenge::None,
    };
    (presented, challenge)
}

fn read_session_cookie(cookie: &CookieSettings, found: &RequestHeaders<'_>, format: TokenFormat) -> Presented {
    // The cookie's name is made only for a request that has cookies.
    if !found.has_cookie {
        return Presented::Nothing;
    }
    match read_cookie(&cookie.wire_name(), found.headers) {
        Some(value) => format.classify(value.as_bytes(), CarrierKind::Cookie, || AccessText::from_text(&value)),
        None => Presented::Nothing,
    }
}

/// What the `Authorization` values say, read in one pass for the two
/// questions asked of them.
///
/// Not `Debug`: it holds the request's credential.
#[derive(Default, Clone, Copy)]
struct AuthorizationScan<'h> {
    /// The token of the first `Bearer <token>` value (trimmed; possibly
    /// empty when only spaces follow the scheme).
    token: Option<TokenSpan<'h>>,
    /// Whether the first value in the Bearer scheme, a bare `Bearer`
    /// included, has anything after the scheme: it decides the challenge.
    bearer: Option<bool>,
}

impl<'h> AuthorizationScan<'h> {
    /// Reads one more `Authorization` value, in the order they came.
    ///
    /// On the value's bytes, never made text: the token is hundreds of
    /// bytes in token mode, and a check that they are ASCII or UTF-8 would
    /// read them all on every request, where the token's own checks (the
    /// session token's decoding, the access token's shape or its cache
    /// entry) accept ASCII only anyway. A value that is not ASCII is then
    /// an invalid token like any other. `trim_ascii` trims exactly what
    /// `str::trim` would of a header value (which holds no vertical tab,
    /// the one ASCII character `trim` also drops).
    fn add(&mut self, value: &'h HeaderValue) {
        if self.token.is_some() && self.bearer.is_some() {
            return;
        }
        let bytes = value.as_bytes();
        let split = split_at_space(bytes);
        if self.token.is_none() && split.is_some_and(|at| bytes[..at].eq_ignore_ascii_case(b"bearer")) {
            self.token = split.map(|at| TokenSpan::trimmed_after(value, at + 1));
        }
        if self.bearer.is_none() {
            // hyper trims values, so the split above is usually this one.
            let trimmed = bytes.trim_ascii();
            let at = if trimmed.len() == bytes.len() { split } else { split_at_space(trimmed) };
            let (scheme, rest) = at.map_or((trimmed, &b""[..]), |at| (&trimmed[..at], &trimmed[at + 1..]));
            if scheme.eq_ignore_ascii_case(b"bearer") {
                self.bearer = Some(!rest.trim_ascii().is_empty());
            }
        }
    }
}

/// Where the first space of `bytes` is: `split_once(' ')` as a plain loop,
/// since the space comes within a scheme's few bytes, sooner than `memchr`
/// is set up.
fn split_at_space(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b' ')
}

fn read_header(found: &RequestHeaders<'_>, bearer: Option<TokenSpan<'_>>, format: TokenFormat) -> Option<Presented> {
    // Borrowed from the headers: `classify` keeps what it needs.
    let malformed = Presented::Malformed(CarrierKind::Header);
    let token = match (bearer, found.auth_token) {
        (None, (None, _)) => return None,
        (Some(b), (None, _)) => b,
        (None, (Some(one), false)) => TokenSpan::whole(one),
        // Two different tokens, or repeated headers: ambiguous, so neither.
        (Some(b), (Some(one), false)) if one.as_bytes() == b.bytes() => b,
        _ => return Some(malformed),
    };
    Some(format.classify(token.bytes(), CarrierKind::Header, || Some(token.keep())))
}

/// A header's value as text, if it is ASCII: what `HeaderValue::to_str`
/// gives for any value hyper parsed (which holds no control characters but
/// tab), in a few word-sized steps instead of a check per byte: a
/// `Cookie` header is read on every request a browser sends.
fn header_text(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_ascii() {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The value of cookie `name` if the request has exactly one; none when it
/// has several (the refresh cookie cannot carry the `__Host-` prefix, so a
/// sibling subdomain could plant a second one: refusing both beats picking
/// the planted one).
pub(crate) fn read_unique_cookie(name: &str, headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Some(text) = header_text(value) else { continue };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() == name && found.replace(cookie.value().to_owned()).is_some() {
                return None;
            }
        }
    }
    found
}

/// The value of cookie `name`, if the request has one.
pub(crate) fn read_cookie(name: &str, headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Some(text) = header_text(value) else { continue };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() == name {
                // The first one counts: browsers send the most specific
                // cookie first, and `__Host-` rules out planted ones.
                found.get_or_insert_with(|| cookie.value().to_owned());
            }
        }
    }
    found
}

/// The RFC 6750 §3 challenge a request gets with a 401 (see
/// [`crate::failure`]): what it sent decides which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerChallenge {
    /// None: a cookie-only layer, or a credential that came in a cookie or
    /// `X-Auth-Token` (not the Bearer scheme).
    None,
    /// `Bearer realm="…"` without an error code: no credential at all.
    Bare,
    /// `Bearer realm="…", error="invalid_token"`: an `Authorization:
    /// Bearer` token was presented and refused.
    InvalidToken,
}

/// Which carrier a newly issued token goes back in.
pub(crate) fn respond_via(mode: CarrierMode, presented: &Presented, found: &RequestHeaders<'_>) -> CarrierKind {
    match mode {
        CarrierMode::Cookie => CarrierKind::Cookie,
        CarrierMode::Header => CarrierKind::Header,
        CarrierMode::Auto => {
            let asked = found.header_mode_asked == Some(true);
            if asked || presented.carrier() == Some(CarrierKind::Header) {
                CarrierKind::Header
            } else {
                CarrierKind::Cookie
            }
        }
    }
}

/// The `Set-Cookie` value that hands `token` to a browser for `max_age`.
pub(crate) fn session_cookie(settings: &CookieSettings, token: &SessionToken, max_age: Duration) -> HeaderValue {
    let cookie = build(settings, token.expose(), max_age);
    HeaderValue::from_str(&cookie).expect("cookie text is a valid header value")
}

/// The `Set-Cookie` value that makes a browser forget its session cookie.
pub(crate) fn expired_cookie(settings: &CookieSettings) -> HeaderValue {
    let cookie = build(settings, String::new(), Duration::ZERO);
    HeaderValue::from_str(&cookie).expect("cookie text is a valid header value")
}

/// The `Set-Cookie` value that hands a signed access token to a browser.
#[cfg(feature = "signed")]
pub(crate) fn access_cookie(settings: &CookieSettings, token: &str, max_age: Duration) -> HeaderValue {
    let cookie = build(settings, token.to_owned(), max_age);
    HeaderValue::from_str(&cookie).expect("cookie text is a valid header value")
}

/// The `Set-Cookie` value for a refresh token: sent back only to `path`,
/// and never on cross-site requests (`SameSite=Strict`).
pub(crate) fn refresh_cookie(
    settings: &CookieSettings,
    path: &str,
    token: Option<&str>,
    max_age: Duration,
) -> HeaderValue {
    let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let cookie = Cookie::build((settings.refresh_wire_name(), token.unwrap_or_default().to_owned()))
        .http_only(true)
        .secure(settings.secure)
        .same_site(cookie::SameSite::Strict)
        .path(path.to_owned())
        .max_age(cookie::time::Duration::seconds(secs));
    HeaderValue::from_str(&cookie.build().to_string()).expect("cookie text is a valid header value")
}

fn build(settings: &CookieSettings, value: String, max_age: Duration) -> String {
    let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let mut cookie = Cookie::build((settings.wire_name(), value))
        .http_only(true)
        .secure(settings.secure)
        .same_site(settings.same_site)
        .path("/")
        .max_age(cookie::time::Duration::seconds(secs));
    if let (Some(domain), true) = (&settings.domain, settings.secure) {
        cookie = cookie.domain(domain.clone());
    }
    cookie.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read` on what one walk over `h` finds.
    fn read_from(mode: CarrierMode, s: &CookieSettings, h: &HeaderMap, f: TokenFormat) -> (Presented, BearerChallenge) {
        read(mode, s, &RequestHeaders::scan(h), f)
    }

    /// `respond_via` on what one walk over `h` finds.
    fn respond_via_from(mode: CarrierMode, presented: &Presented, h: &HeaderMap) -> CarrierKind {
        respond_via(mode, presented, &RequestHeaders::scan(h))
    }

    const S: TokenFormat = TokenFormat::Session;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn auto_prefers_the_header_and_ignores_the_cookie() {
        let (a, b) = (SessionToken::generate(), SessionToken::generate());
        let s = CookieSettings::default();
        let h = headers(&[
            ("authorization", format!("Bearer {}", a.expose())),
            ("cookie", format!("__Host-tessera={}", b.expose())),
        ]);
        assert_eq!(read_from(CarrierMode::Auto, &s, &h, S).0, Presented::Token(a.clone(), CarrierKind::Header));
        assert_eq!(read_from(CarrierMode::Cookie, &s, &h, S).0, Presented::Token(b, CarrierKind::Cookie));
        assert_eq!(read_from(CarrierMode::Header, &s, &h, S).0, Presented::Token(a, CarrierKind::Header));
    }

    #[test]
    fn a_malformed_header_token_does_not_fall_back_to_the_cookie() {
        let b = SessionToken::generate();
        let h = headers(&[("x-auth-token", "garbage".into()), ("cookie", format!("__Host-tessera={}", b.expose()))]);
        assert_eq!(
            read_from(CarrierMode::Auto, &CookieSettings::default(), &h, S).0,
            Presented::Malformed(CarrierKind::Header)
        );
    }

    #[test]
    fn x_auth_token_and_bearer_are_both_read() {
        let a = SessionToken::generate();
        let s = CookieSettings::default();
        let h = headers(&[("x-auth-token", a.expose())]);
        assert_eq!(read_from(CarrierMode::Header, &s, &h, S).0, Presented::Token(a.clone(), CarrierKind::Header));
        let h = headers(&[("authorization", format!("bearer  {}", a.expose()))]);
        assert_eq!(read_from(CarrierMode::Header, &s, &h, S).0, Presented::Token(a.clone(), CarrierKind::Header));
        let h = headers(&[("authorization", format!("Bearer {}", a.expose())), ("x-auth-token", a.expose())]);
        assert_eq!(read_from(CarrierMode::Header, &s, &h, S).0, Presented::Token(a, CarrierKind::Header));
    }

    #[test]
    fn conflicting_header_tokens_are_malformed() {
        let (a, b) = (SessionToken::generate(), SessionToken::generate());
        let h = headers(&[("authorization", format!("Bearer {}", a.expose())), ("x-auth-token", b.expose())]);
        assert_eq!(
            read_from(CarrierMode::Auto, &CookieSettings::default(), &h, S).0,
            Presented::Malformed(CarrierKind::Header)
        );
    }

    #[test]
    fn other_authorization_schemes_are_not_ours() {
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz".into())]);
        assert_eq!(read_from(CarrierMode::Auto, &CookieSettings::default(), &h, S).0, Presented::Nothing);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_checked() {
        let a = SessionToken::generate();
        let s = CookieSettings::insecure_dev();
        let h = headers(&[("cookie", format!("theme=dark; tessera={}; x=1", a.expose()))]);
        assert_eq!(read_from(CarrierMode::Cookie, &s, &h, S).0, Presented::Token(a, CarrierKind::Cookie));
        let h = headers(&[("cookie", "tessera=%00%0d%0a".into())]);
        assert_eq!(read_from(CarrierMode::Cookie, &s, &h, S).0, Presented::Malformed(CarrierKind::Cookie));
        // The insecure name is not accepted by a secure deployment.
        assert_eq!(read_from(CarrierMode::Cookie, &CookieSettings::default(), &h, S).0, Presented::Nothing);
    }

    #[test]
    fn auto_answers_in_the_carrier_asked_for() {
        let none = Presented::Nothing;
        let h = headers(&[("x-auth-mode", "header".into())]);
        assert_eq!(respond_via_from(CarrierMode::Auto, &none, &h), CarrierKind::Header);
        assert_eq!(respond_via_from(CarrierMode::Auto, &none, &HeaderMap::new()), CarrierKind::Cookie);
        assert_eq!(respond_via_from(CarrierMode::Cookie, &none, &h), CarrierKind::Cookie);
        assert_eq!(respond_via_from(CarrierMode::Header, &none, &HeaderMap::new()), CarrierKind::Header);
    }

    #[test]
    fn cookies_carry_the_secure_attributes() {
        let t = SessionToken::generate();
        let c = session_cookie(&CookieSettings::default(), &t, Duration::from_secs(3600));
        let c = c.to_str().unwrap();
        assert!(c.starts_with(&format!("__Host-tessera={}", t.expose())), "{c}");
        for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
            assert!(c.contains(part), "{part} missing from {c}");
        }
        assert!(!c.contains("Domain"));
        let gone = expired_cookie(&CookieSettings::insecure_dev());
        let gone = gone.to_str().unwrap();
        assert!(gone.starts_with("tessera=;") && gone.contains("Max-Age=0") && !gone.contains("Secure"), "{gone}");
    }

    #[test]
    fn token_mode_takes_jwt_shapes_and_refuses_the_rest() {
        let s = CookieSettings::default();
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln";
        let h = headers(&[("authorization", format!("Bearer  {jwt} "))]);
        let read = read_from(CarrierMode::Auto, &s, &h, TokenFormat::Signed).0;
        assert_eq!(read, Presented::Access(jwt.into(), CarrierKind::Header), "the token, without the spaces");
        assert!(read.is_well_formed());
        // Other shapes are read too, and found malformed when asked (the
        // session asks only if the verified-token cache does not know them).
        let session = SessionToken::generate();
        for bad in [session.expose(), "a.b".into(), "a.b.c.d".into(), "a.b.c%".into()] {
            let h = headers(&[("x-auth-token", bad.clone())]);
            let read = read_from(CarrierMode::Auto, &s, &h, TokenFormat::Signed).0;
            assert_eq!(read, Presented::Access(bad.as_str().into(), CarrierKind::Header), "{bad:.40}");
            assert!(!read.is_well_formed(), "{bad:.40}");
        }
        // Past the length limit, not even kept.
        let h = headers(&[("x-auth-token", format!("a.b.{}", "c".repeat(9000)))]);
        let read = read_from(CarrierMode::Auto, &s, &h, TokenFormat::Signed).0;
        assert_eq!(read, Presented::Malformed(CarrierKind::Header));
        assert!(!read.is_well_formed());
    }

    #[test]
    fn a_bearer_value_that_is_not_ascii_is_an_invalid_token() {
        let value = HeaderValue::from_bytes("Bearer caf\u{e9}".as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value);
        let (read, challenge) = read_from(CarrierMode::Auto, &CookieSettings::default(), &h, S);
        assert_eq!(read, Presented::Malformed(CarrierKind::Header));
        assert_eq!(challenge, BearerChallenge::InvalidToken);
    }

    #[test]
    fn the_jwt_shape_check_knows_every_byte() {
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url(b), expected, "byte {b:#04x}");
        }
        assert!(looks_like_jwt(b"aZ09-_.b.c"));
        assert!(!looks_like_jwt("a.b.c\u{e9}".as_bytes()));
        assert!(!looks_like_jwt(b"a.b.c d"));
        assert!(!looks_like_jwt(b"a.b.c.d"));
        // Long enough for the sixteen-byte lanes and a remainder: a bad byte
        // or a third dot anywhere is seen.
        let long = format!("{}.{}.{}", "a".repeat(100), "b".repeat(250), "c".repeat(43));
        assert!(looks_like_jwt(long.as_bytes()));
        for i in (0..long.len()).filter(|&i| long.as_bytes()[i] != b'.') {
            for intruder in [b' ', b'.', b'=', 0x80] {
                let mut bytes = long.clone().into_bytes();
                bytes[i] = intruder;
                assert!(!looks_like_jwt(&bytes), "{intruder:#04x} at {i}");
            }
        }
        // A lane's dot count saturates rather than wrapping back to two.
        assert!(!looks_like_jwt(".".repeat(MAX_ACCESS_TOKEN_LEN).as_bytes()));
        assert!(!looks_like_jwt(format!("{}a.b.c", ".".repeat(16 * 256)).as_bytes()));
    }

    #[test]
    fn header_text_is_to_str_for_every_byte_a_header_may_hold() {
        for b in 0..=u8::MAX {
            if let Ok(value) = HeaderValue::from_bytes(&[b'a', b, b'z']) {
                assert_eq!(header_text(&value), value.to_str().ok(), "byte {b:#04x}");
            }
        }
    }

    #[test]
    fn a_cookie_sent_twice_is_not_unique() {
        let h = headers(&[("cookie", "r=a; x=1".into())]);
        assert_eq!(read_unique_cookie("r", &h), Some("a".into()));
        let h = headers(&[("cookie", "r=a; r=b".into())]);
        assert_eq!(read_unique_cookie("r", &h), None);
        assert_eq!(read_cookie("r", &h), Some("a".into()));
    }

    #[test]
    fn the_refresh_cookie_is_confined_to_its_path_and_strict() {
        let c = refresh_cookie(&CookieSettings::default(), "/auth/refresh", Some("tok"), Duration::from_secs(60));
        let c = c.to_str().unwrap();
        for part in ["__Secure-tessera-refresh=tok", "HttpOnly", "Secure", "SameSite=Strict", "Path=/auth/refresh"] {
            assert!(c.contains(part), "{part} missing from {c}");
        }
    }

    #[test]
    fn the_bearer_challenge_follows_what_the_request_sent() {
        let s = CookieSettings::default();
        let challenge = |mode, pairs: &[(&str, String)]| {
            let h = headers(pairs);
            read_from(mode, &s, &h, S).1
        };
        let token = SessionToken::generate().expose();
        let bearer = [("authorization", format!("Bearer {token}"))];
        assert_eq!(challenge(CarrierMode::Auto, &bearer), BearerChallenge::InvalidToken);
        assert_eq!(
            challenge(CarrierMode::Header, &[("authorization", "bearer junk".into())]),
            BearerChallenge::InvalidToken
        );
        assert_eq!(challenge(CarrierMode::Auto, &[("authorization", "Bearer".into())]), BearerChallenge::Bare);
        assert_eq!(challenge(CarrierMode::Auto, &[]), BearerChallenge::Bare);
        assert_eq!(challenge(CarrierMode::Auto, &[("x-auth-token", token.clone())]), BearerChallenge::None);
        assert_eq!(
            challenge(CarrierMode::Auto, &[("cookie", format!("__Host-tessera={token}"))]),
            BearerChallenge::None
        );
        assert_eq!(
            challenge(CarrierMode::Cookie, &bearer),
            BearerChallenge::None,
            "a cookie-only layer reads no Bearer"
        );
        assert_eq!(challenge(CarrierMode::Cookie, &[]), BearerChallenge::None);
    }

    #[test]
    fn the_one_walk_finds_what_lookups_by_name_would() {
        let cases: [&[(&str, &str)]; 5] = [
            &[],
            &[("host", "h"), ("user-agent", "ua1"), ("x-auth-mode", "Header"), ("user-agent", "ua2")],
            &[("x-auth-token", "t1"), ("cookie", "a=b"), ("x-auth-token", "t2"), ("x-auth-mode", "cookie")],
            &[("X-Auth-Mode", "cookie"), ("accept", "*/*"), ("x-auth-mode", "header"), ("X-AUTH-TOKEN", "t")],
            &[("cookie", "a=b"), ("authorization", "Basic x"), ("cookie", "c=d"), ("authorization", "Bearer t")],
        ];
        for pairs in cases {
            let h = headers(&pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect::<Vec<_>>());
            let found = RequestHeaders::scan(&h);
            assert_eq!(found.user_agent(), h.get(header::USER_AGENT), "{pairs:?}");
            assert_eq!(found.has_cookie(), h.contains_key(header::COOKIE), "{pairs:?}");
            let mut tokens = h.get_all(&AUTH_TOKEN).iter();
            assert_eq!(found.auth_token, (tokens.next(), tokens.next().is_some()), "{pairs:?}");
            let asked = h.get(&AUTH_MODE).map(|v| v.as_bytes().eq_ignore_ascii_case(b"header"));
            assert_eq!(found.header_mode_asked, asked, "{pairs:?}");
        }
    }

    #[test]
    fn one_pass_over_authorization_finds_the_token_and_the_challenge() {
        let scan = |values: &[&str]| {
            let h = headers(&values.iter().map(|v| ("authorization", (*v).to_owned())).collect::<Vec<_>>());
            let AuthorizationScan { token, bearer } = RequestHeaders::scan(&h).authorization;
            (token.map(|t| String::from_utf8(t.bytes().to_vec()).unwrap()), bearer)
        };
        let some = |t: &str| Some(t.to_owned());
        assert_eq!(scan(&["Bearer tok"]), (some("tok"), Some(true)));
        assert_eq!(scan(&["bEaReR  tok "]), (some("tok"), Some(true)));
        assert_eq!(scan(&["Bearer \ttok\t"]), (some("tok"), Some(true)), "a tab is trimmed like a space");
        assert_eq!(scan(&["Bearer\ttok"]), (None, None), "but does not end the scheme");
        // The scheme alone: no token, and the challenge without an error.
        assert_eq!(scan(&["Bearer"]), (None, Some(false)));
        assert_eq!(scan(&["Bearer   "]), (some(""), Some(false)));
        // Other schemes are passed over, whichever value comes first.
        assert_eq!(scan(&["Basic dXNlcg==", "Bearer tok"]), (some("tok"), Some(true)));
        assert_eq!(scan(&["Bearer tok", "Basic dXNlcg=="]), (some("tok"), Some(true)));
        assert_eq!(scan(&["Basic dXNlcg=="]), (None, None));
        // A leading space hides the scheme from the token's reading, not
        // from the challenge's.
        assert_eq!(scan(&[" Bearer tok"]), (None, Some(true)));
        assert_eq!(scan(&["Bearer", "Bearer tok"]), (some("tok"), Some(false)));
        assert_eq!(scan(&[]), (None, None));
    }
}
