//! The language of `errMsg`: Chinese (the course's) by default, English
//! when the request's `Accept-Language` prefers it.
//!
//! Every message a client can read exists in both languages in one place:
//! the codes' own messages on [`crate::envelope::ErrorCode`] (`message`,
//! `english`), the CSRF reasons as [`Phrase`] constants in `error.rs`, and
//! the validation messages of the domain types and request parsers as the
//! typed [`Msg`] (its table is [`Msg::phrase`]). Which one an answer uses is
//! decided when a failure is rendered, from the request's language, which
//! `crate::outer` reads from `Accept-Language` and sets on the thread while
//! the request's code runs: a scan of one header, no allocation, and
//! nothing at all is rendered differently on a success.

use std::borrow::Cow;
use std::fmt;

/// A language `errMsg` can be written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lang {
    /// Chinese, the course's language; the default.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The language an `Accept-Language` value prefers among those there
    /// are (RFC 9110 §12.5.4): the range with the highest `q` whose
    /// primary subtag is `en` or `zh` (the earlier one on a tie; `q=0`
    /// means "not this one"); Chinese when neither is named. `*` and other
    /// languages are passed over.
    pub fn from_accept_language(value: &[u8]) -> Self {
        let Ok(value) = std::str::from_utf8(value) else { return Self::Zh };
        let mut best: Option<(f32, Self)> = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let lang = if primary.eq_ignore_ascii_case("en") {
                Self::En
            } else if primary.eq_ignore_ascii_case("zh") {
                Self::Zh
            } else {
                continue;
            };
            let mut q = 1.0_f32;
            for param in parts {
                let param = param.trim();
                if let Some(v) = param.strip_prefix("q=").or_else(|| param.strip_prefix("Q=")) {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Self::Zh, |(_, lang)| lang)
    }
}

/// The language of the request being served (Chinese outside any request).
pub fn current() -> Lang {
    crate::stack::request_language().unwrap_or_default()
}

/// Runs `future` as a request in `lang` would (tests, and work a handler
/// hands to another task).
pub fn scope<F: std::future::Future>(lang: Lang, future: F) -> crate::stack::InRequestLanguage<F> {
    crate::stack::request_scope(lang, future)
}

/// A message in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phrase {
    /// Chinese, the default.
    pub zh: &'static str,
    /// English.
    pub en: &'static str,
}

impl Phrase {
    /// The message in `lang`.
    pub const fn get(self, lang: Lang) -> &'static str {
        match lang {
            Lang::Zh => self.zh,
            Lang::En => self.en,
        }
    }
}

/// A validation message: what is wrong with one parameter (10001).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// No phone.
    PhoneMissing,
    /// Not a phone number.
    PhoneInvalid,
    /// No code.
    CodeMissing,
    /// Not six digits.
    CodeInvalid,
    /// No name.
    NameMissing,
    /// A name too long, too short or with control characters.
    NameInvalid,
    /// No gender.
    GenderMissing,
    /// Not 1 or 2.
    GenderInvalid,
    /// No age.
    AgeMissing,
    /// Below 0.
    AgeTooLow,
    /// Above 150.
    AgeTooHigh,
    /// Not a whole number.
    AgeNotInteger,
    /// No password.
    PasswordMissing,
    /// Shorter than 8 or longer than 128 characters.
    PasswordLength,
    /// No current password (password change).
    OldPasswordMissing,
    /// No new password (password change).
    NewPasswordMissing,
    /// A flag that is not `true`/`false`; the field's name.
    NotBoolean(&'static str),
    /// `endOtherSessions` and `keepOtherSessions` disagree.
    SessionFlagsContradict,
    /// No user id.
    UserIdMissing,
    /// A user id that is not an integer.
    UserIdNotInteger,
    /// `X-Original-Method` is not an HTTP method.
    OriginalMethodInvalid,
    /// A JSON body that is not an object.
    BodyNotJsonObject,
    /// A JSON field holding an object or array; the field's name.
    NotScalar(String),
    /// A form body that does not parse.
    FormInvalid,
    /// A body over the limit; the limit in bytes.
    BodyTooLarge(usize),
    /// Neither JSON nor a form.
    BodyNotJsonOrForm,
    /// The code's own message (a request struct that asks for more).
    Invalid,
}

impl Msg {
    /// The table: each message in both languages (the course's Chinese
    /// wording first). Messages with a value have it put in by
    /// [`Msg::text`].
    pub const fn phrase(&self) -> Phrase {
        let (zh, en) = match self {
            Self::PhoneMissing => ("手机号不能为空", "phone number is required"),
            Self::PhoneInvalid => ("手机号格式不正确", "phone number is not valid"),
            Self::CodeMissing => ("短信验证码不能为空", "verification code is required"),
            Self::CodeInvalid => ("短信验证码格式不正确", "verification code must be 6 digits"),
            Self::NameMissing => ("用户名不能为空", "name is required"),
            Self::NameInvalid => ("用户名长度必须在1到64个字符之间", "name must be 1 to 64 characters"),
            Self::GenderMissing => ("性别不能不填写", "gender is required"),
            Self::GenderInvalid => ("性别只能是1（男）或2（女）", "gender must be 1 (male) or 2 (female)"),
            Self::AgeMissing => ("年龄不能不填写", "age is required"),
            Self::AgeTooLow => ("年龄必须大于0岁", "age must be 0 or more"),
            Self::AgeTooHigh => ("年龄必须小于150岁", "age must be 150 or less"),
            Self::AgeNotInteger => ("年龄必须是整数", "age must be a whole number"),
            Self::PasswordMissing => ("密码不能为空", "password is required"),
            Self::PasswordLength => ("密码长度必须在8到128个字符之间", "password must be 8 to 128 characters"),
            Self::OldPasswordMissing => ("原密码不能为空", "current password is required"),
            Self::NewPasswordMissing => ("新密码不能为空", "new password is required"),
            Self::NotBoolean(_) => ("{}必须是true或false", "{} must be true or false"),
            Self::SessionFlagsContradict => (
                "endOtherSessions与keepOtherSessions相互矛盾",
                "endOtherSessions and keepOtherSessions contradict each other",
            ),
            Self::UserIdMissing => ("用户id不能为空", "user id is required"),
            Self::UserIdNotInteger => ("用户id必须是整数", "user id must be an integer"),
            Self::OriginalMethodInvalid => {
                ("X-Original-Method不是合法的HTTP方法", "X-Original-Method is not an HTTP method")
            }
            Self::BodyNotJsonObject => ("请求体不是合法的JSON对象", "the body is not a JSON object"),
            Self::NotScalar(_) => ("参数{}必须是字符串或数字", "parameter {} must be a string or a number"),
            Self::FormInvalid => ("表单格式不正确", "the form body is malformed"),
            Self::BodyTooLarge(_) => ("请求体不能超过{}字节", "the body must not exceed {} bytes"),
            Self::BodyNotJsonOrForm => ("请求体必须是JSON或表单", "the body must be JSON or a form"),
            Self::Invalid => ("参数不合法", "invalid parameters"),
        };
        Phrase { zh, en }
    }

    /// The message in `lang`, its value put in.
    pub fn text(&self, lang: Lang) -> Cow<'static, str> {
        let template = self.phrase().get(lang);
        match self {
            Self::NotBoolean(name) => template.replace("{}", name).into(),
            Self::NotScalar(name) => template.replace("{}", name).into(),
            Self::BodyTooLarge(limit) => template.replace("{}", &limit.to_string()).into(),
            _ => template.into(),
        }
    }
}

/// Every problem of one request, in the order they were found; shown
/// joined by `,` (the course's validator did so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Msg>);

impl Problems {
    /// The problems in `lang`, joined.
    pub fn text(&self, lang: Lang) -> String {
        let mut out = String::new();
        for (i, msg) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&msg.text(lang));
        }
        out
    }
}

impl From<Msg> for Problems {
    fn from(msg: Msg) -> Self {
        Self(vec![msg])
    }
}

/// In Chinese, the default (logs and `ApiError`'s `Display`).
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text(Lang::Zh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(value: &str) -> Lang {
        Lang::from_accept_language(value.as_bytes())
    }

    #[test]
    fn english_only_when_preferred() {
        for en in [
            "en",
            "en-US",
            "EN-gb",
            "en;q=0.9,zh;q=0.8",
            "fr,en;q=0.5",
            "zh;q=0.1, en-US;q=0.2",
            "en ; q=1",
            "en;q=0.5,zh;q=0.5",
        ] {
            assert_eq!(pick(en), Lang::En, "{en}");
        }
        for zh in
            ["zh-CN,en;q=0.5", "zh", "", "*", "fr", "de,*;q=0.5", "en;q=0", "zh;q=0.5,en;q=0.5", "en;q=x", "\u{ff}"]
        {
            assert_eq!(pick(zh), Lang::Zh, "{zh}");
        }
    }

    #[test]
    fn messages_have_both_languages_and_values() {
        assert_eq!(Msg::NotBoolean("endOtherSessions").text(Lang::Zh), "endOtherSessions必须是true或false");
        assert_eq!(Msg::BodyTooLarge(16384).text(Lang::En), "the body must not exceed 16384 bytes");
        let p = Problems(vec![Msg::CodeMissing, Msg::NameMissing]);
        assert_eq!(p.to_string(), "短信验证码不能为空,用户名不能为空");
        assert_eq!(p.text(Lang::En), "verification code is required,name is required");
    }

    #[tokio::test]
    async fn the_language_is_the_requests() {
        assert_eq!(current(), Lang::Zh);
        assert_eq!(scope(Lang::En, async { current() }).await, Lang::En);
    }
}
