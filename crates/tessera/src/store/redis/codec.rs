//! A session record as one compact MessagePack value, the shape the Lua
//! scripts edit with Redis's bundled `cmsgpack` (see `scripts`).
//!
//! One value rather than a hash of fields: a hash whose values pass 64
//! bytes (a browser's user agent) is stored by Redis as a hashtable, about
//! twice the memory, and `HGETALL` returns one bulk string per field and
//! value. Positional, not named: field names would cost more than most
//! fields. Attribute values are kept as JSON *text* inside the value, so
//! the scripts never decode and re-encode application data: they only
//! compare versions and move strings.
//!
//! ```text
//! [version, user, created ms, absolute deadline - created, last seen - created,
//!  idle deadline - last seen, user agent (coded), address,
//!  {"cart": [3, "{\"items\":[1]}"], "gone": [2]}]
//! ```
//!
//! Sized so that a typical session (a numeric user, a browser, an IPv4
//! address, no attributes) stays within 44 bytes, the most Redis keeps in
//! one allocation with the key's object (`embstr`): 40 bytes at login,
//! 44 once last seen has moved on by more than a minute. Hence: times as
//! differences, which are small, from the one absolute time; a user id that
//! is a canonical decimal number (15 digits at most: exact in Lua's
//! doubles) as an integer, any other as text, none as `""`; the user agent
//! through the fragment dictionary of `user_agent` (a desktop Chrome's 111
//! bytes in 7), none as `""`; an IPv4 address as a 32-bit integer, an IPv6
//! one as text, none as `""`; the attributes left out while there are none.
//! No MessagePack `bin`: the `cmsgpack` of Redis 7.0 cannot read it.
//!
//! A removed attribute (a tombstone) is `[version]`.
//!
//! Earlier shapes are still read, here and by the scripts, which write a
//! value back in the shape they found it, so nodes of the earlier version
//! keep reading it during a rolling upgrade:
//! - versions before 2026-12-06: `[user or "", created ms, last seen ms,
//!   idle deadline ms, absolute deadline ms, version, user agent or "",
//!   address text or "", attributes]`, told apart by its first element, a
//!   string where the current shape has the version (an integer);
//! - older ones: a JSON object (written back in the shape above).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::user_agent;
use crate::clock::Timestamp;
use crate::record::{Attribute, Attributes, ClientMeta, SessionRecord, UserId};
use crate::store::StoreError;

/// An attribute as stored: its version and JSON text, or the version of
/// its removal.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PackedAttribute {
    Set(u64, String),
    Removed([u64; 1]),
}

/// Attributes as stored, by name.
type PackedAttributes = BTreeMap<String, PackedAttribute>;

/// A user id as stored: see the module documentation.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PackedUser {
    Number(u64),
    Text(String),
}

/// A client address as stored: see the module documentation.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PackedIp {
    V4(u32),
    Text(String),
}

/// The value: see the module documentation for the order.
#[derive(Serialize, Deserialize)]
struct Packed(
    u64,
    PackedUser,
    i64,
    i64,
    i64,
    i64,
    String,
    PackedIp,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "attributes")] PackedAttributes,
);

/// `cmsgpack` writes an empty table as an empty array, not a map: accept
/// both (the JSON of earlier versions, through `cjson`, likewise).
fn attributes<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrEmpty<V> {
        Map(BTreeMap<String, V>),
        Empty([(); 0]),
    }
    Ok(match MapOrEmpty::deserialize(d)? {
        MapOrEmpty::Map(m) => m,
        MapOrEmpty::Empty(_) => BTreeMap::new(),
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt session value: {what}"))
}

/// Largest user id kept as an integer: 15 digits, exact in Lua's doubles.
const MAX_NUMERIC_USER: u64 = 999_999_999_999_999;

fn pack_user(user: Option<&UserId>) -> PackedUser {
    let text = user.map_or("", UserId::as_str);
    // Canonical only ("007" and "+7" stay text), so the integer gives the
    // same id back.
    match text.parse::<u64>() {
        Ok(n) if n <= MAX_NUMERIC_USER && n.to_string() == text => PackedUser::Number(n),
        _ => PackedUser::Text(text.to_owned()),
    }
}

fn unpack_user(user: PackedUser) -> Result<Option<UserId>, StoreError> {
    let text = match user {
        PackedUser::Number(n) => n.to_string(),
        PackedUser::Text(text) if text.is_empty() => return Ok(None),
        PackedUser::Text(text) => text,
    };
    UserId::parse(text).map(Some).map_err(|_| corrupt("user"))
}

fn pack_ip(ip: Option<IpAddr>) -> PackedIp {
    match ip {
        Some(IpAddr::V4(v4)) => PackedIp::V4(v4.into()),
        Some(v6) => PackedIp::Text(v6.to_string()),
        None => PackedIp::Text(String::new()),
    }
}

fn unpack_ip(ip: PackedIp) -> Result<Option<IpAddr>, StoreError> {
    match ip {
        PackedIp::V4(bits) => Ok(Some(std::net::Ipv4Addr::from(bits).into())),
        PackedIp::Text(text) => parse_ip(&text),
    }
}

/// An address kept as text, `""` for none.
fn parse_ip(text: &str) -> Result<Option<IpAddr>, StoreError> {
    (!text.is_empty()).then(|| text.parse()).transpose().map_err(|_| corrupt("address"))
}

fn pack_attributes(attributes: &Attributes) -> PackedAttributes {
    attributes
        .iter()
        .map(|(name, a)| {
            let packed = match &a.value {
                Some(value) => PackedAttribute::Set(a.version, value.to_string()),
                None => PackedAttribute::Removed([a.version]),
            };
            (name.clone(), packed)
        })
        .collect()
}

fn unpack_attributes(packed: PackedAttributes) -> Result<Attributes, StoreError> {
    let mut attributes = BTreeMap::new();
    for (name, attribute) in packed {
        let attribute = match attribute {
            PackedAttribute::Set(version, text) => {
                Attribute { value: Some(serde_json::from_str(&text).map_err(|_| corrupt("attribute"))?), version }
            }
            PackedAttribute::Removed([version]) => Attribute { value: None, version },
        };
        attributes.insert(name, attribute);
    }
    Ok(attributes)
}

/// The value to `SET` for a record.
pub fn encode(record: &SessionRecord) -> Vec<u8> {
    // Differences wrap rather than overflow: decoding undoes them exactly.
    let created = record.created_at.as_millis();
    let last_seen = record.last_seen.as_millis();
    let packed = Packed(
        record.version,
        pack_user(record.user_id.as_ref()),
        created,
        record.absolute_deadline.as_millis().wrapping_sub(created),
        last_seen.wrapping_sub(created),
        record.idle_deadline.as_millis().wrapping_sub(last_seen),
        record.client.user_agent.as_deref().map(user_agent::compress).unwrap_or_default(),
        pack_ip(record.client.ip),
        pack_attributes(&record.attributes),
    );
    rmp_serde::to_vec(&packed).expect("session records serialise")
}

/// Rebuilds a record from its value, in any of its shapes.
pub fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    match bytes {
        [b'{', ..] => legacy::decode(bytes),
        // An array whose first element is a string (fixstr, str 8/16/32).
        [_, 0xa0..=0xbf | 0xd9..=0xdb, ..] => v1::decode(bytes),
        _ => decode_current(bytes),
    }
}

fn decode_current(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let Packed(version, user, created, absolute, last_seen, idle, user_agent, ip, attributes) =
        rmp_serde::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
    let last_seen = created.wrapping_add(last_seen);
    let user_agent = match user_agent.as_str() {
        "" => None,
        coded => Some(user_agent::expand(coded).ok_or_else(|| corrupt("user agent"))?),
    };
    Ok(SessionRecord {
        user_id: unpack_user(user)?,
        attributes: unpack_attributes(attributes)?,
        created_at: Timestamp::from_millis(created),
        last_seen: Timestamp::from_millis(last_seen),
        idle_deadline: Timestamp::from_millis(last_seen.wrapping_add(idle)),
        absolute_deadline: Timestamp::from_millis(created.wrapping_add(absolute)),
        version,
        client: ClientMeta { user_agent, ip: unpack_ip(ip)? },
    })
}

/// The MessagePack array of versions before 2026-12-06: absolute times,
/// the user agent and address as text.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    struct Packed(
        String,
        i64,
        i64,
        i64,
        i64,
        u64,
        String,
        String,
        #[serde(deserialize_with = "super::attributes")] PackedAttributes,
    );

    pub(super) fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        let Packed(user, created, last_seen, idle, absolute, version, user_agent, ip, attributes) =
            rmp_serde::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
        let user_id = unpack_user(PackedUser::Text(user))?;
        Ok(SessionRecord {
            user_id,
            attributes: unpack_attributes(attributes)?,
            created_at: Timestamp::from_millis(created),
            last_seen: Timestamp::from_millis(last_seen),
            idle_deadline: Timestamp::from_millis(idle),
            absolute_deadline: Timestamp::from_millis(absolute),
            version,
            client: ClientMeta { user_agent: (!user_agent.is_empty()).then_some(user_agent), ip: parse_ip(&ip)? },
        })
    }
}

/// The JSON object of earlier versions:
/// `{"u":"42","c":ms,"l":ms,"i":ms,"x":ms,"v":3,"m":{"user_agent":..,"ip":..},"t":"<csrf>","a":{..}}`
/// (`t`, the CSRF token they kept, is ignored: it is derived now).
mod legacy {
    use super::*;

    /// Attributes as stored: name → (version, JSON text, or `None` once removed).
    type StoredAttributes = BTreeMap<String, (u64, Option<String>)>;

    #[derive(Deserialize)]
    struct Stored {
        #[serde(default)]
        u: Option<UserId>,
        c: i64,
        l: i64,
        i: i64,
        x: i64,
        v: u64,
        m: ClientMeta,
        #[serde(default, deserialize_with = "super::attributes")]
        a: StoredAttributes,
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
        let mut attributes = BTreeMap::new();
        for (name, (version, text)) in stored.a {
            let value = text.map(|t| serde_json::from_str(&t)).transpose().map_err(|_| corrupt("attribute"))?;
            attributes.insert(name, Attribute { value, version });
        }
        Ok(SessionRecord {
            user_id: stored.u,
            attributes,
            created_at: Timestamp::from_millis(stored.c),
            last_seen: Timestamp::from_millis(stored.l),
            idle_deadline: Timestamp::from_millis(stored.i),
            absolute_deadline: Timestamp::from_millis(stored.x),
            version: stored.v,
            client: stored.m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: Option<&str>) -> SessionRecord {
        SessionRecord {
            user_id: user.map(|u| UserId::parse(u).unwrap()),
            attributes: Default::default(),
            created_at: Timestamp::from_millis(1_795_691_036_797),
            last_seen: Timestamp::from_millis(1_795_691_036_798),
            idle_deadline: Timestamp::from_millis(1_795_692_836_797),
            absolute_deadline: Timestamp::from_millis(1_795_734_236_797),
            version: 0,
            client: ClientMeta::new(Some("ua/1.0 \"quoted\" 网"), Some([127, 0, 0, 1].into())),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut r = record(Some("alice"));
        r.attributes
            .insert("cart".into(), Attribute { value: Some(serde_json::json!({"n": [1, "二", []]})), version: 3 });
        r.attributes.insert("gone".into(), Attribute { value: None, version: 4 });
        r.version = 4;
        assert_eq!(decode(&encode(&r)).unwrap(), r);
        let mut anon = record(None);
        anon.client = ClientMeta::new(None, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(decode(&encode(&anon)).unwrap(), anon);
        anon.client = ClientMeta::default();
        assert_eq!(decode(&encode(&anon)).unwrap(), anon);
    }

    /// A login from a desktop Chrome over IPv4, as `tessera` keeps one.
    fn typical(user: &str) -> SessionRecord {
        let mut r = record(Some(user));
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        r.client = ClientMeta::new(Some(chrome), Some([203, 0, 113, 7].into()));
        r.last_seen = r.created_at;
        r.idle_deadline = r.last_seen + std::time::Duration::from_secs(1800);
        r.absolute_deadline = r.created_at + std::time::Duration::from_secs(12 * 3600);
        r
    }

    #[test]
    fn a_typical_session_fits_one_redis_allocation() {
        // 44 bytes: Redis keeps the value inside its object (embstr).
        let mut r = typical("1000000");
        assert_eq!(encode(&r).len(), 40);
        r.last_seen = r.created_at + std::time::Duration::from_secs(11 * 3600);
        r.idle_deadline = r.last_seen + std::time::Duration::from_secs(1800);
        r.version = 100;
        assert_eq!(encode(&r).len(), 44, "touched and saved hours later");
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn user_ids_and_addresses_of_any_form_round_trip() {
        for user in ["0", "7", "007", "+7", "-7", "999999999999999", "1000000000000000", "18446744073709551616", "a b"]
        {
            let r = typical(user);
            assert_eq!(decode(&encode(&r)).unwrap(), r, "{user}");
        }
        let mut r = typical("1");
        for ip in ["0.0.0.0", "255.255.255.255", "::", "::ffff:1.2.3.4", "2001:db8::1"] {
            r.client.ip = Some(ip.parse().unwrap());
            assert_eq!(decode(&encode(&r)).unwrap(), r, "{ip}");
        }
        // Deadlines before creation, and times at the ends of the range.
        r.idle_deadline = r.created_at - std::time::Duration::from_secs(1);
        r.absolute_deadline = Timestamp::from_millis(i64::MAX);
        r.last_seen = Timestamp::from_millis(i64::MIN);
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn values_of_the_previous_version_are_read() {
        // As rmp-serde wrote them, and as cmsgpack wrote them back (an
        // empty attribute table as an empty array).
        let r = record(Some("bob"));
        let (c, l, i, x) = (1_795_691_036_797_i64, 1_795_691_036_798_i64, 1_795_692_836_797_i64, 1_795_734_236_797_i64);
        let ua = r.client.user_agent.clone().unwrap();
        let empty = BTreeMap::<String, (u64, String)>::new();
        let mut bytes = rmp_serde::to_vec(&("bob", c, l, i, x, 0u64, &ua, "127.0.0.1", &empty)).unwrap();
        assert_eq!(decode(&bytes).unwrap(), r);
        assert_eq!(bytes.pop(), Some(0x80));
        bytes.push(0x90);
        assert_eq!(decode(&bytes).unwrap(), r);
        let attributes = BTreeMap::from([("cart", (3u64, "[1]"))]);
        let bytes = rmp_serde::to_vec(&("", c, l, i, x, 3u64, "", "", &attributes)).unwrap();
        let anon = decode(&bytes).unwrap();
        assert_eq!(
            (&anon.user_id, &anon.client, anon.attribute("cart")),
            (&None, &ClientMeta::default(), Some(&serde_json::json!([1])))
        );
    }

    #[test]
    fn values_of_earlier_versions_are_read() {
        // As the JSON codec wrote them, a CSRF token and a profile included.
        let json = r#"{"u":"42","c":1795691036797,"l":1795691036798,"i":1795692836797,"x":1795734236797,"v":2,
            "m":{"user_agent":"ua\/1.0","ip":"10.0.0.1"},"t":"Oq3vB5Xwq2yq0rq5R1xQ0s2wq9m7kQm3cJ0Wc2xYb1Q",
            "a":{"user":[1,"{\"id\":42}"],"gone":[2,null]}}"#;
        let r = decode(json.as_bytes()).unwrap();
        assert_eq!(r.user_id.as_ref().map(UserId::as_str), Some("42"));
        assert_eq!((r.version, r.client.user_agent.as_deref()), (2, Some("ua/1.0")));
        assert_eq!(r.attribute("user"), Some(&serde_json::json!({"id": 42})));
        assert_eq!(r.attributes["gone"], Attribute { value: None, version: 2 });
        let empty = json.replace(r#""a":{"user":[1,"{\"id\":42}"],"gone":[2,null]}"#, r#""a":[]"#);
        assert!(decode(empty.as_bytes()).unwrap().attributes.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"{").is_err());
        assert!(decode(br#"{"c":1}"#).is_err());
        assert!(decode(b"\xff").is_err());
        assert!(decode(b"").is_err());
        assert!(decode(&[0x99, 0xa0]).is_err());
        let mut six = record(Some("x"));
        six.client.ip = Some("2001:db8::1".parse().unwrap());
        let mut bad_ip = encode(&six);
        let at = bad_ip.windows(11).position(|w| w == b"2001:db8::1").unwrap();
        bad_ip[at] = b'z';
        assert!(decode(&bad_ip).is_err());
        let mut bad_agent = encode(&record(Some("x")));
        let at = bad_agent.iter().position(|&b| b == b'u').unwrap();
        bad_agent[at] = 0;
        assert!(decode(&bad_agent).is_err(), "an escape of a character that needs none");
    }
}
