//! Key names: where a session and its user's index live.
//!
//! A session is `<prefix>:{tt}:s:<digest>`, the digest in unpadded
//! base64url (43 characters: the name stays under 62 bytes, one 64-byte
//! allocation in Redis, where the 64 hex digits of earlier versions took
//! 96). Versions before 2026-12-06 named it with the digest in hex; such a
//! key is still found under [`Names::legacy_session`] until it expires.
//! `tt` is the digest's first byte in hex: both names of one session share
//! a hash tag, so a script may name both on a Cluster.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::record::UserId;
use crate::token::SessionKey;

/// The names of one store's keys, all under its prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub(super) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// Where a session lives.
    pub(super) fn session(&self, key: &SessionKey) -> String {
        format!("{}:{{{:02x}}}:s:{}", self.prefix, key.as_bytes()[0], URL_SAFE_NO_PAD.encode(key.as_bytes()))
    }

    /// Where an earlier version kept the same session (digest in hex).
    pub(super) fn legacy_session(&self, key: &SessionKey) -> String {
        format!("{}:{{{:02x}}}:s:{}", self.prefix, key.as_bytes()[0], key.to_hex())
    }

    /// The sorted set of a user's sessions.
    pub(super) fn user_index(&self, user: &UserId) -> String {
        format!("{}:{{{:02x}}}:u:{}", self.prefix, user_tag(user), user.as_str())
    }
}

/// The hash-tag byte of a user: tokens of their sessions are drawn so that
/// the digest starts with it ([`super::RedisStore`]'s `issue_token`).
pub(super) fn user_tag(user: &UserId) -> u8 {
    let mut h = Sha256::new();
    h.update(b"tessera/user-tag/v1");
    h.update(user.as_str().as_bytes());
    h.finalize()[0]
}

/// The hash tag of a key name, if it has one.
pub(super) fn tag_of(name: &str) -> Option<&str> {
    let start = name.find('{')?;
    let end = name[start..].find('}')?;
    Some(&name[start + 1..start + end])
}

/// The session a key name (current or legacy) stands for.
pub(super) fn key_from_name(name: &str) -> Option<SessionKey> {
    let digest = name.rsplit_once(":s:")?.1;
    if digest.len() == 64 {
        return SessionKey::from_hex(digest);
    }
    let mut bytes = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(digest, &mut bytes) {
        Ok(32) => Some(SessionKey::from_bytes(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::SessionToken;

    #[test]
    fn hash_tags_are_found() {
        assert_eq!(tag_of("tessera:{ab}:s:00"), Some("ab"));
        assert_eq!(tag_of("no tag"), None);
    }

    #[test]
    fn both_names_of_a_session_lead_back_to_it_and_share_a_tag() {
        let names = Names::new("tessera".into());
        let key = SessionToken::generate().key();
        let (name, legacy) = (names.session(&key), names.legacy_session(&key));
        assert_eq!(name.len(), "tessera:{00}:s:".len() + 43, "{name}");
        assert_eq!((key_from_name(&name), key_from_name(&legacy)), (Some(key), Some(key)));
        assert_eq!(tag_of(&name), tag_of(&legacy));
        assert_eq!(key_from_name("tessera:{00}:s:short"), None);
        assert_eq!(key_from_name("tessera:{00}:u:alice"), None);
    }

    #[test]
    fn user_tags_are_stable_and_spread() {
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(user_tag(&alice), user_tag(&alice));
        let tags: std::collections::HashSet<u8> = (0..2000).map(|i| user_tag(&UserId::from(i))).collect();
        assert!(tags.len() > 200, "user ids should spread over the tag space");
    }
}
