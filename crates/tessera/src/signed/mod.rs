//! Signed stateless tokens: a short-lived JWT access token that any node
//! verifies by CPU alone, and an opaque refresh token rotated on every use.
//!
//! A login in token mode opens a *family*: a record in the session store
//! (listed, capped, timed out and revoked like any session) that holds the
//! digests of its refresh tokens. Access tokens name the family in `sid`.
//! Requests carrying an access token cost no store round trip: the
//! signature is checked (or found in the verified-token cache) and the
//! family and user are looked up in this node's [`RevocationList`], which a
//! [`RevocationStore`] keeps current on every node (see [`crate::revocation`]).
//!
//! Other services verify tokens with [`Verifier`] and the issuer's JWKS.

mod cache_key;
mod claims;
mod keys;
mod refresh;
mod verify;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use quick_cache::sync::Cache;
use sha2::Sha256;

use cache_key::{TokenKey, TokenRef};
pub use claims::AccessClaims;
pub use keys::{KeyError, KeyRing, KeySet, KeyStatus, SigningAlgorithm, StoredKey, VerifyingKeys};
pub use refresh::{RefreshFormatError, RefreshToken};
pub(crate) use refresh::{RefreshState, Standing, REFRESH_STATE};
use verify::decode_verified;
pub use verify::{verify, Expectations, Rejection, ACCESS_TOKEN_TYPE, MAX_KID_LEN, MAX_LEEWAY, MAX_TOKEN_LEN};

use crate::carrier::AccessText;
use crate::clock::{SystemClock, Timestamp};
use crate::record::UserId;
use crate::revocation::{family_of, sid_of, Revocation, RevocationList, RevocationStore, Revocations, Sid};
use crate::store::StoreError;
use crate::token::SessionKey;
use crate::Clock;

/// How signed tokens are issued and judged.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `iss` claim, required and compared exactly.
    pub issuer: String,
    /// The `aud` claim, required and compared exactly.
    pub audience: String,
    /// Access-token lifetime (10 minutes).
    pub access_ttl: Duration,
    /// Clock skew forgiven on `exp` and `nbf` (30 s; at most 60 s).
    pub leeway: Duration,
    /// Two refreshes with the same token this close together get the same
    /// new pair instead of a theft verdict (10 s).
    pub refresh_grace: Duration,
    /// The path the refresh cookie is restricted to: the refresh and
    /// logout endpoints live under it (`/auth`).
    pub refresh_cookie_path: String,
    /// How many verified access tokens a node remembers (100 000, as many
    /// as the near cache keeps sessions; about 500 bytes each, most of it
    /// the token itself).
    pub verified_cache: usize,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "tessera".into(),
            audience: "tessera".into(),
            access_ttl: Duration::from_secs(600),
            leeway: Duration::from_secs(30),
            refresh_grace: Duration::from_secs(10),
            refresh_cookie_path: "/auth".into(),
            verified_cache: 100_000,
        }
    }
}

impl TokenSettings {
    /// How long a revocation must be remembered: until every access token
    /// it could concern has expired.
    pub fn revocation_lifetime(&self) -> Duration {
        self.access_ttl + self.leeway.min(MAX_LEEWAY) + Duration::from_secs(1)
    }
}

/// An access token and the refresh token that goes with it.
#[derive(Clone)]
pub struct TokenPair {
    /// The signed access token (JWT).
    pub access: String,
    /// When the access token expires.
    pub access_expires: Timestamp,
    /// The refresh token.
    pub refresh: RefreshToken,
    /// When the family ends whatever happens (its absolute deadline).
    pub refresh_expires: Timestamp,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access", &"<redacted>")
            .field("access_expires", &self.access_expires)
            .field("refresh", &self.refresh)
            .field("refresh_expires", &self.refresh_expires)
            .finish()
    }
}

impl TokenPair {
    /// How long the access token has left at `now`, in the whole seconds
    /// its claims count in.
    pub fn access_lifetime(&self, now: Timestamp) -> Duration {
        Duration::from_secs(self.access_expires.as_secs().saturating_sub(now.as_secs()).max(0) as u64)
    }
}

/// Whether `record` is a token family (opened by a token-mode login)
/// rather than a session: its key is no credential.
pub fn is_token_family(record: &crate::record::SessionRecord) -> bool {
    record.attribute(REFRESH_STATE.name()).is_some()
}

/// Who presents a valid access token ([`SignedTokens::verify_bearer`]).
/// Non-exhaustive: what a request may need of a token can grow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bearer {
    /// The token's user (`sub`).
    pub user: UserId,
    /// The session family its `sid` names, if it names one.
    pub family: Option<SessionKey>,
}

/// A failure to sign a token (bad key material): an internal error.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign an access token: {0}")]
pub struct SigningError(pub(crate) String);

/// One node's signed-token engine: keys, verified-token cache and
/// revocation list. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct SignedTokens(Arc<Inner>);

struct Inner {
    settings: TokenSettings,
    expect: Expectations,
    ring: RwLock<Arc<KeyRing>>,
    revocations: Revocations,
    /// Verified tokens, each with the key generation it was verified under.
    verified: Cache<TokenKey, Verified>,
    /// Bumped by every key change: a cached verdict from older keys is void.
    generation: AtomicU64,
    derive_key: [u8; 32],
}

/// A verified token as the cache keeps it: what a request reads of it,
/// and no more. With many distinct tokens in turn, each line of memory a
/// request touches is likely a miss in the CPU's caches, so a hit reads
/// this entry and its key only: the claims themselves are not kept (not
/// even behind an `Arc`, whose count every hit would write), and callers
/// that want them whole decode them again from the token.
#[derive(Clone)]
struct Verified {
    /// The key generation it was verified under.
    generation: u64,
    /// Served from the cache strictly before this second: `exp` + leeway.
    serve_before: i64,
    /// [`AccessClaims::issued_ms`], what the revocation list compares.
    issued_ms: i64,
    user: UserId,
    sid: KeptSid,
}

/// A token's `sid`: the family it names, decoded once, or the text of one
/// that names no family.
#[derive(Clone)]
enum KeptSid {
    Family(SessionKey),
    Other(Box<str>),
}

impl From<Verified> for Bearer {
    fn from(verified: Verified) -> Self {
        Self { family: verified.family(), user: verified.user }
    }
}

impl Verified {
    fn new(claims: &AccessClaims, generation: u64, leeway: i64) -> Self {
        Self {
            generation,
            serve_before: claims.exp.saturating_add(leeway),
            issued_ms: claims.issued_ms(),
            user: claims.sub.clone(),
            sid: family_of(&claims.sid).map_or_else(|| KeptSid::Other(claims.sid.as_str().into()), KeptSid::Family),
        }
    }

    fn family(&self) -> Option<SessionKey> {
        match self.sid {
            KeptSid::Family(family) => Some(family),
            KeptSid::Other(_) => None,
        }
    }

    fn sid(&self) -> Sid<'_> {
        match &self.sid {
            KeptSid::Family(family) => Sid::Family(family),
            KeptSid::Other(text) => Sid::Text(text),
        }
    }
}

impl fmt::Debug for SignedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedTokens")
            .field("settings", &self.0.settings)
            .field("keys", &*self.ring())
            .field("revocations", &self.0.revocations.list().len())
            .finish_non_exhaustive()
    }
}

impl SignedTokens {
    /// An engine signing with `keys`, its revocation list loaded from and
    /// kept current by `store`. `derive_key` (256 secret bits, the same on
    /// every node) derives refresh-token successors and token ids.
    pub async fn new(
        settings: TokenSettings,
        keys: &KeySet,
        store: Arc<dyn RevocationStore>,
        derive_key: [u8; 32],
    ) -> Result<Self, StoreError> {
        let ring = KeyRing::new(keys).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let revocations = Revocations::attach(store).await?;
        let expect = Expectations::new(&settings.issuer, &settings.audience, settings.leeway);
        Ok(Self(Arc::new(Inner {
            verified: Cache::new(settings.verified_cache.max(1)),
            settings,
            expect,
            ring: RwLock::new(Arc::new(ring)),
            revocations,
            generation: AtomicU64::new(0),
            derive_key,
        })))
    }

    /// The settings in force.
    pub fn settings(&self) -> &TokenSettings {
        &self.0.settings
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.0.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Switches to a new key set (after a rotation). Tokens under keys no
    /// longer in the set are refused from now on, cached or not.
    pub fn set_keys(&self, keys: &KeySet) -> Result<(), KeyError> {
        let ring = Arc::new(KeyRing::new(keys)?);
        *self.0.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.verified.clear();
        Ok(())
    }

    /// The public keys, as `GET /.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring().jwks().clone()
    }

    /// This node's revocation list.
    pub fn revocations(&self) -> &Arc<RevocationList> {
        self.0.revocations.list()
    }

    /// This node's revocations: the list and the store behind it.
    pub fn revocation_handle(&self) -> &Revocations {
        &self.0.revocations
    }

    /// Verifies an access token at `now`: signature (or the cache of
    /// verified tokens), claims, then the revocation list. On a cache hit
    /// the claims are decoded again from the token (the cache does not keep
    /// them); [`SignedTokens::verify_bearer`] spares that.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Arc<AccessClaims>, Rejection> {
        let claims = match self.judge(token, now)? {
            (_, Some(claims)) => claims,
            // A hit: these very bytes were verified, so their payload
            // decodes to the claims verified then.
            (_, None) => decode_verified(token)?,
        };
        Ok(Arc::new(claims))
    }

    /// [`SignedTokens::verify`], answering only what a request needs (the
    /// session layer's check): cheaper on a cache hit, which then decodes
    /// no claims.
    pub fn verify_bearer(&self, token: &str, now: Timestamp) -> Result<Bearer, Rejection> {
        self.judge(token, now).map(|(verified, _)| verified.into())
    }

    /// [`SignedTokens::verify_bearer`] of a token as a request presented it:
    /// bytes whose shape has not been checked yet. A token the cache holds
    /// is those bytes, verified before, so only a miss checks the shape (and
    /// that they are text) before the full check.
    pub(crate) fn verify_presented(&self, token: &AccessText, now: Timestamp) -> Result<Bearer, Rejection> {
        let verified = match self.cached(token.as_bytes(), now) {
            Some(hit) => hit,
            None if !token.is_well_formed() => return Err(Rejection::Malformed),
            None => {
                let text = std::str::from_utf8(token.as_bytes()).map_err(|_| Rejection::Malformed)?;
                self.verify_and_keep(text, now)?.0
            }
        };
        self.check_revocations(&verified)?;
        Ok(verified.into())
    }

    /// The cache's verdict on `token`, or the full check's (then with the
    /// claims it decoded), and the revocation list's.
    fn judge(&self, token: &str, now: Timestamp) -> Result<(Verified, Option<AccessClaims>), Rejection> {
        let (verified, claims) = match self.cached(token.as_bytes(), now) {
            Some(hit) => (hit, None),
            None => self.verify_and_keep(token, now).map(|(verified, claims)| (verified, Some(claims)))?,
        };
        self.check_revocations(&verified)?;
        Ok((verified, claims))
    }

    /// The cache's entry for `token`, if it may still be served.
    fn cached(&self, token: &[u8], now: Timestamp) -> Option<Verified> {
        let generation = self.0.generation.load(Ordering::Acquire);
        // Never served past `exp`, nor under keys that have changed since.
        self.0
            .verified
            .get(&TokenRef(token))
            .filter(|hit| hit.generation == generation && now.as_secs() < hit.serve_before)
    }

    /// The full check of `token`, remembered in the cache if it passes.
    fn verify_and_keep(&self, token: &str, now: Timestamp) -> Result<(Verified, AccessClaims), Rejection> {
        // Read before the check: keys changed meanwhile void the entry.
        let generation = self.0.generation.load(Ordering::Acquire);
        let claims = self.verify_signature(token, now)?;
        let leeway = self.0.expect.leeway().as_secs() as i64;
        let verified = Verified::new(&claims, generation, leeway);
        self.0.verified.insert(TokenKey::new(token.as_bytes()), verified.clone());
        Ok((verified, claims))
    }

    /// Checked on every use, so a revocation takes effect on cached tokens
    /// as on new ones.
    fn check_revocations(&self, verified: &Verified) -> Result<(), Rejection> {
        self.0.revocations.list().check_issued(verified.sid(), &verified.user, verified.issued_ms)
    }

    /// The full check of a token the cache does not hold.
    fn verify_signature(&self, token: &str, now: Timestamp) -> Result<AccessClaims, Rejection> {
        let claims = verify(token, self.ring().verifying(), &self.0.expect, now)?;
        // Revocations are kept for one access-token lifetime; a token meant
        // to live longer (signed before the lifetime was lowered, or by a
        // node configured otherwise) could outlive its revocation, so it
        // is refused.
        if claims.exp.saturating_sub(claims.iat) > self.0.settings.access_ttl.as_secs() as i64 {
            return Err(Rejection::Expired);
        }
        Ok(claims)
    }

    /// Signs an access token for `user` in `family`, issued at `issued`.
    /// Its id derives from `refresh`, so the same rotation signs the same
    /// token twice over (the grace window relies on it).
    pub(crate) fn issue(
        &self,
        user: &UserId,
        family: &SessionKey,
        refresh: &RefreshToken,
        issued: Timestamp,
    ) -> Result<(String, Timestamp), SigningError> {
        let iat = issued.as_secs();
        let ttl = self.0.settings.access_ttl.as_secs() as i64;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0.derive_key).expect("HMAC takes any key length");
        mac.update(b"tessera/jti/v1");
        mac.update(&refresh.digest());
        let claims = AccessClaims {
            iss: self.0.settings.issuer.clone(),
            aud: self.0.settings.audience.clone(),
            sub: user.clone(),
            sid: sid_of(family),
            iat,
            nbf: iat,
            exp: iat + ttl,
            jti: URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16]),
            iat_ms: Some(issued.as_millis()),
        };
        let token = self.ring().sign(&claims)?;
        Ok((token, Timestamp::from_millis((iat + ttl) * 1000)))
    }

    pub(crate) fn derive_key(&self) -> &[u8; 32] {
        &self.0.derive_key
    }

    /// The entry that revokes `family` from `now`.
    pub fn family_revocation(&self, family: &SessionKey, now: Timestamp) -> Revocation {
        Revocation::Family { sid: sid_of(family), until: now + self.0.settings.revocation_lifetime() }
    }

    /// The entry that revokes every token `user` was issued before `now`.
    pub fn user_revocation(&self, user: &UserId, now: Timestamp) -> Revocation {
        Revocation::User {
            user: user.clone(),
            not_before_ms: now.as_millis(),
            until: now + self.0.settings.revocation_lifetime(),
        }
    }

    /// Records and pushes to all nodes, this one included (see [`Revocations::revoke`]).
    pub async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        self.0.revocations.revoke(revocations).await
    }
}

/// Verifies a Tessera issuer's access tokens in another service, from the
/// issuer's JWKS alone, and optionally its revocation stream.
///
/// ```no_run
/// # async fn demo(jwks: &str, token: &str) {
/// use tessera::signed::Verifier;
/// let verifier = Verifier::from_jwks(jwks, "tessera", "tessera").unwrap();
/// let claims = verifier.verify(token).unwrap();
/// println!("user {} in family {}", claims.sub, claims.sid);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: VerifyingKeys,
    expect: Expectations,
    revocations: Option<Arc<RevocationList>>,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier for tokens of `issuer` for `audience`, with the keys of a
    /// JWKS document (as served at the issuer's `/.well-known/jwks.json`).
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        Ok(Self {
            keys: VerifyingKeys::from_jwks(jwks)?,
            expect: Expectations::new(issuer, audience, Duration::from_secs(30)),
            revocations: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Also refuses revoked tokens, by a list a [`RevocationStore`] keeps
    /// current (e.g. the issuer's Redis through `RedisRevocations`).
    pub fn with_revocations(mut self, list: Arc<RevocationList>) -> Self {
        self.revocations = Some(list);
        self
    }

    /// Judges time by `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the keys (after fetching the JWKS again).
    pub fn set_jwks(&mut self, jwks: &str) -> Result<(), KeyError> {
        self.keys = VerifyingKeys::from_jwks(jwks)?;
        Ok(())
    }

    /// The claims of a valid, unrevoked access token.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, Rejection> {
        let claims = verify(token, &self.keys, &self.expect, self.clock.now())?;
        if let Some(list) = &self.revocations {
            list.check(&claims)?;
        }
        Ok(claims)
    }
}
