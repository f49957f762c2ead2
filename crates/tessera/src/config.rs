//! How a deployment carries and times its sessions.

use std::str::FromStr;

use cookie::SameSite;

use crate::csrf::CsrfPolicy;
use crate::policy::ExpiryPolicy;

/// Which carriers a deployment accepts tokens from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CarrierMode {
    /// Only the session cookie (browsers).
    Cookie,
    /// Only `Authorization: Bearer` or `X-Auth-Token` (mobile and API clients).
    Header,
    /// A header token when the request has one (any cookie is then ignored),
    /// the cookie otherwise.
    #[default]
    Auto,
}

impl FromStr for CarrierMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cookie" => Ok(Self::Cookie),
            "header" => Ok(Self::Header),
            "auto" => Ok(Self::Auto),
            other => Err(format!("carrier must be cookie, header or auto, not {other:?}")),
        }
    }
}

/// The session cookie's attributes.
///
/// `HttpOnly` and `Path=/` are not configurable: scripts never need the
/// session token, and a narrower path only invites a second session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    /// The base name; the `__Host-` prefix is added when `secure`.
    pub name: String,
    /// `SameSite`, `Lax` by default.
    pub same_site: SameSite,
    /// `Secure` plus the `__Host-` prefix; only plain-HTTP development turns it off.
    pub secure: bool,
    /// A `Domain` to share the cookie with subdomains. None by default;
    /// setting it drops the `__Host-` prefix for `__Secure-`.
    pub domain: Option<String>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self { name: "tessera".into(), same_site: SameSite::Lax, secure: true, domain: None }
    }
}

impl CookieSettings {
    /// Settings for plain-HTTP local work: no `Secure`, no prefix.
    pub fn insecure_dev() -> Self {
        Self { secure: false, ..Self::default() }
    }

    /// The cookie's name on the wire, prefix included.
    pub fn wire_name(&self) -> String {
        match (self.secure, &self.domain) {
            (true, None) => format!("__Host-{}", self.name),
            (true, Some(_)) => format!("__Secure-{}", self.name),
            (false, _) => self.name.clone(),
        }
    }

    /// The refresh-token cookie's name on the wire (token mode). It is
    /// restricted to the refresh path, which the `__Host-` prefix forbids,
    /// so a secure deployment uses `__Secure-`.
    pub fn refresh_wire_name(&self) -> String {
        match self.secure {
            true => format!("__Secure-{}-refresh", self.name),
            false => format!("{}-refresh", self.name),
        }
    }
}

/// Everything [`SessionLayer`](crate::SessionLayer) needs to know.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where tokens are accepted from.
    pub carrier: CarrierMode,
    /// The cookie carrier's attributes.
    pub cookie: CookieSettings,
    /// Timeouts and the touch throttle.
    pub expiry: ExpiryPolicy,
    /// CSRF rules for cookie-carried requests.
    pub csrf: CsrfPolicy,
    /// The most sessions one user may hold (10); a login beyond it ends the
    /// user's oldest sessions. `None`: no cap.
    pub max_sessions_per_user: Option<usize>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            carrier: CarrierMode::default(),
            cookie: CookieSettings::default(),
            expiry: ExpiryPolicy::default(),
            csrf: CsrfPolicy::default(),
            max_sessions_per_user: Some(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_modes_parse() {
        assert_eq!("Cookie".parse::<CarrierMode>(), Ok(CarrierMode::Cookie));
        assert_eq!("header".parse::<CarrierMode>(), Ok(CarrierMode::Header));
        assert_eq!("auto".parse::<CarrierMode>(), Ok(CarrierMode::Auto));
        assert!("url".parse::<CarrierMode>().is_err());
        assert_eq!(CarrierMode::default(), CarrierMode::Auto);
    }

    #[test]
    fn cookie_names_follow_the_prefix_rules() {
        assert_eq!(CookieSettings::default().wire_name(), "__Host-tessera");
        assert_eq!(CookieSettings::insecure_dev().wire_name(), "tessera");
        let shared = CookieSettings { domain: Some("shop.example".into()), ..Default::default() };
        assert_eq!(shared.wire_name(), "__Secure-tessera");
    }
}
