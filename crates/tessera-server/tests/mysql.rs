//! Users in MySQL / MariaDB: the repository and the revocation archive on
//! a real server (a duplicate phone is refused by the unique index, which
//! the service answers with 409), and two nodes with their own data directories sharing
//! users through it (sessions through Redis), as `postgres.rs` does for
//! PostgreSQL.
//!
//! Uses the machine's MariaDB or MySQL (`TESSERA_TEST_MYSQL`, default
//! mysql://root@127.0.0.1:3306); each test creates and drops its own
//! database.

mod support;

use serde_json::{json, Value};
use sqlx::{Connection, MySqlConnection};
use support::node::Node;
use support::{e164, Sink, PASSWORD, PHONE};
use tessera::revocation::{Revocation, RevocationArchive};
use tessera::{Timestamp, UserId};
use tessera_server::domain::{NewUser, Telephone};
use tessera_server::revocation_archive::UserDbArchive;
use tessera_server::users::{Engine, Users};
use tessera_testkit::RedisServer;

fn admin_url() -> String {
    std::env::var("TESSERA_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A fresh database, dropped when the guard goes.
struct Database {
    name: String,
}

impl Database {
    /// `tag` tells apart the databases of the tests of one run.
    async fn create(tag: &str) -> Self {
        let name = format!("tessera_test_{}_{tag}", std::process::id());
        let mut admin =
            MySqlConnection::connect(&admin_url()).await.expect("MariaDB is running (scripts/test starts it)");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")).execute(&mut admin).await.unwrap();
        Self { name }
    }

    /// The database's URL under `scheme` (`mysql` or `mariadb`).
    fn url_as(&self, scheme: &str) -> String {
        let admin = admin_url();
        let rest = admin.split_once("://").map(|(_, rest)| rest).unwrap_or(&admin);
        let server = rest.split_once('/').map(|(server, _)| server).unwrap_or(rest);
        format!("{scheme}://{server}/{}", self.name)
    }

    fn url(&self) -> String {
        self.url_as("mysql")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = MySqlConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

fn new_user(phone: &str, name: &str) -> NewUser {
    let fields = tessera_server::domain::new_user::RegistrationFields {
        name: Some(name),
        gender: Some("2"),
        age: Some("41"),
        telephone: Some(phone),
        password: Some(PASSWORD),
    };
    NewUser::parse(fields).unwrap()
}

#[tokio::test]
async fn the_repository_and_the_archive_work_on_mysql() {
    let db = Database::create("repo").await;
    // `mariadb://` names the same server.
    let users = Users::connect(&db.url_as("mariadb")).await.expect("migrations run on MariaDB");
    assert_eq!(users.engine(), Engine::MySql);
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(users.pool())
        .await
        .unwrap();
    let expected: Vec<i64> = tessera_server::migrations::mysql().iter().map(|m| m.version).collect();
    assert_eq!(applied, expected);
    assert_eq!(expected, tessera_server::migrations::postgres().iter().map(|m| m.version).collect::<Vec<_>>());
    // A second connect finds everything applied.
    Users::connect(&db.url()).await.expect("migrated twice is migrated once");

    let first = users.insert(&new_user("13800000001", "张三"), "$argon2id$hash-1").await.unwrap().expect("new");
    let second = users.insert(&new_user("13800000002", "李四"), "$argon2id$hash-2").await.unwrap().expect("new");
    assert_eq!(second.id, first.id + 1, "ids from AUTO_INCREMENT / LAST_INSERT_ID()");
    assert!(users.insert(&new_user("13800000001", "again"), "x").await.unwrap().is_none(), "a duplicate phone");
    assert_eq!(users.by_id(first.id).await.unwrap().unwrap().name, "张三", "utf8mb4 round trip");

    let phone = Telephone::parse("13800000001").unwrap();
    let account = users.by_phone(&phone).await.unwrap().unwrap();
    assert_eq!(
        (account.user.id, account.password_hash.as_str(), account.is_disabled()),
        (first.id, "$argon2id$hash-1", false)
    );
    assert!(users.set_password(first.id, "$argon2id$hash-3").await.unwrap());
    assert_eq!(users.account(first.id).await.unwrap().unwrap().password_hash, "$argon2id$hash-3");
    assert!(users.set_disabled(first.id, true).await.unwrap());
    assert!(users.set_disabled(first.id, true).await.unwrap(), "setting it again is no error");
    assert_eq!(users.is_disabled(first.id).await.unwrap(), Some(true));
    assert!(users.by_phone(&phone).await.unwrap().unwrap().is_disabled());
    assert!(users.set_disabled(first.id, false).await.unwrap());
    assert_eq!(users.is_disabled(first.id).await.unwrap(), Some(false));
    assert!(!users.set_disabled(9999, true).await.unwrap());
    assert_eq!(users.is_disabled(9999).await.unwrap(), None);

    let archive = UserDbArchive::new(&users);
    let now = Timestamp::from_millis(1_800_000_000_000);
    let live = Revocation::User {
        user: UserId::from(first.id),
        not_before_ms: now.as_millis(),
        until: Timestamp::from_millis(now.as_millis() + 60_000),
    };
    let gone = Revocation::Family { sid: "a".repeat(43), until: Timestamp::from_millis(now.as_millis() - 1) };
    archive.record(&[live.clone(), gone.clone()]).await.unwrap();
    archive.record(std::slice::from_ref(&live)).await.expect("an entry archived twice is one entry");
    assert_eq!(archive.current(now).await.unwrap(), vec![live]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_separate_data_directories_share_users_in_mysql() {
    let db = Database::create("nodes").await;
    let redis = RedisServer::start();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--redis", &redis.url(), "--database", &db.url()];
    let a = Node::start(dir_a.path(), &sink_url, &flags).await;
    let b = Node::start(dir_b.path(), &sink_url, &flags).await;
    let http = reqwest::Client::new();

    let r = http.post(a.url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = sink.last_code(&e164(PHONE));
    let register =
        json!({"telephone": PHONE, "otpCode": code, "name": "my", "gender": 2, "age": 33, "password": PASSWORD});
    let r = http.post(b.url("/user/register")).json(&register).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let token = a.login_header(&http).await["token"].as_str().unwrap().to_owned();
    let me: Value = http.get(b.url("/user/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["data"]["name"], "my");
    assert_eq!(me["data"]["telephone"], e164(PHONE));

    // Logout everywhere archives a revocation in MySQL beside Redis.
    let r = http.post(b.url("/user/logout-everywhere")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut my = MySqlConnection::connect(&db.url()).await.unwrap();
    let archived: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tessera_revocations").fetch_one(&mut my).await.unwrap();
    assert!(archived >= 1);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM user_info").fetch_one(&mut my).await.unwrap();
    assert_eq!(users, 1);
}
