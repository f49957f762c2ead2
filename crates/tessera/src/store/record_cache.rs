//! The embedded store's memory of recently loaded sessions.
//!
//! Sound only while one process writes the file (see
//! [`SqliteStore::with_cache`](super::SqliteStore::with_cache)): every
//! write of that process tells the cache after it has committed, and a load
//! that raced with a write must not put the older copy back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quick_cache::sync::Cache;

use crate::clock::Timestamp;
use crate::record::SessionRecord;
use crate::token::SessionKey;

/// Recently loaded records, kept in step with the writes of this process.
#[derive(Debug)]
pub(crate) struct RecordCache {
    records: Cache<SessionKey, Arc<SessionRecord>>,
    /// Bumped by every write, so a load that raced with one does not put
    /// the older copy back.
    epoch: AtomicU64,
    /// Held while a load's copy is put in, or a write's change is made:
    /// a load's "nothing was written since I read" check and its insert
    /// then happen as one, and no write slips between them. Reads of the
    /// cache never take it.
    changes: Mutex<()>,
}

/// Taken before a load reads the database; see [`RecordCache::loaded`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadTicket(u64);

impl RecordCache {
    /// Room for `capacity` records.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { records: Cache::new(capacity.max(1)), epoch: AtomicU64::new(0), changes: Mutex::new(()) }
    }

    /// The cached copy of `key`'s record.
    pub(crate) fn get(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        self.records.get(key)
    }

    /// To be taken before reading `key` from the database.
    pub(crate) fn ticket(&self) -> LoadTicket {
        LoadTicket(self.epoch.load(Ordering::Acquire))
    }

    /// Keeps what a load read, unless a write committed since its ticket.
    pub(crate) fn loaded(&self, key: &SessionKey, record: &Arc<SessionRecord>, ticket: LoadTicket) {
        let _changing = self.lock();
        if self.epoch.load(Ordering::Acquire) == ticket.0 {
            self.records.insert(*key, record.clone());
        }
    }

    /// Drops `key`'s copy; called after a write to it has committed.
    pub(crate) fn forget(&self, key: &SessionKey) {
        let _changing = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.records.remove(key);
    }

    /// Brings `key`'s copy, if one is kept, up to a touch that has
    /// committed (`max` of the old and new times, as the database does).
    /// A touch changes nothing else, so the session stays in memory: it is
    /// due on a session in use, whose next read would otherwise go to disk.
    pub(crate) fn touched(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) {
        let _changing = self.lock();
        // A load that read before the touch must not put its copy back.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(current) = self.records.peek(key) {
            let mut record = SessionRecord::clone(&current);
            record.last_seen = record.last_seen.max(last_seen);
            record.idle_deadline = record.idle_deadline.max(idle_deadline);
            // Soft: the touch is not a use that should keep it hotter.
            let _ = self.records.replace(*key, Arc::new(record), true);
        }
    }

    /// Drops every copy, for a write whose keys are not known (a
    /// multi-session delete dropped before it said which it removed).
    pub(crate) fn forget_all(&self) {
        let _changing = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.records.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops what the cache holds of a write when it goes out of scope: after
/// the write on the normal path, and also when the request making it is
/// dropped between the commit and the code that would have told the cache
/// (a cached copy of an ended session would otherwise stay live on this
/// node).
pub(crate) struct ForgetOnDrop<'a> {
    cache: Option<&'a RecordCache>,
    /// `None` once disarmed.
    what: Option<Forget>,
}

/// What a [`ForgetOnDrop`] drops.
pub(crate) enum Forget {
    /// One session's copy.
    Key(SessionKey),
    /// Every copy.
    All,
}

impl<'a> ForgetOnDrop<'a> {
    pub(crate) fn new(cache: Option<&'a RecordCache>, what: Forget) -> Self {
        Self { cache, what: Some(what) }
    }

    /// The write has told the cache what it changed: nothing more to drop.
    pub(crate) fn disarm(mut self) {
        self.what = None;
    }
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        match (self.cache, &self.what) {
            (Some(cache), Some(Forget::Key(key))) => cache.forget(key),
            (Some(cache), Some(Forget::All)) => cache.forget_all(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ClientMeta;

    fn record(last_seen: i64, idle_deadline: i64) -> Arc<SessionRecord> {
        let t = Timestamp::from_millis;
        Arc::new(SessionRecord {
            user_id: None,
            attributes: Default::default(),
            created_at: t(1),
            last_seen: t(last_seen),
            idle_deadline: t(idle_deadline),
            absolute_deadline: t(1_000_000),
            version: 7,
            client: ClientMeta::default(),
        })
    }

    #[test]
    fn a_touch_updates_the_kept_copy_and_nothing_else() {
        let cache = RecordCache::new(16);
        let key = SessionKey::from_bytes([1; 32]);
        cache.loaded(&key, &record(10, 100), cache.ticket());
        cache.touched(&key, Timestamp::from_millis(50), Timestamp::from_millis(500));
        assert_eq!(cache.get(&key), Some(record(50, 500)));
        // Never backwards, as in the database.
        cache.touched(&key, Timestamp::from_millis(20), Timestamp::from_millis(200));
        assert_eq!(cache.get(&key), Some(record(50, 500)));
    }

    #[test]
    fn a_guard_drops_its_key_or_everything_unless_disarmed() {
        let cache = RecordCache::new(16);
        let (a, b) = (SessionKey::from_bytes([5; 32]), SessionKey::from_bytes([6; 32]));
        for key in [&a, &b] {
            cache.loaded(key, &record(10, 100), cache.ticket());
        }
        drop(ForgetOnDrop::new(Some(&cache), Forget::Key(a)));
        assert_eq!((cache.get(&a), cache.get(&b).is_some()), (None, true));
        ForgetOnDrop::new(Some(&cache), Forget::All).disarm();
        assert!(cache.get(&b).is_some(), "disarmed");
        drop(ForgetOnDrop::new(Some(&cache), Forget::All));
        assert_eq!(cache.get(&b), None);
    }

    #[test]
    fn a_touch_of_a_session_not_kept_keeps_nothing() {
        let cache = RecordCache::new(16);
        let key = SessionKey::from_bytes([2; 32]);
        cache.touched(&key, Timestamp::from_millis(50), Timestamp::from_millis(500));
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn a_load_that_raced_with_a_write_or_a_touch_is_not_kept() {
        let cache = RecordCache::new(16);
        let key = SessionKey::from_bytes([3; 32]);
        for write in [
            |c: &RecordCache, k: &SessionKey| c.forget(k),
            |c: &RecordCache, k: &SessionKey| c.touched(k, Timestamp::from_millis(50), Timestamp::from_millis(500)),
        ] {
            let ticket = cache.ticket();
            write(&cache, &key);
            cache.loaded(&key, &record(10, 100), ticket);
            assert_eq!(cache.get(&key), None);
        }
        cache.loaded(&key, &record(10, 100), cache.ticket());
        assert_eq!(cache.get(&key), Some(record(10, 100)));
        cache.forget(&key);
        assert_eq!(cache.get(&key), None);
    }
}
