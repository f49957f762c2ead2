//! # Tessera (see the workspace README, included below)
//!
//! Server-side sessions for axum and tower: a browser carries its token in a
//! cookie, a mobile or API client in `Authorization: Bearer` or
//! `X-Auth-Token`; sessions live behind one [`SessionStore`] trait, filed
//! under the SHA-256 of the token; idle and absolute timeouts, throttled
//! touches, per-attribute versioned saves, CSRF rules and token rotation on
//! login are built in.
//!
//! Start at [`SessionLayer`] and the extractors [`Session`], [`AuthUser`]
//! and [`MaybeAuthUser`]; see the crate README for a complete example.

#![warn(missing_docs)]

mod carrier;
pub mod clock;
pub mod config;
pub mod csrf;
pub mod error;
mod extract;
pub mod failure;
mod key;
mod layer;
pub mod lease;
pub mod observe;
pub mod policy;
pub mod record;
pub mod revocation;
mod session;
#[cfg(feature = "signed")]
pub mod signed;
pub mod store;
pub mod token;
mod user_id;

pub use carrier::{CarrierKind, AUTH_MODE_HEADER, AUTH_TOKEN_HEADER};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{CarrierMode, CookieSettings, SessionConfig};
pub use csrf::{AllowedOrigin, CsrfPolicy, CsrfReason, CsrfToken, TargetOrigin};
pub use error::SessionError;
pub use extract::{AuthUser, MaybeAuthUser};
pub use failure::{problem_json, FailureKind, RenderFailure};
pub use key::Key;
pub use layer::{ClientIp, SessionLayer, SessionLayerBuilder, SessionService};
pub use lease::Lease;
pub use observe::{EndReason, SessionEvent, SessionObserver};
pub use policy::ExpiryPolicy;
pub use record::{ClientMeta, SessionRecord, UserId};
pub use revocation::Revocations;
pub use session::{Credentials, LoginGrant, Session, SessionInfo, UserSessions};
#[cfg(feature = "signed")]
pub use signed::{SignedTokens, TokenSettings};
#[cfg(feature = "redis")]
pub use store::RedisStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{MemoryStore, SessionStore, StoreError};
pub use token::{SessionKey, SessionToken};

// Compiles the README's examples as doctests, so the documentation cannot
// drift from the API. They use the SQLite and Redis stores and signed tokens.
#[doc = include_str!("../../../README.md")]
#[cfg(all(doctest, feature = "sqlite", feature = "redis", feature = "signed"))]
pub struct ReadmeDoctests;
