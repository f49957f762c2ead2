//! The HTTP API: paths, and the state handlers share. What each endpoint
//! accepts is in [`requests`] (read by [`params::Params`] from JSON or a
//! form), what it answers in [`responses`].

pub mod admin;
mod auth;
pub mod forward_auth;
mod health;
mod introspect;
pub mod params;
pub mod requests;
pub mod responses;
mod sessions;
mod user;

pub use introspect::IntrospectionClients;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, delete, get, post, MethodRouter};
use axum::Router;
use sqlx::SqlitePool;
use tessera::{Clock, SessionStore, SignedTokens, UserSessions};

use crate::envelope::Failure;

use crate::error::codes;
use crate::limits::{Limit, RateLimiter};
use crate::otp::OtpService;
use crate::users::Users;

/// Login throttles, counting failed attempts only (a success gives its
/// attempt back), so nobody can lock a phone's owner out by logging in, and
/// failures from one address lock out that address, not the phone.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failures per phone from one client address (10 per 15 minutes).
    pub per_phone_and_ip: Limit,
    /// Failures per phone from every address together (100 per 15
    /// minutes): the ceiling on guessing from many addresses.
    pub per_phone: Limit,
    /// Failures per client address (100 per 15 minutes).
    pub per_ip: Limit,
}

impl LoginLimits {
    /// Limits per 15 minutes.
    pub fn new(per_phone_and_ip: u32, per_phone: u32, per_ip: u32) -> Self {
        let quarter = Duration::from_secs(15 * 60);
        Self {
            per_phone_and_ip: Limit::new(per_phone_and_ip, quarter),
            per_phone: Limit::new(per_phone, quarter),
            per_ip: Limit::new(per_ip, quarter),
        }
    }
}

/// What every handler can reach, behind one `Arc`: axum clones the state
/// for every request, and one reference count is cheaper than a dozen.
pub type AppState = Arc<Services>;

/// The services handlers use.
#[derive(Debug)]
pub struct Services {
    /// The user repository.
    pub users: Users,
    /// Profiles for "who am I": this node's cache in front of `users`.
    pub profiles: crate::profiles::Profiles,
    /// OTP issue and check.
    pub otp: OtpService,
    /// Throttles.
    pub limiter: Arc<dyn RateLimiter>,
    /// Login throttle settings.
    pub login_limits: LoginLimits,
    /// Server time.
    pub clock: Arc<dyn Clock>,
    /// The database, for health checks.
    pub pool: SqlitePool,
    /// Redis, when configured, for health checks.
    pub redis: Option<tessera::store::redis::RedisConn>,
    /// The session store, for introspecting opaque tokens.
    pub sessions: Arc<dyn SessionStore>,
    /// Token mode's engine, when logins hand out signed tokens.
    pub tokens: Option<SignedTokens>,
    /// Who may call `/oauth/introspect`; `None`: endpoint off.
    pub introspection: Option<IntrospectionClients>,
    /// Shutdown and feed state, for `/readyz`.
    pub readiness: Arc<crate::readiness::Readiness>,
    /// Every user's sessions as the session layer keeps them, for the
    /// operator API.
    pub user_sessions: UserSessions,
    /// The operator API's token; `None`: `/admin/…` is off.
    pub admin: Option<admin::AdminToken>,
    /// Login and OTP counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Session events (`login.failed`, operator endings); off without a sink.
    pub events: crate::events::Events,
}

/// Every route template the router may have (token mode and
/// introspection add theirs), and `/metrics`: the `route` label's values
/// (see [`crate::metrics`]). [`router`] refuses, in debug builds, a route
/// missing here.
pub const TEMPLATES: &[&str] = &[
    "/",
    "/ui/{name}",
    "/README.md",
    "/healthz",
    "/livez",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/auth/verify",
    "/auth/verify/{*original_path}",
    "/auth/refresh",
    "/auth/logout",
    "/.well-known/jwks.json",
    "/oauth/introspect",
    "/user/getotp",
    "/user/register",
    "/user/login",
    "/user/logout",
    "/user/logout-everywhere",
    "/user/me",
    "/user/get",
    "/user/csrf",
    "/user/sessions",
    "/user/sessions/{id}",
    "/user/password",
    "/admin/users/{id}/disable",
    "/admin/users/{id}/enable",
    "/admin/users/{id}/sessions",
    "/admin/users/{id}/sessions/{sid}",
];

/// Whether a route template has a parameter (`{id}`, `{*rest}`): only a
/// template without one is matched by its own path alone. A literal brace
/// (`{{`) counts as one too, which leaves such a template to the router.
pub fn has_parameter(template: &str) -> bool {
    template.contains('{')
}

/// `path`, checked (debug builds) to be among [`TEMPLATES`].
pub fn template(path: &'static str) -> &'static str {
    debug_assert!(TEMPLATES.contains(&path), "route {path} is missing from routes::TEMPLATES");
    path
}

/// All routes. Token mode adds `/auth/refresh`, `/auth/logout` (where
/// the refresh cookie is sent, for browsers whose access token lapsed) and
/// the JWKS; configured introspection clients (or the shared introspection
/// secret) add `/oauth/introspect`; an admin token adds the operator API
/// (`/admin/…`).
pub fn router(state: Services) -> Served {
    let state: AppState = Arc::new(state);
    let mut router = Routed::default();
    if state.tokens.is_some() {
        router = router
            .route("/auth/refresh", post(auth::refresh))
            .route("/auth/logout", post(user::logout))
            .route("/.well-known/jwks.json", get(auth::jwks));
    }
    if state.introspection.is_some() {
        router = router.route("/oauth/introspect", post(introspect::introspect));
    }
    if state.admin.is_some() {
        router = router
            .route("/admin/users/{id}/disable", post(admin::disable_user))
            .route("/admin/users/{id}/enable", post(admin::enable_user))
            .route("/admin/users/{id}/sessions", get(admin::list_sessions).delete(admin::end_sessions))
            .route("/admin/users/{id}/sessions/{sid}", delete(admin::end_session));
    }
    let Routed { router, templates, exact } = router
        .route("/", get(health::about))
        .route("/ui/{name}", get(crate::pages::ui))
        .route("/README.md", get(crate::pages::readme))
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/auth/verify", any(forward_auth::verify))
        .route("/auth/verify/{*original_path}", any(forward_auth::verify))
        .route("/user/getotp", post(user::get_otp))
        .route("/user/register", post(user::register))
        .route("/user/login", post(user::login))
        .route("/user/logout", post(user::logout))
        .route("/user/logout-everywhere", post(user::logout_everywhere))
        .route("/user/password", post(user::change_password))
        .route("/user/me", get(user::me))
        .route("/user/get", get(user::get_user))
        .route("/user/csrf", get(user::csrf))
        .route("/user/sessions", get(sessions::list).delete(sessions::revoke_others))
        .route("/user/sessions/{id}", delete(sessions::revoke_one));
    let exact = exact.into_iter().map(|(path, route)| (path, route.with_state(state.clone()))).collect();
    let router = router.fallback(|| async { Failure::new(codes::NOT_FOUND) }).with_state(state);
    Served { router, templates, exact }
}

/// The router, and the templates of the routes it serves (which depend on
/// the configuration): the outermost layer matches each request's path
/// against exactly these (`crate::stack::RouteMatcher`).
#[derive(Debug)]
pub struct Served {
    /// Every route, with its state.
    pub router: Router,
    /// The template of every route `router` serves, each once.
    pub templates: Vec<&'static str>,
    /// The routes whose template has no parameter, by path, each also on
    /// `router` (`crate::dispatch` calls them without it).
    pub exact: Vec<(&'static str, MethodRouter)>,
}

impl Served {
    /// `endpoint` (given its state) routed at `path` as [`router`] routes
    /// its own: on the router, among the templates, and among the exact
    /// routes when `path` has no parameter. For a route the configuration
    /// adds after [`router`] (`/metrics`).
    pub fn route(self, path: &'static str, endpoint: MethodRouter) -> Self {
        let Self { router, templates, exact } = self;
        let Routed { router, templates, exact } = Routed { router, templates, exact }.route(path, endpoint);
        Self { router, templates, exact }
    }
}

/// The router being built, and the templates routed on it so far.
struct Routed<S = AppState> {
    router: Router<S>,
    templates: Vec<&'static str>,
    exact: Vec<(&'static str, MethodRouter<S>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routed<S> {
    fn default() -> Self {
        Self { router: Router::new(), templates: Vec::new(), exact: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> Routed<S> {
    fn route(mut self, path: &'static str, endpoint: MethodRouter<S>) -> Self {
        if !has_parameter(path) {
            self.exact.push((path, endpoint.clone()));
        }
        self.router = self.router.route(template(path), endpoint);
        self.templates.push(path);
        self
    }
}
