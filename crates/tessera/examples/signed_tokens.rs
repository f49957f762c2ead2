//! Signed access tokens: one service logs users in and publishes its keys;
//! a second service (here in the same process, on another port) verifies
//! the tokens by CPU alone with the JWKS, never asking the first.
//!
//! `cargo run -p tessera --example signed_tokens`, then:
//! ```text
//! T=$(curl -s -XPOST 127.0.0.1:3000/login | jq -r .access)
//! curl -s 127.0.0.1:3001/orders -H "Authorization: Bearer $T"    # {"orders for":"7"}
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tessera::revocation::MemoryRevocations;
use tessera::signed::{KeySet, SigningAlgorithm, Verifier};
use tessera::{
    Clock, MemoryStore, Session, SessionError, SessionLayer, SignedTokens, SystemClock, TokenSettings, UserId,
};

async fn login(session: Session) -> Result<Json<Value>, SessionError> {
    // A real service checks credentials first.
    let grant = session.login(UserId::from(7)).await?;
    Ok(Json(json!({ "access": grant.token(), "refresh": grant.refresh_token() })))
}

/// The second service's only dependency on the first: its public keys.
async fn orders(verifier: axum::extract::State<Arc<Verifier>>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let claims = verifier.verify(bearer.ok_or(StatusCode::UNAUTHORIZED)?).map_err(|_| StatusCode::UNAUTHORIZED)?;
    Ok(Json(json!({ "orders for": claims.sub.as_str() })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keys are made here for the example; the server keeps them in a file.
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, SystemClock.now());
    let settings = TokenSettings::default();
    let (issuer, audience) = (settings.issuer.clone(), settings.audience.clone());
    // 256 secret bits, the same on every node of the issuing service.
    let derive_key = [7u8; 32];
    let tokens = SignedTokens::new(settings, &keys, Arc::new(MemoryRevocations::new()), derive_key).await?;
    let jwks = tokens.jwks().to_string();

    let accounts = Router::new()
        .route("/login", post(login))
        .route("/.well-known/jwks.json", get(move || async move { jwks.clone() }))
        .layer(SessionLayer::builder(MemoryStore::new()).signed_tokens(tokens.clone()).build());
    let accounts_listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tokio::spawn(async move {
        let service = accounts.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(accounts_listener, service).await.expect("the accounts service runs")
    });

    // The orders service: it would fetch the JWKS over HTTP (and again
    // when it meets an unknown `kid`); here it takes the same document.
    let verifier = Arc::new(Verifier::from_jwks(&tokens.jwks().to_string(), &issuer, &audience)?);
    let orders_app = Router::new().route("/orders", get(orders)).with_state(verifier);
    let orders_listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("accounts on http://127.0.0.1:3000, orders on http://127.0.0.1:3001");
    axum::serve(orders_listener, orders_app).await?;
    Ok(())
}
