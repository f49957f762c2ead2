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
}
