//! How a session ends: the outcome recorded in `xmppgw_sessions_ended_total{outcome}` and the
//! WebSocket close codes the gateway sends (CONFORMANCE section J), in one place.
//!
//! Names and numbers only; nothing here sends anything.

use crate::xml::error::XmlError;

/// WebSocket close codes the gateway sends (RFC 6455 §7.4.1 and the IANA registry).
pub(crate) mod close_code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
    pub(crate) const BAD_GATEWAY: u16 = 1014;
}

/// How a session ended; the label of `xmppgw_sessions_ended_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both `<close/>`/`</stream:stream>` were exchanged.
    Clean,
    /// The client's WebSocket went away without `<close/>`.
    ClientVanished,
    /// The client stopped reading: a message could not be delivered within the send deadline.
    ClientStalled,
    /// The upstream connection ended without `</stream:stream>`.
    ServerVanished,
    /// The client broke RFC 7395 / RFC 6120 rules and was closed with an error.
    ClientError,
    /// The server broke the protocol (bad XML) and was closed with an error.
    ServerError,
    /// The server ended the stream with a stream error.
    ServerStreamError,
    /// The upstream could not be reached or secured.
    UpstreamFailed,
    /// The requested domain is not served.
    HostUnknown,
    /// The client never sent `<open/>`.
    OpenTimeout,
    /// A clean close that ran out of time waiting for the other side.
    CloseTimeout,
    /// The gateway drained the session on shutdown.
    Drained,
    /// The client did not answer a WebSocket ping in time.
    PongTimeout,
    /// No stanza in either direction for the idle timeout.
    IdleTimeout,
}

impl Outcome {
    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::ClientVanished => "client_vanished",
            Outcome::ClientStalled => "client_stalled",
            Outcome::ServerVanished => "server_vanished",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::ServerStreamError => "server_stream_error",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::HostUnknown => "host_unknown",
            Outcome::OpenTimeout => "open_timeout",
            Outcome::CloseTimeout => "close_timeout",
            Outcome::Drained => "drained",
            Outcome::PongTimeout => "pong_timeout",
            Outcome::IdleTimeout => "idle_timeout",
        }
    }
}

/// The WebSocket close code after refusing a client message (CONFORMANCE J): 1008 when a
/// policy limit (nesting depth) refused it, else 1000 after the XMPP-level close.
pub(crate) fn refusal_close_code(error: &XmlError) -> u16 {
    if error.is_limit() {
        close_code::POLICY
    } else {
        close_code::NORMAL
    }
}

/// Close reasons are limited to 123 bytes (RFC 6455 §5.5: 125 minus the code).
pub(crate) fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}
