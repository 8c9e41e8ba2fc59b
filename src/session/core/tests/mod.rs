//! Tests of the session core: unit-test twins of the wire conformance tests (inputs in, actions
//! out, no sockets; each named after the wire test or vector it mirrors), the ending table
//! against docs/OPERATIONS.md, and a property test over random input sequences.
//!
//! This module holds the driver they share: a core, a clock the test moves, and helpers that
//! read the actions.

#![allow(clippy::unwrap_used)]

mod closing;
mod opening;
mod props;
mod relaying;
mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::xml::framing::{self, CLOSE};

pub(super) const DOMAIN: &str = "example.com";
pub(super) const OPEN: &str = r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#;
pub(super) const AUTH: &str =
    r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"#;
/// The pre-TLS header and features of TV-10 (nothing of them may reach the client, TLS-4).
pub(super) const PRE_TLS: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='PRE-TLS-ID' from='example.com' version='1.0' xml:lang='en'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>X-PRE-TLS-ONLY</mechanism></mechanisms></stream:features>";
pub(super) const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub(super) const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' version='1.0' xml:lang='en'>";
pub(super) const FEATURES: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>";
pub(super) const MESSAGE: &str =
    r#"<message xmlns="jabber:client" to="romeo@example.net" type="chat"><body>hi</body></message>"#;
pub(super) const SUCCESS: &str = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
pub(super) const CLIENT_OPEN_ID_2: &str =
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-2" version="1.0" xml:lang="en"/>"#;

/// The gateway-made stream error for `condition` (CONFORMANCE 3.6, D13).
pub(super) fn stream_error(condition: &str) -> String {
    format!(
        r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><{condition} xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#
    )
}

/// A core, the time, and the actions it produced.
pub(super) struct Driver {
    pub core: SessionCore,
    pub now: Instant,
}

impl Driver {
    pub fn new() -> Driver {
        Driver::with(Settings::default())
    }

    pub fn with(settings: Settings) -> Driver {
        let now = Instant::now();
        let mut driver = Driver { core: SessionCore::new(Arc::new(settings), now, 7), now };
        let initial = driver.take();
        assert_eq!(initial, vec![Action::SetTimer(Timer::Open, now + Duration::from_secs(10))]);
        driver
    }

    fn take(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.core.poll_action()).collect()
    }

    /// Feeds one input now; returns the actions.
    pub fn feed(&mut self, input: Input<'_>) -> Vec<Action> {
        self.core.handle(self.now, input);
        assert_eq!(self.core.check_invariants(), Ok(()));
        self.take()
    }

    pub fn client(&mut self, text: &str) -> Vec<Action> {
        self.feed(Input::ClientText(text))
    }

    pub fn server(&mut self, text: &str) -> Vec<Action> {
        self.feed(Input::ServerBytes(text.as_bytes()))
    }

    pub fn later(&mut self, by: Duration) -> &mut Driver {
        self.now += by;
        self
    }

    pub fn fire(&mut self, timer: Timer) -> Vec<Action> {
        self.feed(Input::TimerFired(timer))
    }

    pub fn connected(&mut self, security: RouteSecurity) -> Vec<Action> {
        let connected = Connected { security, proxy_header: None, attempt_started: self.now };
        self.feed(Input::UpstreamConnected(connected))
    }

    /// `<open/>`, a STARTTLS route, pre-TLS header and features, `<proceed/>`, TLS: returns
    /// everything written upstream before TLS, and the actions of `TlsReady`.
    pub fn through_tls(&mut self, open: &str) -> (String, Vec<Action>) {
        let mut plaintext = String::new();
        let connect = self.client(open);
        assert!(connect.iter().any(|action| matches!(action, Action::Connect(_))), "{connect:?}");
        plaintext += &upstream(&self.connected(RouteSecurity::StartTls));
        plaintext += &upstream(&self.server(PRE_TLS));
        let proceed = self.server(PROCEED);
        assert!(proceed.contains(&Action::StartTls), "{proceed:?}");
        plaintext += &upstream(&proceed);
        (plaintext, self.feed(Input::TlsReady))
    }

    /// A session through STARTTLS with `features`: the actions of the server's secured header
    /// and features (the client's `<open/>` among them).
    pub fn opened_with(&mut self, features: &str) -> Vec<Action> {
        self.through_tls(OPEN);
        let actions = self.server(&format!("{SERVER_HEADER}{features}"));
        assert_eq!(self.core.state_name(), "relaying", "{actions:?}");
        actions
    }

    /// A session relaying after TV-10.
    pub fn opened() -> Driver {
        let mut driver = Driver::new();
        let actions = driver.opened_with(FEATURES);
        assert_eq!(texts(&actions)[0], CLIENT_OPEN_ID_2);
        driver
    }
}

/// The text messages sent to the client.
pub(super) fn texts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::ToClient(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Everything written upstream, concatenated.
pub(super) fn upstream(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::ToServer(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect()
}

/// The outcome, if the actions end the session.
pub(super) fn done(actions: &[Action]) -> Option<Outcome> {
    actions.iter().find_map(|action| match action {
        Action::Done(outcome) => Some(*outcome),
        _ => None,
    })
}

/// The WebSocket close, if any.
pub(super) fn ws_close(actions: &[Action]) -> Option<(u16, &'static str)> {
    actions.iter().find_map(|action| match action {
        Action::CloseClient { code, reason } => Some((*code, *reason)),
        _ => None,
    })
}

/// How the upstream was closed, if it was.
pub(super) fn upstream_close(actions: &[Action]) -> Option<UpstreamClose> {
    actions.iter().find_map(|action| match action {
        Action::CloseUpstream(close) => Some(*close),
        _ => None,
    })
}

/// The counters moved.
pub(super) fn counts(actions: &[Action]) -> Vec<Count> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Count(count) => Some(*count),
            _ => None,
        })
        .collect()
}

/// The client was sent a stream error for `condition` then `<close/>`, and nothing after.
pub(super) fn assert_error_then_close(actions: &[Action], condition: &str) {
    let sent = texts(actions);
    let n = sent.len();
    assert!(n >= 2, "{actions:?}");
    assert_eq!(sent[n - 2], stream_error(condition), "{actions:?}");
    assert_eq!(sent[n - 1], CLOSE, "{actions:?}");
}
