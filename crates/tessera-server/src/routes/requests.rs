//! What clients send, one struct per endpoint.
//!
//! Every field is an optional string as the client sent it (read by
//! [`super::params::Params`] from JSON or a form): blank means missing,
//! and only secrets keep their surrounding spaces. The domain types then
//! parse the fields, in the order below, so which problem is reported first
//! and in which words stays the course's. The phone number has two
//! spellings: `telephone`, and the course's `telphone`; the first that is
//! present wins.

use serde::Deserialize;
use utoipa::ToSchema;

use super::params::{trimmed, untrimmed};
use crate::domain::new_user::RegistrationFields;
use crate::domain::{NewUser, OtpCode, Password, Telephone};
use crate::error::ApiError;
use crate::lang::{Msg, Problems};

fn missing(message: Msg) -> ApiError {
    ApiError::invalid(message)
}

/// The phone number from either spelling, parsed.
fn telephone(telephone: &Option<String>, telphone: &Option<String>) -> Result<Telephone, ApiError> {
    let raw = either(telephone, telphone).ok_or_else(|| missing(Msg::PhoneMissing))?;
    Telephone::parse(raw).map_err(|_| ApiError::invalid(Msg::PhoneInvalid))
}

fn either<'a>(telephone: &'a Option<String>, telphone: &'a Option<String>) -> Option<&'a str> {
    telephone.as_deref().or(telphone.as_deref())
}

/// `POST /user/getotp {telephone}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GetOtpRequest {
    /// The phone to send a code to.
    #[serde(default, deserialize_with = "trimmed")]
    pub telephone: Option<String>,
    /// The course's spelling of `telephone`.
    #[serde(default, deserialize_with = "trimmed")]
    pub telphone: Option<String>,
}

impl GetOtpRequest {
    /// The phone number, or the course's message for a missing or bad one.
    pub fn telephone(&self) -> Result<Telephone, ApiError> {
        telephone(&self.telephone, &self.telphone)
    }
}

/// `POST /user/register {telephone, otpCode, name, gender, age, password}`.
/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The code sent by `/user/getotp`.
    #[serde(default, deserialize_with = "trimmed")]
    pub otp_code: Option<String>,
    /// Display name.
    #[serde(default, deserialize_with = "trimmed")]
    pub name: Option<String>,
    /// `1`/`2` (or `male`/`female`).
    #[serde(default, deserialize_with = "trimmed")]
    pub gender: Option<String>,
    /// Whole years.
    #[serde(default, deserialize_with = "trimmed")]
    pub age: Option<String>,
    /// The phone the code was sent to.
    #[serde(default, deserialize_with = "trimmed")]
    pub telephone: Option<String>,
    /// The course's spelling of `telephone`.
    #[serde(default, deserialize_with = "trimmed")]
    pub telphone: Option<String>,
    /// The new password, not trimmed.
    #[serde(default, deserialize_with = "untrimmed")]
    pub password: Option<String>,
}

impl RegisterRequest {
    /// The code and the registration. Every problem with the registration
    /// is reported at once, after a missing code, as the course's validator
    /// did; the code's format is judged only once the rest is valid.
    pub fn parse(&self) -> Result<(OtpCode, NewUser), ApiError> {
        let code = self.otp_code.as_deref().ok_or(Msg::CodeMissing);
        let user = NewUser::parse(RegistrationFields {
            name: self.name.as_deref(),
            gender: self.gender.as_deref(),
            age: self.age.as_deref(),
            telephone: either(&self.telephone, &self.telphone),
            password: self.password.as_deref(),
        });
        match (code, user) {
            (Ok(code), Ok(user)) => Ok((parse_code(code)?, user)),
            (Err(a), Err(Problems(b))) => Err(ApiError::Validation(Problems([vec![a], b].concat()))),
            (Err(a), Ok(_)) => Err(missing(a)),
            (Ok(_), Err(b)) => Err(ApiError::Validation(b)),
        }
    }
}

fn parse_code(raw: &str) -> Result<OtpCode, ApiError> {
    OtpCode::parse(raw).map_err(|_| ApiError::invalid(Msg::CodeInvalid))
}

/// `POST /user/login {telephone, password}` or `{telephone, otpCode}`.
/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// The account's phone.
    #[serde(default, deserialize_with = "trimmed")]
    pub telephone: Option<String>,
    /// The course's spelling of `telephone`.
    #[serde(default, deserialize_with = "trimmed")]
    pub telphone: Option<String>,
    /// A code from `/user/getotp`; wins over `password` when both are sent.
    #[serde(default, deserialize_with = "trimmed")]
    pub otp_code: Option<String>,
    /// The password, not trimmed.
    #[serde(default, deserialize_with = "untrimmed")]
    pub password: Option<String>,
}

/// How a login proves itself.
#[derive(Clone, Copy, ToSchema)]
pub enum LoginProof<'a> {
    /// A one-time code, as sent (a malformed one fails as a wrong one).
    Otp(&'a str),
    /// A password, as sent.
    Password(&'a str),
}

impl LoginRequest {
    /// The phone number; judged before anything else, so that the
    /// throttles can count the attempt before the proof is looked at.
    pub fn telephone(&self) -> Result<Telephone, ApiError> {
        telephone(&self.telephone, &self.telphone)
    }

    /// The code if one was sent, else the password.
    pub fn proof(&self) -> Result<LoginProof<'_>, ApiError> {
        match (self.otp_code.as_deref(), self.password.as_deref()) {
            (Some(code), _) => Ok(LoginProof::Otp(code)),
            (None, Some(password)) => Ok(LoginProof::Password(password)),
            (None, None) => Err(missing(Msg::PasswordMissing)),
        }
    }
}

/// `POST /user/password {oldPassword, newPassword, endOtherSessions}`;
/// the current password may also be spelled `password`, or replaced by an
/// `otpCode` from `/user/getotp`; `keepOtherSessions: true` is the same as
/// `endOtherSessions: false`. No `Debug`: it holds passwords.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    /// The current password, not trimmed.
    #[serde(default, deserialize_with = "untrimmed")]
    pub old_password: Option<String>,
    /// Another spelling of `oldPassword`.
    #[serde(default, deserialize_with = "untrimmed")]
    pub password: Option<String>,
    /// A code from `/user/getotp` instead of the current password; wins
    /// when both are sent, as at login.
    #[serde(default, deserialize_with = "trimmed")]
    pub otp_code: Option<String>,
    /// The new password, not trimmed.
    #[serde(default, deserialize_with = "untrimmed")]
    pub new_password: Option<String>,
    /// End the caller's other sessions (default `true`).
    #[serde(default, deserialize_with = "trimmed")]
    pub end_other_sessions: Option<String>,
    /// The opposite of `endOtherSessions`.
    #[serde(default, deserialize_with = "trimmed")]
    pub keep_other_sessions: Option<String>,
}

/// What a password change is, once parsed.
pub struct PasswordChange<'a> {
    /// How the caller proves to know the account.
    pub proof: LoginProof<'a>,
    /// The new password, accepted by the registration rules.
    pub new_password: Password,
    /// Whether the caller's other sessions end.
    pub end_others: bool,
}

impl ChangePasswordRequest {
    /// The proof, the new password and the choice about the other
    /// sessions, checked in that order (the course's messages).
    pub fn parse(&self) -> Result<PasswordChange<'_>, ApiError> {
        let proof = match (self.otp_code.as_deref(), self.old_password.as_deref().or(self.password.as_deref())) {
            (Some(code), _) => LoginProof::Otp(code),
            (None, Some(password)) => LoginProof::Password(password),
            (None, None) => return Err(missing(Msg::OldPasswordMissing)),
        };
        let new_password = self.new_password.as_deref().ok_or_else(|| missing(Msg::NewPasswordMissing))?;
        let new_password = Password::parse(new_password).map_err(|_| ApiError::invalid(Msg::PasswordLength))?;
        let flag = |value: &Option<String>, name: &'static str| -> Result<Option<bool>, ApiError> {
            match value.as_deref() {
                None => Ok(None),
                Some("true" | "1") => Ok(Some(true)),
                Some("false" | "0") => Ok(Some(false)),
                Some(_) => Err(ApiError::invalid(Msg::NotBoolean(name))),
            }
        };
        let end = flag(&self.end_other_sessions, "endOtherSessions")?;
        let keep = flag(&self.keep_other_sessions, "keepOtherSessions")?;
        let end_others = match (end, keep) {
            (Some(end), Some(keep)) if end == keep => {
                return Err(missing(Msg::SessionFlagsContradict));
            }
            (Some(end), _) => end,
            (None, Some(keep)) => !keep,
            // ASVS V3.3.3: ending the others is what a change offers by default.
            (None, None) => true,
        };
        Ok(PasswordChange { proof, new_password, end_others })
    }
}

/// `GET /user/get?id=N`
#[derive(Debug, Deserialize, ToSchema)]
pub struct GetUserQuery {
    /// The user's id. Not blank-filtered: `?id=` is a bad id, not a
    /// missing one.
    #[serde(default)]
    pub id: Option<String>,
}

impl GetUserQuery {
    /// The id, or the course's message for a missing or non-integer one.
    pub fn id(&self) -> Result<i64, ApiError> {
        let id = self.id.as_deref().ok_or_else(|| missing(Msg::UserIdMissing))?;
        id.trim().parse().map_err(|_| missing(Msg::UserIdNotInteger))
    }
}

/// `POST /auth/refresh {refreshToken}`; browsers send the cookie instead.
/// Or the RFC 6749 §6 form, `grant_type=refresh_token&refresh_token=…`
/// (its optional `client_id` and `scope` are ignored). No `Debug`: it
/// holds a credential.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token, as sent.
    #[serde(default, deserialize_with = "untrimmed")]
    pub refresh_token: Option<String>,
    /// RFC 6749 §6: present, the request is an OAuth one and is answered
    /// in RFC 6749 §5 shapes; it must be `refresh_token`.
    #[serde(default, rename = "grant_type", deserialize_with = "trimmed")]
    pub grant_type: Option<String>,
    /// RFC 6749 §6: the refresh token, as sent.
    #[serde(default, rename = "refresh_token", deserialize_with = "untrimmed")]
    pub oauth_refresh_token: Option<String>,
}

impl RefreshRequest {
    /// Whether this is an RFC 6749 §6 request (it names a grant type).
    pub fn is_oauth(&self) -> bool {
        self.grant_type.is_some()
    }
}

/// `POST /oauth/introspect {token, token_type_hint, client_id,
/// client_secret}` (RFC 7662's and RFC 6749 §2.3.1's form names). No
/// `Debug`: it holds credentials.
#[derive(Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The access or session token to judge, as sent.
    #[serde(default, deserialize_with = "untrimmed")]
    pub token: Option<String>,
    /// `access_token` or `refresh_token` (RFC 7662 §2.1); any value is
    /// accepted and none narrows the search.
    #[serde(default, deserialize_with = "trimmed")]
    pub token_type_hint: Option<String>,
    /// The client id, when not sent as HTTP Basic.
    #[serde(default, deserialize_with = "untrimmed")]
    pub client_id: Option<String>,
    /// The client's secret (or the shared introspection secret), when not
    /// sent as HTTP Basic.
    #[serde(default, deserialize_with = "untrimmed")]
    pub client_secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn register(body: serde_json::Value) -> Result<(OtpCode, NewUser), String> {
        let request: RegisterRequest = serde_json::from_value(body).unwrap();
        request.parse().map_err(|e| e.to_string())
    }

    #[test]
    fn a_missing_code_comes_first_then_every_registration_problem() {
        assert_eq!(
            register(json!({})).unwrap_err(),
            "validation: 短信验证码不能为空,用户名不能为空,性别不能不填写,年龄不能不填写,手机号不能为空,密码不能为空"
        );
        let full =
            json!({"telphone": "13812345678", "name": "张三", "gender": "1", "age": "30", "password": "correct horse"});
        assert_eq!(register(full.clone()).unwrap_err(), "validation: 短信验证码不能为空");
        let mut bad_code = full;
        bad_code["otpCode"] = json!("12x");
        assert_eq!(register(bad_code).unwrap_err(), "validation: 短信验证码格式不正确");
    }

    #[test]
    fn telephone_wins_over_telphone_and_blank_is_missing() {
        let r: GetOtpRequest = serde_json::from_value(json!({"telephone": "13812345678", "telphone": "x"})).unwrap();
        assert_eq!(r.telephone().unwrap().as_str(), "+8613812345678");
        let r: GetOtpRequest = serde_json::from_value(json!({"telephone": " ", "telphone": "13812345678"})).unwrap();
        assert_eq!(r.telephone().unwrap().as_str(), "+8613812345678");
        let r: GetOtpRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(r.telephone().unwrap_err().to_string(), "validation: 手机号不能为空");
    }

    #[test]
    fn a_login_code_wins_over_the_password() {
        let r: LoginRequest = serde_json::from_value(json!({"otpCode": "123456", "password": " pw "})).unwrap();
        assert!(matches!(r.proof(), Ok(LoginProof::Otp("123456"))));
        let r: LoginRequest = serde_json::from_value(json!({"otpCode": " ", "password": " pw "})).unwrap();
        assert!(matches!(r.proof(), Ok(LoginProof::Password(" pw "))));
    }

    #[test]
    fn a_password_change_ends_the_others_unless_told_not_to() {
        let parse = |v| {
            let r: ChangePasswordRequest = serde_json::from_value(v).unwrap();
            r.parse().map(|c| (matches!(c.proof, LoginProof::Password(_)), c.end_others)).map_err(|e| e.to_string())
        };
        let new = "another horse battery";
        assert_eq!(parse(json!({"oldPassword": "x", "newPassword": new})), Ok((true, true)));
        assert_eq!(parse(json!({"password": "x", "newPassword": new, "endOtherSessions": "false"})), Ok((true, false)));
        assert_eq!(
            parse(json!({"otpCode": "123456", "newPassword": new, "keepOtherSessions": "true"})),
            Ok((false, false))
        );
        assert_eq!(parse(json!({"newPassword": new})).unwrap_err(), "validation: 原密码不能为空");
        assert_eq!(parse(json!({"oldPassword": "x"})).unwrap_err(), "validation: 新密码不能为空");
        assert_eq!(
            parse(json!({"oldPassword": "x", "newPassword": "short"})).unwrap_err(),
            "validation: 密码长度必须在8到128个字符之间"
        );
        assert!(parse(json!({"oldPassword": "x", "newPassword": new, "endOtherSessions": "maybe"})).is_err());
        assert!(parse(
            json!({"oldPassword": "x", "newPassword": new, "endOtherSessions": "true", "keepOtherSessions": "true"})
        )
        .is_err());
    }

    #[test]
    fn an_empty_id_is_a_bad_id_not_a_missing_one() {
        let q = |v| serde_json::from_value::<GetUserQuery>(v).unwrap().id().unwrap_err().to_string();
        assert_eq!(q(json!({})), "validation: 用户id不能为空");
        assert_eq!(q(json!({"id": ""})), "validation: 用户id必须是整数");
    }
}
