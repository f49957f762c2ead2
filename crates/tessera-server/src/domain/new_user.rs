//! A registration, checked field by field with the course's messages.

use super::{Password, Telephone};
use crate::lang::{Msg, Problems};

/// A display name: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Parses a name (surrounding spaces trimmed).
    pub fn parse(input: &str) -> Option<Self> {
        let name = input.trim();
        let n = name.chars().count();
        ((1..=64).contains(&n) && !name.chars().any(char::is_control)).then(|| Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The course's gender column: 1 = male, 2 = female.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    /// 1
    Male = 1,
    /// 2
    Female = 2,
}

impl Gender {
    /// Parses `1`/`2` (or `male`/`female`).
    pub fn parse(input: &str) -> Option<Self> {
        match input.trim().to_ascii_lowercase().as_str() {
            "1" | "male" => Some(Self::Male),
            "2" | "female" => Some(Self::Female),
            _ => None,
        }
    }

    /// The stored number.
    pub fn code(self) -> i64 {
        self as i64
    }
}

/// The raw fields of a registration, as the client sent them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegistrationFields<'a> {
    /// `name`
    pub name: Option<&'a str>,
    /// `gender`
    pub gender: Option<&'a str>,
    /// `age`
    pub age: Option<&'a str>,
    /// `telephone` / `telphone`
    pub telephone: Option<&'a str>,
    /// `password`
    pub password: Option<&'a str>,
}

/// A registration whose every field is valid.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Display name.
    pub name: UserName,
    /// Gender.
    pub gender: Gender,
    /// Age, 0 to 150.
    pub age: u8,
    /// Phone number.
    pub telephone: Telephone,
    /// Password, not yet hashed.
    pub password: Password,
}

/// Parses one field, noting the course's message when it is missing or bad.
fn field<T>(
    problems: &mut Vec<Msg>,
    value: Option<&str>,
    missing: Msg,
    parse: impl FnOnce(&str) -> Result<T, Msg>,
) -> Option<T> {
    let Some(value) = value else {
        problems.push(missing);
        return None;
    };
    parse(value).map_err(|problem| problems.push(problem)).ok()
}

fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

impl NewUser {
    /// Checks every field and reports every problem at once, in order
    /// (shown joined by "," as the course's validator did).
    pub fn parse(f: RegistrationFields<'_>) -> Result<Self, Problems> {
        let mut problems: Vec<Msg> = Vec::new();
        let name =
            field(&mut problems, present(f.name), Msg::NameMissing, |n| UserName::parse(n).ok_or(Msg::NameInvalid));
        let gender =
            field(&mut problems, present(f.gender), Msg::GenderMissing, |g| Gender::parse(g).ok_or(Msg::GenderInvalid));
        let age = field(&mut problems, present(f.age), Msg::AgeMissing, |a| match a.trim().parse::<i64>() {
            Ok(n) if n < 0 => Err(Msg::AgeTooLow),
            Ok(n) if n > 150 => Err(Msg::AgeTooHigh),
            Ok(n) => Ok(n as u8),
            Err(_) => Err(Msg::AgeNotInteger),
        });
        let telephone = field(&mut problems, present(f.telephone), Msg::PhoneMissing, |t| {
            Telephone::parse(t).map_err(|_| Msg::PhoneInvalid)
        });
        let password = field(&mut problems, f.password.filter(|p| !p.is_empty()), Msg::PasswordMissing, |p| {
            Password::parse(p).map_err(|_| Msg::PasswordLength)
        });
        match (name, gender, age, telephone, password) {
            (Some(name), Some(gender), Some(age), Some(telephone), Some(password)) if problems.is_empty() => {
                Ok(Self { name, gender, age, telephone, password })
            }
            _ => Err(Problems(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> RegistrationFields<'static> {
        RegistrationFields {
            name: Some("张三"),
            gender: Some("1"),
            age: Some("30"),
            telephone: Some("13812345678"),
            password: Some("correct horse"),
        }
    }

    #[test]
    fn a_complete_registration_parses() {
        let u = NewUser::parse(full()).unwrap();
        assert_eq!(u.name.as_str(), "张三");
        assert_eq!(u.gender, Gender::Male);
        assert_eq!(u.age, 30);
        assert_eq!(u.telephone.as_str(), "+8613812345678");
    }

    #[test]
    fn every_missing_field_is_reported_in_the_course_wording() {
        let err = NewUser::parse(RegistrationFields::default()).unwrap_err().to_string();
        assert_eq!(err, "用户名不能为空,性别不能不填写,年龄不能不填写,手机号不能为空,密码不能为空");
    }

    #[test]
    fn ranges_and_formats_are_checked() {
        let err = NewUser::parse(RegistrationFields { age: Some("151"), gender: Some("3"), ..full() })
            .unwrap_err()
            .to_string();
        assert_eq!(err, "性别只能是1（男）或2（女）,年龄必须小于150岁");
        assert!(NewUser::parse(RegistrationFields { age: Some("-1"), ..full() })
            .unwrap_err()
            .to_string()
            .contains("大于0"));
        assert!(NewUser::parse(RegistrationFields { age: Some("x"), ..full() }).is_err());
        assert!(NewUser::parse(RegistrationFields { password: Some("short"), ..full() }).is_err());
        assert!(NewUser::parse(RegistrationFields { telephone: Some("12"), ..full() })
            .unwrap_err()
            .to_string()
            .contains("手机号"));
        assert!(NewUser::parse(RegistrationFields { name: Some(&*"x".repeat(65).leak()), ..full() }).is_err());
        assert!(NewUser::parse(RegistrationFields { age: Some("0"), ..full() }).is_ok());
        assert!(NewUser::parse(RegistrationFields { age: Some("150"), ..full() }).is_ok());
    }
}
