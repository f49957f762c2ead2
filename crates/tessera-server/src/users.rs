//! The user repository: `user_info` and `user_password`, in SQLite (one
//! machine) or PostgreSQL (many), through sqlx's `Any` driver: the queries
//! are written once, with `$N` placeholders that both engines accept.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::domain::{NewUser, Telephone};
use crate::storage::StorageError;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// 1 = male, 2 = female.
    pub gender: i64,
    /// Age.
    pub age: i64,
    /// E.164 phone number.
    #[sqlx(rename = "telphone")]
    pub telephone: String,
}

/// Users in SQL.
#[derive(Debug, Clone)]
pub struct Users {
    pool: AnyPool,
}

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
}

impl Engine {
    /// The engine of `url`, if supported.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

impl Users {
    /// Connects to the user database at `url` and applies its migrations.
    pub async fn connect(url: &str) -> Result<Self, String> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url).ok_or_else(|| format!("unsupported database URL {url:?}"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(|e| format!("cannot open the user database: {e}"))?;
        // One history per database kind (see `crate::migrations`): a SQLite
        // user file gets everything a SQLite file of the server gets, as it
        // may be the local file itself.
        let migrator = match engine {
            Engine::Sqlite => crate::migrations::sqlite().await,
            Engine::Postgres => Ok(crate::migrations::postgres()),
        };
        migrator
            .map_err(|e| format!("user database migrations: {e}"))?
            .run(&pool)
            .await
            .map_err(|e| format!("user database migrations: {e}"))?;
        Ok(Self { pool })
    }

    /// The pool, for the tables that live beside the users (revocations).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates a user and their password row in one transaction; `None`
    /// if the phone is already registered.
    pub async fn insert(&self, user: &NewUser, password_hash: &str) -> Result<Option<User>, StorageError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO user_info (name, gender, age, telphone, register_mode) VALUES ($1, $2, $3, $4, 'byphone')
             ON CONFLICT (telphone) DO NOTHING RETURNING id",
        )
        .bind(user.name.as_str())
        .bind(user.gender.code())
        .bind(i64::from(user.age))
        .bind(user.telephone.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = inserted else { return Ok(None) };
        sqlx::query("INSERT INTO user_password (encrpt_password, user_id) VALUES ($1, $2)")
            .bind(password_hash)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(User {
            id,
            name: user.name.as_str().to_owned(),
            gender: user.gender.code(),
            age: i64::from(user.age),
            telephone: user.telephone.as_str().to_owned(),
        }))
    }

    /// The user with `id`.
    pub async fn by_id(&self, id: i64) -> Result<Option<User>, StorageError> {
        Ok(sqlx::query_as::<_, User>("SELECT id, name, gender, age, telphone FROM user_info WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The user with `phone` and their password hash.
    pub async fn by_phone(&self, phone: &Telephone) -> Result<Option<(User, String)>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: User,
            encrpt_password: String,
        }
        let row = sqlx::query_as::<_, Row>(
            "SELECT u.id, u.name, u.gender, u.age, u.telphone, p.encrpt_password
             FROM user_info u JOIN user_password p ON p.user_id = u.id WHERE u.telphone = $1",
        )
        .bind(phone.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.user, r.encrpt_password)))
    }
}
