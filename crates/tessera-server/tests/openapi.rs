//! The OpenAPI document at `/openapi.json` kept honest by schemathesis
//! (PyPI; `scripts/test` installs it into the test venv): every operation
//! exercised against a live server with every optional route on, a bounded
//! number of examples each; no 5xx, and every answer conforms to the
//! document (status, content type, body schema, headers).
//!
//! `positive_data_acceptance` is left out on purpose: the document says a
//! phone is a string, but not which strings are phones, so a schema-valid
//! `telephone` may well be refused with 400 / 10001, as it should be.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{introspect::python_with_authlib, TestServer, PHONE};
use tessera_server::configuration::{IntrospectionClient, TokenConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_api_as_documented() {
    let app = TestServer::spawn_with(|s| {
        s.tokens = Some(TokenConfig::default());
        s.admin_token = Some("an-operator-token-of-at-least-32-characters".into());
        s.introspection_clients = vec![IntrospectionClient::parse("billing:a-secret-of-16-chars+").unwrap()];
    })
    .await;
    let document: Value = app.get("/openapi.json").send().await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;

    let python = python_with_authlib();
    // The document is valid OpenAPI 3.1 (openapi-spec-validator, PyPI).
    let check = "import json, sys\nfrom openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
                 validate(json.load(sys.stdin), cls=OpenAPIV31SpecValidator)";
    let mut validator = tokio::process::Command::new(&python)
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the test venv's python runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = validator.stdin.take().unwrap();
        stdin.write_all(document.to_string().as_bytes()).await.unwrap();
    }
    let validated = tokio::time::timeout(Duration::from_secs(60), validator.wait_with_output()).await.unwrap().unwrap();
    assert!(validated.status.success(), "not valid OpenAPI 3.1: {}", String::from_utf8_lossy(&validated.stderr));

    let st = std::path::Path::new(&python).with_file_name("st");
    let run = tokio::process::Command::new(&st)
        .args(["run", &app.url("/openapi.json")])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--mode", "positive", "--max-examples", "10", "--workers", "1"])
        .args(["--request-timeout", "5", "--generation-deterministic"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("schemathesis finishes within its bound")
        .unwrap_or_else(|e| panic!("{} cannot run ({e}); scripts/test installs schemathesis", st.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found the API unlike its document:\n{report}");
    // Every selected operation was tested (none skipped for want of data).
    let number = |label: &str| {
        let rest = &report[report.find(label).unwrap_or_else(|| panic!("no {label} in:\n{report}")) + label.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<usize>().unwrap()
    };
    let (selected, tested) = (number("Selected:"), number("Tested:"));
    assert!(selected >= 25 && tested == selected, "{tested} of {selected} operations tested:\n{report}");
}
