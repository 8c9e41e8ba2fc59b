//! Where a server's `<see-other-host/>` stream error points (RFC 6120 §4.9.3.19).
//!
//! The condition's character data is a domainpart or an IP address (IPv6 in brackets), with an
//! optional `:port`. This module reads that text into a host and a port; whether and how the
//! redirect is followed (D4) is the session's business. Pure string work, no DNS.

/// A parsed `<see-other-host/>` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lowercased host name without a trailing dot, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port, when the text names one; the route's own port applies otherwise.
    pub port: Option<u16>,
}

/// Reads the text of a `<see-other-host/>` condition. `None` when it is not a usable
/// `host[:port]` (empty, a port of 0 or not a number, characters a host cannot have, an IPv6
/// address without brackets, a URI).
pub fn parse(text: &str) -> Option<Target> {
    let text = text.trim();
    let port_of = |port: &str| port.parse::<u16>().ok().filter(|port| *port != 0);
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            after => Some(port_of(after.strip_prefix(':')?)?),
        };
        (host.to_string(), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port_of(port)?)),
            None => (text, None),
        };
        (host.trim_end_matches('.').to_ascii_lowercase(), port)
    };
    let bracketed = text.starts_with('[');
    let usable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') || (bracketed && c == ':');
    (!host.is_empty() && host.chars().all(usable)).then_some(Target { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: Option<u16>) -> Option<Target> {
        Some(Target { host: host.to_string(), port })
    }

    #[test]
    fn tv97_targets() {
        assert_eq!(parse("xmpp2.example.com:5223"), target("xmpp2.example.com", Some(5223)));
        assert_eq!(parse(" XMPP2.example.com. "), target("xmpp2.example.com", None));
        assert_eq!(parse("\n  [2001:41D0:1:A49b::1]:9222\n"), target("2001:41D0:1:A49b::1", Some(9222)));
        assert_eq!(parse("[::1]"), target("::1", None));
        assert_eq!(parse("127.0.0.1:5269"), target("127.0.0.1", Some(5269)));
    }

    #[test]
    fn unusable_targets() {
        for bad in ["", ":5222", "host:0", "host:x", "[nope]:1", "[::1]5222", "a b", "wss://gw.example/x", "::1:5222"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
