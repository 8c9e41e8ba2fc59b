//! The async shell of one session: one loop over the client (a WebSocket or a BOSH session, any
//! [`ClientSide`]), the upstream connection and the core's timers, feeding what happens to the
//! [`SessionCore`] and executing the actions it asks for, until it says the session is done.
//!
//! The shell decides nothing about the protocol: which bytes go where, when a session ends and
//! how, are the core's. It owns the sockets, the futures of [`crate::upstream`], the clock, and
//! where CPU-heavy XML checks run ([`super::offload`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use futures_util::FutureExt;
use rand::Rng;
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::config::UpstreamTls;
use crate::drain::DrainWait;
use crate::metrics::{Direction, Metrics};
use crate::upstream::{Budget, Connector, FailureClass, Link};

use super::client_io::{finish_by, ClientInput, Lost};
use super::client_side::ClientSide;
use super::core::{
    Action, ConnectFailure, ConnectRequest, ConnectTo, Connected, Count, DomainLookup, Ending, Input, RouteSecurity,
    SessionCore, Timer, UpstreamClose, UpstreamGone,
};
use super::offload;
use super::outcome::Outcome;
use super::upstream_link::{LinkEvent, Read, UpstreamLink};
use super::{Gateway, SessionContext};

/// The time now, on the runtime's clock (paused in tests), as the core counts it.
fn now() -> StdInstant {
    Instant::now().into_std()
}

/// The deadlines the core has armed, and one sleep for the earliest of them.
struct Timers {
    deadlines: [Option<StdInstant>; 7],
    /// Where `sleep` is set; re-armed only when the earliest deadline moves, so relaying a
    /// stanza registers no timer (docs/PERFORMANCE.md).
    armed_at: Option<StdInstant>,
    sleep: std::pin::Pin<Box<Sleep>>,
    /// A deadline was set or cleared since [`Self::arm`] last looked.
    changed: bool,
    /// `sleep` was polled since it was last pointed somewhere: it holds this task's waker, and
    /// needs polling again only once it has elapsed.
    registered: bool,
}

impl Timers {
    fn new() -> Timers {
        Timers {
            deadlines: [None; 7],
            armed_at: None,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            changed: false,
            registered: false,
        }
    }

    fn set(&mut self, timer: Timer, at: StdInstant) {
        self.deadlines[timer.index()] = Some(at);
        self.changed = true;
    }

    fn clear(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
        self.changed = true;
    }

    /// Points the sleep at the earliest deadline; whether there is one.
    fn arm(&mut self) -> bool {
        if self.changed {
            self.changed = false;
            let earliest = self.deadlines.iter().flatten().min().copied();
            if earliest != self.armed_at {
                if let Some(at) = earliest {
                    self.sleep.as_mut().reset(Instant::from_std(at));
                    self.registered = false;
                }
                self.armed_at = earliest;
            }
        }
        self.armed_at.is_some()
    }

    /// Completes when the sleep has fired. Between re-arms, a session that wakes for anything
    /// else reads the sleep's state instead of polling it (which registers the waker anew).
    fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.registered && !self.sleep.is_elapsed() {
                return std::task::Poll::Pending;
            }
            self.registered = true;
            self.sleep.as_mut().poll(cx)
        })
    }

    /// The timers due at `now`, disarmed.
    fn take_due(&mut self, now: StdInstant) -> Vec<Timer> {
        let mut due = Vec::new();
        for (timer, deadline) in Timer::ALL.iter().zip(self.deadlines.iter_mut()) {
            if deadline.is_some_and(|at| at <= now) {
                *deadline = None;
                due.push(*timer);
                self.changed = true;
            }
        }
        due
    }
}

/// One session's sockets, futures and timers around its core.
pub(crate) struct Shell<'g, C> {
    core: SessionCore,
    client: C,
    upstream: UpstreamLink,
    gateway: &'g Arc<Gateway>,
    context: &'g SessionContext,
    timers: Timers,
    /// The routes of the session's domain, between connects.
    connector: Option<Box<Connector>>,
    /// The normalised domain, once known (SNI and the certificate's identity).
    domain: Option<String>,
    /// The drain signal was passed to the core.
    drained: bool,
    /// Elements and bytes relayed to the server and to the client since the shared counters
    /// were last brought up to date: added to them once per turn of the loop (before the
    /// client's messages are flushed, and when the session ends) instead of once per element,
    /// since every session of every runtime thread writes those counters.
    relayed: [RelayedTally; 2],
}

/// Elements and bytes relayed in one direction, not yet in the metrics.
#[derive(Debug, Default, Clone, Copy)]
struct RelayedTally {
    elements: u64,
    bytes: u64,
}

/// How long the server gets to take a farewell (the gateway's `</stream:stream>`).
const FAREWELL_WRITE: std::time::Duration = std::time::Duration::from_secs(2);

impl<'g, C: ClientSide> Shell<'g, C> {
    /// A shell around `client`, with a new core.
    pub(crate) fn new(client: C, gateway: &'g Arc<Gateway>, context: &'g SessionContext) -> Self {
        let settings = gateway.settings.clone();
        let core = SessionCore::new(settings, now(), rand::rng().random());
        Shell {
            core,
            client,
            upstream: UpstreamLink::default(),
            gateway,
            context,
            timers: Timers::new(),
            connector: None,
            domain: None,
            drained: false,
            relayed: [RelayedTally::default(); 2],
        }
    }

    /// The client side, once the session is over.
    pub(crate) fn into_client(self) -> C {
        self.client
    }

    fn metrics(&self) -> &'g Metrics {
        &self.gateway.metrics
    }

    /// Runs the session to its end; the outcome. Takes the shell by reference: by value, the
    /// task would hold the shell twice (as the argument and as the running future's local).
    pub(crate) async fn run(&mut self) -> Outcome {
        // One wait on the drain signal for the whole session, kept in this future (no
        // allocation): a new wait at every turn of the loop took two locks that every session
        // of every runtime thread shares; this one reads a flag once it is registered.
        let context = self.context;
        let pinned = std::pin::pin!(context.drain.cancelled());
        let mut drain = context.drain.wait(pinned);
        loop {
            if let Some(outcome) = self.execute().await {
                self.publish_relayed();
                return outcome;
            }
            if self.connector.is_some() && !self.core.setting_up() {
                // The routes are not needed once the stream is open: about 1 KiB per session.
                self.connector = None;
            }
            // Before the flush: a client that has the answer finds it counted.
            self.publish_relayed();
            if let Err(lost) = self.client.flush().await {
                self.client_lost(lost);
                continue;
            }
            if self.core.wants_flush() {
                // Client elements are batched for the server: take the client's next message
                // if it is already here, else write the batch out.
                match self.client.next_input().now_or_never() {
                    Some(input) => self.client_input(input),
                    None => self.core.handle(now(), Input::ClientIdle),
                }
                continue;
            }
            self.wait(&mut drain).await;
        }
    }

    /// Waits for the next thing to happen and feeds it to the core.
    async fn wait(&mut self, drain: &mut DrainWait<'_, '_>) {
        let timed = self.timers.arm();
        let reads = self.core.reads_upstream() && self.upstream.is_attached();
        let Shell { core, client, upstream, timers, drained, .. } = self;
        tokio::select! {
            biased;
            // First the upstream: a connect or a handshake that finished by its deadline tells
            // its own class before the core's timer for the same deadline fires.
            event = upstream.next_event(reads, |read| server_read(core, read)) => match event {
                LinkEvent::Connected(connector, result) => {
                    self.connector = Some(connector);
                    self.connect_result(result);
                }
                LinkEvent::Secured(Ok(())) => self.core.handle(now(), Input::TlsReady),
                LinkEvent::Secured(Err(class)) => self.core.handle(now(), Input::TlsFailed { class }),
                LinkEvent::Read(()) => {}
            },
            input = client.next_input() => self.client_input(input),
            () = drain, if !*drained => {
                *drained = true;
                core.handle(now(), Input::Drain);
            }
            () = timers.fired(), if timed => {
                // The sleep fired, so its deadline has passed, whatever the clock's rounding.
                let at = timers.armed_at.map_or_else(now, |armed| armed.max(now()));
                for timer in timers.take_due(at) {
                    core.handle(at, Input::TimerFired(timer));
                }
            }
        }
    }

    /// Feeds one client input.
    fn client_input(&mut self, input: ClientInput) {
        let input = match input {
            ClientInput::Text(text) => {
                // A large message is checked off the runtime's worker threads.
                let core = &mut self.core;
                offload::check(text.len(), || core.handle(now(), Input::ClientText(text.as_str())));
                return;
            }
            ClientInput::Alive => Input::ClientPong,
            ClientInput::Gone => Input::ClientGone,
            ClientInput::TooBig => Input::ClientTooBig,
            ClientInput::Violation(code, reason) => {
                debug!(code, reason, "WebSocket violation");
                Input::ClientViolation { code, reason }
            }
            ClientInput::Stalled => Input::ClientStalled,
        };
        self.core.handle(now(), input);
    }

    fn client_lost(&mut self, lost: Lost) {
        let input = match lost {
            Lost::Gone => Input::ClientGone,
            Lost::Stalled => Input::ClientStalled,
        };
        self.core.handle(now(), input);
    }

    /// Feeds the end of a connect.
    fn connect_result(&mut self, result: Option<Result<Link, FailureClass>>) {
        let input = match result {
            None => Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes),
            Some(Err(class)) => Input::UpstreamConnectFailed(ConnectFailure::RouteFailed { class }),
            Some(Ok(link)) => {
                let Link { tcp, tls, tls_config, proxy_header, attempt_started } = link;
                let security = match tls {
                    UpstreamTls::Starttls => RouteSecurity::StartTls,
                    UpstreamTls::Direct => RouteSecurity::DirectTls,
                    UpstreamTls::None => RouteSecurity::Plain,
                };
                self.upstream.attach(tcp, tls_config);
                let attempt_started = attempt_started.into_std();
                Input::UpstreamConnected(Connected { security, proxy_header, attempt_started })
            }
        };
        self.core.handle(now(), input);
    }

    /// Executes the core's actions in order; the outcome once it says the session is done.
    async fn execute(&mut self) -> Option<Outcome> {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::ToClient(text) => {
                    if let Err(lost) = self.client.feed(text).await {
                        self.client_lost(lost);
                    }
                }
                Action::Ping => {
                    if let Err(lost) = self.client.ping().await {
                        self.client_lost(lost);
                    }
                }
                Action::ToServer(bytes) => {
                    self.write_upstream(&bytes).await;
                    self.core.recycle(bytes);
                }
                Action::Connect(request) => self.connect(request),
                Action::StartTls => self.start_tls(),
                // Boxed: closing (a TLS close, waits for the server's FIN) is a future of about
                // 4 KiB that runs once per session; inline, every idle session's task would
                // carry its room (docs/PERFORMANCE.md).
                Action::CloseUpstream(close) => Box::pin(self.close_upstream(close)).await,
                Action::CloseClient { code, reason } => {
                    let _ = self.client.flush().await;
                    self.client.close(code, reason).await;
                }
                Action::SetTimer(timer, at) => self.timers.set(timer, at),
                Action::ClearTimer(timer) => self.timers.clear(timer),
                Action::Count(count) => self.count(count),
                Action::Done(outcome) => {
                    let _ = self.client.flush().await;
                    match self.core.ending() {
                        // The server broke the protocol: worth an operator's look.
                        Some(Ending::ServerBadXml(error)) => warn!(%error, "server sent bad XML"),
                        // The details (a refusal's reason, a close code) are static text, never
                        // stanza content.
                        Some(ending) => debug!(ending = ending.row().name, details = ?ending, "session over"),
                        None => {}
                    }
                    return Some(outcome);
                }
            }
        }
        None
    }

    /// Writes to the server. A server that does not take the bytes in time counts as gone, as
    /// a failed write does: a farewell gets [`FAREWELL_WRITE`], anything else the time a client
    /// gets to take a message (a ping interval plus the pong deadline). Without it, a server
    /// that stopped reading would hold the session (and its client) for ever: nothing else
    /// runs while a write waits.
    async fn write_upstream(&mut self, bytes: &[u8]) {
        let deadline = match self.core.ending() {
            Some(_) => FAREWELL_WRITE,
            None => self.gateway.settings.send_deadline(),
        };
        let result = finish_by(self.upstream.write(bytes), |now| now + deadline)
            .await
            .unwrap_or(Err(std::io::ErrorKind::TimedOut.into()));
        if result.is_err() {
            self.core.handle(now(), Input::UpstreamGone(UpstreamGone::WriteError));
        }
    }

    /// Starts a connect (a served domain's first route, the next route, or a redirect).
    fn connect(&mut self, request: ConnectRequest) {
        let ConnectRequest { to, attempt_budget, overall_deadline } = request;
        let budget = Budget { attempt: attempt_budget, overall_deadline: Instant::from_std(overall_deadline) };
        let mut connector = match to {
            ConnectTo::FirstRoute { domain } => match self.gateway.upstreams.lookup(&domain) {
                Err(refusal) => {
                    debug!(domain = %domain, class = %refusal.class(), "domain not served");
                    let lookup = DomainLookup::NotServed { class: refusal.class() };
                    return self.core.handle(now(), Input::DomainLookup(lookup));
                }
                Ok(upstream) => {
                    let max_element_bytes =
                        upstream.element_limit().unwrap_or(self.gateway.config.limits.max_element_bytes);
                    self.core.handle(now(), Input::DomainLookup(DomainLookup::Served { max_element_bytes }));
                    let client = self.context.client.socket_addr();
                    let descriptors = self.context.descriptors.clone();
                    let connector = self.gateway.upstreams.connector(upstream, client, self.metrics(), descriptors);
                    let mut connector = Box::new(connector);
                    self.domain = Some(domain);
                    self.upstream.start_connect(Box::pin(async move {
                        let result = connector.first(budget).await;
                        (connector, Some(result))
                    }));
                    return;
                }
            },
            ConnectTo::NextRoute | ConnectTo::Redirect { .. } => match self.connector.take() {
                Some(connector) => connector,
                None => return self.connect_result(None),
            },
        };
        self.upstream.start_connect(match to {
            ConnectTo::Redirect { host, port } => Box::pin(async move {
                let result = connector.redirect(host, port, budget).await;
                (connector, Some(result))
            }),
            _ => Box::pin(async move {
                let result = connector.next(budget).await;
                (connector, result)
            }),
        });
    }

    fn start_tls(&mut self) {
        let domain = self.domain.clone().unwrap_or_default();
        if let Err(class) = self.upstream.start_tls(domain) {
            warn!(%class, "TLS asked for without a plain connection");
            self.core.handle(now(), Input::TlsFailed { class });
        }
    }

    async fn close_upstream(&mut self, close: UpstreamClose) {
        // What the client was sent goes out first: closing can take a while.
        if let Err(lost) = self.client.flush().await {
            self.client_lost(lost);
        }
        match close {
            UpstreamClose::Discard => self.upstream.discard(),
            UpstreamClose::Finish => self.upstream.finish().await,
            UpstreamClose::Abort => self.upstream.abort().await,
        }
    }

    fn count(&mut self, count: Count) {
        let metrics = self.metrics();
        match count {
            Count::Relayed { direction, bytes } => {
                let tally = &mut self.relayed[direction as usize];
                tally.elements += 1;
                tally.bytes += bytes as u64;
            }
            Count::StreamError { condition, side } => {
                metrics.stream_errors.with_label_values(&[condition.as_str(), side.label()]).inc();
            }
            Count::ClientRefused(reason) => metrics.client_refused.with_label_values(&[reason]).inc(),
            Count::ConnectFailure(class) => {
                if class != FailureClass::DomainNotAllowed {
                    warn!(domain = self.domain.as_deref().unwrap_or(""), %class, "upstream unavailable");
                }
                metrics.connect_failures.with_label_values(&[class.class()]).inc();
            }
            Count::ConnectPhase { phase, elapsed } => metrics.observe_connect_phase(phase, elapsed),
        }
    }
}

impl<C> Shell<'_, C> {
    /// Adds what was relayed since the last call to the shared counters.
    fn publish_relayed(&mut self) {
        for (direction, tally) in Direction::ALL.into_iter().zip(&mut self.relayed) {
            if tally.elements > 0 {
                self.gateway.metrics.relayed(direction, tally.elements, tally.bytes);
                *tally = RelayedTally::default();
            }
        }
    }
}

/// Hands one upstream read to the core: bytes (the input that completes a large element is
/// checked off the runtime's worker threads), or the end of the read side.
fn server_read(core: &mut SessionCore, read: Read<'_>) {
    match read {
        Read::Bytes(bytes) => {
            let pending = core.server_backlog() + bytes.len();
            offload::check(pending, || core.handle(now(), Input::ServerBytes(bytes)));
        }
        Read::End => core.handle(now(), Input::UpstreamGone(UpstreamGone::ReadEnd)),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::mem::size_of;

    use axum::extract::ws::WebSocket;

    /// The size of the future `f` would return (`f` is never called).
    fn future_size<A, B, C, F: Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        size_of::<F>()
    }

    /// What every idle session's task holds inline, whatever it does: the shell and the largest
    /// of the futures it awaits. Rare, large futures (closing the upstream) are boxed so that
    /// they do not set this size; the bound leaves room for growth, not for a 4 KiB future.
    #[test]
    fn a_session_task_stays_small() {
        let session = future_size(crate::session::run::<WebSocket>);
        let shell = size_of::<super::Shell<'static, super::super::client_io::ClientIo<WebSocket>>>();
        println!("session future {session} bytes, of which the shell {shell}");
        assert!(session <= 5 * 1024, "session future {session} bytes (shell {shell})");
    }

    /// The sleep for the earliest deadline fires at that deadline however often the session
    /// wakes for other things before it (each wake polls `fired` without the sleep being
    /// polled), and a re-arm to another deadline moves it.
    #[tokio::test(start_paused = true)]
    async fn the_timer_sleep_fires_at_the_earliest_deadline_between_other_wakes() {
        use super::{Timer, Timers};
        use futures_util::FutureExt;
        use std::time::Duration;
        let start = tokio::time::Instant::now().into_std();
        let mut timers = Timers::new();
        timers.set(Timer::ALL[0], start + Duration::from_secs(10));
        assert!(timers.arm());
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_eq!(timers.fired().now_or_never(), None, "fired before its deadline");
            assert!(timers.arm());
        }
        // Re-armed later: the 10 s deadline cleared, the next one 11 s from the start.
        timers.set(Timer::ALL[1], start + Duration::from_secs(11));
        timers.clear(Timer::ALL[0]);
        assert!(timers.arm());
        assert_eq!(timers.fired().now_or_never(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(timers.fired().now_or_never(), None, "the cleared deadline fired");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(timers.fired().now_or_never(), Some(()), "not fired at its deadline");
        assert_eq!(timers.take_due(tokio::time::Instant::now().into_std()), vec![Timer::ALL[1]]);
        assert!(!timers.arm(), "nothing is armed");
    }
}
