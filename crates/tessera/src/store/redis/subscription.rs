//! Following a pub/sub channel for as long as its follower lives.
//!
//! Both the near cache and the revocation list need the same discipline:
//! subscribe first, then (re)load what the channel would have told, and
//! only then trust local state; on any sign of loss, stop trusting it at
//! once and start over.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;

use super::conn::RedisConn;
use crate::store::StoreError;

/// What a channel's messages keep current.
#[async_trait]
pub trait Follower: Send + Sync + 'static {
    /// The subscription is up: load the current state (nothing published
    /// from now on can be missed) and start trusting it. An error counts
    /// as a lost subscription.
    async fn subscribed(&self) -> Result<(), StoreError>;
    /// One message from the channel.
    fn message(&self, payload: &str);
    /// The subscription is gone: stop trusting local state.
    fn lost(&self);
}

/// How often the listener proves its subscription is alive (a `PING` on
/// the pub/sub connection) and, under Sentinel, still on the current master.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Keeps `follower` subscribed to `channel` until it is dropped.
///
/// Loss is a closed connection, a `PING` that gets no answer (a half-open
/// TCP connection would otherwise look like a quiet channel), or, under
/// Sentinel, a master that is no longer the one subscribed to (a demoted
/// but reachable master would never see the new master's publishes).
pub fn spawn_listener<F: Follower>(follower: Arc<F>, conn: RedisConn, channel: String) -> tokio::task::JoinHandle<()> {
    let weak: Weak<F> = Arc::downgrade(&follower);
    drop(follower);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(follower) = weak.upgrade() else { return };
            let subscribed = async {
                let client = conn.pubsub_client().await?;
                let server = client.get_connection_info().addr().to_string();
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>((pubsub, server))
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok((mut pubsub, server))) => match follower.subscribed().await {
                    Ok(()) => {
                        tracing::debug!(%server, %channel, "subscribed");
                        backoff = Duration::from_millis(50);
                        drop(follower);
                        let mut checked = Instant::now();
                        loop {
                            let next = tokio::time::timeout(CHECK_EVERY, pubsub.on_message().next()).await;
                            let Some(follower) = weak.upgrade() else { return };
                            match next {
                                Ok(Some(message)) => {
                                    let payload: String = message.get_payload().unwrap_or_default();
                                    follower.message(&payload);
                                }
                                Ok(None) => break,
                                Err(_) => {}
                            }
                            if checked.elapsed() >= CHECK_EVERY {
                                checked = Instant::now();
                                if !still_good(&conn, &mut pubsub, &server).await {
                                    break;
                                }
                            }
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
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// Whether the subscription still answers and is still on the master.
async fn still_good(conn: &RedisConn, pubsub: &mut redis::aio::PubSub, server: &str) -> bool {
    let limit = conn.timeout().max(Duration::from_millis(500));
    let pong = tokio::time::timeout(limit, pubsub.ping::<redis::Value>()).await;
    if !matches!(pong, Ok(Ok(_))) {
        return false;
    }
    if !conn.is_sentinel() {
        return true;
    }
    match tokio::time::timeout(limit, conn.pubsub_client()).await {
        Ok(Ok(client)) => client.get_connection_info().addr().to_string() == server,
        // The sentinels cannot say: keep the subscription rather than flap.
        _ => true,
    }
}
