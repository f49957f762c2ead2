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
//! [user or "", created ms, last seen ms, idle deadline ms, absolute deadline ms, version,
//!  user agent or "", address or "", {"cart": [3, "{\"items\":[1]}"], "gone": [2]}]
//! ```
//!
//! A removed attribute (a tombstone) is `[version]`. Values written by
//! earlier versions are JSON objects; they are still read (here and by the
//! scripts, which write them back in this shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::record::{Attribute, ClientMeta, SessionRecord, UserId};
use crate::store::StoreError;

/// An attribute as stored: its version and JSON text, or the version of
/// its removal.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PackedAttribute {
    Set(u64, String),
    Removed([u64; 1]),
}

/// The value: see the module documentation for the order.
#[derive(Serialize, Deserialize)]
struct Packed(
    String,
    i64,
    i64,
    i64,
    i64,
    u64,
    String,
    String,
    #[serde(deserialize_with = "attributes")] BTreeMap<String, PackedAttribute>,
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

/// The value to `SET` for a record.
pub fn encode(record: &SessionRecord) -> Vec<u8> {
    let packed = Packed(
        record.user_id.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default(),
        record.created_at.as_millis(),
        record.last_seen.as_millis(),
        record.idle_deadline.as_millis(),
        record.absolute_deadline.as_millis(),
        record.version,
        record.client.user_agent.clone().unwrap_or_default(),
        record.client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        record
            .attributes
            .iter()
            .map(|(name, a)| {
                let packed = match &a.value {
                    Some(value) => PackedAttribute::Set(a.version, value.to_string()),
                    None => PackedAttribute::Removed([a.version]),
                };
                (name.clone(), packed)
            })
            .collect(),
    );
    rmp_serde::to_vec(&packed).expect("session records serialise")
}

/// Rebuilds a record from its value, in either shape.
pub fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    if bytes.first() == Some(&b'{') {
        return legacy::decode(bytes);
    }
    let Packed(user, created, last_seen, idle, absolute, version, user_agent, ip, packed) =
        rmp_serde::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
    let user_id = (!user.is_empty()).then(|| UserId::parse(user)).transpose().map_err(|_| corrupt("user"))?;
    let ip = (!ip.is_empty()).then(|| ip.parse()).transpose().map_err(|_| corrupt("address"))?;
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
    Ok(SessionRecord {
        user_id,
        attributes,
        created_at: Timestamp::from_millis(created),
        last_seen: Timestamp::from_millis(last_seen),
        idle_deadline: Timestamp::from_millis(idle),
        absolute_deadline: Timestamp::from_millis(absolute),
        version,
        client: ClientMeta { user_agent: (!user_agent.is_empty()).then_some(user_agent), ip },
    })
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

    #[test]
    fn a_typical_session_is_small() {
        // A user, the four times, a browser's user agent, an address.
        let r = record(Some("1234567"));
        let len = encode(&r).len();
        assert!(len <= 36 + 8 + r.client.user_agent.as_ref().unwrap().len() + 10 + 4, "{len} bytes");
    }

    #[test]
    fn an_empty_attribute_list_written_back_by_lua_is_read() {
        // cmsgpack writes an empty table as an empty array (0x90), where
        // rmp-serde wrote an empty map (0x80).
        let r = record(Some("bob"));
        let mut bytes = encode(&r);
        assert_eq!(bytes.pop(), Some(0x80));
        bytes.push(0x90);
        assert_eq!(decode(&bytes).unwrap(), r);
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
        let mut bad_ip = encode(&record(Some("x")));
        let at = bad_ip.windows(9).position(|w| w == b"127.0.0.1").unwrap();
        bad_ip[at] = b'z';
        assert!(decode(&bad_ip).is_err());
    }
}
