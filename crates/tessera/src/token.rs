//! Session tokens and the keys the store files them under.
//!
//! A [`SessionToken`] is the secret a client carries: 256 bits from the OS
//! CSPRNG, encoded as 43 characters of unpadded base64url. The store never
//! sees it: it files the session under the token's SHA-256 digest, a
//! [`SessionKey`], so a dump of the store cannot be replayed as a credential.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Number of random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a token's unpadded base64url encoding.
pub const TOKEN_LEN: usize = 43;

/// Why a string is not a session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The string is not exactly [`TOKEN_LEN`] characters long.
    #[error("a session token is {TOKEN_LEN} characters long")]
    Length,
    /// The string holds a character outside the base64url alphabet, or
    /// non-canonical trailing bits.
    #[error("a session token is unpadded base64url")]
    Alphabet,
}

/// A bearer credential for one session.
///
/// It can only hold a well-formed token: 32 random bytes. `Debug` and
/// `Display` print a redacted form so that a token never reaches a log by
/// accident; [`SessionToken::expose`] is the one way to get the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// Draws a fresh token from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Panics if the OS has no entropy source, which no supported platform
    /// lacks; continuing with a weak token would be worse.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
        Self(bytes)
    }

    /// Draws fresh tokens until one's key satisfies `accept`, which must
    /// accept a fair share of keys (a store uses it to place a session in
    /// a chosen shard: 1 in 256 keys takes about 256 draws, ~0.1 ms). Each
    /// candidate is a full 256-bit draw; only the choice among them is
    /// steered, which tells nothing about the token beyond what its own
    /// key already does.
    ///
    /// # Panics
    /// Panics if no key is accepted in 2^20 draws: a predicate that rare
    /// is a bug, not bad luck.
    pub fn generate_where(accept: impl Fn(&SessionKey) -> bool) -> Self {
        const BATCH: usize = 64;
        for _ in 0..(1 << 20) / BATCH {
            let mut pool = [0u8; TOKEN_BYTES * BATCH];
            getrandom::fill(&mut pool).expect("the OS CSPRNG is unavailable");
            for chunk in pool.chunks_exact(TOKEN_BYTES) {
                let token = Self(chunk.try_into().expect("exact chunk"));
                if accept(&token.key()) {
                    return token;
                }
            }
        }
        panic!("SessionToken::generate_where: predicate accepts almost no keys");
    }

    /// Parses a token as a client sent it. Checks the format only: this is
    /// what keeps malformed input away from the store.
    pub fn parse(s: &str) -> Result<Self, TokenFormatError> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`SessionToken::parse`] of a header's bytes, which need not be text
    /// first: anything outside the base64url alphabet is refused anyway.
    pub(crate) fn parse_bytes(encoded: &[u8]) -> Result<Self, TokenFormatError> {
        if encoded.len() != TOKEN_LEN {
            return Err(TokenFormatError::Length);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        // The engine rejects non-canonical trailing bits, so every token has
        // exactly one spelling and cannot be varied to dodge a cache.
        match URL_SAFE_NO_PAD.decode_slice(encoded, &mut bytes) {
            Ok(TOKEN_BYTES) => Ok(Self(bytes)),
            _ => Err(TokenFormatError::Alphabet),
        }
    }

    /// The token as the client must send it back. Only for carriers.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The secret bits, for what is derived from them (the CSRF token).
    pub(crate) fn secret(&self) -> &[u8] {
        &self.0
    }

    /// The key the store files this token's session under.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The SHA-256 digest of a session token: the store's key for a session.
///
/// Safe to keep at rest and to log in its short form ([`SessionKey::short`]):
/// knowing it does not let anyone present the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Rebuilds a key from the 32 bytes a store kept.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the whole digest, for text-keyed stores.
    pub fn to_hex(&self) -> String {
        lower_hex(&self.0)
    }

    /// Parses [`SessionKey::to_hex`]'s output.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    /// Eight hex characters, enough to follow one session through the logs.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_owned()
    }

    /// The public id a user sees when listing their sessions. It names the
    /// session without being the store key, so a listing shown on a shared
    /// screen gives nothing a store dump could be matched against.
    pub fn public_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"tessera/public-id/v1");
        hasher.update(self.0);
        URL_SAFE_NO_PAD.encode(&hasher.finalize()[..16])
    }

    /// Compares two keys in constant time.
    pub fn ct_eq(&self, other: &SessionKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}…)", self.short())
    }
}

/// Lower-case hex of `bytes`. A table rather than `format!("{b:02x}")`
/// per byte: this names a session's legacy Redis key on every uncached read
/// (see the Redis store's upgrade path), where 32 formatter calls cost more
/// than the rest of the lookup.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * bytes.len());
    push_lower_hex(bytes, &mut hex);
    hex
}

/// Appends `bytes` in lower-case hex to `out` (see [`lower_hex`]).
pub(crate) fn push_lower_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_tokens_round_trip_through_parse() {
        let token = SessionToken::generate();
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(SessionToken::parse(&text), Ok(token));
    }

    #[test]
    fn a_hundred_thousand_tokens_are_distinct() {
        let set: HashSet<String> = (0..100_000).map(|_| SessionToken::generate().expose()).collect();
        assert_eq!(set.len(), 100_000);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = SessionToken::generate().expose();
        let cases = [
            String::new(),
            "a".repeat(4096),
            format!("{}\0", &good[..42]),
            format!("{}\r\n", &good[..41]),
            format!("{}=", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            "' OR 1=1 --".to_owned(),
            format!("{}é", &good[..41]),
        ];
        for case in cases {
            assert!(SessionToken::parse(&case).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // 43 base64 characters carry 258 bits; the last two must be zero.
        let token = SessionToken::generate().expose();
        let last = token.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let twisted = alphabet.chars().nth(idx ^ 1).unwrap();
        let variant = format!("{}{}", &token[..42], twisted);
        assert!(SessionToken::parse(&variant).is_err());
    }

    #[test]
    fn steered_tokens_land_where_asked_and_stay_distinct() {
        let tokens: Vec<SessionToken> =
            (0..50).map(|_| SessionToken::generate_where(|k| k.as_bytes()[0] == 0xab)).collect();
        assert!(tokens.iter().all(|t| t.key().as_bytes()[0] == 0xab));
        let distinct: HashSet<String> = tokens.iter().map(SessionToken::expose).collect();
        assert_eq!(distinct.len(), 50);
    }

    #[test]
    fn debug_and_display_never_print_the_token() {
        let token = SessionToken::generate();
        let secret = token.expose();
        assert!(!format!("{token:?}").contains(&secret));
        assert!(!format!("{token}").contains(&secret));
        assert!(!format!("{token:?}").contains(&secret[..8]));
    }

    #[test]
    fn key_is_the_sha256_of_the_token_bytes() {
        let token = SessionToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // SHA-256 of 32 zero bytes.
        assert_eq!(token.key().to_hex(), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    }

    #[test]
    fn key_hex_round_trips_and_rejects_junk() {
        let key = SessionToken::generate().key();
        assert_eq!(SessionKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(SessionKey::from_hex("zz"), None);
        assert_eq!(SessionKey::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn public_id_differs_from_key_and_is_stable() {
        let key = SessionToken::generate().key();
        assert_eq!(key.public_id(), key.public_id());
        assert!(!key.to_hex().contains(&key.public_id()));
        assert_eq!(key.public_id().len(), 22);
    }
}
