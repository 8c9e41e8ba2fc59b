//! `listener.path = "/"`: a gateway on its own host name serving RFC 7395 at the root. The root
//! is its own trailing-slash spelling (D18), so nothing else is routed to the endpoint; the
//! XEP-0156 documents keep their paths and other paths stay 404.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::fake_server::FakeServer;
use harness::gateway::TestGateway;
use harness::setup::connecting;
use harness::ws_client::{raw_http, upgrade_request};
use harness::xmpp::{CLOSE, DOMAIN, PLAIN_FEATURES as FEATURES};
use harness::TestCa;

#[tokio::test]
async fn the_root_path_serves_sessions_and_host_meta_keeps_its_paths() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&format!(
        "[listener]\npath = \"/\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [host_meta]\nwebsocket_url = \"wss://{DOMAIN}/\"\ndomains = [\"{DOMAIN}\"]\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ))
    .await;
    let host = gateway.url.trim_start_matches("ws://").trim_end_matches('/').to_string();
    assert_eq!(gateway.url, format!("ws://{host}/"));

    // A whole session through the root.
    let (mut client, mut conn) = connecting(&gateway.url, &server).await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.contains("<stream:features"));
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    conn.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
    client.close().await;

    let xmpp = "Sec-WebSocket-Protocol: xmpp\r\n";
    let get =
        |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\n{extra}Connection: close\r\n\r\n");
    // D19 at the root: a person opening the URL learns what it is.
    let (status, body) = raw_http(&host, &get("/", "")).await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("XMPP over WebSocket"), "{body}");
    // No second spelling, no old default path, no prefix match.
    for path in ["//", "/xmpp-websocket", "/xmpp-websocket/", "/anything"] {
        let (status, response) = raw_http(&host, &upgrade_request(&host, path, xmpp)).await;
        assert_eq!(status, 404, "{path}: {response}");
    }
    // host-meta is still host-meta (over HTTPS, as announced by the trusted proxy).
    let https = "X-Forwarded-Proto: https\r\n";
    let (status, xrd) = raw_http(&host, &get("/.well-known/host-meta", https)).await;
    assert_eq!(status, 200, "{xrd}");
    assert!(xrd.contains(&format!("href=\"wss://{DOMAIN}/\"")), "{xrd}");
    let (status, jrd) = raw_http(&host, &get("/.well-known/host-meta.json", https)).await;
    assert_eq!(status, 200, "{jrd}");
    // An upgrade aimed at host-meta's path is not a WebSocket session.
    let (status, response) = raw_http(&host, &upgrade_request(&host, "/.well-known/host-meta", xmpp)).await;
    assert_ne!(status, 101, "{response}");
}
