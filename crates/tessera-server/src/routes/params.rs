//! Reading an endpoint's typed request from a JSON or form body (or a
//! query string).
//!
//! The course's pages post forms; newer clients post JSON. Both are first
//! flattened into one object of strings (numbers and booleans in JSON
//! become their text, `null` is absent, a duplicate form key keeps its last
//! value), and the endpoint's request struct is read from that, so every
//! endpoint accepts both bodies alike. A malformed body is a 10001 with a
//! clear message rather than a bare 4xx or a serde message.
//!
//! Request fields stay optional strings: whether one is missing or bad is
//! the domain types' call, so the messages and their order are the
//! course's, not serde's.

use axum::extract::{FromRequest, FromRequestParts, Request};
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::lang::Msg;

/// The largest body accepted; a registration is well under 1 KiB.
///
/// Applied by [`Params`], through which every route reads its body; no
/// layer sets it for the whole router (axum's `DefaultBodyLimit` would
/// insert an extension into every request). A route that read its body
/// with one of axum's own extractors (`Json`, `Form`, `Bytes`) would get
/// axum's 2 MB default instead: read bodies through [`Params`].
pub const MAX_BODY: usize = 16 * 1024;

/// An endpoint's request `T`, read from a JSON object or a form body (or
/// from no body at all, which reads as an empty object).
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

/// An endpoint's request `T`, read from the query string as leniently as
/// [`Params`] reads a form (a repeated key keeps its last value).
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

/// For `#[serde(deserialize_with)]`: the value trimmed, `None` if blank.
pub fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// For `#[serde(deserialize_with)]`: the value as sent, `None` if empty.
/// Secrets are not trimmed: a space may be part of a password.
pub fn untrimmed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// The flattened parameters, every value a JSON string.
fn from_json(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let bad = || ApiError::invalid(Msg::BodyNotJsonObject);
    let value: Value = serde_json::from_slice(bytes).map_err(|_| bad())?;
    let Value::Object(object) = value else { return Err(bad()) };
    let mut flat = Map::new();
    // Every field is checked, used or not: a nested value anywhere is a
    // client error (and a sign of operator injection), reported by name.
    for (k, v) in object {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return Err(ApiError::invalid(Msg::NotScalar(k))),
        };
        flat.insert(k, Value::String(text));
    }
    Ok(flat)
}

/// The pairs of a form body or query string; the last of a repeated key wins.
fn from_form(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(bytes).map_err(|_| ApiError::invalid(Msg::FormInvalid))?;
    Ok(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// The request struct from the flattened parameters. Its fields are
/// optional strings, so this fails only for a struct that asks for more.
fn typed<T: DeserializeOwned>(flat: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(flat)).map_err(|_| ApiError::invalid(Msg::Invalid))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        // The limit is applied here, where the body is read, rather than by
        // axum's `DefaultBodyLimit` layer, which inserted an extension into
        // every request, bodiless reads included.
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| ApiError::invalid(Msg::BodyTooLarge(MAX_BODY)))?;
        let flat = match content_type.as_deref() {
            Some("application/json") => from_json(&bytes)?,
            Some("application/x-www-form-urlencoded") => from_form(&bytes)?,
            None if bytes.is_empty() => Map::new(),
            _ => return Err(ApiError::invalid(Msg::BodyNotJsonOrForm)),
        };
        typed(flat).map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        typed(from_form(query.as_bytes())?).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "trimmed")]
        telphone: Option<String>,
        #[serde(default, deserialize_with = "trimmed")]
        age: Option<String>,
        #[serde(default, deserialize_with = "trimmed")]
        x: Option<String>,
        #[serde(default, deserialize_with = "trimmed")]
        name: Option<String>,
        #[serde(default, deserialize_with = "untrimmed")]
        password: Option<String>,
    }

    fn probe(flat: Map<String, Value>) -> Probe {
        typed(flat).unwrap()
    }

    #[test]
    fn json_and_form_give_the_same_request() {
        let j = probe(from_json(br#"{"telphone":"13812345678","age":30,"x":null,"extra":true}"#).unwrap());
        let f = probe(from_form(b"telphone=13812345678&age=30&extra=1").unwrap());
        for p in [&j, &f] {
            assert_eq!(p.telphone.as_deref(), Some("13812345678"));
            assert_eq!(p.age.as_deref(), Some("30"));
            assert_eq!(p.x, None);
        }
    }

    #[test]
    fn malformed_bodies_are_validation_errors() {
        for bad in [&b"{"[..], b"[1,2]", b"\"s\"", br#"{"a":{"b":1}}"#, br#"{"a":[1]}"#, b"\xff\xfe"] {
            assert!(matches!(from_json(bad), Err(ApiError::Validation(_))));
        }
    }

    #[test]
    fn blank_values_count_as_missing_but_passwords_keep_spaces() {
        let p = probe(from_form(b"name=%20%20&password=%20pw%20").unwrap());
        assert_eq!(p.name, None);
        assert_eq!(p.password.as_deref(), Some(" pw "));
        let p = probe(from_form(b"password=").unwrap());
        assert_eq!(p.password, None);
    }

    #[test]
    fn a_repeated_form_key_keeps_its_last_value() {
        let p = probe(from_form(b"age=1&age=2").unwrap());
        assert_eq!(p.age.as_deref(), Some("2"));
    }
}
