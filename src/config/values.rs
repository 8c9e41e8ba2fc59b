//! The typed values of the configuration: each is parsed from its TOML form once, while the file
//! is deserialised, and refused there with a message saying what is wrong (the loader adds the
//! key). Consumers get addresses, networks, domains, origins and durations, never strings to
//! parse again.
//!
//! Every value serialises back to its TOML form, so [`super::keys`] can list the keys with their
//! defaults. This module checks one value at a time; relations between keys (a certificate needs
//! its key, a special-address domain must be allowed) are [`super::Config`]'s checks.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::upstream::guard::DomainPattern;

/// Implements `Deserialize` through `FromStr` (its error is the message) and `Serialize`
/// through `Display` for types written as one TOML string.
macro_rules! serde_as_text {
    ($($value:ty),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $value {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?.parse().map_err(D::Error::custom)
            }
        }

        impl Serialize for $value {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}

serde_as_text!(IpPort, OptionalIpPort, Cidr, Origin, Domain, HostPort, UrlPath, LogFilter, DomainPattern);

/// A socket address written `ip:port` (`[v6]:port` for IPv6): listener and DNS server addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPort(pub SocketAddr);

impl FromStr for IpPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(IpPort).map_err(|_| format!("{text:?} is not ip:port, e.g. 127.0.0.1:5290 or [::1]:5290"))
    }
}

impl fmt::Display for IpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `ip:port`, or the empty string for "off" (the admin listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalIpPort(pub Option<SocketAddr>);

impl FromStr for OptionalIpPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(OptionalIpPort(None));
        }
        text.parse()
            .map(|address| OptionalIpPort(Some(address)))
            .map_err(|_| format!("{text:?} is not ip:port (e.g. 127.0.0.1:9290) or \"\" (off)"))
    }
}

impl fmt::Display for OptionalIpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => Ok(()),
        }
    }
}

/// A network written `a.b.c.d/n` or `x::y/n`, or a bare address for a single host; host bits
/// are dropped (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|address| Cidr(address.into()))
            .map_err(|_| format!("{text:?} is not an address or CIDR like 10.0.0.0/8 or ::1/128"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A web origin a page may connect from: `scheme://host[:port]` (http or https, no path), or
/// `*` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Whether a request's `Origin` header value is this origin (ASCII case-insensitive).
    pub fn matches(&self, header: &str) -> bool {
        self.0 == "*" || self.0.eq_ignore_ascii_case(header.trim())
    }
}

impl FromStr for Origin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
        if text == "*" || rest.is_some_and(|rest| !rest.is_empty() && !rest.contains('/')) {
            return Ok(Origin(text.to_string()));
        }
        Err(format!("{text:?} is not an origin like \"https://chat.example.com\" (scheme://host[:port], no path)"))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL of a secure scheme given to clients, written as it is: `wss://` where clients are sent
/// when the gateway drains (RFC 7395 §3.6.1: never a lower security context) and what host-meta
/// advertises (XEP-0156: secure URLs only), `https://` for the BOSH endpoint host-meta
/// advertises. `S` says which scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureUrl<S> {
    url: String,
    scheme: PhantomData<S>,
}

/// The scheme of a [`SecureUrl`].
pub trait SecureScheme {
    /// What the URL starts with, `://` included.
    const PREFIX: &'static str;
    /// What such a URL is called in an error message.
    const CALLED: &'static str;
}

/// `wss://`: WebSocket over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wss {}

impl SecureScheme for Wss {
    const PREFIX: &'static str = "wss://";
    const CALLED: &'static str = "a wss:// URL";
}

/// `https://`: HTTP over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Https {}

impl SecureScheme for Https {
    const PREFIX: &'static str = "https://";
    const CALLED: &'static str = "an https:// URL";
}

/// A `wss://` URL.
pub type WssUrl = SecureUrl<Wss>;
/// An `https://` URL.
pub type HttpsUrl = SecureUrl<Https>;

impl<S> SecureUrl<S> {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl<S: SecureScheme> FromStr for SecureUrl<S> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix(S::PREFIX) {
            Some(rest) if !rest.is_empty() => Ok(SecureUrl { url: text.to_string(), scheme: PhantomData }),
            _ => Err(format!("{text:?} is not {} (clients accept only secure ones here)", S::CALLED)),
        }
    }
}

impl<S> fmt::Display for SecureUrl<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

serde_as_text!(WssUrl, HttpsUrl);

/// An XMPP domain in its normalised form (lowercase A-labels, no trailing dot; see
/// [`crate::domain::normalize`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Domain {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::domain::normalize(text).map(Domain).map_err(|error| format!("{text:?}: {error}"))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server's `host:port`, `ip:port` or `[ipv6]:port` (the host is resolved when connecting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port, 1 to 65535.
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        split_host_port(text).map_err(|problem| format!("{text:?}: {problem}"))
    }
}

fn split_host_port(text: &str) -> Result<HostPort, &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or("missing ']' after an IPv6 address")?;
        (host, rest.strip_prefix(':').ok_or("missing ':port' after ']'")?)
    } else {
        text.rsplit_once(':').ok_or("missing ':port'")?
    };
    if host.is_empty() {
        return Err("missing host");
    }
    if host.contains(':') && !text.starts_with('[') {
        return Err("IPv6 addresses must be written in brackets, e.g. [::1]:5222");
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(HostPort { host: host.to_string(), port }),
        _ => Err("port is not a number from 1 to 65535"),
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Paths of the XEP-0156 documents the public listener also serves.
pub const HOST_META_PATHS: [&str; 2] = ["/.well-known/host-meta", "/.well-known/host-meta.json"];

/// The HTTP path of the WebSocket endpoint: `/` alone (a gateway on its own host name), or `/`
/// followed by non-empty segments of plain URL path characters (RFC 3986 `pchar` without
/// percent-encoding, so the route is matched exactly as written), no trailing slash (the
/// endpoint is also served with one, D18; for `/` the two spellings are the same), and not a
/// host-meta path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath(String);

impl UrlPath {
    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UrlPath {
    type Err = String;

    fn from_str(path: &str) -> Result<Self, String> {
        if path == "/" {
            return Ok(UrlPath(path.to_string()));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("{path:?} must start with '/'"));
        };
        if rest.ends_with('/') {
            return Err(format!("{path:?} must not end with '/' (it is also served with one)"));
        }
        for segment in rest.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!("{path:?} has an empty, '.' or '..' segment"));
            }
            let plain = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c);
            if let Some(bad) = segment.chars().find(|c| !plain(*c)) {
                return Err(format!(
                    "{path:?} contains {bad:?}; use letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @"
                ));
            }
        }
        if HOST_META_PATHS.contains(&path) {
            return Err(format!("{path:?} is where host-meta (XEP-0156) is served"));
        }
        Ok(UrlPath(path.to_string()))
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `tracing` filter directive such as `info` or `xmpp_ws_gateway=debug`, known to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    /// The directive as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match tracing_subscriber::EnvFilter::try_new(text) {
            Ok(_) => Ok(LogFilter(text.to_string())),
            Err(error) => Err(format!("{text:?} is not a valid filter ({error})")),
        }
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whole seconds in the file, at least `MIN`; a [`Duration`] in the program.
pub fn seconds_at_least<'de, D: Deserializer<'de>, const MIN: u64>(deserializer: D) -> Result<Duration, D::Error> {
    within(u64::deserialize(deserializer)?, MIN, u64::MAX).map(Duration::from_secs)
}

/// Whole milliseconds in the file, from `MIN` to `MAX`; a [`Duration`] in the program.
pub fn millis_between<'de, D: Deserializer<'de>, const MIN: u64, const MAX: u64>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    within(u64::deserialize(deserializer)?, MIN, MAX).map(Duration::from_millis)
}

/// Whole seconds in the file where 0 means never; `None` for never in the program.
pub fn seconds_or_never<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let secs = u64::deserialize(deserializer)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Writes a duration as whole seconds (the file's unit).
pub fn as_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_secs())
}

/// Writes a duration as whole milliseconds (the file's unit).
pub fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Writes "never" as 0 seconds.
pub fn as_seconds_or_never<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.map_or(0, |duration| duration.as_secs()))
}

/// Serde `with` modules for the durations of the file: whole seconds at least 1
/// ([`seconds`]), any whole seconds ([`any_seconds`]), seconds where 0 is never
/// ([`seconds_or_never`]), whole milliseconds at least 1 ([`millis`]), and the Happy Eyeballs
/// delay, 10 to 2000 ms (RFC 8305 §5, [`happy_eyeballs_millis`]).
pub mod seconds {
    pub use super::as_seconds as serialize;

    /// At least 1 s.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
        super::seconds_at_least::<D, 1>(deserializer)
    }
}

/// See [`seconds`].
pub mod any_seconds {
    pub use super::as_seconds as serialize;

    /// Any whole number of seconds, 0 included.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
        super::seconds_at_least::<D, 0>(deserializer)
    }
}

/// See [`seconds`].
pub mod seconds_or_never {
    pub use super::as_seconds_or_never as serialize;
    pub use super::seconds_or_never as deserialize;
}

/// See [`seconds`].
pub mod millis {
    pub use super::as_millis as serialize;

    /// At least 1 ms.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
        super::millis_between::<D, 1, { u64::MAX }>(deserializer)
    }
}

/// See [`seconds`].
pub mod happy_eyeballs_millis {
    pub use super::as_millis as serialize;

    /// 10 to 2000 ms.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
        super::millis_between::<D, 10, 2000>(deserializer)
    }
}

/// A count or size from `MIN` to `MAX`.
pub fn count_between<'de, D: Deserializer<'de>, const MIN: usize, const MAX: usize>(
    deserializer: D,
) -> Result<usize, D::Error> {
    within(usize::deserialize(deserializer)?, MIN, MAX)
}

/// A count or size of at least 1.
pub fn count_at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    count_between::<D, 1, { usize::MAX }>(deserializer)
}

/// An element size limit (D10): at least 10000 bytes (RFC 6120 §13.12), at most 16 MiB.
pub fn element_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    count_between::<D, { super::MIN_ELEMENT_BYTES }, { super::MAX_ELEMENT_BYTES }>(deserializer)
}

/// An optional element size limit: unset, or as [`element_limit`].
pub fn optional_element_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    element_limit(deserializer).map(Some)
}

fn within<T: PartialOrd + fmt::Display, E: serde::de::Error>(value: T, min: T, max: T) -> Result<T, E> {
    if value < min {
        return Err(E::custom(format!("{value} is below the minimum, {min}")));
    }
    if value > max {
        return Err(E::custom(format!("{value} is above the maximum, {max}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let parsed = |text: &str| text.parse::<HostPort>().map(|hp| (hp.host, hp.port));
        assert_eq!(parsed("127.0.0.1:5222").unwrap(), ("127.0.0.1".to_string(), 5222));
        assert_eq!(parsed("xmpp.example.com:5223").unwrap(), ("xmpp.example.com".to_string(), 5223));
        assert_eq!(parsed("[::1]:5222").unwrap(), ("::1".to_string(), 5222));
        for bad in ["::1:5222", "example.com", "example.com:0", "example.com:70000", ":5222"] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        assert_eq!("[::1]:5222".parse::<HostPort>().unwrap().to_string(), "[::1]:5222");
    }

    #[test]
    fn cidrs_drop_host_bits_and_take_bare_addresses() {
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn origins_match_case_insensitively_and_star_matches_all() {
        let origin: Origin = "https://Chat.example.com".parse().unwrap();
        assert!(origin.matches("https://chat.example.com"));
        assert!(!origin.matches("https://evil.example"));
        assert!("*".parse::<Origin>().unwrap().matches("http://anything"));
        for bad in ["chat.example.com", "https://", "https://a/", "https://a/b", "ftp://a"] {
            assert!(bad.parse::<Origin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_admin_address_may_be_off() {
        assert_eq!("".parse::<OptionalIpPort>().unwrap(), OptionalIpPort(None));
        assert_eq!("".parse::<OptionalIpPort>().unwrap().to_string(), "");
        assert!("nowhere".parse::<OptionalIpPort>().is_err());
    }
}
