//! Key names: where a session and its user's index live.
//!
//! A session is `<prefix>:{tt}:s:<digest>`, the digest in unpadded
//! base64url (43 characters: the name stays under 62 bytes, one 64-byte
//! allocation in Redis, where the 64 hex digits of earlier versions took
//! 96). Versions before 2026-12-06 named it with the digest in hex; such a
//! key is still found under [`Names::legacy_session`] until it expires.
//! `tt` is the digest's first byte in hex: both names of one session share
//! a hash tag, so a script may name both on a Cluster.
//!
//! A user's sessions are filed in a sorted set shared with other users,
//! `<prefix>:{tt}:i:<bucket>`, where `tt` is the user's tag (a byte of a
//! hash of the user id, which the digests of their sessions start with)
//! and the bucket one of 64 per tag, another byte of that hash. A member is
//! the 32-byte digest followed by the user id, scored by the absolute
//! deadline in seconds. Shared, because a key of its own costs a user about
//! 170 bytes of Redis memory, where a member costs about 50; 16 384 buckets,
//! because Redis keeps a sorted set of up to 128 members of up to 64 bytes
//! as one compact listpack: a bucket stays one at up to about 1.5 million
//! sessions (at more, buckets become skiplists, about twice the memory per
//! member, and still correct), and at 100 000 the keys of the buckets cost
//! about 20 bytes a session. Versions before 2026-12-06 filed a user's
//! sessions in a sorted set of their own, `<prefix>:{tt}:u:<user>` (the
//! digest in hex, scored in milliseconds), which is still read, pruned and
//! removed from, never added to, until it expires with its last member.
//!
//! Under Sentinel, `<prefix>:replicated` is written before a wait for a
//! replica, to mark the point waited for (see `replication.rs`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::record::UserId;
use crate::token::{push_lower_hex, SessionKey};

/// The names of one store's keys, all under its prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
    /// Named once: logouts and logins under any topology pass it along.
    replication_marker: String,
}

impl Names {
    pub(super) fn new(prefix: String) -> Self {
        Self { replication_marker: replication_marker(&prefix), prefix }
    }

    /// The key written before waiting for a replica (see `replication.rs`).
    pub(super) fn replication_marker(&self) -> &str {
        &self.replication_marker
    }

    /// Where a session lives.
    pub(super) fn session(&self, key: &SessionKey) -> String {
        let mut name = self.session_name_start(key, 43);
        URL_SAFE_NO_PAD.encode_string(key.as_bytes(), &mut name);
        name
    }

    /// Where an earlier version kept the same session (digest in hex).
    pub(super) fn legacy_session(&self, key: &SessionKey) -> String {
        let mut name = self.session_name_start(key, 64);
        push_lower_hex(key.as_bytes(), &mut name);
        name
    }

    /// `<prefix>:{tt}:s:`, with room for a digest of `digest_len` bytes:
    /// every session read names a key, so no `format!` machinery here.
    fn session_name_start(&self, key: &SessionKey, digest_len: usize) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 7 + digest_len);
        name.push_str(&self.prefix);
        name.push_str(":{");
        push_lower_hex(&key.as_bytes()[..1], &mut name);
        name.push_str("}:s:");
        name
    }

    /// Where a user's sessions are filed.
    pub(super) fn user_index(&self, user: &UserId) -> UserIndex {
        let hash = user_hash(user);
        let tag = hash[0];
        UserIndex {
            bucket: format!("{}:{{{tag:02x}}}:i:{:02x}", self.prefix, hash[1] % BUCKETS_PER_TAG),
            legacy: format!("{}:{{{tag:02x}}}:u:{}", self.prefix, user.as_str()),
            user: user.as_str().to_owned(),
            tag,
        }
    }
}

/// Buckets of user indexes per hash tag (see the module documentation).
const BUCKETS_PER_TAG: u8 = 64;

/// The two sorted sets a user's sessions may be filed in (one slot).
#[derive(Debug, Clone)]
pub(super) struct UserIndex {
    /// The shared bucket, where sessions are filed now.
    pub bucket: String,
    /// The user's own set of earlier versions.
    pub legacy: String,
    /// The user id, the end of the user's members in the bucket.
    pub user: String,
    /// The hash tag both sets are under, as a session digest's first byte.
    pub tag: u8,
}

fn user_hash(user: &UserId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tessera/user-tag/v1");
    h.update(user.as_str().as_bytes());
    h.finalize().into()
}

/// `<prefix>:replicated`: the key written before waiting for a replica.
pub(super) fn replication_marker(prefix: &str) -> String {
    format!("{prefix}:replicated")
}

/// The hash-tag byte of a user: tokens of their sessions are drawn so that
/// the digest starts with it ([`super::RedisStore`]'s `issue_token`).
pub(super) fn user_tag(user: &UserId) -> u8 {
    user_hash(user)[0]
}

/// A session's score in its user's index: the absolute deadline in whole
/// seconds, rounded up (never dropped while it may still be live), which
/// a listpack keeps in 4 bytes where milliseconds take 8.
pub(super) fn index_score(absolute_deadline: Timestamp) -> i64 {
    let ms = absolute_deadline.as_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

/// The hash tag of a key name, if it has one (the tests check names by it).
#[cfg(test)]
fn tag_of(name: &str) -> Option<&str> {
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
        let digest = URL_SAFE_NO_PAD.encode(key.as_bytes());
        assert_eq!(name, format!("tessera:{{{:02x}}}:s:{digest}", key.as_bytes()[0]));
        assert_eq!(legacy, format!("tessera:{{{:02x}}}:s:{}", key.as_bytes()[0], key.to_hex()));
        assert_eq!((key_from_name(&name), key_from_name(&legacy)), (Some(key), Some(key)));
        assert_eq!(tag_of(&name), tag_of(&legacy));
        assert_eq!(key_from_name("tessera:{00}:s:short"), None);
        assert_eq!(key_from_name("tessera:{00}:u:alice"), None);
    }

    #[test]
    fn a_users_index_shares_the_tag_of_their_sessions() {
        let names = Names::new("tessera".into());
        let user = UserId::parse("alice").unwrap();
        let index = names.user_index(&user);
        let tag = format!("{:02x}", user_tag(&user));
        assert_eq!((tag_of(&index.bucket), tag_of(&index.legacy)), (Some(tag.as_str()), Some(tag.as_str())));
        assert!(index.legacy.ends_with(":u:alice"));
        let buckets: std::collections::HashSet<String> =
            (0..20_000).map(|i| names.user_index(&UserId::from(i)).bucket).collect();
        // 20 000 users over 16 384 buckets fill about 11 500 of them.
        assert!((10_000..=256 * usize::from(BUCKETS_PER_TAG)).contains(&buckets.len()), "{}", buckets.len());
    }

    #[test]
    fn index_scores_round_deadlines_up_to_the_second() {
        assert_eq!(index_score(Timestamp::from_millis(5_000)), 5);
        assert_eq!(index_score(Timestamp::from_millis(5_001)), 6);
        assert_eq!(index_score(Timestamp::from_millis(-1)), 0);
    }

    #[test]
    fn user_tags_are_stable_and_spread() {
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(user_tag(&alice), user_tag(&alice));
        let tags: std::collections::HashSet<u8> = (0..2000).map(|i| user_tag(&UserId::from(i))).collect();
        assert!(tags.len() > 200, "user ids should spread over the tag space");
    }
}
