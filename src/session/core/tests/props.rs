//! A property test: random input sequences, fed the way a shell would (answers to the core's
//! requests, client messages, server bytes following a script or not, timers, the drain),
//! with the core's invariants checked after every input:
//! - no client byte, and no `from`, is written upstream before TLS is up on a STARTTLS or
//!   direct-TLS route (TLS-3, HDR-4), and nothing from before TLS reaches the client (TLS-4);
//! - exactly one ending, from the table, at a point in the session its row allows;
//! - no action after the ending;
//! - the armed timers are the state's, as the actions told the shell;
//! - the queue, the upstream batch and the splitter stay within their bounds.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::upstream::{FailureClass, TcpFailure, TlsFailure};
use state::State;

const SECRET: &str = "s3cr3t";

/// Client messages: every one that carries client data carries [`SECRET`].
const CLIENT: &[&str] = &[
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" from="s3cr3t@example.com" version="1.0"/>"#,
    r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">s3cr3t</auth>"#,
    r#"<message xmlns="jabber:client" to="romeo@example.net"><body>s3cr3t</body></message>"#,
    r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#,
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="evil.example" version="1.0"/>"#,
    r#"<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#,
    "<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>",
    r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text>s3cr3t</text></stream:error>"#,
    "<a><b>s3cr3t",
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" version="1.0"/>"#,
];

/// What a server says before TLS, in order (the pre-TLS parts carry `PRE-TLS`).
const PRE_TLS_SCRIPT: &[&str] = &[
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='PRE-TLS' from='example.com' version='1.0'>",
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PRE-TLS</mechanism></mechanisms></stream:features>",
    "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
];

/// What a server says after TLS: the header first, then anything.
const SCRIPT: &[&str] = &[
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' version='1.0'>",
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
    "<message from='romeo@example.net'><body>hi</body></message>",
    "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    " \n",
    "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    "</stream:stream>",
    "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>other.example.com:5222</see-other-host></stream:error>",
    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<message><!-- x --></message>",
];

#[derive(Debug, Clone)]
enum Step {
    Client(usize),
    ClientEvent(u8),
    Server { scripted: bool, pick: usize, split: usize },
    Shell(u8),
    Timer(usize),
    Wait(u64),
    Drain,
    Illegal(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Mostly messages a session survives, so that sessions get far.
        8 => prop::sample::select(vec![1, 1, 2, 2, 2, 2, 2, 2, 6, 3, 7, 0, 4, 5, 8, 9]).prop_map(Step::Client),
        2 => any::<u8>().prop_map(Step::ClientEvent),
        12 => (prop::bool::weighted(0.7), 0..SCRIPT.len(), 0usize..200)
            .prop_map(|(scripted, pick, split)| Step::Server { scripted, pick, split }),
        4 => any::<u8>().prop_map(Step::Shell),
        2 => (0..7usize).prop_map(Step::Timer),
        2 => (0u64..120).prop_map(Step::Wait),
        1 => Just(Step::Drain),
        2 => any::<u8>().prop_map(Step::Illegal),
    ]
}

/// The shell's view of the session, built only from the actions, plus the checks.
struct Model {
    driver: Driver,
    timers: HashMap<Timer, Instant>,
    /// The shell owes the answer to whether the domain is served.
    lookup_pending: bool,
    connect_pending: bool,
    tls_pending: bool,
    /// The current connection's security and whether TLS is up on it.
    route: Option<(RouteSecurity, bool)>,
    /// The next piece of the server's script for the current connection.
    script: usize,
    done: usize,
    max_chunk: usize,
}

impl Model {
    fn new() -> Model {
        let settings = Settings {
            max_queued_messages: 4,
            idle_timeout: Some(Duration::from_secs(60)),
            server_limits: crate::xml::splitter::SplitterLimits { max_element_bytes: 10_000, ..Default::default() },
            ..Settings::default()
        };
        let driver = Driver::with(settings);
        let open_at = driver.now + Duration::from_secs(10);
        Model {
            driver,
            timers: HashMap::from([(Timer::Open, open_at)]),
            lookup_pending: false,
            connect_pending: false,
            tls_pending: false,
            route: None,
            script: 0,
            done: 0,
            max_chunk: 0,
        }
    }

    fn feed(&mut self, input: Input<'_>) {
        if let Input::ServerBytes(bytes) = &input {
            self.max_chunk = self.max_chunk.max(bytes.len());
        }
        let before = self.driver.core.state_name();
        let mut in_stream = matches!(self.driver.core.state, State::Relaying(_) | State::Closing(..));
        let actions = self.driver.feed(input);
        for action in &actions {
            assert_eq!(self.done, 0, "{action:?} after the ending");
            // The ping timer starts when the stream opens (queued messages are handled after).
            in_stream |= matches!(action, Action::SetTimer(Timer::Ping, _));
            self.observe(action, in_stream, before);
        }
        self.check_state();
    }

    fn observe(&mut self, action: &Action, in_stream: bool, before: &str) {
        match action {
            Action::ToServer(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                let secured = match self.route {
                    Some((RouteSecurity::Plain, _)) => true,
                    Some((_, tls_up)) => tls_up,
                    None => false,
                };
                assert!(secured || !text.contains(SECRET), "client data before TLS: {text}");
                assert!(secured || !text.contains("from="), "from before TLS (HDR-4): {text}");
            }
            Action::ToClient(text) => assert!(!text.contains("PRE-TLS"), "pre-TLS data to the client: {text}"),
            Action::Connect(request) => {
                self.lookup_pending = matches!(request.to, ConnectTo::FirstRoute { .. });
                self.connect_pending = true;
                self.route = None;
            }
            Action::StartTls => self.tls_pending = true,
            Action::CloseUpstream(_) => self.route = None,
            Action::SetTimer(timer, at) => {
                self.timers.insert(*timer, *at);
            }
            Action::ClearTimer(timer) => {
                assert!(self.timers.remove(timer).is_some(), "{timer:?} cleared but not armed");
            }
            Action::Done(outcome) => {
                self.done += 1;
                self.timers.clear();
                let ending = self.driver.core.ending().expect("Done comes with an ending");
                let row = ending.row();
                assert_eq!(*outcome, row.outcome);
                let phase_ok = match row.phase {
                    Phase::BeforeStream => !in_stream,
                    Phase::InStream => in_stream,
                    Phase::Any => true,
                };
                assert!(phase_ok, "{} while {before}", row.name);
            }
            Action::Ping | Action::CloseClient { .. } | Action::Count(_) => {}
        }
    }

    fn check_state(&self) {
        let core = &self.driver.core;
        let mut armed: Vec<Timer> = self.timers.keys().copied().collect();
        armed.sort_by_key(|timer| timer.index());
        assert_eq!(armed, core.ctx.timers.armed(), "the shell's timers are the core's");
        assert_eq!(core.check_invariants(), Ok(()));
        let limits = core.ctx.settings.server_limits;
        let bound = limits.max_element_bytes + limits.max_header_bytes + self.max_chunk;
        let buffered = match &core.state {
            State::Negotiating(negotiation) => negotiation.splitter.buffered_len(),
            State::Relaying(relay) | State::Closing(relay, _) => relay.upstream.splitter.buffered_len(),
            _ => 0,
        };
        assert!(buffered <= bound, "{buffered} bytes buffered from the server");
    }

    /// The next thing a well-behaved client, server and shell would do, until the stream is
    /// open; `false` once there is nothing such to do.
    fn advance(&mut self, pick: u8) -> bool {
        let core = &self.driver.core;
        match core.state_name() {
            "awaiting-open" => self.feed(Input::ClientText(CLIENT[0])),
            "connecting" | "negotiating" if self.lookup_pending || self.connect_pending || self.tls_pending => {
                self.shell(pick % 6)
            }
            "negotiating" if core.reads_upstream() => self.server(true, 0, usize::from(pick)),
            _ => return false,
        }
        true
    }

    fn run(&mut self, (guided, step): &(bool, Step)) {
        if *guided
            && self.advance(match step {
                Step::Shell(pick) | Step::ClientEvent(pick) | Step::Illegal(pick) => *pick,
                _ => 0,
            })
        {
            return;
        }
        match *step {
            Step::Client(pick) => self.feed(Input::ClientText(CLIENT[pick])),
            Step::ClientEvent(pick) => self.feed(match pick % 6 {
                0 => Input::ClientTooBig,
                1 => Input::ClientViolation { code: 1007, reason: "invalid UTF-8" },
                2 => Input::ClientGone,
                3 => Input::ClientStalled,
                4 => Input::ClientPong,
                _ => Input::ClientIdle,
            }),
            Step::Server { scripted, pick, split } => self.server(scripted, pick, split),
            Step::Shell(pick) => self.shell(pick),
            Step::Timer(pick) => {
                let mut armed: Vec<(Timer, Instant)> = self.timers.iter().map(|(t, at)| (*t, *at)).collect();
                armed.sort_by_key(|(timer, _)| timer.index());
                if let Some(&(timer, at)) = armed.get(pick % armed.len().max(1)) {
                    self.driver.now = self.driver.now.max(at);
                    self.timers.remove(&timer);
                    self.feed(Input::TimerFired(timer));
                }
            }
            Step::Wait(secs) => {
                self.driver.later(Duration::from_secs(secs));
            }
            Step::Drain => self.feed(Input::Drain),
            Step::Illegal(pick) => self.illegal(pick),
        }
    }

    fn server(&mut self, scripted: bool, pick: usize, split: usize) {
        if !self.driver.core.reads_upstream() {
            return;
        }
        let pre_tls = matches!(self.route, Some((RouteSecurity::StartTls, false)));
        let piece = match (scripted, pre_tls) {
            (true, true) => PRE_TLS_SCRIPT[self.script.min(PRE_TLS_SCRIPT.len() - 1)],
            (true, false) if self.script < 2 => SCRIPT[self.script],
            _ => SCRIPT[pick],
        };
        self.script += 1;
        let split = split.min(piece.len());
        let (first, second) = piece.as_bytes().split_at(split);
        self.feed(Input::ServerBytes(first));
        if self.driver.core.reads_upstream() {
            self.feed(Input::ServerBytes(second));
        }
    }

    /// Answers the core's pending request, as the shell would.
    fn shell(&mut self, pick: u8) {
        if self.lookup_pending {
            self.lookup_pending = false;
            let lookup = match pick % 10 {
                9 => DomainLookup::NotServed { class: FailureClass::DomainNotAllowed },
                // A smaller limit for this upstream than the global one (D10).
                _ => DomainLookup::Served { max_element_bytes: 600 },
            };
            self.connect_pending = matches!(lookup, DomainLookup::Served { .. });
            self.feed(Input::DomainLookup(lookup));
        } else if self.connect_pending {
            self.connect_pending = false;
            let security = match pick % 3 {
                0 => RouteSecurity::StartTls,
                1 => RouteSecurity::DirectTls,
                _ => RouteSecurity::Plain,
            };
            let input = match pick % 10 {
                0..=5 => {
                    self.route = Some((security, false));
                    self.script = 0;
                    Input::UpstreamConnected(Connected {
                        security,
                        proxy_header: None,
                        attempt_started: self.driver.now,
                    })
                }
                6..=8 => {
                    let class = FailureClass::Tcp(TcpFailure::Refused);
                    Input::UpstreamConnectFailed(ConnectFailure::RouteFailed { class })
                }
                _ => Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes),
            };
            self.feed(input);
        } else if self.tls_pending {
            self.tls_pending = false;
            if pick % 4 == 3 {
                self.feed(Input::TlsFailed { class: FailureClass::Tls(TlsFailure::CertUntrusted) });
            } else {
                if let Some((security, _)) = self.route {
                    self.route = Some((security, true));
                }
                self.script = 0;
                self.feed(Input::TlsReady);
            }
        } else if self.route.is_some() && pick % 4 == 0 {
            let gone = if pick % 8 == 0 { UpstreamGone::ReadEnd } else { UpstreamGone::WriteError };
            self.feed(Input::UpstreamGone(gone));
        }
    }

    /// Inputs the shell's contract rules out right now: they must change nothing harmful.
    fn illegal(&mut self, pick: u8) {
        if self.tls_pending || self.connect_pending || self.lookup_pending {
            return;
        }
        match pick % 4 {
            0 => self.feed(Input::TlsReady),
            1 => self.feed(Input::TlsFailed { class: FailureClass::Tls(TlsFailure::Alert) }),
            2 => {
                let connected =
                    Connected { security: RouteSecurity::Plain, proxy_header: None, attempt_started: self.driver.now };
                self.feed(Input::UpstreamConnected(connected));
            }
            // A timer that is not armed (a stale report).
            _ => {
                let timer = Timer::ALL[usize::from(pick) % Timer::ALL.len()];
                if !self.timers.contains_key(&timer) {
                    self.feed(Input::TimerFired(timer));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_the_invariants(steps in prop::collection::vec((prop::bool::weighted(0.7), step()), 0..120)) {
        let mut model = Model::new();
        for step in &steps {
            model.run(step);
        }
        if model.done == 0 {
            model.feed(Input::ClientGone);
        }
        prop_assert_eq!(model.done, 1, "exactly one ending");
        for input in [Input::ClientText(CLIENT[0]), Input::Drain, Input::ServerBytes(b"<x/>"), Input::ClientGone] {
            model.feed(input);
        }
        prop_assert_eq!(model.done, 1);
    }
}

proptest! {
    /// A gateway-made stream id is `gw-` and the number in 16 lower-case hex digits.
    #[test]
    fn stream_ids_are_the_number_in_sixteen_hex_digits(value in any::<u64>()) {
        let id = StreamId::new(value);
        prop_assert_eq!(id.as_str(), format!("gw-{value:016x}"));
    }
}
