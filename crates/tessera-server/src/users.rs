//! The user repository: `user_info` and `user_password`, in SQLite (one
//! machine), PostgreSQL or MySQL/MariaDB (many), through sqlx's `Any`
//! driver. The queries are written once, in the dialect SQLite and
//! PostgreSQL share (`$N` placeholders, `"quoted"` identifiers), and
//! [`Engine::sql`] turns them into MySQL's (`?`, backticks) on the way;
//! where the engines really differ (the upsert, `RETURNING`) the code
//! says so.

use std::borrow::Cow;
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

/// A user with what a login or a password change checks. No `Debug`: it
/// holds the password hash.
#[derive(Clone, sqlx::FromRow)]
pub struct Account {
    /// The user.
    #[sqlx(flatten)]
    pub user: User,
    /// The password's PHC string.
    #[sqlx(rename = "encrpt_password")]
    pub password_hash: String,
    /// 1 when an operator disabled the account.
    disabled: i64,
}

impl Account {
    /// Whether an operator disabled the account: no login succeeds.
    pub fn is_disabled(&self) -> bool {
        self.disabled != 0
    }
}

/// Users in SQL.
#[derive(Debug, Clone)]
pub struct Users {
    pool: AnyPool,
    engine: Engine,
}

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres:` / `postgresql:` URLs.
    Postgres,
    /// `mysql:` / `mariadb:` URLs.
    MySql,
}

impl Engine {
    /// The engine of `url`, if supported.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Self::MySql)
        } else {
            None
        }
    }

    /// `query`, written with `$1, $2, …` (each once, in order) and
    /// `"double-quoted"` identifiers as SQLite and PostgreSQL take them, in
    /// this engine's dialect: MySQL wants `?` and backticks. The queries
    /// hold no string literal with a `$` or a `"`.
    pub fn sql(self, query: &'static str) -> Cow<'static, str> {
        if self != Self::MySql {
            return Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len());
        let mut chars = query.chars().peekable();
        let mut next = 1;
        while let Some(c) = chars.next() {
            match c {
                '$' => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        digits.push(*d);
                        chars.next();
                    }
                    debug_assert_eq!(digits.parse::<usize>().ok(), Some(next), "placeholders in order: {query}");
                    next += 1;
                    out.push('?');
                }
                '"' => out.push('`'),
                c => out.push(c),
            }
        }
        Cow::Owned(out)
    }
}

impl Users {
    /// Connects to the user database at `url` and applies its migrations.
    pub async fn connect(url: &str) -> Result<Self, String> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url).ok_or_else(|| format!("unsupported database URL {url:?}"))?;
        // sqlx reads MariaDB through its MySQL driver, under that scheme.
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => Cow::Owned(format!("mysql://{rest}")),
            None => Cow::Borrowed(url),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            // A network connection may have died while idle: test it at
            // checkout. A SQLite connection is a thread of this process,
            // and testing it would only add a round trip per statement.
            .test_before_acquire(engine != Engine::Sqlite)
            .connect(&url)
            .await
            .map_err(|e| format!("cannot open the user database: {e}"))?;
        // One history per database kind (see `crate::migrations`): a SQLite
        // user file gets everything a SQLite file of the server gets, as it
        // may be the local file itself.
        let migrator = match engine {
            Engine::Sqlite => crate::migrations::sqlite().await,
            Engine::Postgres => Ok(crate::migrations::postgres()),
            Engine::MySql => Ok(crate::migrations::mysql()),
        };
        migrator
            .map_err(|e| format!("user database migrations: {e}"))?
            .run(&pool)
            .await
            .map_err(|e| format!("user database migrations: {e}"))?;
        Ok(Self { pool, engine })
    }

    /// The pool, for the tables that live beside the users (revocations).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database's engine, whose dialect queries on [`Users::pool`] speak.
    pub fn engine(&self) -> Engine {
        self.engine
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
        let inserted = match self.engine {
            // SQLite and PostgreSQL skip a duplicate phone and say so by
            // returning no id.
            Engine::Sqlite | Engine::Postgres => sqlx::query_scalar::<_, i64>(
                "INSERT INTO user_info (name, gender, age, telphone, register_mode) VALUES ($1, $2, $3, $4, 'byphone')
                     ON CONFLICT (telphone) DO NOTHING RETURNING id",
            )
            .bind(user.name.as_str())
            .bind(user.gender.code())
            .bind(i64::from(user.age))
            .bind(user.telephone.as_str())
            .fetch_optional(&mut *tx)
            .await?,
            // MySQL has neither `ON CONFLICT … DO NOTHING` with a result
            // nor `RETURNING`: the unique index refuses the duplicate (and
            // only that error means "registered"; `INSERT IGNORE` would
            // swallow others), and the id is the connection's
            // LAST_INSERT_ID(), which the driver reports with the result.
            Engine::MySql => {
                let done = sqlx::query(
                    "INSERT INTO user_info (name, gender, age, telphone, register_mode) VALUES (?, ?, ?, ?, 'byphone')",
                )
                .bind(user.name.as_str())
                .bind(user.gender.code())
                .bind(i64::from(user.age))
                .bind(user.telephone.as_str())
                .execute(&mut *tx)
                .await;
                match done {
                    Ok(done) => Some(done.last_insert_id().ok_or_else(|| {
                        StorageError::Failed("MySQL reported no LAST_INSERT_ID for a new user".into())
                    })?),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => None,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let Some(id) = inserted else { return Ok(None) };
        sqlx::query(&self.engine.sql("INSERT INTO user_password (encrpt_password, user_id) VALUES ($1, $2)"))
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
        Ok(sqlx::query_as::<_, User>(
            &self.engine.sql("SELECT id, name, gender, age, telphone FROM user_info WHERE id = $1"),
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The account with `phone`: the user, their password hash, whether
    /// it is disabled.
    pub async fn by_phone(&self, phone: &Telephone) -> Result<Option<Account>, StorageError> {
        Ok(sqlx::query_as::<_, Account>(&self.engine.sql(
            "SELECT u.id, u.name, u.gender, u.age, u.telphone, u.disabled, p.encrpt_password
             FROM user_info u JOIN user_password p ON p.user_id = u.id WHERE u.telphone = $1",
        ))
        .bind(phone.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The account with `id` (see [`Users::by_phone`]).
    pub async fn account(&self, id: i64) -> Result<Option<Account>, StorageError> {
        Ok(sqlx::query_as::<_, Account>(&self.engine.sql(
            "SELECT u.id, u.name, u.gender, u.age, u.telphone, u.disabled, p.encrpt_password
             FROM user_info u JOIN user_password p ON p.user_id = u.id WHERE u.id = $1",
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Replaces the password hash of user `id`; `false` if there is no such user.
    pub async fn set_password(&self, id: i64, password_hash: &str) -> Result<bool, StorageError> {
        let done = sqlx::query(&self.engine.sql("UPDATE user_password SET encrpt_password = $1 WHERE user_id = $2"))
            .bind(password_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disables (or re-enables) user `id`; `false` if there is no such
    /// user. Setting what is already set is not an error.
    pub async fn set_disabled(&self, id: i64, disabled: bool) -> Result<bool, StorageError> {
        // MySQL counts only rows it changed as affected: existence is
        // asked separately, inside the same transaction.
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query_scalar::<_, i64>(&self.engine.sql("SELECT id FROM user_info WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            sqlx::query(&self.engine.sql("UPDATE user_info SET disabled = $1 WHERE id = $2"))
                .bind(i64::from(disabled))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(exists)
    }

    /// Whether user `id` is disabled; `None` if there is no such user.
    pub async fn is_disabled(&self, id: i64) -> Result<Option<bool>, StorageError> {
        let flag = sqlx::query_scalar::<_, i64>(&self.engine.sql("SELECT disabled FROM user_info WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(flag.map(|f| f != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::Engine;

    #[test]
    fn mysql_gets_question_marks_and_backticks() {
        let q = "DELETE FROM t WHERE \"until\" <= $1 AND entry = $2";
        assert_eq!(Engine::Postgres.sql(q), q);
        assert_eq!(Engine::Sqlite.sql(q), q);
        assert_eq!(Engine::MySql.sql(q), "DELETE FROM t WHERE `until` <= ? AND entry = ?");
        assert_eq!(Engine::of("mariadb://root@127.0.0.1/db"), Some(Engine::MySql));
        assert_eq!(Engine::of("mysql://root@127.0.0.1/db"), Some(Engine::MySql));
    }
}
