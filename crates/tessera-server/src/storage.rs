//! The error every storage seam of the server reports (users, OTP
//! challenges, rate limits), whatever the backend: typed, so that the one
//! mapping to HTTP in [`crate::error`] decides statuses, not each store.

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database or Redis cannot be reached in time: 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Another writer changed the same thing first: 409.
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// Anything else (a bug or a corrupt row): 500, details in the log.
    #[error("storage failure: {0}")]
    Failed(String),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(e.to_string())
            }
            // SQLite's "database is locked" past the busy timeout: the
            // store is there but cannot take the write now.
            sqlx::Error::Database(ref db) if db.message().contains("locked") => Self::Unavailable(e.to_string()),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<tessera::StoreError> for StorageError {
    fn from(e: tessera::StoreError) -> Self {
        match e {
            tessera::StoreError::Unavailable(reason) => Self::Unavailable(reason),
            tessera::StoreError::Conflict(reason) => Self::Conflict(reason),
            tessera::StoreError::NotFound => Self::Failed("not found".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_store_errors_keep_their_meaning() {
        let conflict = StorageError::from(tessera::StoreError::Conflict("x".into()));
        assert!(matches!(conflict, StorageError::Conflict(_)));
        let down = StorageError::from(tessera::StoreError::Unavailable("x".into()));
        assert!(matches!(down, StorageError::Unavailable(_)));
        assert!(matches!(StorageError::from(sqlx::Error::PoolTimedOut), StorageError::Unavailable(_)));
        assert!(matches!(StorageError::from(sqlx::Error::RowNotFound), StorageError::Failed(_)));
    }
}
