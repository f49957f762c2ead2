//! Helpers for `scripts/bench`: seed sessions, measure Redis memory per
//! session, logout propagation between two nodes, and login throughput.
//! Not part of the service; built with `cargo build --release --example bench_tool`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tessera::store::redis::{RedisStoreConfig, RedisTarget};
use tessera::{ClientMeta, Clock, RedisStore, SessionRecord, SessionStore, SqliteStore, SystemClock, UserId};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create COUNT logged-in sessions, one per user (ids 1..=COUNT), and
    /// write their tokens, one a line.
    Seed {
        /// `redis://…` (any --redis form) or a data directory for the embedded store.
        #[arg(long)]
        store: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// Token mode: write signed access tokens (signed with the key file
        /// the node will use) for the seeded families instead of session tokens.
        #[arg(long)]
        signing_keys: Option<PathBuf>,
        /// Token mode: the access tokens' lifetime in seconds (the node must
        /// allow as much with --access-ttl); the library's default if absent.
        #[arg(long)]
        access_ttl: Option<u64>,
    },
    /// Users 1..=COUNT in the user database at URL (migrated first), each
    /// with a profile of the size `/user/me` answers for the peers.
    Users {
        #[arg(long)]
        database: String,
        #[arg(long)]
        count: usize,
    },
    /// POST to URL COUNT times and write each answer's cookie (`name=value`), one a line.
    Cookies {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Redis memory per session: used_memory before and after COUNT sessions.
    Memory {
        #[arg(long)]
        redis: String,
        #[arg(long)]
        count: usize,
    },
    /// Logout on node A, then poll node B until it refuses the token.
    Propagation {
        #[arg(long)]
        redis: String,
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long, default_value_t = 300)]
        count: usize,
    },
    /// Password and OTP logins per second against a running node.
    Logins {
        #[arg(long)]
        url: String,
        /// The node's --data-dir, to register users without the API.
        #[arg(long)]
        data_dir: PathBuf,
        /// Port the node's --otp-webhook points at; this tool listens there.
        #[arg(long)]
        sink_port: u16,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Run only this kind (`password` or `otp`); both by default.
        #[arg(long)]
        only: Option<LoginKind>,
    },
}

/// Which logins `bench_tool logins` runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoginKind {
    Password,
    Otp,
}

/// A desktop browser's user agent, as sent today (111 bytes): sessions
/// keep it for the list of devices.
const BROWSER_USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A typical logged-in session of user `id`, as `tessera` writes one at
/// login: the user, a browser's user agent, an IPv4 address (the profile
/// stays out of the store).
fn record(id: i64) -> SessionRecord {
    let now = SystemClock.now();
    SessionRecord {
        user_id: Some(UserId::from(id)),
        attributes: Default::default(),
        created_at: now,
        last_seen: now,
        idle_deadline: now + Duration::from_secs(1800),
        absolute_deadline: now + Duration::from_secs(12 * 3600),
        version: 0,
        client: ClientMeta::new(Some(BROWSER_USER_AGENT), Some([203, 0, 113, 7].into())),
    }
}

async fn open(store: &str) -> Arc<dyn SessionStore> {
    if RedisTarget::parse(store).is_ok() {
        let config = RedisStoreConfig { near_cache: None, timeout: Duration::from_secs(5), ..Default::default() };
        Arc::new(RedisStore::connect(store, config).await.expect("Redis"))
    } else {
        std::fs::create_dir_all(store).unwrap();
        Arc::new(SqliteStore::open(PathBuf::from(store).join("tessera.db")).await.expect("SQLite"))
    }
}

async fn seed(store: Arc<dyn SessionStore>, count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count);
    for chunk in (1..=count as i64).collect::<Vec<_>>().chunks(256) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&id| {
                let store = store.clone();
                let token = store.issue_token(Some(&UserId::from(id)));
                async move {
                    store.create(&token.key(), &record(id)).await.expect("create");
                    token.expose()
                }
            })
            .collect();
        tokens.extend(futures_join(batch).await);
    }
    tokens
}

/// Access tokens for the families filed under the keys of `tokens` (the
/// session tokens `seed` made), valid for `ttl` (a node refuses tokens meant
/// to live longer than its own --access-ttl).
fn sign_access_tokens(file: &std::path::Path, tokens: &[String], ttl: Duration) -> Vec<String> {
    use tessera::revocation::sid_of;
    use tessera::signed::{AccessClaims, KeyRing, SigningAlgorithm};
    let keys = tessera_server::signing_keys::KeyFile::new(file.to_path_buf())
        .load_or_create(SigningAlgorithm::EdDSA, SystemClock.now())
        .expect("key file");
    let ring = KeyRing::new(&keys).expect("keys");
    let now = SystemClock.now().as_secs();
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let key = tessera::SessionToken::parse(token).expect("seeded token").key();
            let claims = AccessClaims {
                iss: "tessera".into(),
                aud: "tessera".into(),
                sub: UserId::from(i as i64 + 1),
                sid: sid_of(&key),
                iat: now,
                nbf: now,
                exp: now + ttl.as_secs() as i64,
                jti: format!("bench-{i}"),
                iat_ms: None,
            };
            ring.sign(&claims).expect("sign")
        })
        .collect()
}

async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(futures: Vec<F>) -> Vec<String> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn used_memory(redis: &str) -> u64 {
    let client = redis::Client::open(redis).unwrap();
    let mut c = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Cmd::Seed { store, count, out, signing_keys, access_ttl } => {
            let mut tokens = seed(open(&store).await, count).await;
            if let Some(file) = signing_keys {
                let ttl = access_ttl.map(Duration::from_secs).unwrap_or(tessera::TokenSettings::default().access_ttl);
                tokens = sign_access_tokens(&file, &tokens, ttl);
            }
            std::fs::write(&out, tokens.join("\n") + "\n").unwrap();
            eprintln!("seeded {count} sessions into {store}");
        }
        Cmd::Users { database, count } => users(&database, count).await,
        Cmd::Cookies { url, count, out } => {
            let http = reqwest::Client::new();
            let mut cookies = Vec::with_capacity(count);
            for _ in 0..count {
                let r = http.post(&url).send().await.unwrap();
                let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
                cookies.push(cookie);
            }
            std::fs::write(&out, cookies.join("\n") + "\n").unwrap();
        }
        Cmd::Memory { redis, count } => {
            let before = used_memory(&redis);
            seed(open(&redis).await, count).await;
            let after = used_memory(&redis);
            println!("{count} sessions: {} bytes per session", (after - before) / count as u64);
        }
        Cmd::Propagation { redis, a, b, count } => propagation(&redis, &a, &b, count).await,
        Cmd::Logins { url, data_dir, sink_port, concurrency, seconds, only } => {
            let kinds = match only {
                Some(kind) => vec![kind],
                None => vec![LoginKind::Password, LoginKind::Otp],
            };
            logins(&url, &data_dir, sink_port, concurrency, Duration::from_secs(seconds), &kinds).await
        }
    }
}

async fn propagation(redis: &str, a: &str, b: &str, count: usize) {
    let tokens = seed(open(redis).await, count).await;
    let http = reqwest::Client::new();
    let mut delays = Vec::with_capacity(count);
    for token in &tokens {
        let me = |base: &str| http.get(format!("{base}/user/me")).bearer_auth(token).send();
        assert_eq!(me(b).await.unwrap().status(), 200, "node B serves (and caches) the session");
        let r = http.post(format!("{a}/user/logout")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let started = Instant::now();
        loop {
            if me(b).await.unwrap().status() == 401 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "node B never refused the token");
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    println!(
        "logout propagation A -> B over {count} sessions: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );
}

async fn users(database: &str, count: usize) {
    let users = tessera_server::users::Users::connect(database).await.expect("the user database opens and migrates");
    let mut tx = users.pool().begin().await.unwrap();
    for id in 1..=count as i64 {
        sqlx::query("INSERT OR IGNORE INTO user_info (id, name, gender, age, telphone) VALUES (?, '张三', 1, 30, ?)")
            .bind(id)
            .bind(format!("+86138{id:08}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    eprintln!("{count} users in {database}");
}

async fn logins(
    url: &str,
    data_dir: &std::path::Path,
    sink_port: u16,
    concurrency: usize,
    duration: Duration,
    kinds: &[LoginKind],
) {
    // Users straight into the user table, all with one Argon2id hash (each
    // login still verifies it in full).
    let users = 20_000;
    let pool = tessera::store::sqlite::connect(&data_dir.join("tessera.db")).await.unwrap();
    let hash = tessera_server::credentials::hash(tessera_server::domain::Password::parse("bench password").unwrap())
        .await
        .unwrap();
    for i in 0..users {
        let phone = format!("+86139{i:08}");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO user_info (name, gender, age, telphone) VALUES ('b', 1, 30, ?)
             ON CONFLICT (telphone) DO UPDATE SET name = 'b' RETURNING id",
        )
        .bind(&phone)
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT OR IGNORE INTO user_password (encrpt_password, user_id) VALUES (?, ?)")
            .bind(&hash)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    // The SMS sink the node posts codes to.
    let codes: Arc<Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let sink = {
        let codes = codes.clone();
        axum::Router::new().route(
            "/sms",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let codes = codes.clone();
                async move {
                    let phone = body["telephone"].as_str().unwrap_or_default().to_owned();
                    codes.lock().unwrap().insert(phone, body["code"].as_str().unwrap_or_default().to_owned());
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sink_port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, sink).await.unwrap() });

    let http = reqwest::Client::new();
    for &kind in kinds {
        let otp = kind == LoginKind::Otp;
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + duration;
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, next, done, codes, url) =
                    (http.clone(), next.clone(), done.clone(), codes.clone(), url.to_owned());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed) % users;
                        let phone = format!("+86139{i:08}");
                        let body = if otp {
                            let r =
                                http.post(format!("{url}/user/getotp")).json(&json!({"telephone": phone})).send().await;
                            if r.map(|r| r.status() != 200).unwrap_or(true) {
                                continue;
                            }
                            let code = codes.lock().unwrap().get(&phone).cloned().unwrap_or_default();
                            json!({"telephone": phone, "otpCode": code})
                        } else {
                            json!({"telephone": phone, "password": "bench password"})
                        };
                        let r = http
                            .post(format!("{url}/user/login"))
                            .header("x-auth-mode", "header")
                            .json(&body)
                            .send()
                            .await;
                        if r.map(|r| r.status() == 200).unwrap_or(false) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let n = done.load(Ordering::Relaxed);
        let kind = if otp { "OTP (getotp + login)" } else { "password" };
        println!(
            "{kind} logins: {:.0}/s ({n} in {duration:?}, concurrency {concurrency})",
            n as f64 / duration.as_secs_f64()
        );
    }
}
