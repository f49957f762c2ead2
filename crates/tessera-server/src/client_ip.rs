//! Decides the client's address: the socket peer, or, when the peer is a
//! trusted reverse proxy, the nearest untrusted hop in `X-Forwarded-For`.
//! Behind a trusted proxy it also tells the session layer which origin the
//! browser addressed (`Forwarded`, or `X-Forwarded-Proto`/`X-Forwarded-Host`),
//! so the site's own pages are same-origin for the CSRF rules.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Request};
use tessera::{ClientIp, TargetOrigin};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies whose forwarding headers are believed, and whether the
/// site is served over TLS (the scheme when a proxy names a host only).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    /// The proxies' addresses.
    pub proxies: Arc<Vec<IpAddr>>,
    /// Session cookies are `Secure`: the browser used `https`.
    pub secure: bool,
}

/// Behind a trusted proxy, inserts [`ClientIp`] and the [`TargetOrigin`] of
/// a state-changing request, for the session layer and handlers
/// ([`ClientAddress`]); from anyone else, nothing. Called by `crate::outer`
/// for every request, before the session layer sees it.
pub fn resolve<B>(trusted: &TrustedProxies, req: &mut Request<B>) {
    // No proxy trusted (the default): nothing to look up.
    if trusted.proxies.is_empty() {
        return;
    }
    let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else { return };
    // Forwarding headers are only read from a trusted proxy: anyone else
    // (every request, when no proxy is trusted) is the client, the socket
    // peer that `ClientIp::of` falls back to, so nothing is inserted (an
    // extension fewer on almost every request).
    if !trusted.proxies.contains(&peer) {
        return;
    }
    let forwarded = req.headers().get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok());
    let ip = client_ip(peer, forwarded, &trusted.proxies);
    req.extensions_mut().insert(ClientIp(ip));
    // Only state changes are judged by origin: reads cost nothing here.
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        if let Some(target) = forwarded_origin(req.headers(), trusted.secure) {
            req.extensions_mut().insert(target);
        }
    }
}

/// The client's address, for a handler: what [`resolve`] found
/// behind a trusted proxy, else the socket peer ([`ClientIp::of`], as the
/// session layer records it); `None` only for a request that came through
/// neither (a test calling the router directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    /// The address as a throttle key: `unknown` when there is none.
    pub fn key(&self) -> String {
        self.0.map_or_else(|| "unknown".into(), |ip| ip.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(ClientIp::of(&parts.extensions)))
    }
}

/// The origin the browser addressed, as the nearest proxy to it reported:
/// the first element of `Forwarded` (RFC 7239), else the first values of
/// `X-Forwarded-Proto` and `X-Forwarded-Host`. `None` when no host is
/// named (the `Host` header then stands, as without a proxy).
fn forwarded_origin(headers: &HeaderMap, secure: bool) -> Option<TargetOrigin> {
    let first = |name: &str| {
        let value = headers.get(name)?.to_str().ok()?;
        Some(value.split(',').next()?.trim().to_owned())
    };
    let (mut proto, mut host) = (None, None);
    if let Some(element) = first("forwarded") {
        for pair in element.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=') {
                let value = value.trim().trim_matches('"').to_owned();
                match key.trim().to_ascii_lowercase().as_str() {
                    "proto" => proto = Some(value),
                    "host" => host = Some(value),
                    _ => {}
                }
            }
        }
    }
    let host = host.or_else(|| first("x-forwarded-host"))?;
    let proto = proto.or_else(|| first("x-forwarded-proto")).unwrap_or_else(|| scheme(secure).to_owned());
    TargetOrigin::new(&proto, &host)
}

fn scheme(secure: bool) -> &'static str {
    if secure {
        "https"
    } else {
        "http"
    }
}

fn client_ip<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded.flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
    // Walk back from the proxy: the first address we do not trust is the
    // one a trusted proxy saw connect; anything left of it is hearsay.
    hops.into_iter().rev().find(|ip| !trusted.contains(ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn a_proxy_names_the_origin_the_browser_addressed() {
        let origin = |pairs, secure| forwarded_origin(&headers(pairs), secure).map(|o| o.as_str().to_owned());
        let rfc = [("forwarded", "for=1.2.3.4;proto=https;host=\"Site.Example:443\", for=10.0.0.1")];
        assert_eq!(origin(&rfc, false).as_deref(), Some("https://site.example"));
        let x = [("x-forwarded-proto", "http"), ("x-forwarded-host", "site.example:8080, inner")];
        assert_eq!(origin(&x, true).as_deref(), Some("http://site.example:8080"));
        let host_only = [("x-forwarded-host", "site.example")];
        assert_eq!(origin(&host_only, true).as_deref(), Some("https://site.example"));
        assert_eq!(origin(&[("x-forwarded-proto", "https")], true), None, "no host named: Host stands");
        assert_eq!(origin(&[("x-forwarded-host", "a/b")], true), None);
    }

    #[test]
    fn untrusted_peers_are_taken_at_their_word_only() {
        assert_eq!(client_ip(ip("10.0.0.9"), ["1.2.3.4"].into_iter(), &[]), ip("10.0.0.9"));
    }

    /// What a handler's [`ClientAddress`] reads once the layer has run on a
    /// request from `peer` carrying `X-Forwarded-For: 1.2.3.4`.
    async fn address_seen(peer: &str, trusted: &[&str]) -> ClientAddress {
        let trusted = TrustedProxies { proxies: Arc::new(trusted.iter().map(|t| ip(t)).collect()), secure: false };
        let mut req = Request::new(());
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip(peer), 40000)));
        req.headers_mut().insert(&X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        resolve(&trusted, &mut req);
        let (mut parts, ()) = req.into_parts();
        let Ok(address) = ClientAddress::from_request_parts(&mut parts, &()).await;
        address
    }

    #[tokio::test]
    async fn handlers_see_the_peer_or_what_a_trusted_proxy_forwarded() {
        assert_eq!(address_seen("10.0.0.9", &[]).await, ClientAddress(Some(ip("10.0.0.9"))));
        assert_eq!(address_seen("10.0.0.9", &["10.0.0.1"]).await, ClientAddress(Some(ip("10.0.0.9"))));
        assert_eq!(address_seen("10.0.0.1", &["10.0.0.1"]).await, ClientAddress(Some(ip("1.2.3.4"))));
        assert_eq!(ClientAddress(Some(ip("10.0.0.9"))).key(), "10.0.0.9");
        assert_eq!(ClientAddress(None).key(), "unknown");
    }

    #[test]
    fn trusted_proxies_yield_the_nearest_untrusted_hop() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = ["6.6.6.6, 1.2.3.4", "10.0.0.2"];
        assert_eq!(client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.1"), ["junk"].into_iter(), &trusted), ip("10.0.0.1"));
    }
}
