//! Sessions shared by every node through Redis (here a Cluster; the same
//! code takes `redis://…` or `redis+sentinel://…`), with the near cache and
//! revocations that survive a Redis restart.
//!
//! `cargo run -p tessera --features redis,sqlite --example redis_cluster -- redis+cluster://127.0.0.1:7000,127.0.0.1:7001`

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tessera::revocation::Revocations;
use tessera::store::redis::{RedisConn, RedisStoreConfig, RedisTarget};
use tessera::store::{RedisRevocations, SqliteRevocations};
use tessera::{AuthUser, RedisStore, SessionLayer};

async fn me(user: AuthUser) -> Json<Value> {
    Json(json!({ "user": user.user_id.as_str() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let config = RedisStoreConfig::default(); // 250 ms deadline, near cache with a 250 ms lease
    let conn = RedisConn::connect(RedisTarget::parse(&url)?, config.timeout).await?;
    let store = RedisStore::with_connection(conn.clone(), config);
    // Revocations pushed to every node, archived where Redis cannot lose them.
    let archive = SqliteRevocations::new(tessera::store::sqlite::connect("revocations.db".as_ref()).await?).await?;
    let feed = RedisRevocations::new(conn, "tessera").with_archive(Arc::new(archive));
    let revocations = Revocations::attach(Arc::new(feed)).await?;
    let sessions = SessionLayer::builder(store).revocations(revocations).build();
    let app = Router::new().route("/me", get(me)).layer(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("node on http://{}, sessions in {url}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
