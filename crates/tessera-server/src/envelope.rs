//! The JSON envelope every answer wears, and the business error codes.
//!
//! Success: `{"status":"success","data":...}`; failure:
//! `{"status":"fail","data":{"errCode":N,"errMsg":"..."}}`, with a real HTTP
//! status. The codes continue the numbering of the course API Tessera keeps
//! compatible with. The session library renders its refusals as RFC 9457
//! problem documents by default; the server plugs [`crate::error::course_failure`]
//! into its layer so they wear this envelope too.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use std::borrow::Cow;

use crate::lang::{Lang, Phrase, Problems};

/// A business error: code, name, HTTP status and the message clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The number in `errCode`.
    pub code: u32,
    /// The stable name, e.g. `USER_NOT_LOGIN`.
    pub name: &'static str,
    /// The HTTP status sent with it.
    pub status: StatusCode,
    /// The default `errMsg` (Chinese, the course's).
    pub message: &'static str,
    /// `errMsg` for a request that prefers English (see [`crate::lang`]).
    pub english: &'static str,
}

impl ErrorCode {
    /// 10001: a parameter is missing or malformed.
    pub const PARAMETER_VALIDATION_ERROR: Self =
        Self::new(10001, "PARAMETER_VALIDATION_ERROR", StatusCode::BAD_REQUEST, "参数不合法", "invalid parameters");
    /// 10002: something failed inside; details go to the log, never the body.
    pub const UNKNOWN_ERROR: Self =
        Self::new(10002, "UNKNOWN_ERROR", StatusCode::INTERNAL_SERVER_ERROR, "未知错误", "unknown error");
    /// 10003: a rate limit was hit; `Retry-After` says when to come back.
    pub const TOO_MANY_REQUESTS: Self = Self::new(
        10003,
        "TOO_MANY_REQUESTS",
        StatusCode::TOO_MANY_REQUESTS,
        "请求过于频繁",
        "too many requests; try again later",
    );
    /// 10004: the session store cannot be reached; `Retry-After` is set.
    pub const SESSION_STORE_UNAVAILABLE: Self = Self::new(
        10004,
        "SESSION_STORE_UNAVAILABLE",
        StatusCode::SERVICE_UNAVAILABLE,
        "会话服务暂不可用",
        "the session service is unavailable; try again shortly",
    );
    /// 10005: a cookie-carried state change failed the CSRF rules.
    pub const CSRF_REJECTED: Self =
        Self::new(10005, "CSRF_REJECTED", StatusCode::FORBIDDEN, "跨站请求被拒绝", "cross-site request refused");
    /// 10006: another request changed the same session attribute first.
    pub const SESSION_CONFLICT: Self = Self::new(
        10006,
        "SESSION_CONFLICT",
        StatusCode::CONFLICT,
        "会话已被并发修改，请重试",
        "the session was changed concurrently; try again",
    );
    /// 20003: the caller is not logged in (no, malformed, ended or expired token).
    pub const USER_NOT_LOGIN: Self =
        Self::new(20003, "USER_NOT_LOGIN", StatusCode::UNAUTHORIZED, "用户还未登陆", "not logged in");
    /// 20009: the refresh token is malformed, unknown, expired or was
    /// already used (token mode); the client must log in again.
    pub const REFRESH_TOKEN_INVALID: Self = Self::new(
        20009,
        "REFRESH_TOKEN_INVALID",
        StatusCode::UNAUTHORIZED,
        "刷新令牌无效，请重新登录",
        "the refresh token is not valid; log in again",
    );

    /// A code, with its message in Chinese and in English; for
    /// applications' own constants.
    pub const fn new(
        code: u32,
        name: &'static str,
        status: StatusCode,
        message: &'static str,
        english: &'static str,
    ) -> Self {
        Self { code, name, status, message, english }
    }

    /// The code's message in `lang`.
    pub const fn message_in(&self, lang: Lang) -> &'static str {
        Phrase { zh: self.message, en: self.english }.get(lang)
    }

    /// The failure response with the default message.
    pub fn into_response(self) -> Response {
        Failure::new(self).into_response()
    }
}

/// A more precise `errMsg` than the code's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A fixed message in both languages.
    Phrase(Phrase),
    /// Validation problems, each in both languages.
    Problems(Problems),
    /// A text in one language only (an application's own).
    Text(String),
}

impl Message {
    fn text(&self, lang: Lang) -> Cow<'_, str> {
        match self {
            Self::Phrase(p) => Cow::Borrowed(p.get(lang)),
            Self::Problems(p) => Cow::Owned(p.text(lang)),
            Self::Text(t) => Cow::Borrowed(t),
        }
    }
}

/// A failure answer: an [`ErrorCode`], perhaps a more precise message, and
/// perhaps a `Retry-After`. The message is written in the request's
/// language ([`crate::lang::current`]) when the answer is made.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The code.
    pub code: ErrorCode,
    /// The message; the code's default if `None`.
    pub message: Option<Message>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Failure {
    /// A failure with the code's own message. 429 and 503 get a
    /// `Retry-After` of one second unless told otherwise.
    pub fn new(code: ErrorCode) -> Self {
        let retry_after = matches!(code.status, StatusCode::SERVICE_UNAVAILABLE).then_some(1);
        Self { code, message: None, retry_after }
    }

    /// Replaces the message with a text in one language.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(Message::Text(message.into()));
        self
    }

    /// Replaces the message with one in both languages.
    pub fn with_phrase(mut self, phrase: Phrase) -> Self {
        self.message = Some(Message::Phrase(phrase));
        self
    }

    /// Replaces the message with validation problems.
    pub fn with_problems(mut self, problems: Problems) -> Self {
        self.message = Some(Message::Problems(problems));
        self
    }

    /// Sets `Retry-After` in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    status: &'static str,
    data: &'a T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailData<'a> {
    err_code: u32,
    err_msg: &'a str,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let lang = crate::lang::current();
        let err_msg = match &self.message {
            Some(message) => message.text(lang),
            None => Cow::Borrowed(self.code.message_in(lang)),
        };
        let data = FailData { err_code: self.code.code, err_msg: &err_msg };
        let mut response = (self.code.status, Json(Body { status: "fail", data: &data })).into_response();
        response.extensions_mut().insert(crate::fail_as_200::BusinessFailure);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A success answer: `{"status":"success","data":...}` with 200.
#[derive(Debug, Clone)]
pub struct Success<T>(pub T);

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        Json(Body { status: "success", data: &self.0 }).into_response()
    }
}

impl<T: Serialize> Success<T> {
    /// The answer's body, for an answer serialized once and sent many
    /// times as [`Serialized`].
    pub fn to_body(&self) -> axum::body::Bytes {
        let body = serde_json::to_vec(&Body { status: "success", data: &self.0 });
        body.expect("response types serialize to JSON infallibly").into()
    }
}

/// The success envelope around `data`, already serialized as JSON: the
/// same bytes as [`Success::to_body`] of the value `data` was serialized
/// from, for a caller that keeps only the data (a cache entry that must
/// stay small).
pub fn success_around(data: &[u8]) -> axum::body::Bytes {
    const HEAD: &[u8] = br#"{"status":"success","data":"#;
    let mut body = Vec::with_capacity(HEAD.len() + data.len() + 1);
    body.extend_from_slice(HEAD);
    body.extend_from_slice(data);
    body.push(b'}');
    body.into()
}

/// Headers a success answer carries by the time it leaves the stack
/// (content-type, content-length, cache-control, x-request-id, and vary on
/// `GET /`). Room for six is the header map's smallest allocation, which
/// the allocator serves from its small-object path; room for eight made the
/// entries a block over 1 KiB and took the slower path (callgrind: ~120
/// instructions more per answer).
pub const ANSWER_HEADERS: usize = 6;

/// A success answer serialized earlier ([`Success::to_body`]), sent as is
/// with 200: what a hot read answers from memory.
#[derive(Debug, Clone)]
pub struct Serialized(pub axum::body::Bytes);

impl IntoResponse for Serialized {
    fn into_response(self) -> Response {
        // No `Content-Length` of our own: the body's size is exact and axum's
        // router sets the header from it, checking any value already there;
        // set here too, the number was formatted here and checked there
        // (callgrind: some 50 instructions more per read). `GET /` differs:
        // its length never changes, so it keeps one value made once.
        let mut response = Response::new(axum::body::Body::from(self.0));
        let headers = response.headers_mut();
        // Room for what the stack adds on the way out (vary, cache-control,
        // x-request-id), so the map is allocated once, not grown twice.
        headers.reserve(ANSWER_HEADERS);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body(r: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(r.into_body(), 1 << 16).await.unwrap()).unwrap()
    }

    #[test]
    fn an_envelope_around_serialized_data_is_the_serializers() {
        #[derive(Serialize)]
        struct Data {
            id: i64,
            name: &'static str,
        }
        for data in [Data { id: 1, name: "张三" }, Data { id: -7, name: "\"quoted\" }" }] {
            let json = serde_json::to_vec(&data).unwrap();
            assert_eq!(success_around(&json), Success(&data).to_body());
        }
    }

    #[tokio::test]
    async fn failures_wear_the_course_envelope() {
        let r = Failure::new(ErrorCode::USER_NOT_LOGIN).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            body(r).await,
            serde_json::json!({"status":"fail","data":{"errCode":20003,"errMsg":"用户还未登陆"}})
        );
    }

    #[tokio::test]
    async fn unavailable_carries_retry_after() {
        let r = ErrorCode::SESSION_STORE_UNAVAILABLE.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = Failure::new(ErrorCode::TOO_MANY_REQUESTS).retry_after(42).with_message("slow down").into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        assert_eq!(body(r).await["data"]["errMsg"], "slow down");
    }

    #[tokio::test]
    async fn a_request_that_prefers_english_reads_english() {
        let english = |f: Failure| crate::lang::scope(Lang::En, async move { f.into_response() });
        let r = english(Failure::new(ErrorCode::USER_NOT_LOGIN)).await;
        assert_eq!(body(r).await["data"]["errMsg"], "not logged in");
        let problems = Problems(vec![crate::lang::Msg::PhoneMissing, crate::lang::Msg::PasswordLength]);
        let r = english(Failure::new(ErrorCode::PARAMETER_VALIDATION_ERROR).with_problems(problems.clone())).await;
        assert_eq!(body(r).await["data"]["errMsg"], "phone number is required,password must be 8 to 128 characters");
        let r = Failure::new(ErrorCode::PARAMETER_VALIDATION_ERROR).with_problems(problems).into_response();
        assert_eq!(body(r).await["data"]["errMsg"], "手机号不能为空,密码长度必须在8到128个字符之间");
    }

    #[tokio::test]
    async fn success_wraps_data() {
        let r = Success(serde_json::json!({"id": 1})).into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, serde_json::json!({"status":"success","data":{"id":1}}));
    }
}
