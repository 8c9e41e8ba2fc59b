//! From the upgrade to the open stream: waiting for `<open/>`, connecting routes, and
//! negotiating the upstream stream (PROXY header, pre-TLS header, `<starttls/>`, `<proceed/>`,
//! TLS by the shell, the secured header, and the first element, which may be a redirect, D4).
//!
//! Nothing from the client reaches the server here: its messages wait in the bounded queue
//! until the stream is open (TLS-3), and nothing the server says before TLS reaches the client
//! (TLS-4). It does not relay; `relaying` takes over once the first element has arrived.

use std::mem;
use std::time::Instant;

use crate::xml::client::{self, ClientFrame};
use crate::xml::error::XmlError;
use crate::xml::framing;
use crate::xml::see_other_host;
use crate::xml::splitter::{ServerElementKind, ServerEvent, SplitterLimits, StreamHeader, StreamSplitter};

use crate::upstream::{FailureClass, TcpFailure, TlsFailure};

use super::ending::{Ending, Site};
use super::events::{
    Action, ConnectFailure, ConnectRequest, ConnectTo, Connected, Count, DomainLookup, Input, RouteSecurity, Timer,
    UpstreamClose, UpstreamGone,
};
use super::settings::MAX_REDIRECTS;
use super::state::{Liveness, Negotiation, Queue, Queued, Relay, Restart, Setup, State, Step, UpstreamStream};
use super::{Ctx, SessionCore};

/// The class of a budget that ran out during `step`: securing the connection (`tls`) or
/// exchanging the stream headers after it.
fn timeout_class(step: &Step) -> FailureClass {
    if step.securing() {
        FailureClass::Tls(TlsFailure::Timeout)
    } else {
        FailureClass::StreamTimeout
    }
}

/// What the negotiation does after one server event.
enum Progress {
    /// Keep reading events.
    Continue(Negotiation),
    /// Stop reading: the shell has something to do first (the TLS handshake).
    Wait(Negotiation),
    /// The route is over (failed or redirected); the state is set.
    Left,
}

impl SessionCore {
    /// Handles an input before the stream is open.
    pub(super) fn opening_input(&mut self, now: Instant, input: Input<'_>) {
        let state = mem::replace(&mut self.state, State::AwaitingOpen);
        self.state = match state {
            State::AwaitingOpen => self.awaiting_open(now, input),
            State::Connecting(setup) => self.connecting(setup, now, input),
            State::Negotiating(negotiation) => return self.negotiating(negotiation, now, input),
            other => other,
        };
    }

    fn awaiting_open(&mut self, now: Instant, input: Input<'_>) -> State {
        let before = |ctx: &mut super::Ctx, ending| ctx.end(ending, Site::BeforeStream { from: "", connection: false });
        if let Some(ending) = self.ctx.common_ending(&input) {
            return before(&mut self.ctx, ending);
        }
        match input {
            Input::TimerFired(Timer::Open) => before(&mut self.ctx, Ending::OpenTimeout),
            Input::ClientText(text) => match client::classify(text, &self.ctx.settings.client_limits) {
                Ok(ClientFrame::Open(request)) => {
                    if let Some(lang) = request.lang() {
                        self.ctx.lang.clear();
                        self.ctx.lang.push_str(lang);
                    }
                    let domain = request.to().and_then(|to| crate::domain::normalize(to).ok());
                    let Some(domain) = domain else {
                        return before(&mut self.ctx, Ending::NoDomain);
                    };
                    self.ctx.clear_timer(Timer::Open);
                    self.ctx.set_timer(Timer::Setup, now + self.ctx.settings.overall_timeout);
                    self.connect(ConnectTo::FirstRoute { domain: domain.clone() }, now);
                    State::Connecting(Setup {
                        request,
                        domain,
                        queue: Queue::default(),
                        redirects: 0,
                        last_failure: None,
                    })
                }
                Ok(ClientFrame::Close) => before(&mut self.ctx, Ending::CloseBeforeOpen),
                Ok(ClientFrame::Element { .. }) => before(&mut self.ctx, Ending::NotOpen),
                Err(error) => before(&mut self.ctx, Ending::Refused(error)),
            },
            _ => State::AwaitingOpen,
        }
    }

    /// Asks the shell for a connection within the budget.
    fn connect(&mut self, to: ConnectTo, now: Instant) {
        let settings = &self.ctx.settings;
        let overall_deadline = self.ctx.timers.deadline(Timer::Setup).unwrap_or(now + settings.overall_timeout);
        let request = ConnectRequest { to, attempt_budget: settings.attempt_timeout, overall_deadline };
        self.ctx.push(Action::Connect(request));
    }

    /// Ends the session before its stream is open, discarding the connection in flight.
    fn end_setup(&mut self, setup: &Setup, ending: Ending, connection: bool) -> State {
        self.ctx.end(ending, Site::BeforeStream { from: &setup.domain, connection })
    }

    fn connecting(&mut self, mut setup: Setup, now: Instant, input: Input<'_>) -> State {
        if let Some(ending) = self.ctx.common_ending(&input) {
            return self.end_setup(&setup, ending, true);
        }
        match input {
            Input::ClientText(text) => match queue_client_text(&self.ctx, &mut setup.queue, text) {
                None => State::Connecting(setup),
                Some(ending) => self.end_setup(&setup, ending, true),
            },
            Input::DomainLookup(DomainLookup::Served { max_element_bytes }) => {
                self.ctx.element_limit = max_element_bytes;
                match setup.queue.len().1 > max_element_bytes {
                    true => self.end_setup(&setup, Ending::QueueFull, true),
                    false => State::Connecting(setup),
                }
            }
            Input::DomainLookup(DomainLookup::NotServed { class }) => {
                self.end_setup(&setup, Ending::DomainNotServed { class }, false)
            }
            Input::UpstreamConnected(connected) => self.negotiate(setup, connected, now),
            Input::UpstreamConnectFailed(ConnectFailure::RouteFailed { class }) => {
                setup.last_failure = Some(class);
                setup.redirects = 0;
                if self.setup_expired(now) {
                    // The whole budget ran out in this route's lookup or TCP: its class says where.
                    return self.end_setup(&setup, Ending::UpstreamFailed { class }, false);
                }
                self.connect(ConnectTo::NextRoute, now);
                State::Connecting(setup)
            }
            Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes) => {
                let class = setup.last_failure.unwrap_or(FailureClass::Closed);
                self.end_setup(&setup, Ending::UpstreamFailed { class }, false)
            }
            Input::TimerFired(Timer::Setup) => {
                let class = FailureClass::Tcp(TcpFailure::Timeout);
                self.end_setup(&setup, Ending::UpstreamFailed { class }, true)
            }
            _ => State::Connecting(setup),
        }
    }

    /// Whether the whole setup's budget has run out.
    fn setup_expired(&self, now: Instant) -> bool {
        self.ctx.timers.deadline(Timer::Setup).is_some_and(|deadline| now >= deadline)
    }

    /// A route is connected: PROXY header, then the first step of its security.
    fn negotiate(&mut self, setup: Setup, connected: Connected, now: Instant) -> State {
        let Connected { security, proxy_header, attempt_started } = connected;
        if let Some(header) = proxy_header {
            self.ctx.push(Action::ToServer(header));
        }
        self.ctx.set_timer(Timer::Attempt, attempt_started + self.ctx.settings.attempt_timeout);
        let step = match security {
            RouteSecurity::StartTls => {
                let header = framing::upstream_header(&setup.request, &setup.domain, false);
                self.ctx.push(Action::ToServer(header.into_bytes()));
                Step::PreTlsHeader
            }
            RouteSecurity::DirectTls => {
                self.ctx.push(Action::StartTls);
                Step::TlsHandshake
            }
            RouteSecurity::Plain => {
                let header = framing::upstream_header(&setup.request, &setup.domain, true);
                self.ctx.push(Action::ToServer(header.into_bytes()));
                Step::PostTlsHeader
            }
        };
        let limits = SplitterLimits { max_element_bytes: self.ctx.element_limit, ..self.ctx.settings.server_limits };
        let splitter = StreamSplitter::new(limits);
        State::Negotiating(Negotiation { setup, splitter, step, phase_started: now })
    }

    fn negotiating(&mut self, mut negotiation: Negotiation, now: Instant, input: Input<'_>) {
        if let Some(ending) = self.ctx.common_ending(&input) {
            self.state = self.end_setup(&negotiation.setup, ending, true);
            return;
        }
        let handshaking = matches!(negotiation.step, Step::TlsHandshake);
        match input {
            Input::ClientText(text) => {
                self.state = match queue_client_text(&self.ctx, &mut negotiation.setup.queue, text) {
                    None => State::Negotiating(negotiation),
                    Some(ending) => self.end_setup(&negotiation.setup, ending, true),
                };
            }
            Input::ServerBytes(bytes) if !handshaking => {
                negotiation.splitter.feed(bytes);
                self.negotiation_events(negotiation, now);
            }
            Input::TlsReady if handshaking => {
                let elapsed = now.saturating_duration_since(negotiation.phase_started);
                self.ctx.count(Count::ConnectPhase { phase: "tls", elapsed });
                negotiation.splitter.expect_new_stream();
                let header = framing::upstream_header(&negotiation.setup.request, &negotiation.setup.domain, true);
                self.ctx.push(Action::ToServer(header.into_bytes()));
                negotiation.step = Step::PostTlsHeader;
                negotiation.phase_started = now;
                self.state = State::Negotiating(negotiation);
            }
            Input::TlsFailed { class } if handshaking => self.route_failed(negotiation, class, now),
            Input::UpstreamGone(gone) => {
                // Bytes the splitter left waiting for a `>` may hold an error: handled as it
                // would have been on arrival, it ends the negotiation, not the hang-up.
                if let Err(error) = negotiation.splitter.read_waiting_bytes() {
                    if let Progress::Continue(next) | Progress::Wait(next) =
                        self.negotiation_step(negotiation, Err(error), now)
                    {
                        self.state = State::Negotiating(next);
                    }
                    return;
                }
                let class = match (gone, &negotiation.step) {
                    (UpstreamGone::WriteError, _) => FailureClass::IoError,
                    (UpstreamGone::ReadEnd, Step::ProceedAwaited) => FailureClass::StartTlsRefused,
                    (UpstreamGone::ReadEnd, _) => FailureClass::Closed,
                };
                self.route_failed(negotiation, class, now);
            }
            Input::TimerFired(Timer::Attempt) => {
                let class = timeout_class(&negotiation.step);
                self.route_failed(negotiation, class, now);
            }
            Input::TimerFired(Timer::Setup) => {
                let class = timeout_class(&negotiation.step);
                self.state = self.end_setup(&negotiation.setup, Ending::UpstreamFailed { class }, true);
            }
            _ => self.state = State::Negotiating(negotiation),
        }
    }

    /// Reads the server's events as far as the negotiation can go.
    fn negotiation_events(&mut self, mut negotiation: Negotiation, now: Instant) {
        loop {
            let event = match negotiation.splitter.next_event() {
                Ok(None) => break,
                Ok(Some(event)) => Ok(event),
                Err(error) => Err(error),
            };
            match self.negotiation_step(negotiation, event, now) {
                Progress::Continue(next) => negotiation = next,
                Progress::Wait(next) => {
                    negotiation = next;
                    break;
                }
                Progress::Left => return,
            }
        }
        self.state = State::Negotiating(negotiation);
    }

    fn negotiation_step(
        &mut self,
        mut negotiation: Negotiation,
        event: Result<ServerEvent, XmlError>,
        now: Instant,
    ) -> Progress {
        let step = mem::replace(&mut negotiation.step, Step::TlsHandshake);
        let class = match (step, event) {
            (Step::FirstElement(header), event) => return self.first_element(negotiation, *header, event, now),
            (_, Err(_)) => FailureClass::BadXml,
            (Step::PreTlsHeader, Ok(ServerEvent::Header(_))) => {
                negotiation.step = Step::PreTlsFeatures;
                return Progress::Continue(negotiation);
            }
            (Step::PostTlsHeader, Ok(ServerEvent::Header(header))) => {
                negotiation.step = Step::FirstElement(header);
                return Progress::Continue(negotiation);
            }
            (Step::PreTlsFeatures, Ok(ServerEvent::Element(element))) => match element.kind {
                ServerElementKind::Features => {
                    self.ctx.push(Action::ToServer(framing::STARTTLS_REQUEST.as_bytes().to_vec()));
                    negotiation.step = Step::ProceedAwaited;
                    return Progress::Continue(negotiation);
                }
                // Followed like a redirect after TLS: the certificate is still checked against
                // the original domain, so a forged redirect can only deny service (§4.9.3.19).
                _ if element.see_other_host.is_some() => {
                    self.ctx.push(Action::CloseUpstream(UpstreamClose::Discard));
                    return self.redirect(negotiation, element.see_other_host.as_deref(), now);
                }
                _ => FailureClass::ProtocolError,
            },
            (Step::ProceedAwaited, Ok(ServerEvent::Element(element))) => match element.kind {
                ServerElementKind::TlsProceed if negotiation.splitter.buffered_len() > 0 => {
                    FailureClass::StartTlsInjection
                }
                ServerElementKind::TlsProceed => {
                    self.ctx.push(Action::StartTls);
                    negotiation.step = Step::TlsHandshake;
                    return Progress::Wait(negotiation);
                }
                ServerElementKind::TlsFailure => FailureClass::StartTlsRefused,
                _ => FailureClass::ProtocolError,
            },
            (Step::ProceedAwaited, Ok(ServerEvent::End)) => FailureClass::StartTlsRefused,
            (_, Ok(ServerEvent::End)) => FailureClass::Closed,
            (_, Ok(_)) => FailureClass::ProtocolError,
        };
        self.route_failed(negotiation, class, now);
        Progress::Left
    }

    /// The first event after the secured header: a redirect (D4), or the stream.
    fn first_element(
        &mut self,
        negotiation: Negotiation,
        header: StreamHeader,
        event: Result<ServerEvent, XmlError>,
        now: Instant,
    ) -> Progress {
        if let Ok(ServerEvent::Element(element)) = &event {
            if element.see_other_host.is_some() {
                let stream_end = framing::UPSTREAM_STREAM_END.as_bytes().to_vec();
                self.ctx.push(Action::ToServer(stream_end));
                self.ctx.push(Action::CloseUpstream(UpstreamClose::Finish));
                return self.redirect(negotiation, element.see_other_host.as_deref(), now);
            }
        }
        self.open_stream(negotiation, header, event, now);
        Progress::Left
    }

    /// Follows a `<see-other-host/>` (the old connection is already being closed).
    fn redirect(&mut self, mut negotiation: Negotiation, target: Option<&str>, now: Instant) -> Progress {
        let target = target.and_then(see_other_host::parse);
        let class = match target {
            _ if negotiation.setup.redirects >= MAX_REDIRECTS => FailureClass::RedirectLoop,
            None => FailureClass::ProtocolError,
            Some(target) => {
                negotiation.setup.redirects += 1;
                self.ctx.clear_timer(Timer::Attempt);
                self.connect(ConnectTo::Redirect { host: target.host, port: target.port }, now);
                self.state = State::Connecting(negotiation.setup);
                return Progress::Left;
            }
        };
        self.next_route(negotiation.setup, class, now);
        Progress::Left
    }

    /// The route failed: its connection is dropped and the next route asked for.
    fn route_failed(&mut self, negotiation: Negotiation, class: FailureClass, now: Instant) {
        self.ctx.push(Action::CloseUpstream(UpstreamClose::Discard));
        self.next_route(negotiation.setup, class, now);
    }

    fn next_route(&mut self, mut setup: Setup, class: FailureClass, now: Instant) {
        self.ctx.clear_timer(Timer::Attempt);
        setup.last_failure = Some(class);
        setup.redirects = 0;
        self.connect(ConnectTo::NextRoute, now);
        self.state = State::Connecting(setup);
    }

    /// The stream is open: `<open/>` to the client from the secured header, then the first
    /// event, the queued client messages and the rest of what the server sent, as relaying does.
    fn open_stream(
        &mut self,
        negotiation: Negotiation,
        header: StreamHeader,
        first: Result<ServerEvent, XmlError>,
        now: Instant,
    ) {
        let Negotiation { setup, splitter, phase_started, .. } = negotiation;
        let elapsed = now.saturating_duration_since(phase_started);
        self.ctx.count(Count::ConnectPhase { phase: "stream", elapsed });
        self.ctx.clear_timer(Timer::Attempt);
        self.ctx.clear_timer(Timer::Setup);
        let settings = self.ctx.settings.clone();
        self.ctx.set_timer(Timer::Ping, now + settings.ping_interval);
        if let Some(idle) = settings.idle_timeout {
            self.ctx.set_timer(Timer::Idle, now + idle);
        }
        let stream_id = self.ctx.next_stream_id();
        self.ctx.trim_actions = true;
        self.ctx.push(Action::ToClient(framing::client_open(&header, stream_id.as_str(), &self.ctx.lang)));
        let Setup { request, domain, mut queue, .. } = setup;
        let upstream = UpstreamStream { splitter, request, domain, batched: Vec::new(), end_sent: false };
        let relay =
            Relay { upstream, restart: Restart::No, server_error: None, liveness: Liveness::Quiet, last_activity: now };
        self.state = State::Relaying(relay);
        self.relay_server_event(first, now);
        for queued in queue.drain() {
            let frame = match &queued {
                Queued::Close => ClientFrame::Close,
                Queued::Element { xml, kind } => ClientFrame::Element { xml, kind: *kind },
            };
            self.relay_client_frame(frame, now);
        }
        self.relay_server_events(now);
    }
}

/// Validates a client message that arrives before the stream is open and queues it (LIM-4);
/// the ending when it is refused: the queue is full, the XML layer refuses it, or it is a
/// second `<open/>` (D3). Validating on arrival refuses garbage before an upstream is set up
/// for it.
fn queue_client_text(ctx: &Ctx, queue: &mut Queue, text: &str) -> Option<Ending> {
    let bounds = (ctx.settings.max_queued_messages, ctx.element_limit);
    let (messages, bytes) = queue.len();
    if messages >= bounds.0 || bytes + text.len() > bounds.1 {
        return Some(Ending::QueueFull);
    }
    let queued = match client::classify(text, &ctx.settings.client_limits) {
        Err(error) => return Some(Ending::Refused(error)),
        Ok(ClientFrame::Open(_)) => return Some(Ending::UnexpectedOpen),
        Ok(ClientFrame::Close) => Queued::Close,
        Ok(ClientFrame::Element { xml, kind }) => Queued::Element { xml: xml.to_string(), kind },
    };
    (!queue.push(queued, text.len(), bounds)).then_some(Ending::QueueFull)
}
