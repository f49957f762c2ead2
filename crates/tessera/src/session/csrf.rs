//! The CSRF rules applied to one request: by the layer to each request it
//! serves, and by an authorization service (forward auth) to the request a
//! proxy asks about.

use http::{HeaderMap, Method};

use super::Session;
use crate::carrier::CarrierKind;
use crate::csrf::{CsrfReason, CsrfVerdict, TargetOrigin, CSRF_HEADER};
use crate::error::SessionError;

impl Session {
    /// Whether a request with `method` and `headers` may act on this
    /// session under the layer's CSRF rules: `Err(SessionError::CsrfRejected)`
    /// with the reason for a cross-site attempt to use the caller's cookie.
    ///
    /// The layer applies this to every request before the handler runs. A
    /// forward-auth endpoint calls it again with the *original* request's
    /// method (from the proxy's `X-Original-Method` or `X-Forwarded-Method`),
    /// since the proxy's own sub-request is a `GET` that the rules let pass.
    pub async fn check_csrf(&self, method: &Method, headers: &HeaderMap) -> Result<(), SessionError> {
        if self.csrf_passes_at_once(method) {
            return Ok(());
        }
        let from_host;
        let target = match &self.0.target {
            Some(target) => Some(target),
            None => {
                from_host = TargetOrigin::from_host(headers, self.config().cookie.secure);
                from_host.as_ref()
            }
        };
        let token_echoed = match self.config().csrf.evaluate(method, headers, target) {
            CsrfVerdict::Allowed => return Ok(()),
            CsrfVerdict::Rejected(reason) => return Err(SessionError::CsrfRejected(reason)),
            CsrfVerdict::NeedsToken => {
                let echoed = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !self.0.presented.is_well_formed() {
                    self.refresh_cookie_permits(echoed).await?
                } else if !self.exists().await? {
                    true // a dead cookie: the request runs anonymous
                } else {
                    self.csrf_matches(echoed).await?
                }
            }
        };
        if token_echoed {
            Ok(())
        } else {
            Err(SessionError::CsrfRejected(CsrfReason::MissingToken))
        }
    }

    /// Whether [`Session::check_csrf`] lets a request with `method` pass
    /// without looking further (a safe method, or no cookie involved): the
    /// layer then needs no future of its own for the check.
    pub(crate) fn csrf_passes_at_once(&self, method: &Method) -> bool {
        is_safe(method) || !self.relies_on_cookie()
    }

    /// Whether the request carries, or may be answered with, a cookie: only
    /// then can a forged cross-site request ride on the browser's session.
    fn relies_on_cookie(&self) -> bool {
        match self.0.presented.carrier() {
            Some(CarrierKind::Cookie) => true,
            Some(CarrierKind::Header) => false,
            // No credential yet, but the answer may set a cookie (a browser
            // logging in): refuse foreign origins so nobody can log a victim
            // into the attacker's account. A refresh cookie is a credential too.
            None => self.0.respond_via == CarrierKind::Cookie || self.has_refresh_cookie(),
        }
    }

    /// No session credential: only a refresh cookie (`/auth/refresh`,
    /// `/auth/logout`) could be abused, under the same rule against its
    /// family's token.
    async fn refresh_cookie_permits(&self, echoed: Option<&str>) -> Result<bool, SessionError> {
        if !self.has_refresh_cookie() {
            return Ok(true); // nothing a forged request could ride on
        }
        #[cfg(feature = "signed")]
        return self.refresh_csrf_matches(echoed).await;
        #[cfg(not(feature = "signed"))]
        {
            let _ = echoed;
            Ok(true) // no refresh cookie is read without token mode
        }
    }
}

/// Methods that must not change state: never checked.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}
