//! BOSH (XEP-0124 + XEP-0206) at the HTTP level against a scripted fake server over real
//! sockets and real TLS: one test per connection-manager rule of XEP-0124 §7–§17 (docs/PROTOCOL.md
//! BOSH-1…). Times are configured short (`wait` 1 s, `inactivity` 2 s) instead of slept.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::bosh_client::{post, request, Answer, Session, NS};
use harness::fake_server::{FakeServer, ServerConn};
use harness::gateway::TestGateway;
use harness::setup::{setup_with, Setup};
use harness::xmpp::{DOMAIN, PLAIN_FEATURES};
use harness::{TestCa, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOSH: &str = "[bosh]\nmax_wait_secs = 1\ninactivity_secs = 2\npolling_secs = 1\nmax_pause_secs = 5\n";

/// `host:port` of the gateway's public listener.
fn address(gateway: &TestGateway) -> String {
    gateway.url.trim_start_matches("ws://").split('/').next().unwrap().to_string()
}

const FIRST_RID: u64 = 1_573_741_820;

/// Creates a session through STARTTLS: the creation answer, the session and the server's side.
async fn create(setup: &Setup) -> (Answer, Session, ServerConn) {
    create_with(setup, "wait='60' hold='1'").await
}

/// [`create`] with these `wait` and `hold` attributes.
async fn create_with(setup: &Setup, wait_hold: &str) -> (Answer, Session, ServerConn) {
    let addr = address(&setup.gateway);
    let body =
        format!("<body {NS} rid='{FIRST_RID}' to='{DOMAIN}' {wait_hold} ver='1.6' xml:lang='en' xmpp:version='1.0'/>");
    let creating = {
        let addr = addr.clone();
        tokio::spawn(async move { post(&addr, &body).await })
    };
    let mut conn = setup.server.accept().await;
    conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
    let answer = creating.await.unwrap();
    let sid = answer.attr("sid").unwrap_or_else(|| panic!("no sid: {answer:?}"));
    (answer, Session { addr, sid, rid: FIRST_RID }, conn)
}

async fn bosh_setup() -> Setup {
    setup_with(BOSH).await
}

fn is_empty_body(answer: &Answer) -> bool {
    answer.body.ends_with("/>") && !answer.body.contains("type=")
}

fn condition(answer: &Answer) -> Option<String> {
    assert_eq!(answer.attr("type").as_deref(), Some("terminate"), "{answer:?}");
    answer.attr("condition")
}

/// BOSH-2: session creation (XEP-0124 §7.1, XEP-0206 §3).
#[tokio::test]
async fn session_creation_answers_the_granted_attributes_and_the_features() {
    let setup = bosh_setup().await;
    let (answer, session, _conn) = create(&setup).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type").as_deref(), Some("text/xml; charset=utf-8"));
    assert_eq!(session.sid.len(), 32, "128 bits in hex: {}", session.sid);
    for (name, value) in [
        ("wait", "1"),
        ("requests", "2"),
        ("hold", "1"),
        ("inactivity", "2"),
        ("polling", "1"),
        ("maxpause", "5"),
        ("ver", "1.6"),
        ("from", DOMAIN),
        ("authid", "ID-2"),
        ("xmpp:version", "1.0"),
        ("xmpp:restartlogic", "true"),
    ] {
        assert_eq!(answer.attr(name).as_deref(), Some(value), "{name} in {}", answer.body);
    }
    assert!(answer.body.contains("<stream:features") && answer.body.contains("PLAIN"), "{}", answer.body);
    let (second, other, _conn) = create(&setup).await;
    assert_eq!(second.status, 200);
    assert_ne!(session.sid, other.sid);
    setup.gateway.wait_metric("xmppgw_bosh_sessions_active", 2.0).await;
    setup.gateway.wait_metric("xmppgw_sessions_active", 2.0).await;
    setup.gateway.wait_metric("xmppgw_bosh_requests_total{result=\"answered\"}", 2.0).await;
}

/// BOSH-3: a held request is answered empty when `wait` runs out (XEP-0124 §8).
#[tokio::test]
async fn a_held_request_is_answered_empty_after_wait() {
    let setup = bosh_setup().await;
    let (_, mut session, _conn) = create(&setup).await;
    let started = tokio::time::Instant::now();
    let answer = session.send("", "").await.unwrap();
    assert!(is_empty_body(&answer), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "answered before wait: {:?}", started.elapsed());
}

/// BOSH-4: stanzas both ways; a held request carries the server's stanza (XEP-0124 §8, XEP-0206 §4).
#[tokio::test]
async fn stanzas_flow_both_ways_and_a_held_request_carries_the_servers() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let held = session.send("", "");
    let sent = session.send("", "<message to='a@example.com' id='c1'><body>hi</body></message>");
    let relayed = conn.read_until("</message>").await;
    assert!(relayed.contains("<message xmlns=\"jabber:client\" to='a@example.com' id='c1'>"), "{relayed}");
    // The first request was answered when the second came (hold 1), before anything was queued.
    assert!(is_empty_body(&held.await.unwrap()));
    conn.write("<message from='a@example.com' id='s1'><body>yo</body></message>").await;
    let answer = sent.await.unwrap();
    assert!(answer.body.contains("id='s1'") && answer.body.contains("yo"), "{answer:?}");
}

/// BOSH-5: a repeated rid gets the same answer again (XEP-0124 §14.3).
#[tokio::test]
async fn a_repeated_rid_is_answered_with_the_buffered_copy() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let held = session.send("", "");
    conn.write("<message from='a@example.com' id='s1'/>").await;
    let first = held.await.unwrap();
    assert!(first.body.contains("id='s1'"), "{first:?}");
    let again = format!("<body {NS} rid='{}' sid='{}'/>", session.rid, session.sid);
    let second = post(&session.addr, &again).await;
    assert_eq!(second.body, first.body);
}

/// BOSH-6: a rid outside the window ends the session with item-not-found (XEP-0124 §14.2).
#[tokio::test]
async fn a_rid_beyond_the_window_ends_the_session() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    session.rid += 5;
    let answer = post(&session.addr.clone(), &session.next("", "")).await;
    assert_eq!(condition(&answer).as_deref(), Some("item-not-found"));
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("<message"), "{received}");
    let after = post(&session.addr.clone(), &session.next("", "")).await;
    assert_eq!(condition(&after).as_deref(), Some("item-not-found"), "the session is gone");
}

/// BOSH-7: requests that arrive out of order are forwarded in rid order (XEP-0124 §14.1).
#[tokio::test]
async fn out_of_order_requests_reach_the_server_in_rid_order() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let first = session.next("", "<message id='one'/>");
    let second = session.send("", "<message id='two'/>");
    // The second is in its session, waiting for the first.
    wait_until_queued(&setup, 1).await;
    let first = post(&session.addr, &first).await;
    let relayed = conn.read_until("id='two'/>").await;
    let (one, two) = (relayed.find("id='one'").unwrap(), relayed.find("id='two'").unwrap());
    assert!(one < two, "{relayed}");
    assert_eq!(first.status, 200);
    assert_eq!(second.await.unwrap().status, 200);
}

/// BOSH-8: more requests outstanding than `requests` is overactivity (XEP-0124 §11).
#[tokio::test]
async fn too_many_simultaneous_requests_are_a_policy_violation() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let held = session.send("", "");
    let gap = session.next("", "<message id='gap'/>");
    let ahead = session.send("", "<message id='ahead'/>");
    // Held, plus one ahead of the gap, plus the gap: three outstanding of two allowed.
    wait_until_queued(&setup, 2).await;
    let answer = post(&session.addr, &gap).await;
    assert_eq!(condition(&answer).as_deref(), Some("policy-violation"), "{answer:?}");
    assert_eq!(condition(&held.await.unwrap()).as_deref(), Some("policy-violation"));
    assert_eq!(condition(&ahead.await.unwrap()).as_deref(), Some("policy-violation"));
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("<message"), "nothing of it reached the server: {received}");
}

/// Waits until the gateway has handed `count` requests to live sessions (creations not counted).
async fn wait_until_queued(setup: &Setup, count: u64) {
    let deadline = tokio::time::Instant::now() + STEP;
    while setup.gateway.control.bosh.forwarded() < count {
        assert!(tokio::time::Instant::now() < deadline, "requests not received");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// BOSH-9: in a polling session (hold 0), an empty request less than `polling` seconds after
/// the previous one is a policy violation (XEP-0124 §11); a request with data is not.
#[tokio::test]
async fn polling_too_often_is_a_policy_violation() {
    let setup = bosh_setup().await;
    let (_, mut session, _conn) = create_with(&setup, "wait='60' hold='0'").await;
    let with_data = post(&session.addr.clone(), &session.next("", "<presence/>")).await;
    assert!(is_empty_body(&with_data), "a polling session is answered at once: {with_data:?}");
    let answer = post(&session.addr.clone(), &session.next("", "")).await;
    assert_eq!(condition(&answer).as_deref(), Some("policy-violation"), "{answer:?}");
}

/// BOSH-10: a client that stops sending requests for `inactivity` is gone: the upstream is
/// closed without `</stream:stream>`, so the stream stays resumable (XEP-0124 §10).
#[tokio::test]
async fn inactivity_closes_the_upstream_without_a_stream_end() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "{received}");
    let after = post(&session.addr.clone(), &session.next("", "")).await;
    assert_eq!(condition(&after).as_deref(), Some("item-not-found"));
    setup.gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"client_vanished\"}", 1.0).await;
}

/// BOSH-11: `type='terminate'` delivers its stanzas, then ends the stream cleanly (XEP-0124 §13).
#[tokio::test]
async fn terminate_delivers_its_stanzas_and_ends_the_stream() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let ending = session.send("type='terminate'", "<presence type='unavailable'/>");
    let received = conn.read_until("</stream:stream>").await;
    assert!(received.contains("<presence xmlns=\"jabber:client\" type='unavailable'/>"), "{received}");
    conn.write("</stream:stream>").await;
    let answer = ending.await.unwrap();
    assert_eq!(condition(&answer), None, "{answer:?}");
    setup.gateway.wait_metric("xmppgw_sessions_ended_total{outcome=\"clean\"}", 1.0).await;
}

/// BOSH-12: `xmpp:restart` restarts the stream; the answer carries the new features (XEP-0206 §5).
#[tokio::test]
async fn a_restart_request_restarts_the_stream() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let auth = session.send("", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
    conn.read_until("</auth>").await;
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    assert!(auth.await.unwrap().body.contains("<success"));
    let restart = session.send(&format!("to='{DOMAIN}' xmpp:restart='true'"), "");
    let header = conn.read_stream_header().await;
    assert!(header.contains("to='example.com'"), "{header}");
    conn.write("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-3' from='example.com' version='1.0'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>").await;
    let answer = restart.await.unwrap();
    assert!(answer.body.contains("<bind"), "{answer:?}");
}

/// BOSH-13: an unknown sid is item-not-found; nothing else changes (XEP-0124 §17.2).
#[tokio::test]
async fn an_unknown_sid_is_item_not_found() {
    let setup = bosh_setup().await;
    let answer =
        post(&address(&setup.gateway), &format!("<body {NS} rid='5' sid='0123456789abcdef0123456789abcdef'/>")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(condition(&answer).as_deref(), Some("item-not-found"));
    setup.gateway.wait_metric("xmppgw_bosh_requests_total{result=\"item-not-found\"}", 1.0).await;
    assert!(setup.server.try_accept(Duration::from_millis(200)).await.is_none(), "no upstream connection");
}

/// BOSH-14: malformed bodies and bad rids are bad-request; the session is not disturbed.
#[tokio::test]
async fn malformed_bodies_and_bad_rids_are_bad_requests() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    for body in [
        "not xml".to_string(),
        format!("<body {NS} rid='x' sid='{}'/>", session.sid),
        format!("<body {NS} sid='{}'/>", session.sid),
        format!("<body {NS} rid='{}' sid='{}'><message>", session.rid + 1, session.sid),
        format!("<body {NS} rid='{}' sid='{}'><!-- c --></body>", session.rid + 1, session.sid),
    ] {
        let answer = post(&session.addr, &body).await;
        assert_eq!(condition(&answer).as_deref(), Some("bad-request"), "{body}: {answer:?}");
    }
    let fine = session.send("", "<message id='after'/>");
    assert!(conn.read_until("id='after'/>").await.contains("<message"));
    assert_eq!(fine.await.unwrap().status, 200);
}

/// BOSH-15: a body over the limit is refused before it is read (413), from its Content-Length
/// or as it streams in; nothing reaches the server.
#[tokio::test]
async fn an_oversize_body_is_refused_before_buffering() {
    let setup = setup_with(&format!("{BOSH}[limits]\nmax_element_bytes = 10000\n")).await;
    let (_, session, mut conn) = create(&setup).await;
    let huge = format!(
        "<body {NS} rid='{}' sid='{}'><message>{}</message></body>",
        session.rid + 1,
        session.sid,
        "x".repeat(40_000)
    );
    let declared = post(&session.addr, &huge).await;
    assert_eq!(declared.status, 413);
    // Chunked, without a Content-Length: cut off by the streaming limit.
    let mut stream = TcpStream::connect(&session.addr).await.unwrap();
    let head = format!("POST /http-bind HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{huge}\r\n0\r\n\r\n", huge.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 413"), "{}", String::from_utf8_lossy(&raw));
    conn.write("<message id='still'/>").await;
    let mut session = session;
    let answer = session.send("", "").await.unwrap();
    assert!(answer.body.contains("id='still'"), "the session lives on: {answer:?}");
}

/// BOSH-16: CORS: the listed origin gets its preflight and the Access-Control headers; an
/// unlisted one is refused like a WebSocket handshake (403), preflight included.
#[tokio::test]
async fn only_listed_origins_get_in() {
    let setup = setup_with(&format!("{BOSH}[listener]\nallowed_origins = [\"https://app.example\"]\n")).await;
    let addr = address(&setup.gateway);
    let preflight =
        request(&addr, "OPTIONS", "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n", "").await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin").as_deref(), Some("https://app.example"));
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("Content-Type"));
    let unlisted = request(&addr, "OPTIONS", "Origin: https://evil.example\r\n", "").await;
    assert_eq!(unlisted.status, 403);
    assert_eq!(unlisted.header("access-control-allow-origin"), None);
    let creation = format!("<body {NS} rid='1' to='{DOMAIN}'/>");
    let refused = request(&addr, "POST", "Origin: https://evil.example\r\n", &creation).await;
    assert_eq!(refused.status, 403);
    assert!(setup.server.try_accept(Duration::from_millis(200)).await.is_none(), "no upstream connection");
    let bad =
        request(&addr, "POST", "Origin: https://app.example\r\n", &format!("<body {NS} rid='1' sid='nope'/>")).await;
    assert_eq!(bad.header("access-control-allow-origin").as_deref(), Some("https://app.example"));
}

/// BOSH-17: session creation errors with the WebSocket side's failure classes: a missing `to`,
/// an unserved domain, an upstream that is down.
#[tokio::test]
async fn creation_errors_have_the_websocket_failure_classes() {
    let setup = bosh_setup().await;
    let addr = address(&setup.gateway);
    let no_to = post(&addr, &format!("<body {NS} rid='1'/>")).await;
    assert_eq!(condition(&no_to).as_deref(), Some("improper-addressing"));
    let unknown = post(&addr, &format!("<body {NS} rid='1' to='other.example'/>")).await;
    assert_eq!(condition(&unknown).as_deref(), Some("host-unknown"));
    // An upstream that refuses connections.
    let ca = TestCa::new();
    let (_held, down) = harness::net::refusing_address();
    let gateway = TestGateway::start(&format!(
        "{BOSH}[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{down}\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
        ca.ca_file().display()
    ))
    .await;
    let failed = post(&address(&gateway), &format!("<body {NS} rid='1' to='{DOMAIN}'/>")).await;
    assert_eq!(condition(&failed).as_deref(), Some("remote-connection-failed"), "{failed:?}");
}

/// BOSH-18: draining ends BOSH sessions with system-shutdown and keeps the stream resumable;
/// new sessions are refused with it.
#[tokio::test]
async fn drain_ends_sessions_with_system_shutdown() {
    let setup = bosh_setup().await;
    let (_, mut session, mut conn) = create(&setup).await;
    let held = session.send("", "");
    wait_until_queued(&setup, 1).await;
    setup.gateway.control.drain.cancel();
    let answer = held.await.unwrap();
    assert_eq!(condition(&answer).as_deref(), Some("system-shutdown"), "{answer:?}");
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("</stream:stream>"), "drain keeps sessions resumable: {received}");
}

/// DISC-3: host-meta advertises the BOSH URL next to the WebSocket one (XEP-0156 §3).
#[tokio::test]
async fn host_meta_advertises_the_bosh_url() {
    let gateway = TestGateway::start(
        "[listener]\ntrusted_proxies = [\"127.0.0.1\"]\n[host_meta]\nwebsocket_url = \"wss://gw.example.net/xmpp-websocket\"\n\
         bosh_url = \"https://gw.example.net/http-bind\"\ndomains = [\"example.com\"]\n[domains]\nallow = [\"example.com\"]\n",
    )
    .await;
    let addr = address(&gateway);
    for path in ["/.well-known/host-meta", "/.well-known/host-meta.json"] {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let text = format!(
            "GET {path} HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut raw = String::new();
        tokio::time::timeout(STEP, stream.read_to_string(&mut raw)).await.unwrap().unwrap();
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let (xbosh, websocket) = if path.ends_with(".json") {
            (
                r#"{"href":"https://gw.example.net/http-bind","rel":"urn:xmpp:alt-connections:xbosh"}"#,
                r#""rel":"urn:xmpp:alt-connections:websocket""#,
            )
        } else {
            (
                r#"<Link rel="urn:xmpp:alt-connections:xbosh" href="https://gw.example.net/http-bind"/>"#,
                r#"rel="urn:xmpp:alt-connections:websocket""#,
            )
        };
        assert!(raw.contains(xbosh) && raw.contains(websocket), "{raw}");
    }
}

/// BOSH-18 (connections): a request held longer than the handshake timeout keeps its HTTP/1.1
/// connection (a connection that never upgrades would be cut at that timeout).
#[tokio::test]
async fn a_held_request_outlives_the_handshake_timeout_on_http1() {
    let setup =
        setup_with("[bosh]\nmax_wait_secs = 3\ninactivity_secs = 5\n[limits]\nhandshake_timeout_secs = 1\n").await;
    let (_, mut session, _conn) = create(&setup).await;
    let started = tokio::time::Instant::now();
    let answer = session.send("", "").await.unwrap();
    assert!(is_empty_body(&answer), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(2900), "{:?}", started.elapsed());
}

/// BOSH over HTTP/2 (a `wss://` listener that speaks h2): requests on one connection, a held
/// one outliving the handshake timeout, the server's stanza in the answer.
#[tokio::test]
async fn bosh_runs_over_http2() {
    use axum::body::Body;
    use harness::h2::{addr_of, H2Connection, ListenerCert, HOST};
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let cert = ListenerCert::new(&ca);
    let gateway = TestGateway::start(&format!(
        "[listener]\n{}[limits]\nhandshake_timeout_secs = 1\n[bosh]\nmax_wait_secs = 3\ninactivity_secs = 5\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        cert.toml_lines(),
        server.addr(),
        ca.ca_file().display()
    ))
    .await;
    let mut h2 = H2Connection::connect(addr_of(&gateway.url), &ca).await;
    let post = |body: String| {
        hyper::Request::post(format!("https://{HOST}/http-bind"))
            .header("content-type", "text/xml; charset=utf-8")
            .body(Body::from(body))
            .unwrap()
    };
    async fn text(response: hyper::Response<hyper::body::Incoming>) -> String {
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
    let creating = h2.request(post(format!("<body {NS} rid='7' to='{DOMAIN}' wait='60' hold='1'/>")));
    let (created, mut conn) = tokio::join!(creating, async {
        let mut conn = server.accept().await;
        conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
        conn
    });
    let created = text(created.unwrap()).await;
    assert!(created.contains("<stream:features"), "{created}");
    let start = created.find(" sid=\"").unwrap() + 6;
    let sid = &created[start..start + 32];
    let started = tokio::time::Instant::now();
    let empty = text(h2.request(post(format!("<body {NS} rid='8' sid='{sid}'/>"))).await.unwrap()).await;
    assert!(empty.ends_with("/>") && !empty.contains("type="), "{empty}");
    assert!(started.elapsed() >= Duration::from_millis(2900), "{:?}", started.elapsed());
    conn.write("<message from='a@example.com' id='h2'/>").await;
    let answer = text(h2.request(post(format!("<body {NS} rid='9' sid='{sid}'/>"))).await.unwrap()).await;
    assert!(answer.contains("id='h2'"), "{answer}");
    assert!(h2.is_open());
}
