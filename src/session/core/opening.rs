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
use crate::xml::splitter::{ServerElementKind, ServerEvent, StreamHeader, StreamSplitter};

use super::ending::{Ending, Site};
use super::events::{
    Action, ConnectFailure, ConnectRequest, ConnectTo, Connected, Count, Input, RouteSecurity, Timer, UpstreamClose,
    UpstreamGone,
};
use super::settings::MAX_REDIRECTS;
use super::state::{Liveness, Negotiation, Queue, Relay, Restart, Setup, State, Step, UpstreamStream};
use super::SessionCore;

/// Why a route failed while the core negotiated its stream (the shell reports connect and TLS
/// failures with their own classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteFailure {
    /// The attempt or setup budget ran out while connecting.
    ConnectTimeout,
    /// ... while securing the connection.
    TlsTimeout,
    /// ... while exchanging stream headers.
    StreamTimeout,
    /// `<failure/>` (or the end of the stream) instead of `<proceed/>` (TLS-2).
    StartTlsRefused,
    /// Bytes after `<proceed/>` in the same read (TV-14).
    StartTlsInjection,
    /// The server's XML was refused by the splitter.
    BadXml,
    /// The server sent something the negotiation does not allow.
    Protocol,
    /// The server closed the connection.
    Closed,
    /// A write to the server failed.
    Io,
    /// More than [`MAX_REDIRECTS`] successive `<see-other-host/>`.
    RedirectLoop,
}

impl RouteFailure {
    /// The D6 class.
    fn class(self) -> &'static str {
        match self {
            RouteFailure::ConnectTimeout => "connect-timeout",
            RouteFailure::TlsTimeout => "tls-timeout",
            RouteFailure::StreamTimeout => "stream-timeout",
            RouteFailure::StartTlsRefused => "starttls-refused",
            RouteFailure::StartTlsInjection => "starttls-injection",
            RouteFailure::BadXml => "upstream-bad-xml",
            RouteFailure::Protocol => "upstream-protocol-error",
            RouteFailure::Closed => "upstream-closed",
            RouteFailure::Io => "upstream-io-error",
            RouteFailure::RedirectLoop => "see-other-host-loop",
        }
    }

    /// The timeout class for a budget that ran out during `step`.
    fn timeout(step: &Step) -> RouteFailure {
        if step.securing() {
            RouteFailure::TlsTimeout
        } else {
            RouteFailure::StreamTimeout
        }
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
                    if let Some(lang) = &request.lang {
                        self.ctx.lang.clone_from(lang);
                    }
                    let domain = request.to.as_deref().and_then(|to| crate::domain::normalize(to).ok());
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
            Input::ClientText(text) => {
                if setup.queue.push(text, &self.ctx.settings) {
                    State::Connecting(setup)
                } else {
                    self.end_setup(&setup, Ending::QueueFull, true)
                }
            }
            Input::UpstreamConnected(connected) => self.negotiate(setup, connected, now),
            Input::UpstreamConnectFailed(ConnectFailure::NotServed { class }) => {
                self.end_setup(&setup, Ending::DomainNotServed { class }, false)
            }
            Input::UpstreamConnectFailed(ConnectFailure::RouteFailed { class }) => {
                setup.last_failure = Some(class);
                setup.redirects = 0;
                self.connect(ConnectTo::NextRoute, now);
                State::Connecting(setup)
            }
            Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes) => {
                let class = setup.last_failure.unwrap_or(RouteFailure::Closed.class());
                self.end_setup(&setup, Ending::UpstreamFailed { class }, false)
            }
            Input::TimerFired(Timer::Setup) => {
                let class = RouteFailure::ConnectTimeout.class();
                self.end_setup(&setup, Ending::UpstreamFailed { class }, true)
            }
            _ => State::Connecting(setup),
        }
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
        let splitter = StreamSplitter::new(self.ctx.settings.server_limits);
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
                self.state = if negotiation.setup.queue.push(text, &self.ctx.settings) {
                    State::Negotiating(negotiation)
                } else {
                    self.end_setup(&negotiation.setup, Ending::QueueFull, true)
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
                let failure = match (gone, &negotiation.step) {
                    (UpstreamGone::WriteError, _) => RouteFailure::Io,
                    (UpstreamGone::ReadEnd, Step::ProceedAwaited) => RouteFailure::StartTlsRefused,
                    (UpstreamGone::ReadEnd, _) => RouteFailure::Closed,
                };
                self.route_failed(negotiation, failure.class(), now);
            }
            Input::TimerFired(Timer::Attempt) => {
                let class = RouteFailure::timeout(&negotiation.step).class();
                self.route_failed(negotiation, class, now);
            }
            Input::TimerFired(Timer::Setup) => {
                let class = RouteFailure::timeout(&negotiation.step).class();
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
        let failure = match (step, event) {
            (Step::FirstElement(header), event) => return self.first_element(negotiation, *header, event, now),
            (_, Err(_)) => RouteFailure::BadXml,
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
                _ => RouteFailure::Protocol,
            },
            (Step::ProceedAwaited, Ok(ServerEvent::Element(element))) => match element.kind {
                ServerElementKind::TlsProceed if negotiation.splitter.buffered_len() > 0 => {
                    RouteFailure::StartTlsInjection
                }
                ServerElementKind::TlsProceed => {
                    self.ctx.push(Action::StartTls);
                    negotiation.step = Step::TlsHandshake;
                    return Progress::Wait(negotiation);
                }
                ServerElementKind::TlsFailure => RouteFailure::StartTlsRefused,
                _ => RouteFailure::Protocol,
            },
            (Step::ProceedAwaited, Ok(ServerEvent::End)) => RouteFailure::StartTlsRefused,
            (_, Ok(ServerEvent::End)) => RouteFailure::Closed,
            (_, Ok(_)) => RouteFailure::Protocol,
        };
        self.route_failed(negotiation, failure.class(), now);
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
        let failure = match target {
            _ if negotiation.setup.redirects >= MAX_REDIRECTS => RouteFailure::RedirectLoop,
            None => RouteFailure::Protocol,
            Some(target) => {
                negotiation.setup.redirects += 1;
                self.ctx.clear_timer(Timer::Attempt);
                self.connect(ConnectTo::Redirect { host: target.host, port: target.port }, now);
                self.state = State::Connecting(negotiation.setup);
                return Progress::Left;
            }
        };
        self.next_route(negotiation.setup, failure.class(), now);
        Progress::Left
    }

    /// The route failed: its connection is dropped and the next route asked for.
    fn route_failed(&mut self, negotiation: Negotiation, class: &'static str, now: Instant) {
        self.ctx.push(Action::CloseUpstream(UpstreamClose::Discard));
        self.next_route(negotiation.setup, class, now);
    }

    fn next_route(&mut self, mut setup: Setup, class: &'static str, now: Instant) {
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
        self.ctx.push(Action::ToClient(framing::client_open(&header, &stream_id, &self.ctx.lang)));
        let Setup { request, domain, mut queue, .. } = setup;
        let upstream = UpstreamStream { splitter, request, domain, batched: Vec::new(), end_sent: false };
        let relay =
            Relay { upstream, restart: Restart::No, server_error: None, liveness: Liveness::Quiet, last_activity: now };
        self.state = State::Relaying(relay);
        self.relay_server_event(first, now);
        for text in queue.drain() {
            self.relay_client_text(&text, now);
        }
        self.relay_server_events(now);
    }
}
