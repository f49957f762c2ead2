//! Password hashing with Argon2id.
//!
//! The parameters live in the PHC hash string, so they can be raised later
//! without breaking old hashes. Hashing runs on the blocking pool: at about
//! 20 ms of CPU it would otherwise stall the async workers.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::domain::Password;
use crate::error::ApiError;

/// Hashes a new password (Argon2id, OWASP's parameters: 19 MiB, t=2, p=1).
pub async fn hash(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(ApiError::internal)?;
        let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Checks `password` against `stored`. With no stored hash (unknown phone)
/// a dummy hash is checked instead, so both cases take the same time.
pub async fn verify(password: Password, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed = PasswordHash::new(&stored).map_err(ApiError::internal)?;
        let matches = Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(ApiError::internal)?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"tessera-dummy-salt").expect("valid salt");
        Argon2::default().hash_password(b"no such user", &salt).expect("hashing works").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id_and_salted() {
        let pw = Password::parse("correct horse").unwrap();
        let h1 = hash(pw.clone()).await.unwrap();
        let h2 = hash(pw.clone()).await.unwrap();
        assert!(h1.starts_with("$argon2id$"), "{h1}");
        assert_ne!(h1, h2, "each hash has its own salt");
        assert!(verify(pw.clone(), Some(h1.clone())).await.unwrap());
        assert!(!verify(Password::offered("wrong horse").unwrap(), Some(h1)).await.unwrap());
        assert!(!verify(pw, None).await.unwrap(), "no user, no match, even for the dummy's password");
        assert!(!verify(Password::offered("no such user").unwrap(), None).await.unwrap());
    }
}
