//! Keeping an SQLite file's write-ahead log bounded under sustained writes.
//!
//! SQLite's own automatic checkpoint (after a commit that leaves the log
//! over 1,000 pages) is *passive*: it copies what no reader still needs and
//! never waits. The log file only starts over from its beginning when a
//! writer finds every frame copied and no reader using it, a moment that a
//! busy node (eight pooled connections reading and writing without pause)
//! may never have. The log then grows without end: about 80 KB per OTP
//! login (every commit appends whole pages), 600 MB in eight seconds of
//! the login benchmark, and each passive checkpoint sorts the whole of it
//! again, so every write gets slower the longer the load lasts.
//!
//! [`spawn_wal_checkpoints`] looks at the log's size now and then and, once
//! it is over a limit, runs a `TRUNCATE` checkpoint: it waits (through the
//! busy handler) for the readers of older snapshots to finish, which takes
//! one statement's time, copies every frame, and empties the file. Writers
//! wait meanwhile; readers do not. A checkpoint that finds another one
//! running (every commit's passive one takes the same lock) is tried again
//! a few milliseconds later. In the login benchmark this keeps the log
//! under about 20 MB, and each login costs the node ~10 % less CPU than
//! with the log left to grow.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::{SqliteConnection, SqlitePool};

/// How often [`spawn_wal_checkpoints`] looks at the log, by default: one
/// `stat` of the file; under the login benchmark's load the log gains
/// about 8 MB in that time.
pub const WAL_CHECK_EVERY: Duration = Duration::from_millis(100);

/// The log file size above which [`spawn_wal_checkpoints`] truncates it,
/// by default: what SQLite's automatic checkpoint aims at (1,000 pages of
/// 4 KiB). The file keeps its size when SQLite starts the log over inside
/// it, so a quiet file crosses this at most once and is then emptied.
pub const WAL_LIMIT: u64 = 4 << 20;

/// What a `TRUNCATE` checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every frame was copied into the database and the log emptied.
    Truncated,
    /// Another connection's checkpoint was running, or a reader of an older
    /// snapshot or a writer did not finish in time; the log was copied as
    /// far as it could be.
    Busy,
}

/// Copies the whole write-ahead log of `pool`'s database into it and
/// empties the log file (`PRAGMA wal_checkpoint(TRUNCATE)`), waiting for
/// readers and writers as long as the pool's busy timeout.
pub async fn truncate_wal(pool: &SqlitePool) -> Result<Checkpoint, sqlx::Error> {
    checkpoint(&mut *pool.acquire().await?).await
}

async fn checkpoint(conn: &mut SqliteConnection) -> Result<Checkpoint, sqlx::Error> {
    // The answer is (busy, frames in the log, frames copied).
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(conn).await?;
    Ok(if busy == 0 { Checkpoint::Truncated } else { Checkpoint::Busy })
}

/// Every `every`, truncates the write-ahead log of the SQLite file at
/// `database` (its `-wal` file) through `pool` when the log is larger than
/// `limit` bytes. Runs until aborted or the pool is closed.
///
/// A truncation waits for readers of older snapshots, and new writers wait
/// for it meanwhile; so it waits at most [`READER_PATIENCE`], and when a
/// reader outlasts that (a long transaction elsewhere, say an operator's
/// `sqlite3` shell) the next look is [`AFTER_A_LONG_READER`] later, so that
/// writes are never held up for long or often.
pub fn spawn_wal_checkpoints(
    pool: SqlitePool,
    database: &Path,
    every: Duration,
    limit: u64,
) -> tokio::task::JoinHandle<()> {
    let log = wal_path(database);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            let size = size_of(&log);
            if size <= limit {
                continue;
            }
            match truncate_soon(&pool).await {
                Ok(Checkpoint::Truncated) => tracing::debug!(bytes = size, "write-ahead log checkpointed and emptied"),
                Ok(Checkpoint::Busy) => {
                    tracing::debug!(bytes = size, "write-ahead log checkpoint waits for a long reader; later");
                    tokio::time::sleep(AFTER_A_LONG_READER).await;
                }
                Err(e) if pool.is_closed() => tracing::debug!(error = %e, "pool closed"),
                Err(e) => tracing::warn!(error = %e, bytes = size, "write-ahead log checkpoint failed"),
            }
        }
    })
}

/// How long one truncation waits for readers of older snapshots (and
/// writers wait for it): a statement's time, not a transaction's.
pub const READER_PATIENCE: Duration = Duration::from_millis(50);

/// The pause after a reader outlasted [`READER_PATIENCE`].
pub const AFTER_A_LONG_READER: Duration = Duration::from_secs(5);

/// Attempts per look while another connection's checkpoint holds the lock,
/// and the pause between them.
const ATTEMPTS: u32 = 100;
const BETWEEN_ATTEMPTS: Duration = Duration::from_millis(5);

/// A truncation, tried again at once while another checkpoint runs: a
/// checkpoint finds the checkpoint lock taken without waiting for it, and on
/// a busy file every commit's passive checkpoint takes it, the longer the
/// larger the log (once one truncation gets through, theirs are short
/// again). `Busy` when a reader outlasted [`READER_PATIENCE`].
async fn truncate_soon(pool: &SqlitePool) -> Result<Checkpoint, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    set_busy_timeout(&mut conn, READER_PATIENCE).await?;
    let mut outcome = Ok(Checkpoint::Busy);
    for _ in 0..ATTEMPTS {
        let started = Instant::now();
        outcome = checkpoint(&mut conn).await;
        // A busy answer that came at once was the checkpoint lock; one that
        // took the whole patience was a reader: no use trying again now.
        if !matches!(outcome, Ok(Checkpoint::Busy)) || started.elapsed() >= READER_PATIENCE / 2 {
            break;
        }
        tokio::time::sleep(BETWEEN_ATTEMPTS).await;
    }
    // The connection goes back to the pool with the pool's own timeout, or
    // not at all.
    if set_busy_timeout(&mut conn, super::sqlite::BUSY_TIMEOUT).await.is_err() {
        drop(conn.detach());
    }
    outcome
}

async fn set_busy_timeout(conn: &mut SqliteConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let statement = format!("PRAGMA busy_timeout = {}", timeout.as_millis());
    sqlx::query(&statement).execute(conn).await.map(drop)
}

/// The size of `file` in bytes; 0 when there is none (SQLite deletes the
/// log when the last connection closes).
fn size_of(file: &Path) -> u64 {
    std::fs::metadata(file).map_or(0, |m| m.len())
}

/// `<database>-wal`, where SQLite keeps the log.
fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_size(database: &Path) -> u64 {
        size_of(&wal_path(database))
    }

    /// A pool on a fresh file with one table, and the file's path.
    async fn database(dir: &tempfile::TempDir) -> (SqlitePool, PathBuf) {
        let path = dir.path().join("t.db");
        let pool = super::super::sqlite::connect(&path).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)").execute(&pool).await.unwrap();
        (pool, path)
    }

    async fn write(pool: &SqlitePool, rows: std::ops::Range<i64>) {
        for id in rows {
            sqlx::query("INSERT OR REPLACE INTO t (id, v) VALUES (?, zeroblob(2000))")
                .bind(id % 500)
                .execute(pool)
                .await
                .unwrap();
        }
    }

    #[test]
    fn the_log_is_the_database_path_with_wal_appended() {
        assert_eq!(wal_path(Path::new("/d/tessera.db")), Path::new("/d/tessera.db-wal"));
    }

    #[tokio::test]
    async fn a_truncate_checkpoint_empties_the_log_and_keeps_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = database(&dir).await;
        write(&pool, 0..300).await;
        assert!(wal_size(&path) > 0);
        assert_eq!(truncate_wal(&pool).await.unwrap(), Checkpoint::Truncated);
        assert_eq!(wal_size(&path), 0);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(rows, 300);
    }

    /// Eight connections writing and reading without pause: SQLite's own
    /// checkpoints alone let the log grow with every commit; the task keeps
    /// it near its limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_sustained_load_the_log_stays_near_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = database(&dir).await;
        let limit = 1 << 20;
        let task = spawn_wal_checkpoints(pool.clone(), &path, Duration::from_millis(20), limit);
        let mut largest = 0;
        let load: Vec<_> = (0..8i64)
            .map(|worker| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for round in 0..60 {
                        let start = worker * 10_000 + round * 10;
                        write(&pool, start..start + 10).await;
                        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
                    }
                })
            })
            .collect();
        for worker in load {
            while !worker.is_finished() {
                largest = largest.max(wal_size(&path));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            worker.await.unwrap();
        }
        task.abort();
        // 4,800 commits of at least one 4 KiB page each: 19 MiB of log
        // if it were never emptied.
        assert!(largest < 8 * limit, "the log reached {largest} bytes");
    }

    /// A truncation waits for readers of older snapshots and blocks writers
    /// meanwhile: a reader that stays (a long transaction elsewhere) must not
    /// hold every write up for the pool's 5 s busy timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_reader_holds_writes_up_only_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = database(&dir).await;
        write(&pool, 0..100).await;
        let mut reader = pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&mut *reader).await.unwrap();
        write(&pool, 100..200).await; // the reader's snapshot is now an older one
        let task = spawn_wal_checkpoints(pool.clone(), &path, Duration::from_millis(5), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        write(&pool, 200..220).await;
        let took = started.elapsed();
        task.abort();
        sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
        assert!(took < Duration::from_secs(2), "20 writes took {took:?}");
    }

    #[tokio::test]
    async fn a_log_under_the_limit_is_left_alone_and_a_closed_pool_ends_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = database(&dir).await;
        write(&pool, 0..5).await;
        let before = wal_size(&path);
        let task = spawn_wal_checkpoints(pool.clone(), &path, Duration::from_millis(10), u64::MAX);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(wal_size(&path), before);
        pool.close().await;
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the task ends").unwrap();
    }
}
