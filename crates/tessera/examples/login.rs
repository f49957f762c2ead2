//! Login, who-am-I and logout with the `AuthUser` filter, in the header
//! carrier (mobile and API clients), refusals in the application's own shape.
//!
//! `cargo run -p tessera --example login`, then:
//! ```text
//! T=$(curl -s -XPOST 127.0.0.1:3000/login -d '{"user":"ada"}' -H 'content-type: application/json' | jq -r .token)
//! curl -s 127.0.0.1:3000/me -H "Authorization: Bearer $T"      # {"user":"ada"}
//! curl -s -XPOST 127.0.0.1:3000/logout -H "Authorization: Bearer $T"
//! curl -s 127.0.0.1:3000/me -H "Authorization: Bearer $T"      # 401 {"error":"not-logged-in"}
//! ```

use std::net::SocketAddr;

use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera::{AuthUser, CarrierMode, FailureKind, MemoryStore, Session, SessionError, SessionLayer, UserId};

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Json(body): Json<Login>) -> Result<Json<Value>, SessionError> {
    // A real service checks a password or a one-time code first.
    let user = UserId::parse(&body.user).map_err(|_| SessionError::NotLoggedIn)?;
    let grant = session.login(user).await?; // a new token; any earlier one is dead
    Ok(Json(json!({ "token": grant.token() })))
}

async fn me(user: AuthUser) -> Json<Value> {
    Json(json!({ "user": user.user_id.as_str() }))
}

async fn logout(session: Session) -> Result<Json<Value>, SessionError> {
    Ok(Json(json!({ "ended": session.logout().await? })))
}

/// This application's error shape; the library imposes none.
fn error_shape(kind: FailureKind) -> axum::response::Response {
    (kind.status(), Json(json!({ "error": kind.slug() }))).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = SessionLayer::builder(MemoryStore::new())
        .carrier(CarrierMode::Header)
        .render_failures_with(error_shape)
        .build();
    let app =
        Router::new().route("/login", post(login)).route("/me", get(me)).route("/logout", post(logout)).layer(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("login example on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
