//! What the newer peers share: the answer of Tessera's `GET /user/me` (the
//! same profile fields in the same order inside the same `{"status","data"}`
//! envelope, so every row sends about the same bytes) and their env.

use serde::{Deserialize, Serialize};

/// The profile of user `id`, as `bench_tool seed` gives Tessera's users.
#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    pub age: i64,
    pub gender: i64,
    pub id: i64,
    pub name: String,
    pub telephone: String,
}

impl Profile {
    pub fn of(id: i64) -> Self {
        Self { age: 30, gender: 1, id, name: "张三".into(), telephone: format!("+86138{id:08}") }
    }
}

/// Tessera's answer envelope.
#[derive(Serialize)]
pub struct Envelope<T> {
    pub status: &'static str,
    pub data: T,
}

pub fn success<T>(data: T) -> Envelope<T> {
    Envelope { status: "success", data }
}

/// Tessera's "not logged in" answer (sent with 401, so wrk counts it as non-2xx).
pub const NOT_LOGGED_IN: &str = r#"{"status":"fail","data":{"errCode":20003}}"#;

/// [`NOT_LOGGED_IN`] for the axum peers.
pub fn not_logged_in() -> axum::response::Response {
    use axum::http::{header::CONTENT_TYPE, StatusCode};
    use axum::response::IntoResponse;
    (StatusCode::UNAUTHORIZED, [(CONTENT_TYPE, "application/json")], NOT_LOGGED_IN).into_response()
}

pub fn bind() -> String {
    std::env::var("BIND").expect("BIND=host:port")
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL=redis://…")
}

pub fn count() -> usize {
    std::env::var("COUNT").map(|c| c.parse().expect("COUNT is a number")).unwrap_or(10_000)
}

/// The bare axum ceiling: `GET /user/me` answered with a fixed body the
/// size and shape of Tessera's answer, nothing else (see `bin/bare_axum*`).
pub async fn serve_bare_axum() {
    use axum::http::header::CONTENT_TYPE;
    const BODY: &str =
        r#"{"status":"success","data":{"age":30,"gender":1,"id":1,"name":"张三","telephone":"+8613800000001"}}"#;
    async fn me() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
        ([(CONTENT_TYPE, "application/json")], BODY)
    }
    let app = axum::Router::new().route("/user/me", axum::routing::get(me));
    let listener = tokio::net::TcpListener::bind(bind()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
