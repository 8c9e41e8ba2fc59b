//! End-to-end closing behaviour against a real Prosody (STARTTLS required) through the gateway:
//! the server sees the session end when a client vanishes without `<close/>` (CL-4), and a
//! client gets the server's stream error and `<close/>` when the server ends the stream (ERR-1).
//!
//! Needs the Debian `prosody` package; ignored by a bare `cargo test` (scripts/test.sh runs it).

#![allow(clippy::unwrap_used)]

mod harness;

use harness::e2e::{Account, Gateway, Prosody};
use harness::ws_client::WsClient;
use harness::xmpp::CLOSE;

/// Logs `account` in through the gateway with SASL PLAIN, binds `resource` and sends initial
/// presence; returns the client with its full JID.
async fn login(url: &str, domain: &str, account: &Account, resource: &str) -> (WsClient, String) {
    let mut client = WsClient::connect(url).await;
    let jid = client.login_plain(domain, &account.user, &account.password, resource).await;
    client.send(r#"<presence xmlns="jabber:client"/>"#).await;
    (client, jid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody; run scripts/test.sh"]
async fn cl_4_prosody_sees_the_session_end_when_the_client_vanishes() {
    let prosody = tokio::task::block_in_place(Prosody::start);
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    let gateway = tokio::task::block_in_place(|| Gateway::start(&Gateway::config_for(&prosody)));
    let domain = prosody.domain().to_string();

    let (mut bob_client, bob_jid) = login(gateway.url(), &domain, &bob, "watch").await;
    let (mut alice_client, alice_jid) = login(gateway.url(), &domain, &alice, "gone").await;
    // Directed presence: Prosody must tell bob when alice's session ends (RFC 6121 §4.6.3).
    alice_client.send(&format!(r#"<presence xmlns="jabber:client" to="{bob_jid}"/>"#)).await;
    let directed = bob_client.wait_for(&alice_jid).await;
    assert!(directed.starts_with("<presence") && !directed.contains("unavailable"), "{directed}");

    // Alice's WebSocket vanishes: no <close/>, no WebSocket Close, just the TCP connection gone.
    alice_client.vanish();
    let unavailable = bob_client.wait_for("unavailable").await;
    assert!(unavailable.contains(&alice_jid), "{unavailable}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody; run scripts/test.sh"]
async fn err_1_prosody_ending_the_stream_reaches_the_client_as_error_then_close() {
    let prosody = tokio::task::block_in_place(Prosody::start);
    let alice = prosody.register_random("alice");
    let gateway = tokio::task::block_in_place(|| Gateway::start(&Gateway::config_for(&prosody)));
    let domain = prosody.domain().to_string();

    let (mut first, _) = login(gateway.url(), &domain, &alice, "same").await;
    // The same full JID logs in again: Prosody replaces the old session with a <conflict/>.
    let (_second, _) = login(gateway.url(), &domain, &alice, "same").await;
    let error = first.wait_for("<stream:error").await;
    assert!(error.contains("<conflict"), "{error}");
    assert!(error.contains(r#"xmlns:stream="http://etherx.jabber.org/streams""#), "{error}");
    assert_eq!(first.recv_text().await, CLOSE);
    first.send(CLOSE).await;
    assert_eq!(first.expect_close().await.0, 1000);
}
