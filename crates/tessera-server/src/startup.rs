//! Builds the service from [`Settings`] and runs it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{header, HeaderName, HeaderValue, Method};
use sqlx::SqlitePool;
use tessera::revocation::{RevocationStore, Revocations};
use tessera::store::redis::{NearCacheConfig, RedisConn, RedisStoreConfig};
use tessera::store::{RedisRevocations, SqliteRevocations};
use tessera::{
    Clock, CookieSettings, CsrfPolicy, RedisStore, SessionConfig, SessionLayer, SessionStore, SignedTokens, SqliteStore,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::util::Either;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::access_log::{RequestIds, SessionTagLayer};
use crate::client_ip::TrustedProxies;
use crate::configuration::{MetricsExposure, OtpDelivery, SecretSource, Settings};
use crate::dispatch::Dispatch;
use crate::envelope::ErrorCode;
use crate::events::Events;
use crate::fail_as_200::FailAs200;
use crate::limits::{RateLimiter, RedisLimiter, SqliteLimiter};
use crate::metrics::{scrape, Exporter, Metrics};
use crate::otp::{
    ChallengeStore, ConsoleSender, OtpPolicy, OtpSender, OtpService, RedisChallenges, SqliteChallenges, WebhookSender,
};
use crate::outer::OuterLayer;
use crate::readiness::Readiness;
use crate::revocation_archive::UserDbArchive;
use crate::routes::{self, LoginLimits, Services};
use crate::secret::ServerSecret;
use crate::signing_keys::{spawn_key_watcher, KeyFile};
use crate::stack::{BoxedCorsLayer, NoCorsOriginsLayer, RouteMatcher, Stack};
use crate::store_mark::{self, SessionStoreKind};
use crate::users::Users;

/// Any start-up failure, explained.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

/// A built server, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Stack,
    database: SqlitePool,
    background: Vec<JoinHandle<()>>,
    http: crate::http_front::HttpLimits,
    readiness: Arc<Readiness>,
    shutdown_delay: Duration,
    /// `/metrics` on a listener of its own (`--metrics-bind ADDR`).
    metrics_listener: Option<(TcpListener, Router)>,
    /// Session events' delivery tasks, flushed on shutdown.
    events: Events,
    _lock: Option<std::fs::File>,
}

impl Application {
    /// Opens the data directory, migrates, wires the stores and binds: one
    /// step after another, each a function below (in this order) whose doc
    /// comment says what it does and why.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        open_data_dir(settings)?;
        let secret = load_secret(settings)?;
        let pool = open_local_database(settings).await?;
        let users = connect_users(settings).await?;
        let metrics = Arc::new(match settings.metrics {
            MetricsExposure::Off => Metrics::unread(routes::TEMPLATES, clock.clone()),
            _ => Metrics::new(routes::TEMPLATES, clock.clone()),
        });
        let backends = Backends::open(settings, &pool, &clock, &metrics, None).await?;
        record_session_store(settings)?;
        metrics.follow(backends.readiness.clone());
        let revocations = revocation_store(settings, &backends, &pool, &users, &clock).await?;
        let (tokens, key_watcher) = token_engine(settings, &secret, &revocations, &clock, &metrics).await?.unzip();
        let otp = otp_service(settings, &backends, secret, &clock)?;
        let events = session_events(settings, &backends, &clock, &metrics)?;
        let sessions =
            session_layer(settings, &backends, tokens.clone(), revocations, &clock, &metrics, &events).await?;
        let state = services(settings, users, otp, &backends, &pool, tokens, &sessions, &clock, &metrics, &events);
        let router = router(settings, state, sessions, &metrics);
        let listener = bind(settings).await?;
        let metrics_listener = bind_metrics(settings, &metrics).await?;
        let readiness = backends.readiness.clone();
        let maintenance = spawn_maintenance(backends.sessions, pool.clone(), clock);
        let checkpoints = tessera::store::sqlite::spawn_wal_checkpoints(
            pool.clone(),
            &local_database_path(settings),
            tessera::store::sqlite::WAL_CHECK_EVERY,
            tessera::store::sqlite::WAL_LIMIT,
        );
        Ok(Self {
            listener,
            router,
            database: pool,
            background: key_watcher.into_iter().chain([maintenance, checkpoints]).collect(),
            http: settings.http,
            readiness,
            shutdown_delay: settings.shutdown_delay,
            metrics_listener,
            events,
            _lock: backends._lock,
        })
    }

    /// The address `/metrics` is served on when it has a listener of its
    /// own (`--metrics-bind ADDR`; the real port when asked for port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(l, _)| l.local_addr().expect("a bound listener has an address"))
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The database pool (for operational tooling, and for tests that
    /// take the database away to check the 503 path).
    pub fn database(&self) -> &SqlitePool {
        &self.database
    }

    /// Serves until `shutdown` completes, then drains: `/readyz` answers
    /// 503 at once, the listener keeps accepting for the shutdown delay
    /// (`--shutdown-delay-ms`, so load balancers see the 503 and stop
    /// sending), then closes, and in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (readiness, delay) = (self.readiness.clone(), self.shutdown_delay);
        let drained = async move {
            shutdown.await;
            readiness.start_draining();
            if !delay.is_zero() {
                tracing::info!(
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "draining: /readyz answers 503; still accepting until the delay is over"
                );
                tokio::time::sleep(delay).await;
            }
        };
        // `/metrics` on its own listener is served until the main listener
        // has drained, so the drain itself can be watched.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = self.metrics_listener.map(|(listener, router)| {
            let stopped = async move {
                let _ = metrics_stopped.await;
            };
            tokio::spawn(crate::http_front::serve(listener, router, self.http, stopped))
        });
        let result = crate::http_front::serve(self.listener, self.router, self.http, drained).await;
        let _ = stop_metrics.send(());
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        for task in &self.background {
            task.abort();
        }
        // In-flight requests are done: what they emitted is queued.
        self.events.close().await;
        result
    }
}

/// Why the operator CLI cannot act on the files and stores itself.
#[derive(Debug, thiserror::Error)]
pub enum OperatorOpenError {
    /// A node keeps its sessions in this data directory's SQLite file,
    /// behind its in-memory cache and the directory's lock: what another
    /// process wrote there, that node would not see.
    #[error("a running tessera node holds {}", .0.display())]
    HeldByNode(PathBuf),
    /// Without `--redis`, there are no sessions to act on here: the
    /// directory does not exist, or no node has kept sessions in it.
    #[error("no tessera sessions in {}", .0.display())]
    NoSessionsHere(PathBuf),
    /// The node serving from this data directory keeps its sessions in
    /// the other store (`recorded`), not in the one these settings name.
    #[error("the node serving from {} keeps its sessions elsewhere", .dir.display())]
    OtherStore {
        /// The data directory.
        dir: PathBuf,
        /// Where its node keeps sessions.
        recorded: SessionStoreKind,
    },
    /// Anything else, explained.
    #[error("{0}")]
    Failed(StartupError),
}

impl From<StartupError> for OperatorOpenError {
    fn from(e: StartupError) -> Self {
        Self::Failed(e)
    }
}

/// What the operator CLI (`tessera users …`, `tessera sessions …`) acts
/// through: the users repository and the session layer a node built from
/// the same settings has (the same store, revocation store with its archive
/// and, in token mode, token engine), with nothing bound and no near cache
/// (nothing is served from here; writes are published to every node all
/// the same). Without Redis, sessions live in the data directory's file:
/// this takes the directory's lock for as long as it is held, and refuses
/// ([`OperatorOpenError::HeldByNode`]) while a node has it.
#[derive(Debug)]
pub struct OperatorStores {
    /// The actions.
    pub operator: crate::operator::Operator,
    background: Vec<JoinHandle<()>>,
    _lock: Option<std::fs::File>,
}

impl OperatorStores {
    /// Opens the stores `settings` name, in the order [`Application::build`]
    /// does (the same functions).
    pub async fn open(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, OperatorOpenError> {
        let mut settings = settings.clone();
        if let Some(redis) = &mut settings.redis {
            redis.near_cache = false;
        }
        let settings = &settings;
        check_session_store(settings)?;
        open_data_dir(settings)?;
        let lock = match settings.redis {
            Some(_) => None,
            None => Some(
                try_lock_data_dir(&settings.data_dir)?
                    .ok_or_else(|| OperatorOpenError::HeldByNode(settings.data_dir.clone()))?,
            ),
        };
        let secret = load_secret(settings)?;
        let pool = open_local_database(settings).await?;
        let users = connect_users(settings).await?;
        // Nothing scrapes a command line's metrics.
        let metrics = Arc::new(Metrics::unread(routes::TEMPLATES, clock.clone()));
        let backends = Backends::open(settings, &pool, &clock, &metrics, lock).await?;
        let revocations = revocation_store(settings, &backends, &pool, &users, &clock).await?;
        let (tokens, key_watcher) = token_engine(settings, &secret, &revocations, &clock, &metrics).await?.unzip();
        // The CLI sends no events (its own endings are printed instead).
        let events = Events::default();
        let sessions = session_layer(settings, &backends, tokens, revocations, &clock, &metrics, &events).await?;
        let operator = crate::operator::Operator::new(users, sessions.user_sessions());
        Ok(Self { operator, background: key_watcher.into_iter().collect(), _lock: backends._lock })
    }
}

impl Drop for OperatorStores {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Writes down which session store this node uses (`crate::store_mark`),
/// for the operator CLI run later on the same data directory.
fn record_session_store(settings: &Settings) -> Result<(), StartupError> {
    store_mark::record(&settings.data_dir, SessionStoreKind::of(settings.redis.is_some()))
        .map_err(|e| format!("cannot write {}/session-store: {e}", settings.data_dir.display()).into())
}

/// Before the operator CLI opens anything: that the sessions it would act
/// on are the ones a node serves. Without `--redis` the data directory must
/// already hold a node's SQLite file (the CLI must not make an empty one
/// and report "0 sessions ended"); either way, the store its node recorded
/// must be the one these settings name.
fn check_session_store(settings: &Settings) -> Result<(), OperatorOpenError> {
    let dir = &settings.data_dir;
    let ours = SessionStoreKind::of(settings.redis.is_some());
    if ours == SessionStoreKind::Embedded && !local_database_path(settings).exists() {
        return Err(OperatorOpenError::NoSessionsHere(dir.clone()));
    }
    match store_mark::recorded(dir) {
        Some(recorded) if recorded != ours => Err(OperatorOpenError::OtherStore { dir: dir.clone(), recorded }),
        _ => Ok(()),
    }
}

/// Creates the data directory (owner-only when this makes it), for
/// everything after keeps its files there: the secret, the SQLite file, the
/// lock and, by default, the signing keys.
fn open_data_dir(settings: &Settings) -> Result<(), StartupError> {
    create_private_dir(&settings.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()).into())
}

/// Creates `dir` (owner-only when this makes it; an existing directory is
/// the operator's to set).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The server secret (the key of OTP MACs, and in token mode of
/// token derivation), from the data directory (made on first start), a key
/// file or the configuration. Early, so a bad secret fails before any
/// database is opened.
fn load_secret(settings: &Settings) -> Result<ServerSecret, StartupError> {
    Ok(match &settings.secret {
        SecretSource::DataDir => ServerSecret::load_or_create(&settings.data_dir.join("secret"))
            .map_err(|e| format!("server secret: {e}"))?,
        SecretSource::File(path) => ServerSecret::from_file(path)?,
        SecretSource::Value(text) => ServerSecret::parse(text).map_err(|e| format!("TESSERA_SECRET: {e}"))?,
    })
}

/// `<data-dir>/tessera.db`: the local SQLite file.
fn local_database_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("tessera.db")
}

/// Opens the local SQLite file (WAL) and brings it to the end of the
/// server's SQLite history (`crate::migrations`: the OTP and throttle
/// tables, the user tables, the library's session and revocation tables).
/// Every node has one, even with Redis: health checks use it, and
/// `Application::database` hands it out.
async fn open_local_database(settings: &Settings) -> Result<SqlitePool, StartupError> {
    Ok(crate::migrations::open_sqlite(&local_database_path(settings)).await?)
}

/// The user repository, on `--database` (SQLite or PostgreSQL) or
/// else in the local SQLite file, migrated on connect (in the local file,
/// by the same history `open_local_database` just ran: nothing to do).
async fn connect_users(settings: &Settings) -> Result<Users, StartupError> {
    Ok(match &settings.database {
        Some(url) => Users::connect(url).await?,
        None => Users::connect(&format!("sqlite://{}", local_database_path(settings).display())).await?,
    })
}

/// Where sessions, OTP challenges and rate limits live: all in Redis when
/// it is configured (so every node shares them), else all in the SQLite file.
struct Backends {
    sessions: Arc<dyn SessionStore>,
    challenges: Arc<dyn ChallengeStore>,
    limiter: Arc<dyn RateLimiter>,
    redis: Option<RedisConn>,
    /// What `/readyz` asks besides the databases.
    readiness: Arc<Readiness>,
    /// The data directory's lock, held while sessions live in its file.
    _lock: Option<std::fs::File>,
}

/// Takes `<data-dir>/tessera.lock` exclusively, or explains who has it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartupError> {
    try_lock_data_dir(dir)?.ok_or_else(|| {
        format!(
            "another tessera process serves {} with sessions in its SQLite file; \
             give every node --redis to share sessions, or a data directory of its own",
            dir.display()
        )
        .into()
    })
}

/// `<data-dir>/tessera.lock`, taken exclusively; `None` when another
/// process holds it (a node keeping its sessions in the directory's SQLite
/// file, or an operator command working on that file).
fn try_lock_data_dir(dir: &std::path::Path) -> Result<Option<std::fs::File>, StartupError> {
    let path = dir.join("tessera.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display()).into()),
    }
}

impl Backends {
    async fn open(
        settings: &Settings,
        pool: &SqlitePool,
        clock: &Arc<dyn Clock>,
        metrics: &Arc<Metrics>,
        lock: Option<std::fs::File>,
    ) -> Result<Self, StartupError> {
        let Some(redis) = &settings.redis else {
            // Sessions in the local file: this process must be its only
            // writer for the in-memory cache to be sound, so it holds the
            // data directory's lock (released when the process exits),
            // unless the caller took it already.
            let lock = match lock {
                Some(lock) => lock,
                None => lock_data_dir(&settings.data_dir)?,
            };
            return Ok(Self {
                sessions: Arc::new(SqliteStore::with_pool(pool.clone()).await?.with_cache(100_000)),
                _lock: Some(lock),
                challenges: Arc::new(SqliteChallenges::new(pool.clone())),
                limiter: Arc::new(SqliteLimiter::new(pool.clone())),
                redis: None,
                readiness: Arc::new(Readiness::new(None, Duration::ZERO)),
            });
        };
        let conn = RedisConn::connect(redis.target.clone(), redis.timeout)
            .await
            .map_err(|e| format!("cannot reach Redis at {:?}: {e}", redis.target))?;
        // Every command of the session store, OTP challenges and throttles
        // is timed for /metrics (unless nothing reads them).
        if let Some(observer) = metrics.store_observer() {
            conn.observe_commands(observer);
        }
        let config = RedisStoreConfig {
            timeout: redis.timeout,
            near_cache: redis
                .near_cache
                .then(|| NearCacheConfig { lease: redis.cache_lease, ..NearCacheConfig::default() }),
            ..RedisStoreConfig::default()
        };
        let prefix = config.prefix.clone();
        let store = Arc::new(RedisStore::with_connection(conn.clone(), config).with_clock(clock.clone()));
        if let Some(policy) = store.evicting_policy().await {
            tracing::warn!(%policy, "Redis maxmemory-policy may evict session keys; use noeviction");
        }
        tracing::info!(target = ?redis.target, near_cache = redis.near_cache, "sessions, OTP and rate limits in Redis");
        Ok(Self {
            readiness: Arc::new(Readiness::new(Some(store.clone()), redis.cache_lease)),
            sessions: store,
            challenges: Arc::new(RedisChallenges::new(conn.clone(), &prefix)),
            limiter: Arc::new(RedisLimiter::new(conn.clone(), &prefix)),
            redis: Some(conn),
            _lock: None,
        })
    }
}

/// Where revocations are recorded and pushed: Redis, archived in
/// the user database, when several nodes share Redis; else the local SQLite
/// file. Made in every mode; token mode and opaque sessions in Redis use it.
async fn revocation_store(
    settings: &Settings,
    backends: &Backends,
    pool: &SqlitePool,
    users: &Users,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<dyn RevocationStore>, StartupError> {
    Ok(match (&backends.redis, &settings.redis) {
        (Some(conn), Some(redis)) => Arc::new(
            RedisRevocations::new(conn.clone(), &RedisStoreConfig::default().prefix)
                .with_lease(redis.cache_lease)
                .with_archive(Arc::new(UserDbArchive::new(users)))
                .with_clock(clock.clone()),
        ),
        _ => Arc::new(SqliteRevocations::new(pool.clone()).await?),
    })
}

/// Token mode only (`None` otherwise): the signed-token engine, with
/// keys from the key file (made on first start), revocations loaded before
/// the first request, and the task that watches the key file for rotations.
async fn token_engine(
    settings: &Settings,
    secret: &ServerSecret,
    revocations: &Arc<dyn RevocationStore>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
) -> Result<Option<(SignedTokens, JoinHandle<()>)>, StartupError> {
    let Some(config) = &settings.tokens else {
        return Ok(None);
    };
    let derive_key = secret.mac("tessera/token-derivation/v1", &[]);
    let file = KeyFile::new(settings.keys_file.clone());
    let keys = file.load_or_create(config.algorithm, clock.now())?;
    let tokens = SignedTokens::new(config.settings.clone(), &keys, revocations.clone(), derive_key)
        .await
        .map_err(|e| format!("signed tokens: {e}"))?;
    tracing::info!(
        keys = %file.path().display(),
        algorithm = config.algorithm.as_str(),
        revoked = tokens.revocations().len(),
        "token mode: signed access tokens with rotating refresh tokens"
    );
    let watcher = spawn_key_watcher(file, tokens.clone(), config.clone(), clock.clone(), keys, metrics.clone());
    Ok(Some((tokens, watcher)))
}

/// OTP issue and check, over the chosen challenge store and
/// limiter, delivering by console (with a warning: development only) or
/// webhook. Takes the secret: OTP MACs are its last use.
fn otp_service(
    settings: &Settings,
    backends: &Backends,
    secret: ServerSecret,
    clock: &Arc<dyn Clock>,
) -> Result<OtpService, StartupError> {
    let sender: Arc<dyn OtpSender> = match &settings.otp {
        OtpDelivery::Console => {
            tracing::warn!("OTP codes are printed to stdout (--otp-sender console): development only");
            Arc::new(ConsoleSender)
        }
        OtpDelivery::Webhook(url) => Arc::new(WebhookSender::new(url.clone())?),
    };
    Ok(OtpService {
        store: backends.challenges.clone(),
        sender,
        limiter: backends.limiter.clone(),
        secret,
        clock: clock.clone(),
        policy: OtpPolicy {
            per_ip_hourly: crate::limits::Limit::new(settings.throttles.otp_per_ip, Duration::from_secs(3600)),
            ..OtpPolicy::default()
        },
    })
}

/// Session events (`--events-webhook`, `--events-stream`): one delivery
/// task per sink, fed by the session layer's observer and the handlers
/// through bounded queues. The stream lives beside the sessions, under the
/// store's prefix.
fn session_events(
    settings: &Settings,
    backends: &Backends,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
) -> Result<Events, StartupError> {
    let prefix = RedisStoreConfig::default().prefix;
    let redis = backends.redis.clone().map(|conn| (conn, prefix.as_str()));
    Ok(Events::start(&settings.events, redis, clock.clone(), metrics.clone())?)
}

/// What the handlers share (no I/O), the session layer's view of every
/// user's sessions included (the operator API ends them through it).
#[allow(clippy::too_many_arguments)]
fn services(
    settings: &Settings,
    users: Users,
    otp: OtpService,
    backends: &Backends,
    pool: &SqlitePool,
    tokens: Option<SignedTokens>,
    sessions: &SessionLayer,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    events: &Events,
) -> Services {
    Services {
        profiles: crate::profiles::Profiles::new(users.clone()),
        users,
        otp,
        limiter: backends.limiter.clone(),
        login_limits: LoginLimits::new(
            settings.throttles.login_per_phone,
            settings.throttles.login_ceiling_per_phone,
            settings.throttles.login_per_ip,
        ),
        clock: clock.clone(),
        pool: pool.clone(),
        redis: backends.redis.clone(),
        sessions: backends.sessions.clone(),
        tokens,
        introspection: routes::IntrospectionClients::new(
            settings.introspection_clients.clone(),
            settings.introspection_secret.clone(),
            settings.introspection_rate_limit,
        ),
        readiness: backends.readiness.clone(),
        user_sessions: sessions.user_sessions(),
        admin: settings.admin_token.as_deref().map(routes::admin::AdminToken::new),
        metrics: metrics.clone(),
        events: events.clone(),
    }
}

/// The session middleware over the chosen store: signed tokens in
/// token mode; opaque sessions otherwise, which in Redis also consult the
/// shared revocations (loaded here) so that what was revoked survives Redis
/// losing the deletion (the SQLite store is its own archive). Warns when
/// `--dev` drops `Secure` from the cookies.
async fn session_layer(
    settings: &Settings,
    backends: &Backends,
    tokens: Option<SignedTokens>,
    revocations: Arc<dyn RevocationStore>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    events: &Events,
) -> Result<SessionLayer, StartupError> {
    if settings.dev {
        tracing::warn!("--dev: session cookies are sent without Secure over plain HTTP; never in production");
    }
    let config = SessionConfig {
        carrier: settings.carrier,
        cookie: if settings.dev { CookieSettings::insecure_dev() } else { CookieSettings::default() },
        expiry: settings.expiry,
        csrf: CsrfPolicy::new(settings.allowed_origins.clone()),
        max_sessions_per_user: settings.max_sessions_per_user,
    };
    // The layer's refusals wear the course envelope, like every answer.
    let mut builder = SessionLayer::builder(backends.sessions.clone())
        .config(config)
        .clock(clock.clone())
        .render_failures_with(crate::error::course_failure);
    if let Some(observer) = session_observer(metrics, events) {
        builder = builder.observer(observer);
    }
    // The list requests are judged against is a feed `/readyz` watches.
    Ok(match tokens {
        Some(tokens) => {
            backends.readiness.follow_revocations(tokens.revocations().clone());
            builder.signed_tokens(tokens)
        }
        None if backends.redis.is_some() => {
            let revocations = Revocations::attach(revocations).await?;
            backends.readiness.follow_revocations(revocations.list().clone());
            builder.revocations(revocations)
        }
        None => builder,
    }
    .build())
}

/// What the session layer tells: counted for `/metrics` (unless nothing
/// reads them) and, with a sink, queued as session events; `None` when
/// neither wants it.
fn session_observer(metrics: &Arc<Metrics>, events: &Events) -> Option<Arc<dyn tessera::SessionObserver>> {
    let counted = metrics.session_observer();
    let emitted = events.is_on().then(|| events.session_observer());
    match (counted, emitted) {
        (Some(counted), Some(emitted)) => Some(Arc::new(move |event: &tessera::SessionEvent<'_>| {
            counted.observe(event);
            emitted.observe(event);
        })),
        (one, other) => one.or(other),
    }
}

/// The routes under the middleware stack. A request passes, outermost
/// first: `crate::outer` (in one level: the request's scope, with the
/// language `Accept-Language` chose for `errMsg` set for everything inside;
/// the HTTP metrics (route template, method, status, latency), so a refusal
/// anywhere is counted; the request id, span and access line; a panic
/// anywhere inside becoming the envelope's 500, logged and carrying its id;
/// the client's address behind a trusted proxy, which the session layer and
/// throttles record; `--fail-as-200` on the answer (nothing when off); and
/// no-store on every answer whose route set no Cache-Control, the session
/// layer's refusals included), CORS (answers preflights before any other
/// work), `SessionLayer`, and the session tag innermost, next to the routes
/// (it hands the request's session out to the access log); then
/// `crate::dispatch`, which calls a route without parameters itself and
/// leaves the rest to the router. The layers are listed below outermost
/// first, and wrap the router once as one service (`crate::stack::Stack`).
/// `/metrics` is one of the routes unless `--metrics-bind` moved it to a
/// listener of its own (or turned it off).
fn router(settings: &Settings, state: Services, sessions: SessionLayer, metrics: &Arc<Metrics>) -> Stack {
    let mut served = routes::router(state);
    if settings.metrics == MetricsExposure::Main {
        served = served.route("/metrics", get(scrape).with_state(Exporter::new(metrics)));
    }
    let routes::Served { router: mut routes, templates, exact } = served;
    // The layers below wrap the router once, not each route; the outermost
    // finds each request's route template itself (see `crate::stack`).
    let matcher = RouteMatcher::new(&templates, metrics);
    if let Some(dir) = &settings.static_dir {
        routes = routes.fallback_service(static_pages(dir));
    }
    let trusted = TrustedProxies { proxies: Arc::new(settings.trusted_proxies.clone()), secure: !settings.dev };
    ServiceBuilder::new()
        // Scope, metrics, request id and access log (method and route
        // template only: headers, bodies and query strings may hold
        // credentials), panics, the client's address, `--fail-as-200`: one
        // level (`crate::outer`).
        .layer(
            OuterLayer::new(matcher, metrics, RequestIds::new(trusted.proxies.clone()), || {
                ErrorCode::UNKNOWN_ERROR.into_response()
            })
            .behind(trusted)
            .fail_as_200(FailAs200::new(settings.fail_as_200)),
        )
        .layer(cors(settings))
        .layer(sessions)
        .layer(SessionTagLayer)
        .service(Dispatch::new(routes, exact))
}

/// `--static-dir`: files under `dir` for paths no route claims (a
/// directory's `index.html` for the directory); anything else, and any
/// method but GET and HEAD, the API's own 404 envelope.
fn static_pages(dir: &std::path::Path) -> ServeDir<axum::routing::MethodRouter> {
    let not_found = axum::routing::any(|| async { crate::envelope::Failure::new(crate::error::codes::NOT_FOUND) });
    ServeDir::new(dir).call_fallback_on_method_not_allowed(true).fallback(not_found)
}

fn cors(settings: &Settings) -> Either<BoxedCorsLayer, NoCorsOriginsLayer> {
    let origins: Vec<HeaderValue> =
        settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o.as_str()).ok()).collect();
    if origins.is_empty() {
        // No browser origin is trusted: no CORS headers at all (what
        // `CorsLayer::new()` answers, without its work per request or the
        // `Vary` that no answer here needs).
        return Either::Right(NoCorsOriginsLayer);
    }
    Either::Left(BoxedCorsLayer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-auth-token"),
                HeaderName::from_static("x-auth-mode"),
            ])
            .expose_headers([HeaderName::from_static("x-auth-token")])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Binds the listen address: after every store is open, so nothing is
/// accepted (or queued by the kernel) before the service can answer it.
async fn bind(settings: &Settings) -> Result<TcpListener, StartupError> {
    TcpListener::bind(settings.bind).await.map_err(|e| format!("cannot bind {}: {e}", settings.bind).into())
}

/// `--metrics-bind ADDR`: a listener that serves `/metrics` alone (no
/// session layer, no other route), bound beside the main one.
async fn bind_metrics(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> Result<Option<(TcpListener, Router)>, StartupError> {
    let MetricsExposure::Bind(addr) = settings.metrics else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot bind --metrics-bind {addr}: {e}"))?;
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Exporter::new(metrics))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    Ok(Some((listener, router)))
}

/// Every minute: drop lapsed sessions, expired challenges and old counters
/// from the SQLite file (Redis expires its keys by itself).
fn spawn_maintenance(sessions: Arc<dyn SessionStore>, pool: SqlitePool, clock: Arc<dyn Clock>) -> JoinHandle<()> {
    let challenges = SqliteChallenges::new(pool.clone());
    let limiter = SqliteLimiter::new(pool);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            if let Err(e) = sessions.purge_expired(now).await {
                tracing::warn!(error = %e, "session purge failed");
            }
            if let Err(e) = challenges.purge(now).await {
                tracing::warn!(error = %e, "challenge purge failed");
            }
            if let Err(e) = limiter.purge(now, Duration::from_secs(24 * 3600)).await {
                tracing::warn!(error = %e, "rate-limit purge failed");
            }
        }
    })
}
