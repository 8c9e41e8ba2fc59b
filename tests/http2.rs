//! WebSocket over HTTP/2 (RFC 8441, WS-12) on the gateway's own `wss://` listener, in process: what the
//! listener offers (ALPN `h2` and `http/1.1`, SETTINGS_ENABLE_CONNECT_PROTOCOL and its limits),
//! sessions as extended CONNECT streams under the same rules as HTTP/1.1 (Origin, the `xmpp`
//! subprotocol, D18 paths, D19, session limits counting every stream, close codes, drain), HTTP/1.1
//! clients on the same port, `listener.http2 = false`, and what happens to a connection that
//! carries no session. The attacks on the built binary are in tests/hostile_h2.rs.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::fake_server::{FakeServer, ServerConn};
use harness::gateway::TestGateway;
use harness::h2::{self, addr_of, frame, setting, H2Connection, H2WsClient, ListenerCert, RawH2};
use harness::ws_client::WsEvent;
use harness::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::{TestCa, STEP};
use tokio_tungstenite::tungstenite::Message;

/// A test CA, a fake server for `example.com` with a certificate from it, and a gateway serving
/// `wss://` with a listener certificate from the same CA.
struct Fixture {
    ca: TestCa,
    server: FakeServer,
    gateway: TestGateway,
    /// Kept for the gateway's lifetime: the listener's certificate files.
    _cert: ListenerCert,
}

impl Fixture {
    /// `listener` is added to the `[listener]` section, `rest` after it.
    async fn start(listener: &str, rest: &str) -> Fixture {
        let ca = TestCa::new();
        let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
        let cert = ListenerCert::new(&ca);
        let gateway = TestGateway::start(&format!(
            "[listener]\n{}{listener}\n{rest}\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
            cert.toml_lines(),
            server.addr(),
            ca.ca_file().display()
        ))
        .await;
        Fixture { ca, server, gateway, _cert: cert }
    }
}

/// A session opened on `connection`: `<open/>` sent, the fake server's STARTTLS done, the
/// client's `<open/>` and features received.
async fn open_session(connection: &mut H2Connection, server: &FakeServer) -> (H2WsClient, ServerConn) {
    let mut client = connection.websocket("/xmpp-websocket", &[]).await.expect("a WebSocket over HTTP/2");
    assert_eq!(client.protocol.as_deref(), Some("xmpp"));
    client.send(OPEN).await;
    let mut upstream = server.accept().await;
    upstream.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features"));
    (client, upstream)
}

fn metric(gateway: &TestGateway, series: &str) -> f64 {
    gateway
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn h2_is_offered_with_extended_connect_and_a_session_runs_over_it() {
    let Fixture { ca, server, gateway, _cert } = Fixture::start("", "[limits]\nmax_header_bytes = 12288\n").await;
    let addr = addr_of(&gateway.url);

    // What the listener says in its first SETTINGS frame (RFC 8441 §3, RFC 9113 §6.5.2).
    let mut raw = RawH2::connect(addr, &ca, &[]).await;
    let mut seen = Vec::new();
    let settings = raw.until(&mut seen, |f| f.kind == frame::SETTINGS && f.flags & frame::ACK == 0).await.unwrap();
    let settings = settings.settings();
    println!("the gateway's SETTINGS: {settings:?}");
    for wanted in [
        (setting::ENABLE_CONNECT_PROTOCOL, 1),
        (setting::MAX_CONCURRENT_STREAMS, 100),
        (setting::MAX_HEADER_LIST_SIZE, 12288),
        (setting::INITIAL_WINDOW_SIZE, 65536),
    ] {
        assert!(settings.contains(&wanted), "setting {wanted:?} missing from {settings:?}");
    }

    // A session over an extended CONNECT stream: open, features, a stanza both ways, clean close.
    let mut connection = H2Connection::connect(addr, &ca).await;
    let (mut client, mut upstream) = open_session(&mut connection, &server).await;
    client.send(r#"<message xmlns="jabber:client" to="romeo@example.net"><body>h2</body></message>"#).await;
    upstream.read_until("<body>h2</body></message>").await;
    upstream.write("<message to='juliet@example.com'><body>back</body></message>").await;
    assert!(client.recv_text().await.contains("<body>back</body>"));
    client.send(CLOSE).await;
    upstream.read_until("</stream:stream>").await;
    upstream.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    gateway.wait_metric("xmppgw_websocket_upgrades_total{http_version=\"2\"}", 1.0).await;
    assert_eq!(metric(&gateway, "xmppgw_websocket_upgrades_total{http_version=\"1.1\"}"), 0.0);
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
}

#[tokio::test]
async fn http1_clients_share_the_port_with_or_without_alpn() {
    let Fixture { ca, server, gateway, _cert } = Fixture::start("", "").await;
    let addr = addr_of(&gateway.url);
    for (alpn, expected) in
        [(&["http/1.1"][..], Some("http/1.1")), (&[][..], None), (&["http/1.1", "h2"][..], Some("h2"))]
    {
        let tls = h2::tls(addr, &ca, alpn).await.unwrap();
        assert_eq!(h2::negotiated(&tls).as_deref(), expected, "ALPN offered {alpn:?}");
        if expected == Some("h2") {
            continue;
        }
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = "wss://gw.test/xmpp-websocket".into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
        let (ws, response) = tokio_tungstenite::client_async(request, tls).await.expect("an HTTP/1.1 upgrade");
        assert_eq!(response.status(), 101);
        let mut client = harness::ws_client::WsClient::from_stream(ws, None);
        client.send(OPEN).await;
        let mut upstream = server.accept().await;
        upstream.open_with_starttls(DOMAIN, FEATURES).await;
        assert!(client.recv_text().await.starts_with("<open "));
        client.close().await;
    }
    gateway.wait_metric("xmppgw_websocket_upgrades_total{http_version=\"1.1\"}", 2.0).await;
}

#[tokio::test]
async fn http2_can_be_switched_off() {
    let Fixture { ca, server: _server, gateway, _cert } = Fixture::start("http2 = false\n", "").await;
    let addr = addr_of(&gateway.url);
    let tls = h2::tls(addr, &ca, &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(h2::negotiated(&tls).as_deref(), Some("http/1.1"));
    let only_h2 = h2::tls(addr, &ca, &["h2"]).await;
    assert!(
        only_h2.is_err(),
        "a client offering only h2 must not get HTTP/2: {:?}",
        only_h2.map(|t| h2::negotiated(&t))
    );
}

#[tokio::test]
async fn a_reload_switches_http2_for_new_connections() {
    let Fixture { ca, server, gateway, _cert: cert } = Fixture::start("", "").await;
    let addr = addr_of(&gateway.url);
    let mut before = H2Connection::connect(addr, &ca).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[listener]\nallow_missing_origin = true\nhttp2 = false\n{}\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
            cert.toml_lines(),
            server.addr(),
            ca.ca_file().display()
        ),
    )
    .unwrap();
    let roots = xmpp_ws_gateway::upstream::SystemRoots::empty();
    xmpp_ws_gateway::run::reload(&gateway.control, &path, Default::default(), &roots).expect("reload");
    let tls = h2::tls(addr, &ca, &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(h2::negotiated(&tls).as_deref(), Some("http/1.1"), "new connections after the reload");
    // A connection that chose HTTP/2 before keeps it.
    let mut client = before.websocket("/xmpp-websocket", &[]).await.expect("the older HTTP/2 connection still serves");
    client.close().await;
}

#[tokio::test]
async fn the_http1_rules_hold_on_http2_streams() {
    let Fixture { ca, server: _server, gateway, _cert } =
        Fixture::start("allow_missing_origin = false\nallowed_origins = [\"https://chat.example\"]\n", "").await;
    let mut connection = H2Connection::connect(addr_of(&gateway.url), &ca).await;
    let origin = ("origin", "https://chat.example");

    // D1: no `xmpp` offered is 400, never a 200.
    let refused =
        connection.websocket("/xmpp-websocket", &[origin, ("sec-websocket-protocol", "chat")]).await.unwrap_err();
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("'xmpp'"), "{refused:?}");
    assert!(refused.headers.get("sec-websocket-protocol").is_none());
    // Origin: an unlisted page and a missing Origin are 403.
    let refused = connection.websocket("/xmpp-websocket", &[("origin", "https://evil.example")]).await.unwrap_err();
    assert_eq!(refused.status, 403, "{refused:?}");
    let refused = connection.websocket("/xmpp-websocket", &[]).await.unwrap_err();
    assert_eq!(refused.status, 403, "{refused:?}");
    // D19: a plain GET is told what the URL is; HTTP/2 has no Upgrade header.
    let get =
        hyper::Request::get(format!("https://{}/xmpp-websocket", h2::HOST)).body(axum::body::Body::empty()).unwrap();
    let answer = h2::read_refusal(connection.request(get).await.unwrap()).await;
    assert_eq!(answer.status, 426, "{answer:?}");
    assert!(answer.body.contains("RFC 7395"), "{answer:?}");
    assert!(answer.headers.get("upgrade").is_none(), "{answer:?}");
    // A CONNECT for another protocol is a bad handshake (400); other paths are 404.
    let mut other = H2Connection::connect_request("/xmpp-websocket", &[origin]);
    other.extensions_mut().insert(hyper::ext::Protocol::from_static("webtransport"));
    let answer = h2::read_refusal(connection.request(other).await.unwrap()).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(connection.websocket("/elsewhere", &[origin]).await.unwrap_err().status, 404);
    // D18: with and without the trailing slash.
    for path in ["/xmpp-websocket", "/xmpp-websocket/"] {
        let mut client = connection.websocket(path, &[origin]).await.expect(path);
        assert_eq!(client.protocol.as_deref(), Some("xmpp"));
        client.close().await;
    }
    assert!(connection.is_open(), "refusals end streams, not the connection");
    for (reason, count) in [
        ("no-subprotocol", 1.0),
        ("origin-not-allowed", 1.0),
        ("origin-missing", 1.0),
        ("not-websocket", 1.0),
        ("bad-handshake", 1.0),
    ] {
        assert_eq!(
            metric(&gateway, &format!("xmppgw_websocket_handshakes_rejected_total{{reason=\"{reason}\"}}")),
            count,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn sessions_on_one_connection_are_independent_and_keep_their_close_codes() {
    let Fixture { ca, server, gateway, _cert } = Fixture::start("", "").await;
    let mut connection = H2Connection::connect(addr_of(&gateway.url), &ca).await;
    let (mut first, mut first_upstream) = open_session(&mut connection, &server).await;
    let (mut second, mut second_upstream) = open_session(&mut connection, &server).await;

    // WS-4: a binary message ends its own session with 1003, nothing of it upstream.
    first.send_message(Message::Binary(b"<presence/>".to_vec().into())).await;
    assert_eq!(first.expect_close().await.0, 1003);
    let (received, _) = first_upstream.read_to_end().await;
    assert!(!received.contains("<presence"), "{received}");

    // The other session on the same connection goes on.
    second.send(r#"<presence xmlns="jabber:client"/>"#).await;
    second_upstream.read_until("<presence").await;
    second_upstream.write("<message to='juliet@example.com'><body>still here</body></message>").await;
    assert!(second.recv_text().await.contains("still here"));
    assert!(connection.is_open());
    // The server's end is relayed as on HTTP/1.1: <close/>, then 1000.
    second_upstream.write("</stream:stream>").await;
    assert_eq!(second.recv_text().await, CLOSE);
    second.send(CLOSE).await;
    assert_eq!(second.expect_close().await.0, 1000);
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
}

#[tokio::test]
async fn per_address_session_limits_count_every_stream() {
    let Fixture { ca, server: _server, gateway, _cert } =
        Fixture::start("", "[limits]\nmax_sessions_per_address = 2\n").await;
    let addr = addr_of(&gateway.url);
    let mut connection = H2Connection::connect(addr, &ca).await;
    let first = connection.websocket("/xmpp-websocket", &[]).await.unwrap();
    let _second = connection.websocket("/xmpp-websocket", &[]).await.unwrap();
    let refused = connection.websocket("/xmpp-websocket", &[]).await.unwrap_err();
    assert_eq!(refused.status, 429, "{refused:?}");
    // Another connection from the same address, and an HTTP/1.1 one, are over the limit too.
    let mut other = H2Connection::connect(addr, &ca).await;
    assert_eq!(other.websocket("/xmpp-websocket", &[]).await.unwrap_err().status, 429);
    // A session that ends gives its place back.
    first.vanish();
    gateway.wait_metric("xmppgw_sessions_active", 1.0).await;
    let _third = other.websocket("/xmpp-websocket", &[]).await.expect("room again");
    gateway.wait_metric("xmppgw_websocket_handshakes_rejected_total{reason=\"limit-per-address\"}", 2.0).await;
}

#[tokio::test]
async fn drain_ends_http2_sessions_as_on_http1_and_refuses_new_streams() {
    let Fixture { ca, server, gateway, _cert } = Fixture::start("", "").await;
    let mut connection = H2Connection::connect(addr_of(&gateway.url), &ca).await;
    let (mut client, _upstream) = open_session(&mut connection, &server).await;
    gateway.control.drain.cancel();
    let error = client.recv_text().await;
    assert!(error.contains("<system-shutdown"), "{error}");
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1001);
    // GOAWAY: the connection takes no new stream, and closes once its session has ended.
    let ended = tokio::time::timeout(STEP, connection.task).await;
    assert!(ended.is_ok(), "the connection outlived its last session after the drain");
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
}

/// Reads frames until the connection ends; returns when it ended (from `since`) and whether a
/// GOAWAY came first.
async fn until_closed(raw: &mut RawH2, since: Instant) -> (Duration, bool) {
    let mut seen = Vec::new();
    let mut goaway = false;
    while let Some(frame) = raw.next_frame().await {
        goaway |= frame.kind == frame::GOAWAY;
        seen.push(frame.kind);
    }
    (since.elapsed(), goaway)
}

#[tokio::test]
async fn a_connection_without_a_session_is_closed_after_the_handshake_timeout() {
    let Fixture { ca, server: _server, gateway, _cert } =
        Fixture::start("", "[limits]\nhandshake_timeout_secs = 1\n").await;
    let addr = addr_of(&gateway.url);

    // Never opens a stream: GOAWAY, then closed, about one handshake timeout after the accept.
    let started = Instant::now();
    let mut silent = RawH2::connect(addr, &ca, &[]).await;
    gateway.wait_metric("xmppgw_connections_pending", 1.0).await;
    let (lived, goaway) = until_closed(&mut silent, started).await;
    println!("an HTTP/2 connection without a stream was closed after {lived:?} (GOAWAY first: {goaway})");
    assert!(goaway, "the idle connection was not told to go away");
    assert!(lived >= Duration::from_millis(900) && lived < STEP, "closed after {lived:?}");
    gateway.wait_metric("xmppgw_connections_dropped_total{reason=\"handshake-timeout\"}", 1.0).await;

    // A connection whose session ended: pending again, closed a handshake timeout later.
    let mut connection = H2Connection::connect(addr, &ca).await;
    let mut client = connection.websocket("/xmpp-websocket", &[]).await.unwrap();
    gateway.wait_metric("xmppgw_connections_pending", 0.0).await;
    // Well beyond the handshake timeout: a session is never cut by it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(connection.is_open(), "a connection carrying a session was closed");
    client.send(CLOSE).await;
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    client.close().await;
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
    let ended_at = Instant::now();
    gateway.wait_metric("xmppgw_connections_pending", 1.0).await;
    let closed = tokio::time::timeout(STEP, connection.task).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    let idle = ended_at.elapsed();
    println!("an HTTP/2 connection whose session ended was closed {idle:?} later");
    assert!(idle >= Duration::from_millis(900), "closed {idle:?} after its session ended");
    gateway.wait_metric("xmppgw_connections_dropped_total{reason=\"http2-idle\"}", 1.0).await;
    gateway.wait_metric("xmppgw_connections_pending", 0.0).await;
}

#[tokio::test]
async fn a_connection_whose_sessions_ended_needs_room_among_the_pending_ones() {
    let Fixture { ca, server: _server, gateway, _cert } =
        Fixture::start("", "[limits]\nmax_pending_connections_per_address = 1\nhandshake_timeout_secs = 30\n").await;
    let addr = addr_of(&gateway.url);
    let mut carrying = H2Connection::connect(addr, &ca).await;
    let mut client = carrying.websocket("/xmpp-websocket", &[]).await.unwrap();
    gateway.wait_metric("xmppgw_connections_pending", 0.0).await;
    // A second connection from the same address takes the one pending place.
    let _idle = RawH2::connect(addr, &ca, &[]).await;
    gateway.wait_metric("xmppgw_connections_pending", 1.0).await;
    // When the first one's session ends it cannot count as pending: it is closed at once.
    client.send(CLOSE).await;
    assert_eq!(client.recv_text().await, CLOSE);
    assert_eq!(client.expect_close().await.0, 1000);
    client.close().await;
    gateway.wait_metric("xmppgw_sessions_active", 0.0).await;
    // Within STEP, a third of the handshake timeout (30 s here): not the idle path.
    let closed = tokio::time::timeout(STEP, carrying.task).await;
    assert!(closed.is_ok(), "closed at once, not after the handshake timeout");
    gateway.wait_metric("xmppgw_connections_dropped_total{reason=\"pending-limit-per-address\"}", 1.0).await;
    assert_eq!(metric(&gateway, "xmppgw_connections_pending"), 1.0);
}

#[tokio::test]
async fn a_session_that_vanishes_ends_like_a_dropped_tcp_connection() {
    let Fixture { ca, server, gateway, _cert } = Fixture::start("", "").await;
    let mut connection = H2Connection::connect(addr_of(&gateway.url), &ca).await;
    let (client, mut upstream) = open_session(&mut connection, &server).await;
    let (mut other, mut other_upstream) = open_session(&mut connection, &server).await;
    // The stream ends without a Close frame (as a TCP connection that drops): TV-94, no
    // </stream:stream> upstream.
    client.vanish();
    let (received, _) = upstream.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "{received}");
    // The connection and its other session are untouched.
    other.send(r#"<presence xmlns="jabber:client"/>"#).await;
    other_upstream.read_until("<presence").await;
    other_upstream.write("<message to='juliet@example.com'><body>on</body></message>").await;
    assert!(matches!(other.next_event().await, WsEvent::Text(text) if text.contains("<body>on</body>")));
    assert!(connection.is_open());
    gateway.wait_metric("xmppgw_sessions_active", 1.0).await;
}
