//! The open-relay and SSRF guard (DECISIONS D17, CONFORMANCE SEC-1): which domains the gateway
//! may connect to, and which resolved addresses it may dial.
//!
//! Two pure decisions, no DNS and no I/O:
//! - [`DomainPolicy::allows`]: a domain is served when it has a static `[[upstream]]` or
//!   matches `[domains] allow` (exact names and `*.suffix` patterns).
//! - [`special_purpose`]: an address found through DNS is refused when it lies in a
//!   special-purpose range (loopback, private, link-local, documentation, …), including the IPv6
//!   forms that embed such an IPv4 address. Static upstreams are explicit and never checked;
//!   `[domains] special_addresses` lists the discovered domains whose DNS may point anywhere.
//!
//! This module must not resolve or connect; callers apply its answers.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::values::Domain;

/// A special-purpose address range (RFC 6890 and the IANA registries). The label names the
/// range in logs; the D6 class of a refusal is always `address-refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialRange {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918).
    Private,
    /// 100.64.0.0/10 (RFC 6598).
    SharedCgnat,
    /// 169.254/16, fe80::/10 (cloud metadata lives here).
    LinkLocal,
    /// fc00::/7 (RFC 4193), and the deprecated site-local fec0::/10.
    UniqueLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8 ("this network"), ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15.
    Benchmarking,
    /// 240/4 (excluding broadcast).
    Reserved,
    /// 192.0.0/24, 192.88.99/24, 2001::/23, 100::/64, 64:ff9b:1::/48 and other IETF
    /// protocol assignments that are not ordinary global unicast.
    ProtocolAssignment,
}

impl SpecialRange {
    /// A short name for logs.
    pub fn label(self) -> &'static str {
        match self {
            SpecialRange::Loopback => "loopback",
            SpecialRange::Private => "private",
            SpecialRange::SharedCgnat => "shared-cgnat",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::UniqueLocal => "unique-local",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Unspecified => "unspecified",
            SpecialRange::Broadcast => "broadcast",
            SpecialRange::Documentation => "documentation",
            SpecialRange::Benchmarking => "benchmarking",
            SpecialRange::Reserved => "reserved",
            SpecialRange::ProtocolAssignment => "protocol-assignment",
        }
    }
}

/// The special-purpose range `ip` belongs to, or `None` for an ordinary global unicast address.
///
/// IPv6 forms that carry an IPv4 address a packet would end up at are judged by that embedded
/// address: IPv4-mapped `::ffff:0:0/96`, IPv4-translated `::ffff:0:0:0/96` (RFC 6145/SIIT),
/// IPv4-compatible `::/96`, 6to4 `2002::/16` (bits 16..48), and the NAT64 well-known prefix
/// `64:ff9b::/96` (RFC 6052). The NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215) is refused
/// as a whole: where its IPv4 address sits depends on the prefix length the local translator
/// uses (RFC 6052 §2.2 allows /48 to /96 inside it), so the embedded address cannot be read
/// reliably, and the range is not globally reachable anyway. Teredo `2001::/32` lies in
/// `2001::/23` and is refused too.
pub fn special_purpose(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    use SpecialRange::*;
    const TABLE: &[([u8; 4], u32, SpecialRange)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, ProtocolAssignment),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, ProtocolAssignment),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, range)| *range)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    use SpecialRange::*;
    let bits = u128::from(ip);
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d and the deprecated
    // IPv4-compatible ::a.b.c.d.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96)
        || in_v6(ip, [0; 8], 96)
    {
        return special_v4(Ipv4Addr::from(bits as u32));
    }
    // NAT64 well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return special_v4(Ipv4Addr::from(bits as u32));
    }
    // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return special_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const TABLE: &[([u16; 8], u32, SpecialRange)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, ProtocolAssignment),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, ProtocolAssignment),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, ProtocolAssignment),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, UniqueLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    TABLE.iter().find(|(net, prefix, _)| in_v6(ip, *net, *prefix)).map(|(_, _, range)| *range)
}

/// Which domains the gateway connects to (D17), built from the configuration.
#[derive(Debug, Clone, Default)]
pub struct DomainPolicy {
    /// Exact names: `[domains] allow` entries without a wildcard, plus every static upstream.
    exact: HashSet<String>,
    /// Suffixes with their leading dot (`*.example.com` is stored as `.example.com`).
    suffixes: Vec<String>,
    /// Discovered domains whose DNS answers may point at special-purpose addresses.
    special_addresses: HashSet<String>,
}

/// A `[domains] allow` entry, normalised: an exact domain, or every subdomain of a suffix
/// (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// This domain only.
    Exact(String),
    /// Every domain ending in `.suffix` (the suffix itself excluded); holds the suffix.
    Subdomains(String),
}

impl std::str::FromStr for DomainPattern {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, String> {
        let refuse = |problem: &str| format!("{pattern:?}: {problem}");
        if let Some(suffix) = pattern.strip_prefix("*.") {
            let suffix = crate::domain::normalize(suffix)
                .map_err(|_| refuse("the part after '*.' is not a valid domain name"))?;
            if !suffix.contains('.') {
                return Err(refuse("a wildcard over a whole top-level domain is an open relay"));
            }
            return Ok(DomainPattern::Subdomains(suffix));
        }
        if pattern.contains('*') {
            return Err(refuse("'*' is only allowed as a whole first label, as in *.example.com"));
        }
        crate::domain::normalize(pattern)
            .map(DomainPattern::Exact)
            .map_err(|_| refuse("not a valid domain name (IP literals are refused)"))
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainPattern::Exact(domain) => f.write_str(domain),
            DomainPattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl DomainPolicy {
    /// Builds the policy from `[domains] allow`, `[domains] special_addresses` and the
    /// normalised domains of `[[upstream]]`.
    pub fn new<'a>(
        allow: &[DomainPattern],
        special_addresses: &[Domain],
        static_domains: impl IntoIterator<Item = &'a str>,
    ) -> DomainPolicy {
        let mut policy = DomainPolicy::default();
        for pattern in allow {
            match pattern {
                DomainPattern::Subdomains(suffix) => policy.suffixes.push(format!(".{suffix}")),
                DomainPattern::Exact(domain) => {
                    policy.exact.insert(domain.clone());
                }
            }
        }
        policy.exact.extend(static_domains.into_iter().map(str::to_string));
        policy.special_addresses = special_addresses.iter().map(|domain| domain.as_str().to_string()).collect();
        policy
    }

    /// Whether the gateway may connect for the normalised `domain`. `*.example.com` matches
    /// `chat.example.com` and `a.b.example.com`, never `example.com` itself.
    pub fn allows(&self, domain: &str) -> bool {
        self.exact.contains(domain)
            || self.suffixes.iter().any(|suffix| domain.len() > suffix.len() && domain.ends_with(suffix.as_str()))
    }

    /// Whether `domain`'s DNS answers may point at special-purpose addresses.
    pub fn special_addresses_allowed(&self, domain: &str) -> bool {
        self.special_addresses.contains(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Option<SpecialRange> {
        special_purpose(text.parse().unwrap())
    }

    #[test]
    fn ipv4_special_ranges_are_refused() {
        use SpecialRange::*;
        for (address, expected) in [
            ("127.0.0.1", Loopback),
            ("127.0.0.2", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.169.254", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", ProtocolAssignment),
            ("192.88.99.1", ProtocolAssignment),
        ] {
            assert_eq!(range(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv4_public_addresses_pass() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "192.0.3.1",
            "223.255.255.255",
            "11.0.0.1",
        ] {
            assert_eq!(range(address), None, "{address}");
        }
    }

    #[test]
    fn ipv6_special_ranges_and_embedded_ipv4_are_refused() {
        use SpecialRange::*;
        for (address, expected) in [
            ("::1", Loopback),
            ("::", Unspecified),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fec0::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", ProtocolAssignment),
            ("100::1", ProtocolAssignment),
            ("64:ff9b:1::1", ProtocolAssignment),
            // The local-use NAT64 prefix whatever it seems to embed (RFC 8215).
            ("64:ff9b:1::808:808", ProtocolAssignment),
            ("64:ff9b:1:ab12:3400:0:808:808", ProtocolAssignment),
            // Teredo.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ProtocolAssignment),
            // IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms of special IPv4 addresses.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:0:127.0.0.1", Loopback),
            ("::ffff:0:a9fe:a9fe", LinkLocal),
            ("::ffff:0:10.1.2.3", Private),
            ("::ffff:0:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::192.168.0.1", Private),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:7f00:1::", Loopback),
            ("2002:c0a8:0101::1", Private),
        ] {
            assert_eq!(range(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv6_public_addresses_pass() {
        for address in [
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
        ] {
            assert_eq!(range(address), None, "{address}");
        }
    }

    fn patterns(texts: &[&str]) -> Vec<DomainPattern> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn domain_policy_exact_suffix_and_static() {
        let policy =
            DomainPolicy::new(&patterns(&["a.example", "*.chat.example", "Bücher.example"]), &[], ["static.example"]);
        assert!(policy.allows("a.example"));
        assert!(policy.allows("static.example"));
        assert!(policy.allows("x.chat.example"));
        assert!(policy.allows("y.x.chat.example"));
        assert!(policy.allows("xn--bcher-kva.example"));
        assert!(!policy.allows("chat.example"));
        assert!(!policy.allows("evilchat.example"));
        assert!(!policy.allows("b.example"));
        assert!(!policy.allows("a.example.evil"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let policy = DomainPolicy::new(&[], &[], []);
        assert!(!policy.allows("example.com"));
        assert!(!policy.special_addresses_allowed("example.com"));
    }

    #[test]
    fn patterns_are_checked() {
        let parsed = |text: &str| text.parse::<DomainPattern>().map(|pattern| pattern.to_string());
        assert_eq!(parsed("*.Example.COM.").unwrap(), "*.example.com");
        assert_eq!(parsed("Example.com").unwrap(), "example.com");
        for bad in ["*", "*.com", "a*.example.com", "*.*.example.com", "10.0.0.1"] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
    }
}
