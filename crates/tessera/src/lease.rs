//! How long local memory may answer for a shared store.
//!
//! A node that serves sessions from its near cache, or judges access tokens
//! against its in-memory revocation list, is only as right as the push
//! channel that keeps that memory current. A quiet channel and a cut one
//! look the same, so memory is trusted under a *lease*: each heartbeat that
//! completes a round trip on the channel (and so proves every message
//! published before it was sent has arrived) extends the lease to the
//! heartbeat's send time plus the lease length. Once the lease runs out the
//! node asks the store itself, which answers or fails (503). From the moment
//! a node is cut off, memory answers for at most one lease length.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A lease on local memory; see the module documentation.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Microseconds after `base` until which memory may answer; 0: never,
    /// `u64::MAX`: always (a store with no channel to lose).
    until: AtomicU64,
    renewed: Notify,
}

impl Default for Lease {
    fn default() -> Self {
        Self { base: Instant::now(), until: AtomicU64::new(0), renewed: Notify::new() }
    }
}

impl Lease {
    /// A lapsed lease.
    pub fn new() -> Self {
        Self::default()
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// Whether memory may answer now.
    pub fn is_valid(&self) -> bool {
        self.is_valid_at(Instant::now())
    }

    /// Whether memory may answer at `now`, a reading the caller also uses
    /// for something else (one clock reading where two were made).
    pub fn is_valid_at(&self, now: Instant) -> bool {
        self.micros(now) < self.until.load(Ordering::Acquire)
    }

    /// A heartbeat sent at `sent` came back: memory may answer until
    /// `sent + length`.
    pub fn renew(&self, sent: Instant, length: Duration) {
        let until = self.micros(sent).saturating_add(u64::try_from(length.as_micros()).unwrap_or(u64::MAX));
        self.until.store(until.max(1), Ordering::Release);
        self.renewed.notify_waiters();
    }

    /// Memory may answer until told otherwise (stores that push nothing).
    pub fn grant_forever(&self) {
        self.until.store(u64::MAX, Ordering::Release);
        self.renewed.notify_waiters();
    }

    /// Memory may not answer (the channel is lost).
    pub fn end(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Whether the lease is valid now or becomes so within `wait`: a lapse
    /// because a heartbeat is merely late costs a short wait, not a 503.
    pub async fn valid_within(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let renewed = self.renewed.notified();
            if self.is_valid() {
                return true;
            }
            if tokio::time::timeout_at(deadline, renewed).await.is_err() {
                return self.is_valid();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_from_the_heartbeats_send_time() {
        let lease = Lease::new();
        assert!(!lease.is_valid(), "lapsed until a first heartbeat");
        lease.renew(Instant::now(), Duration::from_secs(60));
        assert!(lease.is_valid());
        let sent = Instant::now();
        lease.renew(sent, Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(120));
        assert!(!lease.is_valid(), "a heartbeat sent 120 ms ago proves nothing for a 100 ms lease");
        lease.grant_forever();
        assert!(lease.is_valid());
        lease.end();
        assert!(!lease.is_valid());
    }

    #[tokio::test]
    async fn a_waiter_sees_a_renewal_or_gives_up_at_its_deadline() {
        let lease = std::sync::Arc::new(Lease::new());
        let renewer = lease.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            renewer.renew(Instant::now(), Duration::from_secs(1));
        });
        assert!(lease.valid_within(Duration::from_secs(2)).await);
        lease.end();
        let started = Instant::now();
        assert!(!lease.valid_within(Duration::from_millis(50)).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
