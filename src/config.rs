//! Typed gateway configuration: loading from a TOML file plus `XMPPGW_*` environment overrides,
//! and validation with messages that name the offending key.
//!
//! The environment is passed in as a map so tests never touch the process environment. This
//! module only describes and checks settings; it must not open sockets or read certificates
//! (that happens where the settings are used).
//!
//! (Over 500 lines: every section's types, defaults and checks, and their tests, are here until
//! the typed-config rework of issue 12 parses them once into typed values and splits the file.)

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod keys;

/// Smallest element size limit accepted (RFC 6120 §13.12: never below 10000 bytes, D10).
pub const MIN_ELEMENT_BYTES: usize = 10_000;

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
    /// Statically configured upstream servers, one per XMPP domain.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
}

/// Where and how WebSocket clients are accepted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Socket address of the WebSocket listener.
    pub address: String,
    /// HTTP path of the WebSocket endpoint; also served with a trailing slash (D18).
    pub path: String,
    /// PEM certificate chain for serving `wss://` directly (needs `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Whether the `wss://` listener offers HTTP/2 by ALPN, for WebSockets over HTTP/2 (RFC
    /// 8441) besides HTTP/1.1. Plain `ws://` is HTTP/1.1 only, whatever this says.
    pub http2: bool,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers name the real client.
    pub trusted_proxies: Vec<String>,
    /// Origins (`scheme://host[:port]`) whose pages may connect; others get 403.
    pub allowed_origins: Vec<String>,
    /// Whether requests without an `Origin` header (non-browser clients) are accepted.
    pub allow_missing_origin: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            address: "127.0.0.1:5290".into(),
            path: "/xmpp-websocket".into(),
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
    pub address: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { address: "127.0.0.1:9290".into() }
    }
}

/// What happens on SIGTERM/SIGINT.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds live sessions get to end before the process exits anyway.
    pub grace_period_secs: u64,
    /// `wss://` URI sent as `<close see-other-uri=.../>` to every session when draining
    /// (RFC 7395 §3.6.1); without it sessions get `<system-shutdown/>`.
    pub redirect_uri: Option<String>,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_period_secs: 25, redirect_uri: None }
    }
}

impl ShutdownConfig {
    /// [`Self::grace_period_secs`] as a duration.
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }
}

/// XEP-0156 discovery documents served on the public listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetaConfig {
    /// The public `wss://` URL of this gateway; host-meta is served only when set.
    pub websocket_url: Option<String>,
    /// Domains (matched against the request's `Host`) for which host-meta is served.
    pub domains: Vec<String>,
}

/// Limits applied to every session.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest element accepted in either direction, in bytes (D10; at least 10000).
    pub max_element_bytes: usize,
    /// Seconds a client has to send its first `<open/>`.
    pub open_timeout_secs: u64,
    /// Seconds to wait for the other side's end of stream during a clean close.
    pub close_timeout_secs: u64,
    /// Client messages queued while the upstream connection is being set up.
    pub max_queued_messages: usize,
    /// Sessions open at once, in total (503 beyond).
    pub max_sessions: usize,
    /// Sessions open at once per client address (429 beyond).
    pub max_sessions_per_address: usize,
    /// Seconds between WebSocket pings to the client (D14).
    pub ping_interval_secs: u64,
    /// Seconds the client has to answer a ping with a pong before the session is closed.
    pub pong_timeout_secs: u64,
    /// Seconds without any stanza in either direction before the session is closed (0: never).
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has from being accepted to its WebSocket upgrade (TLS handshake
    /// and HTTP request included); a connection that has not upgraded by then is closed.
    pub handshake_timeout_secs: u64,
    /// Largest HTTP request head (request line and headers) accepted, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Connections accepted but not yet upgraded, in total (503 beyond).
    pub max_pending_connections: usize,
    /// Connections accepted but not yet upgraded, per TCP peer address (429 beyond); trusted
    /// proxies are exempt.
    pub max_pending_connections_per_address: usize,
    /// Most attributes (namespace declarations included) on one start tag, either direction.
    pub max_attributes_per_element: usize,
    /// Most namespace declarations on one start tag, either direction.
    pub max_namespace_declarations_per_element: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_element_bytes: 256 * 1024,
            open_timeout_secs: 10,
            close_timeout_secs: 5,
            max_queued_messages: 32,
            max_sessions: 10_000,
            max_sessions_per_address: 100,
            ping_interval_secs: 30,
            pong_timeout_secs: 15,
            idle_timeout_secs: 3600,
            handshake_timeout_secs: 10,
            max_header_bytes: 16 * 1024,
            max_pending_connections: 1024,
            max_pending_connections_per_address: 16,
            max_attributes_per_element: crate::xml::DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations_per_element: crate::xml::DEFAULT_MAX_NAMESPACE_DECLARATIONS,
        }
    }
}

impl LimitsConfig {
    /// [`Self::open_timeout_secs`] as a duration.
    pub fn open_timeout(&self) -> Duration {
        Duration::from_secs(self.open_timeout_secs)
    }

    /// [`Self::close_timeout_secs`] as a duration.
    pub fn close_timeout(&self) -> Duration {
        Duration::from_secs(self.close_timeout_secs)
    }

    /// [`Self::ping_interval_secs`] as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// [`Self::pong_timeout_secs`] as a duration.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout_secs)
    }

    /// [`Self::idle_timeout_secs`] as a duration, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// Time budgets for reaching an upstream server (D12).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// Seconds for one attempt: TCP, TLS and the stream header exchange.
    pub attempt_timeout_secs: u64,
    /// Seconds for the whole connection setup, all attempts together.
    pub overall_timeout_secs: u64,
    /// Milliseconds to wait for one address before also trying the next one (RFC 8305
    /// "Connection Attempt Delay"; IPv6 and IPv4 alternate).
    pub happy_eyeballs_delay_ms: u64,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig { attempt_timeout_secs: 10, overall_timeout_secs: 30, happy_eyeballs_delay_ms: 250 }
    }
}

impl ConnectConfig {
    /// Budget of one attempt.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.attempt_timeout_secs)
    }

    /// Budget of the whole setup.
    pub fn overall_timeout(&self) -> Duration {
        Duration::from_secs(self.overall_timeout_secs)
    }

    /// [`Self::happy_eyeballs_delay_ms`] as a duration.
    pub fn happy_eyeballs_delay(&self) -> Duration {
        Duration::from_millis(self.happy_eyeballs_delay_ms)
    }
}

/// Domains the gateway serves through DNS discovery (D17). Static `[[upstream]]` domains are
/// always served; nothing else is unless listed here.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// Exact domains and `*.suffix` patterns whose servers are found through DNS SRV/A/AAAA.
    pub allow: Vec<String>,
    /// Allowed domains whose DNS answers may point at loopback, private, link-local and other
    /// special-purpose addresses (an internal server found through internal DNS). Exact names.
    pub special_addresses: Vec<String>,
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
    pub nameservers: Vec<String>,
    /// Order of `_xmpp-client` vs `_xmpps-client` records.
    pub prefer: PreferTls,
    /// Milliseconds to wait for one DNS answer.
    pub timeout_ms: u64,
    /// Tries per query and nameserver.
    pub attempts: usize,
    /// Answers kept in the cache (each for its TTL; negative answers for the SOA minimum).
    pub cache_size: usize,
    /// Longest time, in seconds, a negative answer (NXDOMAIN, no records) is cached.
    pub negative_max_ttl_secs: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            prefer: PreferTls::Mixed,
            timeout_ms: 3000,
            attempts: 2,
            cache_size: 1024,
            negative_max_ttl_secs: 300,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `xmpp_ws_gateway=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
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
    pub domain: String,
    /// `host:port` (or `ip:port`) of the server.
    pub address: String,
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
    #[serde(default)]
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

/// A configuration that could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, e.g. `limits.max_element_bytes` or `upstream[1].address`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

impl Config {
    /// Loads `path` (TOML), applies overrides from `env` (variables named
    /// `XMPPGW_SECTION__KEY`, e.g. `XMPPGW_LISTENER__ADDRESS`; list keys take comma-separated
    /// items, e.g. `XMPPGW_LISTENER__ALLOWED_ORIGINS=https://a.example,https://b.example`), and
    /// validates the result.
    pub fn load(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = env.into_iter().filter(|(key, _)| key.starts_with("XMPPGW_")).collect();
        let lists = keys::take_list_overrides(&mut env);
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
            .add_source(
                config::Environment::with_prefix("XMPPGW")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            );
        for (key, items) in lists {
            builder = builder.set_override(key, items)?;
        }
        let loaded = builder.build()?;
        let config: Config = loaded.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML string without environment overrides (for tests and `--check-config`).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let loaded =
            config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml)).build()?;
        let config: Config = loaded.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// The largest element limit of any session: the global one or an upstream's. The WebSocket
    /// layer accepts messages up to this size; each session then applies its upstream's limit.
    pub fn largest_element_limit(&self) -> usize {
        let global = self.limits.max_element_bytes;
        self.upstream.iter().map(|upstream| upstream.element_limit(global)).fold(global, usize::max)
    }

    /// Checks every value that parsed but may still be unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listener
            .address
            .parse::<SocketAddr>()
            .map_err(|e| invalid("listener.address", format!("{:?} is not ip:port ({e})", self.listener.address)))?;
        check_listener_path(&self.listener.path).map_err(|problem| invalid("listener.path", problem))?;
        check_element_limit("limits.max_element_bytes", self.limits.max_element_bytes)?;
        let header_bytes = self.limits.max_header_bytes;
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&header_bytes) {
            return Err(invalid(
                "limits.max_header_bytes",
                format!("{header_bytes} must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
            ));
        }
        for (key, value, minimum) in [
            ("limits.max_attributes_per_element", self.limits.max_attributes_per_element, MIN_ATTRIBUTES_PER_ELEMENT),
            (
                "limits.max_namespace_declarations_per_element",
                self.limits.max_namespace_declarations_per_element,
                MIN_NAMESPACE_DECLARATIONS_PER_ELEMENT,
            ),
        ] {
            if value < minimum {
                return Err(invalid(key, format!("{value} is below {minimum}: stream headers need that many")));
            }
        }
        for (key, value) in [
            ("limits.open_timeout_secs", self.limits.open_timeout_secs),
            ("limits.close_timeout_secs", self.limits.close_timeout_secs),
            ("limits.handshake_timeout_secs", self.limits.handshake_timeout_secs),
            ("connect.attempt_timeout_secs", self.connect.attempt_timeout_secs),
            ("connect.overall_timeout_secs", self.connect.overall_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("limits.max_queued_messages", self.limits.max_queued_messages),
            ("limits.max_sessions", self.limits.max_sessions),
            ("limits.max_sessions_per_address", self.limits.max_sessions_per_address),
            ("limits.max_pending_connections", self.limits.max_pending_connections),
            ("limits.max_pending_connections_per_address", self.limits.max_pending_connections_per_address),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("limits.ping_interval_secs", self.limits.ping_interval_secs),
            ("limits.pong_timeout_secs", self.limits.pong_timeout_secs),
            ("shutdown.grace_period_secs", self.shutdown.grace_period_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        match (&self.listener.tls_cert_file, &self.listener.tls_key_file) {
            (Some(_), None) => return Err(invalid("listener.tls_key_file", "is required with listener.tls_cert_file")),
            (None, Some(_)) => return Err(invalid("listener.tls_cert_file", "is required with listener.tls_key_file")),
            (Some(cert), Some(key)) => {
                for (name, file) in [("listener.tls_cert_file", cert), ("listener.tls_key_file", key)] {
                    if !file.is_file() {
                        return Err(invalid(name, format!("{} is not a readable file", file.display())));
                    }
                }
            }
            (None, None) => {}
        }
        for (index, cidr) in self.listener.trusted_proxies.iter().enumerate() {
            parse_cidr(cidr).map_err(|problem| invalid(format!("listener.trusted_proxies[{index}]"), problem))?;
        }
        for (index, origin) in self.listener.allowed_origins.iter().enumerate() {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.split("://").nth(1).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !valid && origin != "*" {
                return Err(invalid(
                    format!("listener.allowed_origins[{index}]"),
                    format!(
                        "{origin:?} is not an origin like \"https://chat.example.com\" (scheme://host[:port], no path)"
                    ),
                ));
            }
        }
        if !self.admin.address.is_empty() {
            self.admin.address.parse::<SocketAddr>().map_err(|e| {
                invalid("admin.address", format!("{:?} is not ip:port or \"\" ({e})", self.admin.address))
            })?;
        }
        if let Some(uri) = &self.shutdown.redirect_uri {
            if !uri.starts_with("wss://") || uri.len() <= "wss://".len() {
                return Err(invalid(
                    "shutdown.redirect_uri",
                    format!("{uri:?} must be a wss:// URI (clients refuse a lower security context, RFC 7395 3.6.1)"),
                ));
            }
        }
        if let Some(url) = &self.host_meta.websocket_url {
            if !url.starts_with("wss://") || url.len() <= "wss://".len() {
                return Err(invalid(
                    "host_meta.websocket_url",
                    format!("{url:?} must be a wss:// URL (XEP-0156 allows only secure connection URLs)"),
                ));
            }
        }
        for (index, domain) in self.host_meta.domains.iter().enumerate() {
            crate::domain::normalize(domain)
                .map_err(|e| invalid(format!("host_meta.domains[{index}]"), format!("{domain:?}: {e}")))?;
        }
        if self.connect.happy_eyeballs_delay_ms < 10 || self.connect.happy_eyeballs_delay_ms > 2000 {
            // RFC 8305 §5: at least 10 ms (100 ms recommended minimum), at most 2 s.
            return Err(invalid("connect.happy_eyeballs_delay_ms", "must be between 10 and 2000"));
        }
        for (index, pattern) in self.domains.allow.iter().enumerate() {
            crate::upstream::guard::parse_pattern(pattern)
                .map_err(|e| invalid(format!("domains.allow[{index}]"), format!("{pattern:?}: {e}")))?;
        }
        for (index, domain) in self.domains.special_addresses.iter().enumerate() {
            let key = format!("domains.special_addresses[{index}]");
            let normalized =
                crate::domain::normalize(domain).map_err(|e| invalid(key.as_str(), format!("{domain:?}: {e}")))?;
            let policy =
                crate::upstream::guard::DomainPolicy::new(self.domains.allow.iter().map(String::as_str), [], []);
            if !policy.allows(&normalized) {
                return Err(invalid(key, format!("{domain:?} is not in domains.allow")));
            }
        }
        if let Some(ca_file) = &self.domains.ca_file {
            if !ca_file.is_file() {
                return Err(invalid("domains.ca_file", format!("{} is not a readable file", ca_file.display())));
            }
        }
        for (index, server) in self.dns.nameservers.iter().enumerate() {
            server.parse::<SocketAddr>().map_err(|_| {
                invalid(format!("dns.nameservers[{index}]"), format!("{server:?} is not ip:port, e.g. 127.0.0.1:53"))
            })?;
        }
        if self.dns.timeout_ms == 0 {
            return Err(invalid("dns.timeout_ms", "must be at least 1"));
        }
        if self.dns.attempts == 0 {
            return Err(invalid("dns.attempts", "must be at least 1"));
        }
        if self.limits.max_queued_messages == 0 {
            return Err(invalid("limits.max_queued_messages", "must be at least 1"));
        }
        if self.connect.attempt_timeout_secs > self.connect.overall_timeout_secs {
            return Err(invalid("connect.attempt_timeout_secs", "must not exceed connect.overall_timeout_secs"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("{:?} is not a valid filter ({e})", self.log.level)))?;
        let mut seen = HashSet::new();
        for (index, upstream) in self.upstream.iter().enumerate() {
            let key = |field: &str| format!("upstream[{index}].{field}");
            let domain = crate::domain::normalize(&upstream.domain)
                .map_err(|e| invalid(key("domain"), format!("{:?}: {e}", upstream.domain)))?;
            if !seen.insert(domain.clone()) {
                return Err(invalid(key("domain"), format!("{domain:?} is configured twice")));
            }
            crate::upstream::parse_host_port(&upstream.address)
                .map_err(|problem| invalid(key("address"), format!("{:?}: {problem}", upstream.address)))?;
            if let Some(limit) = upstream.max_element_bytes {
                check_element_limit(&key("max_element_bytes"), limit)?;
            }
            if let Some(ca_file) = &upstream.ca_file {
                if upstream.tls == UpstreamTls::None {
                    return Err(invalid(key("ca_file"), "makes no sense with tls = \"none\""));
                }
                if !ca_file.is_file() {
                    return Err(invalid(key("ca_file"), format!("{} is not a readable file", ca_file.display())));
                }
            }
        }
        if self.upstream.is_empty() && self.domains.allow.is_empty() {
            // An empty or truncated file would otherwise start a gateway that refuses everyone.
            return Err(invalid(
                "upstream",
                "the configuration serves no domain: add an [[upstream]] table or a [domains] allow entry \
                 (is the file empty or cut short?)",
            ));
        }
        Ok(())
    }
}

/// Smallest `limits.max_header_bytes` (the HTTP layer cannot work with a smaller buffer).
pub const MIN_HEADER_BYTES: usize = 8192;
/// Largest `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Largest element size limit accepted.
pub const MAX_ELEMENT_BYTES: usize = 16 * 1024 * 1024;

fn check_element_limit(key: &str, value: usize) -> Result<(), ConfigError> {
    if value < MIN_ELEMENT_BYTES {
        return Err(invalid(key, format!("{value} is below {MIN_ELEMENT_BYTES}, the minimum RFC 6120 §13.12 allows")));
    }
    if value > MAX_ELEMENT_BYTES {
        return Err(invalid(key, format!("must be at most {MAX_ELEMENT_BYTES} (16 MiB)")));
    }
    Ok(())
}

/// Paths of the XEP-0156 documents the public listener also serves.
pub const HOST_META_PATHS: [&str; 2] = ["/.well-known/host-meta", "/.well-known/host-meta.json"];

/// Checks `listener.path`: `/` alone (a gateway on its own host name), or `/` followed by
/// non-empty segments of plain URL path characters (RFC 3986 `pchar` without percent-encoding,
/// so the route is matched exactly as written), no trailing slash (the endpoint is also served
/// with one, D18; for `/` the two spellings are the same), and not a host-meta path.
fn check_listener_path(path: &str) -> Result<(), String> {
    if path == "/" {
        return Ok(());
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
    Ok(())
}

/// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{text:?} is not an address or CIDR like 10.0.0.0/8 or ::1/128"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).expect_err("config should be refused").to_string()
    }

    /// The smallest valid configuration: one domain served through DNS, everything else default.
    const MINIMAL: &str = "[domains]\nallow = [\"example.com\"]\n";

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_toml(MINIMAL).expect("defaults are valid");
        assert_eq!(config.listener.path, "/xmpp-websocket");
        assert_eq!(config.limits.max_element_bytes, 262_144);
        assert_eq!(config.connect.attempt_timeout_secs, 10);
        assert_eq!(config.connect.overall_timeout_secs, 30);
        assert_eq!(config.limits.handshake_timeout_secs, 10);
        assert_eq!(config.limits.max_header_bytes, 16_384);
        assert!(config.upstream.is_empty());
    }

    #[test]
    fn a_configuration_serving_no_domain_is_refused() {
        for text in ["", "[listener]\naddress = \"127.0.0.1:5290\"\n", "[domains]\nallow = []\n"] {
            let message = err(text);
            assert!(message.starts_with("upstream:") && message.contains("serves no domain"), "{message}");
        }
        assert!(Config::from_toml("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n").is_ok());
    }

    #[test]
    fn an_upstream_may_set_its_own_element_limit() {
        let config = Config::from_toml(
            "[limits]\nmax_element_bytes = 100000\n\
             [[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\nmax_element_bytes = 65535\n\
             [[upstream]]\ndomain = \"b.example\"\naddress = \"127.0.0.1:5223\"\n\
             [[upstream]]\ndomain = \"c.example\"\naddress = \"127.0.0.1:5224\"\nmax_element_bytes = 300000\n",
        )
        .unwrap();
        assert_eq!(config.upstream[0].element_limit(100_000), 65_535);
        assert_eq!(config.upstream[1].element_limit(100_000), 100_000);
        assert_eq!(config.largest_element_limit(), 300_000);
        let message =
            err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\nmax_element_bytes = 9999\n");
        assert!(message.starts_with("upstream[0].max_element_bytes:") && message.contains("10000"), "{message}");
    }

    #[test]
    fn pre_upgrade_limits_are_checked() {
        let with = |line: &str| format!("{MINIMAL}[limits]\n{line}\n");
        assert!(err(&with("max_header_bytes = 4096")).starts_with("limits.max_header_bytes:"));
        assert!(err(&with("handshake_timeout_secs = 0")).starts_with("limits.handshake_timeout_secs:"));
        assert!(err(&with("max_pending_connections = 0")).starts_with("limits.max_pending_connections:"));
        assert!(err(&with("max_pending_connections_per_address = 0"))
            .starts_with("limits.max_pending_connections_per_address:"));
    }

    #[test]
    fn listener_path_may_be_the_root_but_not_malformed() {
        for path in ["/", "/xmpp-websocket", "/chat/ws", "/ws.v1~x"] {
            let config = Config::from_toml(&format!("{MINIMAL}[listener]\npath = {path:?}\n"));
            assert_eq!(config.expect("path accepted").listener.path, path);
        }
        for path in ["", "ws", "/ws/", "//", "/a//b", "/a/../b", "/a b", "/{x}", "/%41", "/.well-known/host-meta"] {
            let message = err(&format!("{MINIMAL}[listener]\npath = {path:?}\n"));
            assert!(message.starts_with("listener.path:"), "{path:?}: {message}");
        }
    }

    #[test]
    fn list_keys_can_be_set_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, format!("{MINIMAL}[listener]\nallowed_origins = [\"https://old.example\"]\n")).unwrap();
        let env = HashMap::from([
            ("XMPPGW_LISTENER__ALLOWED_ORIGINS".to_string(), "http://127.0.0.1:8290,http://localhost:8290".to_string()),
            ("XMPPGW_LISTENER__TRUSTED_PROXIES".to_string(), "127.0.0.1".to_string()),
            ("XMPPGW_DNS__NAMESERVERS".to_string(), String::new()),
        ]);
        let config = Config::load(&path, env).unwrap();
        assert_eq!(config.listener.allowed_origins, ["http://127.0.0.1:8290", "http://localhost:8290"]);
        assert_eq!(config.listener.trusted_proxies, ["127.0.0.1"]);
        assert!(config.dns.nameservers.is_empty());
        // Each item is still validated.
        let env = HashMap::from([("XMPPGW_LISTENER__ALLOWED_ORIGINS".to_string(), "chat.example".to_string())]);
        let message = Config::load(&path, env).unwrap_err().to_string();
        assert!(message.starts_with("listener.allowed_origins[0]:"), "{message}");
    }

    #[test]
    fn upstream_tls_defaults_to_starttls() {
        let config =
            Config::from_toml("[[upstream]]\ndomain = \"example.com\"\naddress = \"127.0.0.1:5222\"\n").unwrap();
        assert_eq!(config.upstream[0].tls, UpstreamTls::Starttls);
    }

    #[test]
    fn element_limit_below_rfc_minimum_names_the_key() {
        let message = err("[limits]\nmax_element_bytes = 9999\n");
        assert!(message.starts_with("limits.max_element_bytes:"), "{message}");
        assert!(message.contains("10000"), "{message}");
    }

    #[test]
    fn attribute_and_declaration_caps_default_and_minimum() {
        // A served domain, so that the config is valid whatever else validation requires.
        let upstream = "[[upstream]]\ndomain = \"example.com\"\naddress = \"127.0.0.1:5222\"\n";
        let config = Config::from_toml(upstream).expect("valid");
        assert_eq!(config.limits.max_attributes_per_element, 64);
        assert_eq!(config.limits.max_namespace_declarations_per_element, 32);
        let message = err(&format!("[limits]\nmax_attributes_per_element = 15\n{upstream}"));
        assert!(message.starts_with("limits.max_attributes_per_element:") && message.contains("16"), "{message}");
        let message = err(&format!("[limits]\nmax_namespace_declarations_per_element = 3\n{upstream}"));
        assert!(message.starts_with("limits.max_namespace_declarations_per_element:"), "{message}");
        let config = Config::from_toml(&format!(
            "[limits]\nmax_attributes_per_element = 16\nmax_namespace_declarations_per_element = 4\n{upstream}"
        ))
        .expect("the minimum is valid");
        assert_eq!(config.limits.max_attributes_per_element, 16);
    }

    #[test]
    fn bad_listener_address_names_the_key() {
        let message = err("[listener]\naddress = \"localhost\"\n");
        assert!(message.starts_with("listener.address:"), "{message}");
    }

    #[test]
    fn unknown_tls_mode_is_refused() {
        let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\ntls = \"maybe\"\n");
        assert!(message.contains("maybe"), "{message}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let message = err("[limits]\nmax_elemnt_bytes = 20000\n");
        assert!(message.contains("max_elemnt_bytes"), "{message}");
    }

    #[test]
    fn duplicate_domain_is_refused() {
        let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n\
             [[upstream]]\ndomain = \"A.example.\"\naddress = \"127.0.0.1:5223\"\n");
        assert!(message.starts_with("upstream[1].domain:"), "{message}");
    }

    #[test]
    fn missing_ca_file_is_refused() {
        let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n\
             ca_file = \"/nonexistent/ca.pem\"\n");
        assert!(message.starts_with("upstream[0].ca_file:"), "{message}");
    }

    #[test]
    fn upstream_address_needs_a_port() {
        let message = err("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1\"\n");
        assert!(message.starts_with("upstream[0].address:"), "{message}");
    }

    #[test]
    fn operations_settings_are_checked() {
        assert!(err("[listener]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").starts_with("listener.trusted_proxies[0]:"));
        assert!(
            err("[listener]\nallowed_origins = [\"chat.example.com\"]\n").starts_with("listener.allowed_origins[0]:")
        );
        assert!(err("[shutdown]\nredirect_uri = \"ws://gw2.example.net/x\"\n").starts_with("shutdown.redirect_uri:"));
        assert!(err("[host_meta]\nwebsocket_url = \"http://x\"\n").starts_with("host_meta.websocket_url:"));
        assert!(err("[listener]\ntls_cert_file = \"/etc/hostname\"\n").starts_with("listener.tls_key_file:"));
        assert!(err("[limits]\nmax_sessions = 0\n").starts_with("limits.max_sessions:"));
        assert!(err("[admin]\naddress = \"nowhere\"\n").starts_with("admin.address:"));
        let config = Config::from_toml(
            &format!("{MINIMAL}[listener]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nallowed_origins = [\"https://chat.example.com\"]\n"),
        )
        .unwrap();
        assert_eq!(config.listener.trusted_proxies.len(), 2);
    }

    #[test]
    fn discovery_defaults() {
        let config = Config::from_toml("[[upstream]]\ndomain = \"a.example\"\naddress = \"127.0.0.1:5222\"\n").unwrap();
        assert!(config.domains.allow.is_empty());
        assert!(config.dns.nameservers.is_empty());
        assert_eq!(config.dns.prefer, PreferTls::Mixed);
        assert_eq!(config.connect.happy_eyeballs_delay_ms, 250);
    }

    #[test]
    fn discovery_settings_parse() {
        let config = Config::from_toml(
            "[domains]\nallow = [\"example.com\", \"*.chat.example\"]\nspecial_addresses = [\"example.com\"]\n\
             [dns]\nnameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\nprefer = \"direct-tls\"\n",
        )
        .unwrap();
        assert_eq!(config.domains.allow.len(), 2);
        assert_eq!(config.dns.prefer, PreferTls::DirectTls);
    }

    #[test]
    fn bad_discovery_settings_name_the_key() {
        assert!(err("[domains]\nallow = [\"*\"]\n").starts_with("domains.allow[0]:"));
        assert!(err("[domains]\nallow = [\"10.0.0.1\"]\n").starts_with("domains.allow[0]:"));
        assert!(err("[domains]\nspecial_addresses = [\"a.example\"]\n").starts_with("domains.special_addresses[0]:"));
        assert!(err("[dns]\nnameservers = [\"localhost\"]\n").starts_with("dns.nameservers[0]:"));
        assert!(err("[dns]\nprefer = \"xmpps\"\n").contains("xmpps"));
        assert!(err("[connect]\nhappy_eyeballs_delay_ms = 0\n").starts_with("connect.happy_eyeballs_delay_ms:"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, format!("{MINIMAL}[listener]\naddress = \"127.0.0.1:5280\"\n")).unwrap();
        let env = HashMap::from([
            ("XMPPGW_LISTENER__ADDRESS".to_string(), "127.0.0.1:6000".to_string()),
            ("XMPPGW_LIMITS__OPEN_TIMEOUT_SECS".to_string(), "3".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ]);
        let config = Config::load(&path, env).unwrap();
        assert_eq!(config.listener.address, "127.0.0.1:6000");
        assert_eq!(config.limits.open_timeout_secs, 3);
    }
}
