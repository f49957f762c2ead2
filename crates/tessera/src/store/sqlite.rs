//! The embedded persistent store: one SQLite file, no server to run.
//!
//! SQLite was chosen over a pure-Rust engine such as redb because several
//! `tessera` processes on one machine can share one file safely (WAL mode,
//! file locks), because the server already links SQLite for its users, and
//! because an operator can inspect the file with the `sqlite3` shell.
//!
//! Fixed columns hold what queries select on (user, deadlines, version);
//! attributes and client metadata are JSON. Saves run in a `BEGIN
//! IMMEDIATE` transaction so the version check and the write are atomic
//! across processes.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::record_cache::{Forget, ForgetOnDrop, RecordCache};
use super::sqlite_touches::Touches;
pub use super::sqlite_wal::{
    spawn_wal_checkpoints, truncate_wal, Checkpoint, AFTER_A_LONG_READER, READER_PATIENCE, WAL_CHECK_EVERY, WAL_LIMIT,
};
use super::{KeyedRecord, SessionStore, StoreError};
use crate::clock::Timestamp;
use crate::record::{SessionChange, SessionRecord, UserId};
use crate::token::SessionKey;

/// The library's SQLite migrations, embedded from `migrations/sqlite/` in
/// this crate: the tables of [`SqliteStore`] and
/// [`SqliteRevocations`](super::SqliteRevocations), numbered inside
/// [`MIGRATION_VERSIONS`].
pub fn migrations() -> Migrator {
    sqlx::migrate!("./migrations/sqlite")
}

/// The migration versions the library reserves for itself: its migrations
/// are numbered `1000001`, `1000002`, … An application that keeps its own
/// sqlx migrations in the same file numbers them outside this range and
/// folds [`migrations`] into its migrator (as the tessera server does), so
/// that the file keeps one history in `_sqlx_migrations`.
pub const MIGRATION_VERSIONS: Range<i64> = 1_000_000..2_000_000;

/// Brings the library's tables in `pool` up to date; what
/// [`SqliteStore::with_pool`] and [`SqliteRevocations::new`](super::SqliteRevocations::new)
/// run first.
///
/// The file's `_sqlx_migrations` may also list the versions of an
/// application sharing it: those outside [`MIGRATION_VERSIONS`] are that
/// application's to check. Inside the range every applied version must be
/// one of the library's (else the file was migrated by a newer tessera, and
/// this fails with [`MigrateError::VersionMissing`]) with an unchanged
/// checksum ([`MigrateError::VersionMismatch`] otherwise).
pub async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    let migrator = migrations();
    let history: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(pool)
            .await?;
    if history.is_some() {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations").fetch_all(pool).await?;
        if let Some(&unknown) = applied.iter().find(|v| MIGRATION_VERSIONS.contains(v) && !migrator.version_exists(**v))
        {
            return Err(MigrateError::VersionMissing(unknown));
        }
    }
    // The versions outside the library's range, which sqlx would otherwise
    // refuse as missing, are the sharing application's; ours were checked
    // above, and `run` compares the checksums of those already applied.
    let mut migrator = migrator;
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

const COLUMNS: &str =
    "key, user_id, created_at, last_seen, idle_deadline, absolute_deadline, version, attributes, client";

/// Sessions in a SQLite database file.
///
/// With [`SqliteStore::with_cache`] the store also keeps recently loaded
/// records in memory, in step with its own writes. That is only sound
/// while no other process writes the same file, which the caller must
/// guarantee (the server holds an exclusive lock on its data directory).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Option<Arc<RecordCache>>,
    touches: Arc<Touches>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

impl SqliteStore {
    /// Opens (creating if needed) the session database at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_pool(connect(path.as_ref()).await.map_err(unavailable)?).await
    }

    /// Uses an existing pool, creating or migrating the library's tables
    /// first ([`migrate`]).
    pub async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrate(&pool).await.map_err(StoreError::unavailable)?;
        Ok(Self { pool, cache: None, touches: Arc::default() })
    }

    /// Serves loads of up to `capacity` recent sessions from memory. Only
    /// for a process that is the file's sole writer (see the type's docs).
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(RecordCache::new(capacity)));
        // Batches of its own: a clone taken before this one has no cache
        // to tell of the touches it would write for both.
        self.touches = Arc::default();
        self
    }

    /// Drops `key`'s cached copy when it goes out of scope: armed before a
    /// write, it runs after the write, or when the request is dropped
    /// midway (after a commit that nothing else would tell the cache of).
    fn forget_when_done(&self, key: &SessionKey) -> ForgetOnDrop<'_> {
        ForgetOnDrop::new(self.cache.as_deref(), Forget::Key(*key))
    }

    /// Closes the pool and returns once its last connection is closed (see
    /// [`close_pool`]): unless other parts kept the pool busy meanwhile, the
    /// file is then at rest, its write-ahead log copied in and removed.
    /// Every later operation fails as
    /// [`StoreError::Unavailable`], as it would with a lost disk.
    pub async fn close(&self) {
        close_pool(&self.pool).await;
    }
}

/// Closes `pool` and returns once no connection of it is left open.
///
/// sqlx's `Pool::close` can return with a connection still open: one whose
/// return to the pool, a task of its own, was under way when the pool
/// closed. That connection then closes a moment later, on its own thread,
/// or lands in the closed pool's idle queue and stays open. With WAL it
/// matters twice: until it closes, the file may still change (a test that
/// read the directory after `close` found the `-wal` file gone between
/// listing and reading it); and when two connections close at once, neither
/// sees itself as the last, so neither copies the log into the database
/// and removes the `-wal` and `-shm` files (harmless, the next open
/// recovers them, but the file is not at rest). So this first waits until
/// every connection is back in the pool, for up to 100 ms (a pool other
/// parts keep busy may never be all idle, and must still close), then
/// closes the pool, which closes them one after another, and asks again
/// while any is left. Like `Pool::close`, it waits for connections checked
/// out elsewhere to come back. The waits poll, from 0.1 ms growing to 20 ms.
pub async fn close_pool(pool: &SqlitePool) {
    let settled_by = tokio::time::Instant::now() + SETTLE;
    let mut pause = Duration::from_micros(100);
    loop {
        let settling =
            !pool.is_closed() && pool.num_idle() < pool.size() as usize && tokio::time::Instant::now() < settled_by;
        if !settling {
            pool.close().await;
            if pool.size() == 0 {
                return;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// How long [`close_pool`] waits for connections on their way back to the
/// pool before closing it: their return is a task that runs within
/// microseconds on an idle runtime, milliseconds on a loaded one.
const SETTLE: Duration = Duration::from_millis(100);

/// How long a statement of a pool from [`connect`] waits for a lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool on the SQLite file at `path` the way Tessera wants it: WAL
/// (readers never wait for the writer; several processes may share the
/// file), NORMAL sync, a 5 s busy timeout, foreign keys on.
///
/// Under sustained writes, also run [`spawn_wal_checkpoints`] on the pool:
/// SQLite's own checkpoints may never get the moment they need to start the
/// log over, and it grows without end.
pub async fn connect(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    owner_only(path).map_err(sqlx::Error::Io)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses at most the last commits on power loss,
        // never consistency; sessions are cheap to recreate, fsyncs are not.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        // A connection is a thread of this process, not a socket that may
        // have gone stale: testing it at every checkout would only add a
        // round trip to that thread before each statement.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Makes the database file (created now if missing) and its WAL and
/// shared-memory files readable by their owner only: they hold session
/// digests and, in the server, password hashes. SQLite gives the WAL and
/// shm files the main file's mode when it creates them.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str().is_empty() || path.to_str().is_some_and(|p| p.starts_with(':')) {
            return Ok(()); // in-memory databases
        }
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

fn decode(row: &SqliteRow) -> Result<KeyedRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Unavailable(format!("corrupt session row: {what}"));
    let key: Vec<u8> = row.try_get("key").map_err(unavailable)?;
    let key = SessionKey::from_bytes(key.try_into().map_err(|_| corrupt("key"))?);
    let user: Option<String> = row.try_get("user_id").map_err(unavailable)?;
    let json = |col: &str| -> Result<String, StoreError> { row.try_get(col).map_err(unavailable) };
    let ts = |col: &str| -> Result<Timestamp, StoreError> {
        row.try_get::<i64, _>(col).map(Timestamp::from_millis).map_err(unavailable)
    };
    let record = SessionRecord {
        user_id: user.map(UserId::parse).transpose().map_err(|_| corrupt("user_id"))?,
        attributes: serde_json::from_str(&json("attributes")?).map_err(|_| corrupt("attributes"))?,
        created_at: ts("created_at")?,
        last_seen: ts("last_seen")?,
        idle_deadline: ts("idle_deadline")?,
        absolute_deadline: ts("absolute_deadline")?,
        version: row.try_get::<i64, _>("version").map_err(unavailable)? as u64,
        client: serde_json::from_str(&json("client")?).map_err(|_| corrupt("client"))?,
    };
    Ok(KeyedRecord { key, record })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("session data serialises to JSON")
}

impl SqliteStore {
    /// Inserts a new session. With a user, the same statement counts that
    /// user's live sessions other than `replacing` (about to be deleted),
    /// the new one included; `None` for an anonymous session. "Live" is
    /// judged at the new record's `last_seen`, which a login sets to the
    /// request's now, the instant the layer's own listing would use.
    async fn insert(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        replacing: Option<&SessionKey>,
    ) -> Result<Option<usize>, StoreError> {
        // The subquery of a RETURNING clause sees the row just inserted.
        // ?2 is the user, ?4 the new session's last_seen (now).
        const COUNT: &str = " RETURNING (SELECT count(*) FROM tessera_sessions
             WHERE user_id = ?2 AND key <> ?10 AND idle_deadline > ?4 AND absolute_deadline > ?4)";
        let user = record.user_id.as_ref().map(UserId::as_str);
        let sql = format!(
            "INSERT INTO tessera_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9){}",
            if user.is_some() { COUNT } else { "" }
        );
        let query = sqlx::query_scalar::<_, i64>(&sql)
            .bind(&key.as_bytes()[..])
            .bind(user)
            .bind(record.created_at.as_millis())
            .bind(record.last_seen.as_millis())
            .bind(record.idle_deadline.as_millis())
            .bind(record.absolute_deadline.as_millis())
            .bind(record.version as i64)
            .bind(to_json(&record.attributes))
            .bind(to_json(&record.client));
        // A zero-length blob is no key: nothing is left out of the count.
        let replacing: &[u8] = replacing.map(|k| &k.as_bytes()[..]).unwrap_or(&[]);
        let result = match user {
            Some(_) => query.bind(replacing).fetch_optional(&self.pool).await,
            None => query.fetch_optional(&self.pool).await,
        };
        match result {
            Ok(count) => Ok(count.map(|n| n as usize)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict("session key exists".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.insert(key, record, None).await.map(drop)
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(hit) = self.load_cached(key) {
            return Ok(Some(hit));
        }
        let ticket = self.cache.as_ref().map(|c| c.ticket());
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tessera_sessions WHERE key = ?"))
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let record = row.map(|r| decode(&r).map(|k| Arc::new(k.record))).transpose()?;
        if let (Some(cache), Some(record), Some(ticket)) = (&self.cache, &record, ticket) {
            cache.loaded(key, record, ticket);
        }
        Ok(record)
    }

    fn load_cached(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        self.cache.as_ref()?.get(key)
    }

    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        let _forget = self.forget_when_done(key);
        // IMMEDIATE takes the write lock up front: a deferred transaction
        // that reads and then writes can fail with SQLITE_BUSY under
        // concurrency instead of waiting its turn.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tessera_sessions WHERE key = ?"))
            .bind(&key.as_bytes()[..])
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
            .ok_or(StoreError::NotFound)?;
        let mut record = decode(&row)?.record;
        let version = record.apply(change).map_err(|c| StoreError::Conflict(format!("attribute {:?}", c.0)))?;
        sqlx::query(
            "UPDATE tessera_sessions SET attributes = ?, version = ?, last_seen = ?, idle_deadline = ? WHERE key = ?",
        )
        .bind(to_json(&record.attributes))
        .bind(version as i64)
        .bind(record.last_seen.as_millis())
        .bind(record.idle_deadline.as_millis())
        .bind(&key.as_bytes()[..])
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(version)
    }

    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        // Written with the touches of other requests, which also tell the
        // cache (see `sqlite_touches`).
        match self.touches.touch(&self.pool, self.cache.as_ref(), key, last_seen, idle_deadline).await? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let _forget = self.forget_when_done(key);
        let done = sqlx::query("DELETE FROM tessera_sessions WHERE key = ?")
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tessera_sessions
             WHERE user_id = ? AND idle_deadline > ? AND absolute_deadline > ?
             ORDER BY created_at, key"
        ))
        .bind(user.as_str())
        .bind(now.as_millis())
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(decode).collect()
    }

    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        // A zero-length blob matches no key, so "keep nothing" needs no
        // second statement.
        let keep: &[u8] = keep.map(|k| &k.as_bytes()[..]).unwrap_or(&[]);
        // Dropped before the keys are known: every copy goes.
        let forget_all = ForgetOnDrop::new(self.cache.as_deref(), Forget::All);
        let deleted: Vec<Vec<u8>> =
            sqlx::query_scalar("DELETE FROM tessera_sessions WHERE user_id = ? AND key <> ? RETURNING key")
                .bind(user.as_str())
                .bind(keep)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        if let Some(cache) = &self.cache {
            for key in deleted.iter().filter_map(|k| <[u8; 32]>::try_from(k.as_slice()).ok()) {
                cache.forget(&SessionKey::from_bytes(key));
            }
        }
        forget_all.disarm();
        Ok(deleted.len() as u64)
    }

    /// One statement writes the new session and counts its user's live
    /// sessions, so a login under the per-user cap asks nothing more.
    async fn rotate(
        &self,
        old: Option<&SessionKey>,
        new: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Option<usize>, StoreError> {
        let count = self.insert(new, record, old).await?;
        if let Some(old) = old {
            self.delete(old).await?;
        }
        Ok(count)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM tessera_sessions WHERE idle_deadline <= ? OR absolute_deadline <= ?")
            .bind(now.as_millis())
            .bind(now.as_millis())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool some other part keeps a connection of still closes: new
    /// checkouts fail once the settling wait is over, and the close
    /// returns when that connection comes back and is closed.
    #[tokio::test]
    async fn a_busy_pool_closes_and_waits_for_the_connection_held() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&dir.path().join("busy.db")).await.unwrap();
        let held = pool.acquire().await.unwrap();
        let closing = tokio::spawn({
            let pool = pool.clone();
            async move { close_pool(&pool).await }
        });
        tokio::time::sleep(SETTLE * 3).await;
        assert!(pool.is_closed(), "closed although a connection is out");
        assert!(pool.acquire().await.is_err(), "no new checkout from a closing pool");
        assert!(!closing.is_finished(), "the close waits for the connection held");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), closing).await.expect("closed once it came back").unwrap();
        assert_eq!(pool.size(), 0);
    }

    /// What `SqliteStore::with_pool` and `SqliteRevocations::new` ran
    /// before the library had migrations: files written then hold these
    /// tables and no history row of the library's.
    const AD_HOC_SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS tessera_sessions (
            key               BLOB PRIMARY KEY NOT NULL,
            user_id           TEXT,
            created_at        INTEGER NOT NULL,
            last_seen         INTEGER NOT NULL,
            idle_deadline     INTEGER NOT NULL,
            absolute_deadline INTEGER NOT NULL,
            version           INTEGER NOT NULL,
            attributes        TEXT NOT NULL,
            client            TEXT NOT NULL,
            csrf_token        TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS tessera_sessions_by_user ON tessera_sessions (user_id) WHERE user_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS tessera_sessions_by_idle ON tessera_sessions (idle_deadline);
        CREATE INDEX IF NOT EXISTS tessera_sessions_by_absolute ON tessera_sessions (absolute_deadline);
        CREATE TABLE IF NOT EXISTS tessera_revocations (
            entry TEXT PRIMARY KEY NOT NULL,
            until INTEGER NOT NULL
        ) WITHOUT ROWID;
    ";

    async fn applied(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(pool).await.unwrap()
    }

    #[test]
    fn the_library_numbers_its_migrations_inside_its_range() {
        let migrator = migrations();
        assert!(migrator.iter().count() >= 2);
        for m in migrator.iter() {
            assert!(MIGRATION_VERSIONS.contains(&m.version), "migration {} outside {MIGRATION_VERSIONS:?}", m.version);
        }
    }

    /// A session created at `now`: 10 minutes idle, an hour absolute.
    fn record_at(now: Timestamp, user: Option<&str>) -> SessionRecord {
        SessionRecord {
            user_id: user.map(|u| UserId::parse(u).unwrap()),
            attributes: Default::default(),
            created_at: now,
            last_seen: now,
            idle_deadline: now + Duration::from_secs(600),
            absolute_deadline: now + Duration::from_secs(3600),
            version: 0,
            client: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_touched_session_is_still_read_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap().with_cache(16);
        let key = SessionKey::from_bytes([4; 32]);
        let now = Timestamp::from_millis(1_000_000);
        let record = record_at(now, Some("7"));
        store.create(&key, &record).await.unwrap();
        store.load(&key).await.unwrap();
        let later = now + Duration::from_secs(60);
        store.touch(&key, later, later + Duration::from_secs(600)).await.unwrap();
        // Behind the store's back: a read from the file would see it.
        sqlx::query("UPDATE tessera_sessions SET user_id = '8'").execute(&store.pool).await.unwrap();
        let read = store.load(&key).await.unwrap().unwrap();
        assert_eq!(read.user_id.as_ref().map(UserId::as_str), Some("7"), "served from memory");
        assert_eq!((read.last_seen, read.idle_deadline), (later, later + Duration::from_secs(600)), "as touched");
        // Any other write still drops the copy.
        store.delete(&key).await.unwrap();
        assert_eq!(store.load(&key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_login_counts_only_the_users_live_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
        let now = Timestamp::from_millis(10_000_000);
        let live = record_at(now, Some("7"));
        let mut idle = record_at(now - Duration::from_secs(700), Some("7"));
        idle.idle_deadline = now;
        let mut old = record_at(now - Duration::from_secs(7200), Some("7"));
        old.idle_deadline = now + Duration::from_secs(60);
        old.absolute_deadline = now - Duration::from_secs(1);
        for (byte, record) in [(1, &live), (2, &idle), (3, &old), (4, &record_at(now, Some("8")))] {
            store.create(&SessionKey::from_bytes([byte; 32]), record).await.unwrap();
        }
        let count = store.rotate(None, &SessionKey::from_bytes([5; 32]), &live).await.unwrap();
        assert_eq!(count, Some(2), "the live one and the new one; lapsed and other users' are not counted");
        let anonymous = store.rotate(None, &SessionKey::from_bytes([6; 32]), &record_at(now, None)).await.unwrap();
        assert_eq!(anonymous, None, "no user, no count");
    }

    /// Polls `future` once and drops it, as hyper drops the handler of a
    /// client that went away; `true` when it had not finished.
    async fn polled_once_then_dropped<F: std::future::Future>(future: F) -> bool {
        tokio::select! {
            biased;
            _ = future => false,
            () = std::future::ready(()) => true,
        }
    }

    #[tokio::test]
    async fn a_request_dropped_mid_write_leaves_no_stale_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap().with_cache(16);
        let now = Timestamp::from_millis(1_000_000);
        let (touched, deleted) = (SessionKey::from_bytes([7; 32]), SessionKey::from_bytes([8; 32]));
        for key in [&touched, &deleted] {
            store.create(key, &record_at(now, Some("7"))).await.unwrap();
            store.load(key).await.unwrap();
        }
        // Behind the store's back, so that a read says where it came from.
        sqlx::query("UPDATE tessera_sessions SET user_id = '8'").execute(&store.pool).await.unwrap();
        let user = |r: Option<Arc<SessionRecord>>| r.and_then(|r| r.user_id.clone()).map(|u| u.as_str().to_owned());

        // A touch whose request is dropped once the touch is on its way.
        let later = now + Duration::from_secs(60);
        let touch = store.touch(&touched, later, later + Duration::from_secs(600));
        assert!(polled_once_then_dropped(touch).await, "dropped before its answer");
        let fresh = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while fresh.load(&touched).await.unwrap().unwrap().last_seen != later {
            assert!(std::time::Instant::now() < deadline, "the touch was written anyway");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let read = store.load(&touched).await.unwrap().unwrap();
        assert_eq!(user(Some(read.clone())).as_deref(), Some("7"), "still from memory");
        assert_eq!(read.last_seen, later, "and the memory was told of the touch");

        // A delete whose request is dropped midway: whether or not it
        // committed, the copy in memory is gone, so reads go to the file.
        // Another connection holds the write lock, so the delete is surely
        // still under way when its request goes.
        let other = connect(&dir.path().join("s.db")).await.unwrap();
        let lock = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
        assert!(polled_once_then_dropped(store.delete(&deleted)).await);
        lock.rollback().await.unwrap();
        assert_ne!(user(store.load(&deleted).await.unwrap()).as_deref(), Some("7"), "no stale copy");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn touches_written_together_each_land_and_never_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap().with_cache(1000);
        let now = Timestamp::from_millis(1_000_000);
        let record = record_at(now, None);
        let keys: Vec<SessionKey> = (0..300u16)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..2].copy_from_slice(&i.to_be_bytes());
                SessionKey::from_bytes(bytes)
            })
            .collect();
        // Every third session does not exist.
        for key in keys.iter().filter(|k| k.as_bytes()[1] % 3 != 0) {
            store.create(key, &record).await.unwrap();
            store.load(key).await.unwrap();
        }
        let at = move |secs: u64| now + Duration::from_secs(secs);
        // Each session twice at once, the later touch first for half of them.
        let mut touches = tokio::task::JoinSet::new();
        for (i, key) in keys.iter().enumerate() {
            for secs in if i % 2 == 0 { [60, 30] } else { [30, 60] } {
                let (store, key) = (store.clone(), *key);
                touches.spawn(async move { (key, store.touch(&key, at(secs), at(secs + 600)).await) });
            }
        }
        while let Some(done) = touches.join_next().await {
            let (key, touched) = done.unwrap();
            match key.as_bytes()[1] % 3 {
                0 => assert!(matches!(touched, Err(StoreError::NotFound)), "{touched:?}"),
                _ => touched.unwrap(),
            }
        }
        for key in keys.iter().filter(|k| k.as_bytes()[1] % 3 != 0) {
            let read = store.load(key).await.unwrap().unwrap();
            assert_eq!((read.last_seen, read.idle_deadline), (at(60), at(660)), "the later touch wins");
            let fresh = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
            let stored = fresh.load(key).await.unwrap().unwrap();
            assert_eq!((stored.last_seen, stored.idle_deadline), (at(60), at(660)), "and is on disk");
        }
    }

    #[tokio::test]
    async fn a_file_with_the_ad_hoc_tables_opens_and_keeps_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let pool = connect(&path).await.unwrap();
        sqlx::raw_sql(AD_HOC_SCHEMA).execute(&pool).await.unwrap();
        // The columns of that layout, the CSRF token still among them.
        sqlx::query(&format!(
            "INSERT INTO tessera_sessions ({COLUMNS}, csrf_token) VALUES (?, '7', 1, 1, ?, ?, 1, '{{}}', '{{}}', ?)"
        ))
        .bind(&[9u8; 32][..])
        .bind(i64::MAX / 2)
        .bind(i64::MAX / 2)
        .bind("A".repeat(43))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let record = store.load(&SessionKey::from_bytes([9; 32])).await.unwrap().expect("the old session is kept");
        assert_eq!(record.user_id.as_ref().map(UserId::as_str), Some("7"));
        let versions: Vec<i64> = migrations().iter().map(|m| m.version).collect();
        assert_eq!(applied(&store.pool).await, versions, "the library's history is recorded");
        super::super::SqliteRevocations::new(store.pool.clone()).await.expect("and migrating again is a no-op");
    }

    #[tokio::test]
    async fn versions_of_the_application_sharing_the_file_are_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&dir.path().join("t.db")).await.unwrap();
        // An application's own history in the same table, outside the range.
        sqlx::raw_sql(
            "CREATE TABLE app (x INTEGER);
             CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
                 checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (1, 'app', CURRENT_TIMESTAMP, TRUE, x'00', 0);",
        )
        .execute(&pool)
        .await
        .unwrap();
        migrate(&pool).await.unwrap();
        assert_eq!(applied(&pool).await.first(), Some(&1));
        assert_eq!(applied(&pool).await.len(), 1 + migrations().iter().count());

        // A library version this build does not know: a newer tessera wrote
        // the file, and this one must not guess at its tables.
        let unknown = MIGRATION_VERSIONS.end - 1;
        sqlx::query("INSERT INTO _sqlx_migrations VALUES (?, 'newer', CURRENT_TIMESTAMP, TRUE, x'00', 0)")
            .bind(unknown)
            .execute(&pool)
            .await
            .unwrap();
        assert!(matches!(migrate(&pool).await, Err(MigrateError::VersionMissing(v)) if v == unknown));
    }

    #[tokio::test]
    async fn an_edited_library_migration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&dir.path().join("t.db")).await.unwrap();
        migrate(&pool).await.unwrap();
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = ?")
            .bind(MIGRATION_VERSIONS.start + 1)
            .execute(&pool)
            .await
            .unwrap();
        assert!(matches!(migrate(&pool).await, Err(MigrateError::VersionMismatch(_))));
    }
}
