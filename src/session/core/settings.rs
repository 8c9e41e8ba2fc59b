//! The few settings the session core needs, as typed values: limits, timeouts, the drain
//! redirect and the default language. Built once per configuration and shared by the sessions
//! started under it.

use std::time::Duration;

use crate::config::{Config, ConnectConfig, LimitsConfig};
use crate::xml::client::ClientLimits;
use crate::xml::splitter::SplitterLimits;

/// Most bytes of client elements gathered into one upstream write (a batch is written out when
/// it reaches this size, or when the client has nothing more ready).
pub const UPSTREAM_BATCH_BYTES: usize = 16 * 1024;

/// Most `<see-other-host/>` redirects followed for one route (RFC 6120 §4.9.3.19: "2 to 5").
pub const MAX_REDIRECTS: usize = 5;

/// What the session core is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Validation limits of client messages.
    pub client_limits: ClientLimits,
    /// Bounds on what the server can make the splitter buffer (D10, LIM-3).
    pub server_limits: SplitterLimits,
    /// Client messages held while the upstream is being set up (LIM-4); together they hold at
    /// most one element limit of bytes.
    pub max_queued_messages: usize,
    /// Time for the first `<open/>`.
    pub open_timeout: Duration,
    /// Time the other side has to finish a clean close.
    pub close_timeout: Duration,
    /// Time between WebSocket pings while the stream is open.
    pub ping_interval: Duration,
    /// Time to answer a ping.
    pub pong_timeout: Duration,
    /// No stanza either way for this long ends the session; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Budget of one route (DNS of its host, TCP, TLS, stream headers), D12.
    pub attempt_timeout: Duration,
    /// Budget of the whole upstream setup, D12.
    pub overall_timeout: Duration,
    /// The `wss://` URI sent as `<close see-other-uri=…/>` when draining (RFC 7395 §3.6.1).
    pub redirect_uri: Option<String>,
    /// `xml:lang` for the `<open/>` the gateway makes when the client named none.
    pub default_lang: String,
}

impl Settings {
    /// The settings a configuration gives.
    pub fn from_config(config: &Config) -> Settings {
        Settings::from_parts(
            &config.limits,
            &config.connect,
            config.shutdown.redirect_uri.as_ref().map(|uri| uri.as_str().to_string()),
        )
    }

    /// The settings of `[limits]`, `[connect]` and `shutdown.redirect_uri`: the element limit
    /// and the attribute and namespace declaration caps bind both directions (LIM-2, LIM-3).
    pub fn from_parts(limits: &LimitsConfig, connect: &ConnectConfig, redirect_uri: Option<String>) -> Settings {
        Settings {
            client_limits: ClientLimits {
                max_attributes: limits.max_attributes_per_element,
                max_namespace_declarations: limits.max_namespace_declarations_per_element,
                ..ClientLimits::default()
            },
            server_limits: SplitterLimits {
                max_element_bytes: limits.max_element_bytes,
                max_attributes: limits.max_attributes_per_element,
                max_namespace_declarations: limits.max_namespace_declarations_per_element,
                ..SplitterLimits::default()
            },
            max_queued_messages: limits.max_queued_messages,
            open_timeout: limits.open_timeout,
            close_timeout: limits.close_timeout,
            ping_interval: limits.ping_interval,
            pong_timeout: limits.pong_timeout,
            idle_timeout: limits.idle_timeout,
            attempt_timeout: connect.attempt_timeout,
            overall_timeout: connect.overall_timeout,
            redirect_uri,
            default_lang: "en".to_string(),
        }
    }

    /// How long one write to the client may take before the client counts as stalled
    /// ([`super::Input::ClientStalled`]): a ping interval plus the pong deadline.
    pub fn send_deadline(&self) -> Duration {
        self.ping_interval + self.pong_timeout
    }
}

impl Default for Settings {
    /// The settings of the default configuration.
    fn default() -> Self {
        Settings::from_parts(&LimitsConfig::default(), &ConnectConfig::default(), None)
    }
}
