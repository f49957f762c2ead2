//! A store of your own, checked by the library's conformance suite.
//!
//! `AuditedStore` keeps sessions in a `MemoryStore` and counts every write,
//! the shape of a store that wraps another (metrics, audit, encryption at
//! rest). `cargo test -p tessera --features conformance --example custom_store`
//! runs the same contract tests every shipped store passes;
//! `cargo run -p tessera --example custom_store` serves with it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::post;
use axum::{Json, Router};
use tessera::record::SessionChange;
use tessera::store::KeyedRecord;
use tessera::{
    Key, MemoryStore, Session, SessionError, SessionKey, SessionLayer, SessionRecord, SessionStore, StoreError,
    Timestamp, UserId,
};

/// Any store, with its writes counted.
#[derive(Debug, Default)]
pub struct AuditedStore {
    inner: MemoryStore,
    writes: AtomicU64,
}

impl AuditedStore {
    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl SessionStore for AuditedStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.wrote();
        self.inner.create(key, record).await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.inner.load(key).await
    }

    async fn save(&self, key: &SessionKey, change: &SessionChange) -> Result<u64, StoreError> {
        self.wrote();
        self.inner.save(key, change).await
    }

    async fn touch(&self, key: &SessionKey, last_seen: Timestamp, idle_deadline: Timestamp) -> Result<(), StoreError> {
        self.wrote();
        self.inner.touch(key, last_seen, idle_deadline).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.wrote();
        self.inner.delete(key).await
    }

    async fn list_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<KeyedRecord>, StoreError> {
        self.inner.list_user(user, now).await
    }

    async fn delete_user(&self, user: &UserId, keep: Option<&SessionKey>) -> Result<u64, StoreError> {
        self.wrote();
        self.inner.delete_user(user, keep).await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
}

const VISITS: Key<u64> = Key::new("visits");

async fn visit(session: Session) -> Result<Json<u64>, SessionError> {
    let visits = session.get(VISITS).await?.unwrap_or(0) + 1;
    session.insert(VISITS, &visits).await?;
    Ok(Json(visits))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new().route("/visit", post(visit)).layer(SessionLayer::builder(AuditedStore::default()).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("custom store on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

// The contract every store keeps, run against this one.
#[cfg(test)]
mod conformance {
    use super::*;

    tessera::store_conformance_tests!(async {
        Arc::new(AuditedStore::default()) as tessera::store::conformance::DynStore
    });
}
