//! An application that speaks its own error dialect: every refusal of the
//! layer and its extractors, and every `SessionError` a handler returns,
//! wears the application's shape, with nothing of the library's defaults.

mod support;

use std::sync::Arc;

use axum::response::IntoResponse;
use serde_json::{json, Value};
use support::TestApp;
use tessera::{AllowedOrigin, CsrfPolicy, FailureKind, MemoryStore, SessionConfig, SessionStore, SqliteStore};

/// The app's own shape: `{"error": {"kind", "retry"}}`, status kept.
fn app_error(kind: FailureKind) -> axum::response::Response {
    let body = json!({"error": {"kind": kind.slug(), "retry": kind == FailureKind::Unavailable}});
    (kind.status(), axum::Json(body)).into_response()
}

async fn assert_app_shape(r: reqwest::Response, status: u16, kind: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["kind"], kind, "{body}");
    for foreign in ["errCode", "errMsg", "status\":\"fail", "urn:tessera", "用户"] {
        assert!(!text.contains(foreign), "{foreign} in {text}");
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        cookie: tessera::CookieSettings::insecure_dev(),
        csrf: CsrfPolicy::new(vec![AllowedOrigin::parse("https://shop.example").unwrap()]),
        ..SessionConfig::default()
    }
}

#[tokio::test]
async fn refusals_wear_the_applications_shape() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let app = TestApp::spawn_with(store, config(), |b| b.render_failures_with(app_error)).await;

    // 401 from the AuthUser extractor.
    assert_app_shape(app.get("/me").send().await.unwrap(), 401, "not-logged-in").await;

    // 403 from the layer's CSRF rule.
    let (cookie, _, _) = app.login_cookie("alice").await;
    let r = app.post("/logout").header("cookie", &cookie).header("origin", "https://evil.example");
    assert_app_shape(r.send().await.unwrap(), 403, "csrf-rejected").await;

    // 409 from a handler returning SessionError (two writers, same attribute).
    let token = app.login_header("bob").await;
    let (a, b) = tokio::join!(
        app.post("/together/a/1").bearer_auth(&token).send(),
        app.post("/together/a/2").bearer_auth(&token).send()
    );
    let loser = if a.as_ref().unwrap().status() == 409 { a } else { b };
    assert_app_shape(loser.unwrap(), 409, "session-conflict").await;

    // Successes are untouched.
    assert_eq!(app.get("/me").bearer_auth(&token).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_unreachable_store_is_503_in_the_applications_shape() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let app = TestApp::spawn_with(Arc::new(sqlite.clone()), config(), |b| b.render_failures_with(app_error)).await;
    let token = app.login_header("carol").await;
    sqlite.close().await;
    let r = app.get("/me").bearer_auth(&token).send().await.unwrap();
    assert_app_shape(r, 503, "store-unavailable").await;
}
