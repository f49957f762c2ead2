//! Users in PostgreSQL: two nodes with their own data directories (as on
//! two machines) share users through PostgreSQL, sessions through Redis,
//! and the server secret through TESSERA_SECRET.
//!
//! Uses the machine's PostgreSQL (`TESSERA_TEST_POSTGRES`, default
//! postgres://postgres@127.0.0.1:5432/postgres); each run creates and drops
//! its own database.

mod support;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use support::node::Node;
use support::{e164, Sink, PASSWORD, PHONE};
use tessera_testkit::RedisServer;

fn admin_url() -> String {
    std::env::var("TESSERA_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
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
            PgConnection::connect(&admin_url()).await.expect("PostgreSQL is running (scripts/test starts it)");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        Self { name }
    }

    fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_separate_data_directories_share_users_in_postgres() {
    let db = Database::create("nodes").await;
    let redis = RedisServer::start();
    let (sink, sink_addr) = Sink::start().await;
    let sink_url = format!("http://{sink_addr}/sms");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--redis", &redis.url(), "--database", &db.url()];
    let a = Node::start(dir_a.path(), &sink_url, &flags).await;
    let b = Node::start(dir_b.path(), &sink_url, &flags).await;
    let http = reqwest::Client::new();

    // The code is sent by node A and checked by node B: the HMAC key is
    // the shared secret, not either node's own file.
    let r = http.post(a.url("/user/getotp")).json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = sink.last_code(&e164(PHONE));
    let r = http
        .post(b.url("/user/register"))
        .json(&json!({"telephone": PHONE, "otpCode": code, "name": "pg", "gender": 2, "age": 33, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let r = http
        .post(a.url("/user/login"))
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "node A finds the user node B registered");
    let token = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    let me: Value = http.get(b.url("/user/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["data"]["name"], "pg");
    assert_eq!(me["data"]["telephone"], e164(PHONE));

    // A second registration of the phone is refused by PostgreSQL's unique index.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let mut pg = PgConnection::connect(&db.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM user_info").fetch_one(&mut pg).await.unwrap();
    assert_eq!(count, 1);
    assert!(!dir_a.path().join("secret").exists(), "with TESSERA_SECRET no secret file is generated");
}

/// A user database made by the code before the migration histories were
/// merged (`migrations/users/postgres`, run with `set_ignore_missing`; its
/// `_sqlx_migrations` lists 1 and 3) opens with today's and keeps its users.
#[tokio::test]
async fn a_user_database_of_the_old_layout_opens() {
    let db = Database::create("old_layout").await;
    sqlx::any::install_default_drivers();
    let old = sqlx::AnyPool::connect(&db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for file in ["0001_users.sql", "0003_revocations.sql"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres").join(file);
        std::fs::copy(from, dir.path().join(file)).unwrap();
    }
    let mut migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    migrator.set_ignore_missing(true);
    migrator.run(&old).await.unwrap();
    sqlx::query("INSERT INTO user_info (name, gender, age, telphone) VALUES ('old', 2, 40, '+8613800000001')")
        .execute(&old)
        .await
        .unwrap();
    old.close().await;

    let users = tessera_server::users::Users::connect(&db.url()).await.expect("the old database opens");
    assert_eq!(users.by_id(1).await.unwrap().map(|u| u.name), Some("old".to_owned()));
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(users.pool())
        .await
        .unwrap();
    let expected: Vec<i64> = tessera_server::migrations::postgres().iter().map(|m| m.version).collect();
    assert_eq!(applied, expected);
}
