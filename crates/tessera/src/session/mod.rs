//! The per-request session handle handlers work with.
//!
//! The handle is lazy: nothing is read from the store until a handler asks
//! for something, so a route that never looks at its session costs no I/O.
//! Attribute changes are collected and saved once, after the handler, as one
//! versioned write. Login and logout act at once, so a handler knows whether
//! they succeeded before it answers.
//!
//! In token mode (see [`crate::signed`]) the same handle stands for the
//! caller's token family; `signed.rs` holds what differs.

mod csrf;
mod ending;
mod operator;
#[cfg(feature = "signed")]
mod signed;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::carrier::{CarrierKind, Presented};
use crate::clock::{Clock, Timestamp};
use crate::config::SessionConfig;
use crate::csrf::CsrfToken;
use crate::error::SessionError;
use crate::key::Key;
use crate::observe::{EndReason, SessionEvent};
use crate::policy::ExpiryPolicy;
use crate::record::{Attribute, Attributes, RequestClient, SessionChange, SessionRecord, UserId};
use crate::revocation::Revocations;
#[cfg(feature = "signed")]
use crate::signed::{SignedTokens, TokenPair};
use crate::store::{SessionStore, StoreError};
use crate::token::{SessionKey, SessionToken};

pub use operator::UserSessions;

/// What the layer shares with every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Called through [`Shared::store`].
    pub store: Arc<dyn SessionStore>,
    pub config: SessionConfig,
    pub clock: Arc<dyn Clock>,
    /// Token mode: sign and verify access tokens instead of session tokens.
    #[cfg(feature = "signed")]
    pub tokens: Option<SignedTokens>,
    /// Token mode: the refresh cookie's wire name, looked for on every request.
    pub refresh_cookie: Option<String>,
    /// Revocations every node knows: always in token mode; in opaque mode
    /// when the application asked for them.
    pub revocations: Option<Revocations>,
    /// The application's rendering of refusals; `None`: problem+json.
    pub render: Option<crate::failure::RenderFailure>,
    /// Told when sessions are created and ended.
    pub observer: crate::observe::Observer,
}

impl Shared {
    /// The store, called through its own impl: a call on the `Arc` would
    /// resolve to the `impl SessionStore for Arc<S>`, whose `async_trait`
    /// future is one more allocation per store call.
    pub(crate) fn store(&self) -> &dyn SessionStore {
        &*self.store
    }

    /// The record under `key`: from the store's copy in memory when it has
    /// one, which costs no boxed future, else loaded.
    pub(crate) async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        match self.store().load_cached(key) {
            Some(record) => Ok(Some(record)),
            None => self.store().load(key).await,
        }
    }

    /// Whether logins hand out signed tokens (never without `signed`).
    pub fn token_mode(&self) -> bool {
        #[cfg(feature = "signed")]
        return self.tokens.is_some();
        #[cfg(not(feature = "signed"))]
        false
    }

    /// Token mode: how long a revocation must outlive the access tokens it
    /// concerns.
    pub fn token_revocation_lifetime(&self) -> Option<std::time::Duration> {
        #[cfg(feature = "signed")]
        return self.tokens.as_ref().map(|t| t.settings().revocation_lifetime());
        #[cfg(not(feature = "signed"))]
        None
    }

    /// The path the refresh cookie is confined to (token mode).
    pub fn refresh_cookie_path(&self) -> &str {
        #[cfg(feature = "signed")]
        return self.tokens.as_ref().map_or("/", |t| t.settings().refresh_cookie_path.as_str());
        #[cfg(not(feature = "signed"))]
        "/"
    }
}

/// How sessions end, which decides what must be remembered beyond the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The holder logged out (or was logged in anew). Deleting an opaque
    /// session's record is its end, as durable as the store; a signed
    /// family is also revoked, for its access tokens live on otherwise.
    Logout,
    /// Ended by someone else or by policy: from another device, by the
    /// per-user cap, "everywhere", refresh-token theft. Also revoked in
    /// opaque mode, so a store that loses the deletion cannot undo it.
    Revoked,
}

/// A handle on the caller's session, valid for one request.
///
/// Cloning is cheap and clones share state.
#[derive(Clone)]
pub struct Session(Arc<Inner>);

struct Inner {
    shared: Arc<Shared>,
    presented: Presented,
    respond_via: CarrierKind,
    client: RequestClient,
    /// Token mode: the refresh cookie, if the request carried one.
    refresh_cookie: Option<String>,
    /// The origin the request was addressed to, when the application said
    /// (a [`TargetOrigin`](crate::csrf::TargetOrigin) extension); else the
    /// CSRF check reads it from `Host`.
    target: Option<crate::csrf::TargetOrigin>,
    /// Where a refresh decided its answer goes, overriding `respond_via`.
    answer_via: std::sync::OnceLock<CarrierKind>,
    now: crate::clock::TimeOnce,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Current,
    set: BTreeMap<String, serde_json::Value>,
    removed: BTreeSet<String>,
    /// Credentials created during this request, to be handed to the client.
    issued: Option<Credentials>,
    /// The caller's session was ended during this request.
    ended: bool,
    /// The key of the session the caller ended (a logout), so the request
    /// can still be named in the logs after `current` forgot it.
    ended_key: Option<SessionKey>,
}

#[derive(Default)]
enum Current {
    #[default]
    Unloaded,
    Absent,
    Live {
        key: SessionKey,
        record: Arc<SessionRecord>,
    },
    /// Token mode: a verified access token; the family record is loaded
    /// only if a handler needs more than the user.
    #[cfg_attr(not(feature = "signed"), allow(dead_code))]
    Verified {
        family: SessionKey,
        user: UserId,
    },
}

impl Current {
    /// The session's key (the family's, in token mode) and user, if logged in.
    fn logged_in(&self) -> Option<(SessionKey, UserId)> {
        match self {
            Self::Live { key, record } => Some((*key, record.user_id.clone()?)),
            Self::Verified { family, user } => Some((*family, user.clone())),
            _ => None,
        }
    }

    fn key(&self) -> Option<SessionKey> {
        match self {
            Self::Live { key, .. } | Self::Verified { family: key, .. } => Some(*key),
            _ => None,
        }
    }
}

/// What a login or refresh hands the client.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// An opaque session token.
    Session(SessionToken),
    /// A signed access token and a refresh token.
    #[cfg(feature = "signed")]
    Signed(TokenPair),
}

/// What a login (or, in token mode, a refresh) handed out.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    /// The new credentials. Put them in the response body only when
    /// [`LoginGrant::carrier`] is [`CarrierKind::Header`]; the layer sets
    /// the cookies or the `X-Auth-Token` header itself.
    pub credentials: Credentials,
    /// The carrier the credentials go back in.
    pub carrier: CarrierKind,
    /// The new session's CSRF synchronizer token, for pages to echo.
    pub csrf_token: CsrfToken,
}

impl LoginGrant {
    /// What the client presents from now on: the session token, or the
    /// access token in token mode.
    pub fn token(&self) -> String {
        match &self.credentials {
            Credentials::Session(token) => token.expose(),
            #[cfg(feature = "signed")]
            Credentials::Signed(pair) => pair.access.clone(),
        }
    }

    /// The refresh token (token mode only).
    pub fn refresh_token(&self) -> Option<String> {
        match &self.credentials {
            Credentials::Session(_) => None,
            #[cfg(feature = "signed")]
            Credentials::Signed(pair) => Some(pair.refresh.expose()),
        }
    }

    /// Seconds until the access token expires (token mode only).
    #[cfg_attr(not(feature = "signed"), allow(unused_variables))]
    pub fn expires_in(&self, now: Timestamp) -> Option<u64> {
        match &self.credentials {
            Credentials::Session(_) => None,
            #[cfg(feature = "signed")]
            Credentials::Signed(pair) => Some(pair.access_lifetime(now).as_secs()),
        }
    }
}

/// One of a user's sessions, as shown in a list of devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// An opaque id, not the token and not the store key.
    pub id: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Last activity, milliseconds since the epoch.
    pub last_seen: i64,
    /// The browser or app that opened it.
    pub user_agent: Option<String>,
    /// The address it was opened from.
    pub ip: Option<IpAddr>,
    /// Whether this is the caller's own session.
    pub current: bool,
}

/// What the layer must do to the response after the handler.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing to tell the client.
    Unchanged,
    /// Hand out new credentials, valid until the given absolute deadline.
    Issued(Credentials, Timestamp),
    /// Make the client forget its token.
    Ended,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        presented: Presented,
        respond_via: CarrierKind,
        client: RequestClient,
        refresh_cookie: Option<String>,
        target: Option<crate::csrf::TargetOrigin>,
    ) -> Self {
        Self(Arc::new(Inner {
            shared,
            presented,
            respond_via,
            client,
            refresh_cookie,
            target,
            answer_via: std::sync::OnceLock::new(),
            now: crate::clock::TimeOnce::new(),
            state: Mutex::default(),
        }))
    }

    /// How the caller's token travelled, if it sent one.
    pub fn carrier(&self) -> Option<CarrierKind> {
        self.0.presented.carrier()
    }

    /// The carrier a token issued now goes back in.
    pub fn respond_via(&self) -> CarrierKind {
        self.0.answer_via.get().copied().unwrap_or(self.0.respond_via)
    }

    /// Token mode: whether the request carried the refresh cookie.
    pub(crate) fn has_refresh_cookie(&self) -> bool {
        self.0.refresh_cookie.is_some()
    }

    /// What the layer shares with every handle: the session carries it,
    /// so the layer's future need not hold a second reference.
    pub(crate) fn shared(&self) -> &Shared {
        &self.0.shared
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.0.shared.config
    }

    /// The time this request is judged at: the clock's, read when first
    /// asked, then the same for the whole request.
    pub fn now(&self) -> Timestamp {
        request_time(&self.0.now, &self.0.shared)
    }

    /// The session's digest prefix ([`SessionKey::short`], the name the
    /// library's own log lines give it; the family's in token mode), if the
    /// request has learnt which session it is: loaded or verified, logged
    /// in, or logged out. `None` for a request that never asked, and while
    /// another task holds the session (never waits, never does I/O), so an
    /// access log can call it after the handler at no cost.
    pub fn digest_prefix(&self) -> Option<String> {
        let state = self.0.state.try_lock().ok()?;
        state.current.key().or(state.ended_key).map(|key| key.short())
    }

    async fn state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        // A request's extractors and handler ask one after another, so the
        // lock is almost always free: taken at once, without setting up a
        // waiter and its future.
        let mut state = match self.0.state.try_lock() {
            Ok(state) => state,
            Err(_) => self.0.state.lock().await,
        };
        if matches!(state.current, Current::Unloaded) {
            state.current = self.load().await?;
        }
        Ok(state)
    }

    /// The state with the record loaded, for what a verified access token
    /// alone cannot answer (attributes, CSRF token).
    async fn state_with_record(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.state().await?;
        if let Current::Verified { family, .. } = &state.current {
            let family = *family;
            state.current = match self.0.shared.load(&family).await? {
                Some(record) if !record.is_expired(self.now()) => Current::Live { key: family, record },
                _ => Current::Absent,
            };
        }
        Ok(state)
    }

    async fn load(&self) -> Result<Current, SessionError> {
        #[cfg(feature = "signed")]
        if let Presented::Access(token, _) = &self.0.presented {
            return match self.verify_access(token) {
                // The list's lease lapsed: a late heartbeat is worth a
                // short wait; a cut-off node answers 503 after it.
                Err(SessionError::Unavailable(_)) if self.revocation_list_settles().await => self.verify_access(token),
                verdict => verdict,
            };
        }
        let Presented::Token(token, _) = &self.0.presented else {
            return Ok(Current::Absent);
        };
        let key = token.key();
        match self.0.shared.load(&key).await? {
            Some(record) if self.revoked_yet_stored(&key, &record) => {
                tracing::warn!(session = %key.short(), "a revoked session came back from the store; refused");
                Ok(Current::Absent)
            }
            Some(record) if !record.is_expired(self.now()) => Ok(Current::Live { key, record }),
            Some(_) => {
                tracing::debug!(session = %key.short(), "session expired");
                Ok(Current::Absent)
            }
            None => Ok(Current::Absent),
        }
    }

    /// Whether the caller has a live session.
    pub async fn exists(&self) -> Result<bool, SessionError> {
        Ok(matches!(self.state().await?.current, Current::Live { .. } | Current::Verified { .. }))
    }

    /// The logged-in user, `None` for an anonymous or absent session.
    pub async fn user_id(&self) -> Result<Option<UserId>, SessionError> {
        Ok(self.state().await?.current.logged_in().map(|(_, user)| user))
    }

    /// The logged-in user and the public id of their session (the id
    /// [`Session::list_mine`] shows and [`Session::revoke`] takes; in token
    /// mode, the family's): what a forward-auth answer tells the services
    /// behind a proxy. `None` for an anonymous or absent session.
    pub async fn identity(&self) -> Result<Option<(UserId, String)>, SessionError> {
        Ok(self.state().await?.current.logged_in().map(|(key, user)| (user, key.public_id())))
    }

    /// The session's CSRF synchronizer token, if there is a session.
    pub async fn csrf_token(&self) -> Result<Option<CsrfToken>, SessionError> {
        Ok(self.csrf_of(&*self.state().await?))
    }

    /// The CSRF token of the session `state` holds, derived (see
    /// [`CsrfToken`]): in token mode from the family's key; else from the
    /// session token this request presented or was issued. No session, or
    /// a token that does not name it, no CSRF token.
    fn csrf_of(&self, state: &State) -> Option<CsrfToken> {
        let key = state.current.key()?;
        #[cfg(feature = "signed")]
        if let Some(token) = self.family_csrf(&key) {
            return Some(token);
        }
        let token = match (&state.issued, &self.0.presented) {
            (Some(Credentials::Session(issued)), _) => issued,
            (None, Presented::Token(presented, _)) => presented,
            _ => return None,
        };
        (token.key() == key).then(|| CsrfToken::of_session(token))
    }

    /// Reads a typed attribute, including changes made earlier in this request.
    pub async fn get<T: Serialize + DeserializeOwned>(&self, key: Key<T>) -> Result<Option<T>, SessionError> {
        let state = self.state_with_record().await?;
        let name = key.name();
        let value = if state.removed.contains(name) {
            None
        } else if let Some(v) = state.set.get(name) {
            Some(v)
        } else if let Current::Live { record, .. } = &state.current {
            record.attribute(name)
        } else {
            None
        };
        value.map(|v| T::deserialize(v).map_err(|_| SessionError::Decode(name))).transpose()
    }

    /// Sets a typed attribute; saved after the handler. A caller without a
    /// session gets a new anonymous one.
    pub async fn insert<T: Serialize + DeserializeOwned>(&self, key: Key<T>, value: &T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|_| SessionError::Decode(key.name()))?;
        let mut state = self.state_with_record().await?;
        state.removed.remove(key.name());
        state.set.insert(key.name().to_owned(), value);
        Ok(())
    }

    /// Removes an attribute; saved after the handler.
    pub async fn remove<T>(&self, key: Key<T>) -> Result<(), SessionError> {
        let mut state = self.state_with_record().await?;
        state.set.remove(key.name());
        state.removed.insert(key.name().to_owned());
        Ok(())
    }

    /// Logs `user` in under a new token.
    ///
    /// The new session is written before the old one is deleted (see
    /// [`SessionStore::rotate`]); the old token is dead afterwards, so a
    /// token planted before login (fixation) is worth nothing. Attributes of
    /// the anonymous session carry over.
    pub async fn login(&self, user: UserId) -> Result<LoginGrant, SessionError> {
        let mut state = self.state().await?;
        let (old, mut attributes) = match &state.current {
            Current::Live { key, record } => (Some(*key), live_values(&record.attributes)),
            Current::Verified { family, .. } => (Some(*family), BTreeMap::new()),
            _ => (None, BTreeMap::new()),
        };
        attributes.extend(std::mem::take(&mut state.set));
        for name in std::mem::take(&mut state.removed) {
            attributes.remove(&name);
        }
        let token = self.0.shared.store().issue_token(Some(&user));
        let key = token.key();
        #[cfg_attr(not(feature = "signed"), allow(unused_mut))] // token mode adds the refresh state
        let mut record = self.new_record(Some(user.clone()), attributes);
        // Token mode: the key is the new family's; the session token that
        // hashes to it is never handed out.
        #[cfg(feature = "signed")]
        let refresh = self.0.shared.tokens.as_ref().map(|_| self.open_family(key, &mut record));
        // In token mode the old family is revoked before it is replaced
        // (revocation first everywhere: a failure then leaves it alive and
        // revoked, never deleted and unrevoked).
        if let Some(old) = old {
            self.revoke_families(&[old], Ending::Logout).await?;
        }
        let count = self.0.shared.store().rotate(old.as_ref(), &key, &record).await?;
        let observer = &self.0.shared.observer;
        if let Some(old) = &old {
            let user = state.current.logged_in().map(|(_, user)| user);
            observer.tell(SessionEvent::Ended {
                reason: EndReason::Replaced,
                user: user.as_ref(),
                session: Some(old),
                count: 1,
            });
        }
        observer.tell(SessionEvent::Created {
            session: &key,
            user: Some(&user),
            client: &record.client,
            carrier: self.respond_via(),
        });
        if let Some(cap) = self.0.shared.config.max_sessions_per_user {
            self.enforce_cap(&user, &key, cap, count).await?;
        }
        tracing::info!(session = %key.short(), old = ?old.map(|k| k.short()), "session rotated on login");
        #[cfg(feature = "signed")]
        let credentials = match refresh {
            Some(refresh) => Credentials::Signed(self.sign_pair(&user, key, refresh, self.now(), &record)?),
            None => Credentials::Session(token),
        };
        #[cfg(not(feature = "signed"))]
        let credentials = Credentials::Session(token);
        state.current = Current::Live { key, record: Arc::new(record) };
        state.issued = Some(credentials.clone());
        state.ended = false;
        let csrf_token = self.csrf_of(&state).expect("a session was just logged in");
        Ok(LoginGrant { credentials, carrier: self.respond_via(), csrf_token })
    }

    /// Ends the user's oldest sessions (by creation) beyond `cap`, never
    /// `keep`. `count` is the store's tally from the login, if it had one:
    /// under the cap, nothing more is asked of the store.
    async fn enforce_cap(
        &self,
        user: &UserId,
        keep: &SessionKey,
        cap: usize,
        count: Option<usize>,
    ) -> Result<(), SessionError> {
        if count.is_some_and(|n| n <= cap) {
            return Ok(());
        }
        let store = self.0.shared.store();
        let mut sessions = store.list_user(user, self.now()).await?;
        if sessions.len() <= cap {
            return Ok(());
        }
        sessions.sort_by_key(|k| (k.record.created_at, k.key));
        let excess = sessions.len() - cap;
        let ended: Vec<SessionKey> = sessions.iter().filter(|k| k.key != *keep).take(excess).map(|k| k.key).collect();
        self.revoke_families(&ended, Ending::Revoked).await?;
        for oldest in &ended {
            let count = u64::from(store.delete(oldest).await?);
            tracing::info!(session = %oldest.short(), "oldest session ended: per-user cap of {cap} reached");
            let (user, session) = (Some(user), Some(oldest));
            self.0.shared.observer.tell(SessionEvent::Ended { reason: EndReason::Capped, user, session, count });
        }
        Ok(())
    }

    /// Ends the caller's session: deletes the record now; the layer then
    /// expires the cookie. Returns whether there was a session.
    pub async fn logout(&self) -> Result<bool, SessionError> {
        let mut state = self.state().await?;
        // Token mode: a browser whose access token has lapsed still names
        // its family by the refresh cookie it proves to hold.
        let key = match state.current.key() {
            Some(key) => Some(key),
            #[cfg(feature = "signed")]
            None => self.family_of_refresh_cookie().await?,
            #[cfg(not(feature = "signed"))]
            None => None,
        };
        let had = match key {
            Some(key) => {
                self.revoke_families(&[key], Ending::Logout).await?;
                let count = u64::from(self.0.shared.store().delete(&key).await?);
                tracing::info!(session = %key.short(), "session ended");
                let user = state.current.logged_in().map(|(_, user)| user);
                self.0.shared.observer.tell(SessionEvent::Ended {
                    reason: EndReason::Logout,
                    user: user.as_ref(),
                    session: Some(&key),
                    count,
                });
                true
            }
            None => false,
        };
        *state = State { current: Current::Absent, ended: true, ended_key: key, ..State::default() };
        Ok(had)
    }

    /// The logged-in user's live sessions, the caller's own marked current.
    pub async fn list_mine(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (user, current) = self.logged_in().await?;
        let mut listed = self.0.shared.store().list_user(&user, self.now()).await?;
        listed.sort_by_key(|k| (k.record.created_at, k.key));
        Ok(listed
            .into_iter()
            .map(|k| SessionInfo {
                id: k.key.public_id(),
                created_at: k.record.created_at.as_millis(),
                last_seen: k.record.last_seen.as_millis(),
                user_agent: k.record.client.user_agent,
                ip: k.record.client.ip,
                current: k.key == current,
            })
            .collect())
    }

    /// Ends the logged-in user's session with public id `id`; `false` if
    /// the user has no such session. Ending one's own session is a logout.
    pub async fn revoke(&self, id: &str) -> Result<bool, SessionError> {
        let (user, current) = self.logged_in().await?;
        let listed = self.0.shared.store().list_user(&user, self.now()).await?;
        let Some(target) = listed.into_iter().find(|k| k.key.public_id() == id) else {
            return Ok(false);
        };
        if target.key == current {
            return self.logout().await;
        }
        self.revoke_families(&[target.key], Ending::Revoked).await?;
        let deleted = self.0.shared.store().delete(&target.key).await?;
        let (user, session) = (Some(&user), Some(&target.key));
        let count = u64::from(deleted);
        self.0.shared.observer.tell(SessionEvent::Ended { reason: EndReason::Revoked, user, session, count });
        Ok(deleted)
    }

    /// Ends every session of the logged-in user but the caller's; returns how many.
    pub async fn revoke_others(&self) -> Result<u64, SessionError> {
        let (user, current) = self.logged_in().await?;
        let families = self.families_of(&user, Some(current)).await?;
        self.revoke_all_but(&user, &current, &families).await?;
        let count = self.delete_ended(&user, Some(&current), &families).await?;
        let (user, session) = (Some(&user), None);
        self.0.shared.observer.tell(SessionEvent::Ended { reason: EndReason::Revoked, user, session, count });
        Ok(count)
    }

    /// Ends every session of the logged-in user, the caller's included
    /// ("log out everywhere"); returns how many. In token mode every
    /// access token the user holds is refused from now on, on every node.
    pub async fn logout_everywhere(&self) -> Result<u64, SessionError> {
        let (user, _) = self.logged_in().await?;
        let families = self.families_of(&user, None).await?;
        self.revoke_everywhere(&user, &families).await?;
        let ended = self.delete_ended(&user, None, &families).await?;
        tracing::info!(user = %user, sessions = ended, "logged out everywhere");
        let (reason, session, count) = (EndReason::Everywhere, None, ended);
        self.0.shared.observer.tell(SessionEvent::Ended { reason, user: Some(&user), session, count });
        *self.0.state.lock().await = State { current: Current::Absent, ended: true, ..State::default() };
        Ok(ended)
    }

    async fn logged_in(&self) -> Result<(UserId, SessionKey), SessionError> {
        let (key, user) = self.state().await?.current.logged_in().ok_or(SessionError::NotLoggedIn)?;
        Ok((user, key))
    }

    /// Whether `presented` is the session's CSRF token. No session, no match.
    pub(crate) async fn csrf_matches(&self, presented: Option<&str>) -> Result<bool, SessionError> {
        let Some(presented) = presented else { return Ok(false) };
        Ok(self.csrf_of(&*self.state().await?).is_some_and(|token| token.verify(presented)))
    }

    /// Writes what the request changed: pending attributes in one save (or
    /// a new anonymous session), or a touch if one is due. A request that
    /// never loaded its session writes nothing.
    pub(crate) async fn commit(&self) -> Result<Outcome, SessionError> {
        let mut state = self.0.state.lock().await;
        let shared = &self.0.shared;
        let now = self.now();
        let expiry = &shared.config.expiry;
        let write = pending_write(&state, expiry, || now);
        let State { current, set, removed, issued, .. } = &mut *state;
        match (write, current) {
            (Write::Save, Current::Live { key, record }) => {
                let change = SessionChange {
                    base_version: record.version,
                    set: std::mem::take(set),
                    removed: std::mem::take(removed),
                    last_seen: now,
                    idle_deadline: expiry.idle_deadline(now, record.absolute_deadline),
                };
                shared.store().save(key, &change).await?;
            }
            (Write::Touch, Current::Live { key, record }) => {
                let idle = expiry.idle_deadline(now, record.absolute_deadline);
                if let Err(e) = shared.store().touch(key, now, idle).await {
                    // The answer is already right; only the idle deadline
                    // failed to move, which the next request retries.
                    tracing::warn!(session = %key.short(), error = %e, "touch failed");
                }
            }
            (Write::Anonymous, _) if shared.token_mode() => {
                // Token mode keeps no anonymous state: there is no token
                // that could name it.
                tracing::debug!("attributes of an anonymous caller dropped in token mode");
            }
            (Write::Anonymous, current) => {
                let token = shared.store().issue_token(None);
                let record = self.new_record(None, std::mem::take(set));
                shared.store().create(&token.key(), &record).await?;
                shared.observer.tell(SessionEvent::Created {
                    session: &token.key(),
                    user: None,
                    client: &record.client,
                    carrier: self.respond_via(),
                });
                *current = Current::Live { key: token.key(), record: Arc::new(record) };
                *issued = Some(Credentials::Session(token));
            }
            _ => {}
        }
        Ok(outcome(&mut state))
    }

    /// [`Session::commit`] for a request that left nothing to write (the
    /// common case: a route that never asked, a read with no touch due):
    /// the outcome at once, without awaiting the lock or boxing a future.
    /// `None`: there is something to write, or the state is busy; call
    /// `commit`.
    pub(crate) fn commit_without_io(&mut self) -> Option<Outcome> {
        // By the time the layer asks, the request and the clones of this
        // handle its extractors took are usually gone: alone with the
        // state, it needs no lock (a try-lock and its release, which takes
        // the semaphore's own mutex, on every request).
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            let Inner { shared, now, state, .. } = inner;
            return settled(state.get_mut(), &shared.config.expiry, || request_time(now, shared));
        }
        let mut state = self.0.state.try_lock().ok()?;
        settled(&mut state, &self.0.shared.config.expiry, || self.now())
    }
}

/// The request's time kept in `now`, read from `shared`'s clock when first
/// asked: a request that never looks at its session (most requests without
/// a credential) reads no clock for it.
fn request_time(now: &crate::clock::TimeOnce, shared: &Shared) -> Timestamp {
    now.get_or_read(|| shared.clock.now())
}

/// The outcome of a request whose `state` leaves nothing to write; `None`
/// when it does.
fn settled(state: &mut State, expiry: &ExpiryPolicy, now: impl FnOnce() -> Timestamp) -> Option<Outcome> {
    (pending_write(state, expiry, now) == Write::Nothing).then(|| outcome(state))
}

/// What [`Session::commit`] must write for `state`: the one place that
/// decides it, for `commit` and for the layer's shortcut alike. `now` is
/// asked only when a touch may be due.
fn pending_write(state: &State, expiry: &ExpiryPolicy, now: impl FnOnce() -> Timestamp) -> Write {
    match &state.current {
        Current::Live { .. } if !state.set.is_empty() || !state.removed.is_empty() => Write::Save,
        Current::Live { record, .. } if state.issued.is_none() && expiry.touch_due(record.last_seen, now()) => {
            Write::Touch
        }
        Current::Absent if !state.set.is_empty() => Write::Anonymous,
        _ => Write::Nothing,
    }
}

/// What a request leaves for [`Session::commit`] to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Nothing: the outcome is known without the store.
    Nothing,
    /// The attributes changed on a live session: one versioned save.
    Save,
    /// A live session's touch is due.
    Touch,
    /// Attributes set without a session: a new anonymous one.
    Anonymous,
}

/// What the client is told once the request's writes are done.
fn outcome(state: &mut State) -> Outcome {
    match (state.issued.take(), &state.current, state.ended) {
        (Some(credentials), Current::Live { record, .. }, _) => Outcome::Issued(credentials, record.absolute_deadline),
        (_, _, true) => Outcome::Ended,
        _ => Outcome::Unchanged,
    }
}

impl Session {
    /// A fresh record opened now by this request's client.
    fn new_record(&self, user_id: Option<UserId>, attributes: BTreeMap<String, serde_json::Value>) -> SessionRecord {
        let now = self.now();
        let expiry = &self.0.shared.config.expiry;
        let absolute_deadline = expiry.absolute_deadline(now);
        SessionRecord {
            user_id,
            attributes: attributes.into_iter().map(|(k, v)| (k, Attribute { value: Some(v), version: 0 })).collect(),
            created_at: now,
            last_seen: now,
            idle_deadline: expiry.idle_deadline(now, absolute_deadline),
            absolute_deadline,
            version: 0,
            client: self.0.client.meta(),
        }
    }
}

fn live_values(attributes: &Attributes) -> BTreeMap<String, serde_json::Value> {
    attributes.iter().filter_map(|(k, a)| a.value.clone().map(|v| (k.clone(), v))).collect()
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("carrier", &self.carrier())
            .field("respond_via", &self.0.respond_via)
            .finish_non_exhaustive()
    }
}
