//! The stateless peer: axum + jsonwebtoken, HS256, the Bearer token fully
//! verified on every request (signature, `exp`; no cache), its claims
//! answered as the profile. Env: BIND.
//! `MINT=path COUNT=n jsonwebtoken_hs256` instead writes n tokens (users
//! 1..=n, valid 12 h), one a line, and exits.
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tessera_bench_peers::{not_logged_in, success, Profile};

/// Shared by the mint and the server; a benchmark's key, not a secret.
const SECRET: &[u8] = b"tessera-bench-peers: HS256 key of 32+ bytes";

#[derive(Serialize, Deserialize)]
struct Claims {
    exp: u64,
    iat: u64,
    user: Profile,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

async fn me(State(verifier): State<Arc<Verifier>>, headers: HeaderMap) -> Response {
    let token = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.map(|t| jsonwebtoken::decode::<Claims>(t, &verifier.key, &verifier.validation)) {
        Some(Ok(data)) => Json(success(data.claims.user)).into_response(),
        _ => not_logged_in(),
    }
}

fn mint(path: &str, count: usize) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let key = EncodingKey::from_secret(SECRET);
    let header = Header::new(Algorithm::HS256);
    let tokens: Vec<String> = (1..=count as i64)
        .map(|id| {
            jsonwebtoken::encode(&header, &Claims { exp: now + 12 * 3600, iat: now, user: Profile::of(id) }, &key)
                .unwrap()
        })
        .collect();
    std::fs::write(path, tokens.join("\n") + "\n").unwrap();
}

#[tokio::main]
async fn main() {
    if let Ok(path) = std::env::var("MINT") {
        return mint(&path, tessera_bench_peers::count());
    }
    let verifier =
        Arc::new(Verifier { key: DecodingKey::from_secret(SECRET), validation: Validation::new(Algorithm::HS256) });
    let app = Router::new().route("/user/me", get(me)).with_state(verifier);
    let listener = tokio::net::TcpListener::bind(tessera_bench_peers::bind()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
