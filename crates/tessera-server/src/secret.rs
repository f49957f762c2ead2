//! The server secret: the key for OTP MACs.
//!
//! Generated on first start into `<data-dir>/secret` with mode 0600, or
//! given by configuration so that several nodes agree.

use std::fmt;
use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// 256 secret bits.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    /// Reads `path`, or creates it with fresh random bytes (mode 0600).
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} must hold 32 bytes", path.display()),
                    )
                })?;
                Ok(Self(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                Ok(Self(bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a key file: 32 raw bytes, or the text forms of [`ServerSecret::parse`].
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Self(raw));
        }
        Self::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a secret given as configuration: 64 hex digits or the base64
    /// (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits")).collect()
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines.iter().find_map(|e| e.decode(text).ok()).unwrap_or_default()
        };
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|_| "the secret must be 32 bytes, as 64 hex digits or base64".to_owned())?;
        Ok(Self(bytes))
    }

    /// A stable pseudonym of `value` for use as a storage key (96 bits of
    /// HMAC, hex): equal inputs give equal keys, and without the secret the
    /// key tells nothing about the input.
    pub fn pseudonym(&self, value: &str) -> String {
        self.mac("tessera/pseudonym/v1", &[value.as_bytes()])[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed, so no two different
    /// lists of parts can collide) under a purpose label.
    pub fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in std::iter::once(purpose.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_owner_only_permissions_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let a = ServerSecret::load_or_create(&path).unwrap();
        let b = ServerSecret::load_or_create(&path).unwrap();
        assert_eq!(a.mac("t", &[b"x"]), b.mac("t", &[b"x"]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn macs_separate_parts_and_purposes() {
        let s = ServerSecret([7; 32]);
        assert_ne!(s.mac("otp", &[b"ab", b"c"]), s.mac("otp", &[b"a", b"bc"]));
        assert_ne!(s.mac("otp", &[b"x"]), s.mac("csrf", &[b"x"]));
    }

    #[test]
    fn configured_secrets_parse_as_hex_or_base64() {
        let hex = "00".repeat(31) + "ff";
        let from_hex = ServerSecret::parse(&hex).unwrap();
        let from_b64 = ServerSecret::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP8=").unwrap();
        assert_eq!(from_hex.mac("t", &[]), from_b64.mac("t", &[]));
        assert!(ServerSecret::parse("too short").is_err());
        assert!(ServerSecret::parse(&"00".repeat(16)).is_err());
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"short").unwrap();
        assert!(ServerSecret::load_or_create(&path).is_err());
    }
}
