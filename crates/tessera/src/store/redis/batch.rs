//! Uncached session reads of concurrent requests, sent as one `MGET`.
//!
//! Why: Redis spends little of a `GET` on the lookup and most on reading
//! the command and writing its reply: two system calls and, on a busy
//! machine, a wake-up, for each request's command. Requests that arrive
//! together (the connections a node serves in one turn of its scheduler)
//! can share those: each read is queued for one collector task, which
//! yields once to the scheduler after the first read arrives, so every
//! request already runnable queues its read too, and then sends all of
//! them as one `MGET` (in a task of its own, so the next batch forms while
//! this one is in flight). Under load one round trip serves tens of
//! requests; alone, a read waits only for that one yield.
//!
//! A batch lives and dies as one command: under the connection's deadline,
//! and if it fails, every read in it fails the same way (503, never
//! "absent"). On a Cluster, keys of one command must share a slot, which a
//! batch of unrelated sessions never does: the store reads one session per
//! command there and does not use this.

use tokio::sync::{mpsc, oneshot};

use super::conn::RedisConn;
use super::names::Names;
use crate::store::StoreError;
use crate::token::SessionKey;

/// Reads at most this many sessions in one batch.
const MAX_BATCH: usize = 256;

/// A stored session value as read, still encoded.
type Value = Option<Vec<u8>>;

/// The handle requests queue their reads through; the collector task stops
/// when the last handle is dropped.
#[derive(Debug)]
pub(super) struct ReadBatcher {
    queue: mpsc::UnboundedSender<Read>,
}

/// One request's read, waiting for its batch.
struct Read {
    key: SessionKey,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

impl ReadBatcher {
    /// Starts the collector task (on the current Tokio runtime).
    pub(super) fn spawn(conn: RedisConn, names: Names) -> Self {
        let (queue, reads) = mpsc::unbounded_channel();
        tokio::spawn(collect(reads, conn, names));
        Self { queue }
    }

    /// The value stored for `key`, under its current name or else its
    /// legacy one, read in whichever batch forms next.
    pub(super) async fn read(&self, key: &SessionKey) -> Result<Value, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Read { key: *key, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the session read batcher has stopped".into())
}

/// Gathers what is queued into batches until every handle is gone.
async fn collect(mut reads: mpsc::UnboundedReceiver<Read>, conn: RedisConn, names: Names) {
    while let Some(first) = reads.recv().await {
        // Requests the scheduler would run next queue their reads first.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match reads.try_recv() {
                Ok(read) => batch.push(read),
                Err(_) => break,
            }
        }
        tokio::spawn(send(batch, conn.clone(), names.clone()));
    }
}

/// One `MGET` of the current names for a batch, and a second of the
/// legacy names for the reads it did not find, if any: a miss is rare in
/// steady state (a forged or lapsed token, or a session from before the
/// upgrade), so the common batch names each session once. Every read gets
/// its value or the batch's error.
async fn send(batch: Vec<Read>, conn: RedisConn, names: Names) {
    let keys: Vec<SessionKey> = batch.iter().map(|read| read.key).collect();
    match read_all(&keys, &conn, &names).await {
        Ok(values) => {
            for (read, value) in batch.into_iter().zip(values) {
                // A reader that gave up (its request was cancelled) is not waiting.
                let _ = read.reply.send(Ok(value));
            }
        }
        Err(StoreError::Unavailable(why)) => fail(batch, &why),
        Err(e) => fail(batch, &e.to_string()),
    }
}

/// The values of `keys`, in order.
async fn read_all(keys: &[SessionKey], conn: &RedisConn, names: &Names) -> Result<Vec<Value>, StoreError> {
    let mut values = mget(keys.iter().map(|key| names.session(key)), keys.len(), conn).await?;
    let missed: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
    if !missed.is_empty() {
        let legacy = mget(missed.iter().map(|&i| names.legacy_session(&keys[i])), missed.len(), conn).await?;
        for (i, value) in missed.into_iter().zip(legacy) {
            values[i] = value;
        }
    }
    Ok(values)
}

/// One `MGET` of `count` names.
async fn mget(names: impl Iterator<Item = String>, count: usize, conn: &RedisConn) -> Result<Vec<Value>, StoreError> {
    let mut mget = redis::cmd("MGET");
    for name in names {
        mget.arg(name);
    }
    let values: Vec<Value> = conn.run(|mut c| async move { mget.query_async(&mut c).await }).await?;
    if values.len() != count {
        return Err(StoreError::Unavailable(format!("MGET of {count} names answered {}", values.len())));
    }
    Ok(values)
}

fn fail(batch: Vec<Read>, why: &str) {
    for read in batch {
        let _ = read.reply.send(Err(StoreError::Unavailable(why.to_owned())));
    }
}
