//! The same ceiling as `bare_axum` with mimalloc, the allocator the
//! `tessera` binary uses: the stack's own cost, allocator aside. Env: BIND.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tessera_bench_peers::serve_bare_axum().await;
}
