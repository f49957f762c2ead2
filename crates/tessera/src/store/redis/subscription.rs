//! Following a pub/sub channel for as long as its follower lives.
//!
//! Both the near cache and the revocation list need the same discipline:
//! subscribe first, then (re)load what the channel would have told, and
//! only then trust local state; on any sign of loss, stop trusting it at
//! once and start over. Between those, trust is a [`Lease`] renewed by
//! heartbeats: a `PING` on the subscription's own connection is answered
//! after every message published before Redis saw it, so once its answer
//! (and the messages queued ahead of it) has been handled, local state is
//! known current as of the moment the `PING` was sent.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};

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

/// The longest pause between attempts to resubscribe: a node serves
/// again at most this long after Redis is back.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How often, under Sentinel, the listener checks that it still listens to
/// the current master.
const MASTER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Keeps `follower` subscribed to `channel` until it is dropped, renewing
/// its lease by `lease` after each heartbeat.
///
/// Loss is a closed connection, a heartbeat that gets no answer within the
/// command deadline (a half-open TCP connection would otherwise look like
/// a quiet channel), or, under Sentinel, a master that is no longer the one
/// subscribed to (a demoted but reachable master would never see the new
/// master's publishes).
pub fn spawn_listener<F: Follower>(
    follower: Arc<F>,
    conn: RedisConn,
    channel: String,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<F> = Arc::downgrade(&follower);
    drop(follower);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(follower) = weak.upgrade() else { return };
            let subscribed = async {
                let client = conn.pubsub_client().await?;
                let server = client.get_connection_info().addr().to_string();
                let (mut sink, stream) = client.get_async_pubsub().await?.split();
                sink.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>((sink, stream, server))
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok((sink, stream, server))) => match follower.subscribed().await {
                    Ok(()) => {
                        tracing::debug!(%server, %channel, "subscribed");
                        backoff = Duration::from_millis(50);
                        drop(follower);
                        let listening = Listening { weak: weak.clone(), conn: &conn, server, lease };
                        if !listening.run(sink, stream).await {
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
                Err(_) => follower.lost(),
            }
            tokio::time::sleep(backoff).await;
            // Short: while it lasts, signed-token nodes answer 503.
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// One subscription's life.
struct Listening<'a, F> {
    weak: Weak<F>,
    conn: &'a RedisConn,
    server: String,
    lease: Duration,
}

impl<F: Follower> Listening<'_, F> {
    /// Delivers messages and heartbeats until the subscription is lost
    /// (`true`) or the follower is gone (`false`).
    async fn run(&self, mut sink: PubSubSink, mut stream: PubSubStream) -> bool {
        let mut heartbeat = tokio::time::interval(self.lease / HEARTBEATS_PER_LEASE);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut master_checked = Instant::now();
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { return true };
                    let Some(follower) = self.weak.upgrade() else { return false };
                    follower.message(&message.get_payload::<String>().unwrap_or_default());
                }
                _ = heartbeat.tick() => {
                    let sent = Instant::now();
                    if !self.beat(&mut sink).await {
                        return true;
                    }
                    let Some(follower) = self.weak.upgrade() else { return false };
                    // Messages published before the PING are queued ahead
                    // of its answer: handle them before renewing.
                    while let Some(Some(message)) = stream.next().now_or_never() {
                        follower.message(&message.get_payload::<String>().unwrap_or_default());
                    }
                    follower.lease().renew(sent, self.lease);
                    if master_checked.elapsed() >= MASTER_CHECK_EVERY {
                        master_checked = Instant::now();
                        if !self.still_on_master().await {
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// One heartbeat round trip within the command deadline.
    async fn beat(&self, sink: &mut PubSubSink) -> bool {
        let limit = self.conn.timeout();
        matches!(tokio::time::timeout(limit, sink.ping::<redis::Value>()).await, Ok(Ok(_)))
    }

    /// Under Sentinel: whether the subscription is still on the master.
    async fn still_on_master(&self) -> bool {
        if !self.conn.is_sentinel() {
            return true;
        }
        let limit = self.conn.timeout().max(Duration::from_millis(500));
        match tokio::time::timeout(limit, self.conn.pubsub_client()).await {
            Ok(Ok(client)) => client.get_connection_info().addr().to_string() == self.server,
            // The sentinels cannot say: keep the subscription rather than flap.
            _ => true,
        }
    }
}
