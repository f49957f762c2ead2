//! Revocations known to every node without a store round trip per request.
//!
//! An access token (or, in opaque mode, a loaded session) is checked
//! against this node's in-memory [`RevocationList`]: revoked families or
//! sessions (`sid`) and per-user "not before" times. A [`RevocationStore`]
//! records each revocation durably and pushes it to every node's list; a
//! node whose list is not current (starting, or its push channel's
//! [`Lease`] lapsed) refuses to judge access tokens at all. Lists only ever
//! grow by merging until entries expire: a store that comes back with less
//! than it had (Redis restarted empty or from an old snapshot) cannot make
//! a node forget. Entries expire when the last credential they could
//! concern has, so the list stays small.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::lease::Lease;
use crate::record::UserId;
use crate::store::StoreError;
use crate::token::SessionKey;

/// The name of a session (a token family's `sid` claim) in revocations.
#[doc(hidden)] // the encoding: for tests and the benchmark tool, not an API
pub fn sid_of(family: &SessionKey) -> String {
    URL_SAFE_NO_PAD.encode(family.as_bytes())
}

/// A `sid` as a revocation check reads it: a family's key, spelled out
/// (into a buffer on the stack) only if some family is revoked at all, or
/// a `sid` that names no family, as it came.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sid<'a> {
    /// The `sid` of this family ([`sid_of`]).
    Family(&'a SessionKey),
    /// A `sid` as written.
    Text(&'a str),
}

impl Sid<'_> {
    /// Runs `f` on the `sid` as text.
    fn with<R>(self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Sid::Text(text) => f(text),
            Sid::Family(key) => {
                let mut spelled = [0u8; 43];
                let len =
                    URL_SAFE_NO_PAD.encode_slice(key.as_bytes(), &mut spelled).expect("32 bytes take 43 characters");
                f(std::str::from_utf8(&spelled[..len]).expect("base64 is ASCII"))
            }
        }
    }
}

/// The family a `sid` claim names.
#[doc(hidden)] // the claim's decoding: for tests, not an API
pub fn family_of(sid: &str) -> Option<SessionKey> {
    let mut bytes = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(sid.as_bytes(), &mut bytes) {
        Ok(32) if sid.len() == 43 => Some(SessionKey::from_bytes(bytes)),
        _ => None,
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Every token of a session family.
    Family {
        /// The family (`sid` claim).
        sid: String,
        /// When the entry may be forgotten.
        until: Timestamp,
    },
    /// Every token (and session) of a user issued before a time ("log out
    /// everywhere").
    User {
        /// The user (`sub` claim).
        user: UserId,
        /// What was issued before this (milliseconds since the epoch) is revoked.
        not_before_ms: i64,
        /// When the entry may be forgotten.
        until: Timestamp,
    },
    /// Every token (and session) of a user issued before a time but those
    /// of one family ("end my other sessions"): it holds even for families
    /// whose records a store lost, which no listing could name.
    Others {
        /// The user (`sub` claim).
        user: UserId,
        /// What was issued before this (milliseconds since the epoch) is revoked…
        not_before_ms: i64,
        /// …except this family (`sid`), the caller's.
        keep: String,
        /// When the entry may be forgotten.
        until: Timestamp,
    },
}

impl Revocation {
    /// When the entry may be forgotten.
    pub fn until(&self) -> Timestamp {
        match self {
            Self::Family { until, .. } | Self::User { until, .. } | Self::Others { until, .. } => *until,
        }
    }

    /// The entry as one line of text, for stores and channels:
    /// `f <until> <sid>`, `U <until> <not_before_ms> <user>` (`u`, read
    /// too, is the older form with the cutoff in seconds), or
    /// `o <until> <not_before_ms> <kept sid> <user>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Family { sid, until } => format!("f {} {sid}", until.as_millis()),
            Self::User { user, not_before_ms, until } => format!("U {} {not_before_ms} {user}", until.as_millis()),
            Self::Others { user, not_before_ms, keep, until } => {
                format!("o {} {not_before_ms} {keep} {user}", until.as_millis())
            }
        }
    }

    /// Parses [`Revocation::encode`]'s output.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ' ');
        let (kind, until, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let until = Timestamp::from_millis(until.parse().ok()?);
        match kind {
            "f" if !rest.is_empty() && !rest.contains(' ') => Some(Self::Family { sid: rest.to_owned(), until }),
            "U" | "u" => {
                let (not_before, user) = rest.split_once(' ')?;
                let not_before: i64 = not_before.parse().ok()?;
                let not_before_ms = if kind == "u" { not_before.checked_mul(1000)? } else { not_before };
                Some(Self::User { user: UserId::parse(user).ok()?, not_before_ms, until })
            }
            "o" => {
                let (not_before, rest) = rest.split_once(' ')?;
                let (keep, user) = rest.split_once(' ')?;
                if keep.is_empty() {
                    return None;
                }
                let not_before_ms = not_before.parse().ok()?;
                Some(Self::Others { user: UserId::parse(user).ok()?, not_before_ms, keep: keep.to_owned(), until })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    families: HashMap<String, Timestamp>,
    users: HashMap<UserId, (i64, Timestamp)>,
    /// Per user: (cutoff, kept family, until) of each "end my others".
    others: HashMap<UserId, Vec<(i64, String, Timestamp)>>,
}

impl Entries {
    fn add(&mut self, revocation: &Revocation) {
        match revocation {
            Revocation::Family { sid, until } => {
                let slot = self.families.entry(sid.clone()).or_insert(*until);
                *slot = (*slot).max(*until);
            }
            Revocation::User { user, not_before_ms, until } => {
                let slot = self.users.entry(user.clone()).or_insert((*not_before_ms, *until));
                *slot = (slot.0.max(*not_before_ms), slot.1.max(*until));
            }
            Revocation::Others { user, not_before_ms, keep, until } => {
                let list = self.others.entry(user.clone()).or_default();
                if !list.iter().any(|(nb, k, _)| nb == not_before_ms && k == keep) {
                    list.push((*not_before_ms, keep.clone(), *until));
                }
            }
        }
    }

    /// Whether what `user` was issued at `issued_ms` in family `sid` is revoked.
    fn revokes(&self, sid: Sid<'_>, user: &UserId, issued_ms: i64) -> bool {
        (!self.families.is_empty() && sid.with(|sid| self.families.contains_key(sid)))
            || self.users.get(user).is_some_and(|(not_before, _)| issued_ms < *not_before)
            || self.others.get(user).is_some_and(|list| {
                sid.with(|sid| list.iter().any(|(not_before, keep, _)| issued_ms < *not_before && keep != sid))
            })
    }
}

/// This node's view of what is revoked.
#[derive(Debug, Default)]
pub struct RevocationList {
    entries: RwLock<Entries>,
    lease: Lease,
    /// Milliseconds a check may wait for a late lease renewal.
    patience_ms: AtomicU64,
}

impl RevocationList {
    /// An empty list, not ready until a store has loaded it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the list is loaded and known current.
    pub fn is_ready(&self) -> bool {
        self.lease.is_valid()
    }

    /// Marks the list current until further notice, or not current.
    pub fn set_ready(&self, ready: bool) {
        if ready {
            self.lease.grant_forever();
        } else {
            self.lease.end();
        }
    }

    /// The lease a push channel renews (see [`crate::lease`]).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// How long [`RevocationList::ready_within_patience`] callers should wait for a
    /// late renewal: the store that renews the lease says.
    pub fn set_patience(&self, patience: Duration) {
        self.patience_ms.store(u64::try_from(patience.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Whether the list is current, or becomes so within its patience.
    pub async fn ready_within_patience(&self) -> bool {
        let patience = Duration::from_millis(self.patience_ms.load(Ordering::Relaxed));
        self.lease.valid_within(patience).await
    }

    /// Adds revocations.
    pub fn add(&self, revocations: &[Revocation]) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for r in revocations {
            entries.add(r);
        }
    }

    /// Merges a freshly loaded set into what this list holds. Nothing is
    /// forgotten: a store that lost entries must not make a node forget.
    pub fn merge(&self, revocations: &[Revocation]) {
        self.add(revocations);
        self.prune(SystemClock.now());
    }

    /// Merges a loaded set and marks the list current until further notice
    /// (stores without a push channel to lose).
    pub fn load(&self, revocations: &[Revocation]) {
        self.merge(revocations);
        self.set_ready(true);
    }

    /// Forgets entries that can no longer matter at `now`.
    pub fn prune(&self, now: Timestamp) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.families.retain(|_, until| *until > now);
        entries.users.retain(|_, (_, until)| *until > now);
        entries.others.retain(|_, list| {
            list.retain(|(_, _, until)| *until > now);
            !list.is_empty()
        });
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.families.len() + entries.users.len() + entries.others.values().map(Vec::len).sum::<usize>()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a family (by `sid`, of `user`, created at `created_ms`)
    /// has been revoked, directly or by its user's cutoff. A refresh must
    /// not mint tokens for it even if its record is still in the store (a
    /// revocation is recorded before the record is deleted).
    pub fn revokes_family(&self, sid: &str, user: &UserId, created_ms: i64) -> bool {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).revokes(Sid::Text(sid), user, created_ms)
    }

    /// Whether the session `key` of `user`, created at `created_ms`, has
    /// been revoked (opaque mode: a record a store brought back after its
    /// end). Costs one read lock when nothing is revoked.
    pub fn revokes_session(&self, key: &SessionKey, user: &UserId, created_ms: i64) -> bool {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).revokes(Sid::Family(key), user, created_ms)
    }

    /// Whether `claims` may still be honoured.
    #[cfg(feature = "signed")]
    pub fn check(&self, claims: &crate::signed::AccessClaims) -> Result<(), crate::signed::Rejection> {
        self.check_issued(Sid::Text(&claims.sid), &claims.sub, claims.issued_ms())
    }

    /// [`RevocationList::check`] on the claims' parts that it reads (`sid`,
    /// `sub` and [`AccessClaims::issued_ms`](crate::signed::AccessClaims::issued_ms)),
    /// for callers that keep them apart.
    #[cfg(feature = "signed")]
    pub(crate) fn check_issued(
        &self,
        sid: Sid<'_>,
        user: &UserId,
        issued_ms: i64,
    ) -> Result<(), crate::signed::Rejection> {
        use crate::signed::Rejection;
        if !self.is_ready() {
            return Err(Rejection::NotReady);
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        // Strictly before, in milliseconds: a login right after
        // "everywhere" must work, one right before must not (even if its
        // family record was lost and so not revoked by `sid`).
        if entries.revokes(sid, user, issued_ms) {
            return Err(Rejection::Revoked);
        }
        Ok(())
    }
}

/// Where revocations are recorded and how they reach every node.
#[async_trait]
pub trait RevocationStore: Send + Sync + fmt::Debug + 'static {
    /// Records `revocations` durably and pushes them to every attached list
    /// (on every node).
    async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError>;

    /// Loads the current set into `list` and keeps it current for as long
    /// as the list lives, marking it not ready whenever it cannot.
    async fn attach(&self, list: Arc<RevocationList>) -> Result<(), StoreError>;
}

/// Where revocations are also kept when the store that pushes them (Redis)
/// may lose its recent past: the user database, shared by the nodes.
#[async_trait]
pub trait RevocationArchive: Send + Sync + fmt::Debug + 'static {
    /// Records `revocations` durably.
    async fn record(&self, revocations: &[Revocation]) -> Result<(), StoreError>;
    /// The entries still in force at `now`.
    async fn current(&self, now: Timestamp) -> Result<Vec<Revocation>, StoreError>;
}

/// A node's revocation list together with the store that fills it on every
/// node. Cheap to clone; clones share the list.
#[derive(Debug, Clone)]
pub struct Revocations {
    list: Arc<RevocationList>,
    store: Arc<dyn RevocationStore>,
}

impl Revocations {
    /// A list loaded from `store` and kept current by it.
    pub async fn attach(store: Arc<dyn RevocationStore>) -> Result<Self, StoreError> {
        let list = Arc::new(RevocationList::new());
        store.attach(list.clone()).await?;
        Ok(Self { list, store })
    }

    /// This node's list.
    pub fn list(&self) -> &Arc<RevocationList> {
        &self.list
    }

    /// Records and pushes to all nodes, then (before the answer, so this
    /// node never honours what it just acknowledged as revoked) adds to this
    /// node's list. Nothing is added here when the store fails: a node must
    /// not refuse alone what the others were never told (the caller gets
    /// 503 and retries; an archive that kept it is merged by every node at
    /// its next load).
    pub async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        if revocations.is_empty() {
            return Ok(());
        }
        self.store.revoke(revocations).await?;
        self.list.merge(revocations);
        Ok(())
    }
}

/// Revocations for one process: pushed to the lists of this process only,
/// and kept in memory (see `SqliteRevocations` for the durable kind).
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    lists: Mutex<Vec<Weak<RevocationList>>>,
    kept: Mutex<Vec<Revocation>>,
}

impl MemoryRevocations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes `revocations` to every live attached list.
    pub fn deliver(&self, revocations: &[Revocation]) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.retain(|weak| match weak.upgrade() {
            Some(list) => {
                list.add(revocations);
                true
            }
            None => false,
        });
    }

    /// Attaches `list`, loading it with `current`.
    pub fn attach_loaded(&self, list: &Arc<RevocationList>, current: &[Revocation]) {
        list.load(current);
        self.lists.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(list));
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocations {
    async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(revocations);
        self.deliver(revocations);
        Ok(())
    }

    async fn attach(&self, list: Arc<RevocationList>) -> Result<(), StoreError> {
        let current = self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.attach_loaded(&list, &current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "signed")]
    use crate::signed::{AccessClaims, Rejection};

    #[cfg(feature = "signed")]
    fn claims(sid: &str, user: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: UserId::parse(user).unwrap(),
            sid: sid.into(),
            iat,
            nbf: iat,
            exp: iat + 600,
            jti: "j".into(),
            iat_ms: None,
        }
    }

    #[test]
    fn entries_round_trip_as_text() {
        let until = Timestamp::from_millis(1_700_000_000_000);
        for r in [
            Revocation::Family { sid: "abc_-1".into(), until },
            Revocation::User { user: UserId::parse("user 7").unwrap(), not_before_ms: 1_700_000_000_123, until },
        ] {
            assert_eq!(Revocation::decode(&r.encode()), Some(r));
        }
        let old = Revocation::decode("u 5 1700000000 7").unwrap();
        assert_eq!(
            old,
            Revocation::User {
                user: UserId::from(7),
                not_before_ms: 1_700_000_000_000,
                until: Timestamp::from_millis(5)
            }
        );
        for junk in ["", "f", "f 1", "f x abc", "f 1 a b", "u 1 x 7", "U 1 x 7", "z 1 a"] {
            assert_eq!(Revocation::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    #[cfg(feature = "signed")]
    fn a_list_judges_nothing_until_loaded() {
        let list = RevocationList::new();
        assert_eq!(list.check(&claims("s", "1", 10)), Err(Rejection::NotReady));
        list.load(&[]);
        assert_eq!(list.check(&claims("s", "1", 10)), Ok(()));
    }

    #[test]
    #[cfg(feature = "signed")]
    fn families_and_user_cutoffs_are_revoked_until_they_expire() {
        let list = RevocationList::new();
        let until = Timestamp::from_millis(i64::MAX / 2);
        list.load(&[
            Revocation::Family { sid: "gone".into(), until },
            Revocation::User { user: UserId::from(7), not_before_ms: 50_000, until },
        ]);
        assert_eq!(list.check(&claims("gone", "1", 10)), Err(Rejection::Revoked));
        assert_eq!(list.check(&claims("kept", "7", 49)), Err(Rejection::Revoked));
        assert_eq!(list.check(&claims("kept", "7", 50)), Ok(()), "a login after the cutoff is fine");
        assert_eq!(list.check(&claims("kept", "8", 10)), Ok(()));
        list.prune(until);
        assert!(list.is_empty());
    }

    #[test]
    #[cfg(feature = "signed")]
    fn a_cutoff_tells_apart_tokens_of_the_same_second() {
        let list = RevocationList::new();
        let until = Timestamp::from_millis(i64::MAX / 2);
        list.load(&[Revocation::User { user: UserId::from(7), not_before_ms: 50_500, until }]);
        let at = |ms: i64| AccessClaims { iat_ms: Some(ms), ..claims("s", "7", ms / 1000) };
        assert_eq!(list.check(&at(50_499)), Err(Rejection::Revoked), "issued just before, same second");
        assert_eq!(list.check(&at(50_500)), Ok(()), "issued just after");
        let forged = AccessClaims { iat_ms: Some(99_000), ..claims("s", "7", 50) };
        assert_eq!(list.check(&forged), Err(Rejection::Revoked), "iat_ms must agree with iat");
    }

    #[test]
    #[cfg(feature = "signed")]
    fn ending_the_others_spares_the_kept_family_only() {
        let list = RevocationList::new();
        let until = Timestamp::from_millis(i64::MAX / 2);
        let others = Revocation::Others { user: UserId::from(7), not_before_ms: 50_000, keep: "mine".into(), until };
        assert_eq!(Revocation::decode(&others.encode()), Some(others.clone()));
        list.load(&[others]);
        let at = |sid: &str, ms: i64| AccessClaims { iat_ms: Some(ms), ..claims(sid, "7", ms / 1000) };
        assert_eq!(list.check(&at("lost", 49_000)), Err(Rejection::Revoked), "even a family nobody could list");
        assert_eq!(list.check(&at("mine", 49_000)), Ok(()), "the caller's own family");
        assert_eq!(list.check(&at("later", 50_001)), Ok(()), "a login after it");
        assert_eq!(list.check(&AccessClaims { iat_ms: Some(1), ..claims("x", "8", 0) }), Ok(()), "other users");
    }

    #[test]
    #[cfg(feature = "signed")]
    fn a_reload_with_fewer_entries_forgets_nothing() {
        let list = RevocationList::new();
        let until = Timestamp::from_millis(i64::MAX / 2);
        list.load(&[Revocation::Family { sid: "gone".into(), until }]);
        // The store came back empty (Redis restarted without persistence).
        list.load(&[]);
        assert_eq!(list.check(&claims("gone", "1", 10)), Err(Rejection::Revoked));
    }

    #[tokio::test]
    #[cfg(feature = "signed")]
    async fn memory_revocations_reach_every_attached_list() {
        let store = MemoryRevocations::new();
        let (a, b) = (Arc::new(RevocationList::new()), Arc::new(RevocationList::new()));
        store.attach(a.clone()).await.unwrap();
        let until = Timestamp::from_millis(i64::MAX);
        store.revoke(&[Revocation::Family { sid: "x".into(), until }]).await.unwrap();
        store.attach(b.clone()).await.unwrap();
        for list in [&a, &b] {
            assert_eq!(list.check(&claims("x", "1", 1)), Err(Rejection::Revoked));
        }
    }
}
