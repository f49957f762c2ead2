//! The user repository: `user_info` and `user_password`.

use serde::Serialize;
use sqlx::SqlitePool;

use crate::domain::{NewUser, Telephone};
use crate::error::ApiError;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
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
    pool: SqlitePool,
}

impl Users {
    /// Users in `pool`'s database (migrated by startup).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Creates a user and their password row in one transaction; `None`
    /// if the phone is already registered.
    pub async fn insert(&self, user: &NewUser, password_hash: &str) -> Result<Option<User>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO user_info (name, gender, age, telphone, register_mode) VALUES (?, ?, ?, ?, 'byphone')
             ON CONFLICT (telphone) DO NOTHING RETURNING id",
        )
        .bind(user.name.as_str())
        .bind(user.gender.code())
        .bind(i64::from(user.age))
        .bind(user.telephone.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = inserted else { return Ok(None) };
        sqlx::query("INSERT INTO user_password (encrpt_password, user_id) VALUES (?, ?)")
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
    pub async fn by_id(&self, id: i64) -> Result<Option<User>, ApiError> {
        Ok(sqlx::query_as::<_, User>("SELECT id, name, gender, age, telphone FROM user_info WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The user with `phone` and their password hash.
    pub async fn by_phone(&self, phone: &Telephone) -> Result<Option<(User, String)>, ApiError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: User,
            encrpt_password: String,
        }
        let row = sqlx::query_as::<_, Row>(
            "SELECT u.id, u.name, u.gender, u.age, u.telphone, p.encrpt_password
             FROM user_info u JOIN user_password p ON p.user_id = u.id WHERE u.telphone = ?",
        )
        .bind(phone.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.user, r.encrpt_password)))
    }
}
