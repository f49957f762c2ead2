//! The real ceiling: axum answering `GET /user/me` with a fixed body the size
//! and shape of Tessera's answer, no session, no state, no allocation per
//! request beyond what axum and hyper do anyway; the system allocator, as
//! axum's own examples. Env: BIND.

#[tokio::main]
async fn main() {
    tessera_bench_peers::serve_bare_axum().await;
}
