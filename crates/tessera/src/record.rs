//! What the store keeps for one session.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
pub use crate::user_id::{InvalidUserId, UserId};

/// Where a session was opened from, for the user's list of devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMeta {
    /// The `User-Agent` header, cut to [`ClientMeta::MAX_USER_AGENT`] bytes.
    pub user_agent: Option<String>,
    /// The client's address as the server saw it.
    pub ip: Option<IpAddr>,
}

impl ClientMeta {
    /// The longest user agent kept; the rest is dropped.
    pub const MAX_USER_AGENT: usize = 256;

    /// Metadata with the user agent cut to size on a character boundary;
    /// an empty one is no user agent.
    pub fn new(user_agent: Option<&str>, ip: Option<IpAddr>) -> Self {
        let user_agent = user_agent.filter(|ua| !ua.is_empty()).map(|ua| {
            let mut end = ua.len().min(Self::MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
        Self { user_agent, ip }
    }
}

/// The caller's user agent and address as its request carried them, held
/// without a copy: every request's session handle keeps one, and only a
/// session created by that request turns it into a [`ClientMeta`] (a
/// browser's user agent copied on every request was an allocation each).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestClient {
    user_agent: Option<http::HeaderValue>,
    ip: Option<IpAddr>,
}

impl RequestClient {
    /// The request's `User-Agent` value (shared, not copied) and address.
    pub(crate) fn new(user_agent: Option<&http::HeaderValue>, ip: Option<IpAddr>) -> Self {
        Self { user_agent: user_agent.cloned(), ip }
    }

    /// What a session opened by this request records: a user agent that is
    /// not visible ASCII is none, as [`http::HeaderValue::to_str`] says.
    pub(crate) fn meta(&self) -> ClientMeta {
        ClientMeta::new(self.user_agent.as_ref().and_then(|ua| ua.to_str().ok()), self.ip)
    }
}

/// One attribute with the session version that last changed it.
///
/// A removed attribute stays as a tombstone (`value: None`) so that a
/// concurrent writer that has not seen the removal is told of the conflict
/// instead of silently bringing the attribute back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    /// The value, or `None` once removed.
    pub value: Option<serde_json::Value>,
    /// The record version that wrote this attribute last.
    pub version: u64,
}

/// A session's attributes by name.
pub type Attributes = BTreeMap<String, Attribute>;

/// Everything the store keeps for one session.
///
/// `repr(C)`, the fields a read looks at first: a cached record is shared
/// (`Arc`), and with thousands of sessions each read finds it out of the
/// CPU's caches, one miss per line it touches. In this order the reference
/// count a load bumps, the user, the two deadlines and the last use are the
/// first 64 bytes of the allocation, one or two lines instead of the three
/// the compiler's own order spread them over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[repr(C)]
pub struct SessionRecord {
    /// The logged-in user; `None` for an anonymous session.
    pub user_id: Option<UserId>,
    /// The session lapses at this time unless it is used again.
    pub idle_deadline: Timestamp,
    /// The session lapses at this time whatever happens.
    pub absolute_deadline: Timestamp,
    /// When the session was last seen (as of the last write).
    pub last_seen: Timestamp,
    /// Increases by one with each saved change of attributes.
    pub version: u64,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Application data, typed by the application through [`crate::Key`].
    pub attributes: Attributes,
    /// Where the session was opened from.
    pub client: ClientMeta,
}

impl SessionRecord {
    /// Whether the session has lapsed at `now` (idle or absolute).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.idle_deadline || now >= self.absolute_deadline
    }

    /// The value of attribute `name`, if set.
    pub fn attribute(&self, name: &str) -> Option<&serde_json::Value> {
        self.attributes.get(name).and_then(|a| a.value.as_ref())
    }

    /// Applies a saved change the way every store must, or reports which
    /// attribute conflicts. Stores that keep whole records call this inside
    /// their transaction so the rule lives in one place.
    pub fn apply(&mut self, change: &SessionChange) -> Result<u64, ConflictingAttribute> {
        for name in change.names() {
            if let Some(current) = self.attributes.get(name) {
                if current.version > change.base_version {
                    return Err(ConflictingAttribute(name.to_owned()));
                }
            }
        }
        let version = self.version + 1;
        for (name, value) in &change.set {
            self.attributes.insert(name.clone(), Attribute { value: Some(value.clone()), version });
        }
        for name in &change.removed {
            self.attributes.insert(name.clone(), Attribute { value: None, version });
        }
        self.version = version;
        self.last_seen = self.last_seen.max(change.last_seen);
        self.idle_deadline = self.idle_deadline.max(change.idle_deadline);
        Ok(version)
    }
}

/// The attribute whose concurrent change made a save fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictingAttribute(pub String);

/// The attributes one request changed, to be saved with a version check.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionChange {
    /// The record version the request loaded.
    pub base_version: u64,
    /// Attributes set, by name.
    pub set: BTreeMap<String, serde_json::Value>,
    /// Attributes removed.
    pub removed: BTreeSet<String>,
    /// The time of the request, recorded as activity.
    pub last_seen: Timestamp,
    /// The idle deadline that activity moves to.
    pub idle_deadline: Timestamp,
}

impl SessionChange {
    /// Every attribute name the change writes.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.set.keys().chain(self.removed.iter()).map(String::as_str)
    }

    /// Whether the change writes no attribute.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_a_read_looks_at_is_in_the_first_line_with_the_reference_count() {
        use std::mem::{offset_of, size_of};
        // An `Arc`'s two counts come first (16 bytes), then the record.
        let hot = [
            ("user_id", offset_of!(SessionRecord, user_id), size_of::<Option<UserId>>()),
            ("idle_deadline", offset_of!(SessionRecord, idle_deadline), size_of::<Timestamp>()),
            ("absolute_deadline", offset_of!(SessionRecord, absolute_deadline), size_of::<Timestamp>()),
            ("last_seen", offset_of!(SessionRecord, last_seen), size_of::<Timestamp>()),
        ];
        for (field, offset, size) in hot {
            assert!(16 + offset + size <= 64, "{field} ends at byte {} of the Arc's allocation", 16 + offset + size);
        }
    }

    fn record() -> SessionRecord {
        SessionRecord {
            user_id: None,
            attributes: Attributes::new(),
            created_at: Timestamp::from_millis(0),
            last_seen: Timestamp::from_millis(0),
            idle_deadline: Timestamp::from_millis(100),
            absolute_deadline: Timestamp::from_millis(1000),
            version: 0,
            client: ClientMeta::default(),
        }
    }

    fn change(base: u64, set: &[(&str, serde_json::Value)], removed: &[&str]) -> SessionChange {
        SessionChange {
            base_version: base,
            set: set.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
            last_seen: Timestamp::from_millis(10),
            idle_deadline: Timestamp::from_millis(110),
        }
    }

    #[test]
    fn user_agent_is_cut_on_a_char_boundary() {
        let ua = "é".repeat(200);
        let meta = ClientMeta::new(Some(&ua), None);
        let kept = meta.user_agent.unwrap();
        assert!(kept.len() <= ClientMeta::MAX_USER_AGENT);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_requests_client_becomes_the_same_meta_as_its_header_text() {
        let ip = Some(IpAddr::from([192, 0, 2, 7]));
        let long = "Mozilla/5.0 ".repeat(40);
        for ua in ["Mozilla/5.0 (X11; Linux x86_64)", "", long.as_str()] {
            let header = http::HeaderValue::from_str(ua).unwrap();
            assert_eq!(RequestClient::new(Some(&header), ip).meta(), ClientMeta::new(Some(ua), ip), "{ua}");
        }
        let not_ascii = http::HeaderValue::from_bytes("café".as_bytes()).unwrap();
        assert_eq!(RequestClient::new(Some(&not_ascii), ip).meta(), ClientMeta { user_agent: None, ip });
        assert_eq!(RequestClient::new(None, None).meta(), ClientMeta::default());
    }

    #[test]
    fn changes_to_different_attributes_from_one_base_both_apply() {
        let mut r = record();
        assert_eq!(r.apply(&change(0, &[("a", json!(1))], &[])), Ok(1));
        assert_eq!(r.apply(&change(0, &[("b", json!(2))], &[])), Ok(2));
        assert_eq!(r.attribute("a"), Some(&json!(1)));
        assert_eq!(r.attribute("b"), Some(&json!(2)));
        assert_eq!(r.last_seen, Timestamp::from_millis(10));
    }

    #[test]
    fn a_stale_write_to_the_same_attribute_conflicts() {
        let mut r = record();
        r.apply(&change(0, &[("a", json!(1))], &[])).unwrap();
        let err = r.apply(&change(0, &[("a", json!(2))], &[])).unwrap_err();
        assert_eq!(err, ConflictingAttribute("a".into()));
        assert_eq!(r.attribute("a"), Some(&json!(1)));
        assert_eq!(r.version, 1);
    }

    #[test]
    fn a_removal_is_not_undone_by_a_stale_writer() {
        let mut r = record();
        r.apply(&change(0, &[("a", json!(1))], &[])).unwrap();
        r.apply(&change(1, &[], &["a"])).unwrap();
        assert_eq!(r.attribute("a"), None);
        assert!(r.apply(&change(1, &[("a", json!(3))], &[])).is_err());
        assert_eq!(r.attribute("a"), None);
    }

    #[test]
    fn expiry_is_idle_or_absolute() {
        let r = record();
        assert!(!r.is_expired(Timestamp::from_millis(99)));
        assert!(r.is_expired(Timestamp::from_millis(100)));
    }
}
