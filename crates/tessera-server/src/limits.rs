//! Rate limits: fixed-window counters in the database, so they survive a
//! restart and hold for every process that shares the file.

use std::time::Duration;

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;
use sqlx::SqlitePool;
use tessera::store::redis::RedisConn;
use tessera::Timestamp;

use crate::error::ApiError;
use crate::storage::StorageError;

/// Counts hits per bucket per window.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug + 'static {
    /// Records a hit on `bucket` unless it already had `limit` in the
    /// current `window`; then returns the seconds until the window ends.
    async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<u64>, StorageError>;

    /// Gives back one hit on `bucket` (an attempt that turned out not to
    /// count, e.g. a successful login).
    async fn refund(&self, bucket: &str) -> Result<(), StorageError>;
}

/// A limit: so many hits per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Hits allowed per window.
    pub hits: u32,
    /// The window.
    pub window: Duration,
}

impl Limit {
    /// `hits` per `window`.
    pub const fn new(hits: u32, window: Duration) -> Self {
        Self { hits, window }
    }
}

/// Gives back the hits [`check`] recorded on `checks` (all of them passed).
pub async fn refund(limiter: &dyn RateLimiter, checks: &[(String, Limit)]) -> Result<(), ApiError> {
    for (bucket, _) in checks {
        limiter.refund(bucket).await?;
    }
    Ok(())
}

/// Checks several limits in turn; the first that refuses decides.
pub async fn check(limiter: &dyn RateLimiter, now: Timestamp, checks: &[(String, Limit)]) -> Result<(), ApiError> {
    for (bucket, limit) in checks {
        if let Some(retry_after) = limiter.hit(bucket, limit.hits, limit.window, now).await? {
            tracing::info!(bucket = %bucket.split(':').next().unwrap_or(""), retry_after, "rate limited");
            return Err(ApiError::TooManyRequests(retry_after));
        }
    }
    Ok(())
}

/// Counters in the `rate_limit` table.
#[derive(Debug, Clone)]
pub struct SqliteLimiter {
    pool: SqlitePool,
}

impl SqliteLimiter {
    /// Counters in `pool`'s database.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Drops windows that ended before `now - keep`.
    pub async fn purge(&self, now: Timestamp, keep: Duration) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM rate_limit WHERE window_start < ?")
            .bind((now - keep).as_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl RateLimiter for SqliteLimiter {
    async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<u64>, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT window_start, hits FROM rate_limit WHERE bucket = ?")
            .bind(bucket)
            .fetch_optional(&mut *tx)
            .await?;
        let (start, hits) = match row {
            Some((start, hits)) if now.since(Timestamp::from_millis(start)) < window => (start, hits),
            _ => (now.as_millis(), 0),
        };
        if hits >= i64::from(limit) {
            let ends = Timestamp::from_millis(start) + window;
            return Ok(Some(ends.since(now).as_secs_f64().ceil().max(1.0) as u64));
        }
        sqlx::query(
            "INSERT INTO rate_limit (bucket, window_start, hits) VALUES (?, ?, ?)
             ON CONFLICT (bucket) DO UPDATE SET window_start = excluded.window_start, hits = excluded.hits",
        )
        .bind(bucket)
        .bind(start)
        .bind(hits + 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn refund(&self, bucket: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE rate_limit SET hits = hits - 1 WHERE bucket = ? AND hits > 0")
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Counters in Redis, shared by every node: one hash per bucket, checked
/// and counted in one script.
#[derive(Debug, Clone)]
pub struct RedisLimiter {
    conn: RedisConn,
    prefix: String,
}

/// Counts a hit unless the window is full; returns 0 when counted, else the
/// milliseconds until the window ends (KEYS/ARGV in the file).
static HIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rate_limit_hit.lua")));

/// Takes one hit back, never below zero.
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rate_limit_refund.lua")));

impl RedisLimiter {
    /// Counters under `<prefix>:rl:` on `conn`.
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self { conn, prefix: format!("{prefix}:rl:") }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<u64>, StorageError> {
        let mut call = HIT.prepare_invoke();
        call.key(format!("{}{bucket}", self.prefix)).arg(now.as_millis()).arg(window.as_millis() as u64).arg(limit);
        let wait_ms: u64 = self.conn.run(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        Ok((wait_ms > 0).then(|| wait_ms.div_ceil(1000)))
    }

    async fn refund(&self, bucket: &str) -> Result<(), StorageError> {
        let mut call = REFUND.prepare_invoke();
        call.key(format!("{}{bucket}", self.prefix));
        let _: i64 = self.conn.run(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        Ok(())
    }
}
