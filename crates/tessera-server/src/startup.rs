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
use tessera::{Clock, CookieSettings, CsrfPolicy, ErrorCode, SessionConfig, SessionLayer, SessionStore, SqliteStore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::client_ip::{self, TrustedProxies};
use crate::configuration::{OtpDelivery, Settings};
use crate::limits::SqliteLimiter;
use crate::otp::{ConsoleSender, OtpPolicy, OtpSender, OtpService, SqliteChallenges, WebhookSender};
use crate::routes::{self, params::MAX_BODY, AppState, LoginLimits};
use crate::secret::ServerSecret;
use crate::users::Users;

/// Any start-up failure, explained.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

/// A built server, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    database: SqlitePool,
    maintenance: JoinHandle<()>,
}

impl Application {
    /// Opens the data directory, migrates, wires the stores and binds.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
        let secret = ServerSecret::load_or_create(&settings.data_dir.join("secret"))
            .map_err(|e| format!("server secret: {e}"))?;
        let db_path = settings.data_dir.join("tessera.db");
        let pool = tessera::store::sqlite::connect(&db_path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", db_path.display()))?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let store = Arc::new(SqliteStore::with_pool(pool.clone()).await?);
        let challenges = Arc::new(SqliteChallenges::new(pool.clone()));
        let limiter = Arc::new(SqliteLimiter::new(pool.clone()));

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
            store: challenges.clone(),
            sender,
            limiter: limiter.clone(),
            secret,
            clock: clock.clone(),
            policy: OtpPolicy::default(),
        };
        let state = AppState {
            users: Users::new(pool.clone()),
            otp,
            limiter: limiter.clone(),
            login_limits: LoginLimits::default(),
            clock: clock.clone(),
            pool: pool.clone(),
        };
        let session_config = SessionConfig {
            carrier: settings.carrier,
            cookie: if settings.dev { CookieSettings::insecure_dev() } else { CookieSettings::default() },
            expiry: settings.expiry,
            csrf: CsrfPolicy::new(settings.allowed_origins.clone()),
        };
        let router = routes::router(state)
            .layer(SessionLayer::with_clock(store.clone(), session_config, clock.clone()))
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
        let maintenance = spawn_maintenance(store, challenges, limiter, clock);
        Ok(Self { listener, router, database: pool, maintenance })
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
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, service).with_graceful_shutdown(shutdown).await;
        self.maintenance.abort();
        result
    }
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

/// Every minute: drop lapsed sessions, expired challenges and old counters.
fn spawn_maintenance(
    sessions: Arc<SqliteStore>,
    challenges: Arc<SqliteChallenges>,
    limiter: Arc<SqliteLimiter>,
    clock: Arc<dyn Clock>,
) -> JoinHandle<()> {
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
