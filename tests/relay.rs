//! The session end to end against a scripted fake server over real sockets and real TLS:
//! opening with STARTTLS, SASL restart, relaying, clean and abrupt closes, setup failures.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::fake_server::{FakeServer, ReadEnd};
use harness::gateway::TestGateway;
use harness::raw_ws::RawWs;
use harness::setup::{connecting, setup, Setup};
use harness::ws_client::{raw_http, upgrade_request, WsClient};
use harness::xmpp::{CLOSE, DOMAIN, OPEN};
use harness::TestCa;

const FEATURES: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>";
const AUTH: &str =
    r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"#;

/// Opens a session through STARTTLS and returns the client (after `<open/>` and features) and
/// the server connection.
async fn opened(setup: &Setup) -> (WsClient, harness::fake_server::ServerConn) {
    let (mut client, mut conn) = connecting(&setup.gateway.url, &setup.server).await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    let open = client.recv_text().await;
    assert_eq!(
        open,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-2" version="1.0" xml:lang="en"/>"#
    );
    let features = client.recv_text().await;
    assert!(features.starts_with("<stream:features "), "{features}");
    assert!(features.contains(r#"xmlns:stream="http://etherx.jabber.org/streams""#), "{features}");
    (client, conn)
}

#[tokio::test]
async fn tv_10_happy_path_starttls_then_open_and_features() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    assert_eq!(client.protocol.as_deref(), Some("xmpp"));
    client.send(OPEN).await;
    let mut conn = setup.server.accept().await;
    let post_tls_header = conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(post_tls_header.contains("<stream:stream xmlns='jabber:client'"), "{post_tls_header}");
    assert!(post_tls_header.contains("to='example.com'"), "{post_tls_header}");
    assert!(!post_tls_header.contains("id="), "{post_tls_header}");
    assert!(!post_tls_header.ends_with("/>"), "{post_tls_header}");

    let open = client.recv_text().await;
    assert_eq!(
        open,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-2" version="1.0" xml:lang="en"/>"#
    );
    let features = client.recv_text().await;
    for expected in ["SCRAM-SHA-1-PLUS", "<sasl-channel-binding", "http://etherx.jabber.org/streams"] {
        assert!(features.contains(expected), "{features}");
    }
    for forbidden in ["PRE-TLS-ID", "X-PRE-TLS-ONLY", "xmpp-tls"] {
        assert!(!features.contains(forbidden) && !open.contains(forbidden), "{forbidden} leaked: {features}");
    }
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(plaintext.contains("<stream:stream") && !plaintext.contains("from="), "{plaintext}");
}

#[tokio::test]
async fn tv_11_auth_sent_before_tls_never_leaves_in_plaintext() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    client.send(AUTH).await;
    let mut conn = setup.server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    let auth = conn.read_until("</auth>").await;
    assert!(auth.contains("AGp1bGlldAByMG0zMG15cjBtMzA="), "{auth}");
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("AGp1bGll"), "credentials crossed in plaintext: {plaintext}");
    assert_eq!(client.recv_text().await.split(' ').next(), Some("<open"));
}

#[tokio::test]
async fn tv_20_sasl_success_then_client_restart_opens_a_new_stream() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(AUTH).await;
    conn.read_until("</auth>").await;
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    let success = client.recv_text().await;
    assert!(
        success.starts_with("<success ") && success.contains("xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"),
        "{success}"
    );
    client.send(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#).await;
    let restart = conn.read_stream_header().await;
    assert!(restart.contains("<stream:stream") && !restart.contains("</stream:stream>"), "{restart}");
    conn.write("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-3' from='example.com' version='1.0' xml:lang='en'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>").await;
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains(r#"id="ID-3""#), "{open}");
    let features = client.recv_text().await;
    assert!(features.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{features}");
    // TV-103: nothing but the elements themselves between <auth> and the restart.
    let wire = String::from_utf8_lossy(&conn.tls_received).into_owned();
    let auth_at = wire.find("<auth").expect("auth on the wire");
    assert!(!wire[auth_at..].contains("</auth> ") && !wire[auth_at..].contains("</auth>\n"), "{wire}");
}

#[tokio::test]
async fn stanzas_are_relayed_both_ways_with_the_content_namespace() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    let message = r#"<message xmlns="jabber:client" to="romeo@example.net" type="chat"><body>hi</body></message>"#;
    client.send(message).await;
    assert!(conn.read_until("</message>").await.ends_with(message));
    conn.write("\n \n<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq> ").await;
    let iq = client.recv_text().await;
    assert!(iq.starts_with("<iq ") && iq.contains(r#"xmlns="jabber:client""#), "{iq}");
    assert!(iq.contains("<jid>juliet@example.com/balcony</jid>"), "{iq}");
    let metrics = setup.gateway.metrics();
    assert!(metrics.contains("xmppgw_stanzas_total{direction=\"to_server\"} 1"), "{metrics}");
}

#[tokio::test]
async fn tv_90_client_close_is_a_clean_close_both_ways() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    conn.write("<presence type='unavailable' from='juliet@example.com/balcony' to='juliet@example.com/balcony'/></stream:stream>").await;
    let presence = client.recv_text().await;
    assert!(presence.starts_with("<presence ") && presence.contains("unavailable"), "{presence}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    let (_, end) = conn.read_to_end().await;
    assert_eq!(end, ReadEnd::Eof);
}

#[tokio::test]
async fn tv_91_server_close_reaches_the_client_as_close_and_the_client_close_goes_back() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
    client.send(r#"<presence xmlns="jabber:client" type="unavailable"/>"#).await;
    client.send(CLOSE).await;
    let tail = conn.read_until("</stream:stream>").await;
    assert!(tail.contains("<presence"), "the final presence must be relayed first: {tail}");
    assert_eq!(client.expect_close().await.0, 1000);
    client.close().await;
    setup.gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"clean\"}", 1.0).await;
}

#[tokio::test]
async fn tv_92_server_half_close_still_receives_the_client_close() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("</stream:stream>").await;
    conn.shutdown_write().await;
    assert_eq!(client.recv_text().await, CLOSE);
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    assert_eq!(client.expect_close().await.0, 1000);
}

#[tokio::test]
async fn tv_93_close_immediately_followed_by_websocket_close_is_still_clean() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    client.send(CLOSE).await;
    client.close().await;
    conn.read_until("</stream:stream>").await;
}

#[tokio::test]
async fn tv_94_client_vanishing_ends_the_upstream_without_stream_end() {
    let setup = setup().await;
    let (client, mut conn) = opened(&setup).await;
    client.vanish();
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "{received}");
}

#[tokio::test]
async fn tv_95_server_vanishing_closes_the_websocket_with_1014_and_no_close() {
    let setup = setup().await;
    // A raw client: tungstenite refuses the IANA code 1014 that browsers and the `ws` package accept.
    let mut client = RawWs::connect(&setup.gateway.url).await;
    client.send_text(OPEN).await;
    let mut conn = setup.server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features "));
    conn.reset();
    let (code, texts) = client.until_close().await;
    assert_eq!(code, Some(1014));
    assert!(texts.is_empty(), "no <close/> (or anything else) after an abrupt upstream loss: {texts:?}");
}

#[tokio::test]
async fn err_1_server_stream_error_is_relayed_then_close() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced by new connection</text></stream:error></stream:stream>").await;
    let error = client.recv_text().await;
    assert!(
        error.starts_with("<stream:error ") && error.contains(r#"xmlns:stream="http://etherx.jabber.org/streams""#),
        "{error}"
    );
    assert!(error.contains("<conflict") && error.contains("Replaced by new connection"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    // The client leaves without answering, as Strophe.js does: the stream is over on both sides,
    // the server gets its </stream:stream>, and the session counts as ended by the server's error.
    client.close().await;
    conn.read_until("</stream:stream>").await;
    setup.gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"server_stream_error\"}", 1.0).await;
    let metrics = setup.gateway.metrics();
    assert!(metrics.contains("xmppgw_stream_errors_total{condition=\"conflict\",side=\"server\"} 1"), "{metrics}");
}

#[tokio::test]
async fn cl_2_client_leaving_after_the_server_end_is_a_clean_close() {
    let setup = setup().await;
    let (mut client, mut conn) = opened(&setup).await;
    conn.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
    // No <close/> back: the WebSocket just closes. The stream was ended by the server, so this
    // completes the close rather than vanishing (there is nothing left to resume).
    client.close().await;
    let (rest, _) = conn.read_to_end().await;
    assert_eq!(rest, "</stream:stream>");
    setup.gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"clean\"}", 1.0).await;
}

#[tokio::test]
async fn d6_unreachable_upstream_gives_open_error_close_and_the_class() {
    let ca = TestCa::new();
    let (_held, address) = harness::net::refusing_address();
    let gateway = TestGateway::for_upstream(DOMAIN, address, &ca.ca_file()).await;
    let mut client = WsClient::connect(&gateway.url).await;
    client.send(OPEN).await;
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains(r#"from="example.com""#), "{open}");
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed"), "{error}");
    assert!(error.contains("connect-refused"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await, (1000, "connect-refused".to_string()));
    let metrics = gateway.metrics();
    assert!(metrics.contains("xmppgw_upstream_connect_failures_total{class=\"connect-refused\"} 1"), "{metrics}");
}

#[tokio::test]
async fn tv_13_certificate_for_another_name_is_refused_and_nothing_is_sent() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&["xmpp.example.com"])).await;
    let gateway = TestGateway::for_upstream(DOMAIN, server.addr(), &ca.ca_file()).await;
    let mut client = WsClient::connect(&gateway.url).await;
    client.send(OPEN).await;
    client.send(AUTH).await;
    let mut conn = server.accept().await;
    conn.read_stream_header().await;
    conn.write("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='example.com' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>").await;
    conn.read_until("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    conn.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    assert!(!conn.try_upgrade_tls().await, "the gateway must refuse the certificate");
    let open = client.recv_text().await;
    assert!(open.starts_with("<open "), "{open}");
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("tls-cert-name-mismatch"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("auth"), "{plaintext}");
}

#[tokio::test]
async fn tv_12_starttls_refused_is_a_connection_failure_never_plaintext() {
    let setup = setup().await;
    let mut client = WsClient::connect(&setup.gateway.url).await;
    client.send(OPEN).await;
    client.send(AUTH).await;
    let mut conn = setup.server.accept().await;
    conn.read_stream_header().await;
    conn.write("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='example.com' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>").await;
    conn.read_until("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    conn.write("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>").await;
    assert!(client.recv_text().await.starts_with("<open "));
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("starttls-refused"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("AGp1bGll"), "{plaintext}");
}

#[tokio::test]
async fn tv_83_open_without_to_is_host_unknown_and_unlisted_domain_too() {
    let setup = setup().await;
    for open in [
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" version="1.0"/>"#,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="evil.example" version="1.0"/>"#,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="127.0.0.1" version="1.0"/>"#,
    ] {
        let mut client = WsClient::connect(&setup.gateway.url).await;
        client.send(open).await;
        assert!(client.recv_text().await.starts_with("<open "));
        let error = client.recv_text().await;
        assert!(error.contains("<host-unknown"), "{open}: {error}");
        assert_eq!(client.recv_text().await, CLOSE);
    }
}

#[tokio::test]
async fn open_timeout_closes_a_silent_client() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&format!(
        "[limits]\nopen_timeout_secs = 1\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ))
    .await;
    let mut client = WsClient::connect(&gateway.url).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.contains("<connection-timeout"));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
}

#[tokio::test]
async fn tv_04_and_tv_05_no_xmpp_subprotocol_is_400_never_101() {
    let setup = setup().await;
    let host = setup.gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    for extra in ["", "Sec-WebSocket-Protocol: mqtt\r\n"] {
        let (status, response) = raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", extra)).await;
        assert_eq!(status, 400, "{response}");
        assert!(response.contains("RFC 7395") && response.contains("Sec-WebSocket-Protocol"), "{response}");
    }
}

#[tokio::test]
async fn tv_02_and_tv_03_exactly_one_xmpp_in_the_101() {
    let setup = setup().await;
    let host = setup.gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    for extra in
        ["Sec-WebSocket-Protocol: chat, xmpp\r\n", "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: xmpp\r\n"]
    {
        for path in ["/xmpp-websocket", "/xmpp-websocket/"] {
            let (status, response) = raw_http(&host, &upgrade_request(&host, path, extra)).await;
            assert_eq!(status, 101, "{response}");
            let lines: Vec<&str> = response
                .lines()
                .filter(|line| line.to_ascii_lowercase().starts_with("sec-websocket-protocol:"))
                .collect();
            assert_eq!(lines.len(), 1, "{response}");
            assert_eq!(lines[0].split(':').nth(1).map(str::trim), Some("xmpp"), "{response}");
        }
    }
}

#[tokio::test]
async fn d19_plain_get_is_426_with_an_explanation() {
    let setup = setup().await;
    let host = setup.gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    let (status, response) =
        raw_http(&host, &format!("GET /xmpp-websocket HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(status, 426, "{response}");
    assert!(response.contains("RFC 7395"), "{response}");
}

#[tokio::test]
async fn a_read_buffer_smaller_than_the_messages_still_relays_them_whole_and_in_order() {
    // `limits.websocket_read_buffer_bytes` at its minimum: every message below spans many reads
    // of the client's socket, and the first one ends inside a read that holds the next one.
    let setup = harness::setup::setup_with("[limits]\nwebsocket_read_buffer_bytes = 256\n").await;
    let (mut client, mut conn) = harness::setup::opened(&setup).await;
    let large = format!(
        r#"<message xmlns="jabber:client" to="romeo@example.net" id="large"><body>{}</body></message>"#,
        "wherefore art thou ".repeat(1000)
    );
    let small = r#"<message xmlns="jabber:client" to="romeo@example.net" id="after"/>"#;
    client.send(&large).await;
    client.send(small).await;
    let relayed = conn.read_until(r#"id="after"/>"#).await;
    let at =
        relayed.find(r#"<message xmlns="jabber:client" to="romeo@example.net" id="large">"#).expect("the large one");
    assert_eq!(&relayed[at..], format!("{large}{small}"));
}
