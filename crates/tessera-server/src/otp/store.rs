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
/// phone numbers. Parallel calls are safe: a challenge verifies at most
/// once, and no more than `max_attempts` tries at it are judged.
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
        self.remove(subject, mac).await?;
        Ok(())
    }

    async fn attempt(
        &self,
        subject: &str,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Attempt, StorageError> {
        let max_attempts = i64::from(max_attempts);
        if self.consume(subject, mac, now, max_attempts).await? {
            return Ok(Attempt::Verified);
        }
        // Not a live right code: counted, then judged.
        let Some(challenge) = self.count_attempt(subject).await? else {
            return Ok(Attempt::NoChallenge);
        };
        let stored = &challenge.code_mac;
        if Timestamp::from_millis(challenge.expires_at) <= now {
            self.remove(subject, stored).await?;
            return Ok(Attempt::NoChallenge);
        }
        // Beyond the cap (`attempts` counts this one): tries in parallel
        // past the last allowed one. Refused, and they leave the row to the
        // attempts within the cap, one of which ends it (right or wrong).
        if challenge.attempts > max_attempts {
            return Ok(Attempt::NoChallenge);
        }
        if bool::from(stored.as_slice().ct_eq(&mac[..])) {
            // Of parallel attempts with the right code only one deletes
            // the row: that one is the code's single use.
            let consumed = self.remove(subject, stored).await?;
            return Ok(if consumed { Attempt::Verified } else { Attempt::NoChallenge });
        }
        if challenge.attempts == max_attempts {
            self.remove(subject, stored).await?;
        }
        Ok(Attempt::Mismatch)
    }
}

/// A challenge as [`SqliteChallenges::count_attempt`] leaves it.
#[derive(sqlx::FromRow)]
struct Counted {
    code_mac: Vec<u8>,
    expires_at: i64,
    /// Attempts so far, the one just counted included.
    attempts: i64,
}

impl SqliteChallenges {
    /// Deletes `subject`'s challenge if `mac` is its code, it has not
    /// expired and fewer than `max_attempts` wrong tries were counted: a
    /// right code, the usual case, costs this one statement. Of parallel
    /// attempts with the right code only one deletes the row.
    ///
    /// SQLite compares the MACs, not in constant time; that is safe because
    /// the MAC is keyed with the server secret: how much of a guess's MAC
    /// matches says nothing about the code.
    async fn consume(
        &self,
        subject: &str,
        mac: &[u8; 32],
        now: Timestamp,
        max_attempts: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "DELETE FROM otp_challenge WHERE subject = ? AND code_mac = ? AND expires_at > ? AND attempts < ?",
        )
        .bind(subject)
        .bind(&mac[..])
        .bind(now.as_millis())
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Counts an attempt at `subject`'s challenge and returns it, in one
    /// atomic statement: every attempt is counted before it is judged, so
    /// parallel guesses cannot share a count, and no transaction stays
    /// open across round trips to the database (a right code then costs
    /// two statements, this and [`Self::remove`], instead of four).
    async fn count_attempt(&self, subject: &str) -> Result<Option<Counted>, StorageError> {
        Ok(sqlx::query_as(
            "UPDATE otp_challenge SET attempts = attempts + 1 WHERE subject = ?
             RETURNING code_mac, expires_at, attempts",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deletes `subject`'s challenge if it is still the one with `mac` (a
    /// new code sent meanwhile stays); whether this call deleted it.
    async fn remove(&self, subject: &str, mac: &[u8]) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM otp_challenge WHERE subject = ? AND code_mac = ?")
            .bind(subject)
            .bind(mac)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice";
    const RIGHT: [u8; 32] = [1; 32];
    const WRONG: [u8; 32] = [2; 32];

    async fn challenges() -> (SqliteChallenges, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::migrations::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        (SqliteChallenges::new(pool), dir)
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[tokio::test]
    async fn a_right_code_works_once_even_after_four_wrong_ones() {
        let (store, _dir) = challenges().await;
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        for _ in 0..4 {
            assert_eq!(store.attempt(ALICE, &WRONG, at(0), 5).await.unwrap(), Attempt::Mismatch);
        }
        assert_eq!(store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(), Attempt::Verified);
        assert_eq!(store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(), Attempt::NoChallenge);
    }

    #[tokio::test]
    async fn the_fifth_wrong_code_and_expiry_end_the_challenge() {
        let (store, _dir) = challenges().await;
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        for _ in 0..5 {
            assert_eq!(store.attempt(ALICE, &WRONG, at(0), 5).await.unwrap(), Attempt::Mismatch);
        }
        assert_eq!(store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(), Attempt::NoChallenge);
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        assert_eq!(store.attempt(ALICE, &RIGHT, at(10_000), 5).await.unwrap(), Attempt::NoChallenge);
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        assert_eq!(store.attempt(ALICE, &RIGHT, at(9_999), 5).await.unwrap(), Attempt::Verified, "a new code is fresh");
    }

    #[tokio::test]
    async fn a_right_code_is_refused_once_the_cap_is_counted() {
        let (store, _dir) = challenges().await;
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        // As parallel wrong tries past the last allowed one leave it.
        sqlx::query("UPDATE otp_challenge SET attempts = 5").execute(&store.pool).await.unwrap();
        assert_eq!(store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(), Attempt::NoChallenge);
        sqlx::query("UPDATE otp_challenge SET attempts = 4").execute(&store.pool).await.unwrap();
        assert_eq!(
            store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(),
            Attempt::Verified,
            "the fifth try may be right"
        );
    }

    #[tokio::test]
    async fn ending_an_old_code_leaves_a_newer_one() {
        let (store, _dir) = challenges().await;
        store.put(ALICE, &WRONG, at(10_000)).await.unwrap();
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        assert!(!store.remove(ALICE, &WRONG).await.unwrap(), "the old code is gone already");
        assert_eq!(store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap(), Attempt::Verified);
    }

    #[tokio::test]
    async fn parallel_attempts_with_the_right_code_verify_once() {
        let (store, _dir) = challenges().await;
        store.put(ALICE, &RIGHT, at(10_000)).await.unwrap();
        let tries: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.attempt(ALICE, &RIGHT, at(0), 5).await.unwrap() })
            })
            .collect();
        let mut verified = 0;
        for t in tries {
            verified += usize::from(t.await.unwrap() == Attempt::Verified);
        }
        assert_eq!(verified, 1);
    }
}
