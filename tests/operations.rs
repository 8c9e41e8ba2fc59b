//! Operating the gateway, in-process: admin endpoints and metrics, limits, Origin, trusted
//! proxies, drain, keepalive deadlines, host-meta, wss, PROXY protocol.

#![allow(clippy::unwrap_used)]

mod harness;

use std::sync::Arc;

use harness::fake_server::{FakeServer, ReadEnd};
use harness::gateway::TestGateway;
use harness::raw_ws::RawWs;
use harness::setup::{connecting, exchange_and_close, open_session, setup, setup_with, upstream_toml, Setup};
use harness::ws_client::{raw_http, upgrade_request, WsClient, WsEvent};
use harness::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn host_of(url: &str) -> String {
    url.trim_start_matches("ws://").trim_start_matches("wss://").split('/').next().unwrap().to_string()
}

async fn http_get(base: &str, path: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    raw_http(host, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test]
async fn admin_health_ready_and_metrics_move_with_sessions() {
    let Setup { ca, server, gateway } = setup().await;
    let admin = gateway.admin.clone().expect("admin listener");
    assert_eq!(http_get(&admin, "/healthz").await.0, 200);
    assert_eq!(http_get(&admin, "/readyz").await.0, 200);

    let (_, before) = http_get(&admin, "/metrics").await;
    assert_eq!(metric_value(&before, "xmppgw_sessions_active"), 0.0);

    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    let (_, during) = http_get(&admin, "/metrics").await;
    assert_eq!(metric_value(&during, "xmppgw_sessions_active"), 1.0, "{during}");
    assert_eq!(metric_value(&during, "xmppgw_upstream_connect_duration_seconds_count{phase=\"tls\"}"), 1.0);

    exchange_and_close(&mut client, &mut conn).await;
    client.expect_close().await;
    client.close().await;
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;

    // A failure to connect: a domain with a dead upstream.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let failing = TestGateway::start(&format!(
        "[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{dead}\"\nca_file = \"{}\"\n",
        ca.ca_file().display()
    ))
    .await;
    let mut doomed = WsClient::connect(&failing.url).await;
    doomed.send(OPEN).await;
    while !matches!(doomed.next_event().await, WsEvent::Close(..) | WsEvent::Gone) {}

    let after = gateway.metrics();
    assert_eq!(metric_value(&after, "xmppgw_sessions_active"), 0.0, "{after}");
    assert_eq!(metric_value(&after, "xmppgw_sessions_ended_total{outcome=\"clean\"}"), 1.0, "{after}");
    assert_eq!(metric_value(&after, "xmppgw_stanzas_total{direction=\"to_server\"}"), 1.0, "{after}");
    assert!(metric_value(&after, "xmppgw_stanzas_total{direction=\"to_client\"}") >= 2.0, "{after}");
    assert!(metric_value(&after, "xmppgw_bytes_total{direction=\"to_server\"}") > 50.0, "{after}");
    doomed.close().await;
    failing.wait_metric("xmppgw_upstream_connect_failures_total{class=\"connect-refused\"}", 1.0).await;
    failing.wait_metric("xmppgw_sessions_ended_total{outcome=\"upstream_failed\"}", 1.0).await;
}

#[tokio::test]
async fn session_limits_answer_503_and_429_with_metrics() {
    let Setup { ca: _ca, server: _server, gateway } = setup_with(
        "[listener]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_sessions = 2\nmax_sessions_per_address = 1\n",
    )
    .await;
    let host = host_of(&gateway.url);
    let xff = |address: &str| format!("Sec-WebSocket-Protocol: xmpp\r\nX-Forwarded-For: {address}\r\n");
    // Keep the upgraded connections open by holding the raw sockets.
    let mut held = Vec::new();
    for address in ["198.51.100.1", "198.51.100.2"] {
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        stream.write_all(upgrade_request(&host, "/xmpp-websocket", &xff(address)).as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
        held.push(stream);
    }
    let (status, _) = raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", &xff("198.51.100.3"))).await;
    assert_eq!(status, 503);
    drop(held.pop());
    // The released slot frees the total, but the first address still holds its only slot.
    let mut status = 0;
    for _ in 0..50 {
        status = raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", &xff("198.51.100.1"))).await.0;
        if status == 429 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 429);
    let metrics = gateway.metrics();
    assert_eq!(metric_value(&metrics, "xmppgw_websocket_handshakes_rejected_total{reason=\"limit-total\"}"), 1.0);
    assert!(metric_value(&metrics, "xmppgw_websocket_handshakes_rejected_total{reason=\"limit-per-address\"}") >= 1.0);
}

#[tokio::test]
async fn origin_allowlist_gives_403_to_other_pages() {
    let Setup { ca: _ca, server: _server, gateway } =
        setup_with("[listener]\nallowed_origins = [\"https://chat.example.com\"]\nallow_missing_origin = false\n")
            .await;
    let host = host_of(&gateway.url);
    let proto = "Sec-WebSocket-Protocol: xmpp\r\n";
    let with_origin = |origin: &str| format!("{proto}Origin: {origin}\r\n");
    assert_eq!(
        raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", &with_origin("https://chat.example.com"))).await.0,
        101
    );
    assert_eq!(
        raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", &with_origin("https://evil.example"))).await.0,
        403
    );
    assert_eq!(raw_http(&host, &upgrade_request(&host, "/xmpp-websocket", proto)).await.0, 403);
    let metrics = gateway.metrics();
    assert_eq!(
        metric_value(&metrics, "xmppgw_websocket_handshakes_rejected_total{reason=\"origin-not-allowed\"}"),
        1.0
    );
    assert_eq!(metric_value(&metrics, "xmppgw_websocket_handshakes_rejected_total{reason=\"origin-missing\"}"), 1.0);
}

#[tokio::test]
async fn drain_sends_system_shutdown_and_readyz_turns_503() {
    let Setup { ca: _ca, server, gateway } = setup().await;
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    gateway.control.drain.cancel();
    let error = client.recv_text().await;
    assert!(error.contains("<system-shutdown"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1001);
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "drain keeps sessions resumable: {received}");
    let admin = gateway.admin.clone().unwrap();
    // The admin listener keeps answering while the public one drains.
    assert_eq!(http_get(&admin, "/readyz").await.0, 503);
}

#[tokio::test]
async fn tv_96_drain_with_redirect_sends_see_other_uri() {
    let Setup { ca: _ca, server, gateway } =
        setup_with("[shutdown]\nredirect_uri = \"wss://gw2.example.net/xmpp-websocket\"\n").await;
    let (mut client, _conn) = open_session(&gateway.url, &server, FEATURES).await;
    let mut waiting = WsClient::connect(&gateway.url).await;
    gateway.control.drain.cancel();
    let expected =
        r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="wss://gw2.example.net/xmpp-websocket" />"#;
    assert_eq!(client.recv_text().await, expected);
    assert_eq!(client.expect_close().await.0, 1001);
    // A client that had not sent <open/> yet gets the redirect as the answer.
    assert_eq!(waiting.recv_text().await, expected);
}

#[tokio::test]
async fn pong_deadline_closes_a_client_that_stopped_answering() {
    let Setup { ca: _ca, server, gateway } =
        setup_with("[limits]\nping_interval_secs = 1\npong_timeout_secs = 1\n").await;
    // A raw client: WebSocket handshake and <open/> by hand, then it never reads again, so it
    // never answers pings.
    let mut never_reads = RawWs::connect(&gateway.url).await;
    never_reads.send_text(OPEN).await;
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "{received}");
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"pong_timeout\"}", 1.0).await;
}

#[tokio::test]
async fn idle_timeout_ends_a_silent_session_with_connection_timeout() {
    let Setup { ca: _ca, server, gateway } = setup_with("[limits]\nidle_timeout_secs = 1\n").await;
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    let error = client.recv_text().await;
    assert!(error.contains("<connection-timeout"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    conn.read_until("</stream:stream>").await;
}

#[tokio::test]
async fn tv_72_oversized_message_is_policy_violation_1009_and_never_reaches_the_server() {
    let Setup { ca: _ca, server, gateway } = setup().await;
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    let big = format!(r#"<message xmlns="jabber:client"><body>{}</body></message>"#, "A".repeat(300 * 1024));
    client.send(&big).await;
    let error = client.recv_text().await;
    assert!(error.contains("<policy-violation"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1009);
    let (received, end) = conn.read_to_end().await;
    assert!(
        received.contains("</stream:stream>") && !received.contains("AAAA"),
        "{}",
        &received[..received.len().min(200)]
    );
    assert_eq!(end, ReadEnd::Eof);
}

/// A client `<message/>` of exactly `bytes` bytes whose body is `fill` repeated.
fn message_of(bytes: usize, fill: char) -> String {
    element_of(bytes, r#"<message xmlns="jabber:client"><body>"#, fill)
}

/// An element of exactly `bytes` bytes: `head`, `fill` repeated, `</body></message>`.
fn element_of(bytes: usize, head: &str, fill: char) -> String {
    let tail = "</body></message>";
    format!("{head}{}{tail}", fill.to_string().repeat(bytes - head.len() - tail.len()))
}

#[tokio::test]
async fn an_upstream_element_limit_applies_both_ways_to_its_sessions_only() {
    const LIMIT: usize = 12_000;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN, "other.example"])).await;
    let gateway = TestGateway::start(&format!(
        "{}max_element_bytes = {LIMIT}\n[[upstream]]\ndomain = \"other.example\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        upstream_toml(&server, &ca, ""),
        server.addr(),
        ca.ca_file().display()
    ))
    .await;

    // Client to server: up to the limit is relayed, one byte more is refused (D10) and never
    // reaches the server.
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    client.send(&message_of(LIMIT, 'F')).await;
    conn.read_until("</message>").await;
    client.send(&message_of(LIMIT + 1, 'A')).await;
    let error = client.recv_text().await;
    assert!(error.contains("<policy-violation"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1009);
    let (received, _) = conn.read_to_end().await;
    assert!(
        received.ends_with("</stream:stream>") && !received.contains("AAAA"),
        "{}",
        &received[..received.len().min(200)]
    );
    gateway.wait_metric("xmppgw_client_elements_refused_total{reason=\"too-big\"}", 1.0).await;

    // Server to client: one byte over the limit ends the stream as bad XML from the server.
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    conn.write(&element_of(LIMIT + 1, "<message to='a@example.com'><body>", 'B')).await;
    let error = client.recv_text().await;
    assert!(
        error.contains("<remote-connection-failed") && error.contains("upstream-bad-xml"),
        "{}",
        &error[..error.len().min(200)]
    );

    // While the upstream is being reached: refused before anything is written upstream.
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.read_stream_header().await;
    client.send(&message_of(LIMIT + 1, 'C')).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.contains("<policy-violation"));
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1009);
    let (_, _) = conn.read_to_end().await;
    assert!(!String::from_utf8_lossy(&conn.plaintext_received).contains("CCCC"));

    // Another upstream keeps the global limit.
    let mut client = WsClient::connect(&gateway.url).await;
    client.send(&OPEN.replace(DOMAIN, "other.example")).await;
    let mut conn = server.accept().await;
    conn.open_with_starttls("other.example", FEATURES).await;
    client.recv_text().await;
    client.recv_text().await;
    client.send(&message_of(LIMIT * 2, 'D')).await;
    assert!(conn.read_until("</message>").await.contains(&"D".repeat(LIMIT)));
}

#[tokio::test]
async fn proxy_protocol_v2_header_carries_the_forwarded_client_address() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&format!(
        "[listener]\ntrusted_proxies = [\"127.0.0.1\"]\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\nproxy_protocol = true\n",
        server.addr(),
        ca.ca_file().display()
    ))
    .await;
    let headers = "Sec-WebSocket-Protocol: xmpp\r\nX-Forwarded-For: 203.0.113.77\r\n";
    let mut client = RawWs::connect_with_headers(&gateway.url, headers).await;
    client.send_text(OPEN).await;
    let mut conn = server.accept().await;
    let bytes = conn.read_until_bytes("<").await;
    assert_eq!(&bytes[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&bytes[12..14], &[0x21, 0x11]);
    assert_eq!(&bytes[16..20], &[203, 0, 113, 77]);
    assert_eq!(&bytes[20..24], &[127, 0, 0, 1]);
}

#[tokio::test]
async fn host_meta_only_over_https_for_configured_domains_with_cors() {
    let gateway = TestGateway::start(
        "[listener]\ntrusted_proxies = [\"127.0.0.1\"]\n[host_meta]\nwebsocket_url = \"wss://gw.example.net/xmpp-websocket\"\ndomains = [\"example.com\"]\n\
         [domains]\nallow = [\"example.com\"]\n",
    )
    .await;
    let host = host_of(&gateway.url);
    let get = |path: &str, host_header: &str, proto: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\n{proto}Connection: close\r\n\r\n")
    };
    let https = "X-Forwarded-Proto: https\r\n";
    let (status, xrd) = raw_http(&host, &get("/.well-known/host-meta", "example.com", https)).await;
    assert_eq!(status, 200, "{xrd}");
    assert!(xrd.contains("rel=\"urn:xmpp:alt-connections:websocket\" href=\"wss://gw.example.net/xmpp-websocket\""));
    assert!(xrd.to_ascii_lowercase().contains("access-control-allow-origin: *"));
    let (status, jrd) = raw_http(&host, &get("/.well-known/host-meta.json", "example.com:443", https)).await;
    assert_eq!(status, 200, "{jrd}");
    let body = &jrd[jrd.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["links"][0]["href"], "wss://gw.example.net/xmpp-websocket");
    assert_eq!(raw_http(&host, &get("/.well-known/host-meta", "example.com", "")).await.0, 404);
    assert_eq!(raw_http(&host, &get("/.well-known/host-meta", "other.example", https)).await.0, 404);
}

/// A `[listener]` section serving `wss://` itself, with a certificate for `gw.test` from `ca`.
fn wss_listener(ca: &TestCa) -> String {
    let leaf = ca.issue("gw", &["gw.test"]);
    format!(
        "[listener]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        leaf.cert_path.display(),
        leaf.key_path.display()
    )
}

#[tokio::test]
async fn wss_listener_serves_the_gateway_over_tls() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&upstream_toml(&server, &ca, &wss_listener(&ca))).await;
    assert!(gateway.url.starts_with("wss://"), "{}", gateway.url);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(host_of(&gateway.url)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("gw.test").unwrap(), tcp)
        .await
        .expect("the gateway's certificate is valid for gw.test");
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = "wss://gw.test/xmpp-websocket".into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.expect("wss handshake");
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(OPEN.into())).await.unwrap();
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("<open "));
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn wss_handshakes_count_against_the_pending_caps_and_the_handshake_timeout() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let limits = "[limits]\nhandshake_timeout_secs = 1\nmax_pending_connections_per_address = 2\n";
    let gateway = TestGateway::start(&upstream_toml(&server, &ca, &format!("{}{limits}", wss_listener(&ca)))).await;
    // Three connections that never start their TLS handshake: two are admitted and closed when
    // the handshake timeout ends, the third is over the per-address cap and closed at once.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push((tokio::net::TcpStream::connect(host_of(&gateway.url)).await.unwrap(), std::time::Instant::now()));
    }
    let closed_after = |(mut stream, started): (tokio::net::TcpStream, std::time::Instant)| async move {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(harness::STEP, stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the gateway should close a silent TLS connection: {read:?}");
        started.elapsed()
    };
    let third = silent.pop().unwrap();
    let refused = closed_after(third).await;
    for connection in silent {
        let lived = closed_after(connection).await;
        assert!(lived >= std::time::Duration::from_millis(900), "closed before the handshake timeout: {lived:?}");
        assert!(
            refused + std::time::Duration::from_millis(500) <= lived,
            "refused after {refused:?}, timed out after {lived:?}"
        );
    }
    gateway.wait_metric("xmppgw_connections_dropped_total{reason=\"pending-limit-per-address\"}", 1.0).await;
    gateway.wait_metric("xmppgw_connections_dropped_total{reason=\"handshake-timeout\"}", 2.0).await;
    gateway.wait_metric("xmppgw_connections_pending", 0.0).await;
}

#[tokio::test]
async fn lim_4_queue_while_connecting_is_bounded_policy_violation_and_nothing_leaves_in_plaintext() {
    let Setup { ca: _ca, server, gateway } = setup_with("[limits]\nmax_queued_messages = 2\n").await;
    // The server accepts but never answers the stream header: the session stays connecting.
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.read_stream_header().await;
    for id in 1..=3 {
        client.send(&format!(r#"<message xmlns="jabber:client" id="q{id}"><body>secret</body></message>"#)).await;
    }
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains(r#"from="example.com""#), "{open}");
    let error = client.recv_text().await;
    assert!(error.contains("<policy-violation") && error.contains("too many messages"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1008, "a queue limit is a policy violation, not an oversized message");
    let (_, end) = conn.read_to_end().await;
    assert_eq!(end, ReadEnd::Eof, "the pending upstream connection is closed");
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("secret") && !plaintext.contains("<message"), "{plaintext}");
    gateway.wait_metric("xmppgw_client_elements_refused_total{reason=\"queue-full\"}", 1.0).await;
    gateway.wait_metric("xmppgw_stream_errors_total{condition=\"policy-violation\",side=\"gateway\"}", 1.0).await;
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"client_error\"}", 1.0).await;
}

#[tokio::test]
async fn lim_4_queue_while_connecting_is_bounded_in_bytes_by_one_element() {
    let Setup { ca: _ca, server, gateway } = setup_with("[limits]\nmax_element_bytes = 10000\n").await;
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.read_stream_header().await;
    // Two messages that each fit the element limit but not together.
    client.send(&message_of(6000, 'Q')).await;
    client.send(&message_of(6000, 'R')).await;
    assert!(client.recv_text().await.starts_with("<open "));
    let error = client.recv_text().await;
    assert!(error.contains("<policy-violation") && error.contains("too many messages"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1008);
    let (_, _) = conn.read_to_end().await;
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(!plaintext.contains("QQQQ") && !plaintext.contains("RRRR"));
    gateway.wait_metric("xmppgw_client_elements_refused_total{reason=\"queue-full\"}", 1.0).await;
}

#[tokio::test]
async fn lim_2_oversized_server_element_is_remote_connection_failed_to_the_client_and_policy_violation_up() {
    let Setup { ca: _ca, server, gateway } = setup_with("[limits]\nmax_element_bytes = 10000\n").await;
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    // Just under the limit passes; just over it ends the stream.
    let fits = format!("<message to='a@example.com'><body>{}</body></message>", "F".repeat(9000));
    conn.write(&fits).await;
    assert!(client.recv_text().await.contains(&"F".repeat(9000)));
    conn.write(&format!("<message to='a@example.com'><body>{}</body></message>", "A".repeat(20_000))).await;
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("upstream-bad-xml"), "{error}");
    assert!(!error.contains("AAAA"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await, (1000, "upstream-bad-xml".to_string()));
    let (received, _) = conn.read_to_end().await;
    assert!(
        received
            .contains("<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"),
        "{received}"
    );
    assert!(received.ends_with("</stream:stream>"), "{received}");
    gateway.wait_metric("xmppgw_stream_errors_total{condition=\"policy-violation\",side=\"gateway\"}", 1.0).await;
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"server_error\"}", 1.0).await;
}

#[tokio::test]
async fn close_timeout_ends_a_close_the_server_never_answers() {
    let Setup { ca: _ca, server, gateway } = setup_with("[limits]\nclose_timeout_secs = 1\n").await;
    let (mut client, mut conn) = open_session(&gateway.url, &server, FEATURES).await;
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    // The server never sends its </stream:stream>.
    let started = std::time::Instant::now();
    assert_eq!(client.expect_close().await, (1000, "close timed out".to_string()));
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(5), "closed after {waited:?}");
    let (_, end) = conn.read_to_end().await;
    assert_eq!(end, ReadEnd::Eof);
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"close_timeout\"}", 1.0).await;
}

#[tokio::test]
async fn connect_attempt_timeout_gives_remote_connection_failed_with_the_phase() {
    let Setup { ca: _ca, server, gateway } =
        setup_with("[connect]\nattempt_timeout_secs = 1\noverall_timeout_secs = 30\n").await;
    let mut client = WsClient::connect(&gateway.url).await;
    let started = std::time::Instant::now();
    client.send(OPEN).await;
    // TCP is accepted, but the server never answers the stream header.
    let mut conn = server.accept().await;
    conn.read_stream_header().await;
    assert!(client.recv_text().await.starts_with("<open "));
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("-timeout"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    let (code, class) = client.expect_close().await;
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(5), "the 1 s attempt budget took {waited:?}");
    assert_eq!(code, 1000);
    assert!(class.ends_with("-timeout"), "{class}");
    gateway.wait_metric(&format!("xmppgw_upstream_connect_failures_total{{class=\"{class}\"}}"), 1.0).await;
    gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"upstream_failed\"}", 1.0).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_session_instead_of_holding_it() {
    let Setup { ca: _ca, server, gateway } =
        setup_with("[limits]\nping_interval_secs = 1\npong_timeout_secs = 1\nidle_timeout_secs = 0\n").await;
    let mut never_reads = RawWs::connect(&gateway.url).await;
    never_reads.send_text(OPEN).await;
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    // The server floods a client that never reads again; the gateway must give up on the
    // client (bounded) rather than keep the session and its upstream forever.
    let stanza = format!("<message to='a@example.com'><body>{}</body></message>", "x".repeat(1000));
    let flood = async {
        for _ in 0..20_000 {
            if !conn.try_write(&stanza).await {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), flood).await;
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
    let metrics = gateway.metrics();
    let stalled = metric_value(&metrics, "xmppgw_sessions_ended_total{outcome=\"client_stalled\"}")
        + metric_value(&metrics, "xmppgw_sessions_ended_total{outcome=\"pong_timeout\"}");
    assert_eq!(stalled, 1.0, "{metrics}");
}
