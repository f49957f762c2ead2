//! The server's migration histories: exactly one per database kind, each
//! run by one migrator, so that no two migrators share a `_sqlx_migrations`
//! table and none needs `set_ignore_missing` (sqlx 0.8 keeps one such table
//! per database and cannot give a component its own).
//!
//! - SQLite: `migrations/sqlite/` (the user tables, OTP challenges and
//!   throttles, the revocation archive) followed by the library's own
//!   migrations ([`tessera::store::sqlite::migrations`], numbered from
//!   1000001: sessions and revocations). Every SQLite file the server opens
//!   gets all of it: the local file, and a `--database sqlite:` file, which
//!   may be the same file; tables a file does not use stay empty.
//! - PostgreSQL (users only): `migrations/postgres/`, the user tables and
//!   the revocation archive.
//! - MySQL / MariaDB (users only): `migrations/mysql/`, the same changes
//!   under the same numbers as PostgreSQL's, in MySQL's types.
//!
//! Numbering (ARCHITECTURE.md, "Migrations"): the server's versions are
//! 0001, 0002, … shared by both engines — a number names one change, a
//! change made on both engines has the same number in both directories, and
//! a change that one engine lacks leaves a gap in the other (PostgreSQL has
//! no 0002: OTP and throttles are never kept there). The library numbers
//! its own inside [`tessera::store::sqlite::MIGRATION_VERSIONS`].

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, Migrator};
use sqlx::SqlitePool;
use tessera::store::sqlite::MIGRATION_VERSIONS;

/// The server's own SQLite migrations, without the library's.
fn server_sqlite() -> Migrator {
    sqlx::migrate!("./migrations/sqlite")
}

/// Every migration of a SQLite database of the server, in version order:
/// the server's, then the library's.
pub async fn sqlite() -> Result<Migrator, MigrateError> {
    let server = server_sqlite();
    let library = tessera::store::sqlite::migrations();
    let all = combine(&server, &library).map_err(|e| MigrateError::Source(e.into()))?;
    Migrator::new(Listed(all)).await
}

/// Every migration of a PostgreSQL user database.
pub fn postgres() -> Migrator {
    sqlx::migrate!("./migrations/postgres")
}

/// Every migration of a MySQL / MariaDB user database.
pub fn mysql() -> Migrator {
    sqlx::migrate!("./migrations/mysql")
}

/// Opens the SQLite file at `path` as the library wants it (WAL, owner
/// only) and brings it to the end of the SQLite history.
pub async fn open_sqlite(path: &Path) -> Result<SqlitePool, String> {
    let pool =
        tessera::store::sqlite::connect(path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    sqlite().await.map_err(|e| e.to_string())?.run(&pool).await.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(pool)
}

/// The server's and the library's migrations as one list, refusing a
/// server version inside the library's range or any version twice.
fn combine(server: &Migrator, library: &Migrator) -> Result<Vec<Migration>, String> {
    if let Some(m) = server.iter().find(|m| MIGRATION_VERSIONS.contains(&m.version)) {
        return Err(format!("server migration {} is in the library's range {MIGRATION_VERSIONS:?}", m.version));
    }
    let mut all: Vec<Migration> = server.iter().chain(library.iter()).cloned().collect();
    all.sort_by_key(|m| m.version);
    if let Some(pair) = all.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(format!("migration version {} is used twice", pair[0].version));
    }
    Ok(all)
}

/// A list of migrations already resolved, as sqlx's `Migrator::new` wants
/// its source.
#[derive(Debug)]
struct Listed(Vec<Migration>);

impl<'s> MigrationSource<'s> for Listed {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move { Ok(self.0) })
    }
}

#[cfg(test)]
mod tests {
    use sqlx::AnyPool;

    use super::*;
    use crate::users::Users;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// SHA-384 of the migrations released before the histories were
    /// merged, as databases record them: editing one of these files would
    /// make every existing database refuse to start.
    #[test]
    fn released_migrations_are_frozen() {
        let released = [
            (1, "9e99fa24cd6d43502292127126adf239d70edbfe5ad851eaf21400bdd7a669e236cac17f8888e47b60e694cba7235ee9"),
            (2, "2374d1b42301d450c410496c9c7cbbd477c68e473b38f5cc66e04c6fd713622184e8f8127bbf3db9dfef37fcd6bd5f06"),
            (3, "9be56d0383faa18322ee2e85b3f0a389edd9423dbf29dc87f51f837f93fc19913596f26cbfd97243957c04326852432a"),
        ];
        for (version, sum) in released {
            let m = server_sqlite().iter().find(|m| m.version == version).cloned().unwrap();
            assert_eq!(hex(&m.checksum), sum, "sqlite {version}");
        }
        let released = [
            (1, "eb2cafbbf50297ff4c6a275c6512677900f9f3880f35810cbeb0f14615dabff31ed7e611292040833176854cf2ca1964"),
            (3, "22ca471e68a16fc56eb0f46695250c6a583e2efec4a4e68ff566e77a6ca3b2cc6274655ca5ed5db23baf2e2cb0a7d82a"),
        ];
        for (version, sum) in released {
            let m = postgres().iter().find(|m| m.version == version).cloned().unwrap();
            assert_eq!(hex(&m.checksum), sum, "postgres {version}");
        }
    }

    #[tokio::test]
    async fn each_version_names_one_change() {
        let sqlite = sqlite().await.unwrap();
        let versions: Vec<i64> = sqlite.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "one ordered history: {versions:?}");
        for pg in postgres().iter().chain(mysql().iter()) {
            assert!(!MIGRATION_VERSIONS.contains(&pg.version));
            if let Some(lite) = server_sqlite().iter().find(|m| m.version == pg.version) {
                assert_eq!(lite.description, pg.description, "version {} is one change on every engine", pg.version);
            }
        }
        // The user databases that are not SQLite have the same history.
        let (pg, my): (Vec<_>, Vec<_>) = (
            postgres().iter().map(|m| (m.version, m.description.clone())).collect(),
            mysql().iter().map(|m| (m.version, m.description.clone())).collect(),
        );
        assert_eq!(pg, my, "PostgreSQL and MySQL: the same numbered changes");
        let clash = sqlx::migrate!("./migrations/sqlite");
        assert!(combine(&server_sqlite(), &clash).unwrap_err().contains("used twice"));
        assert!(combine(&tessera::store::sqlite::migrations(), &server_sqlite()).unwrap_err().contains("range"));
    }

    /// Applies the named files of `migrations/sqlite/` as the code before
    /// the merge did: one migrator per directory, sharing the table, with
    /// `set_ignore_missing`.
    async fn the_old_way(pool: &AnyPool, files: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite").join(file);
            std::fs::copy(from, dir.path().join(file)).unwrap();
        }
        let mut old = Migrator::new(dir.path()).await.unwrap();
        old.set_ignore_missing(true);
        old.run(pool).await.unwrap();
    }

    /// What the library's stores created ad hoc before they had
    /// migrations: their tables, without history rows.
    /// The library's tables as its code made them before migrations: the
    /// shapes of 1000001 and 1000002, with no history rows.
    async fn the_old_library_tables(pool: &AnyPool) {
        for m in tessera::store::sqlite::migrations().iter().filter(|m| m.version <= 1_000_002) {
            sqlx::raw_sql(&m.sql).execute(pool).await.unwrap();
        }
    }

    async fn any_pool(path: &Path) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap()
    }

    async fn history(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(pool).await.unwrap()
    }

    async fn every_version() -> Vec<i64> {
        sqlite().await.unwrap().iter().map(|m| m.version).collect()
    }

    /// One file with everything (no `--database`): the local migrations ran
    /// first, then the user migrations, then the stores made their tables.
    #[tokio::test]
    async fn a_local_file_of_the_old_layout_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.db");
        let old = any_pool(&path).await;
        the_old_way(&old, &["0002_otp_and_limits.sql"]).await;
        the_old_way(&old, &["0001_users.sql", "0003_revocations.sql"]).await;
        the_old_library_tables(&old).await;
        sqlx::query("INSERT INTO user_info (name, gender, age, telphone) VALUES ('old', 1, 30, '+8613800000000')")
            .execute(&old)
            .await
            .unwrap();
        old.close().await;

        let pool = open_sqlite(&path).await.expect("the old file opens");
        assert_eq!(history(&pool).await, every_version().await);
        let users = Users::connect(&format!("sqlite://{}", path.display())).await.expect("users too");
        assert_eq!(users.by_id(1).await.unwrap().map(|u| u.name), Some("old".to_owned()));
        tessera::SqliteStore::with_pool(pool.clone()).await.expect("the session store opens it");
        tessera::store::SqliteRevocations::new(pool.clone()).await.expect("so do the revocations");
        assert_eq!(history(&pool).await, every_version().await, "and nothing ran twice");
    }

    /// With `--database sqlite:` elsewhere: the local file had only 0002
    /// and the stores' tables; the user file 0001 and 0003.
    #[tokio::test]
    async fn split_files_of_the_old_layout_open() {
        let dir = tempfile::tempdir().unwrap();
        let (local, user_db) = (dir.path().join("tessera.db"), dir.path().join("users.db"));
        let old_local = any_pool(&local).await;
        the_old_way(&old_local, &["0002_otp_and_limits.sql"]).await;
        the_old_library_tables(&old_local).await;
        old_local.close().await;
        let old_users = any_pool(&user_db).await;
        the_old_way(&old_users, &["0001_users.sql", "0003_revocations.sql"]).await;
        old_users.close().await;

        let pool = open_sqlite(&local).await.expect("the old local file opens");
        assert_eq!(history(&pool).await, every_version().await);
        Users::connect(&format!("sqlite://{}", user_db.display())).await.expect("the old user file opens");
        let users = open_sqlite(&user_db).await.unwrap();
        assert_eq!(history(&users).await, every_version().await);
    }

    #[tokio::test]
    async fn a_fresh_file_gets_the_whole_history() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open_sqlite(&dir.path().join("new.db")).await.unwrap();
        assert_eq!(history(&pool).await, every_version().await);
        for table in
            ["user_info", "user_password", "otp_challenge", "rate_limit", "tessera_revocations", "tessera_sessions"]
        {
            let found: Option<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = ?")
                .bind(table)
                .fetch_optional(&pool)
                .await
                .unwrap();
            assert!(found.is_some(), "{table}");
        }
    }
}
