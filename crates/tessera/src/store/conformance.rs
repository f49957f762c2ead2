//! The contract every [`SessionStore`] keeps, as a test suite.
//!
//! A store crate runs it with [`store_conformance_tests!`](crate::store_conformance_tests),
//! giving an async expression that builds a fresh store:
//!
//! ```ignore
//! tessera::store_conformance_tests!(async { std::sync::Arc::new(MemoryStore::new()) });
//! ```
//!
//! Times are taken from the system clock so that stores whose keys expire
//! by real time (Redis) see sensible deadlines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{SessionStore, StoreError};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::record::{Attributes, ClientMeta, SessionChange, SessionRecord, UserId};
use crate::token::{SessionKey, SessionToken};

/// A store under test, shared by concurrent tasks.
pub type DynStore = Arc<dyn SessionStore>;

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> Timestamp {
    SystemClock.now()
}

/// A fresh live record for `user`.
pub fn record_for(user: Option<&str>) -> SessionRecord {
    let now = now();
    SessionRecord {
        user_id: user.map(|u| UserId::parse(u).unwrap()),
        attributes: Attributes::new(),
        created_at: now,
        last_seen: now,
        idle_deadline: now + HOUR / 2,
        absolute_deadline: now + 12 * HOUR,
        version: 0,
        client: ClientMeta::new(Some("conformance/1.0 (ünïcode)"), Some([127, 0, 0, 1].into())),
    }
}

fn key() -> SessionKey {
    SessionToken::generate().key()
}

fn change(base: u64, set: &[(&str, serde_json::Value)], removed: &[&str]) -> SessionChange {
    let now = now();
    SessionChange {
        base_version: base,
        set: set.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
        last_seen: now,
        idle_deadline: now + HOUR / 2,
    }
}

/// A created record loads back equal.
pub async fn create_then_load_round_trips(store: DynStore) {
    let k = key();
    let mut r = record_for(Some("alice"));
    r.attributes
        .insert("cart".into(), crate::record::Attribute { value: Some(json!({"items": ["书", 2]})), version: 0 });
    store.create(&k, &r).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().as_deref(), Some(&r));
    let anon = record_for(None);
    let k2 = key();
    store.create(&k2, &anon).await.unwrap();
    assert_eq!(store.load(&k2).await.unwrap().as_deref(), Some(&anon));
}

/// Creating under an existing key fails and keeps the original.
pub async fn create_never_overwrites(store: DynStore) {
    let k = key();
    let first = record_for(Some("alice"));
    store.create(&k, &first).await.unwrap();
    let err = store.create(&k, &record_for(Some("mallory"))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.load(&k).await.unwrap().as_deref(), Some(&first));
}

/// Unknown keys load as `None`; writes to them are `NotFound`.
pub async fn missing_sessions_are_absent(store: DynStore) {
    let k = key();
    assert_eq!(store.load(&k).await.unwrap(), None);
    let now = now();
    assert!(matches!(store.save(&k, &change(0, &[("a", json!(1))], &[])).await, Err(StoreError::NotFound)));
    assert!(matches!(store.touch(&k, now, now + HOUR).await, Err(StoreError::NotFound)));
    assert!(!store.delete(&k).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap(), None, "a failed write must not create the session");
}

/// A save writes the changed attributes, bumps the version and keeps the rest.
pub async fn save_writes_only_the_change(store: DynStore) {
    let k = key();
    store.create(&k, &record_for(Some("alice"))).await.unwrap();
    assert_eq!(store.save(&k, &change(0, &[("a", json!(1)), ("b", json!("x"))], &[])).await.unwrap(), 1);
    assert_eq!(store.save(&k, &change(1, &[("b", json!("y"))], &["a"])).await.unwrap(), 2);
    let r = store.load(&k).await.unwrap().unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.attribute("a"), None);
    assert_eq!(r.attribute("b"), Some(&json!("y")));
    assert_eq!(r.user_id, Some(UserId::parse("alice").unwrap()));
}

/// Many concurrent saves from one base version, each to its own attribute,
/// all persist.
pub async fn concurrent_saves_of_different_attributes_all_persist(store: DynStore) {
    let k = key();
    store.create(&k, &record_for(Some("alice"))).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.spawn(async move { store.save(&k, &change(0, &[(&format!("attr{i}"), json!(i))], &[])).await });
    }
    let mut versions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        versions.push(done.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u64>>(), "each save gets its own version");
    let r = store.load(&k).await.unwrap().unwrap();
    for i in 0..16 {
        assert_eq!(r.attribute(&format!("attr{i}")), Some(&json!(i)));
    }
}

/// Concurrent saves of the same attribute from one base: exactly one wins,
/// the others conflict, and the stored value is the winner's.
pub async fn concurrent_saves_of_one_attribute_have_one_winner(store: DynStore) {
    let k = key();
    store.create(&k, &record_for(Some("alice"))).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { (i, store.save(&k, &change(0, &[("cart", json!(i))], &[])).await) });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(StoreError::Conflict(_))) => {}
            (_, Err(e)) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "first committer wins, the rest conflict");
    let r = store.load(&k).await.unwrap().unwrap();
    assert_eq!(r.attribute("cart"), Some(&json!(winners[0])));
    assert_eq!(r.version, 1);
}

/// A writer that has not seen a removal cannot undo it.
pub async fn stale_writes_conflict_and_write_nothing(store: DynStore) {
    let k = key();
    store.create(&k, &record_for(None)).await.unwrap();
    store.save(&k, &change(0, &[("a", json!(1))], &[])).await.unwrap();
    store.save(&k, &change(1, &[], &["a"])).await.unwrap();
    let err = store.save(&k, &change(1, &[("a", json!(2)), ("b", json!(3))], &[])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let r = store.load(&k).await.unwrap().unwrap();
    assert_eq!(r.attribute("a"), None);
    assert_eq!(r.attribute("b"), None, "a conflicting save is all or nothing");
    assert_eq!(r.version, 2);
}

/// A touch moves activity forward and nothing else, never backwards.
pub async fn touch_moves_activity_only(store: DynStore) {
    let k = key();
    let r = record_for(Some("alice"));
    store.create(&k, &r).await.unwrap();
    // Loaded first, so that a store keeping copies in memory has one to bring up to date.
    assert_eq!(store.load(&k).await.unwrap().unwrap().last_seen, r.last_seen);
    let later = r.last_seen + Duration::from_secs(60);
    store.touch(&k, later, later + HOUR / 2).await.unwrap();
    let t = store.load(&k).await.unwrap().unwrap();
    assert_eq!(t.last_seen, later);
    assert_eq!(t.idle_deadline, later + HOUR / 2);
    assert_eq!((t.version, t.absolute_deadline, &t.attributes), (r.version, r.absolute_deadline, &r.attributes));
    store.touch(&k, r.last_seen, r.idle_deadline).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().unwrap().last_seen, later, "a late touch never rewinds");
}

/// Delete removes the session and says whether there was one.
pub async fn delete_removes(store: DynStore) {
    let k = key();
    store.create(&k, &record_for(Some("alice"))).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(!store.delete(&k).await.unwrap());
}

/// A copy from memory never contradicts a load: after a create, a save, a
/// touch and a delete, `load_cached` answers what `load` does, or nothing.
pub async fn a_cached_answer_agrees_with_load(store: DynStore) {
    async fn agrees(store: &DynStore, k: &SessionKey, step: &str) {
        let cached = store.load_cached(k);
        let loaded = store.load(k).await.unwrap();
        if let Some(cached) = cached {
            assert_eq!(Some(cached), loaded, "after {step}: the cached copy differs from the stored one");
        }
    }
    let k = key();
    store.create(&k, &record_for(Some("alice"))).await.unwrap();
    store.load(&k).await.unwrap(); // a store that keeps copies has one now
    agrees(&store, &k, "create").await;
    store.save(&k, &change(0, &[("a", json!(1))], &[])).await.unwrap();
    agrees(&store, &k, "save").await;
    let later = now() + Duration::from_secs(60);
    store.touch(&k, later, later + HOUR / 2).await.unwrap();
    agrees(&store, &k, "touch").await;
    store.delete(&k).await.unwrap();
    assert_eq!(store.load_cached(&k), None, "a deleted session is not answered from memory");
}

/// A user's list holds their live sessions and nobody else's.
pub async fn list_user_sees_live_sessions_of_that_user(store: DynStore) {
    let user = format!("u-{}", key().short());
    let (a, b, other, dead) = (key(), key(), key(), key());
    store.create(&a, &record_for(Some(&user))).await.unwrap();
    store.create(&b, &record_for(Some(&user))).await.unwrap();
    store.create(&other, &record_for(Some("someone-else"))).await.unwrap();
    let mut lapsed = record_for(Some(&user));
    lapsed.idle_deadline = now() + Duration::from_secs(1);
    store.create(&dead, &lapsed).await.unwrap();
    let uid = UserId::parse(user).unwrap();
    let listed = store.list_user(&uid, now() + Duration::from_secs(2)).await.unwrap();
    let mut keys: Vec<SessionKey> = listed.iter().map(|k| k.key).collect();
    keys.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(keys, want);
    assert!(listed.iter().all(|k| k.record.user_id.as_ref() == Some(&uid)));
    store.delete(&a).await.unwrap();
    assert_eq!(store.list_user(&uid, now()).await.unwrap().len(), 2, "b and the not yet lapsed one");
}

/// Ending a user's other sessions keeps the current one and touches no one else.
pub async fn delete_user_keeps_the_current_session(store: DynStore) {
    let user = format!("u-{}", key().short());
    let (current, x, y, other) = (key(), key(), key(), key());
    for k in [&current, &x, &y] {
        store.create(k, &record_for(Some(&user))).await.unwrap();
    }
    store.create(&other, &record_for(Some("bystander"))).await.unwrap();
    let uid = UserId::parse(user).unwrap();
    assert_eq!(store.delete_user(&uid, Some(&current)).await.unwrap(), 2);
    assert!(store.load(&current).await.unwrap().is_some());
    assert_eq!(store.load(&x).await.unwrap(), None);
    assert_eq!(store.load(&y).await.unwrap(), None);
    assert!(store.load(&other).await.unwrap().is_some());
    assert_eq!(store.delete_user(&uid, None).await.unwrap(), 1);
    assert_eq!(store.load(&current).await.unwrap(), None);
    assert!(store.list_user(&uid, now()).await.unwrap().is_empty());
}

/// Rotation leaves the new session and removes the old one.
pub async fn rotate_replaces_old_by_new(store: DynStore) {
    let (old, new) = (key(), key());
    store.create(&old, &record_for(None)).await.unwrap();
    let logged_in = record_for(Some("alice"));
    store.rotate(Some(&old), &new, &logged_in).await.unwrap();
    assert_eq!(store.load(&old).await.unwrap(), None);
    assert_eq!(store.load(&new).await.unwrap().as_deref(), Some(&logged_in));
    let uid = UserId::parse("alice").unwrap();
    assert!(store.list_user(&uid, now()).await.unwrap().iter().any(|k| k.key == new));
    // Rotating onto an existing key fails and leaves the old session alone.
    let third = key();
    store.create(&third, &record_for(None)).await.unwrap();
    assert!(matches!(store.rotate(Some(&third), &new, &logged_in).await, Err(StoreError::Conflict(_))));
    assert!(store.load(&third).await.unwrap().is_some());
}

/// The count a rotation reports, when it reports one, is the user's live
/// sessions afterwards: the layer skips enforcing the per-user cap on it,
/// so a count too low would let a user past the cap.
pub async fn rotate_counts_the_users_sessions(store: DynStore) {
    let carol = record_for(Some("carol"));
    let (first, second) = (key(), key());
    store.create(&first, &carol).await.unwrap();
    store.create(&second, &carol).await.unwrap();
    let anonymous = key();
    store.create(&anonymous, &record_for(None)).await.unwrap();
    let count = store.rotate(Some(&anonymous), &key(), &carol).await.unwrap();
    assert!(count.is_none_or(|n| n == 3), "two sessions and the new one, got {count:?}");
    // Replacing one of her own sessions leaves the count where it was.
    let count = store.rotate(Some(&first), &key(), &carol).await.unwrap();
    assert!(count.is_none_or(|n| n == 3), "the replaced session is not counted, got {count:?}");
    assert_eq!(store.list_user(&UserId::parse("carol").unwrap(), now()).await.unwrap().len(), 3);
}

/// After purging, a lapsed session is gone and a live one stays.
pub async fn purge_removes_lapsed_sessions(store: DynStore) {
    let (live, lapsed) = (key(), key());
    store.create(&live, &record_for(Some("alice"))).await.unwrap();
    let mut r = record_for(Some("alice"));
    r.idle_deadline = now() + Duration::from_millis(200);
    store.create(&lapsed, &r).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.purge_expired(now()).await.unwrap();
    assert_eq!(store.load(&lapsed).await.unwrap(), None);
    assert!(store.load(&live).await.unwrap().is_some());
}

/// Generates one `#[tokio::test]` per conformance case for a store.
///
/// `$make` is an expression of type `impl Future<Output = Arc<S>>` (or any
/// `Arc<dyn SessionStore>`), evaluated afresh for every case.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            create_then_load_round_trips,
            create_never_overwrites,
            missing_sessions_are_absent,
            save_writes_only_the_change,
            concurrent_saves_of_different_attributes_all_persist,
            concurrent_saves_of_one_attribute_have_one_winner,
            stale_writes_conflict_and_write_nothing,
            touch_moves_activity_only,
            delete_removes,
            a_cached_answer_agrees_with_load,
            list_user_sees_live_sessions_of_that_user,
            delete_user_keeps_the_current_session,
            rotate_replaces_old_by_new,
            rotate_counts_the_users_sessions,
            purge_removes_lapsed_sessions,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: $crate::store::conformance::DynStore = $make.await;
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
}
