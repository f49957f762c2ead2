//! The tower layer that gives every request its [`Session`].
//!
//! Per request: read the credential from the configured carriers (format
//! check only, no I/O), apply the CSRF rules to cookie-carried state
//! changes, hand the handler a lazy [`Session`], then write what the
//! handler changed and set the cookie or `X-Auth-Token` on the way out.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::carrier::{self, BearerChallenge, CarrierKind, TokenFormat};
use crate::clock::{Clock, SystemClock};
use crate::config::{CarrierMode, CookieSettings, SessionConfig};
use crate::csrf::{AllowedOrigin, CsrfPolicy, TargetOrigin};
use crate::error::SessionError;
use crate::failure::{finish, rerender, FailureKind, RenderFailure};
use crate::observe::{Observer, SessionObserver};
use crate::policy::ExpiryPolicy;
use crate::record::RequestClient;
use crate::revocation::Revocations;
use crate::session::{Credentials, Outcome, Session, Shared};
#[cfg(feature = "signed")]
use crate::signed::SignedTokens;
use crate::store::SessionStore;

/// The client's address as the application decided it (e.g. from a
/// trusted proxy's header). Insert it as a request extension before the
/// layer runs; otherwise the socket peer from `ConnectInfo` is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client's address as the session layer records it: a
    /// [`ClientIp`] extension, else the socket peer from `ConnectInfo`;
    /// `None` when the request has neither.
    pub fn of(extensions: &http::Extensions) -> Option<IpAddr> {
        let decided = extensions.get::<ClientIp>().map(|c| c.0);
        decided.or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
    }
}

/// Adds a [`Session`] to every request.
///
/// Made with [`SessionLayer::builder`] (secure defaults, chained settings)
/// or [`SessionLayer::new`] (a store and a whole [`SessionConfig`]).
#[derive(Debug, Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// A layer over `store` with secure defaults, to be adjusted:
    ///
    /// ```
    /// use tessera::{CarrierMode, MemoryStore, SessionLayer};
    /// let layer = SessionLayer::builder(MemoryStore::new()).carrier(CarrierMode::Header).build();
    /// ```
    ///
    /// A store already shared as an `Arc<dyn SessionStore>` is kept as it
    /// is, not wrapped in a second `Arc`.
    pub fn builder(store: impl SessionStore) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: shared_store(store),
            config: SessionConfig::default(),
            clock: Arc::new(SystemClock),
            #[cfg(feature = "signed")]
            tokens: None,
            revocations: None,
            render: None,
            observer: Observer::default(),
        }
    }

    /// A layer over `store` with `config`, on the system clock.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::builder(store).config(config).build()
    }

    /// A layer with an injected clock (tests move it past timeouts).
    pub fn with_clock(store: Arc<dyn SessionStore>, config: SessionConfig, clock: Arc<dyn Clock>) -> Self {
        Self::builder(store).config(config).clock(clock).build()
    }

    /// This layer in token mode (see [`SessionLayerBuilder::signed_tokens`]).
    #[cfg(feature = "signed")]
    pub fn with_signed_tokens(self, tokens: SignedTokens) -> Self {
        self.rebuilt(|b| b.signed_tokens(tokens))
    }

    /// This layer with revocations (see [`SessionLayerBuilder::revocations`]).
    pub fn with_revocations(self, revocations: Revocations) -> Self {
        self.rebuilt(|b| b.revocations(revocations))
    }

    fn rebuilt(self, change: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> Self {
        let shared = &*self.shared;
        let builder = SessionLayerBuilder {
            store: shared.store.clone(),
            config: shared.config.clone(),
            clock: shared.clock.clone(),
            #[cfg(feature = "signed")]
            tokens: shared.tokens.clone(),
            revocations: shared.revocations.clone(),
            render: shared.render.clone(),
            observer: shared.observer.clone(),
        };
        change(builder).build()
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }

    /// What an operator does to a user's sessions outside any request
    /// (list them, end them all), on this layer's store and revocations.
    pub fn user_sessions(&self) -> crate::UserSessions {
        crate::UserSessions { shared: self.shared.clone() }
    }
}

/// Settings for a [`SessionLayer`]; every one has a secure default.
#[must_use = "call .build() to get the layer"]
pub struct SessionLayerBuilder {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "signed")]
    tokens: Option<SignedTokens>,
    revocations: Option<Revocations>,
    render: Option<RenderFailure>,
    observer: Observer,
}

impl SessionLayerBuilder {
    /// Every session setting at once (replaces the ones set before).
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Where tokens are accepted and answered (default `Auto`).
    pub fn carrier(mut self, carrier: CarrierMode) -> Self {
        self.config.carrier = carrier;
        self
    }

    /// The cookie's name and attributes (default `__Host-tessera`, Secure,
    /// HttpOnly, SameSite=Lax).
    pub fn cookie(mut self, cookie: CookieSettings) -> Self {
        self.config.cookie = cookie;
        self
    }

    /// Idle and absolute timeouts (default 30 minutes and 12 hours).
    pub fn expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.config.expiry = expiry;
        self
    }

    /// Origins trusted for cookie-carried state changes (default none).
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = AllowedOrigin>) -> Self {
        self.config.csrf = CsrfPolicy::new(origins.into_iter().collect());
        self
    }

    /// The most sessions one user may hold; a login beyond it ends the
    /// oldest (default 10; `None`: no cap).
    pub fn max_sessions_per_user(mut self, cap: Option<usize>) -> Self {
        self.config.max_sessions_per_user = cap;
        self
    }

    /// The clock sessions are judged by (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Token mode: logins hand out signed access tokens and refresh tokens
    /// (see [`crate::signed`]) instead of session tokens, and requests are
    /// authenticated by verifying the access token. The engine's
    /// revocations are used.
    #[cfg(feature = "signed")]
    pub fn signed_tokens(mut self, tokens: SignedTokens) -> Self {
        self.revocations = Some(tokens.revocation_handle().clone());
        self.tokens = Some(tokens);
        self
    }

    /// Opaque mode: sessions ended by someone other than their holder (from
    /// another device, by the per-user cap, by "log out everywhere") are
    /// also recorded in `revocations`, and a loaded session is checked
    /// against its list, so a store that loses a deletion (Redis restarted
    /// from an older snapshot) cannot bring such a session back. Token mode
    /// keeps its engine's revocations.
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        #[cfg(feature = "signed")]
        if self.tokens.is_some() {
            return self;
        }
        self.revocations = Some(revocations);
        self
    }

    /// Renders every refusal of this layer and its extractors (and every
    /// [`SessionError`](crate::SessionError) a handler under it returns)
    /// with `render` instead of the default RFC 9457 problem document.
    pub fn render_failures_with(mut self, render: impl Fn(FailureKind) -> Response + Send + Sync + 'static) -> Self {
        self.render = Some(RenderFailure::new(render));
        self
    }

    /// Tells `observer` what happens to sessions: created (logins, new
    /// anonymous sessions) and ended, with the reason (see
    /// [`SessionEvent`](crate::observe::SessionEvent)). Called inline after
    /// the store acted: it must be quick and never block.
    pub fn observer(mut self, observer: Arc<dyn SessionObserver>) -> Self {
        self.observer = Observer::new(observer);
        self
    }

    /// The layer.
    pub fn build(self) -> SessionLayer {
        #[cfg(feature = "signed")]
        let token_mode = self.tokens.is_some();
        #[cfg(not(feature = "signed"))]
        let token_mode = false;
        let refresh_cookie = match self.config.carrier {
            CarrierMode::Auto | CarrierMode::Cookie if token_mode => Some(self.config.cookie.refresh_wire_name()),
            _ => None,
        };
        let shared = Shared {
            store: self.store,
            config: self.config,
            clock: self.clock,
            #[cfg(feature = "signed")]
            tokens: self.tokens,
            refresh_cookie,
            revocations: self.revocations,
            render: self.render,
            observer: self.observer,
        };
        SessionLayer { shared: Arc::new(shared) }
    }
}

impl std::fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayerBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

/// `store` as the layer keeps it. An `Arc<dyn SessionStore>` (what an
/// application that also hands the store to other parts holds) is used as
/// it is: wrapped again, every store call would go through the `Arc`
/// impl's `async_trait` future, one more allocation per call.
fn shared_store<T: SessionStore>(store: T) -> Arc<dyn SessionStore> {
    let mut store = Some(store);
    match (&mut store as &mut dyn std::any::Any).downcast_mut::<Option<Arc<dyn SessionStore>>>() {
        Some(shared) => shared.take().expect("the store was just put there"),
        None => Arc::new(store.expect("the store was not taken")),
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService { inner, shared: self.shared.clone() }
    }
}

/// The service [`SessionLayer`] wraps around an application.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = SessionFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (session, challenge) = open_session(&self.shared, &req);
        if session.csrf_passes_at_once(req.method()) {
            // The common case, with nothing to await before the handler:
            // the service polled ready is called now, and the future is
            // this file's own, not a boxed one.
            req.extensions_mut().insert(session.clone());
            let inner = self.inner.call(req);
            return SessionFuture::handling(inner, session, challenge);
        }
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        SessionFuture::boxed(Box::pin(async move {
            if let Err(refusal) = session.check_csrf(req.method(), req.headers()).await {
                return Ok(rerender(refusal.into_response(), session.shared().render.as_ref()));
            }
            req.extensions_mut().insert(session.clone());
            let response = inner.call(req).await?;
            Ok(committed(&session, challenge, response, session.commit().await))
        }))
    }
}

/// The request's [`Session`], from what it carries (format checks only, no
/// I/O), and the challenge a 401 to it would carry.
fn open_session<B>(shared: &Arc<Shared>, req: &Request<B>) -> (Session, BearerChallenge) {
    let config = &shared.config;
    let headers = req.headers();
    let format = if shared.token_mode() { TokenFormat::Signed } else { TokenFormat::Session };
    let found = carrier::RequestHeaders::scan(headers);
    let (presented, challenge) = carrier::read(config.carrier, &config.cookie, &found, format);
    let respond_via = carrier::respond_via(config.carrier, &presented, &found);
    let client = RequestClient::new(found.user_agent(), ClientIp::of(req.extensions()));
    let refresh_cookie = match &shared.refresh_cookie {
        Some(name) if found.has_cookie() => carrier::read_unique_cookie(name, headers),
        _ => None,
    };
    let target = req.extensions().get::<TargetOrigin>().cloned();
    (Session::new(shared.clone(), presented, respond_via, client, refresh_cookie, target), challenge)
}

/// The answer once the session's writes are done: the credential set or
/// cleared on `response`, or the failure of the write instead.
fn committed(
    session: &Session,
    challenge: BearerChallenge,
    mut response: Response,
    commit: Result<Outcome, SessionError>,
) -> Response {
    let shared = session.shared();
    match commit {
        Ok(outcome) => apply(shared, session, outcome, &mut response),
        Err(e) => return finish(e.into_response(), shared.render.as_ref(), challenge),
    }
    finish(response, shared.render.as_ref(), challenge)
}

type BoxedAnswer<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;
type BoxedCommit = Pin<Box<dyn Future<Output = Result<Outcome, SessionError>> + Send>>;

pin_project! {
    /// The future of [`SessionService`].
    ///
    /// A request that passes the CSRF rules at once and leaves nothing to
    /// write (most reads) costs no allocation here: the handler's future is
    /// polled in place, and only a commit that must call the store, or a
    /// CSRF check that must load the session, is boxed.
    pub struct SessionFuture<F, E> {
        #[pin]
        stage: Stage<F, E>,
    }
}

impl<F, E> SessionFuture<F, E> {
    fn handling(inner: F, session: Session, challenge: BearerChallenge) -> Self {
        Self { stage: Stage::Handling { inner, session, challenge } }
    }

    fn boxed(future: BoxedAnswer<E>) -> Self {
        Self { stage: Stage::Boxed { future } }
    }
}

pin_project! {
    #[project = StageProjection]
    enum Stage<F, E> {
        // The handler runs.
        Handling { #[pin] inner: F, session: Session, challenge: BearerChallenge },
        // The handler has answered; the session's writes run.
        Committing { commit: BoxedCommit, response: Option<Response>, session: Session, challenge: BearerChallenge },
        // The whole request in one boxed future (a CSRF check that awaits).
        Boxed { future: BoxedAnswer<E> },
        // Answered.
        Done,
    }
}

impl<F, E> std::fmt::Debug for SessionFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionFuture")
    }
}

impl<F, E> Future for SessionFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut stage = self.project().stage;
        loop {
            let answer = match stage.as_mut().project() {
                StageProjection::Handling { inner, session, challenge } => {
                    let response = match std::task::ready!(inner.poll(cx)) {
                        Ok(response) => response,
                        Err(e) => {
                            stage.set(Stage::Done);
                            return Poll::Ready(Err(e));
                        }
                    };
                    match session.commit_without_io() {
                        Some(outcome) => Ok(committed(session, *challenge, response, Ok(outcome))),
                        None => {
                            let (session, challenge) = (session.clone(), *challenge);
                            let committing = session.clone();
                            let commit: BoxedCommit = Box::pin(async move { committing.commit().await });
                            let response = Some(response);
                            stage.set(Stage::Committing { commit, response, session, challenge });
                            continue;
                        }
                    }
                }
                StageProjection::Committing { commit, response, session, challenge } => {
                    let result = std::task::ready!(commit.as_mut().poll(cx));
                    let response = response.take().expect("a committing stage holds the answer");
                    Ok(committed(session, *challenge, response, result))
                }
                StageProjection::Boxed { future } => std::task::ready!(future.as_mut().poll(cx)),
                StageProjection::Done => panic!("SessionFuture polled after it answered"),
            };
            stage.set(Stage::Done);
            return Poll::Ready(answer);
        }
    }
}

fn apply(shared: &Shared, session: &Session, outcome: Outcome, response: &mut Response) {
    let headers = response.headers_mut();
    let cookie = &shared.config.cookie;
    match outcome {
        Outcome::Unchanged => return,
        Outcome::Issued(credentials, absolute_deadline) => {
            let now = session.now();
            match (session.respond_via(), credentials) {
                (CarrierKind::Cookie, Credentials::Session(token)) => {
                    let max_age = absolute_deadline.since(now);
                    headers.append(header::SET_COOKIE, carrier::session_cookie(cookie, &token, max_age));
                }
                #[cfg(feature = "signed")]
                (CarrierKind::Cookie, Credentials::Signed(pair)) => {
                    let access = carrier::access_cookie(cookie, &pair.access, pair.access_lifetime(now));
                    headers.append(header::SET_COOKIE, access);
                    let path = shared.refresh_cookie_path();
                    let refresh = pair.refresh.expose();
                    let max_age = absolute_deadline.since(now);
                    headers.append(header::SET_COOKIE, carrier::refresh_cookie(cookie, path, Some(&refresh), max_age));
                }
                (CarrierKind::Header, credentials) => {
                    let token = match credentials {
                        Credentials::Session(token) => token.expose(),
                        #[cfg(feature = "signed")]
                        Credentials::Signed(pair) => pair.access,
                    };
                    let value = HeaderValue::from_str(&token).expect("tokens are header-safe");
                    headers.insert(carrier::AUTH_TOKEN.clone(), value);
                }
            }
        }
        Outcome::Ended => {
            if session.respond_via() == CarrierKind::Cookie || session.carrier() == Some(CarrierKind::Cookie) {
                headers.append(header::SET_COOKIE, carrier::expired_cookie(cookie));
                if shared.token_mode() {
                    let gone =
                        carrier::refresh_cookie(cookie, shared.refresh_cookie_path(), None, std::time::Duration::ZERO);
                    headers.append(header::SET_COOKIE, gone);
                }
            }
        }
    }
    // A response that carries or clears a credential must never be cached.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_already_shared_is_kept_not_wrapped_again() {
        let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let layer = SessionLayer::builder(shared.clone()).build();
        assert!(Arc::ptr_eq(&layer.shared.store, &shared));
        // Any other store, an `Arc` of a concrete store included, is wrapped once.
        let concrete = Arc::new(MemoryStore::new());
        let layer = SessionLayer::builder(concrete.clone()).build();
        assert_eq!(Arc::strong_count(&concrete), 2, "the layer holds the Arc it was given, inside its own");
        drop(layer);
        assert_eq!(Arc::strong_count(&concrete), 1);
    }
}
