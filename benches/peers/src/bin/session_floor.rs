//! The floor of a server-side session read, as lean as one can be written
//! on axum: the Bearer token base64url-decoded, hashed with SHA-256 (a
//! store keeps only hashes), looked up in one map behind a read lock, its
//! idle and absolute deadlines checked against the clock, and the user's
//! answer, serialized once at start, looked up in a second map by user id
//! and sent. No carrier choice, no CSRF, no touch, no revocation, no
//! logging or metrics: what any session layer does at the least.
//! Env: BIND, COUNT (sessions, users 1..=COUNT, default 10 000).
//! `MINT=path` writes the COUNT tokens, one a line, and exits.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use tessera_bench_peers::{not_logged_in, success, Profile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Record {
    user: i64,
    idle_deadline: u64,
    absolute_deadline: u64,
}

struct Sessions {
    records: RwLock<HashMap<[u8; 32], Record>>,
    answers: RwLock<HashMap<i64, Bytes>>,
}

/// Token `i`: 32 bytes, the same on every run (a benchmark's, not secret).
fn token(i: usize) -> [u8; 32] {
    Sha256::digest(format!("tessera-bench-peers floor {i}")).into()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn me(State(sessions): State<Arc<Sessions>>, headers: HeaderMap) -> Response {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let mut raw = [0u8; 32];
    let Some(Ok(32)) = token.map(|t| URL_SAFE_NO_PAD.decode_slice(t, &mut raw)) else {
        return not_logged_in();
    };
    let key: [u8; 32] = Sha256::digest(raw).into();
    let user = match sessions.records.read().unwrap().get(&key) {
        Some(r) if now() < r.idle_deadline.min(r.absolute_deadline) => r.user,
        _ => return not_logged_in(),
    };
    match sessions.answers.read().unwrap().get(&user) {
        Some(body) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.clone()).into_response()
        }
        None => not_logged_in(),
    }
}

#[tokio::main]
async fn main() {
    let count = tessera_bench_peers::count();
    if let Ok(path) = std::env::var("MINT") {
        let lines: Vec<String> = (0..count).map(|i| URL_SAFE_NO_PAD.encode(token(i))).collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        return;
    }
    let start = now();
    let records = (0..count)
        .map(|i| {
            let record =
                Record { user: i as i64 + 1, idle_deadline: start + 12 * 3600, absolute_deadline: start + 24 * 3600 };
            (Sha256::digest(token(i)).into(), record)
        })
        .collect();
    let answers = (1..=count as i64)
        .map(|id| (id, Bytes::from(serde_json::to_vec(&success(Profile::of(id))).unwrap())))
        .collect();
    let sessions = Arc::new(Sessions { records: RwLock::new(records), answers: RwLock::new(answers) });
    let app = Router::new().route("/user/me", get(me)).with_state(sessions);
    let listener = tokio::net::TcpListener::bind(tessera_bench_peers::bind()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
