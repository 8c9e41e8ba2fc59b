//! The client's address behind a reverse proxy, and the Origin check.
//!
//! `X-Forwarded-For` and `Forwarded` (RFC 7239) are believed only when the TCP peer is a trusted
//! proxy, and then only as far as the chain stays within trusted proxies: the right-most address
//! that is not a trusted proxy is the client. Pure functions of headers and configuration.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

use crate::config::values::Origin;

/// Whether `address` (IPv4-mapped IPv6 counts as IPv4) is one of the trusted proxies.
pub fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&address))
}

/// Parses one `for=` value or X-Forwarded-For element: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`,
/// `"[2001:db8::1]"`, `::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = text.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// The forwarded chain from the headers, nearest proxy last. `X-Forwarded-For` wins over
/// `Forwarded` when both are present. An unparsable element ends the chain there (we cannot
/// trust anything to its left).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter(|part| !part.trim().is_empty())
        .map(parse_node)
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| parse_node(value))
            })
        })
        .collect()
}

/// The client's address as the gateway knows it: the TCP peer with its port, or the address a
/// trusted proxy reported, without a port (the proxy's own source port would be made up).
/// Displayed as `203.0.113.9:51234`, `[2001:db8::1]:51234`, or `203.0.113.9` / `2001:db8::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The address.
    pub ip: IpAddr,
    /// The TCP source port, when the address is the TCP peer's.
    pub port: Option<u16>,
}

impl ClientAddr {
    /// As a socket address, port 0 when unknown (a PROXY protocol header needs one).
    pub fn socket_addr(self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(0))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// The address logs and per-address limits use for a request from `peer`.
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let direct = ClientAddr { ip: peer.ip(), port: Some(peer.port()) };
    if !is_trusted(peer.ip(), trusted) {
        return direct;
    }
    let mut client = direct;
    for node in forwarded_chain(headers).into_iter().rev() {
        match node {
            Some(address) => {
                client = ClientAddr { ip: address, port: None };
                if !is_trusted(address, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// Whether the request went through TLS at a trusted proxy (`X-Forwarded-Proto: https` or
/// `Forwarded: proto=https`).
pub fn forwarded_https(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    if !is_trusted(peer.ip(), trusted) {
        return false;
    }
    if let Some(proto) = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()) {
        return proto.split(',').next().is_some_and(|first| first.trim().eq_ignore_ascii_case("https"));
    }
    headers.get_all(header::FORWARDED).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split([';', ',']).any(|pair| {
            pair.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("proto") && value.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
        })
    })
}

/// The Origin decision (RFC 6455 §4.2.2 /origin/, WS-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginDecision {
    /// Let the request in.
    Allowed,
    /// A browser page from an origin not in the list.
    NotListed,
    /// No Origin header, and the configuration does not accept that.
    Missing,
}

/// Checks the `Origin` header against `allowed` (exact `scheme://host[:port]`, ASCII
/// case-insensitive; `"*"` allows any).
pub fn check_origin(headers: &HeaderMap, allowed: &[Origin], allow_missing: bool) -> OriginDecision {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return if allow_missing { OriginDecision::Allowed } else { OriginDecision::Missing };
    };
    let Ok(origin) = origin.to_str() else { return OriginDecision::NotListed };
    if allowed.iter().any(|entry| entry.matches(origin)) {
        OriginDecision::Allowed
    } else {
        OriginDecision::NotListed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|text| text.parse::<crate::config::values::Cidr>().unwrap().0).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer: SocketAddr = "203.0.113.7:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        let client = client_address(peer, &h, &nets(&["127.0.0.1"]));
        assert_eq!(client, ClientAddr { ip: peer.ip(), port: Some(5000) });
        assert_eq!(client.to_string(), "203.0.113.7:5000");
    }

    #[test]
    fn a_forwarded_address_has_no_port() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        let client = client_address(peer, &h, &nets(&["127.0.0.1"]));
        assert_eq!(client.to_string(), "198.51.100.1");
        assert_eq!(client.socket_addr(), "198.51.100.1:0".parse::<SocketAddr>().unwrap());
        let v6 = headers(&[("x-forwarded-for", "2001:db8::7")]);
        assert_eq!(client_address(peer, &v6, &nets(&["127.0.0.1"])).to_string(), "2001:db8::7");
        let direct: SocketAddr = "[2001:db8::9]:443".parse().unwrap();
        assert_eq!(client_address(direct, &h, &[]).to_string(), "[2001:db8::9]:443");
        // A trusted peer without forwarding headers is the client itself.
        assert_eq!(client_address(peer, &HeaderMap::new(), &nets(&["127.0.0.1"])).to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn trusted_proxy_gives_the_rightmost_untrusted_address() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.9, 198.51.100.1, 10.1.2.3")]);
        assert_eq!(client_address(peer, &h, &trusted).ip, "198.51.100.1".parse::<IpAddr>().unwrap());
        let split = headers(&[("x-forwarded-for", "198.51.100.9"), ("x-forwarded-for", "10.1.2.3")]);
        assert_eq!(client_address(peer, &split, &trusted).ip, "198.51.100.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_forms() {
        let peer: SocketAddr = "[::1]:5000".parse().unwrap();
        let trusted = nets(&["::1"]);
        let h = headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=::1")]);
        assert_eq!(client_address(peer, &h, &trusted).ip, "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
        assert!(forwarded_https(peer, &h, &trusted));
        let h = headers(&[("forwarded", "for=192.0.2.60;proto=http")]);
        assert_eq!(client_address(peer, &h, &trusted).ip, "192.0.2.60".parse::<IpAddr>().unwrap());
        assert!(!forwarded_https(peer, &h, &trusted));
    }

    #[test]
    fn garbage_in_the_chain_stops_trust() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.9, unknown")]);
        assert_eq!(client_address(peer, &h, &nets(&["127.0.0.1"])).ip, peer.ip());
    }

    #[test]
    fn origin_rules() {
        let allowed = vec!["https://chat.example.com".parse().unwrap()];
        assert_eq!(
            check_origin(&headers(&[("origin", "https://chat.example.com")]), &allowed, false),
            OriginDecision::Allowed
        );
        assert_eq!(
            check_origin(&headers(&[("origin", "HTTPS://Chat.Example.com")]), &allowed, false),
            OriginDecision::Allowed
        );
        assert_eq!(
            check_origin(&headers(&[("origin", "https://evil.example")]), &allowed, true),
            OriginDecision::NotListed
        );
        assert_eq!(check_origin(&HeaderMap::new(), &allowed, false), OriginDecision::Missing);
        assert_eq!(check_origin(&HeaderMap::new(), &allowed, true), OriginDecision::Allowed);
        assert_eq!(
            check_origin(&headers(&[("origin", "https://any.example")]), &["*".parse().unwrap()], false),
            OriginDecision::Allowed
        );
    }
}
