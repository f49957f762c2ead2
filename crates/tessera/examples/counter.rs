//! The smallest use: a per-visitor counter in an anonymous session.
//!
//! `cargo run -p tessera --example counter`, then
//! `curl -c jar -b jar -X POST http://127.0.0.1:3000/visit` a few times.
//! (The cookie is `__Host-tessera; Secure`: browsers keep it over HTTPS only;
//! curl keeps it anyway. See `CookieSettings::insecure_dev` for plain HTTP.)

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use tessera::{CarrierMode, Key, MemoryStore, Session, SessionError, SessionLayer};

/// Typed attribute: the name and the type travel together.
const VISITS: Key<u64> = Key::new("visits");

async fn visit(session: Session) -> Result<Json<u64>, SessionError> {
    let visits = session.get(VISITS).await?.unwrap_or(0) + 1;
    // Saved once, after the handler; a visitor without a session gets one.
    session.insert(VISITS, &visits).await?;
    Ok(Json(visits))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = SessionLayer::builder(MemoryStore::new()).carrier(CarrierMode::Cookie).build();
    let app = Router::new().route("/visit", post(visit)).layer(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("counter on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
