//! The gateway's configuration, parsed once into typed values: a TOML file plus `XMPPGW_*`
//! environment overrides become a [`Config`] of addresses, networks, domains, origins, durations
//! and bounded sizes ([`values`]), or an error naming the key and what is wrong with it.
//! Consumers never parse a setting again.
//!
//! The environment is passed in as a map so tests never touch the process environment. This
//! module only describes and checks settings; it must not open sockets or read certificates
//! (that happens where the settings are used). Each section's struct and defaults are here; the
//! value types are in [`values`], loading and the checks across keys in `load.rs`, the list of
//! keys in [`keys`], the tests in `tests.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod bosh;
pub mod keys;
mod load;
pub mod values;

pub use bosh::{BoshConfig, BODY_OVERHEAD_BYTES};
pub use load::ConfigError;

pub use values::HOST_META_PATHS;
use values::{
    any_seconds, count_at_least_one, count_between, element_limit, happy_eyeballs_millis, millis,
    optional_element_limit, seconds, seconds_or_never, Cidr, Domain, DomainPattern, HostPort, IpPort, LogFilter,
    OptionalIpPort, Origin, UrlPath,
};
pub use values::{HttpsUrl, WssUrl};

/// Smallest element size limit accepted (RFC 6120 §13.12: never below 10000 bytes, D10).
pub const MIN_ELEMENT_BYTES: usize = 10_000;
/// Largest element size limit accepted.
pub const MAX_ELEMENT_BYTES: usize = 16 * 1024 * 1024;
/// Smallest `limits.max_header_bytes` (the HTTP layer cannot work with a smaller buffer).
pub const MIN_HEADER_BYTES: usize = 8192;
/// Largest `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Smallest `limits.websocket_read_buffer_bytes` (a WebSocket frame header is up to 14 bytes;
/// below this every message takes many reads).
pub const MIN_WEBSOCKET_READ_BUFFER_BYTES: usize = 256;
/// Largest `limits.websocket_read_buffer_bytes` (tungstenite's own default).
pub const MAX_WEBSOCKET_READ_BUFFER_BYTES: usize = 128 * 1024;

/// The smallest `limits.max_attributes_per_element` accepted: a stream header or `<open/>`
/// carries up to eight attributes, so anything lower would refuse every session.
pub const MIN_ATTRIBUTES_PER_ELEMENT: usize = 16;

/// The smallest `limits.max_namespace_declarations_per_element` accepted (a stream header
/// declares two).
pub const MIN_NAMESPACE_DECLARATIONS_PER_ELEMENT: usize = 4;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The WebSocket listener.
    #[serde(default)]
    pub listener: ListenerConfig,
    /// Per-session limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Upstream connection behaviour shared by every upstream.
    #[serde(default)]
    pub connect: ConnectConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The admin listener (metrics, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// XEP-0156 host-meta documents.
    #[serde(default)]
    pub host_meta: HostMetaConfig,
    /// Which domains may be served, besides the static upstreams (D17).
    #[serde(default)]
    pub domains: DomainsConfig,
    /// DNS resolution (SRV discovery, A/AAAA).
    #[serde(default)]
    pub dns: DnsConfig,
    /// BOSH (XEP-0124, XEP-0206) on the public listener.
    #[serde(default)]
    pub bosh: BoshConfig,
    /// Statically configured upstream servers, one per XMPP domain.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
}

/// Where and how WebSocket clients are accepted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Socket address of the WebSocket listener.
    pub address: IpPort,
    /// HTTP path of the WebSocket endpoint; also served with a trailing slash (D18).
    pub path: UrlPath,
    /// PEM certificate chain for serving `wss://` directly (needs `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Whether the `wss://` listener offers HTTP/2 by ALPN, for WebSockets over HTTP/2 (RFC
    /// 8441) besides HTTP/1.1. Plain `ws://` is HTTP/1.1 only, whatever this says.
    pub http2: bool,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers name the real client.
    pub trusted_proxies: Vec<Cidr>,
    /// Origins (`scheme://host[:port]`) whose pages may connect; others get 403.
    pub allowed_origins: Vec<Origin>,
    /// Whether requests without an `Origin` header (non-browser clients) are accepted.
    pub allow_missing_origin: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            address: IpPort(([127, 0, 0, 1], 5290).into()),
            path: "/xmpp-websocket".parse().expect("the default path is valid"),
            tls_cert_file: None,
            tls_key_file: None,
            http2: true,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            allow_missing_origin: false,
        }
    }
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Socket address of the admin listener; empty string disables it.
    pub address: OptionalIpPort,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { address: OptionalIpPort(Some(([127, 0, 0, 1], 9290).into())) }
    }
}

/// What happens on SIGTERM/SIGINT.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time live sessions get to end before the process exits anyway (whole seconds, ≥ 1).
    #[serde(rename = "grace_period_secs", with = "seconds")]
    pub grace_period: Duration,
    /// `wss://` URI sent as `<close see-other-uri=.../>` to every session when draining
    /// (RFC 7395 §3.6.1); without it sessions get `<system-shutdown/>`.
    pub redirect_uri: Option<WssUrl>,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_period: Duration::from_secs(25), redirect_uri: None }
    }
}

/// XEP-0156 discovery documents served on the public listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetaConfig {
    /// The public `wss://` URL of this gateway; host-meta is served when it or `bosh_url` is set.
    pub websocket_url: Option<WssUrl>,
    /// The public `https://` URL of the BOSH endpoint (`urn:xmpp:alt-connections:xbosh`).
    pub bosh_url: Option<HttpsUrl>,
    /// Domains (matched against the request's `Host`) for which host-meta is served.
    pub domains: Vec<Domain>,
}

/// Limits applied to every session. Durations are whole seconds in the file (the keys end in
/// `_secs`); every count and time is at least 1 unless its comment says otherwise.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest element accepted in either direction, in bytes (D10; 10000 to 16 MiB).
    #[serde(deserialize_with = "element_limit")]
    pub max_element_bytes: usize,
    /// Time a client has to send its first `<open/>`.
    #[serde(rename = "open_timeout_secs", with = "seconds")]
    pub open_timeout: Duration,
    /// Time to wait for the other side's end of stream during a clean close.
    #[serde(rename = "close_timeout_secs", with = "seconds")]
    pub close_timeout: Duration,
    /// Client messages queued while the upstream connection is being set up.
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_queued_messages: usize,
    /// Sessions open at once, in total (503 beyond).
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_sessions: usize,
    /// Sessions open at once per client address (429 beyond).
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_sessions_per_address: usize,
    /// Time between WebSocket pings to the client (D14).
    #[serde(rename = "ping_interval_secs", with = "seconds")]
    pub ping_interval: Duration,
    /// Time the client has to answer a ping with a pong before the session is closed.
    #[serde(rename = "pong_timeout_secs", with = "seconds")]
    pub pong_timeout: Duration,
    /// Time without any stanza in either direction before the session is closed (`None`, 0 in
    /// the file: never).
    #[serde(rename = "idle_timeout_secs", with = "seconds_or_never")]
    pub idle_timeout: Option<Duration>,
    /// Time a new connection has from being accepted to its WebSocket upgrade (TLS handshake and
    /// HTTP request included); a connection that has not upgraded by then is closed.
    #[serde(rename = "handshake_timeout_secs", with = "seconds")]
    pub handshake_timeout: Duration,
    /// Largest HTTP request head (request line and headers) accepted, in bytes (431 beyond; 8 KiB
    /// to 1 MiB: the HTTP layer cannot work with less).
    #[serde(deserialize_with = "count_between::<_, MIN_HEADER_BYTES, MAX_HEADER_BYTES>")]
    pub max_header_bytes: usize,
    /// Connections accepted but not yet upgraded, in total (503 beyond).
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_pending_connections: usize,
    /// Connections accepted but not yet upgraded, per TCP peer address (429 beyond); trusted
    /// proxies are exempt.
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_pending_connections_per_address: usize,
    /// Most attributes (namespace declarations included) on one start tag, either direction; at
    /// least 16, since a stream header or `<open/>` carries up to eight.
    #[serde(deserialize_with = "count_between::<_, MIN_ATTRIBUTES_PER_ELEMENT, { usize::MAX }>")]
    pub max_attributes_per_element: usize,
    /// Most namespace declarations on one start tag, either direction; at least 4 (a stream
    /// header declares two).
    #[serde(deserialize_with = "count_between::<_, MIN_NAMESPACE_DECLARATIONS_PER_ELEMENT, { usize::MAX }>")]
    pub max_namespace_declarations_per_element: usize,
    /// Size of each WebSocket connection's read buffer, and the most one read from its socket
    /// takes, in bytes (256 to 128 KiB). It stays allocated while the session is idle: smaller
    /// holds less per idle session, larger reads a client's bursts and large messages in fewer
    /// system calls (docs/PERFORMANCE.md measures both).
    #[serde(deserialize_with = "count_between::<_, MIN_WEBSOCKET_READ_BUFFER_BYTES, MAX_WEBSOCKET_READ_BUFFER_BYTES>")]
    pub websocket_read_buffer_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_element_bytes: 256 * 1024,
            open_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_queued_messages: 32,
            max_sessions: 10_000,
            max_sessions_per_address: 100,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(15),
            idle_timeout: Some(Duration::from_secs(3600)),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_pending_connections: 1024,
            max_pending_connections_per_address: 16,
            max_attributes_per_element: crate::xml::DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations_per_element: crate::xml::DEFAULT_MAX_NAMESPACE_DECLARATIONS,
            websocket_read_buffer_bytes: crate::server::DEFAULT_WS_READ_BUFFER_BYTES,
        }
    }
}

/// Time budgets for reaching an upstream server (D12), whole seconds in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// Budget of one attempt: TCP, TLS and the stream header exchange.
    #[serde(rename = "attempt_timeout_secs", with = "seconds")]
    pub attempt_timeout: Duration,
    /// Budget of the whole connection setup, all attempts together.
    #[serde(rename = "overall_timeout_secs", with = "seconds")]
    pub overall_timeout: Duration,
    /// Time to wait for one address before also trying the next one (RFC 8305 "Connection
    /// Attempt Delay"; IPv6 and IPv4 alternate): 10 to 2000 ms in the file (RFC 8305 §5).
    #[serde(rename = "happy_eyeballs_delay_ms", with = "happy_eyeballs_millis")]
    pub happy_eyeballs_delay: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            attempt_timeout: Duration::from_secs(10),
            overall_timeout: Duration::from_secs(30),
            happy_eyeballs_delay: Duration::from_millis(250),
        }
    }
}

/// Domains the gateway serves through DNS discovery (D17). Static `[[upstream]]` domains are
/// always served; nothing else is unless listed here.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// Exact domains and `*.suffix` patterns whose servers are found through DNS SRV/A/AAAA.
    pub allow: Vec<DomainPattern>,
    /// Allowed domains whose DNS answers may point at loopback, private, link-local and other
    /// special-purpose addresses (an internal server found through internal DNS). Exact names.
    pub special_addresses: Vec<Domain>,
    /// Extra PEM file of CA certificates trusted for discovered domains, besides the system store.
    pub ca_file: Option<PathBuf>,
}

/// Which kind of SRV record to try first (XEP-0368, D11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreferTls {
    /// `_xmpp-client` and `_xmpps-client` records ordered together by priority and weight.
    Mixed,
    /// All `_xmpps-client` (direct TLS) records first.
    DirectTls,
    /// All `_xmpp-client` (STARTTLS) records first.
    Starttls,
}

/// How the gateway resolves names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Nameservers as `ip:port`, each asked over UDP and TCP; empty = the system's
    /// (`/etc/resolv.conf`).
    pub nameservers: Vec<IpPort>,
    /// Order of `_xmpp-client` vs `_xmpps-client` records.
    pub prefer: PreferTls,
    /// Time to wait for one DNS answer (whole milliseconds in the file, ≥ 1).
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Tries per query and nameserver.
    #[serde(deserialize_with = "count_at_least_one")]
    pub attempts: usize,
    /// Answers kept in the cache (each for its TTL; negative answers for the SOA minimum).
    pub cache_size: usize,
    /// Longest time a negative answer (NXDOMAIN, no records) is cached (whole seconds in the
    /// file; 0 is allowed).
    #[serde(rename = "negative_max_ttl_secs", with = "any_seconds")]
    pub negative_max_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            prefer: PreferTls::Mixed,
            timeout: Duration::from_millis(3000),
            attempts: 2,
            cache_size: 1024,
            negative_max_ttl: Duration::from_secs(300),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `xmpp_ws_gateway=debug`.
    pub level: LogFilter,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".parse().expect("the default filter is valid"), format: LogFormat::Text }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the gateway secures one upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    /// Plain TCP, then STARTTLS (RFC 6120 §5); the default.
    Starttls,
    /// TLS from the first byte (XEP-0368), ALPN `xmpp-client`.
    Direct,
    /// No TLS at all. Only for a server on the same host (D9).
    None,
}

/// One statically configured upstream server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The XMPP domain clients name in `to`.
    pub domain: Domain,
    /// `host:port` (or `ip:port`) of the server.
    pub address: HostPort,
    /// How to secure the connection.
    #[serde(default = "default_upstream_tls")]
    pub tls: UpstreamTls,
    /// Extra PEM file of CA certificates trusted for this upstream, besides the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Send a PROXY protocol v2 header with the client's address first, so the server sees it.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Largest element accepted in either direction for sessions to this upstream, in bytes
    /// (D10; at least 10000); unset: `limits.max_element_bytes`. Set it to the server's own
    /// limit, so an element the server would silently drop is refused by the gateway instead.
    #[serde(default, deserialize_with = "optional_element_limit")]
    pub max_element_bytes: Option<usize>,
}

impl UpstreamConfig {
    /// This upstream's element limit, given the global one.
    pub fn element_limit(&self, global: usize) -> usize {
        self.max_element_bytes.unwrap_or(global)
    }
}

fn default_upstream_tls() -> UpstreamTls {
    UpstreamTls::Starttls
}

#[cfg(test)]
mod tests;
