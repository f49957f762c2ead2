//! Decides the client's address: the socket peer, or, when the peer is a
//! trusted reverse proxy, the nearest untrusted hop in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tessera::ClientIp;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<Vec<IpAddr>>);

/// Middleware that inserts [`ClientIp`] for the session layer and handlers.
pub async fn resolve(State(trusted): State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(peer) = peer {
        let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let ip = client_ip(peer, forwarded, &trusted.0);
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
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

    #[test]
    fn untrusted_peers_are_taken_at_their_word_only() {
        assert_eq!(client_ip(ip("10.0.0.9"), ["1.2.3.4"].into_iter(), &[]), ip("10.0.0.9"));
    }

    #[test]
    fn trusted_proxies_yield_the_nearest_untrusted_hop() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = ["6.6.6.6, 1.2.3.4", "10.0.0.2"];
        assert_eq!(client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.1"), ["junk"].into_iter(), &trusted), ip("10.0.0.1"));
    }
}
