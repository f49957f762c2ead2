//! The verified-token cache's key: a token's bytes, hashed by their tail.
//!
//! A hit used to hash the whole token (~400 bytes, some 200 instructions of
//! every request in token mode) before comparing it with the kept copy.
//! The tail alone tells tokens apart as well: it is the signature's, which
//! differs between any two tokens a key ever signed, and only verified
//! tokens are kept. Equality stays over every byte, so a token that copies a
//! verified one's signature under another header or payload lands on the
//! same slot and is found different there: a miss, then the full check.

use std::hash::{Hash, Hasher};

use quick_cache::Equivalent;

/// How many of a token's last bytes are hashed: 32 base64url characters
/// (24 bytes of signature), within the shortest signature kept (HS256's 43).
const HASHED_TAIL: usize = 32;

/// A verified token's bytes, as the cache keeps them.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct TokenKey(Box<[u8]>);

impl TokenKey {
    pub(super) fn new(token: &[u8]) -> Self {
        Self(token.into())
    }
}

/// A token to look up, borrowed from the request.
pub(super) struct TokenRef<'a>(pub(super) &'a [u8]);

fn hash_tail<H: Hasher>(token: &[u8], state: &mut H) {
    state.write(&token[token.len().saturating_sub(HASHED_TAIL)..]);
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(&self.0, state);
    }
}

impl Hash for TokenRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(self.0, state);
    }
}

impl Equivalent<TokenKey> for TokenRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self.0 == *key.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use quick_cache::sync::Cache;

    use super::*;

    #[test]
    fn a_key_and_its_lookup_hash_alike_and_match_only_the_same_bytes() {
        let token = format!("{}.{}.{}", "h".repeat(30), "p".repeat(200), "s".repeat(86));
        let state = std::collections::hash_map::RandomState::new();
        let key = TokenKey::new(token.as_bytes());
        assert_eq!(state.hash_one(&key), state.hash_one(TokenRef(token.as_bytes())));
        assert!(TokenRef(token.as_bytes()).equivalent(&key));
        // The same signature under another payload: same slot, not the same key.
        let forged = token.replacen('p', "q", 1);
        assert_eq!(state.hash_one(&key), state.hash_one(TokenRef(forged.as_bytes())));
        assert!(!TokenRef(forged.as_bytes()).equivalent(&key));
        assert_ne!(state.hash_one(TokenRef(b"short")), state.hash_one(TokenRef(b"other")), "short tokens hashed whole");
    }

    #[test]
    fn the_cache_finds_the_verified_bytes_only() {
        let cache: Cache<TokenKey, u32> = Cache::new(16);
        let token = format!("{}.{}.{}", "h".repeat(30), "p".repeat(200), "s".repeat(86));
        cache.insert(TokenKey::new(token.as_bytes()), 7);
        assert_eq!(cache.get(&TokenRef(token.as_bytes())), Some(7));
        let forged = token.replacen('p', "q", 1);
        assert_eq!(cache.get(&TokenRef(forged.as_bytes())), None);
        assert_eq!(cache.get(&TokenRef(&token.as_bytes()[1..])), None, "a suffix is not the token");
    }
}
