//! Touches of the embedded store, written together.
//!
//! A touch is due on every session in use once per touch interval, so a
//! busy node makes them in bursts: when the interval has passed for many
//! sessions at once, each of the next requests carries one. Written one by
//! one, each is a statement sent to SQLite's worker thread and a commit of
//! its own, about a hundred microseconds of CPU. Here the touches that
//! arrive while a write is under way wait for it and go in the next one:
//! one `UPDATE … FROM (VALUES …)` statement, one commit (a group commit).
//! The write also brings the store's cached copies up to date, itself: a
//! request that gives up waiting cannot leave the cache behind the file.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::oneshot;

use super::record_cache::RecordCache;
use super::StoreError;
use crate::clock::Timestamp;
use crate::token::SessionKey;

/// Touches in one statement at most (3 bound values each, under SQLite's
/// default limit of 32 766 variables). A power of two: see [`write`].
const MAX_BATCH: usize = 1024;

/// One waiting touch, told whether its session was still there.
struct Pending {
    key: SessionKey,
    last_seen: Timestamp,
    idle_deadline: Timestamp,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The touches waiting for the next write, and the turn to write them.
#[derive(Default)]
pub(crate) struct Touches {
    waiting: Mutex<Vec<Pending>>,
    /// Held by the request whose turn it is to write what is waiting.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Touches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Touches").finish_non_exhaustive()
    }
}

impl Touches {
    /// Moves `key`'s last-seen time and idle deadline forward (never back),
    /// in the file and in the store's `cache`; `false` when there is no
    /// such session.
    pub(crate) async fn touch(
        &self,
        pool: &SqlitePool,
        cache: Option<&Arc<RecordCache>>,
        key: &SessionKey,
        last_seen: Timestamp,
        idle_deadline: Timestamp,
    ) -> Result<bool, StoreError> {
        let (done, mut answer) = oneshot::channel();
        self.lock_waiting().push(Pending { key: *key, last_seen, idle_deadline, done });
        // Whoever holds the turn writes everything waiting, so by the time
        // this request has it, its touch is written or in hand; a touch
        // written by the turn before is answered without waiting for it.
        tokio::select! {
            biased;
            written = &mut answer => return written.unwrap_or_else(|_| Err(abandoned())),
            _turn = self.turn.lock() => {
                let batch = std::mem::take(&mut *self.lock_waiting());
                if !batch.is_empty() {
                    // A task of its own: the write, the cache and the
                    // answers outlive a request that gives up waiting.
                    let _ = tokio::spawn(write_all(pool.clone(), cache.cloned(), batch)).await;
                }
            }
        }
        answer.await.unwrap_or_else(|_| Err(abandoned()))
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn abandoned() -> StoreError {
    StoreError::Unavailable("the touch was abandoned".into())
}

async fn write_all(pool: SqlitePool, cache: Option<Arc<RecordCache>>, mut batch: Vec<Pending>) {
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(MAX_BATCH));
        let found = write(&pool, &batch).await;
        for pending in batch {
            let answer = match &found {
                Ok(found) => Ok(found.contains(&pending.key)),
                Err(e) => Err(StoreError::Unavailable(e.clone())),
            };
            if let Some(cache) = &cache {
                match answer {
                    Ok(true) => cache.touched(&pending.key, pending.last_seen, pending.idle_deadline),
                    Ok(false) => cache.forget(&pending.key),
                    // The statement did not commit: nothing changed.
                    Err(_) => {}
                }
            }
            let _ = pending.done.send(answer);
        }
        batch = rest;
    }
}

/// One statement for the whole batch; the keys it found, or why it failed.
/// The rows are padded to a power of two (the last touch repeated, which
/// `GROUP BY` folds away), so that at most 11 statement texts reach
/// sqlx's per-connection statement cache, not one per batch size.
async fn write(pool: &SqlitePool, batch: &[Pending]) -> Result<HashSet<SessionKey>, String> {
    let Some(last) = batch.last() else { return Ok(HashSet::new()) };
    let padded = batch.len().next_power_of_two();
    let rows = vec!["(?, ?, ?)"; padded].join(", ");
    // `max`: a touch never moves a time back, whatever order they land in
    // (the same key twice in a batch included).
    let sql = format!(
        "UPDATE tessera_sessions
         SET last_seen = max(tessera_sessions.last_seen, t.seen),
             idle_deadline = max(tessera_sessions.idle_deadline, t.idle)
         FROM (SELECT column1 AS k, max(column2) AS seen, max(column3) AS idle
               FROM (VALUES {rows}) GROUP BY column1) AS t
         WHERE tessera_sessions.key = t.k
         RETURNING tessera_sessions.key"
    );
    let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql);
    for pending in batch.iter().chain(std::iter::repeat_n(last, padded - batch.len())) {
        query = query
            .bind(pending.key.as_bytes().to_vec())
            .bind(pending.last_seen.as_millis())
            .bind(pending.idle_deadline.as_millis());
    }
    let found = query.fetch_all(pool).await.map_err(|e| e.to_string())?;
    Ok(found.iter().filter_map(|k| <[u8; 32]>::try_from(k.as_slice()).ok().map(SessionKey::from_bytes)).collect())
}
