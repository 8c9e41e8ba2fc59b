//! The common arrangement of the wire tests: a test CA, a fake server for [`DOMAIN`] with a leaf
//! of that CA, and an in-process gateway whose static STARTTLS upstream it is; and a session
//! opened through it.

use super::fake_server::{FakeServer, ServerConn};
use super::gateway::TestGateway;
use super::raw_ws::RawWs;
use super::ws_client::WsClient;
use super::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES};
use super::TestCa;

/// A fake server for [`DOMAIN`] and a gateway in front of it.
pub struct Setup {
    /// The CA the server's certificate comes from (kept alive for its files).
    pub ca: TestCa,
    /// The upstream.
    pub server: FakeServer,
    /// The gateway.
    pub gateway: TestGateway,
}

/// [`setup_with`] without extra settings.
pub async fn setup() -> Setup {
    setup_with("").await
}

/// A fake server for [`DOMAIN`] and a gateway whose static upstream it is; `extra` is TOML placed
/// before the upstream table (e.g. a `[limits]` section).
pub async fn setup_with(extra: &str) -> Setup {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&upstream_toml(&server, &ca, extra)).await;
    Setup { ca, server, gateway }
}

/// `extra`, then an `[[upstream]]` table for [`DOMAIN`] at `server` (STARTTLS, trusting `ca`).
pub fn upstream_toml(server: &FakeServer, ca: &TestCa, extra: &str) -> String {
    format!(
        "{extra}\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    )
}

/// A session through STARTTLS: the client has its `<open/>` and the [`PLAIN_FEATURES`].
pub async fn opened(setup: &Setup) -> (WsClient, ServerConn) {
    open_session(&setup.gateway.url, &setup.server, PLAIN_FEATURES).await
}

/// A client that has sent its `<open/>` to the gateway at `url`, and `server`'s side of the
/// connection the gateway then made; nothing negotiated yet.
pub async fn connecting(url: &str, server: &FakeServer) -> (WsClient, ServerConn) {
    let mut client = WsClient::connect(url).await;
    client.send(OPEN).await;
    (client, server.accept().await)
}

/// A session through the gateway at `url` to `server`, which offers `features` after STARTTLS:
/// the client has its `<open/>` and the features.
pub async fn open_session(url: &str, server: &FakeServer, features: &str) -> (WsClient, ServerConn) {
    let (mut client, mut conn) = connecting(url, server).await;
    conn.open_with_starttls(DOMAIN, features).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features"));
    (client, conn)
}

/// [`opened`] with the frame-level client.
pub async fn opened_raw(setup: &Setup) -> (RawWs, ServerConn) {
    let mut client = RawWs::connect(&setup.gateway.url).await;
    client.send_text(OPEN).await;
    let mut conn = setup.server.accept().await;
    conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features "));
    (client, conn)
}

/// One message each way on an open session, then a clean close from the client: the server
/// answers `</stream:stream>` and the client gets `<close/>` (its WebSocket close is the caller's).
pub async fn exchange_and_close(client: &mut WsClient, conn: &mut ServerConn) {
    client.send(r#"<message xmlns="jabber:client" to="a@example.com"><body>x</body></message>"#).await;
    conn.read_until("</message>").await;
    conn.write("<message to='b@example.com'><body>y</body></message>").await;
    client.recv_text().await;
    client.send(CLOSE).await;
    conn.read_until("</stream:stream>").await;
    conn.write("</stream:stream>").await;
    assert_eq!(client.recv_text().await, CLOSE);
}
