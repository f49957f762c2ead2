//! Following a pub/sub channel for as long as its follower lives.
//!
//! Both the near cache and the revocation list need the same discipline:
//! subscribe first, then (re)load what the channel would have told, and
//! only then trust local state; on any sign of loss, stop trusting it at
//! once and start over. Between those, trust is a [`Lease`] renewed by
//! heartbeats that take the invalidations' own path: the node PUBLISHes a
//! heartbeat on a channel of its own through its command connection (to
//! the server its writes go to, the current master under Sentinel) and
//! waits for it on its subscription. Messages reach a subscriber in the
//! order they were published, so once the heartbeat is back (and the
//! messages queued ahead of it are handled), local state is current as of
//! the moment the heartbeat was sent. A PING would only prove the
//! subscription's connection alive, not that it still hears the server
//! the writes go to.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::PubSubStream;
use redis::Msg;

use super::conn::RedisConn;
use crate::lease::Lease;
use crate::store::StoreError;

/// What a channel's messages keep current.
#[async_trait]
pub trait Follower: Send + Sync + 'static {
    /// The subscription is up: load the current state (nothing published
    /// from now on can be missed). An error counts as a lost subscription.
    async fn subscribed(&self) -> Result<(), StoreError>;
    /// One message from the channel.
    fn message(&self, payload: &str);
    /// The subscription is gone: local state may have missed messages.
    fn lost(&self);
    /// The lease under which local state is trusted.
    fn lease(&self) -> &Lease;
}

/// Heartbeats per lease length: a late heartbeat or two does not yet let
/// the lease lapse.
const HEARTBEATS_PER_LEASE: u32 = 4;

/// The longest pause between the starts of two attempts to resubscribe:
/// a node serves again at most this long after Redis is back.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How long one attempt to subscribe may take: a few round trips (under
/// Sentinel: ask the sentinels, check the master's role, connect,
/// subscribe), each within the command deadline. Bounded, because a
/// server that accepts connections but does not answer (a frozen master)
/// holds an attempt until this deadline, and the node cannot serve again
/// until its next attempt, however soon the sentinels have promoted a
/// replica.
fn attempt_deadline(command_deadline: Duration) -> Duration {
    (command_deadline * 4).clamp(Duration::from_secs(1), Duration::from_secs(2))
}

/// Keeps `follower` subscribed to `channel` until it is dropped, renewing
/// its lease by `lease` after each heartbeat.
///
/// Loss is a closed connection, or a heartbeat that does not come back
/// within the command deadline (a half-open TCP connection would otherwise
/// look like a quiet channel; a subscription on a server the writes no
/// longer go to would hear nothing), or, under Sentinel, a master that is
/// no longer the one subscribed to.
pub fn spawn_listener<F: Follower>(
    follower: Arc<F>,
    conn: RedisConn,
    channel: String,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<F> = Arc::downgrade(&follower);
    drop(follower);
    let heartbeats = format!("{channel}:heartbeat:{:016x}", heartbeat_id());
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = tokio::time::Instant::now();
            let Some(follower) = weak.upgrade() else { return };
            let subscribed = async {
                let client = conn.pubsub_client().await?;
                let server = client.get_connection_info().addr().to_string();
                let (mut sink, stream) = client.get_async_pubsub().await?.split();
                sink.subscribe(&[&channel, &heartbeats]).await?;
                // Under Sentinel the master was asked of the sentinels just
                // now: a command connection opened before a failover must
                // not outlive that answer (the load below takes it too).
                conn.forget_master_unless(&server);
                Ok::<_, redis::RedisError>((sink, stream, server))
            };
            match tokio::time::timeout(attempt_deadline(conn.timeout()), subscribed).await {
                Ok(Ok((_sink, stream, server))) => match follower.subscribed().await {
                    Ok(()) => {
                        tracing::debug!(%server, %channel, "subscribed");
                        backoff = Duration::from_millis(50);
                        drop(follower);
                        let listening =
                            Listening { weak: weak.clone(), conn: &conn, server, lease, heartbeats: &heartbeats };
                        if !listening.run(stream).await {
                            return;
                        }
                        let Some(follower) = weak.upgrade() else { return };
                        follower.lost();
                    }
                    Err(e) => {
                        follower.lost();
                        tracing::debug!(error = %e, %channel, "cannot load after subscribing");
                    }
                },
                Ok(Err(e)) => {
                    follower.lost();
                    tracing::debug!(error = %e, %channel, "cannot subscribe yet");
                }
                Err(_) => {
                    follower.lost();
                    tracing::debug!(%channel, "cannot subscribe yet: no answer within the attempt's deadline");
                }
            }
            // Paced from the attempt's start: one that already waited out
            // its deadline is followed at once.
            tokio::time::sleep_until(attempt + backoff).await;
            // Short: while it lasts, signed-token nodes answer 503.
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// Whether a `ROLE` reply says "master".
fn is_master(role: &redis::Value) -> bool {
    let redis::Value::Array(items) = role else { return false };
    match items.first() {
        Some(redis::Value::BulkString(role)) => role.as_slice() == b"master",
        Some(redis::Value::SimpleString(role)) => role == "master",
        _ => false,
    }
}

/// A random name part, so each listener hears only its own heartbeats.
fn heartbeat_id() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
    u64::from_le_bytes(bytes)
}

/// One subscription's life.
struct Listening<'a, F> {
    weak: Weak<F>,
    conn: &'a RedisConn,
    server: String,
    lease: Duration,
    /// This listener's own heartbeat channel.
    heartbeats: &'a str,
}

/// How a heartbeat went.
enum Beat {
    Back,
    Lost,
    FollowerGone,
}

impl<F: Follower> Listening<'_, F> {
    /// Delivers messages and heartbeats until the subscription is lost
    /// (`true`) or the follower is gone (`false`).
    async fn run(&self, mut stream: PubSubStream) -> bool {
        let mut heartbeat = tokio::time::interval(self.lease / HEARTBEATS_PER_LEASE);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut master_checked = Instant::now();
        let mut sequence: u64 = 0;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { return true };
                    if !self.deliver(&message) {
                        return false;
                    }
                }
                _ = heartbeat.tick() => {
                    sequence += 1;
                    let sent = Instant::now();
                    match self.beat(&mut stream, sequence).await {
                        Beat::Back => {}
                        Beat::Lost => {
                            // The heartbeat went where writes go and did not
                            // come back where this node listens: under
                            // Sentinel, one of the two is a demoted master.
                            tracing::debug!(server = %self.server, "heartbeat lost");
                            self.conn.forget_master();
                            return true;
                        }
                        Beat::FollowerGone => return false,
                    }
                    let Some(follower) = self.weak.upgrade() else { return false };
                    follower.lease().renew(sent, self.lease);
                    // Under Sentinel, once per lease: after a failover the
                    // old master may still call itself master for a while.
                    if master_checked.elapsed() >= self.lease {
                        master_checked = Instant::now();
                        if !self.still_on_master().await {
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// Hands a channel message to the follower (stray heartbeats of earlier
    /// rounds are dropped); `false` when the follower is gone.
    fn deliver(&self, message: &Msg) -> bool {
        if message.get_channel_name() == self.heartbeats {
            return true;
        }
        let Some(follower) = self.weak.upgrade() else { return false };
        follower.message(&message.get_payload::<String>().unwrap_or_default());
        true
    }

    /// Publishes heartbeat `sequence` and waits, within the command
    /// deadline, for it to come back, delivering what arrives ahead of it.
    async fn beat(&self, stream: &mut PubSubStream, sequence: u64) -> Beat {
        let deadline = tokio::time::Instant::now() + self.conn.timeout();
        let channel = self.heartbeats.to_owned();
        // Under Sentinel the same round trip asks the server its ROLE: a
        // demoted master still answers reads and PUBLISH (to itself only),
        // so a node on it would otherwise hear its own heartbeats and none
        // of the new master's invalidations.
        let sentinel = self.conn.is_sentinel();
        let published = self
            .conn
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                if sentinel {
                    pipe.cmd("ROLE");
                }
                pipe.cmd("PUBLISH").arg(channel).arg(sequence);
                pipe.query_async::<Vec<redis::Value>>(&mut c).await
            })
            .await;
        match published {
            Ok(replies) if !sentinel || replies.first().is_some_and(is_master) => {}
            _ => return Beat::Lost,
        }
        let expected = sequence.to_string();
        loop {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, stream.next()).await else { return Beat::Lost };
            if message.get_channel_name() == self.heartbeats {
                if message.get_payload_bytes() == expected.as_bytes() {
                    return Beat::Back;
                }
            } else if !self.deliver(&message) {
                return Beat::FollowerGone;
            }
        }
    }

    /// Under Sentinel: whether the subscription is still on the master the
    /// sentinels name; a command connection elsewhere is dropped.
    async fn still_on_master(&self) -> bool {
        if !self.conn.is_sentinel() {
            return true;
        }
        let limit = self.conn.timeout().max(Duration::from_millis(500));
        let master = match tokio::time::timeout(limit, self.conn.pubsub_client()).await {
            Ok(Ok(client)) => client.get_connection_info().addr().to_string(),
            // The sentinels cannot say: keep the subscription rather than flap.
            _ => return true,
        };
        self.conn.forget_master_unless(&master);
        if master != self.server {
            tracing::debug!(server = %self.server, %master, "the sentinels name another master");
        }
        master == self.server
    }
}
