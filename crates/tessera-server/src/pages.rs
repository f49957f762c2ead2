//! Tessera's own pages, built into the binary: a home page at `/` for
//! browsers, and under `/ui/` the register, login and account pages, their
//! one script and one stylesheet (files under `pages/`, no build step). They
//! are served on the API's own origin, so they use the cookie carrier
//! without any `--allowed-origin`. `/README.md` is the documentation the
//! about object's `docs` link names.
//!
//! Caching: the files change only with the binary, and none holds personal
//! data (the pages fetch that with the script), so they are not `no-store`:
//! `Cache-Control: no-cache` with a strong `ETag` (a hash of the file), so a
//! browser revalidates on every load and gets a 304 without the body; a new
//! binary's files are never mixed with an old cached script.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::envelope::Failure;
use crate::error::codes;

/// One embedded file.
struct Asset {
    /// Its name under `/ui/`; the home page (at `/`) and the README (at
    /// `/README.md`) are not under `/ui/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";

/// Every embedded file; the index is the key of [`ETAGS`].
static ASSETS: [Asset; 7] = [
    Asset { name: "", content_type: HTML, body: include_bytes!("../pages/index.html") },
    Asset { name: "register", content_type: HTML, body: include_bytes!("../pages/register.html") },
    Asset { name: "login", content_type: HTML, body: include_bytes!("../pages/login.html") },
    Asset { name: "account", content_type: HTML, body: include_bytes!("../pages/account.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../pages/app.js") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../pages/style.css") },
    Asset {
        name: "README.md",
        content_type: "text/markdown; charset=utf-8",
        body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")),
    },
];
const HOME: usize = 0;
const README: usize = 6;

/// Strong validators: a hash of each file, made once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::try_from(format!("\"{hex}\"")).expect("hex is a valid header value")
        })
        .collect()
});

/// The pages allow only their own script and stylesheet, talk only to
/// their own origin, and may not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether the client asked for HTML (a browser navigating): API clients
/// send `application/json`, `*/*` or nothing.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(b"text/html".len()).any(|w| w.eq_ignore_ascii_case(b"text/html")))
}

/// The home page (for `GET /` when the browser asks for HTML).
pub fn home(headers: &HeaderMap) -> Response {
    let mut response = serve(HOME, headers);
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// `GET /ui/{name}`: a page, the script or the stylesheet.
pub async fn ui(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| !a.name.is_empty() && a.name == name && a.name != "README.md") {
        Some(index) => serve(index, &headers),
        None => Failure::new(codes::NOT_FOUND).into_response(),
    }
}

/// `GET /README.md`: the documentation, as Markdown text.
pub async fn readme(headers: HeaderMap) -> Response {
    serve(README, &headers)
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag)));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.content_type == HTML {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        assert!(wants_html(&accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(wants_html(&accept("Text/HTML")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_known_etag_answers_304_and_unknown_files_404() {
        let r = ui(Path("app.js".into()), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
        let etag = r.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(ui(Path("app.js".into()), again).await.status(), StatusCode::NOT_MODIFIED);
        for missing in ["", "README.md", "nope.html", "../Cargo.toml"] {
            assert_eq!(ui(Path(missing.into()), HeaderMap::new()).await.status(), StatusCode::NOT_FOUND);
        }
    }
}
