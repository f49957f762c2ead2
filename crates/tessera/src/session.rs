//! The per-request session handle handlers work with.
//!
//! The handle is lazy: nothing is read from the store until a handler asks
//! for something, so a route that never looks at its session costs no I/O.
//! Attribute changes are collected and saved once, after the handler, as one
//! versioned write. Login and logout act at once, so a handler knows whether
//! they succeeded before it answers.

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
use crate::record::{Attribute, Attributes, ClientMeta, SessionChange, SessionRecord, UserId};
use crate::store::SessionStore;
use crate::token::{SessionKey, SessionToken};

/// What the layer shares with every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<dyn SessionStore>,
    pub config: SessionConfig,
    pub clock: Arc<dyn Clock>,
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
    client: ClientMeta,
    now: Timestamp,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Current,
    set: BTreeMap<String, serde_json::Value>,
    removed: BTreeSet<String>,
    /// A token created during this request, to be handed to the client.
    issued: Option<SessionToken>,
    /// The caller's session was ended during this request.
    ended: bool,
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
}

/// What a login handed out.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    /// The new token. Put it in the response body only when
    /// [`LoginGrant::carrier`] is [`CarrierKind::Header`]; the layer sets
    /// the cookie or the `X-Auth-Token` header itself.
    pub token: SessionToken,
    /// The carrier the token goes back in.
    pub carrier: CarrierKind,
    /// The new session's CSRF synchronizer token, for pages to echo.
    pub csrf_token: CsrfToken,
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
    /// Hand out a new token, valid until the given absolute deadline.
    Issued(SessionToken, Timestamp),
    /// Make the client forget its token.
    Ended,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, presented: Presented, respond_via: CarrierKind, client: ClientMeta) -> Self {
        let now = shared.clock.now();
        Self(Arc::new(Inner { shared, presented, respond_via, client, now, state: Mutex::default() }))
    }

    /// How the caller's token travelled, if it sent one.
    pub fn carrier(&self) -> Option<CarrierKind> {
        self.0.presented.carrier()
    }

    /// The carrier a token issued now goes back in.
    pub fn respond_via(&self) -> CarrierKind {
        self.0.respond_via
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.0.shared.config
    }

    /// The time this request is judged at.
    pub fn now(&self) -> Timestamp {
        self.0.now
    }

    async fn state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.0.state.lock().await;
        if matches!(state.current, Current::Unloaded) {
            state.current = self.load().await?;
        }
        Ok(state)
    }

    async fn load(&self) -> Result<Current, SessionError> {
        let Presented::Token(token, _) = &self.0.presented else {
            return Ok(Current::Absent);
        };
        let key = token.key();
        match self.0.shared.store.load(&key).await? {
            Some(record) if !record.is_expired(self.0.now) => Ok(Current::Live { key, record }),
            Some(_) => {
                tracing::debug!(session = %key.short(), "session expired");
                Ok(Current::Absent)
            }
            None => Ok(Current::Absent),
        }
    }

    /// Whether the caller has a live session.
    pub async fn exists(&self) -> Result<bool, SessionError> {
        Ok(matches!(self.state().await?.current, Current::Live { .. }))
    }

    /// The logged-in user, `None` for an anonymous or absent session.
    pub async fn user_id(&self) -> Result<Option<UserId>, SessionError> {
        Ok(match &self.state().await?.current {
            Current::Live { record, .. } => record.user_id.clone(),
            _ => None,
        })
    }

    /// The session's CSRF synchronizer token, if there is a session.
    pub async fn csrf_token(&self) -> Result<Option<CsrfToken>, SessionError> {
        Ok(match &self.state().await?.current {
            Current::Live { record, .. } => Some(record.csrf_token.clone()),
            _ => None,
        })
    }

    /// Reads a typed attribute, including changes made earlier in this request.
    pub async fn get<T: Serialize + DeserializeOwned>(&self, key: Key<T>) -> Result<Option<T>, SessionError> {
        let state = self.state().await?;
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
        let mut state = self.state().await?;
        state.removed.remove(key.name());
        state.set.insert(key.name().to_owned(), value);
        Ok(())
    }

    /// Removes an attribute; saved after the handler.
    pub async fn remove<T>(&self, key: Key<T>) -> Result<(), SessionError> {
        let mut state = self.state().await?;
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
            _ => (None, BTreeMap::new()),
        };
        attributes.extend(std::mem::take(&mut state.set));
        for name in std::mem::take(&mut state.removed) {
            attributes.remove(&name);
        }
        let token = self.0.shared.store.issue_token(Some(&user));
        let record = self.new_record(Some(user.clone()), attributes);
        let key = token.key();
        let count = self.0.shared.store.rotate(old.as_ref(), &key, &record).await?;
        if let Some(cap) = self.0.shared.config.max_sessions_per_user {
            self.enforce_cap(&user, &key, cap, count).await?;
        }
        tracing::info!(session = %key.short(), old = ?old.map(|k| k.short()), "session rotated on login");
        let csrf_token = record.csrf_token.clone();
        state.current = Current::Live { key, record: Arc::new(record) };
        state.issued = Some(token.clone());
        state.ended = false;
        Ok(LoginGrant { token, carrier: self.0.respond_via, csrf_token })
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
        let store = &self.0.shared.store;
        let mut sessions = store.list_user(user, self.0.now).await?;
        if sessions.len() <= cap {
            return Ok(());
        }
        sessions.sort_by_key(|k| (k.record.created_at, k.key));
        let excess = sessions.len() - cap;
        for ended in sessions.iter().filter(|k| k.key != *keep).take(excess) {
            store.delete(&ended.key).await?;
            tracing::info!(session = %ended.key.short(), "oldest session ended: per-user cap of {cap} reached");
        }
        Ok(())
    }

    /// Ends the caller's session: deletes the record now; the layer then
    /// expires the cookie. Returns whether there was a session.
    pub async fn logout(&self) -> Result<bool, SessionError> {
        let mut state = self.state().await?;
        let had = match &state.current {
            Current::Live { key, .. } => {
                self.0.shared.store.delete(key).await?;
                tracing::info!(session = %key.short(), "session ended");
                true
            }
            _ => false,
        };
        *state = State { current: Current::Absent, ended: true, ..State::default() };
        Ok(had)
    }

    /// The logged-in user's live sessions, the caller's own marked current.
    pub async fn list_mine(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (user, current) = self.logged_in().await?;
        let mut listed = self.0.shared.store.list_user(&user, self.0.now).await?;
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
        let listed = self.0.shared.store.list_user(&user, self.0.now).await?;
        let Some(target) = listed.into_iter().find(|k| k.key.public_id() == id) else {
            return Ok(false);
        };
        if target.key == current {
            return self.logout().await;
        }
        Ok(self.0.shared.store.delete(&target.key).await?)
    }

    /// Ends every session of the logged-in user but the caller's; returns how many.
    pub async fn revoke_others(&self) -> Result<u64, SessionError> {
        let (user, current) = self.logged_in().await?;
        Ok(self.0.shared.store.delete_user(&user, Some(&current)).await?)
    }

    async fn logged_in(&self) -> Result<(UserId, SessionKey), SessionError> {
        match &self.state().await?.current {
            Current::Live { key, record } => {
                let user = record.user_id.clone().ok_or(SessionError::NotLoggedIn)?;
                Ok((user, *key))
            }
            _ => Err(SessionError::NotLoggedIn),
        }
    }

    /// Whether `presented` is the session's CSRF token. No session, no match.
    pub(crate) async fn csrf_matches(&self, presented: Option<&str>) -> Result<bool, SessionError> {
        let state = self.state().await?;
        Ok(match (&state.current, presented) {
            (Current::Live { record, .. }, Some(p)) => record.csrf_token.verify(p),
            _ => false,
        })
    }

    /// Writes what the request changed: pending attributes in one save (or
    /// a new anonymous session), or a touch if one is due. A request that
    /// never loaded its session writes nothing.
    pub(crate) async fn commit(&self) -> Result<Outcome, SessionError> {
        let mut state = self.0.state.lock().await;
        let shared = &self.0.shared;
        let now = self.0.now;
        let expiry = &shared.config.expiry;
        let has_changes = !state.set.is_empty() || !state.removed.is_empty();
        let State { current, set, removed, issued, ended } = &mut *state;
        match current {
            Current::Live { key, record } if has_changes => {
                let change = SessionChange {
                    base_version: record.version,
                    set: std::mem::take(set),
                    removed: std::mem::take(removed),
                    last_seen: now,
                    idle_deadline: expiry.idle_deadline(now, record.absolute_deadline),
                };
                shared.store.save(key, &change).await?;
            }
            Current::Live { key, record } if issued.is_none() && expiry.touch_due(record.last_seen, now) => {
                let idle = expiry.idle_deadline(now, record.absolute_deadline);
                if let Err(e) = shared.store.touch(key, now, idle).await {
                    // The answer is already right; only the idle deadline
                    // failed to move, which the next request retries.
                    tracing::warn!(session = %key.short(), error = %e, "touch failed");
                }
            }
            Current::Absent if !set.is_empty() => {
                let token = shared.store.issue_token(None);
                let record = self.new_record(None, std::mem::take(set));
                shared.store.create(&token.key(), &record).await?;
                *current = Current::Live { key: token.key(), record: Arc::new(record) };
                *issued = Some(token);
            }
            _ => {}
        }
        Ok(match (issued.take(), &*current, *ended) {
            (Some(token), Current::Live { record, .. }, _) => Outcome::Issued(token, record.absolute_deadline),
            (_, _, true) => Outcome::Ended,
            _ => Outcome::Unchanged,
        })
    }
}

impl Session {
    /// A fresh record opened now by this request's client.
    fn new_record(&self, user_id: Option<UserId>, attributes: BTreeMap<String, serde_json::Value>) -> SessionRecord {
        let now = self.0.now;
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
            client: self.0.client.clone(),
            csrf_token: CsrfToken::generate(),
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
