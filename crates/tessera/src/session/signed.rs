//! What the session handle does differently in token mode: verify access
//! tokens, open and rotate token families, and push revocations.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Credentials, Current, Ending, LoginGrant, Session, State};
use crate::carrier::{AccessText, CarrierKind};
use crate::config::CarrierMode;
use crate::csrf::CsrfToken;
use crate::error::SessionError;
use crate::observe::{EndReason, SessionEvent};
use crate::record::{Attribute, SessionChange, SessionRecord, UserId};
use crate::revocation::sid_of;
use crate::signed::{Bearer, RefreshState, RefreshToken, Rejection, Standing, TokenPair, REFRESH_STATE};
use crate::store::StoreError;
use crate::token::SessionKey;
use crate::Timestamp;

/// How often a refresh that lost a race re-reads the family before giving up.
const REFRESH_ATTEMPTS: usize = 3;

impl Session {
    /// Judges the request's access token by CPU alone.
    pub(super) fn verify_access(&self, token: &AccessText) -> Result<Current, SessionError> {
        let tokens = self.0.shared.tokens.as_ref().expect("access tokens are only read in token mode");
        match tokens.verify_presented(token, self.now()) {
            Ok(Bearer { user, family: Some(family) }) => Ok(Current::Verified { family, user }),
            Ok(Bearer { family: None, .. }) => Ok(Current::Absent),
            // Without the revocation list this node cannot tell a revoked
            // token from a good one: 503, never a guess.
            Err(Rejection::NotReady) => Err(SessionError::Unavailable("revocation list not loaded".into())),
            Err(rejection) => {
                tracing::debug!(%rejection, "access token refused");
                Ok(Current::Absent)
            }
        }
    }

    /// Makes `record` the family `key` and returns its first refresh token.
    pub(super) fn open_family(&self, key: SessionKey, record: &mut SessionRecord) -> RefreshToken {
        let refresh = RefreshToken::generate(key);
        let state = serde_json::to_value(RefreshState::new(&refresh, self.now())).expect("refresh state serializes");
        record.attributes.insert(REFRESH_STATE.name().to_owned(), Attribute { value: Some(state), version: 0 });
        refresh
    }

    /// Signs the access token that goes with `refresh`.
    pub(super) fn sign_pair(
        &self,
        user: &UserId,
        family: SessionKey,
        refresh: RefreshToken,
        issued: Timestamp,
        record: &SessionRecord,
    ) -> Result<TokenPair, SessionError> {
        let tokens = self.0.shared.tokens.as_ref().expect("pairs are only signed in token mode");
        let (access, access_expires) =
            tokens.issue(user, &family, &refresh, issued).map_err(|e| SessionError::Signing(e.to_string()))?;
        Ok(TokenPair { access, access_expires, refresh, refresh_expires: record.absolute_deadline })
    }

    /// Token mode: the family of the request's refresh cookie, if the
    /// cookie is that family's current (or just rotated) token. A guessed
    /// or stale cookie names nothing, so it cannot end anyone's family.
    pub(super) async fn family_of_refresh_cookie(&self) -> Result<Option<SessionKey>, SessionError> {
        Ok(self.refresh_cookie_family().await?.map(|(family, _)| family))
    }

    /// The family named by the refresh cookie, with its record, if the
    /// cookie is its current (or just rotated) token.
    async fn refresh_cookie_family(&self) -> Result<Option<(SessionKey, Arc<SessionRecord>)>, SessionError> {
        let (Some(tokens), Some(text)) = (&self.0.shared.tokens, &self.0.refresh_cookie) else { return Ok(None) };
        let Ok(token) = RefreshToken::parse(text) else { return Ok(None) };
        let Some(record) = self.0.shared.store().load_uncached(&token.family()).await? else { return Ok(None) };
        let standing = refresh_state(&record)
            .map(|s| s.standing(&token, tokens.derive_key(), self.now(), tokens.settings().refresh_grace));
        Ok(matches!(standing, Some(Standing::Current | Standing::JustRotated { .. })).then(|| (token.family(), record)))
    }

    /// Token mode: the CSRF token of `family` (see [`CsrfToken`]); `None`
    /// in opaque mode.
    pub(super) fn family_csrf(&self, family: &SessionKey) -> Option<CsrfToken> {
        self.0.shared.tokens.as_ref().map(|tokens| CsrfToken::of_family(tokens.derive_key(), family))
    }

    /// Whether `presented` is the CSRF token of the family the refresh
    /// cookie names. A cookie that names no live family matches nothing:
    /// a request riding on it is refused like any other without its token.
    pub(crate) async fn refresh_csrf_matches(&self, presented: Option<&str>) -> Result<bool, SessionError> {
        let Some(presented) = presented else { return Ok(false) };
        Ok(match self.refresh_cookie_family().await? {
            Some((family, _)) => self.family_csrf(&family).is_some_and(|token| token.verify(presented)),
            None => false,
        })
    }

    /// Exchanges a refresh token for a new pair (token mode). `presented`
    /// comes from the request body; without it the refresh cookie is used.
    ///
    /// The token is rotated: the old one is dead afterwards. Presenting a
    /// token that was already rotated away revokes its whole family (one
    /// of its holders is a thief), except within the grace window, where a
    /// concurrent refresh with the same token gets the same new pair.
    pub async fn refresh(&self, presented: Option<&str>) -> Result<LoginGrant, SessionError> {
        let tokens = self.0.shared.tokens.as_ref().ok_or(SessionError::RefreshRejected)?;
        let text = presented.or(self.0.refresh_cookie.as_deref()).ok_or(SessionError::RefreshRejected)?;
        self.answer_refresh_via(presented.is_some());
        let token = RefreshToken::parse(text).map_err(|_| SessionError::RefreshRejected)?;
        let (family, now, store) = (token.family(), self.now(), self.0.shared.store());
        let grace = tokens.settings().refresh_grace;
        for _ in 0..REFRESH_ATTEMPTS {
            // Past any cache: a stale copy would mistake the current token
            // for an unknown one.
            let record = store.load_uncached(&family).await?;
            let Some(record) = record.filter(|r| !r.is_expired(now)) else {
                return Err(SessionError::RefreshRejected);
            };
            let user = record.user_id.clone().ok_or(SessionError::RefreshRejected)?;
            if tokens.revocations().revokes_family(&sid_of(&family), &user, record.created_at.as_millis()) {
                return Err(SessionError::RefreshRejected);
            }
            let state = refresh_state(&record).ok_or(SessionError::RefreshRejected)?;
            let next = token.successor(tokens.derive_key());
            match state.standing(&token, tokens.derive_key(), now, grace) {
                Standing::Current => {
                    let rotated = serde_json::to_value(state.rotated(&next, now)).expect("refresh state serializes");
                    let change = SessionChange {
                        base_version: record.version,
                        set: BTreeMap::from([(REFRESH_STATE.name().to_owned(), rotated)]),
                        removed: Default::default(),
                        last_seen: now,
                        idle_deadline: self.0.shared.config.expiry.idle_deadline(now, record.absolute_deadline),
                    };
                    match store.save(&family, &change).await {
                        Ok(_) => return self.grant(user, family, next, now, record).await,
                        // A concurrent refresh won the race: judge again.
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Standing::JustRotated { at } => {
                    tracing::info!(family = %family.short(), "refresh within the grace window: same pair again");
                    return self.grant(user, family, next, at, record).await;
                }
                Standing::Reused => {
                    tracing::warn!(family = %family.short(), generation = state.generation,
                        "refresh token reused after rotation: family revoked");
                    // Revoked first: should the deletion fail, a retry finds
                    // the family and judges the same; the other way round a
                    // failed revocation would be lost with the family.
                    self.revoke_families(&[family], Ending::Revoked).await?;
                    let count = u64::from(store.delete(&family).await?);
                    self.0.shared.observer.tell(SessionEvent::Ended {
                        reason: EndReason::RefreshReuse,
                        user: Some(&user),
                        session: Some(&family),
                        count,
                    });
                    return Err(SessionError::RefreshRejected);
                }
                Standing::Unknown => return Err(SessionError::RefreshRejected),
            }
        }
        Err(SessionError::Conflict("the refresh token kept changing under this request".into()))
    }

    async fn grant(
        &self,
        user: UserId,
        family: SessionKey,
        refresh: RefreshToken,
        issued: Timestamp,
        record: Arc<SessionRecord>,
    ) -> Result<LoginGrant, SessionError> {
        let pair = self.sign_pair(&user, family, refresh, issued, &record)?;
        let credentials = Credentials::Signed(pair);
        let mut state = self.0.state.lock().await;
        *state = State {
            current: Current::Live { key: family, record },
            issued: Some(credentials.clone()),
            ..State::default()
        };
        let csrf_token = self.family_csrf(&family).expect("grants are only made in token mode");
        Ok(LoginGrant { credentials, carrier: self.respond_via(), csrf_token })
    }

    /// Under the `auto` carrier a refresh answers the way its token came:
    /// a token from the body goes back in the body (an API client), the
    /// refresh cookie gets cookies.
    fn answer_refresh_via(&self, from_body: bool) {
        if self.0.shared.config.carrier == CarrierMode::Auto {
            let via = if from_body { CarrierKind::Header } else { CarrierKind::Cookie };
            let _ = self.0.answer_via.set(via);
        }
    }
}

fn refresh_state(record: &SessionRecord) -> Option<RefreshState> {
    record.attribute(REFRESH_STATE.name()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

impl Session {
    /// Token mode: whether the revocation list is current, or becomes so
    /// within its patience (a late heartbeat rather than a lost channel).
    pub(super) async fn revocation_list_settles(&self) -> bool {
        match &self.0.shared.revocations {
            Some(revocations) => revocations.list().ready_within_patience().await,
            None => false,
        }
    }
}
