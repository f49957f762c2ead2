//! Refresh tokens: opaque, stored only as digests, rotated on every use.
//!
//! A refresh token is the family's store key and 256 secret bits, base64url
//! (86 characters). The family record keeps the SHA-256 of the current
//! secret, of the one before it (with the time of the rotation, for the
//! grace window) and short digests of older ones, so that a token that was
//! already rotated away is recognised as reuse, while a token that was
//! never issued is just invalid (a guess cannot revoke someone's family).
//!
//! The successor of a secret is derived from it with a keyed HMAC, so two
//! concurrent refreshes with the same token compute the same new token and
//! get the same answer without the store ever holding a token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::key::Key;
use crate::token::SessionKey;

/// The family attribute that holds the refresh state.
pub(crate) const REFRESH_STATE: Key<RefreshState> = Key::new("tessera.refresh");

/// How many rotated-away secrets are remembered for reuse detection.
const REMEMBERED: usize = 32;

/// A refresh token as the client holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    family: SessionKey,
    secret: [u8; 32],
}

/// Why a string is not a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a refresh token is 86 base64url characters")]
pub struct RefreshFormatError;

impl RefreshToken {
    /// A new token for `family` with a fresh secret from the OS CSPRNG.
    pub fn generate(family: SessionKey) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS CSPRNG is unavailable");
        Self { family, secret }
    }

    /// Parses a token; the format only, nothing is looked up.
    pub fn parse(s: &str) -> Result<Self, RefreshFormatError> {
        let mut bytes = [0u8; 64];
        if s.len() != 86 || URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut bytes) != Ok(64) {
            return Err(RefreshFormatError);
        }
        let (family, secret) = bytes.split_at(32);
        Ok(Self {
            family: SessionKey::from_bytes(family.try_into().expect("32 bytes")),
            secret: secret.try_into().expect("32 bytes"),
        })
    }

    /// The token as the client gets it.
    pub fn expose(&self) -> String {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(self.family.as_bytes());
        bytes[32..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The family's store key.
    pub fn family(&self) -> SessionKey {
        self.family
    }

    /// The digest the store keeps.
    pub(crate) fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }

    /// The token this one rotates into, derived under `key`.
    pub(crate) fn successor(&self, key: &[u8; 32]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"tessera/refresh-successor/v1");
        mac.update(self.family.as_bytes());
        mac.update(&self.secret);
        Self { family: self.family, secret: mac.finalize().into_bytes().into() }
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// What the family record remembers of its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefreshState {
    /// Hex SHA-256 of the current secret.
    current: String,
    /// Hex SHA-256 of the secret rotated away last, if any.
    previous: Option<String>,
    /// When `previous` was rotated away (milliseconds).
    rotated_at: i64,
    /// How many rotations the family has had.
    pub generation: u64,
    /// 128-bit hex prefixes of older digests, newest last.
    older: Vec<String>,
}

/// How a presented refresh token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The current token: rotate.
    Current,
    /// The token rotated away moments ago by a concurrent request: answer
    /// with the pair that rotation produced.
    JustRotated {
        /// When that rotation happened.
        at: Timestamp,
    },
    /// A token already rotated away: someone else has used it. Revoke.
    Reused,
    /// Never issued to this family.
    Unknown,
}

fn hex(bytes: &[u8]) -> String {
    crate::token::lower_hex(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl RefreshState {
    /// The state of a family whose first token is `token`.
    pub fn new(token: &RefreshToken, now: Timestamp) -> Self {
        Self {
            current: hex(&token.digest()),
            previous: None,
            rotated_at: now.as_millis(),
            generation: 0,
            older: vec![],
        }
    }

    /// Judges `token` at `now`, with rotations within `grace` forgiven.
    pub fn standing(
        &self,
        token: &RefreshToken,
        derive: &[u8; 32],
        now: Timestamp,
        grace: std::time::Duration,
    ) -> Standing {
        let digest = hex(&token.digest());
        if same(&digest, &self.current) {
            return Standing::Current;
        }
        if self.previous.as_deref().is_some_and(|p| same(&digest, p)) {
            let at = Timestamp::from_millis(self.rotated_at);
            // Only if the family has not moved on since: its current token
            // must be the one this token rotates into.
            let successor = hex(&token.successor(derive).digest());
            if now.since(at) <= grace && same(&successor, &self.current) {
                return Standing::JustRotated { at };
            }
            return Standing::Reused;
        }
        if self.older.iter().any(|o| same(o, &digest[..32])) {
            return Standing::Reused;
        }
        Standing::Unknown
    }

    /// The state after rotating into `next` at `now`.
    pub fn rotated(&self, next: &RefreshToken, now: Timestamp) -> Self {
        let mut older = self.older.clone();
        if let Some(previous) = &self.previous {
            older.push(previous[..32].to_owned());
        }
        let excess = older.len().saturating_sub(REMEMBERED);
        older.drain(..excess);
        Self {
            current: hex(&next.digest()),
            previous: Some(self.current.clone()),
            rotated_at: now.as_millis(),
            generation: self.generation + 1,
            older,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const GRACE: Duration = Duration::from_secs(10);

    fn family() -> SessionKey {
        SessionKey::from_bytes([1; 32])
    }

    #[test]
    fn tokens_round_trip_and_reject_other_shapes() {
        let t = RefreshToken::generate(family());
        let text = t.expose();
        assert_eq!(text.len(), 86);
        assert_eq!(RefreshToken::parse(&text), Ok(t.clone()));
        assert_eq!(t.family(), family());
        for bad in ["", "abc", &text[..85], &format!("{text}A"), &text.replace(&text[..1], "+"), "a.b.c"] {
            assert!(RefreshToken::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{t:?}").contains(&text));
    }

    #[test]
    fn successors_are_deterministic_under_one_key_and_differ_under_another() {
        let t = RefreshToken::generate(family());
        assert_eq!(t.successor(&KEY), t.successor(&KEY));
        assert_ne!(t.successor(&KEY), t.successor(&[8; 32]));
        assert_ne!(t.successor(&KEY), t);
        assert_eq!(t.successor(&KEY).family(), family());
    }

    #[test]
    fn rotation_reuse_and_the_grace_window() {
        let now = Timestamp::from_millis(1_000_000);
        let first = RefreshToken::generate(family());
        let state = RefreshState::new(&first, now);
        assert_eq!(state.standing(&first, &KEY, now, GRACE), Standing::Current);

        let second = first.successor(&KEY);
        let state = state.rotated(&second, now);
        assert_eq!(state.standing(&second, &KEY, now, GRACE), Standing::Current);
        assert_eq!(state.standing(&first, &KEY, now + GRACE, GRACE), Standing::JustRotated { at: now });
        assert_eq!(state.standing(&first, &KEY, now + GRACE + Duration::from_millis(1), GRACE), Standing::Reused);

        let third = second.successor(&KEY);
        let state = state.rotated(&third, now);
        // The family moved on twice: the first token is stale even within the window.
        assert_eq!(state.standing(&first, &KEY, now, GRACE), Standing::Reused);
        assert_eq!(state.standing(&RefreshToken::generate(family()), &KEY, now, GRACE), Standing::Unknown);
    }

    #[test]
    fn only_a_bounded_history_is_kept() {
        let now = Timestamp::from_millis(0);
        let mut token = RefreshToken::generate(family());
        let mut state = RefreshState::new(&token, now);
        for _ in 0..100 {
            token = token.successor(&KEY);
            state = state.rotated(&token, now);
        }
        assert_eq!(state.older.len(), REMEMBERED);
        assert_eq!(state.generation, 100);
    }
}
