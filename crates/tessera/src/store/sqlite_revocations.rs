//! Revocations for a single process, kept in its SQLite file so that a
//! restart still refuses what was revoked before it. The same table serves
//! as a [`RevocationArchive`] beside Redis.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::SqlitePool;

use super::StoreError;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::revocation::{MemoryRevocations, Revocation, RevocationArchive, RevocationList, RevocationStore};

/// Revocations in the SQLite file, delivered to this process's lists.
#[derive(Debug)]
pub struct SqliteRevocations {
    pool: SqlitePool,
    local: MemoryRevocations,
}

impl SqliteRevocations {
    /// Uses `pool`, creating or migrating the library's tables first
    /// ([`super::sqlite::migrate`]).
    pub async fn new(pool: SqlitePool) -> Result<Self, StoreError> {
        super::sqlite::migrate(&pool).await.map_err(StoreError::unavailable)?;
        Ok(Self { pool, local: MemoryRevocations::new() })
    }
}

#[async_trait]
impl RevocationArchive for SqliteRevocations {
    async fn record(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::unavailable)?;
        sqlx::query("DELETE FROM tessera_revocations WHERE until <= ?")
            .bind(SystemClock.now().as_millis())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
        for r in revocations {
            sqlx::query("INSERT OR IGNORE INTO tessera_revocations (entry, until) VALUES (?, ?)")
                .bind(r.encode())
                .bind(r.until().as_millis())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::unavailable)?;
        }
        tx.commit().await.map_err(StoreError::unavailable)
    }

    async fn current(&self, now: Timestamp) -> Result<Vec<Revocation>, StoreError> {
        let entries: Vec<String> = sqlx::query_scalar("SELECT entry FROM tessera_revocations WHERE until > ?")
            .bind(now.as_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(entries.iter().filter_map(|e| Revocation::decode(e)).collect())
    }
}

#[async_trait]
impl RevocationStore for SqliteRevocations {
    async fn revoke(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        self.record(revocations).await?;
        self.local.deliver(revocations);
        Ok(())
    }

    async fn attach(&self, list: Arc<RevocationList>) -> Result<(), StoreError> {
        let current = self.current(SystemClock.now()).await?;
        self.local.attach_loaded(&list, &current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::record::UserId;

    #[tokio::test]
    async fn revocations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let until = Timestamp::from_millis(i64::MAX / 2);
        let revoked = |list: &RevocationList| list.revokes_family("fam", &UserId::from(1), 1_000);
        {
            let store = SqliteRevocations::new(super::super::sqlite::connect(&path).await.unwrap()).await.unwrap();
            let list = Arc::new(RevocationList::new());
            store.attach(list.clone()).await.unwrap();
            assert!(list.is_ready() && !revoked(&list));
            store.revoke(&[Revocation::Family { sid: "fam".into(), until }]).await.unwrap();
            assert!(revoked(&list), "delivered to the attached list at once");
        }
        let store = SqliteRevocations::new(super::super::sqlite::connect(&path).await.unwrap()).await.unwrap();
        let list = Arc::new(RevocationList::new());
        store.attach(list.clone()).await.unwrap();
        assert!(list.is_ready() && revoked(&list), "reloaded after a restart");
    }
}
