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

/// Reads at most this many sessions in one `MGET` (two names each).
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

/// One `MGET` for a batch; every read gets its value or the batch's error.
async fn send(batch: Vec<Read>, conn: RedisConn, names: Names) {
    let mut mget = redis::cmd("MGET");
    for read in &batch {
        mget.arg(names.session(&read.key)).arg(names.legacy_session(&read.key));
    }
    let reply: Result<Vec<Value>, StoreError> = conn.run(|mut c| async move { mget.query_async(&mut c).await }).await;
    match reply {
        Ok(values) if values.len() == 2 * batch.len() => {
            let mut values = values.into_iter();
            for read in batch {
                let (current, legacy) = (values.next().flatten(), values.next().flatten());
                // A reader that gave up (its request was cancelled) is not waiting.
                let _ = read.reply.send(Ok(current.or(legacy)));
            }
        }
        Ok(values) => {
            let why = format!("MGET of {} names answered {}", 2 * batch.len(), values.len());
            fail(batch, &why)
        }
        Err(StoreError::Unavailable(why)) => fail(batch, &why),
        Err(e) => fail(batch, &e.to_string()),
    }
}

fn fail(batch: Vec<Read>, why: &str) {
    for read in batch {
        let _ = read.reply.send(Err(StoreError::Unavailable(why.to_owned())));
    }
}
