//! Runs the Python introspection client (tests/scripts/introspect.py).

use serde_json::Value;

/// The secret test servers accept for introspection.
pub const INTROSPECTION_SECRET: &str = "introspection-secret-for-tests";

/// (HTTP status, body) of introspecting `token` at `base` with `secret`.
/// Asynchronous, so a server in the test's own runtime can answer.
pub async fn introspect(base: &str, secret: &str, token: &str) -> (u16, Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/introspect.py");
    let out = tokio::process::Command::new("python3").args([script, base, secret, token]).output().await.unwrap();
    assert!(out.status.success(), "introspect.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    (answer["status"].as_u64().unwrap() as u16, answer["body"].clone())
}
