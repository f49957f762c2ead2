//! The real ceiling: axum answering `GET /user/me` with a fixed body the size
//! and shape of Tessera's answer, no session, no state, no allocation per
//! request beyond what axum and hyper do anyway. Env: BIND.
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;

const BODY: &str =
    r#"{"status":"success","data":{"age":30,"gender":1,"id":1,"name":"张三","telephone":"+8613800000001"}}"#;

async fn me() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() {
    let app = Router::new().route("/user/me", get(me));
    let listener = tokio::net::TcpListener::bind(tessera_bench_peers::bind()).await.unwrap();
    println!("listening");
    axum::serve(listener, app).await.unwrap();
}
