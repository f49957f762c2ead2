//! Phone numbers, normalised to E.164.

use std::fmt;

/// A phone number in E.164 form (`+` and 8 to 15 digits).
///
/// Accepts E.164 (`+8613812345678`, spaces and dashes ignored) or an
/// 11-digit mainland China mobile number (`13812345678`, also with a `0086`
/// or `86` prefix), which becomes `+86…`. One person's number has exactly
/// one spelling, so the unique index on it means what it says.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Telephone(String);

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("手机号格式不正确")]
pub struct InvalidTelephone;

impl Telephone {
    /// Parses and normalises a phone number.
    pub fn parse(input: &str) -> Result<Self, InvalidTelephone> {
        let compact: String = input.trim().chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if compact.len() > 20 {
            return Err(InvalidTelephone);
        }
        let (plus, digits) = match compact.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, compact.as_str()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidTelephone);
        }
        let mainland = |n: &str| n.len() == 11 && n.starts_with('1') && (b'3'..=b'9').contains(&n.as_bytes()[1]);
        let national = digits.strip_prefix("0086").or_else(|| (!plus).then(|| digits.strip_prefix("86")).flatten());
        if !plus {
            if mainland(digits) {
                return Ok(Self(format!("+86{digits}")));
            }
            if let Some(n) = national.filter(|n| mainland(n)) {
                return Ok(Self(format!("+86{n}")));
            }
            return Err(InvalidTelephone);
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(InvalidTelephone);
        }
        if let Some(n) = digits.strip_prefix("86") {
            if !mainland(n) {
                return Err(InvalidTelephone);
            }
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len() - 4..];
        format!("+***{tail}")
    }
}

impl fmt::Debug for Telephone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Telephone({})", self.masked())
    }
}

impl fmt::Display for Telephone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainland_numbers_become_e164() {
        for input in
            ["13812345678", "138 1234 5678", "138-1234-5678", "8613812345678", "008613812345678", "+86 138 1234 5678"]
        {
            assert_eq!(Telephone::parse(input).unwrap().as_str(), "+8613812345678", "{input}");
        }
    }

    #[test]
    fn other_countries_keep_their_e164_form() {
        assert_eq!(Telephone::parse("+44 20 7946 0958").unwrap().as_str(), "+442079460958");
        assert_eq!(Telephone::parse("+14155552671").unwrap().as_str(), "+14155552671");
    }

    #[test]
    fn junk_is_refused() {
        for input in [
            "",
            "+",
            "abc",
            "1381234567",
            "23812345678",
            "12812345678",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+8612345",
            "138123456789",
            "13812345678\0",
            "１３８１２３４５６７８",
            "' or 1=1",
            &"1".repeat(100),
        ] {
            assert_eq!(Telephone::parse(input), Err(InvalidTelephone), "{input:?}");
        }
    }

    #[test]
    fn debug_masks_the_number() {
        let t = Telephone::parse("13812345678").unwrap();
        assert_eq!(format!("{t:?}"), "Telephone(+***5678)");
    }
}
