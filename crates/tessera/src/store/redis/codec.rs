//! A session record as one compact JSON value, the shape the Lua scripts
//! edit with `cjson` (see `scripts`).
//!
//! One value rather than a hash of fields: a hash whose values pass 64
//! bytes (a browser's user agent, a profile attribute) is stored by Redis as
//! a hashtable, about twice the memory, and `HGETALL` returns one bulk string
//! per field and value. Attribute values are kept as JSON *text* inside the
//! value, so the scripts never decode and re-encode application data: they
//! only compare versions and move strings.
//!
//! ```text
//! {"u":"42","c":ms,"l":ms,"i":ms,"x":ms,"v":3,"m":{"user_agent":..,"ip":..},"t":"<csrf>",
//!  "a":{"cart":[3,"{\"items\":[1]}"],"gone":[2,null]}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::csrf::CsrfToken;
use crate::record::{Attribute, ClientMeta, SessionRecord, UserId};
use crate::store::StoreError;

/// Attributes as stored: name → (version, JSON text, or `None` once removed).
type StoredAttributes = BTreeMap<String, (u64, Option<String>)>;

#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<UserId>,
    c: i64,
    l: i64,
    i: i64,
    x: i64,
    v: u64,
    m: ClientMeta,
    t: CsrfToken,
    /// name → [version, JSON text or null for a removal]
    #[serde(default, deserialize_with = "attributes")]
    a: StoredAttributes,
}

/// `cjson` writes an empty table as `{}` but a Lua-side empty map could in
/// principle come back as `[]`; accept both.
fn attributes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StoredAttributes, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrEmpty {
        Map(StoredAttributes),
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
    let stored = Stored {
        u: record.user_id.clone(),
        c: record.created_at.as_millis(),
        l: record.last_seen.as_millis(),
        i: record.idle_deadline.as_millis(),
        x: record.absolute_deadline.as_millis(),
        v: record.version,
        m: record.client.clone(),
        t: record.csrf_token.clone(),
        a: record
            .attributes
            .iter()
            .map(|(name, a)| (name.clone(), (a.version, a.value.as_ref().map(|v| v.to_string()))))
            .collect(),
    };
    serde_json::to_vec(&stored).expect("session records serialise")
}

/// Rebuilds a record from its value.
pub fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
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
        csrf_token: stored.t,
    })
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
            csrf_token: CsrfToken::generate(),
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
        let anon = record(None);
        assert_eq!(decode(&encode(&anon)).unwrap(), anon);
    }

    #[test]
    fn what_lua_writes_back_is_read() {
        // cjson escapes '/' and writes an empty attribute map as {}.
        let r = record(Some("bob"));
        let text = String::from_utf8(encode(&r)).unwrap().replace('/', "\\/");
        assert_eq!(decode(text.as_bytes()).unwrap(), r);
        let empty_list = String::from_utf8(encode(&r)).unwrap().replace("\"a\":{}", "\"a\":[]");
        assert_eq!(decode(empty_list.as_bytes()).unwrap(), r);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"{").is_err());
        assert!(decode(br#"{"c":1}"#).is_err());
        assert!(decode(b"\xff").is_err());
    }
}
