//! Where pending challenges live.

use async_trait::async_trait;
use sqlx::SqlitePool;
use subtle::ConstantTimeEq;
use tessera::Timestamp;

use crate::domain::Telephone;
use crate::error::ApiError;

/// The result of one attempt at a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Right code; the challenge is gone.
    Verified,
    /// Wrong code; counted.
    Mismatch,
    /// No live challenge.
    NoChallenge,
}

/// Pending OTP challenges, one per phone. Each method is atomic.
#[async_trait]
pub trait ChallengeStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a challenge, replacing any pending one (and its attempt count).
    async fn put(&self, phone: &Telephone, mac: &[u8; 32], expires_at: Timestamp) -> Result<(), ApiError>;
    /// Deletes the challenge if it is still the one with `mac`.
    async fn discard(&self, phone: &Telephone, mac: &[u8; 32]) -> Result<(), ApiError>;
    /// Checks `mac` against the live challenge: consumes it when right,
    /// counts a wrong try, and deletes it at `max_attempts` wrong tries.
    async fn attempt(
        &self,
        phone: &Telephone,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, ApiError>;
}

/// Challenges in the `otp_challenge` table.
#[derive(Debug, Clone)]
pub struct SqliteChallenges {
    pool: SqlitePool,
}

impl SqliteChallenges {
    /// Challenges in `pool`'s database.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Deletes challenges that expired before `now`.
    pub async fn purge(&self, now: Timestamp) -> Result<u64, ApiError> {
        let done = sqlx::query("DELETE FROM otp_challenge WHERE expires_at <= ?")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ChallengeStore for SqliteChallenges {
    async fn put(&self, phone: &Telephone, mac: &[u8; 32], expires_at: Timestamp) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO otp_challenge (telephone, code_mac, expires_at, attempts) VALUES (?, ?, ?, 0)
             ON CONFLICT (telephone) DO UPDATE SET code_mac = excluded.code_mac,
                 expires_at = excluded.expires_at, attempts = 0",
        )
        .bind(phone.as_str())
        .bind(&mac[..])
        .bind(expires_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn discard(&self, phone: &Telephone, mac: &[u8; 32]) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM otp_challenge WHERE telephone = ? AND code_mac = ?")
            .bind(phone.as_str())
            .bind(&mac[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn attempt(
        &self,
        phone: &Telephone,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, ApiError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(Vec<u8>, i64, i64)> =
            sqlx::query_as("SELECT code_mac, expires_at, attempts FROM otp_challenge WHERE telephone = ?")
                .bind(phone.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let delete = sqlx::query("DELETE FROM otp_challenge WHERE telephone = ?").bind(phone.as_str());
        let outcome = match row {
            None => Attempt::NoChallenge,
            Some((_, expires_at, attempts))
                if Timestamp::from_millis(expires_at) <= now || attempts >= i64::from(max_attempts) =>
            {
                delete.execute(&mut *tx).await?;
                Attempt::NoChallenge
            }
            Some((stored, _, _)) if bool::from(stored.as_slice().ct_eq(&mac[..])) => {
                delete.execute(&mut *tx).await?;
                Attempt::Verified
            }
            Some((_, _, attempts)) => {
                if attempts + 1 >= i64::from(max_attempts) {
                    delete.execute(&mut *tx).await?;
                } else {
                    sqlx::query("UPDATE otp_challenge SET attempts = attempts + 1 WHERE telephone = ?")
                        .bind(phone.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                Attempt::Mismatch
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}
