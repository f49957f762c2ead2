//! The peer: tower-sessions with its Redis store (fred), as its README
//! shows. `POST /login` puts a profile in the session; `GET /user/me`
//! reads it. Env: BIND, REDIS_URL.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::{fred::prelude::*, RedisStore};

async fn login(session: Session) -> Json<Value> {
    let profile = json!({"id": 1, "name": "张三", "gender": 1, "age": 30, "telephone": "+8613800000000"});
    session.insert("user", profile).await.unwrap();
    Json(json!({"status": "success", "data": null}))
}

async fn me(session: Session) -> Response {
    let user: Option<Value> = session.get("user").await.unwrap();
    match user {
        Some(u) => Json(json!({"status": "success", "data": u})).into_response(),
        // 401, not 200: wrk counts a missing session as non-2xx.
        None => (StatusCode::UNAUTHORIZED, Json(json!({"status": "fail", "data": {"errCode": 20003}}))).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let config = Config::from_url(&std::env::var("REDIS_URL").unwrap()).unwrap();
    let pool = Pool::new(config, None, None, None, 6).unwrap();
    let _ = pool.connect();
    pool.wait_for_connect().await.unwrap();
    let layer = SessionManagerLayer::new(RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(tower_sessions::cookie::time::Duration::minutes(30)));
    let app = Router::new().route("/login", post(login)).route("/user/me", get(me)).layer(layer);
    let listener = tokio::net::TcpListener::bind(std::env::var("BIND").unwrap()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
