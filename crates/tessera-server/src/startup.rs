//! Builds the service from [`Settings`] and runs it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::Router;
use http::{header, HeaderName, HeaderValue, Method, Request};
use sqlx::SqlitePool;
use tessera::signed::{RevocationStore, Revocations};
use tessera::store::redis::{NearCacheConfig, RedisConn, RedisStoreConfig};
use tessera::store::{RedisRevocations, SqliteRevocations};
use tessera::{
    Clock, CookieSettings, CsrfPolicy, ErrorCode, RedisStore, SessionConfig, SessionLayer, SessionStore, SignedTokens,
    SqliteStore,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::client_ip::{self, TrustedProxies};
use crate::configuration::{OtpDelivery, SecretSource, Settings, TokenConfig};
use crate::limits::{RateLimiter, RedisLimiter, SqliteLimiter};
use crate::otp::{
    ChallengeStore, ConsoleSender, OtpPolicy, OtpSender, OtpService, RedisChallenges, SqliteChallenges, WebhookSender,
};
use crate::revocation_archive::UserDbArchive;
use crate::routes::{self, params::MAX_BODY, LoginLimits, Services};
use crate::secret::ServerSecret;
use crate::signing_keys::{spawn_key_watcher, KeyFile};
use crate::users::Users;

/// Any start-up failure, explained.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

/// A built server, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    database: SqlitePool,
    background: Vec<JoinHandle<()>>,
    http: crate::http_front::HttpLimits,
    _lock: Option<std::fs::File>,
}

impl Application {
    /// Opens the data directory, migrates, wires the stores and binds.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        create_private_dir(&settings.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
        let secret = match &settings.secret {
            SecretSource::DataDir => ServerSecret::load_or_create(&settings.data_dir.join("secret"))
                .map_err(|e| format!("server secret: {e}"))?,
            SecretSource::File(path) => ServerSecret::from_file(path)?,
            SecretSource::Value(text) => ServerSecret::parse(text).map_err(|e| format!("TESSERA_SECRET: {e}"))?,
        };
        let db_path = settings.data_dir.join("tessera.db");
        let pool = tessera::store::sqlite::connect(&db_path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", db_path.display()))?;
        let mut local = sqlx::migrate!("./migrations/local");
        // The user tables may share this file; their migrations are tracked
        // in the same table.
        local.set_ignore_missing(true);
        local.run(&pool).await?;
        let users = match &settings.database {
            Some(url) => Users::connect(url).await?,
            None => Users::connect(&format!("sqlite://{}", db_path.display())).await?,
        };
        let backends = Backends::open(settings, &pool).await?;
        let mut background = Vec::new();
        let revocation_store = revocation_store(settings, &backends, &pool, &users).await?;
        let tokens = match &settings.tokens {
            Some(config) => {
                let revocations = revocation_store.clone();
                let derive_key = secret.mac("tessera/token-derivation/v1", &[]);
                let (tokens, watcher) = token_engine(settings, config, revocations, derive_key, clock.clone()).await?;
                background.push(watcher);
                Some(tokens)
            }
            None => None,
        };

        let sender: Arc<dyn OtpSender> = match &settings.otp {
            OtpDelivery::Console => {
                tracing::warn!("OTP codes are printed to stdout (--otp-sender console): development only");
                Arc::new(ConsoleSender)
            }
            OtpDelivery::Webhook(url) => Arc::new(WebhookSender::new(url.clone())?),
        };
        if settings.dev {
            tracing::warn!("--dev: session cookies are sent without Secure over plain HTTP; never in production");
        }
        let otp = OtpService {
            store: backends.challenges.clone(),
            sender,
            limiter: backends.limiter.clone(),
            secret,
            clock: clock.clone(),
            policy: OtpPolicy {
                per_ip_hourly: crate::limits::Limit::new(settings.throttles.otp_per_ip, Duration::from_secs(3600)),
                ..OtpPolicy::default()
            },
        };
        let state = Services {
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
            tokens: tokens.clone(),
            introspection_secret: settings.introspection_secret.clone(),
        };
        let session_config = SessionConfig {
            carrier: settings.carrier,
            cookie: if settings.dev { CookieSettings::insecure_dev() } else { CookieSettings::default() },
            expiry: settings.expiry,
            csrf: CsrfPolicy::new(settings.allowed_origins.clone()),
            max_sessions_per_user: settings.max_sessions_per_user,
        };
        let mut sessions = SessionLayer::with_clock(backends.sessions.clone(), session_config, clock.clone());
        if let Some(tokens) = tokens {
            sessions = sessions.with_signed_tokens(tokens);
        } else if backends.redis.is_some() {
            // Opaque sessions in Redis: what was revoked must survive Redis
            // losing the deletion. (The SQLite store is its own archive.)
            sessions = sessions.with_revocations(Revocations::attach(revocation_store).await?);
        }
        let router = routes::router(state)
            .layer(sessions)
            .layer(axum::middleware::map_response(no_store_by_default))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(axum::middleware::from_fn_with_state(
                TrustedProxies(Arc::new(settings.trusted_proxies.clone())),
                client_ip::resolve,
            ))
            .layer(cors(settings))
            .layer(
                TraceLayer::new_for_http()
                    // Method and path only: headers, bodies and query
                    // strings may hold credentials.
                    .make_span_with(|req: &Request<_>| {
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(CatchPanicLayer::custom(|_| -> Response { ErrorCode::UNKNOWN_ERROR.into_response() }));

        let listener =
            TcpListener::bind(settings.bind).await.map_err(|e| format!("cannot bind {}: {e}", settings.bind))?;
        background.push(spawn_maintenance(backends.sessions, pool.clone(), clock));
        Ok(Self { listener, router, database: pool, background, http: settings.http, _lock: backends._lock })
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

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let result = crate::http_front::serve(self.listener, self.router, self.http, shutdown).await;
        for task in &self.background {
            task.abort();
        }
        result
    }
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

/// Answers carry personal data (profiles, device lists) or secrets (tokens,
/// CSRF tokens): none may be kept by a browser or shared cache unless its
/// route said otherwise (the JWKS, which is public and cacheable).
async fn no_store_by_default(mut response: Response) -> Response {
    response.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

fn cors(settings: &Settings) -> CorsLayer {
    let origins: Vec<HeaderValue> =
        settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o.as_str()).ok()).collect();
    if origins.is_empty() {
        // No browser origin is trusted: no CORS headers at all.
        return CorsLayer::new();
    }
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
        .max_age(Duration::from_secs(600))
}

/// Where revocations are recorded and pushed: Redis, archived in the user
/// database, when several nodes share Redis; else the local SQLite file.
async fn revocation_store(
    settings: &Settings,
    backends: &Backends,
    pool: &SqlitePool,
    users: &Users,
) -> Result<Arc<dyn RevocationStore>, StartupError> {
    Ok(match (&backends.redis, &settings.redis) {
        (Some(conn), Some(redis)) => Arc::new(
            RedisRevocations::new(conn.clone(), &RedisStoreConfig::default().prefix)
                .with_lease(redis.cache_lease)
                .with_archive(Arc::new(UserDbArchive::new(users.pool().clone()))),
        ),
        _ => Arc::new(SqliteRevocations::new(pool.clone()).await?),
    })
}

/// The token-mode engine: keys from the key file (made on first start),
/// revocations loaded before the first request, and the key watcher.
async fn token_engine(
    settings: &Settings,
    config: &TokenConfig,
    revocations: Arc<dyn RevocationStore>,
    derive_key: [u8; 32],
    clock: Arc<dyn Clock>,
) -> Result<(SignedTokens, JoinHandle<()>), StartupError> {
    let file = KeyFile::new(settings.keys_file.clone());
    let keys = file.load_or_create(config.algorithm, clock.now())?;
    let tokens = SignedTokens::new(config.settings.clone(), &keys, revocations, derive_key)
        .await
        .map_err(|e| format!("signed tokens: {e}"))?;
    tracing::info!(
        keys = %file.path().display(),
        algorithm = config.algorithm.as_str(),
        revoked = tokens.revocations().len(),
        "token mode: signed access tokens with rotating refresh tokens"
    );
    let watcher = spawn_key_watcher(file, tokens.clone(), config.clone(), clock, keys);
    Ok((tokens, watcher))
}

/// Where sessions, OTP challenges and rate limits live: all in Redis when
/// it is configured (so every node shares them), else all in the SQLite file.
struct Backends {
    sessions: Arc<dyn SessionStore>,
    challenges: Arc<dyn ChallengeStore>,
    limiter: Arc<dyn RateLimiter>,
    redis: Option<RedisConn>,
    /// The data directory's lock, held while sessions live in its file.
    _lock: Option<std::fs::File>,
}

/// Takes `<data-dir>/tessera.lock` exclusively, or explains who has it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartupError> {
    let path = dir.join("tessera.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another tessera process serves {} with sessions in its SQLite file; \
             give every node --redis to share sessions, or a data directory of its own",
            dir.display()
        )
        .into()),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display()).into()),
    }
}

impl Backends {
    async fn open(settings: &Settings, pool: &SqlitePool) -> Result<Self, StartupError> {
        let Some(redis) = &settings.redis else {
            // Sessions in the local file: this process must be its only
            // writer for the in-memory cache to be sound, so it holds the
            // data directory's lock (released when the process exits).
            let lock = lock_data_dir(&settings.data_dir)?;
            return Ok(Self {
                sessions: Arc::new(SqliteStore::with_pool(pool.clone()).await?.with_cache(100_000)),
                _lock: Some(lock),
                challenges: Arc::new(SqliteChallenges::new(pool.clone())),
                limiter: Arc::new(SqliteLimiter::new(pool.clone())),
                redis: None,
            });
        };
        let conn = RedisConn::connect(redis.target.clone(), redis.timeout)
            .await
            .map_err(|e| format!("cannot reach Redis at {:?}: {e}", redis.target))?;
        let config = RedisStoreConfig {
            timeout: redis.timeout,
            near_cache: redis
                .near_cache
                .then(|| NearCacheConfig { lease: redis.cache_lease, ..NearCacheConfig::default() }),
            ..RedisStoreConfig::default()
        };
        let prefix = config.prefix.clone();
        let store = RedisStore::with_connection(conn.clone(), config);
        if let Some(policy) = store.evicting_policy().await {
            tracing::warn!(%policy, "Redis maxmemory-policy may evict session keys; use noeviction");
        }
        tracing::info!(target = ?redis.target, near_cache = redis.near_cache, "sessions, OTP and rate limits in Redis");
        Ok(Self {
            sessions: Arc::new(store),
            challenges: Arc::new(RedisChallenges::new(conn.clone(), &prefix)),
            limiter: Arc::new(RedisLimiter::new(conn.clone(), &prefix)),
            redis: Some(conn),
            _lock: None,
        })
    }
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
