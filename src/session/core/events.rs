//! What goes into the session core ([`Input`]) and what comes out of it ([`Action`]).
//!
//! Plain data: the vocabulary between the core and the async shell that executes it. Nothing
//! here decides anything.

use std::time::{Duration, Instant};

use super::super::outcome::Outcome;
use crate::metrics::Direction;
use crate::upstream::FailureClass;
use crate::xml::condition::StreamCondition;

/// One thing that happened, fed to [`super::SessionCore::handle`] with the time it happened.
#[derive(Debug)]
pub enum Input<'a> {
    /// A WebSocket text message from the client. One over the session's element limit (its
    /// upstream's, D10) is refused by the core (LIM-2).
    ClientText(&'a str),
    /// A client message larger than the largest element limit: the WebSocket layer refused it
    /// from its frame header, before buffering it (LIM-2).
    ClientTooBig,
    /// A WebSocket-level violation (binary frame, invalid UTF-8, unmasked frame ...): the
    /// WebSocket is failed with this close code and reason (RFC 6455 §7.4.1).
    ClientViolation {
        /// The close code the violation deserves.
        code: u16,
        /// A short reason for the close frame.
        reason: &'static str,
    },
    /// The WebSocket ended (Close frame, EOF, I/O error) or a write to it failed.
    ClientGone,
    /// A write to the client did not complete within [`super::Settings::send_deadline`]: the
    /// client stopped reading.
    ClientStalled,
    /// A pong (or any other sign of life without data) from the client.
    ClientPong,
    /// No further client message is ready right now: client elements batched for the server
    /// are written out. The shell feeds this before it waits (see [`super::SessionCore::wants_flush`]).
    ClientIdle,
    /// Bytes read from the upstream connection (plaintext, or decrypted TLS).
    ServerBytes(&'a [u8]),
    /// Whether the domain of [`ConnectTo::FirstRoute`] is served, fed before anything else
    /// about that connect.
    DomainLookup(DomainLookup),
    /// The connection asked for by [`Action::Connect`] is up.
    UpstreamConnected(Connected),
    /// The connection asked for by [`Action::Connect`] could not be made.
    UpstreamConnectFailed(ConnectFailure),
    /// The TLS handshake asked for by [`Action::StartTls`] succeeded, certificate verified.
    TlsReady,
    /// The TLS handshake asked for by [`Action::StartTls`] failed.
    TlsFailed {
        /// The D6 failure class (e.g. `tls-cert-name-mismatch`).
        class: FailureClass,
    },
    /// The upstream connection ended.
    UpstreamGone(UpstreamGone),
    /// A timer set by [`Action::SetTimer`] expired.
    TimerFired(Timer),
    /// The gateway is draining: the session is told to leave.
    Drain,
}

/// How the upstream connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamGone {
    /// The read side ended: EOF (possibly a half-close, TV-92) or a read error.
    ReadEnd,
    /// A write failed: the server is not reading any more.
    WriteError,
}

/// How a route secures its connection; chosen by the shell (static upstream or SRV record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSecurity {
    /// Plaintext stream header, `<starttls/>`, then TLS (`_xmpp-client`, `tls = "starttls"`).
    StartTls,
    /// TLS from the first byte (`_xmpps-client`, `tls = "direct"`, XEP-0368).
    DirectTls,
    /// No TLS at all: only an explicit static `tls = "none"` upstream (D9).
    Plain,
}

/// A connected route, reported with [`Input::UpstreamConnected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// How to secure it.
    pub security: RouteSecurity,
    /// A PROXY protocol header to write before anything else, when the upstream is configured
    /// for one (the shell knows both addresses).
    pub proxy_header: Option<Vec<u8>>,
    /// When this route's attempt started (its DNS and TCP time count against the attempt budget).
    pub attempt_started: Instant,
}

/// Whether the client's domain is served, and with which element limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainLookup {
    /// Served; `max_element_bytes` is its upstream's element limit, both ways (D10).
    Served {
        /// The element limit of the session from now on.
        max_element_bytes: usize,
    },
    /// Not served by this gateway (D17); answered `<host-unknown/>`, nothing is connected.
    NotServed {
        /// The failure class (`domain-not-allowed`).
        class: FailureClass,
    },
}

/// Why [`Action::Connect`] produced no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// This route (or the resolution of the domain) failed; the core asks for the next route.
    RouteFailed {
        /// The D6 failure class (`dns-nxdomain`, `connect-refused`, `address-refused` ...).
        class: FailureClass,
    },
    /// Every route has been tried: the core ends with the last failure it knows of.
    NoMoreRoutes,
}

/// What the shell is asked to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTo {
    /// Resolve the domain (a static upstream, SRV, else A/AAAA) and connect its first route.
    FirstRoute {
        /// The normalised domain from the client's `<open/>`.
        domain: String,
    },
    /// The next route of the plan made for [`ConnectTo::FirstRoute`].
    NextRoute,
    /// A `<see-other-host/>` target of the current route: same TLS mode, address guard and
    /// certificate identity (the original domain, CERT-5); the route's port when `port` is `None`.
    Redirect {
        /// Host name or IP address.
        host: String,
        /// Port, when the redirect named one.
        port: Option<u16>,
    },
}

/// [`Action::Connect`]'s request: where, and within which budget (D12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Where.
    pub to: ConnectTo,
    /// Each route's own budget, from the start of its address lookup: its DNS and TCP time
    /// count against it, and the core times the rest (TLS, stream headers) against it too.
    pub attempt_budget: Duration,
    /// The whole setup's deadline; the shell reports `RouteFailed` with a `*-timeout` class at
    /// the latest then.
    pub overall_deadline: Instant,
}

/// How the upstream connection is closed at the end of a route or of the session. Bytes to
/// write first (queued elements, `</stream:stream>`, a stream error) come as [`Action::ToServer`]
/// before this action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamClose {
    /// Drop a connection still being set up (or cancel the connect in flight) at once.
    Discard,
    /// TLS close_notify and FIN, waiting a little for the server's own close (TLS-9).
    Finish,
    /// TLS close_notify and FIN, then read and drop what the server still sends until it closes
    /// too, for a short while (the linger of `abort_upstream`, see `session::relay`). Used when
    /// the stream must stay resumable (CL-4): no `</stream:stream>` was written.
    Abort,
}

/// The timers of a session; each is armed at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The client's `<open/>` must arrive by then.
    Open,
    /// The whole upstream setup must be done by then (`connect.overall_timeout_secs`).
    Setup,
    /// The current route's attempt must be done by then (`connect.attempt_timeout_secs`).
    Attempt,
    /// Time to ping the client.
    Ping,
    /// The client must answer the ping by then.
    Pong,
    /// No stanza either way since a while: check the idle timeout.
    Idle,
    /// The other side must finish the clean close by then.
    Close,
}

impl Timer {
    /// Every timer, in a fixed order.
    pub const ALL: [Timer; 7] =
        [Timer::Open, Timer::Setup, Timer::Attempt, Timer::Ping, Timer::Pong, Timer::Idle, Timer::Close];

    /// The timer's position in [`Timer::ALL`].
    pub fn index(self) -> usize {
        match self {
            Timer::Open => 0,
            Timer::Setup => 1,
            Timer::Attempt => 2,
            Timer::Ping => 3,
            Timer::Pong => 4,
            Timer::Idle => 5,
            Timer::Close => 6,
        }
    }
}

/// Who a stream error counted in `xmppgw_stream_errors_total` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Made by the gateway.
    Gateway,
    /// Relayed from the server.
    Server,
    /// Sent by the client.
    Client,
}

impl Side {
    /// The `side` label value.
    pub fn label(self) -> &'static str {
        match self {
            Side::Gateway => "gateway",
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// A metric update. The shell applies it to `crate::metrics::Metrics`; the labels are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// One element relayed: `xmppgw_stanzas_total{direction}` and `xmppgw_bytes_total{direction}`.
    Relayed {
        /// Which way.
        direction: Direction,
        /// Bytes of the element.
        bytes: usize,
    },
    /// `xmppgw_stream_errors_total{condition,side}`.
    StreamError {
        /// The condition (bounded: anything undefined counts as `undefined-condition`).
        condition: StreamCondition,
        /// Who sent it.
        side: Side,
    },
    /// `xmppgw_client_elements_refused_total{reason}`.
    ClientRefused(&'static str),
    /// `xmppgw_upstream_connect_failures_total{class}`.
    ConnectFailure(FailureClass),
    /// `xmppgw_upstream_connect_duration_seconds{phase}` for the phases the core sees (`tls`,
    /// `stream`); `dns` and `tcp` are the shell's.
    ConnectPhase {
        /// The phase label.
        phase: &'static str,
        /// How long it took.
        elapsed: Duration,
    },
}

/// One thing the shell must do, in the order the core emits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one WebSocket text message to the client.
    ToClient(String),
    /// Send a WebSocket ping to the client.
    Ping,
    /// Write these bytes to the upstream connection (in order with every other write).
    ToServer(Vec<u8>),
    /// Connect a route (see [`ConnectRequest`]); answered with `UpstreamConnected` or
    /// `UpstreamConnectFailed`.
    Connect(ConnectRequest),
    /// Run the TLS handshake on the current connection (SNI and certificate: the domain);
    /// answered with `TlsReady` or `TlsFailed`. The shell reads nothing from the connection
    /// until then.
    StartTls,
    /// Close the upstream connection (the current route's, or the session's at its end).
    CloseUpstream(UpstreamClose),
    /// Close the WebSocket with this code and reason (at most 123 bytes), when the client is
    /// still connected, and wait briefly for its answer (RFC 6455 §5.5.1).
    CloseClient {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
    /// Arm (or re-arm) a timer; answered with `TimerFired` once it expires.
    SetTimer(Timer, Instant),
    /// Disarm a timer.
    ClearTimer(Timer),
    /// Update a metric.
    Count(Count),
    /// The session is over: record the outcome (`xmppgw_sessions_ended_total{outcome}`), drop
    /// every timer, stop. Nothing follows it.
    Done(Outcome),
}
