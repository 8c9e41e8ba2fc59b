//! The session core: one session's state machine with no I/O, no clock and no tokio, in the
//! manner of rustls's `ConnectionCommon` and quinn-proto's `Connection`.
//!
//! ```text
//!  AwaitingOpen ──<open/>──▶ Connecting ──connected──▶ Negotiating ──first element──▶ Relaying ──▶ Closing ──▶ Ended
//!   (Open)           (Setup)  ▲   │ route failed      (Setup, Attempt)               (Ping|Pong,   (Ping|Pong,
//!                             │   └─▶ next route          │ PROXY header?              Idle)         Close)
//!                             │                           │ header, features,
//!                             └── see-other-host (D4) ◀───┤ <starttls/>, <proceed/>,
//!                                 before the first         │ TLS (the shell's), header
//!                                 element                  ▼
//!                                               every state ──▶ Ended (one row of ending::ROWS)
//! ```
//! Timers in parentheses are the ones each state runs ([`State::timers`]). Inside `Relaying` a
//! client `<open/>` restarts the stream only right after the server's SASL `<success/>`
//! (SASL-3/5); `Closing` records who closed first and until when.
//!
//! Inputs ([`Input`]) come in with the time they happened; actions ([`Action`]) come out in the
//! order the shell must execute them. Every ending goes through [`ending::farewell`], which
//! reads one row of [`ending::ROWS`]. Every XML decision is [`crate::xml`]'s: the core asks
//! [`crate::xml::client::classify`], the splitter and [`crate::xml::framing`], and holds no XML
//! literal of its own. It never writes a client byte upstream before TLS is up (TLS-3), never
//! passes pre-TLS information to the client (TLS-4), and never buffers without a bound: the
//! connecting queue ([`Settings::max_queued_messages`] and one element limit of bytes), the
//! upstream batch (under [`UPSTREAM_BATCH_BYTES`] between inputs) and the splitter (one
//! element plus one read).
//!
//! # How the shell drives it
//!
//! The async shell (`session::shell`) is one loop:
//! 1. `SessionCore::new(settings, now, random_seed)`; then, after every `handle`, execute
//!    [`SessionCore::poll_action`] until `None`, in order: `ToClient` (feed the WebSocket sink;
//!    flush after the batch), `Ping`, `ToServer` (write), `Connect` (for the first route, say
//!    at once whether the domain is served with `DomainLookup`; then resolve and connect a route
//!    in a future owned by the loop; `CloseUpstream(Discard)` cancels it),
//!    `StartTls` (hand the TCP stream to the TLS connector), `CloseUpstream` (finish, abort with
//!    linger, or drop), `CloseClient`, `SetTimer`/`ClearTimer` (a table of seven deadlines),
//!    `Count` (the metrics), `Done` (record the outcome and return).
//! 2. Wait for the first of: a WebSocket message, an upstream read (only while
//!    [`SessionCore::reads_upstream`]: one read of at most 4 KiB, fed as `ServerBytes` from the
//!    shared read buffer; when it completes a large element, under `block_in_place`), the
//!    connect or TLS future, the earliest armed timer, the drain signal. A large client message
//!    is handled under `block_in_place` too ([`SessionCore::server_backlog`] tells the size).
//!    Before waiting, feed `ClientIdle` when [`SessionCore::wants_flush`] (after taking any client
//!    message that is already there without waiting).
//! 3. Report what the executed actions ran into: a failed or timed-out client write as
//!    `ClientGone`/`ClientStalled` (writes run under [`Settings::send_deadline`]), a failed
//!    upstream write as `UpstreamGone(WriteError)`, a read EOF or error as `UpstreamGone(ReadEnd)`.
//!
//! Inputs a state does not expect (the shell's contract rules them out, e.g. `TlsReady` with no
//! handshake asked for, server bytes during the handshake, a timer that is not armed) are
//! ignored, never acted on.

mod ending;
mod events;
mod opening;
mod relaying;
mod settings;
mod state;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use ending::{markdown_table, Ending, Phase, Row, ROWS};
pub use events::{
    Action, ConnectFailure, ConnectRequest, ConnectTo, Connected, Count, DomainLookup, Input, RouteSecurity, Side,
    Timer, UpstreamClose, UpstreamGone,
};
pub use settings::{Settings, MAX_REDIRECTS, UPSTREAM_BATCH_BYTES};

use super::outcome::Outcome;
use ending::{Site, Voice};
use state::{State, Timers};

/// Room for actions an idle session keeps (a relayed element takes two or three).
const ACTIONS_KEPT: usize = 4;

/// Room for actions a new session starts with: what the stream's opening queues at most
/// (timers, the upstream header, the client's `<open/>` and features, counts), made once instead
/// of grown three times; trimmed to [`ACTIONS_KEPT`] once the opening is over.
const ACTIONS_OPENING: usize = 16;

/// One session's state machine. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct SessionCore {
    ctx: Ctx,
    state: State,
}

/// What every state shares: settings, the actions going out, the armed timers, the language and
/// stream ids of gateway-made `<open/>`s.
#[derive(Debug)]
struct Ctx {
    settings: Arc<Settings>,
    actions: VecDeque<Action>,
    /// Give the action queue's spare room back once it is empty.
    trim_actions: bool,
    timers: Timers,
    /// `xml:lang` of gateway-made `<open/>`s: the client's, else the default.
    lang: String,
    /// The element limit of this session, both ways: the global one until the domain is
    /// known, then its upstream's (D10).
    element_limit: usize,
    id_seed: u64,
    ids: u64,
}

impl Ctx {
    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn count(&mut self, count: events::Count) {
        self.actions.push_back(Action::Count(count));
    }

    fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.timers.set(timer, at, &mut self.actions);
    }

    fn clear_timer(&mut self, timer: Timer) {
        self.timers.clear(timer, &mut self.actions);
    }

    /// A fresh stream id for a gateway-made `<open/>` (or a server header without one, HDR-6),
    /// new for every `<open/>` (HDR-7).
    fn next_stream_id(&mut self) -> StreamId {
        self.ids += 1;
        StreamId::new(self.id_seed.wrapping_add(self.ids))
    }

    /// Ends the session: the farewell of `ending` at `site`; every timer is dropped with `Done`.
    fn end(&mut self, ending: Ending, site: Site<'_>) -> State {
        let stream_id = self.next_stream_id();
        let voice = Voice {
            stream_id: stream_id.as_str(),
            lang: &self.lang,
            redirect_uri: self.settings.redirect_uri.as_deref(),
        };
        ending::farewell(&ending, site, &voice, &mut self.actions);
        self.timers.forget_all();
        State::Ended(ending)
    }

    /// The ending a client event or the drain brings wherever the session stands; `None` for
    /// the inputs each state handles itself.
    fn common_ending(&self, input: &Input<'_>) -> Option<Ending> {
        match input {
            Input::ClientTooBig => Some(Ending::TooBig),
            Input::ClientViolation { code, reason } => Some(Ending::WebSocketViolation { code: *code, reason }),
            Input::ClientGone => Some(Ending::ClientVanished),
            Input::ClientStalled => Some(Ending::ClientStalled),
            Input::Drain if self.settings.redirect_uri.is_some() => Some(Ending::Redirected),
            Input::Drain => Some(Ending::Drained),
            _ => None,
        }
    }
}

impl SessionCore {
    /// A session that has just been upgraded at `now`, waiting for `<open/>`. `id_seed` makes
    /// the stream ids of gateway-made `<open/>`s (pass a random number).
    pub fn new(settings: Arc<Settings>, now: Instant, id_seed: u64) -> SessionCore {
        let lang = settings.default_lang.clone();
        let open_by = now + settings.open_timeout;
        let element_limit = settings.server_limits.max_element_bytes;
        let timers = Timers::default();
        let actions = VecDeque::with_capacity(ACTIONS_OPENING);
        let mut ctx = Ctx { settings, actions, trim_actions: false, timers, lang, element_limit, id_seed, ids: 0 };
        ctx.set_timer(Timer::Open, open_by);
        SessionCore { ctx, state: State::AwaitingOpen }
    }

    /// Handles one input that happened at `now`; the resulting actions wait in
    /// [`Self::poll_action`]. Once the session has ended, inputs are ignored.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        let input = match input {
            Input::TimerFired(timer) if !self.ctx.timers.fired(timer) => return,
            // LIM-2: over the session's element limit, whatever it is.
            Input::ClientText(text) if text.len() > self.ctx.element_limit => Input::ClientTooBig,
            input => input,
        };
        match self.state {
            State::Ended(_) => {}
            State::Relaying(_) | State::Closing(..) => self.relay_input(now, input),
            State::AwaitingOpen | State::Connecting(_) | State::Negotiating(_) => self.opening_input(now, input),
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }

    /// Checks what the core keeps true between inputs: the armed timers are exactly the state's
    /// ([`State::timers`], the close timer at the close deadline), the connecting queue and the
    /// upstream batch are within their bounds. Returns the first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        let settings = &self.ctx.settings;
        let (armed, expected) = (self.ctx.timers.armed(), self.state.timers(settings));
        if armed != expected {
            return Err(format!("{}: timers {armed:?}, expected {expected:?}", self.state.name()));
        }
        match &self.state {
            State::Connecting(setup) | State::Negotiating(state::Negotiation { setup, .. }) => {
                let (messages, bytes) = setup.queue.len();
                if messages > settings.max_queued_messages || bytes > self.ctx.element_limit {
                    return Err(format!("queue of {messages} messages, {bytes} bytes"));
                }
            }
            State::Relaying(relay) | State::Closing(relay, _)
                if relay.upstream.batched.len() >= UPSTREAM_BATCH_BYTES =>
            {
                return Err(format!("{} bytes batched for the server", relay.upstream.batched.len()));
            }
            _ => {}
        }
        match &self.state {
            State::Closing(_, closing) if self.ctx.timers.deadline(Timer::Close) != Some(closing.deadline) => {
                Err("the close timer is not at the close deadline".to_string())
            }
            _ => Ok(()),
        }
    }

    /// The next action to execute, in order.
    #[inline]
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.ctx.actions.pop_front();
        if action.is_none() && self.ctx.trim_actions {
            self.trim();
        }
        action
    }

    /// What a session keeps once its queue is empty, cut down (out of line: the queue empties
    /// once per turn of the session loop, trimming is wanted far less often).
    #[cold]
    #[inline(never)]
    fn trim(&mut self) {
        // The stream's opening (or a read of many small elements) needed room for many
        // actions; a quiet session keeps room for the few of one element. Trimmed once after
        // the opening and then at each ping, not after every input, so a busy session does
        // not reallocate all the time.
        self.ctx.trim_actions = false;
        self.ctx.actions.shrink_to(ACTIONS_KEPT);
        // Likewise the splitter's buffer and checker (given to the thread), when no element is
        // in progress, and the recycled batch buffer, when nothing is batched: the next read
        // or client element takes or allocates them again.
        if let State::Relaying(relay) = &mut self.state {
            relay.upstream.splitter.release_idle_memory();
            if relay.upstream.batched.is_empty() {
                relay.upstream.batched = Vec::new();
            }
        }
    }

    /// Whether the session is still being set up (waiting for `<open/>`, connecting or
    /// negotiating the upstream stream): the shell keeps what it needs for routes until then.
    pub fn setting_up(&self) -> bool {
        matches!(self.state, State::AwaitingOpen | State::Connecting(_) | State::Negotiating(_))
    }

    /// How the session ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        match &self.state {
            State::Ended(ending) => Some(ending),
            _ => None,
        }
    }

    /// The outcome label, once the session has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.ending().map(Ending::outcome)
    }

    /// Whether the shell should read from the upstream connection now: a connection exists, no
    /// TLS handshake is running, and the server's read side has not ended.
    pub fn reads_upstream(&self) -> bool {
        match &self.state {
            State::Negotiating(negotiation) => !matches!(negotiation.step, state::Step::TlsHandshake),
            State::Relaying(_) => true,
            State::Closing(_, closing) => !closing.upstream_eof,
            State::AwaitingOpen | State::Connecting(_) | State::Ended(_) => false,
        }
    }

    /// How many bytes of the server's stream the splitter holds (an element in progress): the
    /// shell runs the input that completes a large one off the runtime's worker threads.
    pub fn server_backlog(&self) -> usize {
        match &self.state {
            State::Negotiating(negotiation) => negotiation.splitter.buffered_len(),
            State::Relaying(relay) | State::Closing(relay, _) => relay.upstream.splitter.buffered_len(),
            _ => 0,
        }
    }

    /// The element limit of the session (its upstream's once the domain is known, D10).
    pub fn element_limit(&self) -> usize {
        self.ctx.element_limit
    }

    /// Gives back the buffer of an executed [`Action::ToServer`], so that the next batch of
    /// client elements reuses it instead of allocating (one allocation less per batch). A
    /// buffer larger than a batch is dropped, and the kept one goes at the next trim (after a
    /// restart's features, at each ping), so an idle session keeps none.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if let State::Relaying(relay) | State::Closing(relay, _) = &mut self.state {
            let batched = &mut relay.upstream.batched;
            if batched.capacity() == 0 && buffer.capacity() <= UPSTREAM_BATCH_BYTES {
                buffer.clear();
                *batched = buffer;
            }
        }
    }

    /// Whether client elements are batched for the server, waiting for `ClientIdle`.
    pub fn wants_flush(&self) -> bool {
        match &self.state {
            State::Relaying(relay) | State::Closing(relay, _) => !relay.upstream.batched.is_empty(),
            _ => false,
        }
    }

    /// The state's name (`awaiting-open`, `connecting`, `negotiating`, `relaying`,
    /// `closing-by-client`, `closing-by-server`, `ended`), for logs.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }
}

/// A gateway-made stream id: `gw-` and 16 lower-case hex digits, written digit by digit (one is
/// made for every `<open/>`, so it is not worth the formatting machinery and an allocation).
#[derive(Clone, Copy)]
struct StreamId([u8; 19]);

impl StreamId {
    fn new(value: u64) -> Self {
        let mut text = *b"gw-0000000000000000";
        for (i, digit) in text[3..].iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((value >> (60 - 4 * i)) & 0xf) as usize];
        }
        StreamId(text)
    }

    fn as_str(&self) -> &str {
        // ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("gw-")
    }
}
