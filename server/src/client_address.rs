//! Who sent a request: the address login throttling counts and the audit
//! log records. Normally the TCP peer. When the peer is one of the reverse
//! proxies the node was told to trust (`--trusted-proxy`), the client is
//! the right-most address in `X-Forwarded-For` that is not itself a trusted
//! proxy: each proxy appends the address it saw, and anything to the left
//! of the nearest untrusted hop may have been written by the client. From
//! any other peer `X-Forwarded-For` is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The client behind `peer`, by the rule above.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            // Garbage: what lies beyond it cannot be trusted.
            Err(_) => break,
        }
    }
    client
}

/// Whether the request came straight from a trusted proxy, whose
/// `X-Forwarded-Host` then names the host the browser addressed.
pub fn via_trusted_proxy(peer: Option<IpAddr>, trusted: &[IpAddr]) -> bool {
    peer.is_some_and(|p| trusted.contains(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let trusted = [ip("10.0.0.2")];
        let h = xff(&["203.0.113.7"]);
        assert_eq!(client_address(ip("198.51.100.1"), &h, &trusted), ip("198.51.100.1"), "a client's own header");
        assert_eq!(client_address(ip("10.0.0.2"), &h, &trusted), ip("203.0.113.7"));
        assert_eq!(client_address(ip("10.0.0.2"), &HeaderMap::new(), &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [ip("10.0.0.2"), ip("10.0.0.3")];
        // The client forged the first entry; the proxies appended the rest.
        let h = xff(&["1.2.3.4, 203.0.113.7", "10.0.0.3"]);
        assert_eq!(client_address(ip("10.0.0.2"), &h, &trusted), ip("203.0.113.7"));
        let h = xff(&["1.2.3.4, not-an-address, 10.0.0.3"]);
        assert_eq!(client_address(ip("10.0.0.2"), &h, &trusted), ip("10.0.0.3"));
    }
}
