//! The service's one error type: each variant maps to an HTTP status and a
//! business code here and nowhere else. Internal details go to the log,
//! never into an answer.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tessera::{CsrfReason, FailureKind, SessionError};

use crate::envelope::{ErrorCode, Failure};
use crate::lang::{Msg, Phrase, Problems};
use crate::storage::StorageError;

/// The service's own codes (the session layer's are on [`ErrorCode`]).
pub mod codes {
    use super::*;

    /// 10007: no such endpoint.
    pub const NOT_FOUND: ErrorCode =
        ErrorCode::new(10007, "NOT_FOUND", StatusCode::NOT_FOUND, "接口不存在", "no such endpoint");
    /// 10008: the operator API without the admin token.
    pub const ADMIN_UNAUTHORIZED: ErrorCode = ErrorCode::new(
        10008,
        "ADMIN_UNAUTHORIZED",
        StatusCode::UNAUTHORIZED,
        "管理令牌无效",
        "admin token missing or wrong",
    );
    /// 20001: no user with that id.
    pub const USER_NOT_EXIST: ErrorCode =
        ErrorCode::new(20001, "USER_NOT_EXIST", StatusCode::NOT_FOUND, "用户不存在", "no such user");
    /// 20002: unknown phone, wrong password or wrong code: never which.
    pub const USER_LOGIN_FAIL: ErrorCode = ErrorCode::new(
        20002,
        "USER_LOGIN_FAIL",
        StatusCode::UNAUTHORIZED,
        "用户手机号或密码不正确",
        "wrong phone number or password",
    );
    /// 20004: the phone is already registered (only after a valid code).
    pub const USER_ALREADY_EXISTS: ErrorCode = ErrorCode::new(
        20004,
        "USER_ALREADY_EXISTS",
        StatusCode::CONFLICT,
        "手机号已注册",
        "this phone number is already registered",
    );
    /// 20005: the code does not match.
    pub const OTP_MISMATCH: ErrorCode = ErrorCode::new(
        20005,
        "OTP_MISMATCH",
        StatusCode::BAD_REQUEST,
        "短信验证码不符合",
        "the verification code does not match",
    );
    /// 20006: no usable code: never sent, expired, used, or too many wrong tries.
    pub const OTP_EXPIRED: ErrorCode = ErrorCode::new(
        20006,
        "OTP_EXPIRED",
        StatusCode::BAD_REQUEST,
        "短信验证码已失效，请重新获取",
        "the verification code has expired; request a new one",
    );
    /// 20007: the SMS gateway refused or failed; no code is pending.
    pub const OTP_SEND_FAILED: ErrorCode = ErrorCode::new(
        20007,
        "OTP_SEND_FAILED",
        StatusCode::BAD_GATEWAY,
        "短信发送失败，请稍后重试",
        "the text message could not be sent; try again later",
    );
    /// 20010: the credential was right, but an operator disabled the
    /// account (told only after the password or code was verified).
    pub const USER_DISABLED: ErrorCode = ErrorCode::new(
        20010,
        "USER_DISABLED",
        StatusCode::FORBIDDEN,
        "账号已被停用，请联系客服",
        "this account is disabled; contact support",
    );
    /// 20008: the caller has no session with that id.
    pub const SESSION_NOT_FOUND: ErrorCode =
        ErrorCode::new(20008, "SESSION_NOT_FOUND", StatusCode::NOT_FOUND, "会话不存在", "no such session");
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad or missing parameters; the messages say which (course wording
    /// in Chinese, and in English).
    #[error("validation: {0}")]
    Validation(Problems),
    /// Login refused, for whatever reason.
    #[error("login failed")]
    LoginFailed,
    /// The credential was right; the account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// No such user.
    #[error("user does not exist")]
    UserNotExist,
    /// Phone already registered.
    #[error("already registered")]
    AlreadyRegistered,
    /// Wrong code.
    #[error("otp mismatch")]
    OtpMismatch,
    /// No usable code.
    #[error("otp expired")]
    OtpExpired,
    /// The SMS could not be sent.
    #[error("otp send failed: {0}")]
    OtpSendFailed(String),
    /// No session with that id.
    #[error("session not found")]
    SessionNotFound,
    /// The operator API without (or with a wrong) admin token.
    #[error("admin token missing or wrong")]
    AdminUnauthorized,
    /// A rate limit; come back after this many seconds.
    #[error("rate limited for {0}s")]
    TooManyRequests(u64),
    /// The session layer's errors keep their own mapping.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A store the service depends on is down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: logged, answered as 10002.
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// One validation problem.
    pub fn invalid(msg: Msg) -> Self {
        Self::Validation(msg.into())
    }

    /// Wraps an unexpected error.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::operator::OperatorError> for ApiError {
    fn from(e: crate::operator::OperatorError) -> Self {
        use crate::operator::OperatorError;
        match e {
            OperatorError::NoSuchUser(_) => Self::UserNotExist,
            OperatorError::NoSuchSession { .. } => Self::SessionNotFound,
            OperatorError::Storage(e) => e.into(),
            OperatorError::Session(e) => Self::Session(e),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(reason) => Self::Unavailable(reason),
            StorageError::Conflict(reason) => Self::Session(SessionError::Conflict(reason)),
            StorageError::Failed(reason) => Self::Internal(reason),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::from(e).into()
    }
}

impl From<tessera::StoreError> for ApiError {
    fn from(e: tessera::StoreError) -> Self {
        StorageError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failure = match self {
            Self::Validation(problems) => Failure::new(ErrorCode::PARAMETER_VALIDATION_ERROR).with_problems(problems),
            Self::LoginFailed => Failure::new(codes::USER_LOGIN_FAIL),
            Self::AccountDisabled => Failure::new(codes::USER_DISABLED),
            Self::UserNotExist => Failure::new(codes::USER_NOT_EXIST),
            Self::AlreadyRegistered => Failure::new(codes::USER_ALREADY_EXISTS),
            Self::OtpMismatch => Failure::new(codes::OTP_MISMATCH),
            Self::OtpExpired => Failure::new(codes::OTP_EXPIRED),
            Self::OtpSendFailed(reason) => {
                tracing::warn!(%reason, "OTP send failed");
                Failure::new(codes::OTP_SEND_FAILED)
            }
            Self::SessionNotFound => Failure::new(codes::SESSION_NOT_FOUND),
            Self::AdminUnauthorized => Failure::new(codes::ADMIN_UNAUTHORIZED),
            Self::TooManyRequests(seconds) => Failure::new(ErrorCode::TOO_MANY_REQUESTS).retry_after(seconds),
            // The library's answer is marked with its kind; the session
            // layer renders it once, in the course envelope (see
            // `course_failure`), and adds what HTTP asks of a 401.
            Self::Session(e) => return e.into_response(),
            Self::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Failure::new(ErrorCode::SESSION_STORE_UNAVAILABLE)
            }
            Self::Internal(reason) => {
                tracing::error!(%reason, "internal error");
                Failure::new(ErrorCode::UNKNOWN_ERROR)
            }
        };
        failure.into_response()
    }
}

/// The course's code for a refusal of the session layer.
fn session_code(kind: FailureKind) -> ErrorCode {
    match kind {
        FailureKind::NotLoggedIn => ErrorCode::USER_NOT_LOGIN,
        FailureKind::CsrfRejected(_) => ErrorCode::CSRF_REJECTED,
        FailureKind::Conflict => ErrorCode::SESSION_CONFLICT,
        FailureKind::Unavailable => ErrorCode::SESSION_STORE_UNAVAILABLE,
        FailureKind::RefreshRejected => ErrorCode::REFRESH_TOKEN_INVALID,
        _ => ErrorCode::UNKNOWN_ERROR,
    }
}

/// The session layer's refusals in the course envelope (plugged into the
/// layer with `render_failures_with`): the wire contract of the course API.
/// A CSRF refusal's message names its reason.
pub fn course_failure(kind: FailureKind) -> Response {
    let failure = Failure::new(session_code(kind));
    match kind {
        FailureKind::CsrfRejected(reason) => failure.with_phrase(csrf_message(reason)),
        _ => failure,
    }
    .into_response()
}

/// Why a cross-site request was refused.
fn csrf_message(reason: CsrfReason) -> Phrase {
    let (zh, en) = match reason {
        CsrfReason::ForeignOrigin => (
            "跨站请求被拒绝：请求来源不在允许的来源之列",
            "cross-site request refused: its origin is not an allowed origin",
        ),
        CsrfReason::NullOrigin => (
            "跨站请求被拒绝：请求来源为null（本地文件或沙箱页面无法保持登录）",
            "cross-site request refused: its origin is null (a page opened from a file or a sandboxed frame cannot keep a session)",
        ),
        CsrfReason::CrossSite => {
            ("跨站请求被拒绝：浏览器标记为跨站请求", "cross-site request refused: the browser marked it cross-site")
        }
        CsrfReason::MissingToken => (
            "跨站请求被拒绝：缺少或错误的CSRF令牌（X-CSRF-Token）",
            "cross-site request refused: the CSRF token (X-CSRF-Token) is missing or wrong",
        ),
        _ => (ErrorCode::CSRF_REJECTED.message, ErrorCode::CSRF_REJECTED.english),
    };
    Phrase { zh, en }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: impl Into<ApiError>) -> (StatusCode, Option<String>) {
        let response = e.into().into_response();
        let retry = response.headers().get(http::header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry)
    }

    #[test]
    fn storage_errors_mean_the_same_from_every_store() {
        // The session library's store and the server's own stores agree.
        assert_eq!(answer(tessera::StoreError::Conflict("x".into())).0, StatusCode::CONFLICT);
        assert_eq!(answer(StorageError::Conflict("x".into())).0, StatusCode::CONFLICT);
        assert_eq!(answer(SessionError::Conflict("x".into())).0, StatusCode::CONFLICT);
        for down in [ApiError::from(tessera::StoreError::Unavailable("x".into())), sqlx::Error::PoolTimedOut.into()] {
            assert_eq!(answer(down), (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned())));
        }
        assert_eq!(answer(StorageError::Failed("x".into())).0, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
