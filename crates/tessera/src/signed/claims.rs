//! What an access token says.

use serde::{Deserialize, Serialize};

use crate::record::UserId;

/// The claims of a Tessera access token (`typ: at+jwt`, RFC 9068 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer, compared exactly.
    pub iss: String,
    /// The audience, compared exactly.
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The session family: every token pair rotated from one login shares
    /// it, and revoking it ends them all.
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not valid before, seconds since the epoch.
    pub nbf: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// This token's unique id.
    pub jti: String,
    /// Issued at, milliseconds since the epoch: `iat` is whole seconds, too
    /// coarse to tell a token issued just before a "log out everywhere"
    /// from one issued just after it in the same second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
}

impl AccessClaims {
    /// When the token was issued, in milliseconds: `iat_ms` when it agrees
    /// with `iat`, else the start of the `iat` second.
    pub fn issued_ms(&self) -> i64 {
        self.iat_ms.filter(|ms| ms.div_euclid(1000) == self.iat).unwrap_or(self.iat.saturating_mul(1000))
    }
}
