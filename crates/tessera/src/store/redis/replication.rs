//! Waiting for a replica after a write that must survive a failover
//! (Sentinel deployments only), shared by the writes that wait together.
//!
//! Why shared: `WAIT` holds the connection it is sent on until a replica
//! acknowledges or half the command deadline passes. While a failover has
//! left the master without a replica, every wait lasts that long, and waits
//! queued one behind another would add up past the deadline. One `WAIT`
//! covers every write the master acknowledged before it was sent, so a
//! writer that finds a wait in flight waits for that one and then, if it
//! does not cover its write, for one more: never a queue.
//!
//! The wait goes on a connection of its own (see `conn.rs`), after a write
//! to a marker key: `WAIT` counts the writes of the connection it is sent
//! on, and replicas receive writes in the master's order, so a replica that
//! has the marker has every write acknowledged before the marker was sent.

use std::sync::atomic::{AtomicU64, Ordering};

use super::conn::RedisConn;
use crate::store::StoreError;

/// The confirmations of one connection.
#[derive(Debug, Default)]
pub(super) struct Confirmations {
    /// Tickets handed out: one per write to confirm, taken after the
    /// master acknowledged the write.
    asked: AtomicU64,
    /// The last wait that finished; held while a wait is in flight.
    done: tokio::sync::Mutex<Done>,
}

#[derive(Debug, Default)]
struct Done {
    /// Every ticket up to this one was covered by the wait.
    covers: u64,
    /// How many replicas acknowledged it.
    replicas: i64,
}

impl Confirmations {
    /// Returns once a replica has every write acknowledged before this call,
    /// or the wait ran out (logged: the write stands, unconfirmed).
    pub(super) async fn confirm(&self, conn: &RedisConn, marker: &str) -> Result<(), StoreError> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        if done.covers < ticket {
            // Each ticket handed out so far belongs to a write the master
            // acknowledged before the marker below is sent.
            let covers = self.asked.load(Ordering::SeqCst);
            let replicas = conn.wait_for_replica(marker).await?;
            *done = Done { covers, replicas };
        }
        if done.replicas < 1 {
            tracing::warn!("revocation not yet confirmed by a replica");
        }
        Ok(())
    }
}
