//! Twins of the wire tests about the first message, connecting and negotiating the upstream
//! stream (tests/relay.rs, tests/conformance.rs, tests/operations.rs).

use std::time::Duration;

use super::*;
use crate::upstream::{FailureClass, TcpFailure, TlsFailure};

fn first_message_refused(message: &str, condition: &str) {
    let mut driver = Driver::new();
    let actions = driver.client(message);
    let sent = texts(&actions);
    assert_eq!(sent.len(), 3, "{actions:?}");
    assert!(sent[0].starts_with(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="" id="gw-"#), "{sent:?}");
    assert!(sent[0].ends_with(r#" version="1.0" xml:lang="en"/>"#), "{sent:?}");
    assert_error_then_close(&actions, condition);
    assert_eq!(ws_close(&actions), Some((1000, condition)));
    assert!(!actions.iter().any(|action| matches!(action, Action::Connect(_) | Action::CloseUpstream(_))));
}

/// Fails the current route with `failure`, finds no other one, and returns the ending's actions.
fn no_more_routes(driver: &mut Driver, failure: Input<'_>) -> Vec<Action> {
    let next = driver.feed(failure);
    assert!(next
        .iter()
        .any(|action| matches!(action, Action::Connect(ConnectRequest { to: ConnectTo::NextRoute, .. }))));
    driver.feed(Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes))
}

/// The D6 refusal: `<open/>` from the domain, `<remote-connection-failed/>` with the class, `<close/>`.
fn assert_remote_connection_failed(actions: &[Action], class: &'static str) {
    let sent = texts(actions);
    assert_eq!(sent.len(), 3, "{actions:?}");
    assert!(sent[0].starts_with("<open ") && sent[0].contains(r#"from="example.com""#), "{sent:?}");
    assert!(sent[1].contains("<remote-connection-failed") && sent[1].contains(&format!(">{class}</text>")), "{sent:?}");
    assert_eq!(sent[2], CLOSE);
    assert_eq!(ws_close(actions), Some((1000, class)));
    assert_eq!(done(actions), Some(Outcome::UpstreamFailed));
    let counted =
        counts(actions).into_iter().any(|count| matches!(count, Count::ConnectFailure(c) if c.class() == class));
    assert!(counted, "{actions:?}");
}

#[test]
fn tv_10_happy_path_starttls_then_open_and_features() {
    let mut driver = Driver::new();
    let (plaintext, tls_ready) = driver.through_tls(OPEN);
    assert_eq!(
        plaintext,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    let header = upstream(&tls_ready);
    assert!(header.contains("<stream:stream xmlns='jabber:client'") && header.contains("to='example.com'"), "{header}");
    assert!(!header.contains("id=") && !header.ends_with("/>"), "{header}");
    let actions = driver.server(&format!("{SERVER_HEADER}{FEATURES}"));
    let sent = texts(&actions);
    assert_eq!(sent[0], CLIENT_OPEN_ID_2);
    for expected in ["SCRAM-SHA-1-PLUS", "<sasl-channel-binding", r#"xmlns:stream="http://etherx.jabber.org/streams""#]
    {
        assert!(sent[1].contains(expected), "{sent:?}");
    }
    for forbidden in ["PRE-TLS-ID", "X-PRE-TLS-ONLY", "xmpp-tls"] {
        assert!(sent.iter().all(|text| !text.contains(forbidden)), "{forbidden} leaked: {sent:?}");
    }
    assert!(counts(&actions).iter().any(|count| matches!(count, Count::ConnectPhase { phase: "stream", .. })));
}

#[test]
fn tv_11_auth_sent_before_tls_never_leaves_in_plaintext() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    let connecting = driver.client(AUTH);
    assert!(connecting.is_empty(), "queued, nothing written: {connecting:?}");
    driver.connected(RouteSecurity::StartTls);
    let mut plaintext = upstream(&driver.server(PRE_TLS));
    plaintext += &upstream(&driver.server(PROCEED));
    assert!(!plaintext.contains("AGp1bGll"), "{plaintext}");
    let header = upstream(&driver.feed(Input::TlsReady));
    assert!(!header.contains("AGp1bGll"), "{header}");
    let opened = driver.server(&format!("{SERVER_HEADER}{FEATURES}"));
    assert_eq!(texts(&opened)[0], CLIENT_OPEN_ID_2);
    assert!(driver.core.wants_flush());
    assert_eq!(upstream(&opened) + &upstream(&driver.feed(Input::ClientIdle)), AUTH);
}

#[test]
fn tv_12_starttls_refused_is_a_connection_failure_never_plaintext() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.client(AUTH);
    driver.connected(RouteSecurity::StartTls);
    // TLS-2: <starttls/> is sent although the features do not offer it.
    let features = driver.server(&format!("{SERVER_HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"));
    assert_eq!(upstream(&features), framing::STARTTLS_REQUEST);
    let failed = driver.server("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
    assert_eq!(upstream_close(&failed), Some(UpstreamClose::Discard));
    assert!(!upstream(&failed).contains("AGp1bGll"));
    let actions = driver.feed(Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes));
    assert_remote_connection_failed(&actions, "starttls-refused");
}

#[test]
fn tv_13_certificate_for_another_name_is_refused_and_nothing_is_sent() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.client(AUTH);
    driver.connected(RouteSecurity::StartTls);
    driver.server(PRE_TLS);
    driver.server(PROCEED);
    let actions =
        no_more_routes(&mut driver, Input::TlsFailed { class: FailureClass::Tls(TlsFailure::CertNameMismatch) });
    assert_remote_connection_failed(&actions, "tls-cert-name-mismatch");
    assert!(upstream(&actions).is_empty());
}

#[test]
fn tv_14_bytes_injected_after_proceed_never_reach_the_client() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.connected(RouteSecurity::StartTls);
    driver.server(&format!(
        "{SERVER_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
    ));
    let injected = driver.server(&format!("{PROCEED}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>INJECTED</mechanism></mechanisms></stream:features>"));
    assert!(!injected.contains(&Action::StartTls), "no TLS over an injected stream: {injected:?}");
    assert_eq!(upstream_close(&injected), Some(UpstreamClose::Discard));
    let actions = driver.feed(Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes));
    assert_remote_connection_failed(&actions, "starttls-injection");
    assert!(texts(&actions).iter().all(|text| !text.contains("INJECTED")));
}

#[test]
fn tv_15_direct_tls_sends_nothing_before_the_handshake() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.client(AUTH);
    assert_eq!(
        driver.connected(RouteSecurity::DirectTls),
        vec![Action::SetTimer(Timer::Attempt, driver.now + Duration::from_secs(10)), Action::StartTls]
    );
    assert!(!driver.core.reads_upstream(), "nothing is read during the handshake");
    assert!(driver.server("<garbage").is_empty(), "bytes during the handshake are never parsed");
    let header = upstream(&driver.feed(Input::TlsReady));
    assert!(header.starts_with("<?xml version='1.0'?><stream:stream "), "{header}");
    let opened = driver.server(&format!(
        "{SERVER_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
    ));
    assert!(!texts(&opened)[1].contains("starttls"), "{opened:?}");
}

#[test]
fn tv_16_post_tls_starttls_and_compression_are_stripped() {
    let mut driver = Driver::new();
    let actions = driver.opened_with("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
    let features = &texts(&actions)[1];
    assert!(
        features.starts_with("<stream:features ") && features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    for gone in ["starttls", "xmpp-tls", "compression", "zlib"] {
        assert!(!features.contains(gone), "{gone} must be stripped: {features}");
    }
}

#[test]
fn tv_23_client_chosen_id_never_goes_upstream() {
    let mut driver = Driver::new();
    let open =
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" id="client-chosen"/>"#;
    let (plaintext, tls_ready) = driver.through_tls(open);
    for header in [plaintext, upstream(&tls_ready)] {
        assert!(!header.contains("client-chosen") && !header.contains(" id="), "{header}");
    }
}

#[test]
fn tv_24_from_only_after_tls_and_the_server_to_reaches_the_client() {
    let mut driver = Driver::new();
    let open = r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" from="juliet@example.com" version="1.0"/>"#;
    let (plaintext, tls_ready) = driver.through_tls(open);
    assert!(!plaintext.contains("from="), "{plaintext}");
    assert!(upstream(&tls_ready).contains("from='juliet@example.com'"));
    let actions = driver.server(&format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' to='juliet@example.com' version='1.0' xml:lang='en'>{FEATURES}"));
    assert!(texts(&actions)[0].contains(r#"to="juliet@example.com""#), "{actions:?}");
}

#[test]
fn close_as_the_first_message_is_answered_with_close() {
    let mut driver = Driver::new();
    let actions = driver.client(CLOSE);
    assert_eq!(texts(&actions), vec![CLOSE.to_string()], "no <open/> before it (RFC 7395 §3.6)");
    assert_eq!(ws_close(&actions), Some((1000, ending::STREAM_CLOSED)));
    assert_eq!(done(&actions), Some(Outcome::Clean));
}

#[test]
fn tv_80_open_outside_the_framing_namespace_is_invalid_namespace() {
    first_message_refused(r#"<open xmlns="jabber:client" to="example.com" version="1.0"/>"#, "invalid-namespace");
}

#[test]
fn tv_81_legacy_stream_header_is_invalid_namespace() {
    first_message_refused(
        r#"<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="example.com" version="1.0">"#,
        "invalid-namespace",
    );
}

#[test]
fn tv_82_first_message_not_open_is_invalid_namespace() {
    first_message_refused(r#"<presence xmlns="jabber:client"/>"#, "invalid-namespace");
    let mut driver = Driver::new();
    let actions = driver.client(r#"<presence xmlns="jabber:client"/>"#);
    assert_eq!(counts(&actions)[0], Count::ClientRefused("not-open"));
    assert_eq!(done(&actions), Some(Outcome::ClientError));
}

#[test]
fn tv_83_open_without_to_is_host_unknown_and_unlisted_domain_too() {
    first_message_refused(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" version="1.0"/>"#, "host-unknown");
    let mut driver = Driver::new();
    let open = r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="evil.example" version="1.0"/>"#;
    let connect = driver.client(open);
    assert!(connect.iter().any(|action| matches!(action, Action::Connect(ConnectRequest { to: ConnectTo::FirstRoute { domain }, .. }) if domain == "evil.example")));
    let lookup = DomainLookup::NotServed { class: FailureClass::DomainNotAllowed };
    let actions = driver.feed(Input::DomainLookup(lookup));
    let sent = texts(&actions);
    assert!(sent[0].contains(r#"from="evil.example""#) && sent[1].contains("<host-unknown"), "{sent:?}");
    assert!(sent[1].contains(">domain-not-allowed</text>"), "{sent:?}");
    assert_eq!(ws_close(&actions), Some((1000, "domain-not-allowed")));
    assert_eq!(done(&actions), Some(Outcome::HostUnknown));
    assert!(counts(&actions).contains(&Count::ConnectFailure(FailureClass::DomainNotAllowed)));
}

#[test]
fn tv_84_ip_literal_to_is_host_unknown_without_any_connection() {
    for to in ["127.0.0.1", "169.254.169.254", "[::1]"] {
        first_message_refused(
            &format!(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{to}" version="1.0"/>"#),
            "host-unknown",
        );
    }
}

#[test]
fn tv_98_upstream_setup_error_is_relayed_after_its_open() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    let actions = driver.server("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='E1' from='example.com' version='1.0' xml:lang='en'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>");
    let sent = texts(&actions);
    assert_eq!(
        sent[0],
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="E1" version="1.0" xml:lang="en"/>"#
    );
    assert!(sent[1].starts_with("<stream:error ") && sent[1].contains("<host-unknown "), "{sent:?}");
    assert_eq!(sent[2], CLOSE);
    // ERR-1: the server ended with an error; the client's answer completes the close.
    let end = driver.client(CLOSE);
    assert_eq!(done(&end), Some(Outcome::ServerStreamError));
    assert_eq!(upstream(&end), "</stream:stream>");
}

fn see_other_host(target: &str) -> String {
    format!("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{target}</see-other-host></stream:error></stream:stream>")
}

fn redirect_to(actions: &[Action]) -> Option<(String, Option<u16>)> {
    actions.iter().find_map(|action| match action {
        Action::Connect(ConnectRequest { to: ConnectTo::Redirect { host, port }, .. }) => Some((host.clone(), *port)),
        _ => None,
    })
}

#[test]
fn tv_97_see_other_host_before_features_is_followed_inside_the_gateway() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    driver.client(AUTH);
    let redirected = driver.server(&format!("{SERVER_HEADER}{}", see_other_host("127.0.0.1:5299")));
    assert_eq!(redirect_to(&redirected), Some(("127.0.0.1".to_string(), Some(5299))));
    assert_eq!(upstream(&redirected), "</stream:stream>", "the old stream ends cleanly, without the queued auth");
    assert_eq!(upstream_close(&redirected), Some(UpstreamClose::Finish));
    assert!(texts(&redirected).is_empty(), "never relayed: {redirected:?}");
    let mut plaintext = upstream(&driver.connected(RouteSecurity::StartTls));
    plaintext += &upstream(&driver.server(PRE_TLS));
    plaintext += &upstream(&driver.server(PROCEED));
    assert!(plaintext.contains("to='example.com'") && !plaintext.contains("AGp1bGll"), "{plaintext}");
    driver.feed(Input::TlsReady);
    let opened = driver.server(&format!("{SERVER_HEADER}{FEATURES}"));
    assert_eq!(texts(&opened)[0], CLIENT_OPEN_ID_2);
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), AUTH, "the queued auth goes to the new server, inside TLS");
}

#[test]
fn tv_97_see_other_host_before_tls_is_followed_too() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.connected(RouteSecurity::StartTls);
    let redirected = driver.server(&format!("{SERVER_HEADER}{}", see_other_host("[::1]")));
    assert_eq!(redirect_to(&redirected), Some(("::1".to_string(), None)));
    assert_eq!(upstream_close(&redirected), Some(UpstreamClose::Discard));
    assert!(upstream(&redirected).is_empty());
}

#[test]
fn tv_97_redirect_target_must_prove_the_original_domain() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    driver.server(&format!("{SERVER_HEADER}{}", see_other_host("127.0.0.1:5299")));
    driver.connected(RouteSecurity::StartTls);
    driver.server(PRE_TLS);
    driver.server(PROCEED);
    let actions =
        no_more_routes(&mut driver, Input::TlsFailed { class: FailureClass::Tls(TlsFailure::CertNameMismatch) });
    assert_remote_connection_failed(&actions, "tls-cert-name-mismatch");
}

#[test]
fn tv_97_at_most_five_redirects_then_remote_connection_failed() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    for hop in 0..=MAX_REDIRECTS {
        driver.connected(RouteSecurity::StartTls);
        driver.server(PRE_TLS);
        driver.server(PROCEED);
        driver.feed(Input::TlsReady);
        let actions = driver.server(&format!("{SERVER_HEADER}{}", see_other_host("127.0.0.1:5222")));
        assert_eq!(redirect_to(&actions).is_some(), hop < MAX_REDIRECTS, "hop {hop}: {actions:?}");
    }
    let actions = driver.feed(Input::UpstreamConnectFailed(ConnectFailure::NoMoreRoutes));
    assert_remote_connection_failed(&actions, "see-other-host-loop");
}

#[test]
fn d6_unreachable_upstream_gives_open_error_close_and_the_class() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    let actions = no_more_routes(
        &mut driver,
        Input::UpstreamConnectFailed(ConnectFailure::RouteFailed { class: FailureClass::Tcp(TcpFailure::Refused) }),
    );
    assert_remote_connection_failed(&actions, "connect-refused");
    assert_eq!(upstream_close(&actions), None, "no connection to close");
}

#[test]
fn open_timeout_closes_a_silent_client() {
    let mut driver = Driver::new();
    let actions = driver.later(Duration::from_secs(10)).fire(Timer::Open);
    assert!(texts(&actions)[0].starts_with("<open "));
    assert_error_then_close(&actions, "connection-timeout");
    assert_eq!(ws_close(&actions), Some((1000, "connection-timeout")));
    assert_eq!(done(&actions), Some(Outcome::OpenTimeout));
}

#[test]
fn lim_4_queue_while_connecting_is_bounded_policy_violation_and_nothing_leaves_in_plaintext() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    for _ in 0..32 {
        assert!(driver.client(AUTH).is_empty());
    }
    let actions = driver.client(AUTH);
    assert!(texts(&actions)[1].contains("<policy-violation"), "{actions:?}");
    assert_eq!(ws_close(&actions), Some((1008, ending::QUEUE_FULL_TEXT)));
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Discard));
    assert!(upstream(&actions).is_empty());
    assert_eq!(counts(&actions)[0], Count::ClientRefused("queue-full"));
}

#[test]
fn lim_4_queue_is_bounded_in_bytes_too_by_the_upstreams_element_limit() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.feed(Input::DomainLookup(DomainLookup::Served { max_element_bytes: 10_000 }));
    let big = format!(r#"<message xmlns="jabber:client"><body>{}</body></message>"#, "x".repeat(6_000));
    assert!(driver.client(&big).is_empty());
    assert_eq!(done(&driver.client(&big)), Some(Outcome::ClientError));
}

#[test]
fn connect_attempt_timeout_gives_remote_connection_failed_with_the_phase() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.connected(RouteSecurity::StartTls);
    driver.server(PRE_TLS);
    let actions = no_more_routes(driver.later(Duration::from_secs(10)), Input::TimerFired(Timer::Attempt));
    assert_remote_connection_failed(&actions, "tls-timeout");
    // The whole budget: stream phase, no route failure first.
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    let actions = driver.later(Duration::from_secs(30)).fire(Timer::Setup);
    assert_remote_connection_failed(&actions, "stream-timeout");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Discard));
}

#[test]
fn proxy_protocol_v2_header_comes_before_the_stream_header() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    let connected = Connected {
        security: RouteSecurity::StartTls,
        proxy_header: Some(b"PROXY".to_vec()),
        attempt_started: driver.now,
    };
    let actions = driver.feed(Input::UpstreamConnected(connected));
    assert!(upstream(&actions).starts_with("PROXY<?xml version='1.0'?><stream:stream "), "{actions:?}");
}

#[test]
fn tls_none_upstream_sends_the_secured_header_at_once() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    let header = upstream(&driver.connected(RouteSecurity::Plain));
    assert!(header.starts_with("<?xml version='1.0'?><stream:stream ") && !header.contains("starttls"), "{header}");
    let actions = driver.server(&format!("{SERVER_HEADER}{FEATURES}"));
    assert_eq!(texts(&actions)[0], CLIENT_OPEN_ID_2);
}

#[test]
fn tv_96_drain_with_redirect_sends_see_other_uri() {
    let uri = "wss://gw2.example.net/xmpp-websocket";
    for before_stream in [true, false] {
        let mut driver = Driver::with(Settings { redirect_uri: Some(uri.to_string()), ..Settings::default() });
        if !before_stream {
            driver.opened_with(FEATURES);
        }
        let actions = driver.feed(Input::Drain);
        assert_eq!(texts(&actions), vec![framing::close_see_other_uri(uri)]);
        assert_eq!(ws_close(&actions), Some((1001, ending::SHUTTING_DOWN)));
        assert_eq!(done(&actions), Some(Outcome::Drained));
    }
}

#[test]
fn drain_sends_system_shutdown() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    let actions = driver.feed(Input::Drain);
    assert!(texts(&actions)[0].contains(r#"from="example.com""#));
    assert_error_then_close(&actions, "system-shutdown");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Discard), "the connect in flight is cancelled");
    let mut driver = Driver::opened();
    let actions = driver.feed(Input::Drain);
    assert_eq!(texts(&actions).len(), 2, "no second <open/> inside the stream");
    assert_error_then_close(&actions, "system-shutdown");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Abort), "resumable elsewhere (CL-4)");
}

/// A message refused while the stream is being set up ends the session at once, the connection
/// in the works dropped (LIM-4: checked on arrival).
fn refused_while_connecting(message: &str, condition: &str, reason: &'static str) {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.feed(Input::DomainLookup(DomainLookup::Served { max_element_bytes: 262_144 }));
    driver.connected(RouteSecurity::StartTls);
    let actions = driver.client(message);
    let sent = texts(&actions);
    assert!(sent[0].starts_with("<open ") && sent[0].contains(r#"from="example.com""#), "{sent:?}");
    assert_error_then_close(&actions, condition);
    assert_eq!(ws_close(&actions), Some((1000, condition)));
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Discard));
    assert!(upstream(&actions).is_empty(), "{actions:?}");
    assert!(counts(&actions).contains(&Count::ClientRefused(reason)), "{actions:?}");
    assert_eq!(done(&actions), Some(Outcome::ClientError));
}

#[test]
fn lim_4_a_message_refused_while_connecting_ends_the_session_at_once() {
    refused_while_connecting(r#"<message xmlns="jabber:client"><body>hi"#, "not-well-formed", "not-well-formed");
}

#[test]
fn d3_a_second_open_while_connecting_is_bad_format_at_once() {
    refused_while_connecting(OPEN, "bad-format", "unexpected-open");
}

#[test]
fn the_upstreams_element_limit_applies_from_the_domain_lookup_on() {
    let mut driver = Driver::new();
    driver.client(OPEN);
    driver.feed(Input::DomainLookup(DomainLookup::Served { max_element_bytes: 10_000 }));
    assert_eq!(driver.core.element_limit(), 10_000);
    let big = format!(r#"<message xmlns="jabber:client"><body>{}</body></message>"#, "x".repeat(10_000));
    let actions = driver.client(&big);
    assert_eq!(ws_close(&actions), Some((1009, "policy-violation")));
    assert!(counts(&actions).contains(&Count::ClientRefused("too-big")), "{actions:?}");
}

/// During the negotiation too, a bad byte that waited in the splitter for a `>` is found when
/// the server hangs up: the route failed on bad XML, not on the hang-up.
#[test]
fn a_bad_byte_waiting_for_a_gt_fails_the_route_as_bad_xml_when_the_server_hangs_up() {
    for (tail, class) in [(&b"\x01"[..], "upstream-bad-xml"), (&b"ok"[..], "upstream-closed")] {
        let mut driver = Driver::new();
        driver.client(OPEN);
        driver.connected(RouteSecurity::StartTls);
        let header = &PRE_TLS[..PRE_TLS.find("<stream:features>").expect("features")];
        assert!(upstream(&driver.server(&format!("{header}<stream:features>"))).is_empty());
        assert!(driver.feed(Input::ServerBytes(tail)).is_empty(), "waits for a `>`");
        let actions = no_more_routes(&mut driver, Input::UpstreamGone(UpstreamGone::ReadEnd));
        assert_remote_connection_failed(&actions, class);
    }
}
