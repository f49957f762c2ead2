//! A session record as the fields of one Redis hash (see `scripts`).

use std::collections::HashMap;

use crate::clock::Timestamp;
use crate::record::{Attribute, Attributes, SessionRecord, UserId};
use crate::store::StoreError;

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt session hash: {what}"))
}

/// The fields to `HSET` for a new record.
pub fn encode(record: &SessionRecord) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = vec![
        ("c".into(), record.created_at.as_millis().to_string().into_bytes()),
        ("l".into(), record.last_seen.as_millis().to_string().into_bytes()),
        ("i".into(), record.idle_deadline.as_millis().to_string().into_bytes()),
        ("x".into(), record.absolute_deadline.as_millis().to_string().into_bytes()),
        ("ver".into(), record.version.to_string().into_bytes()),
        ("m".into(), serde_json::to_vec(&record.client).expect("client metadata serialises")),
        ("t".into(), record.csrf_token.expose().into_bytes()),
    ];
    if let Some(user) = &record.user_id {
        fields.push(("u".into(), user.as_str().as_bytes().to_vec()));
    }
    for (name, attribute) in &record.attributes {
        if let Some(value) = &attribute.value {
            fields.push((format!("a:{name}"), serde_json::to_vec(value).expect("JSON values serialise")));
        }
        fields.push((format!("v:{name}"), attribute.version.to_string().into_bytes()));
    }
    fields
}

/// Rebuilds a record from `HGETALL`'s pairs; `None` for an empty hash.
pub fn decode(pairs: Vec<(String, Vec<u8>)>) -> Result<Option<SessionRecord>, StoreError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut fields: HashMap<String, Vec<u8>> = HashMap::with_capacity(pairs.len());
    let mut values: HashMap<String, serde_json::Value> = HashMap::new();
    let mut versions: Vec<(String, u64)> = Vec::new();
    for (field, bytes) in pairs {
        if let Some(name) = field.strip_prefix("a:") {
            values.insert(name.to_owned(), serde_json::from_slice(&bytes).map_err(|_| corrupt("attribute"))?);
        } else if let Some(name) = field.strip_prefix("v:") {
            versions.push((name.to_owned(), number(&bytes, "attribute version")? as u64));
        } else {
            fields.insert(field, bytes);
        }
    }
    let field = |name: &str| fields.get(name).ok_or_else(|| corrupt(name));
    let ts = |name: &str| -> Result<Timestamp, StoreError> { Ok(Timestamp::from_millis(number(field(name)?, name)?)) };
    let mut attributes = Attributes::new();
    for (name, version) in versions {
        let value = values.remove(&name);
        attributes.insert(name, Attribute { value, version });
    }
    let user_id = match fields.get("u") {
        Some(u) => {
            Some(UserId::parse(String::from_utf8(u.clone()).map_err(|_| corrupt("u"))?).map_err(|_| corrupt("u"))?)
        }
        None => None,
    };
    Ok(Some(SessionRecord {
        user_id,
        attributes,
        created_at: ts("c")?,
        last_seen: ts("l")?,
        idle_deadline: ts("i")?,
        absolute_deadline: ts("x")?,
        version: number(field("ver")?, "ver")? as u64,
        client: serde_json::from_slice(field("m")?).map_err(|_| corrupt("m"))?,
        csrf_token: serde_json::from_value(serde_json::Value::String(
            String::from_utf8(field("t")?.clone()).map_err(|_| corrupt("t"))?,
        ))
        .map_err(|_| corrupt("t"))?,
    }))
}

fn number(bytes: &[u8], what: &str) -> Result<i64, StoreError> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| corrupt(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csrf::CsrfToken;
    use crate::record::ClientMeta;

    fn conformance_record(user: Option<&str>) -> SessionRecord {
        SessionRecord {
            user_id: user.map(|u| UserId::parse(u).unwrap()),
            attributes: Attributes::new(),
            created_at: Timestamp::from_millis(1),
            last_seen: Timestamp::from_millis(2),
            idle_deadline: Timestamp::from_millis(3),
            absolute_deadline: Timestamp::from_millis(4),
            version: 0,
            client: ClientMeta::new(Some("ua"), Some([127, 0, 0, 1].into())),
            csrf_token: CsrfToken::generate(),
        }
    }

    #[test]
    fn records_round_trip_through_hash_fields() {
        let mut record = conformance_record(Some("alice"));
        record
            .attributes
            .insert("cart".into(), Attribute { value: Some(serde_json::json!({"n": [1, "二"]})), version: 3 });
        record.attributes.insert("gone".into(), Attribute { value: None, version: 4 });
        record.version = 4;
        let back = decode(encode(&record)).unwrap().unwrap();
        assert_eq!(back, record);
        assert_eq!(decode(Vec::new()).unwrap(), None);
    }

    #[test]
    fn missing_fields_are_errors_not_panics() {
        assert!(decode(vec![("c".into(), b"1".to_vec())]).is_err());
        assert!(decode(vec![("a:x".into(), b"{".to_vec())]).is_err());
    }
}
