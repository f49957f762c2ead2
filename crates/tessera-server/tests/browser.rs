//! Real browsers: headless Chromium, driven over WebDriver by
//! tests/scripts/browser.py (Selenium), against the real `tessera` binary.
//! scripts/test installs Debian's `chromium`, `chromium-driver` and
//! `libjs-jquery`, and Selenium into the same virtual environment as
//! authlib. Screenshots of each page, at desktop and mobile width, are left
//! under `target/screenshots/` as artefacts.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::introspect::python_with_authlib;
use support::nginx::Nginx;
use support::node::Node;
use support::Sink;
use tessera_testkit::RedisServer;

/// Where the screenshots go (not committed).
fn screenshots() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/screenshots"))
}

/// The course's jQuery pages (tests/fixtures/course) with jQuery from
/// Debian's libjs-jquery (no CDN), in a directory of their own.
fn course_pages() -> tempfile::TempDir {
    let jquery = Path::new("/usr/share/javascript/jquery/jquery.min.js");
    assert!(jquery.exists(), "{} is missing: scripts/test installs libjs-jquery", jquery.display());
    let pages = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/course");
    for page in std::fs::read_dir(fixtures).unwrap() {
        let page = page.unwrap();
        std::fs::copy(page.path(), pages.path().join(page.file_name())).unwrap();
    }
    std::fs::create_dir(pages.path().join("static")).unwrap();
    std::fs::copy(jquery, pages.path().join("static/jquery.min.js")).unwrap();

    pages
}

/// Runs `browser.py scenario` against `node`; panics with its output when
/// it fails. The whole run is bounded.
async fn drive(scenario: &str, node: &Node, sink: &str, data: &Path) {
    drive_at(scenario, &node.base, sink, data, &[]).await
}

/// Runs `browser.py scenario` with the pages at `base` (the node, or a
/// proxy in front of it) and `env` set.
async fn drive_at(scenario: &str, base: &str, sink: &str, data: &Path, env: &[(&str, String)]) {
    for needed in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(needed).exists(), "{needed} is missing: scripts/test installs chromium and chromium-driver");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/browser.py");
    let python = python_with_authlib();
    let db = data.join("tessera.db");
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .args([scenario, base, sink])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg(&db)
        .arg(screenshots())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("browser.py {scenario} took longer than 4 minutes"))
        .unwrap();
    assert!(
        out.status.success(),
        "browser.py {scenario} ({python}; scripts/test installs selenium into target/test-python) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tessera's own pages: register with a code from the webhook sink (a wrong
/// code first), log out, log in by password and by code (a throttled resend
/// counts down), two devices in "my account", ending the other one, logging
/// out everywhere, a wrong password; English for an English browser.
#[tokio::test(flavor = "multi_thread")]
async fn tesseras_own_pages_in_chromium() {
    let (_sink, sink_addr) = Sink::start().await;
    let sink = format!("http://{sink_addr}/sms");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &sink, &[]).await;
    drive("journey", &node, &sink, data.path()).await;
    node.stop().await;
}

/// Token mode: with a 2-second access token the pages refresh once on the
/// 401 and carry on (the profile reloads, logging out works).
#[tokio::test(flavor = "multi_thread")]
async fn tesseras_pages_refresh_in_token_mode() {
    let (_sink, sink_addr) = Sink::start().await;
    let sink = format!("http://{sink_addr}/sms");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &sink, &["--tokens", "signed", "--access-ttl", "6"]).await;
    drive("tokens", &node, &sink, data.path()).await;
    node.stop().await;
}

/// The course's jQuery pages (tests/fixtures/course), as they are, served
/// by `--static-dir` on the API's origin with `--fail-as-200`: getotp,
/// register, login; logging in again and asking for another code while
/// holding the session cookie; a failure's alert is exactly `errMsg`.
#[tokio::test(flavor = "multi_thread")]
async fn course_pages_with_jquery_in_chromium() {
    let pages = course_pages();
    let (_sink, sink_addr) = Sink::start().await;
    let sink = format!("http://{sink_addr}/sms");
    let data = tempfile::tempdir().unwrap();
    let static_dir = pages.path().to_str().unwrap();
    let node = Node::start(data.path(), &sink, &["--static-dir", static_dir, "--fail-as-200"]).await;
    drive("course", &node, &sink, data.path()).await;
    node.stop().await;
}

/// The same course pages the usual way: nginx serves them and passes
/// `/user/` to Tessera (keeping the browser's Host), so pages and API share
/// one origin without any `--allowed-origin`.
#[tokio::test(flavor = "multi_thread")]
async fn course_pages_behind_nginx_in_chromium() {
    let pages = course_pages();
    let (_sink, sink_addr) = Sink::start().await;
    let sink = format!("http://{sink_addr}/sms");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &sink, &["--fail-as-200"]).await;
    let upstream = node.base.trim_start_matches("http://").to_owned();
    let root = pages.path().display().to_string();
    let nginx = Nginx::start(|port| {
        format!(
            "server {{\n  listen 127.0.0.1:{port};\n  root {root};\n\
             location /user/ {{ proxy_set_header Host $http_host; proxy_pass http://{upstream}; }}\n}}"
        )
    })
    .await;
    drive_at("course", &nginx.url(), &sink, data.path(), &[]).await;
    node.stop().await;
}

/// On `--redis`: Redis goes away under a logged-in page, which then says to
/// try again rather than logging the user out.
#[tokio::test(flavor = "multi_thread")]
async fn tesseras_pages_say_try_again_when_redis_is_down() {
    let redis = RedisServer::start();
    let (_sink, sink_addr) = Sink::start().await;
    let sink = format!("http://{sink_addr}/sms");
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &sink, &["--redis", &redis.url()]).await;
    let port = redis.port().to_string();
    drive_at("outage", &node.base, &sink, data.path(), &[("TESSERA_TEST_REDIS_PORT", port)]).await;
    node.stop().await;
}
