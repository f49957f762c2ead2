//! The floor of any server-side session without a cache: one Redis GET per
//! request with redis-rs, keyed by a header. Seeds COUNT keys at start.
//! Env: BIND, REDIS_URL, COUNT.
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use redis::aio::ConnectionManager;

async fn me(State(mut redis): State<ConnectionManager>, headers: HeaderMap) -> Result<String, StatusCode> {
    let key = headers.get("x-key").and_then(|v| v.to_str().ok()).ok_or(StatusCode::UNAUTHORIZED)?;
    let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut redis).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    value.map(|v| format!("{{\"status\":\"success\",\"data\":{v}}}")).ok_or(StatusCode::UNAUTHORIZED)
}

#[tokio::main]
async fn main() {
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let mut redis = client.get_connection_manager().await.unwrap();
    let count: usize = std::env::var("COUNT").unwrap_or_else(|_| "10000".into()).parse().unwrap();
    let profile = r#"{"id":1,"name":"张三","gender":1,"age":30,"telephone":"+8613800000000"}"#;
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("raw:{i}")).arg(profile).arg("EX").arg(3600).ignore();
        }
        pipe.query_async::<()>(&mut redis).await.unwrap();
    }
    let app = Router::new().route("/user/me", get(me)).with_state(redis);
    let listener = tokio::net::TcpListener::bind(std::env::var("BIND").unwrap()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
