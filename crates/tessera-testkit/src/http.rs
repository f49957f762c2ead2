//! An HTTP client aimed at one test server: the `url`/`get`/`post`/`delete`
//! helpers every in-process test server of the library and the service
//! offers, and the cookie parsing their login helpers share.

use std::net::SocketAddr;

/// A `reqwest` client for one server at `base`.
///
/// Redirects are not followed, so that a test sees the answer the server
/// gave (a 303 and its `Location`) rather than where it leads.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// The client itself, for requests to other URLs or with other settings.
    pub http: reqwest::Client,
}

impl HttpClient {
    /// A client for the server listening on `addr` (plain HTTP).
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_base(format!("http://{addr}"))
    }

    /// A client for the server at `base` (`http://host:port`).
    pub fn with_base(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with default TLS settings builds");
        Self { base: base.into(), http }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path))
    }
}

/// The `name=value` pair of a `Set-Cookie` header value, as a client sends
/// it back in `Cookie` (the attributes after the first `;` dropped).
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().trim().to_owned()
}

/// The first `Set-Cookie` header of `response`, which must have one.
pub fn set_cookie(response: &reqwest::Response) -> String {
    response.headers()["set-cookie"].to_str().expect("Set-Cookie is ASCII").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_cookie_pairs() {
        let client = HttpClient::new("127.0.0.1:8080".parse().unwrap());
        assert_eq!(client.url("/user/me"), "http://127.0.0.1:8080/user/me");
        assert_eq!(cookie_pair("tessera=abc; HttpOnly; Path=/"), "tessera=abc");
        assert_eq!(cookie_pair("tessera=abc"), "tessera=abc");
    }
}
