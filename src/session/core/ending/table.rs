//! The table itself: one [`Row`] per kind of [`super::Ending`], with the vocabulary a row is
//! written in. Data only; [`super::farewell`] reads it and [`super::markdown_table`] renders it.

use crate::xml::condition::StreamCondition;

use super::super::super::outcome::{close_code, Outcome};

/// The `<text/>` and close reason of a refused message queue (LIM-4).
pub const QUEUE_FULL_TEXT: &str = "too many messages before the stream was open";
/// The `<text/>` and close reason when the server broke the XML rules (ERR-4).
pub const SERVER_BAD_XML_TEXT: &str = "upstream-bad-xml";
/// The close reason of a clean end.
pub const STREAM_CLOSED: &str = "stream closed";
/// The close reason when the gateway drains.
pub const SHUTTING_DOWN: &str = "gateway shutting down";
/// Where in a session's life an ending can happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the client has had a server `<open/>`.
    BeforeStream,
    /// While the stream is open (relaying or closing).
    InStream,
    /// Either.
    Any,
}

/// A stream error condition, fixed or taken from the ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Always this one.
    Is(StreamCondition),
    /// The condition of the client message's refusal (`Ending::Refused`).
    OfRefusal,
    /// The condition the server's fault deserves (`Ending::ServerBadXml`).
    OfServerFault,
}

/// The `<text/>` of a gateway-made stream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// None.
    None,
    /// The failure class of the ending.
    Class,
    /// Always this text.
    Is(&'static str),
}

/// What the client is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToClient {
    /// Nothing (gone, or told already).
    Nothing,
    /// `<close/>`.
    Close,
    /// `<stream:error>` then `<close/>`.
    Error {
        /// The condition.
        condition: Cond,
        /// The `<text/>`.
        text: Text,
    },
    /// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>` then `<close/>` (TLS-7).
    StartTlsFailure,
    /// `<close see-other-uri=…/>` with `shutdown.redirect_uri`.
    SeeOtherUri,
}

/// What the upstream gets, once the stream is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToUpstream {
    /// Only possible before the stream: nothing beyond the universal discard rule.
    Nothing,
    /// Only possible before the stream: the connection being set up is dropped.
    Discard,
    /// close_notify and FIN, no `</stream:stream>`.
    Finish,
    /// `</stream:stream>` unless already sent, then close_notify and FIN.
    FinishWithStreamEnd,
    /// `<stream:error>` (the server's fault) and `</stream:stream>` unless already sent, then
    /// close_notify and FIN.
    ErrorThenStreamEnd,
    /// No `</stream:stream>` (resumable), close_notify and FIN, and a short linger.
    Abort,
}

/// The close code of the WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Always this code.
    Is(u16),
    /// 1008 for a policy limit (nesting depth), else 1000 (CONFORMANCE J).
    OfRefusal,
    /// The code of the violation.
    OfViolation,
}

/// The reason of the WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Always this text.
    Is(&'static str),
    /// The name of the condition sent to the client.
    Condition,
    /// The failure class of the ending.
    Class,
    /// The reason of the violation.
    OfViolation,
}

/// A `client_elements_refused_total` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Always this label.
    Is(&'static str),
    /// The refusal's own label.
    OfRefusal,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The row's name in the docs and in logs.
    pub name: &'static str,
    /// What happened.
    pub when: &'static str,
    /// Where in the session's life.
    pub phase: Phase,
    /// `xmppgw_sessions_ended_total{outcome}`.
    pub outcome: Outcome,
    /// What the client is sent.
    pub client: ToClient,
    /// What the upstream gets.
    pub upstream: ToUpstream,
    /// The WebSocket close frame, `None` when the client is gone.
    pub websocket: Option<(Code, Reason)>,
    /// `xmppgw_client_elements_refused_total{reason}`.
    pub refused: Option<Refusal>,
    /// `xmppgw_stream_errors_total{condition, side="gateway"}`.
    pub gateway_error: Option<Cond>,
    /// `xmppgw_upstream_connect_failures_total{class}`.
    pub connect_failure: bool,
}

const fn error(condition: StreamCondition) -> ToClient {
    ToClient::Error { condition: Cond::Is(condition), text: Text::None }
}

const NORMAL_CONDITION: Option<(Code, Reason)> = Some((Code::Is(close_code::NORMAL), Reason::Condition));

/// The table: one row per [`Ending`] variant, in the order of [`Ending::index`].
pub const ROWS: [Row; 25] = [
    Row {
        name: "open-timeout",
        when: "no `<open/>` within `limits.open_timeout_secs`",
        phase: Phase::BeforeStream,
        outcome: Outcome::OpenTimeout,
        client: error(StreamCondition::ConnectionTimeout),
        upstream: ToUpstream::Nothing,
        websocket: NORMAL_CONDITION,
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::ConnectionTimeout)),
        connect_failure: false,
    },
    Row {
        name: "close-before-open",
        when: "the first message is `<close/>`",
        phase: Phase::BeforeStream,
        outcome: Outcome::Clean,
        client: ToClient::Close,
        upstream: ToUpstream::Nothing,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is(STREAM_CLOSED))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "not-open",
        when: "the first message is another element (FR-2)",
        phase: Phase::BeforeStream,
        outcome: Outcome::ClientError,
        client: error(StreamCondition::InvalidNamespace),
        upstream: ToUpstream::Nothing,
        websocket: NORMAL_CONDITION,
        refused: Some(Refusal::Is("not-open")),
        gateway_error: Some(Cond::Is(StreamCondition::InvalidNamespace)),
        connect_failure: false,
    },
    Row {
        name: "refused",
        when: "the XML core refuses a client message, on arrival also while the stream is being set up: not well-formed, restricted XML, wrong namespace, encoding, nesting, attribute or namespace declaration caps",
        phase: Phase::Any,
        outcome: Outcome::ClientError,
        client: ToClient::Error { condition: Cond::OfRefusal, text: Text::None },
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: Some((Code::OfRefusal, Reason::Condition)),
        refused: Some(Refusal::OfRefusal),
        gateway_error: Some(Cond::OfRefusal),
        connect_failure: false,
    },
    Row {
        name: "no-domain",
        when: "`<open/>` without a usable `to` (missing, an IP literal, not a domain name)",
        phase: Phase::BeforeStream,
        outcome: Outcome::HostUnknown,
        client: error(StreamCondition::HostUnknown),
        upstream: ToUpstream::Nothing,
        websocket: NORMAL_CONDITION,
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::HostUnknown)),
        connect_failure: false,
    },
    Row {
        name: "domain-not-served",
        when: "the domain is neither a static upstream nor allowed by `[domains]` (D17)",
        phase: Phase::BeforeStream,
        outcome: Outcome::HostUnknown,
        client: ToClient::Error { condition: Cond::Is(StreamCondition::HostUnknown), text: Text::Class },
        upstream: ToUpstream::Nothing,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Class)),
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::HostUnknown)),
        connect_failure: true,
    },
    Row {
        name: "queue-full",
        when: "more than `limits.max_queued_messages` messages, or `limits.max_element_bytes` bytes, before the stream is open (LIM-4)",
        phase: Phase::BeforeStream,
        outcome: Outcome::ClientError,
        client: ToClient::Error {
            condition: Cond::Is(StreamCondition::PolicyViolation),
            text: Text::Is(QUEUE_FULL_TEXT),
        },
        upstream: ToUpstream::Discard,
        websocket: Some((Code::Is(close_code::POLICY), Reason::Is(QUEUE_FULL_TEXT))),
        refused: Some(Refusal::Is("queue-full")),
        gateway_error: Some(Cond::Is(StreamCondition::PolicyViolation)),
        connect_failure: false,
    },
    Row {
        name: "upstream-failed",
        when: "no route could be reached or secured within the budget (D6, D12)",
        phase: Phase::BeforeStream,
        outcome: Outcome::UpstreamFailed,
        client: ToClient::Error { condition: Cond::Is(StreamCondition::RemoteConnectionFailed), text: Text::Class },
        upstream: ToUpstream::Discard,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Class)),
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::RemoteConnectionFailed)),
        connect_failure: true,
    },
    Row {
        name: "too-big",
        when: "a client message over `limits.max_element_bytes` (LIM-2, D10)",
        phase: Phase::Any,
        outcome: Outcome::ClientError,
        client: error(StreamCondition::PolicyViolation),
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: Some((Code::Is(close_code::MESSAGE_TOO_BIG), Reason::Condition)),
        refused: Some(Refusal::Is("too-big")),
        gateway_error: Some(Cond::Is(StreamCondition::PolicyViolation)),
        connect_failure: false,
    },
    Row {
        name: "websocket-violation",
        when: "a binary frame, invalid UTF-8, an unmasked frame or another WebSocket protocol violation",
        phase: Phase::Any,
        outcome: Outcome::ClientError,
        client: ToClient::Nothing,
        upstream: ToUpstream::Finish,
        websocket: Some((Code::OfViolation, Reason::OfViolation)),
        refused: Some(Refusal::Is("websocket")),
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "client-vanished",
        when: "the WebSocket ended without `<close/>` (CL-4), or after the client's `<close/>` before the server answered",
        phase: Phase::Any,
        outcome: Outcome::ClientVanished,
        client: ToClient::Nothing,
        upstream: ToUpstream::Abort,
        websocket: None,
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "client-stalled",
        when: "a message could not be delivered within `ping_interval_secs` + `pong_timeout_secs`, or the pong to the client's own ping within `pong_timeout_secs`",
        phase: Phase::Any,
        outcome: Outcome::ClientStalled,
        client: ToClient::Nothing,
        upstream: ToUpstream::Abort,
        websocket: None,
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "drained",
        when: "the gateway drains and `shutdown.redirect_uri` is not set",
        phase: Phase::Any,
        outcome: Outcome::Drained,
        client: error(StreamCondition::SystemShutdown),
        upstream: ToUpstream::Abort,
        websocket: Some((Code::Is(close_code::GOING_AWAY), Reason::Is(SHUTTING_DOWN))),
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::SystemShutdown)),
        connect_failure: false,
    },
    Row {
        name: "redirected",
        when: "the gateway drains and `shutdown.redirect_uri` is set (RFC 7395 §3.6.1)",
        phase: Phase::Any,
        outcome: Outcome::Drained,
        client: ToClient::SeeOtherUri,
        upstream: ToUpstream::Abort,
        websocket: Some((Code::Is(close_code::GOING_AWAY), Reason::Is(SHUTTING_DOWN))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "unexpected-open",
        when: "an `<open/>` that is not a restart right after SASL `<success/>` (D3, SASL-5), also one sent while the stream is being set up",
        phase: Phase::Any,
        outcome: Outcome::ClientError,
        client: error(StreamCondition::BadFormat),
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: NORMAL_CONDITION,
        refused: Some(Refusal::Is("unexpected-open")),
        gateway_error: Some(Cond::Is(StreamCondition::BadFormat)),
        connect_failure: false,
    },
    Row {
        name: "restart-elsewhere",
        when: "a restart `<open/>` naming another domain (SASL-6)",
        phase: Phase::InStream,
        outcome: Outcome::ClientError,
        client: error(StreamCondition::HostUnknown),
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: NORMAL_CONDITION,
        refused: Some(Refusal::Is("restart-elsewhere")),
        gateway_error: Some(Cond::Is(StreamCondition::HostUnknown)),
        connect_failure: false,
    },
    Row {
        name: "element-after-close",
        when: "a client element after its own `<close/>` (RFC 7395 §3.6)",
        phase: Phase::InStream,
        outcome: Outcome::ClientError,
        client: error(StreamCondition::NotWellFormed),
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: NORMAL_CONDITION,
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::NotWellFormed)),
        connect_failure: false,
    },
    Row {
        name: "client-starttls",
        when: "the client sends `<starttls/>` (TLS-7)",
        phase: Phase::InStream,
        outcome: Outcome::ClientError,
        client: ToClient::StartTlsFailure,
        upstream: ToUpstream::Finish,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is("STARTTLS is not available over WebSocket"))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "closed",
        when: "`<close/>` and `</stream:stream>` exchanged in either order (CL-1, CL-2); or the server hung up after the client's `<close/>`; or the client left after the server's end",
        phase: Phase::InStream,
        outcome: Outcome::Clean,
        client: ToClient::Nothing,
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is(STREAM_CLOSED))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "closed-after-server-error",
        when: "as `closed`, the server's end following its `<stream:error>` (ERR-1; e.g. `conflict`, `system-shutdown`)",
        phase: Phase::InStream,
        outcome: Outcome::ServerStreamError,
        client: ToClient::Nothing,
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is(STREAM_CLOSED))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "close-timeout",
        when: "the other side did not finish a clean close within `limits.close_timeout_secs`",
        phase: Phase::InStream,
        outcome: Outcome::CloseTimeout,
        client: ToClient::Nothing,
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is("close timed out"))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "server-bad-xml",
        when: "the server sent XML that is not well-formed, restricted, or over a limit (ERR-4, LIM-3)",
        phase: Phase::InStream,
        outcome: Outcome::ServerError,
        client: ToClient::Error {
            condition: Cond::Is(StreamCondition::RemoteConnectionFailed),
            text: Text::Is(SERVER_BAD_XML_TEXT),
        },
        upstream: ToUpstream::ErrorThenStreamEnd,
        websocket: Some((Code::Is(close_code::NORMAL), Reason::Is(SERVER_BAD_XML_TEXT))),
        refused: None,
        gateway_error: Some(Cond::OfServerFault),
        connect_failure: false,
    },
    Row {
        name: "server-vanished",
        when: "the upstream connection ended without `</stream:stream>` (D5), or a write to it did not complete within `ping_interval_secs` + `pong_timeout_secs` (the server stopped reading)",
        phase: Phase::InStream,
        outcome: Outcome::ServerVanished,
        client: ToClient::Nothing,
        upstream: ToUpstream::Abort,
        websocket: Some((Code::Is(close_code::BAD_GATEWAY), Reason::Is("upstream connection lost"))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "pong-timeout",
        when: "no pong within `limits.pong_timeout_secs` of a ping",
        phase: Phase::InStream,
        outcome: Outcome::PongTimeout,
        client: ToClient::Nothing,
        upstream: ToUpstream::Abort,
        websocket: Some((Code::Is(close_code::POLICY), Reason::Is("no pong within the deadline"))),
        refused: None,
        gateway_error: None,
        connect_failure: false,
    },
    Row {
        name: "idle-timeout",
        when: "no stanza either way for `limits.idle_timeout_secs`",
        phase: Phase::InStream,
        outcome: Outcome::IdleTimeout,
        client: error(StreamCondition::ConnectionTimeout),
        upstream: ToUpstream::FinishWithStreamEnd,
        websocket: NORMAL_CONDITION,
        refused: None,
        gateway_error: Some(Cond::Is(StreamCondition::ConnectionTimeout)),
        connect_failure: false,
    },
];
