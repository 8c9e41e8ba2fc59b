//! The states of a session and the data each one holds. A state carries exactly what it needs:
//! a splitter exists only once a connection does, the connecting queue only until the stream is
//! open, the close deadline only while closing. No behaviour here beyond small accessors.

use std::collections::VecDeque;
use std::time::Instant;

use crate::upstream::FailureClass;
use crate::xml::client::{ClientElementKind, OpenRequest};
use crate::xml::condition::StreamCondition;
use crate::xml::splitter::{StreamHeader, StreamSplitter};

use super::ending::Ending;
use super::events::{Action, Timer};
use super::settings::Settings;

/// Where a session stands.
#[derive(Debug)]
pub enum State {
    /// Waiting for the client's `<open/>` (timer `Open`).
    AwaitingOpen,
    /// The shell is resolving and connecting a route (timer `Setup`).
    Connecting(Setup),
    /// A route is connected; the upstream stream is being negotiated (timers `Setup`, `Attempt`).
    Negotiating(Negotiation),
    /// The stream is open both ways (timers `Ping` or `Pong`, and `Idle` when configured).
    Relaying(Relay),
    /// One side has closed; waiting for the other (timers `Ping` or `Pong`, and `Close`).
    Closing(Relay, Closing),
    /// Over; nothing more happens.
    Ended(Ending),
}

/// The client's side of an upstream setup: its `<open/>`, the domain, and what it sent meanwhile.
#[derive(Debug)]
pub struct Setup {
    /// The client's `<open/>`.
    pub request: OpenRequest,
    /// The normalised domain.
    pub domain: String,
    /// Client messages received before the stream is open, replayed once it is (LIM-4).
    pub queue: Queue,
    /// `<see-other-host/>` redirects followed on the current route (D4).
    pub redirects: usize,
    /// The class of the last route that failed: the session's failure if no route is left.
    pub last_failure: Option<FailureClass>,
}

/// A client message accepted while the upstream is being set up: validated on arrival, held
/// as what the XML layer made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// `<close/>`.
    Close,
    /// Any element but `<open/>`: the bytes to relay and what they are.
    Element {
        /// The bytes to relay (a leading XML declaration already removed).
        xml: String,
        /// What the element is.
        kind: ClientElementKind,
    },
}

/// A bounded queue of client messages (LIM-4).
#[derive(Debug, Default)]
pub struct Queue {
    messages: VecDeque<Queued>,
    bytes: usize,
}

impl Queue {
    /// Adds a message of `size` bytes as received; `false` (and nothing added) when it would
    /// make the queue hold more than `max_messages` messages or `max_bytes` bytes.
    pub fn push(&mut self, message: Queued, size: usize, (max_messages, max_bytes): (usize, usize)) -> bool {
        if self.messages.len() >= max_messages || self.bytes + size > max_bytes {
            return false;
        }
        self.bytes += size;
        self.messages.push_back(message);
        true
    }

    /// The messages, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Queued> + '_ {
        self.bytes = 0;
        self.messages.drain(..)
    }

    /// How many messages and bytes are held.
    pub fn len(&self) -> (usize, usize) {
        (self.messages.len(), self.bytes)
    }
}

/// A connected route whose stream is being negotiated.
#[derive(Debug)]
pub struct Negotiation {
    /// The client's side.
    pub setup: Setup,
    /// The server's bytes (a fresh one after `<proceed/>`).
    pub splitter: StreamSplitter,
    /// How far the negotiation is.
    pub step: Step,
    /// When the current connect phase (`tls`, then `stream`) started, for its histogram.
    pub phase_started: Instant,
}

/// The steps of negotiating the upstream stream, in order.
#[derive(Debug)]
pub enum Step {
    /// The plaintext header went out (HDR-4: no `from`); the server's is awaited.
    PreTlsHeader,
    /// The server's pre-TLS features are awaited (discarded whatever they say, TLS-2, TLS-4).
    PreTlsFeatures,
    /// `<starttls/>` went out; `<proceed/>` is awaited, with nothing after it (TV-14).
    ProceedAwaited,
    /// The shell runs the TLS handshake.
    TlsHandshake,
    /// The secured header went out; the server's is awaited.
    PostTlsHeader,
    /// The server's secured header arrived; its first element tells a redirect (D4) from the
    /// stream. The header reaches the client only then.
    FirstElement(Box<StreamHeader>),
}

impl Step {
    /// Whether the step is part of securing the connection (the `tls` phase) rather than the
    /// stream header exchange after it.
    pub fn securing(&self) -> bool {
        matches!(self, Step::PreTlsHeader | Step::PreTlsFeatures | Step::ProceedAwaited | Step::TlsHandshake)
    }
}

/// The upstream stream while it is open.
#[derive(Debug)]
pub struct UpstreamStream {
    /// The server's bytes.
    pub splitter: StreamSplitter,
    /// The latest client `<open/>` (its `from`/`version`/`xml:lang` go into restart headers).
    pub request: OpenRequest,
    /// The normalised domain.
    pub domain: String,
    /// Client elements batched for one write (less than `UPSTREAM_BATCH_BYTES` between inputs).
    pub batched: Vec<u8>,
    /// `</stream:stream>` went upstream.
    pub end_sent: bool,
}

/// Where a stream restart (RFC 6120 §6.4.6, SASL-3) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// No restart expected: an `<open/>` now is `<bad-format/>` (D3).
    No,
    /// The server's SASL `<success/>` was relayed and no client element followed: the client's
    /// `<open/>` restarts the stream (SASL-5).
    Allowed,
    /// The restart header went upstream; the server's new header is awaited.
    AwaitingHeader,
}

/// Whether the client owes a pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The `Ping` timer runs.
    Quiet,
    /// A ping went out at `sent_at`; the `Pong` timer runs.
    AwaitingPong {
        /// When the ping was sent (the next ping is due an interval after it).
        sent_at: Instant,
    },
}

/// An open stream.
#[derive(Debug)]
pub struct Relay {
    /// The upstream side.
    pub upstream: UpstreamStream,
    /// The restart bookkeeping.
    pub restart: Restart,
    /// The condition of a `<stream:error>` the server sent (its end then means
    /// `server_stream_error`).
    pub server_error: Option<StreamCondition>,
    /// Ping bookkeeping.
    pub liveness: Liveness,
    /// When a stanza last crossed either way (idle timeout).
    pub last_activity: Instant,
}

/// Who closed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client's `<close/>` (or `<stream:error>`) became `</stream:stream>` upstream; the
    /// server's end is awaited.
    Client,
    /// The server's end became `<close/>` to the client; the client's `<close/>` is awaited,
    /// its last stanzas still relayed (CL-2).
    Server,
}

/// A clean close in progress.
#[derive(Debug, Clone, Copy)]
pub struct Closing {
    /// Who closed first.
    pub by: ClosedBy,
    /// When the close times out (timer `Close`).
    pub deadline: Instant,
    /// The server's read side has ended (after its `</stream:stream>`, TV-92): nothing more is
    /// read, writes still go out.
    pub upstream_eof: bool,
}

impl State {
    /// A short name, for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            State::AwaitingOpen => "awaiting-open",
            State::Connecting(_) => "connecting",
            State::Negotiating(_) => "negotiating",
            State::Relaying(_) => "relaying",
            State::Closing(_, Closing { by: ClosedBy::Client, .. }) => "closing-by-client",
            State::Closing(_, Closing { by: ClosedBy::Server, .. }) => "closing-by-server",
            State::Ended(_) => "ended",
        }
    }

    /// Which timers this state runs, in [`Timer::ALL`] order: the invariant the core keeps
    /// between inputs.
    pub fn timers(&self, settings: &Settings) -> Vec<Timer> {
        let liveness = |relay: &Relay| match relay.liveness {
            Liveness::Quiet => Timer::Ping,
            Liveness::AwaitingPong { .. } => Timer::Pong,
        };
        match self {
            State::AwaitingOpen => vec![Timer::Open],
            State::Connecting(_) => vec![Timer::Setup],
            State::Negotiating(_) => vec![Timer::Setup, Timer::Attempt],
            State::Relaying(relay) if settings.idle_timeout.is_some() => vec![liveness(relay), Timer::Idle],
            State::Relaying(relay) => vec![liveness(relay)],
            State::Closing(relay, _) => vec![liveness(relay), Timer::Close],
            State::Ended(_) => vec![],
        }
    }
}

/// The timers the core has armed (what it told the shell with `SetTimer`/`ClearTimer`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timers([Option<Instant>; 7]);

impl Timers {
    /// Arms `timer` at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant, out: &mut VecDeque<Action>) {
        self.0[timer.index()] = Some(at);
        out.push_back(Action::SetTimer(timer, at));
    }

    /// Disarms `timer` if armed.
    pub fn clear(&mut self, timer: Timer, out: &mut VecDeque<Action>) {
        if self.0[timer.index()].take().is_some() {
            out.push_back(Action::ClearTimer(timer));
        }
    }

    /// When `timer` is due, if armed.
    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.index()]
    }

    /// Takes note that `timer` fired; `false` when it was not armed (a stale report).
    pub fn fired(&mut self, timer: Timer) -> bool {
        self.0[timer.index()].take().is_some()
    }

    /// Forgets every timer ([`Action::Done`] tells the shell).
    pub fn forget_all(&mut self) {
        self.0 = [None; 7];
    }

    /// The armed timers, in [`Timer::ALL`] order.
    pub fn armed(&self) -> Vec<Timer> {
        Timer::ALL.into_iter().filter(|timer| self.0[timer.index()].is_some()).collect()
    }
}
