//! Where pending challenges live.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;
use sqlx::SqlitePool;
use subtle::ConstantTimeEq;
use tessera::store::redis::RedisConn;
use tessera::Timestamp;

use crate::storage::StorageError;

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

/// Pending OTP challenges, one per phone, filed under the phone's keyed
/// pseudonym (see `OtpService::pseudonym`), so a dump of the store lists no
/// phone numbers. Each method is atomic.
#[async_trait]
pub trait ChallengeStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a challenge, replacing any pending one (and its attempt count).
    async fn put(&self, subject: &str, mac: &[u8; 32], expires_at: Timestamp) -> Result<(), StorageError>;
    /// Deletes the challenge if it is still the one with `mac`.
    async fn discard(&self, subject: &str, mac: &[u8; 32]) -> Result<(), StorageError>;
    /// Checks `mac` against the live challenge: consumes it when right,
    /// counts a wrong try, and deletes it at `max_attempts` wrong tries.
    async fn attempt(
        &self,
        subject: &str,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, StorageError>;
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
    pub async fn purge(&self, now: Timestamp) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM otp_challenge WHERE expires_at <= ?")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ChallengeStore for SqliteChallenges {
    async fn put(&self, subject: &str, mac: &[u8; 32], expires_at: Timestamp) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO otp_challenge (subject, code_mac, expires_at, attempts) VALUES (?, ?, ?, 0)
             ON CONFLICT (subject) DO UPDATE SET code_mac = excluded.code_mac,
                 expires_at = excluded.expires_at, attempts = 0",
        )
        .bind(subject)
        .bind(&mac[..])
        .bind(expires_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn discard(&self, subject: &str, mac: &[u8; 32]) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM otp_challenge WHERE subject = ? AND code_mac = ?")
            .bind(subject)
            .bind(&mac[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn attempt(
        &self,
        subject: &str,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(Vec<u8>, i64, i64)> =
            sqlx::query_as("SELECT code_mac, expires_at, attempts FROM otp_challenge WHERE subject = ?")
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        let delete = sqlx::query("DELETE FROM otp_challenge WHERE subject = ?").bind(subject);
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
                    sqlx::query("UPDATE otp_challenge SET attempts = attempts + 1 WHERE subject = ?")
                        .bind(subject)
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

/// Challenges in Redis, one hash per phone, shared by every node.
///
/// Expiry is judged against the server clock passed in (the field `exp`);
/// the key's TTL only cleans up.
#[derive(Debug, Clone)]
pub struct RedisChallenges {
    conn: RedisConn,
    prefix: String,
}

// The scripts are in `src/lua/`, each opening with its KEYS, ARGV and reply.

/// Stores a challenge with a fresh attempt count.
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/otp_put.lua")));

/// Deletes the challenge if it is still the one with this MAC.
static DISCARD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/otp_discard.lua")));

/// 0: no live challenge, 1: verified, 2: mismatch.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/otp_attempt.lua")));

impl RedisChallenges {
    /// Challenges under `<prefix>:otp:` on `conn`.
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self { conn, prefix: format!("{prefix}:otp:") }
    }

    fn key(&self, subject: &str) -> String {
        format!("{}{}", self.prefix, subject)
    }
}

#[async_trait]
impl ChallengeStore for RedisChallenges {
    async fn put(&self, subject: &str, mac: &[u8; 32], expires_at: Timestamp) -> Result<(), StorageError> {
        let mut call = PUT.prepare_invoke();
        // Keep the key a minute past the code's life; expiry itself is `exp`.
        let ttl_ms = expires_at.since(tessera::Clock::now(&tessera::SystemClock)).as_millis() as u64 + 60_000;
        call.key(self.key(subject)).arg(&mac[..]).arg(expires_at.as_millis()).arg(ttl_ms);
        Ok(self.conn.run(|mut c| async move { call.invoke_async::<()>(&mut c).await }).await?)
    }

    async fn discard(&self, subject: &str, mac: &[u8; 32]) -> Result<(), StorageError> {
        let mut call = DISCARD.prepare_invoke();
        call.key(self.key(subject)).arg(&mac[..]);
        Ok(self.conn.run(|mut c| async move { call.invoke_async::<()>(&mut c).await }).await?)
    }

    async fn attempt(
        &self,
        subject: &str,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, StorageError> {
        let mut call = ATTEMPT.prepare_invoke();
        call.key(self.key(subject)).arg(&mac[..]).arg(now.as_millis()).arg(max_attempts);
        let outcome: i64 = self.conn.run(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        Ok(match outcome {
            1 => Attempt::Verified,
            2 => Attempt::Mismatch,
            _ => Attempt::NoChallenge,
        })
    }
}
