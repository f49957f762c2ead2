//! Logging. Requests are logged by method, path, status and latency; never
//! with headers, bodies or query strings, where credentials could be.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (stderr, `filter` in tracing's syntax).
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
