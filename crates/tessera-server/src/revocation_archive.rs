//! Revocations archived in the user database (SQLite, PostgreSQL or MySQL), the
//! durable store the nodes already share, beside Redis, which may restart
//! empty or from an older snapshot.

use async_trait::async_trait;
use sqlx::AnyPool;
use tessera::revocation::{Revocation, RevocationArchive};
use tessera::{StoreError, Timestamp};

use crate::users::{Engine, Users};

/// The `tessera_revocations` table of the user database.
#[derive(Debug, Clone)]
pub struct UserDbArchive {
    pool: AnyPool,
    engine: Engine,
}

impl UserDbArchive {
    /// The archive in the user database (migrated by [`Users::connect`]).
    pub fn new(users: &Users) -> Self {
        Self { pool: users.pool().clone(), engine: users.engine() }
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("revocation archive: {e}"))
}

#[async_trait]
impl RevocationArchive for UserDbArchive {
    async fn record(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // An entry archived twice is one entry: SQLite and PostgreSQL say
        // so with ON CONFLICT, MySQL with a no-op ON DUPLICATE KEY UPDATE
        // (INSERT IGNORE would also hide real errors).
        let insert = match self.engine {
            Engine::Sqlite | Engine::Postgres => {
                "INSERT INTO tessera_revocations (entry, \"until\") VALUES ($1, $2) ON CONFLICT (entry) DO NOTHING"
            }
            Engine::MySql => {
                "INSERT INTO tessera_revocations (entry, \"until\") VALUES ($1, $2) ON DUPLICATE KEY UPDATE entry = entry"
            }
        };
        let insert = self.engine.sql(insert);
        for r in revocations {
            sqlx::query(&insert)
                .bind(r.encode())
                .bind(r.until().as_millis())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn current(&self, now: Timestamp) -> Result<Vec<Revocation>, StoreError> {
        // Expired entries are dropped on the way: the table stays as small
        // as the lists.
        sqlx::query(&self.engine.sql("DELETE FROM tessera_revocations WHERE \"until\" <= $1"))
            .bind(now.as_millis())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let entries: Vec<String> =
            sqlx::query_scalar(&self.engine.sql("SELECT entry FROM tessera_revocations WHERE \"until\" > $1"))
                .bind(now.as_millis())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(entries.iter().filter_map(|e| Revocation::decode(e)).collect())
    }
}
