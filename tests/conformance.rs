//! The conformance suite: one test per test vector of docs/PROTOCOL.md that needs the gateway on
//! the wire (a real WebSocket client, the gateway, a scripted fake server over real TLS), named
//! after the vector. Vectors tested elsewhere, or in the XML core's unit tests, are listed with
//! their location in tests/CONFORMANCE_COVERAGE.md.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::fake_server::{FakeServer, ServerConn};
use harness::raw_ws::{encode, opcode, RawWs};
use harness::setup::{connecting, opened, opened_raw, setup, setup_with};
use harness::ws_client::{raw_http, upgrade_request, WsClient};
use harness::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};

const AUTH: &str =
    r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"#;
const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' version='1.0' xml:lang='en'>";
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);
const STREAM_DECL: &str = r#" xmlns:stream="http://etherx.jabber.org/streams""#;

/// The exact gateway-made stream error for `condition` (CONFORMANCE 3.6, D13).
fn stream_error(condition: &str) -> String {
    format!(
        r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><{condition} xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#
    )
}

/// The gateway refused the client: its stream error with `condition` and `<close/>`, then the
/// WebSocket close `code` with nothing after it, and a clean end of the upstream stream.
async fn assert_refused(client: &mut RawWs, conn: &mut ServerConn, condition: &str, code: u16) {
    assert_eq!(client.recv_text().await, stream_error(condition));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.until_close().await, (Some(code), vec![]));
    assert_eq!(rest_upstream(conn).await, "</stream:stream>");
}

/// What the upstream received after the post-TLS header, up to the end of the connection.
async fn rest_upstream(conn: &mut ServerConn) -> String {
    let (rest, _) = conn.read_to_end().await;
    rest
}

/// Sends `message` inside an open session and expects the gateway-made error of CONFORMANCE 3.6:
/// `<stream:error>` + `<close/>` to the client, then WebSocket close `code`; upstream a plain
/// `</stream:stream>` and not a byte of the message.
async fn refused_in_session(message: &[u8], condition: &str, code: u16) {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.send_frame(true, opcode::TEXT, message).await;
    assert_eq!(client.recv_text().await, stream_error(condition), "{:?}", String::from_utf8_lossy(message));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.until_close().await, (Some(code), vec![]));
    let upstream = rest_upstream(&mut conn).await;
    assert_eq!(upstream, "</stream:stream>", "the server gets a plain stream end and nothing else");
}

/// Sends one frame inside an open session and expects only a WebSocket close with `code`, no
/// XMPP-level message, and nothing of it upstream.
async fn websocket_violation_in_session(frame: Vec<u8>, code: u16) {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.write_raw(&frame).await;
    assert_eq!(client.until_close().await, (Some(code), vec![]));
    let upstream = rest_upstream(&mut conn).await;
    assert!(!upstream.contains('<'), "nothing may reach the server: {upstream:?}");
}

/// The first message, before any stream, is refused with `<open/>` + `condition` + `<close/>`
/// and no upstream connection is made.
async fn refused_as_first_message(message: &str, condition: &str) {
    let setup = setup().await;
    let mut client = RawWs::connect(&setup.gateway.url).await;
    client.send_text(message).await;
    let open = client.recv_text().await;
    assert!(open.starts_with(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from=""#), "{open}");
    assert!(open.ends_with(r#" version="1.0" xml:lang="en"/>"#), "{open}");
    assert_eq!(client.recv_text().await, stream_error(condition), "{message}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.until_close().await, (Some(1000), vec![]));
    setup.gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
    assert!(setup.server.try_accept(Duration::from_millis(100)).await.is_none(), "no upstream connection");
}

// ---------------------------------------------------------------------------------------------
// 3.1 Handshake

#[tokio::test]
async fn tv_01_xmpp_offered_gives_101_with_exactly_one_xmpp() {
    let setup = setup().await;
    let host = setup.gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    let (status, response) =
        raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", "Sec-WebSocket-Protocol: xmpp\r\n")).await;
    assert_eq!(status, 101, "{response}");
    let lines: Vec<&str> =
        response.lines().filter(|line| line.to_ascii_lowercase().starts_with("sec-websocket-protocol:")).collect();
    assert_eq!(lines.len(), 1, "{response}");
    assert_eq!(lines[0].split(':').nth(1).map(str::trim), Some("xmpp"));
}

// ---------------------------------------------------------------------------------------------
// 3.2 Stream open, STARTTLS, features

#[tokio::test]
async fn tv_14_bytes_injected_after_proceed_never_reach_the_client() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.read_stream_header().await;
    conn.write(&format!(
        "{SERVER_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
    ))
    .await;
    conn.read_until("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    conn.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>INJECTED</mechanism></mechanisms></stream:features>").await;
    // The gateway refuses the connection (or, if the injection arrived in a later segment, the
    // TLS handshake fails on it); either way nothing of it is ever parsed as post-TLS XML.
    let _ = conn.try_upgrade_tls().await;
    let mut seen = Vec::new();
    while let harness::ws_client::WsEvent::Text(text) = client.next_event().await {
        seen.push(text);
    }
    assert!(seen.iter().all(|text| !text.contains("INJECTED")), "{seen:?}");
    assert_eq!(seen.len(), 3, "open + remote-connection-failed + close: {seen:?}");
    assert!(seen[1].contains("<remote-connection-failed"), "{seen:?}");
    assert_eq!(seen[2], CLOSE);
}

#[tokio::test]
async fn tv_16_post_tls_starttls_and_compression_are_stripped() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.open_with_starttls(DOMAIN, "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>").await;
    assert!(client.recv_text().await.starts_with("<open "));
    let features = client.recv_text().await;
    assert!(features.starts_with("<stream:features "), "{features}");
    assert!(features.contains(r#"xmlns:stream="http://etherx.jabber.org/streams""#), "{features}");
    assert!(features.contains("<mechanism>PLAIN</mechanism>"), "{features}");
    for gone in ["starttls", "xmpp-tls", "compression", "zlib"] {
        assert!(!features.contains(gone), "{gone} must be stripped: {features}");
    }
}

#[tokio::test]
async fn tv_17_client_starttls_is_answered_with_failure_and_never_relayed() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(r#"<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#).await;
    assert_eq!(client.recv_text().await, r#"<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#);
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    let upstream = rest_upstream(&mut conn).await;
    assert!(!upstream.contains("starttls"), "{upstream}");
}

// ---------------------------------------------------------------------------------------------
// 3.3 SASL and restarts

#[tokio::test]
async fn tv_21_sasl2_success_has_no_restart_and_a_later_open_is_bad_format() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(r#"<authenticate xmlns="urn:xmpp:sasl:2" mechanism="PLAIN"><initial-response>AGp1bGlldAByMG0zMG15cjBtMzA=</initial-response></authenticate>"#).await;
    conn.read_until("</authenticate>").await;
    conn.write("<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>juliet@example.com/balcony</authorization-identifier></success><stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>").await;
    let success = client.recv_text().await;
    assert!(success.starts_with("<success ") && success.contains("urn:xmpp:sasl:2"), "{success}");
    let features = client.recv_text().await;
    assert!(features.starts_with("<stream:features ") && features.contains("urn:xmpp:sm:3"), "{features}");
    client.send(OPEN).await;
    assert_eq!(client.recv_text().await, stream_error("bad-format"));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    let upstream = rest_upstream(&mut conn).await;
    assert!(upstream.ends_with("</stream:stream>") && !upstream.contains("<stream:stream"), "{upstream}");
}

#[tokio::test]
async fn tv_22_restart_with_another_domain_is_host_unknown_without_a_new_header() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(AUTH).await;
    conn.read_until("</auth>").await;
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    assert!(client.recv_text().await.starts_with("<success "));
    client.send(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="evil.example" version="1.0"/>"#).await;
    assert_eq!(client.recv_text().await, stream_error("host-unknown"));
    assert_eq!(client.recv_text().await, CLOSE);
    let upstream = rest_upstream(&mut conn).await;
    assert!(!upstream.contains("<stream:stream") && !upstream.contains("evil"), "{upstream}");
    assert!(setup.server.try_accept(Duration::from_millis(100)).await.is_none(), "no new connection");
    setup.gateway.wait_metric("xmppgw_client_elements_refused_total{reason=\"restart-elsewhere\"}", 1.0).await;
}

#[tokio::test]
async fn tv_23_client_chosen_id_never_goes_upstream() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client
        .send(
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" id="client-chosen"/>"#,
        )
        .await;
    let mut conn = setup.server.accept().await;
    let post_tls = conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    for header in [plaintext.as_str(), post_tls.as_str()] {
        assert!(!header.contains("client-chosen") && !header.contains(" id="), "{header}");
    }
}

#[tokio::test]
async fn tv_24_from_only_after_tls_and_the_server_to_reaches_the_client() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" from="juliet@example.com" version="1.0"/>"#).await;
    let mut conn = setup.server.accept().await;
    let post_tls = conn.starttls_then(DOMAIN, &format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' to='juliet@example.com' version='1.0' xml:lang='en'>{FEATURES}")).await;
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("from="), "{plaintext}");
    assert!(post_tls.contains("from='juliet@example.com'"), "{post_tls}");
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains(r#"to="juliet@example.com""#), "{open}");
}

#[tokio::test]
async fn tv_103_no_whitespace_between_auth_and_success_on_the_upstream_wire() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    let auth = r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="SCRAM-SHA-1">biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM</auth>"#;
    let response = r#"<response xmlns="urn:ietf:params:xml:ns:xmpp-sasl">Yz1iaXdzLHI9ZnlrbytkMmxi</response>"#;
    client.send(auth).await;
    assert_eq!(conn.read_until("</auth>").await, auth);
    conn.write("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0w=</challenge>")
        .await;
    assert!(client.recv_text().await.starts_with("<challenge "));
    client.send(response).await;
    assert_eq!(conn.read_until("</response>").await, response);
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9</success>")
        .await;
    assert!(client.recv_text().await.starts_with("<success "));
    client.send(OPEN).await;
    let restart = conn.read_stream_header().await;
    assert!(restart.starts_with("<?xml") || restart.starts_with("<stream:stream"), "{restart:?}");
    let wire = String::from_utf8_lossy(&conn.tls_received).into_owned();
    let from_auth = &wire[wire.find("<auth").unwrap()..];
    assert!(from_auth.starts_with(&format!("{auth}{response}<")), "{from_auth}");
}

// ---------------------------------------------------------------------------------------------
// 3.4 Namespace and language rewriting (the splitter's unit tests cover each vector in detail;
// these check the same on the wire for the header styles).

/// What the gateway adds to a stanza of [`SERVER_HEADER`]'s stream: the header declarations the
/// stanza uses (NS-1), here only the default namespace; an element that declares its own
/// namespace gets nothing.
const DECLS: &str = r#" xmlns="jabber:client""#;

#[tokio::test]
async fn tv_30_relayed_stanza_carries_the_content_namespace() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>").await;
    assert_eq!(
        client.recv_text().await,
        format!("<iq{DECLS} type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>")
    );
}

#[tokio::test]
async fn tv_33_prefix_free_server_header_and_end_tag() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.starttls_then(DOMAIN, "<stream xmlns='http://etherx.jabber.org/streams' id='ID-P' from='example.com' version='1.0' xml:lang='en'><features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features><message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message></stream>").await;
    assert_eq!(
        client.recv_text().await,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-P" version="1.0" xml:lang="en"/>"#
    );
    let features = client.recv_text().await;
    assert!(features.starts_with(r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams""#), "{features}");
    assert_eq!(
        client.recv_text().await,
        "<message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message>"
    );
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn tv_34_other_server_prefix_is_normalised_and_its_end_tag_closes() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.starttls_then(DOMAIN, "<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns='jabber:client' id='ID-Q' from='example.com' version='1.0' xml:lang='en'><ns0:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></ns0:features></ns0:stream>").await;
    assert!(client.recv_text().await.contains(r#"id="ID-Q""#));
    let features = client.recv_text().await;
    assert!(features.starts_with(r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams""#), "{features}");
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn tv_35_extra_header_prefix_is_declared_on_the_stanza() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.starttls_then(DOMAIN, &format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:example:foo' id='ID-2' from='example.com' version='1.0'>{FEATURES}<message><foo:x/></message>")).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features "));
    assert_eq!(client.recv_text().await, format!(r#"<message{DECLS} xmlns:foo="urn:example:foo"><foo:x/></message>"#));
}

#[tokio::test]
async fn tv_38_client_stanza_reaches_the_server_byte_identical() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    let message = r#"<message xmlns="jabber:client" to="romeo@example.net" type="chat"><body>hi</body></message>"#;
    client.send(message).await;
    // Everything after the post-TLS header: exactly the element, no declaration, no whitespace.
    assert_eq!(conn.read_until("</message>").await, message);
}

// ---------------------------------------------------------------------------------------------
// 3.5 Parsing robustness (server to client)

#[tokio::test]
async fn tv_40_server_whitespace_never_becomes_a_websocket_message() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("\n \n").await;
    conn.write(" ").await;
    conn.write("<presence from='a@example.com/x'/>").await;
    conn.write(" ").await;
    conn.write("\r\n\t<presence from='b@example.com/y'/>\n").await;
    conn.write(" ").await;
    conn.write("<presence from='c@example.com/z'/>").await;
    for who in ["a", "b", "c"] {
        let text = client.recv_text().await;
        assert!(text.starts_with("<presence ") && text.contains(&format!("from='{who}@")), "{text:?}");
        assert!(text.ends_with("/>"), "no whitespace appended: {text:?}");
    }
}

#[tokio::test]
async fn tv_50_utf8_split_one_byte_per_write() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    let message = "<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou \u{1F600}</body><thread>e0ffe42b</thread></message>";
    for byte in message.as_bytes() {
        conn.write_bytes(&[*byte]).await;
    }
    let text = client.recv_text().await;
    assert!(text.contains("<body>Art thou \u{1F600}</body>"), "{text}");
    conn.write("<presence/>").await;
    assert!(client.recv_text().await.starts_with("<presence"), "exactly one message for the split stanza");
}

#[tokio::test]
async fn tv_51_several_elements_in_one_write_are_several_messages_in_order() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("<presence from='a@example.com/x'/><presence from='b@example.com/y'/><message from='c@example.com/z'><body>3</body></message>").await;
    assert!(client.recv_text().await.contains("from='a@example.com/x'"));
    assert!(client.recv_text().await.contains("from='b@example.com/y'"));
    let third = client.recv_text().await;
    assert!(third.starts_with("<message ") && third.ends_with("<body>3</body></message>"), "{third}");
}

#[tokio::test]
async fn tv_52_tv_53_markup_in_attribute_values() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("<iq type='result' id='7b0d57bb>fabe' to='juliet@example.com/balcony'/><presence id='a/>b'/>").await;
    assert_eq!(
        client.recv_text().await,
        format!("<iq{DECLS} type='result' id='7b0d57bb>fabe' to='juliet@example.com/balcony'/>")
    );
    assert_eq!(client.recv_text().await, format!("<presence{DECLS} id='a/>b'/>"));
}

#[tokio::test]
async fn tv_54_cdata_with_markup() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("<message><body><![CDATA[</message><message to='evil@example.org'>]]></body></message><presence/>")
        .await;
    assert_eq!(
        client.recv_text().await,
        format!("<message{DECLS}><body><![CDATA[</message><message to='evil@example.org'>]]></body></message>")
    );
    assert_eq!(client.recv_text().await, format!("<presence{DECLS}/>"), "no second message from the CDATA");
}

#[tokio::test]
async fn tv_55_to_tv_58_references_are_relayed_untouched() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    for element in [
        "<message><body>a &amp; b &lt;c&gt; &#x1F600; &#233; &apos;q&apos; &quot;</body></message>",
        "<message id='l1&#10;l2&#9;t'/>",
        "<message><body>a&#13;b</body></message>",
        "<message><body>x ]]&gt; y</body></message>",
    ] {
        conn.write(element).await;
        let expected = element.replacen("<message", &format!("<message{DECLS}"), 1);
        assert_eq!(client.recv_text().await, expected);
    }
}

#[tokio::test]
async fn tv_59_server_comment_is_restricted_xml_both_ways() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    conn.write("<message><!-- x --><body>y</body></message>").await;
    let upstream = rest_upstream(&mut conn).await;
    assert_eq!(
        upstream,
        "<stream:error><restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
    );
    let error = client.recv_text().await;
    assert!(error.starts_with(r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><remote-connection-failed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>"#), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.until_close().await, (Some(1000), vec![]));
}

#[tokio::test]
async fn server_malformed_utf8_split_across_reads_is_not_well_formed() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    conn.write_bytes(b"<message><body>\xC3").await;
    conn.write_bytes(b"\x28</body></message>").await;
    let upstream = rest_upstream(&mut conn).await;
    assert!(upstream.starts_with("<stream:error><not-well-formed "), "{upstream}");
    assert!(client.recv_text().await.contains("<remote-connection-failed"));
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn server_element_at_the_size_limit_passes_and_one_byte_more_is_refused() {
    let setup = setup_with("[limits]\nmax_element_bytes = 10000\n").await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    let element = |size: usize| {
        let shell = "<presence id=''/>".len();
        format!("<presence id='{}'/>", "v".repeat(size - shell))
    };
    conn.write(&element(10_000)).await;
    let relayed = client.recv_text().await;
    assert!(relayed.starts_with("<presence ") && relayed.contains(&"v".repeat(9_000)), "{}", &relayed[..40]);
    conn.write(&element(10_001)).await;
    let upstream = rest_upstream(&mut conn).await;
    assert!(upstream.starts_with("<stream:error><policy-violation "), "{upstream}");
    assert!(client.recv_text().await.contains("<remote-connection-failed"));
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn server_ten_thousand_nested_elements_are_refused_without_crashing() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    conn.write(&format!("<message>{}{}</message>", "<a>".repeat(10_000), "</a>".repeat(10_000))).await;
    let upstream = rest_upstream(&mut conn).await;
    assert!(upstream.starts_with("<stream:error><policy-violation "), "{upstream}");
    assert!(client.recv_text().await.contains("<remote-connection-failed"));
    assert_eq!(client.recv_text().await, CLOSE);
}

// ---------------------------------------------------------------------------------------------
// 3.6 Client framing violations

#[tokio::test]
async fn tv_60_binary_frame_is_1003_and_nothing_upstream() {
    websocket_violation_in_session(encode(true, opcode::BINARY, b"<presence/>", MASK), 1003).await;
}

#[tokio::test]
async fn tv_61_invalid_utf8_is_1007() {
    websocket_violation_in_session(encode(true, opcode::TEXT, &[0x3C, 0x6D, 0xC3, 0x28, 0x2F, 0x3E], MASK), 1007).await;
    // Overlong and CESU-8 surrogate encodings too, as a first message.
    for bytes in [&[0x3C, 0xC0, 0xAF, 0x2F, 0x3E][..], &[0x3C, 0xED, 0xA0, 0x80, 0x2F, 0x3E][..]] {
        let setup = setup().await;
        let mut client = RawWs::connect(&setup.gateway.url).await;
        client.send_frame(true, opcode::TEXT, bytes).await;
        assert_eq!(client.until_close().await, (Some(1007), vec![]), "{bytes:x?}");
    }
}

#[tokio::test]
async fn client_invalid_utf8_split_across_fragments_is_1007() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.send_frame(false, opcode::TEXT, b"<presence id='\xC3").await;
    client.send_frame(true, opcode::CONTINUATION, b"\x28'/>").await;
    assert_eq!(client.until_close().await, (Some(1007), vec![]));
    assert!(!rest_upstream(&mut conn).await.contains("<presence"));
}

#[tokio::test]
async fn tv_62_leading_whitespace_or_bom_is_not_well_formed() {
    refused_in_session(b" <presence/>", "not-well-formed", 1000).await;
    refused_in_session(b"\xEF\xBB\xBF<presence/>", "not-well-formed", 1000).await;
}

#[tokio::test]
async fn tv_63_two_elements_in_one_message_are_not_well_formed_and_none_is_relayed() {
    refused_in_session(br#"<presence/><presence type="unavailable"/>"#, "not-well-formed", 1000).await;
}

#[tokio::test]
async fn tv_64_partial_element_is_not_well_formed() {
    refused_in_session(br#"<message xmlns="jabber:client"><body>hi"#, "not-well-formed", 1000).await;
}

#[tokio::test]
async fn tv_65_xml_declaration_is_accepted_and_stripped() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(r#"<?xml version="1.0"?><presence xmlns="jabber:client"/>"#).await;
    assert_eq!(conn.read_until("/>").await, r#"<presence xmlns="jabber:client"/>"#);
}

#[tokio::test]
async fn tv_66_other_encoding_is_unsupported_encoding() {
    refused_in_session(
        br#"<?xml version="1.0" encoding="ISO-8859-1"?><presence xmlns="jabber:client"/>"#,
        "unsupported-encoding",
        1000,
    )
    .await;
}

#[tokio::test]
async fn tv_67_comment_is_restricted_xml() {
    refused_in_session(
        br#"<message xmlns="jabber:client" to="romeo@example.net"><!--x--><body>hi</body></message>"#,
        "restricted-xml",
        1000,
    )
    .await;
}

#[tokio::test]
async fn tv_68_processing_instruction_is_restricted_xml() {
    refused_in_session(br#"<message xmlns="jabber:client"><?php echo 1?></message>"#, "restricted-xml", 1000).await;
}

#[tokio::test]
async fn tv_69_doctype_is_restricted_xml_and_never_expanded() {
    refused_in_session(
        br#"<!DOCTYPE message [<!ENTITY x "y">]><message xmlns="jabber:client">&x;</message>"#,
        "restricted-xml",
        1000,
    )
    .await;
}

#[tokio::test]
async fn tv_70_undefined_entity_is_restricted_xml() {
    refused_in_session(br#"<message xmlns="jabber:client"><body>&nbsp;</body></message>"#, "restricted-xml", 1000)
        .await;
}

#[tokio::test]
async fn tv_71_undeclared_prefix_is_not_well_formed() {
    refused_in_session(br#"<message xmlns="jabber:client"><foo:body>x</foo:body></message>"#, "not-well-formed", 1000)
        .await;
}

#[tokio::test]
async fn tv_72_oversized_frame_is_refused_from_its_header_before_the_payload_arrives() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    // A frame header announcing 300 KiB (limit 256 KiB) and only the first bytes of the payload:
    // the gateway must answer without waiting for (or buffering) the rest.
    let payload = format!(r#"<message xmlns="jabber:client"><body>{}</body></message>"#, "A".repeat(300 * 1024));
    let frame = encode(true, opcode::TEXT, payload.as_bytes(), MASK);
    client.write_raw(&frame[..1024]).await;
    assert_refused(&mut client, &mut conn, "policy-violation", 1009).await;
}

#[tokio::test]
async fn tv_72_fragments_adding_up_over_the_limit_are_refused() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    let chunk = "A".repeat(100 * 1024);
    client.send_frame(false, opcode::TEXT, br#"<message xmlns="jabber:client"><body>"#).await;
    for _ in 0..3 {
        client.send_frame(false, opcode::CONTINUATION, chunk.as_bytes()).await;
    }
    assert_refused(&mut client, &mut conn, "policy-violation", 1009).await;
}

#[tokio::test]
async fn client_message_at_the_size_limit_passes_and_one_byte_more_is_refused() {
    let setup = setup_with("[limits]\nmax_element_bytes = 10000\n").await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    let element = |size: usize| {
        let shell = r#"<presence xmlns="jabber:client" id=""/>"#.len();
        format!(r#"<presence xmlns="jabber:client" id="{}"/>"#, "v".repeat(size - shell))
    };
    let fits = element(10_000);
    client.send_text(&fits).await;
    assert_eq!(conn.read_until("/>").await, fits);
    client.send_text(&element(10_001)).await;
    assert_refused(&mut client, &mut conn, "policy-violation", 1009).await;
}

#[tokio::test]
async fn tv_73_fragmented_message_with_a_ping_between_fragments() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.send_frame(false, opcode::TEXT, b"<message xmlns='jabber:client' to='romeo@example.net'>").await;
    client.send_frame(true, opcode::PING, b"p1").await;
    client.send_frame(false, opcode::CONTINUATION, b"<body>hello</body>").await;
    client.send_frame(true, opcode::CONTINUATION, b"</message>").await;
    let pong = client.next_frame().await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice(), pong.masked, pong.fin), (opcode::PONG, &b"p1"[..], false, true));
    assert_eq!(
        conn.read_until("</message>").await,
        "<message xmlns='jabber:client' to='romeo@example.net'><body>hello</body></message>"
    );
}

#[tokio::test]
async fn tv_74_unmasked_frame_is_1002() {
    websocket_violation_in_session(encode(true, opcode::TEXT, b"<presence/>", None), 1002).await;
}

#[tokio::test]
async fn tv_75_unsolicited_pong_is_ignored() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.send_frame(true, opcode::PONG, b"unsolicited").await;
    client.send_text("<presence xmlns='jabber:client'/>").await;
    assert_eq!(conn.read_until("/>").await, "<presence xmlns='jabber:client'/>");
    conn.write("<presence/>").await;
    assert!(client.recv_text().await.starts_with("<presence "));
}

#[tokio::test]
async fn tv_76_ten_thousand_nested_elements_under_the_size_limit_do_not_crash() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    let nested =
        format!(r#"<message xmlns="jabber:client">{}{}</message>"#, "<a>".repeat(10_000), "</a>".repeat(10_000));
    assert!(nested.len() < 256 * 1024);
    client.send_text(&nested).await;
    // Either relayed or refused as a policy violation (the gateway's depth limit is 10 000).
    // A depth limit is a policy, not an oversized message: 1008 (CONFORMANCE J).
    assert_refused(&mut client, &mut conn, "policy-violation", 1008).await;
    // The gateway is still serving.
    let (_client, _conn) = opened(&setup).await;
}

#[tokio::test]
async fn one_clients_garbage_does_not_disturb_another_live_session() {
    let setup = setup().await;
    let (mut good, mut good_conn) = opened(&setup).await;
    let (mut bad, mut bad_conn) = opened_raw(&setup).await;
    bad.send_frame(true, opcode::TEXT, b"<m\xC3\x28/>").await;
    assert_eq!(bad.until_close().await, (Some(1007), vec![]));
    let _ = rest_upstream(&mut bad_conn).await;
    let mut other_bad = RawWs::connect(&setup.gateway.url).await;
    other_bad.send_text("<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><x>&b;</x>").await;
    let (code, _) = other_bad.until_close().await;
    assert_eq!(code, Some(1000));
    good.send(r#"<message xmlns="jabber:client" to="romeo@example.net"><body>still here</body></message>"#).await;
    assert!(good_conn.read_until("</message>").await.contains("still here"));
    good_conn.write("<message><body>and back</body></message>").await;
    assert!(good.recv_text().await.contains("and back"));
}

// ---------------------------------------------------------------------------------------------
// 3.7 Open/close protocol errors

#[tokio::test]
async fn tv_80_open_outside_the_framing_namespace_is_invalid_namespace() {
    refused_as_first_message(r#"<open xmlns="jabber:client" to="example.com" version="1.0"/>"#, "invalid-namespace")
        .await;
}

#[tokio::test]
async fn tv_81_legacy_stream_header_is_invalid_namespace() {
    refused_as_first_message(
        r#"<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="example.com" version="1.0">"#,
        "invalid-namespace",
    )
    .await;
}

#[tokio::test]
async fn tv_82_first_message_not_open_is_invalid_namespace() {
    refused_as_first_message(r#"<presence xmlns="jabber:client"/>"#, "invalid-namespace").await;
}

#[tokio::test]
async fn tv_84_ip_literal_to_is_host_unknown_without_any_connection() {
    for to in ["127.0.0.1", "169.254.169.254", "[::1]"] {
        refused_as_first_message(
            &format!(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{to}" version="1.0"/>"#),
            "host-unknown",
        )
        .await;
    }
}

#[tokio::test]
async fn tv_85_second_open_before_sasl_success_is_bad_format() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(OPEN).await;
    assert_eq!(client.recv_text().await, stream_error("bad-format"));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    assert_eq!(rest_upstream(&mut conn).await, "</stream:stream>", "never a second <stream:stream>");
}

/// A client message refused while the upstream is still being set up (LIM-4): it is checked on
/// arrival, so the client is answered at once with the gateway's `<open/>`, the error and
/// `<close/>`, and the connection being set up is dropped: the server sees the plaintext
/// header at most, never the message and never TLS.
async fn refused_while_connecting(message: &str, condition: &str, reason: &str) {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    client.send(message).await;
    let open = client.recv_text().await;
    assert!(
        open.starts_with("<open ") && open.contains(r#"from="example.com""#) && open.contains(r#"id="gw-"#),
        "{open}"
    );
    assert_eq!(client.recv_text().await, stream_error(condition));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await, (1000, condition.to_string()));
    if let Some(mut conn) = setup.server.try_accept(Duration::from_secs(1)).await {
        let (upstream, _) = conn.read_to_end().await;
        assert!(!upstream.contains("hi") && !upstream.contains("<starttls"), "{upstream}");
    }
    setup.gateway.wait_metric(&format!("xmppgw_client_elements_refused_total{{reason=\"{reason}\"}}"), 1.0).await;
}

#[tokio::test]
async fn lim_4_a_message_refused_while_connecting_ends_the_session_at_once() {
    refused_while_connecting(r#"<message xmlns="jabber:client"><body>hi"#, "not-well-formed", "not-well-formed").await;
}

#[tokio::test]
async fn d3_a_second_open_while_connecting_is_bad_format_at_once() {
    refused_while_connecting(OPEN, "bad-format", "unexpected-open").await;
}

#[tokio::test]
async fn tv_86_open_after_close_is_not_processed() {
    let setup = setup().await;
    let (mut client, mut conn) = opened_raw(&setup).await;
    client.send_text(CLOSE).await;
    client.send_text(OPEN).await;
    let (code, texts) = client.until_close().await;
    assert_eq!(code, Some(1000), "{texts:?}");
    assert!(texts.iter().all(|text| !text.starts_with("<open ")), "{texts:?}");
    let upstream = rest_upstream(&mut conn).await;
    assert!(upstream.starts_with("</stream:stream>") && !upstream.contains("<stream:stream"), "{upstream}");
}

// ---------------------------------------------------------------------------------------------
// 3.8 Closing

#[tokio::test]
async fn tv_98_upstream_setup_error_is_relayed_after_its_open() {
    let setup = setup().await;
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.starttls_then(DOMAIN, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='E1' from='example.com' version='1.0' xml:lang='en'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>").await;
    assert_eq!(
        client.recv_text().await,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="E1" version="1.0" xml:lang="en"/>"#
    );
    let error = client.recv_text().await;
    assert!(error.starts_with("<stream:error ") && error.contains(STREAM_DECL), "{error}");
    assert!(error.contains("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn tv_99_client_stream_error_is_relayed_and_ends_the_upstream_stream() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    let error = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#;
    client.send(error).await;
    client.send(CLOSE).await;
    assert_eq!(conn.read_until("</stream:stream>").await, format!("{error}</stream:stream>"));
    conn.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
}

// ---------------------------------------------------------------------------------------------
// 3.9 Stream management

#[tokio::test]
async fn tv_100_stream_management_elements_pass_through_with_location() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(r#"<enable xmlns="urn:xmpp:sm:3" resume="true"/>"#).await;
    assert_eq!(conn.read_until("/>").await, r#"<enable xmlns="urn:xmpp:sm:3" resume="true"/>"#);
    conn.write("<enabled xmlns='urn:xmpp:sm:3' id='some-long-sm-id' resume='true' max='300' location='[2001:41D0:1:A49b::1]:9222'/>").await;
    let enabled = client.recv_text().await;
    assert!(enabled.starts_with("<enabled ") && enabled.contains("id='some-long-sm-id'"), "{enabled}");
    assert!(enabled.contains("location='[2001:41D0:1:A49b::1]:9222'"), "D8: passed through: {enabled}");
    conn.write("<r xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(client.recv_text().await, "<r xmlns='urn:xmpp:sm:3'/>");
    client.send(r#"<a xmlns="urn:xmpp:sm:3" h="3"/>"#).await;
    assert_eq!(conn.read_until("/>").await, r#"<a xmlns="urn:xmpp:sm:3" h="3"/>"#);
}

#[tokio::test]
async fn tv_101_no_stanza_is_added_dropped_or_reordered_either_way() {
    const N: usize = 50;
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(r#"<enable xmlns="urn:xmpp:sm:3"/>"#).await;
    conn.read_until(r#"<enable xmlns="urn:xmpp:sm:3"/>"#).await;
    conn.write("<enabled xmlns='urn:xmpp:sm:3'/>").await;
    assert!(client.recv_text().await.starts_with("<enabled "));
    // Client to server: N stanzas, then a request for acknowledgement.
    for i in 0..N {
        client.send(&format!(r#"<message xmlns="jabber:client" id="c{i}"><body>{i}</body></message>"#)).await;
    }
    client.send(r#"<r xmlns="urn:xmpp:sm:3"/>"#).await;
    let upstream = conn.read_until(r#"<r xmlns="urn:xmpp:sm:3"/>"#).await;
    let expected: String = (0..N)
        .map(|i| format!(r#"<message xmlns="jabber:client" id="c{i}"><body>{i}</body></message>"#))
        .chain(std::iter::once(r#"<r xmlns="urn:xmpp:sm:3"/>"#.to_string()))
        .collect();
    assert_eq!(upstream, expected, "exactly the client's stanzas, in order, nothing between them");
    conn.write(&format!("<a xmlns='urn:xmpp:sm:3' h='{N}'/>")).await;
    assert_eq!(client.recv_text().await, format!("<a xmlns='urn:xmpp:sm:3' h='{N}'/>"));
    // Server to client: N stanzas in writes of varying size with whitespace, then <r/>.
    let mut burst = String::new();
    for i in 0..N {
        burst.push_str(&format!("<message id='s{i}'><body>{i}</body></message>"));
        if i % 7 == 0 {
            burst.push_str("\n ");
            conn.write(&burst).await;
            burst.clear();
        }
    }
    burst.push_str("<r xmlns='urn:xmpp:sm:3'/>");
    conn.write(&burst).await;
    for i in 0..N {
        let text = client.recv_text().await;
        assert!(text.starts_with("<message ") && text.contains(&format!("id='s{i}'")), "stanza {i}: {text}");
    }
    assert_eq!(client.recv_text().await, "<r xmlns='urn:xmpp:sm:3'/>");
    client.send(&format!(r#"<a xmlns="urn:xmpp:sm:3" h="{N}"/>"#)).await;
    assert_eq!(conn.read_until("/>").await, format!(r#"<a xmlns="urn:xmpp:sm:3" h="{N}"/>"#));
    // Counted by the gateway: N messages + enable + r + a from the client; features + enabled + a
    // + N messages + r from the server.
    setup.gateway.wait_metric("xmppgw_stanzas_total{direction=\"to_server\"}", (N + 3) as f64).await;
    setup.gateway.wait_metric("xmppgw_stanzas_total{direction=\"to_client\"}", (N + 4) as f64).await;
}

#[tokio::test]
async fn tv_102_resume_on_a_new_connection_is_relayed() {
    let setup = setup().await;
    let (client, mut conn) = opened(&setup).await;
    client.vanish();
    let (old, _) = conn.read_to_end().await;
    assert!(!old.contains("</stream:stream>"), "{old}");
    let (mut client, mut conn) = opened(&setup).await;
    client.send(AUTH).await;
    conn.read_until("</auth>").await;
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    assert!(client.recv_text().await.starts_with("<success "));
    client.send(OPEN).await;
    conn.read_stream_header().await;
    conn.write(&format!("{SERVER_HEADER}<stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>")).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features "));
    client.send(r#"<resume xmlns="urn:xmpp:sm:3" previd="some-long-sm-id" h="5"/>"#).await;
    assert_eq!(conn.read_until("/>").await, r#"<resume xmlns="urn:xmpp:sm:3" previd="some-long-sm-id" h="5"/>"#);
    conn.write("<resumed xmlns='urn:xmpp:sm:3' previd='some-long-sm-id' h='2'/>").await;
    assert_eq!(client.recv_text().await, "<resumed xmlns='urn:xmpp:sm:3' previd='some-long-sm-id' h='2'/>");
}

// ---------------------------------------------------------------------------------------------
// TV-97: see-other-host (D4)

fn see_other_host(target: &str) -> String {
    format!("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{target}</see-other-host></stream:error></stream:stream>")
}

/// The server's header and a `<see-other-host/>` naming `second` on 127.0.0.1.
fn redirect_to(second: &FakeServer) -> String {
    format!("{SERVER_HEADER}{}", see_other_host(&format!("127.0.0.1:{}", second.addr().port())))
}

#[tokio::test]
async fn tv_97_see_other_host_before_features_is_followed_inside_the_gateway() {
    let setup = setup().await;
    let second = FakeServer::start(setup.ca.leaf(&[DOMAIN])).await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    client.send(AUTH).await;
    let mut first = setup.server.accept().await;
    first.starttls_then(DOMAIN, &redirect_to(&second)).await;
    let mut conn = second.accept().await;
    let header = conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(header.contains("to='example.com'"), "{header}");
    assert_eq!(conn.tls_seen().unwrap().sni.as_deref(), Some(DOMAIN), "SNI and certificate: the original domain");
    assert_eq!(
        client.recv_text().await,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-2" version="1.0" xml:lang="en"/>"#
    );
    assert!(client.recv_text().await.starts_with("<stream:features "));
    // The queued client data went to the new server only, and only inside TLS.
    assert!(conn.read_until("</auth>").await.contains("AGp1bGll"));
    let (left, _) = first.read_to_end().await;
    assert!(!left.contains("auth") && left.contains("</stream:stream>"), "{left}");
}

#[tokio::test]
async fn tv_97_see_other_host_before_tls_is_followed_too() {
    let setup = setup().await;
    let second = FakeServer::start(setup.ca.leaf(&[DOMAIN])).await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    let mut first = setup.server.accept().await;
    first.read_stream_header().await;
    first.write(&redirect_to(&second)).await;
    let mut conn = second.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.contains(r#"id="ID-2""#));
    assert!(client.recv_text().await.starts_with("<stream:features "));
}

#[tokio::test]
async fn tv_97_redirect_target_must_prove_the_original_domain() {
    let setup = setup().await;
    let second = FakeServer::start(setup.ca.leaf(&["xmpp2.example.com"])).await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    let mut first = setup.server.accept().await;
    first.starttls_then(DOMAIN, &redirect_to(&second)).await;
    let mut conn = second.accept().await;
    conn.read_stream_header().await;
    conn.write(&format!(
        "{SERVER_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
    ))
    .await;
    conn.read_until("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    conn.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    assert!(!conn.try_upgrade_tls().await, "a certificate for another name is refused");
    assert!(client.recv_text().await.starts_with("<open "));
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("tls-cert-name-mismatch"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
}

#[tokio::test]
async fn tv_97_at_most_five_redirects_then_remote_connection_failed() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    let own = format!("127.0.0.1:{}", setup.server.addr().port());
    for _ in 0..6 {
        let mut conn = setup.server.accept().await;
        conn.starttls_then(DOMAIN, &format!("{SERVER_HEADER}{}", see_other_host(&own))).await;
    }
    assert!(client.recv_text().await.starts_with("<open "));
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("see-other-host-loop"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert!(setup.server.try_accept(Duration::from_millis(100)).await.is_none(), "no seventh connection");
}

#[tokio::test]
async fn tv_97_see_other_host_after_features_is_remote_connection_failed_never_relayed() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write(&see_other_host("xmpp2.example.com:5222")).await;
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed"), "{error}");
    assert!(!error.contains("<see-other-host") && !error.contains("xmpp2"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
}
