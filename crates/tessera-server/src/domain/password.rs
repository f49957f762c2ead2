//! Passwords as users choose them.

use std::fmt;

/// A candidate password: 8 to 128 characters (NIST 800-63B: at least 8,
/// and a cap so that hashing stays cheap to attempt).
#[derive(Clone)]
pub struct Password(String);

/// Why a string is not an acceptable password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("密码长度必须在8到128个字符之间")]
pub struct WeakPassword;

impl Password {
    /// Accepts a new password.
    pub fn parse(input: &str) -> Result<Self, WeakPassword> {
        let n = input.chars().count();
        if !(8..=128).contains(&n) {
            return Err(WeakPassword);
        }
        Ok(Self(input.to_owned()))
    }

    /// A password offered at login: any length up to the cap is checked
    /// against the hash, so a short one fails as "wrong", revealing nothing.
    pub fn offered(input: &str) -> Option<Self> {
        (!input.is_empty() && input.chars().count() <= 128).then(|| Self(input.to_owned()))
    }

    /// The secret, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("密码密码密码密码").is_ok());
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Password::offered("").is_none());
        assert!(Password::offered("short").is_some());
        assert!(!format!("{:?}", Password::parse("hunter22!").unwrap()).contains("hunter"));
    }
}
