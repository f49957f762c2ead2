//! The in-process peer: tower-sessions with its `MemoryStore`, as its README
//! shows. `POST /login` creates a session holding the next user's profile;
//! `GET /user/me` reads it. Env: BIND.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tessera_bench_peers::{not_logged_in, success, Profile};
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};

async fn login(State(next_id): State<Arc<AtomicI64>>, session: Session) -> Json<tessera_bench_peers::Envelope<()>> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    session.insert("user", Profile::of(id)).await.unwrap();
    Json(success(()))
}

async fn me(session: Session) -> Response {
    match session.get::<Profile>("user").await {
        Ok(Some(user)) => Json(success(user)).into_response(),
        _ => not_logged_in(),
    }
}

#[tokio::main]
async fn main() {
    let layer = SessionManagerLayer::new(MemoryStore::default())
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(tower_sessions::cookie::time::Duration::minutes(30)));
    let app = Router::new()
        .route("/login", post(login))
        .route("/user/me", get(me))
        .layer(layer)
        .with_state(Arc::new(AtomicI64::new(1)));
    let listener = tokio::net::TcpListener::bind(tessera_bench_peers::bind()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
