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

/// The Python with authlib in it: `TESSERA_TEST_PYTHON` (scripts/test
/// sets it to the virtual environment it installs authlib into), else that
/// environment if an earlier scripts/test made it (so one suite runs alone
/// with plain `cargo test`), else `python3`.
pub fn python_with_authlib() -> String {
    let made = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-python/bin/python");
    std::env::var("TESSERA_TEST_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new(made).exists() {
            made.into()
        } else {
            "python3".into()
        }
    })
}

/// Runs tests/scripts/oauth_client.py (authlib, a standard OAuth client)
/// with `args`; its one line of JSON.
pub async fn authlib(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/oauth_client.py");
    let python = python_with_authlib();
    let out = tokio::process::Command::new(&python).arg(script).args(args).output().await.unwrap();
    assert!(
        out.status.success(),
        "oauth_client.py ({python}) failed; scripts/test installs authlib into target/test-python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
