//! One-time SMS codes.

use std::fmt;

use subtle::ConstantTimeEq;

/// Six decimal digits.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode([u8; 6]);

/// Why a string is not an OTP code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("短信验证码格式不正确")]
pub struct InvalidOtpCode;

impl OtpCode {
    /// Draws a code uniformly from 000000..=999999 with the OS CSPRNG.
    pub fn generate() -> Self {
        // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6
        // below 2^32, so every code is equally likely.
        let n = loop {
            let mut buf = [0u8; 4];
            getrandom::fill(&mut buf).expect("the OS CSPRNG is unavailable");
            let n = u32::from_le_bytes(buf);
            if n < 4_294_000_000 {
                break n % 1_000_000;
            }
        };
        let text = format!("{n:06}");
        Self::parse(&text).expect("six digits")
    }

    /// Parses a code as a user typed it (surrounding spaces ignored).
    pub fn parse(input: &str) -> Result<Self, InvalidOtpCode> {
        let bytes = input.trim().as_bytes();
        let digits: [u8; 6] = bytes.try_into().map_err(|_| InvalidOtpCode)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(InvalidOtpCode);
        }
        Ok(Self(digits))
    }

    /// The digits, for the SMS sender only.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &OtpCode) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_digits_and_spread() {
        let codes: std::collections::HashSet<String> =
            (0..2000).map(|_| OtpCode::generate().expose().to_owned()).collect();
        assert!(codes.iter().all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(codes.len() > 1990, "codes repeat far too often");
    }

    #[test]
    fn parsing_accepts_exactly_six_digits() {
        assert_eq!(OtpCode::parse(" 012345 ").unwrap().expose(), "012345");
        for bad in ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "12 345"] {
            assert_eq!(OtpCode::parse(bad), Err(InvalidOtpCode), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_code() {
        assert_eq!(format!("{:?}", OtpCode::parse("123456").unwrap()), "OtpCode(******)");
    }
}
