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
    /// Records a hit on each bucket of `checks` in turn, stopping at the
    /// first whose current window is already full: the buckets before it
    /// keep their hit, it and those after it are not touched (so a caller
    /// refused by its own address's bucket counts against nobody else's).
    /// `None` when every bucket took the hit. The buckets are distinct.
    async fn hit(&self, checks: &[(String, Limit)], now: Timestamp) -> Result<Option<Throttled>, StorageError>;

    /// Gives back one hit on each bucket of `checks`, never below zero (an
    /// attempt that turned out not to count, e.g. a successful login).
    async fn refund(&self, checks: &[(String, Limit)]) -> Result<(), StorageError>;
}

/// A refusal by [`RateLimiter::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// The position in `checks` of the bucket that refused.
    pub bucket: usize,
    /// Seconds until that bucket's window ends (at least 1).
    pub retry_after: u64,
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
    Ok(limiter.refund(checks).await?)
}

/// Checks several limits in turn; the first that refuses decides.
pub async fn check(limiter: &dyn RateLimiter, now: Timestamp, checks: &[(String, Limit)]) -> Result<(), ApiError> {
    let Some(Throttled { bucket, retry_after }) = limiter.hit(checks, now).await? else {
        return Ok(());
    };
    let name = checks.get(bucket).map(|(name, _)| name.split(':').next().unwrap_or("")).unwrap_or("");
    tracing::info!(bucket = %name, retry_after, "rate limited");
    Err(ApiError::TooManyRequests(retry_after))
}

/// Seconds from `now` until a window that started at `start` ends, at
/// least 1 (a `Retry-After` of 0 would invite an immediate retry).
fn seconds_left(start: Timestamp, window: Duration, now: Timestamp) -> u64 {
    (start + window).since(now).as_secs_f64().ceil().max(1.0) as u64
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

    /// Seconds until the window of `bucket` ends, for the `Retry-After`
    /// of a refusal (read after the refusing statement: a refusal is rare).
    async fn retry_after(&self, bucket: &str, window: Duration, now: Timestamp) -> Result<u64, StorageError> {
        let start: Option<i64> = sqlx::query_scalar("SELECT window_start FROM rate_limit WHERE bucket = ?")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?;
        // Gone already (purged): a fresh window, the whole of it to wait.
        let start = start.map_or(now, Timestamp::from_millis);
        Ok(seconds_left(start, window, now))
    }
}

/// The statement behind [`SqliteLimiter::hit`] for `n` buckets: ?1 is
/// now (ms), then each bucket gives its name, limit and window (ms).
///
/// One statement is one atomic write (SQLite takes the write lock at its
/// start), so the checks need no transaction held open across round trips
/// to the database thread, which made concurrent logins queue for the lock.
/// `current` reads every bucket as the statement finds it, a window that
/// has ended counting as a fresh one; the buckets before the first full one
/// are then written with one more hit. SQLite runs an `INSERT … SELECT`
/// that reads its own table into a temporary table first, so every row is
/// judged before any is written. `RETURNING` lists the buckets written:
/// fewer than `n` means the next one refused.
fn hit_statement(n: usize) -> String {
    let wanted: Vec<String> =
        (0..n).map(|i| format!("({i}, ?{}, ?{}, ?{})", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
    format!(
        "WITH wanted (pos, bucket, most, window_ms) AS (VALUES {}),
         current AS (
             SELECT w.pos, w.bucket, w.most,
                    CASE WHEN r.window_start IS NULL OR ?1 - r.window_start >= w.window_ms
                         THEN ?1 ELSE r.window_start END AS start,
                    CASE WHEN r.window_start IS NULL OR ?1 - r.window_start >= w.window_ms
                         THEN 0 ELSE r.hits END AS hits
             FROM wanted w LEFT JOIN rate_limit r ON r.bucket = w.bucket
         ),
         refusing AS (SELECT min(pos) AS pos FROM current WHERE hits >= most)
         INSERT INTO rate_limit (bucket, window_start, hits)
         SELECT bucket, start, hits + 1 FROM current WHERE pos < coalesce((SELECT pos FROM refusing), {n})
         ON CONFLICT (bucket) DO UPDATE SET window_start = excluded.window_start, hits = excluded.hits
         RETURNING bucket",
        wanted.join(", ")
    )
}

/// `UPDATE … WHERE bucket IN (?, …)` for `n` buckets: one statement for
/// every refund of an attempt.
fn refund_statement(n: usize) -> String {
    format!("UPDATE rate_limit SET hits = hits - 1 WHERE hits > 0 AND bucket IN ({})", vec!["?"; n].join(", "))
}

#[async_trait]
impl RateLimiter for SqliteLimiter {
    async fn hit(&self, checks: &[(String, Limit)], now: Timestamp) -> Result<Option<Throttled>, StorageError> {
        if checks.is_empty() {
            return Ok(None);
        }
        let sql = hit_statement(checks.len());
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now.as_millis());
        for (bucket, limit) in checks {
            query = query.bind(bucket.as_str()).bind(i64::from(limit.hits)).bind(limit.window.as_millis() as i64);
        }
        let counted = query.fetch_all(&self.pool).await?.len();
        let Some((bucket, limit)) = checks.get(counted) else { return Ok(None) };
        let retry_after = self.retry_after(bucket, limit.window, now).await?;
        Ok(Some(Throttled { bucket: counted, retry_after }))
    }

    async fn refund(&self, checks: &[(String, Limit)]) -> Result<(), StorageError> {
        if checks.is_empty() {
            return Ok(());
        }
        let sql = refund_statement(checks.len());
        let mut query = sqlx::query(&sql);
        for (bucket, _) in checks {
            query = query.bind(bucket.as_str());
        }
        query.execute(&self.pool).await?;
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

    /// One bucket's hit: 0 when counted, else the milliseconds until its
    /// window ends.
    async fn hit_one(&self, bucket: &str, limit: Limit, now: Timestamp) -> Result<u64, StorageError> {
        let mut call = HIT.prepare_invoke();
        call.key(format!("{}{bucket}", self.prefix))
            .arg(now.as_millis())
            .arg(limit.window.as_millis() as u64)
            .arg(limit.hits);
        Ok(self.conn.run(|mut c| async move { call.invoke_async(&mut c).await }).await?)
    }
}

// One script call per bucket, not one script over every bucket: on a
// Cluster the buckets of one check (an address's, a phone's) hash to
// different slots, and a script may only touch keys of one slot.
#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(&self, checks: &[(String, Limit)], now: Timestamp) -> Result<Option<Throttled>, StorageError> {
        for (position, (bucket, limit)) in checks.iter().enumerate() {
            let wait_ms = self.hit_one(bucket, *limit, now).await?;
            if wait_ms > 0 {
                return Ok(Some(Throttled { bucket: position, retry_after: wait_ms.div_ceil(1000) }));
            }
        }
        Ok(None)
    }

    async fn refund(&self, checks: &[(String, Limit)]) -> Result<(), StorageError> {
        for (bucket, _) in checks {
            let mut call = REFUND.prepare_invoke();
            call.key(format!("{}{bucket}", self.prefix));
            let _: i64 = self.conn.run(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn checks(limits: &[(&str, u32)]) -> Vec<(String, Limit)> {
        limits.iter().map(|(name, hits)| (name.to_string(), Limit::new(*hits, MINUTE))).collect()
    }

    /// What every limiter promises, whatever its store.
    async fn keeps_the_contract(limiter: &dyn RateLimiter) {
        let t0 = Timestamp::from_millis(1_000_000);
        let three = checks(&[("ip", 3), ("phone-ip", 2), ("phone", 5)]);
        assert_eq!(limiter.hit(&three, t0).await.unwrap(), None);
        assert_eq!(limiter.hit(&three, t0).await.unwrap(), None, "a bucket filled by this hit lets the next count");
        let refused = limiter.hit(&three, t0 + Duration::from_secs(20)).await.unwrap();
        assert_eq!(refused, Some(Throttled { bucket: 1, retry_after: 40 }), "the second bucket is full");
        // "ip" took that attempt (3 of 3), "phone" did not (2 of 5): the
        // address's third try now refuses before touching the phone.
        assert_eq!(limiter.hit(&three, t0).await.unwrap().map(|t| t.bucket), Some(0));
        let phone = checks(&[("phone", 3)]);
        assert_eq!(limiter.hit(&phone, t0).await.unwrap(), None, "the phone had 2 hits of 5 (now 3)");
        assert_eq!(limiter.hit(&phone, t0).await.unwrap().map(|t| t.bucket), Some(0), "and 3 of a limit of 3 refuses");

        // A refund gives one hit back to every bucket, never below zero.
        limiter.refund(&three).await.unwrap();
        limiter.refund(&three).await.unwrap();
        limiter.refund(&three).await.unwrap();
        limiter.refund(&three).await.unwrap();
        let one_each = checks(&[("ip", 1), ("phone-ip", 1), ("phone", 1)]);
        assert_eq!(limiter.hit(&one_each, t0).await.unwrap(), None, "every bucket is back at zero");
        assert_eq!(limiter.hit(&one_each, t0).await.unwrap().map(|t| t.bucket), Some(0));

        // A window that has ended starts afresh.
        assert_eq!(limiter.hit(&one_each, t0 + MINUTE).await.unwrap(), None);
        assert_eq!(limiter.hit(&[], t0).await.unwrap(), None);
        limiter.refund(&[]).await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::migrations::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        keeps_the_contract(&SqliteLimiter::new(pool)).await;
    }

    #[tokio::test]
    async fn redis_keeps_the_contract() {
        let redis = tessera_testkit::RedisServer::start();
        let target = tessera::store::redis::RedisTarget::parse(&redis.url()).unwrap();
        let conn = RedisConn::connect(target, Duration::from_secs(2)).await.unwrap();
        keeps_the_contract(&RedisLimiter::new(conn, "t")).await;
    }

    /// Parallel hits on one bucket: exactly its limit get through.
    async fn counts_parallel_hits_exactly(limiter: Arc<dyn RateLimiter>) {
        let now = Timestamp::from_millis(1_000_000);
        let tries: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.hit(&checks(&[("ip", 50), ("phone", 5)]), now).await.unwrap() })
            })
            .collect();
        let mut passed = 0;
        for t in tries {
            passed += usize::from(t.await.unwrap().is_none());
        }
        assert_eq!(passed, 5);
    }

    #[tokio::test]
    async fn sqlite_counts_parallel_hits_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::migrations::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        counts_parallel_hits_exactly(Arc::new(SqliteLimiter::new(pool))).await;
    }

    #[tokio::test]
    async fn redis_counts_parallel_hits_exactly() {
        let redis = tessera_testkit::RedisServer::start();
        let target = tessera::store::redis::RedisTarget::parse(&redis.url()).unwrap();
        let conn = RedisConn::connect(target, Duration::from_secs(2)).await.unwrap();
        counts_parallel_hits_exactly(Arc::new(RedisLimiter::new(conn, "t"))).await;
    }
}
