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

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quick_cache::sync::Cache;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{KeyedRecord, SessionStore, StoreError};
use crate::clock::Timestamp;
use crate::record::{SessionChange, SessionRecord, UserId};
use crate::token::SessionKey;

const SCHEMA: &str = "
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
";

const COLUMNS: &str =
    "key, user_id, created_at, last_seen, idle_deadline, absolute_deadline, version, attributes, client, csrf_token";

/// Sessions in a SQLite database file.
///
/// With [`SqliteStore::with_cache`] the store also keeps recently loaded
/// records in memory and drops them on every write. That is only sound
/// while no other process writes the same file, which the caller must
/// guarantee (the server holds an exclusive lock on its data directory).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Option<Arc<Cache<SessionKey, Arc<SessionRecord>>>>,
    /// Bumped by every write, so a load that raced with one does not put
    /// the old copy back.
    epoch: Arc<AtomicU64>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

impl SqliteStore {
    /// Opens (creating if needed) the session database at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_pool(connect(path.as_ref()).await.map_err(unavailable)?).await
    }

    /// Uses an existing pool, creating the table if needed.
    pub async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(unavailable)?;
        Ok(Self { pool, cache: None, epoch: Arc::default() })
    }

    /// Serves loads of up to `capacity` recent sessions from memory. Only
    /// for a process that is the file's sole writer (see the type's docs).
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(Cache::new(capacity.max(1))));
        self
    }

    /// Drops a cached copy; called after the write has committed.
    fn forget(&self, key: &SessionKey) {
        if let Some(cache) = &self.cache {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            cache.remove(key);
        }
    }

    /// Closes the pool. Every later operation fails as
    /// [`StoreError::Unavailable`], as it would with a lost disk.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Opens a pool on the SQLite file at `path` the way Tessera wants it: WAL
/// (readers never wait for the writer; several processes may share the
/// file), NORMAL sync, a 5 s busy timeout, foreign keys on.
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
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(2)).connect_with(options).await
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
        csrf_token: serde_json::from_value(serde_json::Value::String(json("csrf_token")?))
            .map_err(|_| corrupt("csrf_token"))?,
    };
    Ok(KeyedRecord { key, record })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("session data serialises to JSON")
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        let result =
            sqlx::query(&format!("INSERT INTO tessera_sessions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                .bind(&key.as_bytes()[..])
                .bind(record.user_id.as_ref().map(UserId::as_str))
                .bind(record.created_at.as_millis())
                .bind(record.last_seen.as_millis())
                .bind(record.idle_deadline.as_millis())
                .bind(record.absolute_deadline.as_millis())
                .bind(record.version as i64)
                .bind(to_json(&record.attributes))
                .bind(to_json(&record.client))
                .bind(record.csrf_token.expose())
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict("session key exists".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(key)) {
            return Ok(Some(hit));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tessera_sessions WHERE key = ?"))
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let record = row.map(|r| decode(&r).map(|k| Arc::new(k.record))).transpose()?;
        if let (Some(cache), Some(record)) = (&self.cache, &record) {
            if self.epoch.load(Ordering::Acquire) == epoch {
                cache.insert(*key, record.clone());
            }
        }
        Ok(record)
    }

    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
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
        self.forget(key);
        Ok(version)
    }

    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE tessera_sessions SET last_seen = max(last_seen, ?), idle_deadline = max(idle_deadline, ?) WHERE key = ?",
        )
        .bind(last_seen.as_millis())
        .bind(idle_deadline.as_millis())
        .bind(&key.as_bytes()[..])
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        self.forget(key);
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tessera_sessions WHERE key = ?")
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        self.forget(key);
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
        let deleted: Vec<Vec<u8>> =
            sqlx::query_scalar("DELETE FROM tessera_sessions WHERE user_id = ? AND key <> ? RETURNING key")
                .bind(user.as_str())
                .bind(keep)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        for key in &deleted {
            if let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice()) {
                self.forget(&SessionKey::from_bytes(bytes));
            }
        }
        Ok(deleted.len() as u64)
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
