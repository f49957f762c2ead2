//! One connection handle for every topology, with a hard deadline on each
//! call, so a slow or dead Redis costs a bounded wait and then a 503.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};

use super::replication::Confirmations;
use super::target::RedisTarget;
use crate::store::StoreError;

/// A connection to a standalone server, a Sentinel-watched master or a
/// Cluster. Cheap to clone; clones share connections. Every call through
/// [`RedisConn::run`] is bounded by the configured timeout.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    timeout: Duration,
    target: RedisTarget,
    /// Told how long each call took and how it ended, once installed.
    observer: OnceLock<Arc<dyn CommandObserver>>,
    /// Under Sentinel: waits for a replica, shared by concurrent writes.
    confirmations: Confirmations,
}

/// How one call through [`RedisConn::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandOutcome {
    /// Redis answered.
    Ok,
    /// Redis answered with an error, or the connection failed.
    Error,
    /// No answer within the deadline.
    Timeout,
}

impl CommandOutcome {
    /// `ok`, `error` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// Told the duration and outcome of every call through [`RedisConn::run`]
/// (installed by [`RedisConn::observe_commands`]); called inline, so it
/// must be quick (count, observe a histogram). Implemented for any
/// `Fn(Duration, CommandOutcome) + Send + Sync`.
pub trait CommandObserver: Send + Sync + 'static {
    /// One call took `elapsed` and ended as `outcome`.
    fn observe(&self, elapsed: Duration, outcome: CommandOutcome);
}

impl<F> CommandObserver for F
where
    F: Fn(Duration, CommandOutcome) + Send + Sync + 'static,
{
    fn observe(&self, elapsed: Duration, outcome: CommandOutcome) {
        self(elapsed, outcome)
    }
}

enum Backend {
    /// `ConnectionManager` reconnects by itself when the server returns.
    Standalone { manager: ConnectionManager, client: Client },
    /// The cluster client follows MOVED/ASK and refreshes slots by itself.
    Cluster { connection: ClusterConnection },
    /// The master is asked of the sentinels; after an error that smells of
    /// failover the connection is dropped and the master asked again.
    Sentinel { sentinels: Box<tokio::sync::Mutex<SentinelClient>>, current: Mutex<Option<Master>> },
}

/// Under Sentinel: the master commands go to now, and the connections to it.
struct Master {
    client: Client,
    /// Every command but the wait for a replica.
    commands: MultiplexedConnection,
    /// Only the wait for a replica, opened when first needed: `WAIT` holds
    /// the connection it is sent on until a replica answers (up to half the
    /// command deadline), and on the shared one it held every request's
    /// commands back, for as long as a failover left the master without a
    /// replica.
    confirmations: Option<MultiplexedConnection>,
}

/// Which connection to the master a call takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    Commands,
    Confirmations,
}

/// A connection to whichever deployment [`RedisConn`] reaches (standalone,
/// Cluster, or the master Sentinel names), for running commands and scripts
/// through [`RedisConn::run`]. Which kind it is stays inside.
#[derive(Clone)]
pub struct AnyConnection(Kind);

#[derive(Clone)]
enum Kind {
    /// Standalone.
    Manager(ConnectionManager),
    /// Cluster.
    Cluster(ClusterConnection),
    /// Sentinel-resolved master.
    Multiplexed(MultiplexedConnection),
}

impl ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(p, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl ConnectionLike for Kind {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(p, offset, count),
            Self::Cluster(c) => c.req_packed_commands(p, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(p, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
        }
    }
}

/// The connection of `lane` to the master already open under Sentinel, if
/// any.
fn existing_connection(current: &Mutex<Option<Master>>, lane: Lane) -> Option<MultiplexedConnection> {
    let current = current.lock().unwrap_or_else(|p| p.into_inner());
    let master = current.as_ref()?;
    match lane {
        Lane::Commands => Some(master.commands.clone()),
        Lane::Confirmations => master.confirmations.clone(),
    }
}

/// How long the replication marker outlives its last write: it only marks
/// a point in the replication stream.
const MARKER_TTL_MS: u64 = 60_000;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisConn {
    /// Connects to `target`; every later call is bounded by `timeout`.
    pub async fn connect(target: RedisTarget, timeout: Duration) -> Result<Self, StoreError> {
        let backend = tokio::time::timeout(timeout.max(Duration::from_secs(2)), Self::backend(&target, timeout))
            .await
            .map_err(|_| unavailable("timed out connecting to Redis"))??;
        let confirmations = Confirmations::default();
        Ok(Self { inner: Arc::new(Inner { backend, timeout, target, observer: OnceLock::new(), confirmations }) })
    }

    async fn backend(target: &RedisTarget, timeout: Duration) -> Result<Backend, StoreError> {
        match target {
            RedisTarget::Standalone(url) => {
                let client = Client::open(url.as_str()).map_err(unavailable)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = client.get_connection_manager_with_config(config).await.map_err(unavailable)?;
                Ok(Backend::Standalone { manager, client })
            }
            RedisTarget::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(unavailable)?;
                Ok(Backend::Cluster { connection: client.get_async_connection().await.map_err(unavailable)? })
            }
            RedisTarget::Sentinel { sentinels, master, tls, auth, db } => {
                let mut info = RedisConnectionInfo::default().set_db(*db);
                if let Some((user, password)) = auth.as_deref().map(|a| a.split_once(':').unwrap_or(("", a))) {
                    if !user.is_empty() {
                        info = info.set_username(user);
                    }
                    info = info.set_password(password);
                }
                let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                if *tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client =
                    SentinelClient::build(sentinels.clone(), master.as_str(), Some(node), SentinelServerType::Master)
                        .map_err(unavailable)?;
                let backend = Backend::Sentinel {
                    sentinels: Box::new(tokio::sync::Mutex::new(client)),
                    current: Mutex::new(None),
                };
                Ok(backend)
            }
        }
    }

    /// The topology this connection talks to.
    pub fn target(&self) -> &RedisTarget {
        &self.inner.target
    }

    /// Whether the master is found through sentinels.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.inner.backend, Backend::Sentinel { .. })
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A client for the current master (standalone: the server; Sentinel:
    /// the master now; Cluster: the first seed that answers), for pub/sub.
    pub async fn pubsub_client(&self) -> RedisResult<Client> {
        match &self.inner.backend {
            Backend::Standalone { client, .. } => Ok(client.clone()),
            Backend::Sentinel { sentinels, .. } => sentinels.lock().await.async_get_client().await,
            Backend::Cluster { .. } => {
                let RedisTarget::Cluster(seeds) = &self.inner.target else { unreachable!("cluster backend") };
                let mut last = None;
                for seed in seeds {
                    let client = Client::open(seed.as_str())?;
                    match client.get_multiplexed_async_connection().await {
                        Ok(_) => return Ok(client),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no cluster seed answered"))))
            }
        }
    }

    async fn connection(&self, lane: Lane) -> RedisResult<AnyConnection> {
        match &self.inner.backend {
            Backend::Standalone { manager, .. } => Ok(AnyConnection(Kind::Manager(manager.clone()))),
            Backend::Cluster { connection } => Ok(AnyConnection(Kind::Cluster(connection.clone()))),
            Backend::Sentinel { sentinels, current } => {
                let connection = match existing_connection(current, lane) {
                    Some(connection) => connection,
                    None if lane == Lane::Commands => self.open_commands(sentinels, current).await?,
                    // Confirmations take turns already (`replication.rs`).
                    None => self.open_confirmations(current).await?,
                };
                Ok(AnyConnection(Kind::Multiplexed(connection)))
            }
        }
    }

    /// Under Sentinel: asks the sentinels for the master and connects to it.
    /// Every request that found no connection queues here after a failover;
    /// the first asks and connects, the rest take its connection instead of
    /// each asking again in turn (which, under load, kept a node 503 for
    /// seconds).
    async fn open_commands(
        &self,
        sentinels: &tokio::sync::Mutex<SentinelClient>,
        current: &Mutex<Option<Master>>,
    ) -> RedisResult<MultiplexedConnection> {
        let mut sentinels = sentinels.lock().await;
        if let Some(connection) = existing_connection(current, Lane::Commands) {
            return Ok(connection);
        }
        let client = sentinels.async_get_client().await?;
        let commands = self.open(&client).await?;
        let master = Master { client, commands: commands.clone(), confirmations: None };
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(master);
        Ok(commands)
    }

    /// A connection to the server of `client`, under the call deadline.
    async fn open(&self, client: &Client) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout));
        client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Under Sentinel: opens the confirmations' connection to the master
    /// commands go to, unless there is none (a failover forgot it since the
    /// write to confirm) or it changed meanwhile.
    async fn open_confirmations(&self, current: &Mutex<Option<Master>>) -> RedisResult<MultiplexedConnection> {
        let client = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|m| m.client.clone());
        let Some(client) = client else {
            return Err(RedisError::from((redis::ErrorKind::Io, "no master connection")));
        };
        let connection = self.open(&client).await?;
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_mut() {
            Some(master) if master.client.get_connection_info().addr() == client.get_connection_info().addr() => {
                Ok(master.confirmations.get_or_insert(connection).clone())
            }
            _ => Err(RedisError::from((redis::ErrorKind::Io, "the master changed"))),
        }
    }

    /// Under Sentinel: the address of the server commands go to now, if a
    /// connection is open.
    pub(crate) fn command_server(&self) -> Option<String> {
        match &self.inner.backend {
            Backend::Sentinel { current, .. } => current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|master| master.client.get_connection_info().addr().to_string()),
            _ => None,
        }
    }

    /// Under Sentinel: drops the command connection so the next call asks
    /// the sentinels for the master again (a demoted master still answers
    /// reads and `PUBLISH`, so nothing else would tell).
    pub(crate) fn forget_master(&self) {
        if let Backend::Sentinel { current, .. } = &self.inner.backend {
            *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Under Sentinel: drops the command connection if it goes to a server
    /// other than `master` (as the sentinels named it just now), so that
    /// commands follow the newest answer rather than one from before a
    /// failover.
    pub(crate) fn forget_master_unless(&self, master: &str) {
        if self.command_server().is_some_and(|server| server != master) {
            self.forget_master();
        }
    }

    /// Tells `observer` about every later call through [`RedisConn::run`]
    /// on this connection and its clones. One observer per connection:
    /// `false` (and `observer` unused) if one is installed already.
    pub fn observe_commands(&self, observer: Arc<dyn CommandObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// Runs `f` on a connection within the deadline. Any Redis error, and
    /// running out of time, is [`StoreError::Unavailable`].
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(AnyConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_on(Lane::Commands, f).await
    }

    /// [`RedisConn::run`] on the connection of `lane`.
    async fn run_on<T, F, Fut>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(AnyConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let observed = self.inner.observer.get().map(|observer| (observer, Instant::now()));
        let call = async {
            let connection = self.connection(lane).await?;
            f(connection).await
        };
        let (result, outcome) = match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => (Ok(value), CommandOutcome::Ok),
            Ok(Err(e)) => {
                // A failover shows up as a dropped connection, a refused one,
                // or READONLY from a demoted master: ask the sentinels again.
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.code() == Some("READONLY")
                {
                    self.forget_master();
                }
                (Err(unavailable(e)), CommandOutcome::Error)
            }
            Err(_) => {
                self.forget_master();
                let e = unavailable(format!("no answer from Redis within {:?}", self.inner.timeout));
                (Err(e), CommandOutcome::Timeout)
            }
        };
        if let Some((observer, started)) = observed {
            observer.observe(started.elapsed(), outcome);
        }
        result
    }

    /// Waits until the writes acknowledged so far reached a replica
    /// (Sentinel deployments only; elsewhere a no-op), so that a revocation
    /// survives a failover; at most half the deadline, then the write
    /// stands unconfirmed (logged). `marker` names the key written to mark
    /// the point to wait for (see `replication.rs`).
    pub async fn confirm_replicated(&self, marker: &str) -> Result<(), StoreError> {
        if !self.is_sentinel() {
            return Ok(());
        }
        self.inner.confirmations.confirm(self, marker).await
    }

    /// Writes `marker`, then waits (at most half the deadline) for a replica
    /// to have it, on the connection kept for this: how many did.
    pub(super) async fn wait_for_replica(&self, marker: &str) -> Result<i64, StoreError> {
        let wait_ms = (self.inner.timeout.as_millis() / 2).max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(marker).arg(1).arg("PX").arg(MARKER_TTL_MS).ignore();
        pipe.cmd("WAIT").arg(1).arg(wait_ms);
        let (replicas,): (i64,) =
            self.run_on(Lane::Confirmations, |mut c| async move { pipe.query_async(&mut c).await }).await?;
        Ok(replicas)
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").field("target", &self.inner.target).field("timeout", &self.inner.timeout).finish()
    }
}
