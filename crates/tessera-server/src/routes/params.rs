//! Request parameters from a JSON or form body, as one flat map.
//!
//! The course's pages post forms; newer clients post JSON. Both become the
//! same map of strings, so handlers parse every field the same way, and a
//! malformed body is a 10001 with a clear message rather than a bare 4xx.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::header;

use crate::error::ApiError;

/// The largest body accepted; a registration is well under 1 KiB.
pub const MAX_BODY: usize = 16 * 1024;

/// Body parameters by name.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// The parameter `name`, trimmed; `None` if missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// The raw parameter (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The phone number, spelled `telephone` or the course's `telphone`.
    pub fn telephone(&self) -> Option<&str> {
        self.get("telephone").or_else(|| self.get("telphone"))
    }

    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        let bad = || ApiError::Validation("请求体不是合法的JSON对象".into());
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| bad())?;
        let object = value.as_object().ok_or_else(bad)?;
        let mut map = HashMap::with_capacity(object.len());
        for (k, v) in object {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(ApiError::Validation(format!("参数{k}必须是字符串或数字"))),
            };
            map.insert(k.clone(), text);
        }
        Ok(Self(map))
    }

    fn from_form(bytes: &[u8]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(bytes).map_err(|_| ApiError::Validation("表单格式不正确".into()))?;
        Ok(Self(pairs.into_iter().collect()))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::Validation(format!("请求体不能超过{MAX_BODY}字节")))?;
        match content_type.as_deref() {
            Some("application/json") => Self::from_json(&bytes),
            Some("application/x-www-form-urlencoded") => Self::from_form(&bytes),
            None if bytes.is_empty() => Ok(Self::default()),
            _ => Err(ApiError::Validation("请求体必须是JSON或表单".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_give_the_same_map() {
        let j = Params::from_json(br#"{"telphone":"13812345678","age":30,"x":null}"#).unwrap();
        let f = Params::from_form(b"telphone=13812345678&age=30").unwrap();
        for p in [&j, &f] {
            assert_eq!(p.telephone(), Some("13812345678"));
            assert_eq!(p.get("age"), Some("30"));
            assert_eq!(p.get("x"), None);
        }
    }

    #[test]
    fn malformed_bodies_are_validation_errors() {
        for bad in [&b"{"[..], b"[1,2]", b"\"s\"", br#"{"a":{"b":1}}"#, b"\xff\xfe"] {
            assert!(matches!(Params::from_json(bad), Err(ApiError::Validation(_))));
        }
    }

    #[test]
    fn blank_values_count_as_missing_but_passwords_keep_spaces() {
        let p = Params::from_form(b"name=%20%20&password=%20pw%20").unwrap();
        assert_eq!(p.get("name"), None);
        assert_eq!(p.raw("password"), Some(" pw "));
    }
}
