//! The id of the user a session belongs to.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The id of the user a session belongs to, as the application names it.
///
/// Non-empty, at most 128 bytes, no control characters: it ends up in store
/// keys and logs, where those would be trouble.
///
/// Every authenticated request copies the id out of its session's cached
/// record for the handler. An id of up to [`UserId::INLINE`] bytes (every
/// numeric id, a UUID in its 22-byte base64 form) is kept inside the value
/// itself, so that copy reads nothing beyond the record it is in: with
/// thousands of sessions in use, a pointer followed to a shared allocation
/// is a cache miss on every request (measured: BENCHMARKS.md). Longer ids
/// share one allocation, and a copy bumps its count.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct UserId(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes of `bytes`, copied from a `str`.
    Inline {
        len: u8,
        bytes: [u8; UserId::INLINE],
    },
    Shared(Arc<str>),
}

/// Why a string is not a [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 1 to 128 bytes without control characters")]
pub struct InvalidUserId;

impl UserId {
    /// The longest id kept in place, without an allocation: as many bytes
    /// as fit beside the length and the variant's tag in three words.
    pub const INLINE: usize = 22;

    /// Parses an application's user id.
    pub fn parse(s: impl AsRef<str>) -> Result<Self, InvalidUserId> {
        let s = s.as_ref();
        if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
            return Err(InvalidUserId);
        }
        Ok(Self::kept(s))
    }

    /// `s`, already checked, in place when it fits.
    fn kept(s: &str) -> Self {
        if s.len() > Self::INLINE {
            return Self(Repr::Shared(s.into()));
        }
        let mut bytes = [0; Self::INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Self(Repr::Inline { len: s.len() as u8, bytes })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Copied whole from a `str` by `kept`, so always UTF-8.
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(text) => text,
        }
    }
}

impl From<i64> for UserId {
    fn from(id: i64) -> Self {
        Self::kept(&id.to_string())
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.as_str().to_owned()
    }
}

// Equality, order and hash are the text's, whichever way it is kept.
impl PartialEq for UserId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserId {}

impl PartialOrd for UserId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UserId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for UserId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.as_str())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn hash_of(id: &UserId) -> u64 {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(UserId::parse("42").is_ok());
        assert_eq!(UserId::parse(""), Err(InvalidUserId));
        assert_eq!(UserId::parse("a\nb"), Err(InvalidUserId));
        assert_eq!(UserId::parse("x".repeat(129)), Err(InvalidUserId));
        assert!(UserId::parse("x".repeat(128)).is_ok());
        assert_eq!(UserId::from(7).as_str(), "7");
        assert_eq!(UserId::from(i64::MIN).as_str(), "-9223372036854775808");
        assert!(serde_json::from_str::<UserId>("\"\"").is_err());
    }

    #[test]
    fn short_and_long_ids_read_back_as_given() {
        // Either side of the in-place limit, and multi-byte text at it.
        let at_limit = "é".repeat(UserId::INLINE / 2);
        for text in ["1", "x".repeat(UserId::INLINE).as_str(), "x".repeat(UserId::INLINE + 1).as_str(), &at_limit] {
            let id = UserId::parse(text).unwrap();
            assert_eq!(id.as_str(), text);
            assert_eq!(id.clone().as_str(), text);
            assert_eq!(String::from(id.clone()), text);
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn equality_order_and_hash_are_the_texts() {
        let short = UserId::parse("abc").unwrap();
        let long = UserId::parse("abc".repeat(10)).unwrap();
        assert_ne!(short, long);
        assert_eq!(short.cmp(&long), "abc".cmp(&"abc".repeat(10)));
        assert_eq!(hash_of(&short), hash_of(&UserId::parse("abc").unwrap()));
        assert_eq!(hash_of(&long), hash_of(&UserId::parse("abc".repeat(10)).unwrap()));
        let mut sorted = [UserId::from(10), UserId::from(9), UserId::parse("x".repeat(30)).unwrap()];
        sorted.sort();
        assert_eq!(sorted.iter().map(UserId::as_str).collect::<Vec<_>>(), ["10", "9", "x".repeat(30).as_str()]);
    }

    #[test]
    fn an_id_in_place_takes_no_more_room_than_a_shared_one() {
        // The record's `Option<UserId>` stays three words.
        assert_eq!(std::mem::size_of::<Option<UserId>>(), 24);
    }
}
