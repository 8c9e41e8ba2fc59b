//! Twins of the wire tests about the open stream: relaying both ways, namespaces, restarts,
//! refused client and server XML, batching (tests/relay.rs, tests/conformance.rs,
//! tests/operations.rs).

use super::*;
use crate::xml::condition::StreamCondition;
use std::time::Duration;

const DECLS: &str = r#" xmlns="jabber:client""#;

/// Sends `message` in an open session and expects the gateway-made error of CONFORMANCE 3.6:
/// `condition` + `<close/>` to the client, WebSocket close `code`, and upstream a plain
/// `</stream:stream>` without a byte of the message.
fn refused_in_session(message: &str, condition: &str, code: u16) {
    let mut driver = Driver::opened();
    let actions = driver.client(message);
    assert_eq!(texts(&actions), vec![stream_error(condition), CLOSE.to_string()], "{message}");
    assert_eq!(ws_close(&actions), Some((code, condition)));
    assert_eq!(upstream(&actions), "</stream:stream>", "{message}");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Finish));
    assert_eq!(done(&actions), Some(Outcome::ClientError));
}

/// The client's `<open/>` after the server's SASL `<success/>`: the restart header goes up.
fn sasl_success(driver: &mut Driver) {
    driver.client(AUTH);
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), AUTH);
    let success = driver.server(SUCCESS);
    assert!(texts(&success)[0].starts_with("<success "), "{success:?}");
}

/// The server's element as the client gets it (header declarations added, NS-1).
fn relayed(element: &str) -> String {
    let name_end = element.find([' ', '/', '>']).unwrap();
    format!("{}{DECLS}{}", &element[..name_end], &element[name_end..])
}

#[test]
fn tv_17_client_starttls_is_answered_with_failure_and_never_relayed() {
    let mut driver = Driver::opened();
    let actions = driver.client(r#"<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#);
    assert_eq!(texts(&actions), vec![framing::STARTTLS_FAILURE.to_string(), CLOSE.to_string()]);
    assert_eq!(ws_close(&actions).map(|(code, _)| code), Some(1000));
    assert!(upstream(&actions).is_empty(), "{actions:?}");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Finish));
}

#[test]
fn tv_20_sasl_success_then_client_restart_opens_a_new_stream() {
    let mut driver = Driver::opened();
    sasl_success(&mut driver);
    let restart =
        driver.client(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#);
    let header = upstream(&restart);
    assert!(
        header.starts_with("<?xml version='1.0'?><stream:stream ") && !header.contains("</stream:stream>"),
        "{header}"
    );
    assert!(texts(&restart).is_empty(), "no <close/> for a restart: {restart:?}");
    let actions = driver.server("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-3' from='example.com' version='1.0' xml:lang='en'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>");
    let sent = texts(&actions);
    assert!(sent[0].starts_with("<open ") && sent[0].contains(r#"id="ID-3""#), "{sent:?}");
    assert!(sent[1].contains("urn:ietf:params:xml:ns:xmpp-bind"), "{sent:?}");
    assert_eq!(driver.core.state_name(), "relaying");
}

/// A stream restart ends with the server's features: what the new stream's splitter took for
/// them (its buffer, the checker) is given back then, so a session that goes quiet after
/// logging in holds none of it; the next element is split as before.
#[test]
fn the_splitter_holds_nothing_once_a_restart_has_its_features() {
    let mut driver = Driver::opened();
    sasl_success(&mut driver);
    driver.client(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#);
    driver.server("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-3' from='example.com' version='1.0'>");
    let held = |driver: &Driver| match &driver.core.state {
        State::Relaying(relay) => relay.upstream.splitter.held_bytes(),
        _ => panic!("not relaying: {}", driver.core.state_name()),
    };
    assert!(held(&driver) > 0, "the header was read with the splitter's storage");
    let features = driver.server("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
    assert!(texts(&features)[0].contains("urn:ietf:params:xml:ns:xmpp-bind"), "{features:?}");
    assert_eq!(held(&driver), 0);
    let message = "<message to='juliet@example.com'><body>hi</body></message>";
    assert_eq!(texts(&driver.server(message)), vec![relayed(message)]);
}

#[test]
fn tv_21_sasl2_success_has_no_restart_and_a_later_open_is_bad_format() {
    let mut driver = Driver::opened();
    let actions = driver.server("<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>juliet@example.com/balcony</authorization-identifier></success><stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>");
    assert_eq!(texts(&actions).len(), 2);
    let actions = driver.client(OPEN);
    assert_eq!(texts(&actions), vec![stream_error("bad-format"), CLOSE.to_string()]);
    assert_eq!(upstream(&actions), "</stream:stream>");
    assert_eq!(counts(&actions)[0], Count::ClientRefused("unexpected-open"));
}

#[test]
fn tv_22_restart_with_another_domain_is_host_unknown_without_a_new_header() {
    let mut driver = Driver::opened();
    sasl_success(&mut driver);
    let actions =
        driver.client(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="evil.example" version="1.0"/>"#);
    assert_eq!(texts(&actions), vec![stream_error("host-unknown"), CLOSE.to_string()]);
    assert_eq!(upstream(&actions), "</stream:stream>");
    assert!(!actions.iter().any(|action| matches!(action, Action::Connect(_))));
}

#[test]
fn tv_103_no_whitespace_between_auth_and_success_on_the_upstream_wire() {
    let mut driver = Driver::opened();
    let auth = r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="SCRAM-SHA-1">biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM</auth>"#;
    let response = r#"<response xmlns="urn:ietf:params:xml:ns:xmpp-sasl">Yz1iaXdzLHI9ZnlrbytkMmxi</response>"#;
    let mut wire = upstream(&driver.client(auth));
    wire += &upstream(&driver.feed(Input::ClientIdle));
    driver
        .server("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0w=</challenge>");
    wire += &upstream(&driver.client(response));
    wire += &upstream(&driver.feed(Input::ClientIdle));
    driver
        .server("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9</success>");
    wire += &upstream(&driver.client(OPEN));
    assert!(wire.starts_with(&format!("{auth}{response}<?xml")), "{wire}");
}

#[test]
fn tv_30_relayed_stanza_carries_the_content_namespace() {
    let mut driver = Driver::opened();
    let iq = "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>";
    assert_eq!(texts(&driver.server(iq)), vec![relayed(iq)]);
}

#[test]
fn tv_33_prefix_free_server_header_and_end_tag() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    let actions = driver.server("<stream xmlns='http://etherx.jabber.org/streams' id='ID-P' from='example.com' version='1.0' xml:lang='en'><features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features><message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message></stream>");
    let sent = texts(&actions);
    assert!(sent[0].contains(r#"id="ID-P""#), "{sent:?}");
    assert!(sent[1].starts_with(r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams""#), "{sent:?}");
    assert_eq!(sent[2], "<message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message>");
    assert_eq!(sent[3], CLOSE);
    assert_eq!(driver.core.state_name(), "closing-by-server");
}

#[test]
fn tv_34_other_server_prefix_is_normalised_and_its_end_tag_closes() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    let actions = driver.server("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns='jabber:client' id='ID-Q' from='example.com' version='1.0' xml:lang='en'><ns0:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></ns0:features></ns0:stream>");
    let sent = texts(&actions);
    assert!(sent[1].starts_with(r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams""#), "{sent:?}");
    assert_eq!(sent[2], CLOSE);
}

#[test]
fn tv_35_extra_header_prefix_is_declared_on_the_stanza() {
    let mut driver = Driver::new();
    driver.through_tls(OPEN);
    let actions = driver.server(&format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:example:foo' id='ID-2' from='example.com' version='1.0'>{FEATURES}<message><foo:x/></message>"));
    assert_eq!(texts(&actions)[2], format!(r#"<message{DECLS} xmlns:foo="urn:example:foo"><foo:x/></message>"#));
}

#[test]
fn tv_38_client_stanza_reaches_the_server_byte_identical() {
    let mut driver = Driver::opened();
    let actions = driver.client(MESSAGE);
    assert!(upstream(&actions).is_empty(), "batched until the client pauses");
    assert_eq!(
        counts(&actions),
        vec![Count::Relayed { direction: crate::metrics::Direction::ToServer, bytes: MESSAGE.len() }]
    );
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), MESSAGE);
    assert!(driver.feed(Input::ClientIdle).is_empty(), "nothing left to write");
}

#[test]
fn tv_40_server_whitespace_never_becomes_a_websocket_message() {
    let mut driver = Driver::opened();
    let mut sent = Vec::new();
    for chunk in
        ["\n \n", " ", "<presence from='a@example.com/x'/>", " ", "\r\n\t<presence from='b@example.com/y'/>\n", " "]
    {
        sent.extend(texts(&driver.server(chunk)));
    }
    assert_eq!(
        sent,
        vec![relayed("<presence from='a@example.com/x'/>"), relayed("<presence from='b@example.com/y'/>")]
    );
}

#[test]
fn tv_50_utf8_split_one_byte_per_read() {
    let mut driver = Driver::opened();
    let message = "<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou \u{1F600}</body><thread>e0ffe42b</thread></message>";
    let mut sent = Vec::new();
    for byte in message.as_bytes() {
        sent.extend(texts(&driver.feed(Input::ServerBytes(std::slice::from_ref(byte)))));
    }
    assert_eq!(sent, vec![relayed(message)]);
}

#[test]
fn tv_51_several_elements_in_one_read_are_several_messages_in_order() {
    let mut driver = Driver::opened();
    let sent = texts(&driver.server("<presence from='a@example.com/x'/><presence from='b@example.com/y'/><message from='c@example.com/z'><body>3</body></message>"));
    assert_eq!(sent.len(), 3);
    assert!(
        sent[0].contains("a@example.com") && sent[1].contains("b@example.com") && sent[2].contains("<body>3</body>")
    );
}

#[test]
fn tv_52_to_tv_58_markup_cdata_and_references_are_relayed_untouched() {
    let mut driver = Driver::opened();
    for element in [
        "<iq type='result' id='7b0d57bb>fabe' to='juliet@example.com/balcony'/>",
        "<presence id='a/>b'/>",
        "<message><body><![CDATA[</message><message to='evil@example.org'>]]></body></message>",
        "<message><body>a &amp; b &lt;c&gt; &#x1F600; &#233; &apos;q&apos; &quot;</body></message>",
        "<message id='l1&#10;l2&#9;t'/>",
        "<message><body>a&#13;b</body></message>",
        "<message><body>x ]]&gt; y</body></message>",
    ] {
        assert_eq!(texts(&driver.server(element)), vec![relayed(element)]);
    }
}

fn server_refused(driver: &mut Driver, bytes: &[u8], condition: &'static str) {
    let actions = driver.feed(Input::ServerBytes(bytes));
    assert_eq!(
        upstream(&actions),
        format!(
            "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        )
    );
    let sent = texts(&actions);
    assert!(sent[0].starts_with(r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><remote-connection-failed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>"#), "{sent:?}");
    assert_eq!(sent[1], CLOSE);
    assert_eq!(ws_close(&actions), Some((1000, ending::SERVER_BAD_XML_TEXT)));
    assert_eq!(done(&actions), Some(Outcome::ServerError));
    assert!(counts(&actions)
        .contains(&Count::StreamError { condition: StreamCondition::from_name(condition), side: Side::Gateway }));
}

#[test]
fn tv_59_server_comment_is_restricted_xml_both_ways() {
    server_refused(&mut Driver::opened(), b"<message><!-- x --><body>y</body></message>", "restricted-xml");
}

#[test]
fn server_malformed_utf8_split_across_reads_is_not_well_formed() {
    let mut driver = Driver::opened();
    assert!(driver.feed(Input::ServerBytes(b"<message><body>\xC3")).is_empty());
    server_refused(&mut driver, b"\x28</body></message>", "not-well-formed");
}

#[test]
fn server_element_at_the_size_limit_passes_and_one_byte_more_is_refused() {
    let mut settings = Settings::default();
    settings.server_limits.max_element_bytes = 10_000;
    let mut driver = Driver::with(settings);
    driver.opened_with(FEATURES);
    let element = |size: usize| format!("<presence id='{}'/>", "v".repeat(size - "<presence id=''/>".len()));
    assert_eq!(texts(&driver.server(&element(10_000))).len(), 1);
    server_refused(&mut driver, element(10_001).as_bytes(), "policy-violation");
}

#[test]
fn server_ten_thousand_nested_elements_are_refused_without_crashing() {
    let nested = format!("<message>{}{}</message>", "<a>".repeat(10_000), "</a>".repeat(10_000));
    server_refused(&mut Driver::opened(), nested.as_bytes(), "policy-violation");
}

#[test]
fn tv_60_tv_61_tv_74_websocket_violations_close_with_their_code_and_nothing_upstream() {
    for (code, reason) in [(1003, "text frames only (RFC 7395 3.2)"), (1007, "invalid UTF-8"), (1002, "unmasked frame")]
    {
        let mut driver = Driver::opened();
        driver.client(MESSAGE);
        let actions = driver.feed(Input::ClientViolation { code, reason });
        assert!(texts(&actions).is_empty(), "{actions:?}");
        assert_eq!(ws_close(&actions), Some((code, reason)));
        assert_eq!(upstream(&actions), MESSAGE, "only what was relayed before, no </stream:stream>");
        assert_eq!(counts(&actions)[0], Count::ClientRefused("websocket"));
    }
}

#[test]
fn tv_62_to_tv_71_refused_client_messages() {
    refused_in_session(" <presence/>", "not-well-formed", 1000);
    refused_in_session("\u{FEFF}<presence/>", "not-well-formed", 1000);
    refused_in_session(r#"<presence/><presence type="unavailable"/>"#, "not-well-formed", 1000);
    refused_in_session(r#"<message xmlns="jabber:client"><body>hi"#, "not-well-formed", 1000);
    refused_in_session(r#"<?xml version="1.0" encoding="ISO-8859-1"?><presence/>"#, "unsupported-encoding", 1000);
    refused_in_session(r#"<message xmlns="jabber:client"><!--x--><body>hi</body></message>"#, "restricted-xml", 1000);
    refused_in_session(r#"<message xmlns="jabber:client"><?php echo 1?></message>"#, "restricted-xml", 1000);
    refused_in_session(r#"<!DOCTYPE message [<!ENTITY x "y">]><message>&x;</message>"#, "restricted-xml", 1000);
    refused_in_session(r#"<message xmlns="jabber:client"><body>&nbsp;</body></message>"#, "restricted-xml", 1000);
    refused_in_session(r#"<message xmlns="jabber:client"><foo:body>x</foo:body></message>"#, "not-well-formed", 1000);
}

#[test]
fn tv_65_xml_declaration_is_accepted_and_stripped() {
    let mut driver = Driver::opened();
    driver.client(r#"<?xml version="1.0"?><presence xmlns="jabber:client"/>"#);
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), r#"<presence xmlns="jabber:client"/>"#);
}

#[test]
fn tv_72_oversized_message_is_policy_violation_1009_and_never_reaches_the_server() {
    let mut driver = Driver::opened();
    let actions = driver.feed(Input::ClientTooBig);
    assert_eq!(texts(&actions), vec![stream_error("policy-violation"), CLOSE.to_string()]);
    assert_eq!(ws_close(&actions), Some((1009, "policy-violation")));
    assert_eq!(upstream(&actions), "</stream:stream>");
    assert_eq!(counts(&actions)[0], Count::ClientRefused("too-big"));
}

#[test]
fn tv_75_unsolicited_pong_is_ignored() {
    let mut driver = Driver::opened();
    assert!(driver.feed(Input::ClientPong).is_empty());
    driver.client("<presence xmlns='jabber:client'/>");
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), "<presence xmlns='jabber:client'/>");
}

#[test]
fn tv_76_ten_thousand_nested_elements_are_a_policy_violation_1008() {
    let nested =
        format!(r#"<message xmlns="jabber:client">{}{}</message>"#, "<a>".repeat(10_000), "</a>".repeat(10_000));
    refused_in_session(&nested, "policy-violation", 1008);
}

#[test]
fn tv_85_second_open_before_sasl_success_is_bad_format() {
    let mut driver = Driver::opened();
    let actions = driver.client(OPEN);
    assert_eq!(texts(&actions), vec![stream_error("bad-format"), CLOSE.to_string()]);
    assert_eq!(upstream(&actions), "</stream:stream>", "never a second <stream:stream>");
}

#[test]
fn tv_100_tv_101_stream_management_passes_through_counted_and_in_order() {
    let mut driver = Driver::opened();
    let mut wire = String::new();
    for i in 0..50 {
        wire += &upstream(
            &driver.client(&format!(r#"<message xmlns="jabber:client" id="c{i}"><body>{i}</body></message>"#)),
        );
    }
    wire += &upstream(&driver.client(r#"<r xmlns="urn:xmpp:sm:3"/>"#));
    wire += &upstream(&driver.feed(Input::ClientIdle));
    let expected: String = (0..50)
        .map(|i| format!(r#"<message xmlns="jabber:client" id="c{i}"><body>{i}</body></message>"#))
        .chain(std::iter::once(r#"<r xmlns="urn:xmpp:sm:3"/>"#.to_string()))
        .collect();
    assert_eq!(wire, expected, "exactly the client's stanzas, in order, nothing between them");
    let enabled = "<enabled xmlns='urn:xmpp:sm:3' id='some-long-sm-id' resume='true' max='300' location='[2001:41D0:1:A49b::1]:9222'/>";
    let sent = texts(&driver.server(enabled));
    assert!(sent[0].contains("location='[2001:41D0:1:A49b::1]:9222'"), "D8: passed through: {sent:?}");
}

#[test]
fn client_batch_is_written_when_it_reaches_its_size() {
    let mut driver = Driver::opened();
    let message = format!(r#"<message xmlns="jabber:client"><body>{}</body></message>"#, "x".repeat(1000));
    let mut writes = Vec::new();
    for _ in 0..40 {
        writes.extend(driver.client(&message).into_iter().filter(|action| matches!(action, Action::ToServer(_))));
    }
    assert_eq!(writes.len(), 40 * message.len() / UPSTREAM_BATCH_BYTES, "{} writes", writes.len());
    for write in &writes {
        let Action::ToServer(bytes) = write else { unreachable!() };
        assert!(bytes.len() >= UPSTREAM_BATCH_BYTES && bytes.len() < UPSTREAM_BATCH_BYTES + message.len());
    }
}

#[test]
fn client_compress_is_refused_without_ending_the_stream() {
    let mut driver = Driver::opened();
    let actions =
        driver.client("<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>");
    assert_eq!(texts(&actions), vec![framing::COMPRESS_FAILURE.to_string()]);
    assert!(upstream(&actions).is_empty() && !driver.core.wants_flush());
    assert_eq!(driver.core.state_name(), "relaying");
}

/// The buffer of one write, given back, carries the next batch; one larger than a batch is
/// not kept.
#[test]
fn a_written_batch_buffer_is_reused_unless_it_is_large() {
    let mut driver = Driver::opened();
    let written = |actions: Vec<Action>| {
        actions.into_iter().find_map(|action| match action {
            Action::ToServer(bytes) => Some(bytes),
            _ => None,
        })
    };
    driver.client(MESSAGE);
    let first = written(driver.feed(Input::ClientIdle)).unwrap();
    let (at, capacity) = (first.as_ptr(), first.capacity());
    driver.core.recycle(first);
    driver.client(MESSAGE);
    let second = written(driver.feed(Input::ClientIdle)).unwrap();
    assert_eq!((second.as_ptr(), second.capacity()), (at, capacity), "the same buffer");
    assert_eq!(second, MESSAGE.as_bytes());
    driver.core.recycle(Vec::with_capacity(UPSTREAM_BATCH_BYTES + 1));
    driver.client(MESSAGE);
    let third = written(driver.feed(Input::ClientIdle)).unwrap();
    assert!(third.capacity() <= UPSTREAM_BATCH_BYTES, "a large buffer is dropped");
}

/// The batch buffer kept for the next client elements is given back at the trim (after a
/// restart's features, at each ping), so a quiet session holds none; one with elements batched
/// keeps them.
#[test]
fn the_kept_batch_buffer_is_given_back_at_the_trim() {
    let mut driver = Driver::opened();
    let batch_room = |driver: &Driver| match &driver.core.state {
        State::Relaying(relay) => relay.upstream.batched.capacity(),
        _ => panic!("not relaying: {}", driver.core.state_name()),
    };
    driver.client(MESSAGE);
    let written = driver.feed(Input::ClientIdle).into_iter().find_map(|action| match action {
        Action::ToServer(bytes) => Some(bytes),
        _ => None,
    });
    driver.core.recycle(written.unwrap());
    assert!(batch_room(&driver) > 0, "kept for the next batch");
    driver.later(Duration::from_secs(30)).fire(Timer::Ping);
    assert_eq!(batch_room(&driver), 0);
    driver.client(MESSAGE);
    driver.later(Duration::from_secs(30)).fire(Timer::Ping);
    assert!(batch_room(&driver) > 0, "a batched element is not dropped");
    assert_eq!(upstream(&driver.feed(Input::ClientIdle)), MESSAGE);
}

/// The action queue gives its room back after the opening and at each ping, so a quiet session
/// holds room for a few actions, whatever burst it has seen.
#[test]
fn the_action_queue_is_trimmed_after_the_opening_and_at_each_ping() {
    let mut driver = Driver::opened();
    assert!(driver.core.ctx.actions.capacity() <= 8, "{}", driver.core.ctx.actions.capacity());
    let burst = "<presence/>".repeat(300);
    let actions = driver.server(&burst);
    assert_eq!(texts(&actions).len(), 300);
    assert!(driver.core.ctx.actions.capacity() >= 300, "a busy session keeps its room until the next ping");
    driver.later(Duration::from_secs(30)).fire(Timer::Ping);
    assert!(driver.core.ctx.actions.capacity() <= 8, "{}", driver.core.ctx.actions.capacity());
}

/// A small read without a `>` waits in the splitter (`StreamSplitter::read_waiting_bytes`); if
/// the server then hangs up, the bad byte in it still ends the session as the server's bad XML,
/// as it would have on arrival, not as the server vanishing.
#[test]
fn server_bad_byte_waiting_for_a_gt_is_found_when_the_server_hangs_up() {
    let mut driver = Driver::opened();
    assert!(driver.feed(Input::ServerBytes(b"<message><body>")).is_empty());
    assert!(driver.feed(Input::ServerBytes(b"\x01")).is_empty(), "waits for a `>`");
    let actions = driver.feed(Input::UpstreamGone(UpstreamGone::ReadEnd));
    assert_eq!(done(&actions), Some(Outcome::ServerError), "{actions:?}");
    assert!(counts(&actions).contains(&Count::StreamError {
        condition: StreamCondition::from_name("not-well-formed"),
        side: Side::Gateway
    }));
    assert_eq!(ws_close(&actions), Some((1000, ending::SERVER_BAD_XML_TEXT)));
}

/// With nothing wrong in what waits, the hang-up is what ends the session (TV-95).
#[test]
fn server_hanging_up_mid_element_is_still_the_server_vanishing() {
    let mut driver = Driver::opened();
    assert!(driver.feed(Input::ServerBytes(b"<message><body>")).is_empty());
    assert!(driver.feed(Input::ServerBytes(b"hi")).is_empty());
    let actions = driver.feed(Input::UpstreamGone(UpstreamGone::ReadEnd));
    assert_eq!(done(&actions), Some(Outcome::ServerVanished), "{actions:?}");
}
