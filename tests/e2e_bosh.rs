//! End-to-end: the BOSH endpoint (XEP-0124 + XEP-0206) in front of a real Prosody over STARTTLS,
//! driven at the HTTP level the way a BOSH library does it: session creation, SASL PLAIN, the
//! stream restart, resource binding, a message between two BOSH sessions, terminate; and a
//! wrong password. Real browser libraries over BOSH are the interop matrix's cells.
//!
//! Needs the Debian `prosody` package; ignored by a bare `cargo test` (scripts/test.sh runs it).

#![allow(clippy::unwrap_used)]

mod harness;

use base64::Engine;
use harness::bosh_client::{post, Session, NS};
use harness::e2e::{Account, Gateway, Prosody, DOMAIN};

/// Creates a session and authenticates `account` with PLAIN; `Err` with the SASL answer when
/// the server refuses. On success the stream is restarted and a resource bound.
async fn login(addr: &str, account: &Account) -> Result<Session, String> {
    let creation =
        format!("<body {NS} rid='1000' to='{DOMAIN}' wait='5' hold='1' ver='1.6' xml:lang='en' xmpp:version='1.0'/>");
    let created = post(addr, &creation).await;
    let sid = created.attr("sid").unwrap_or_else(|| panic!("no sid: {created:?}"));
    let mut session = Session { addr: addr.to_string(), sid, rid: 1000 };
    let mut features = created.body.clone();
    if !features.contains("<mechanisms") {
        // The features were not there yet: they come in the next answer (XEP-0206 §3).
        features = session.send("", "").await.unwrap().body;
    }
    assert!(features.contains("<mechanism>PLAIN</mechanism>"), "{features}");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", account.user, account.password));
    let auth = format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>");
    let answer = session.send("", &auth).await.unwrap().body;
    if !answer.contains("<success") {
        return Err(answer);
    }
    let restarted = session.send(&format!("to='{DOMAIN}' xml:lang='en' xmpp:restart='true'"), "").await.unwrap().body;
    assert!(restarted.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{restarted}");
    let bind = "<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bosh</resource></bind></iq>";
    let bound = session.send("", bind).await.unwrap().body;
    assert!(bound.contains(&format!("<jid>{}/bosh</jid>", account.jid())), "{bound}");
    Ok(session)
}

#[tokio::test]
#[ignore = "end-to-end: needs prosody; run scripts/test.sh"]
async fn bosh_clients_log_in_chat_and_log_out_through_the_gateway() {
    let prosody = Prosody::start();
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    let gateway = Gateway::start(&Gateway::config_for(&prosody));
    let addr = gateway.listen_addr().to_string();
    let mut alice_session = login(&addr, &alice).await.unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    let mut bob_session = login(&addr, &bob).await.unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    // Bob announces himself and holds a request for what comes to him.
    let presence = bob_session.send("", "<presence xmlns='jabber:client'/>");
    let waiting = bob_session.send("", "");
    let message = format!(
        "<message xmlns='jabber:client' to='{}/bosh' type='chat' id='m1'><body>hello over BOSH</body></message>",
        bob.jid()
    );
    alice_session.send("", &message).await.unwrap();
    let mut received = waiting.await.unwrap().body;
    for _ in 0..5 {
        if received.contains("hello over BOSH") {
            break;
        }
        received = bob_session.send("", "").await.unwrap().body;
    }
    assert!(received.contains("hello over BOSH") && received.contains(&alice.jid()), "{received}");
    assert_eq!(presence.await.unwrap().status, 200);
    let ended =
        alice_session.send("type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>").await.unwrap();
    assert!(ended.body.contains("type=\"terminate\""), "{ended:?}");
    assert!(!ended.body.contains("condition="), "a clean end: {ended:?}");
    let clean = "xmppgw_sessions_ended_total{outcome=\"clean\"}";
    let ended_clean = harness::e2e::poll_until(std::time::Duration::from_secs(10), || gateway.metric(clean) >= 1.0);
    assert!(ended_clean, "alice's session did not end clean\n{}", gateway.log());
    assert_eq!(gateway.metric("xmppgw_bosh_sessions_active"), 1.0, "bob's session is still there");
}

#[tokio::test]
#[ignore = "end-to-end: needs prosody; run scripts/test.sh"]
async fn a_wrong_password_over_bosh_is_refused_by_the_server() {
    let prosody = Prosody::start();
    let mut alice = prosody.register_random("alice");
    alice.password.push_str("-wrong");
    let gateway = Gateway::start(&Gateway::config_for(&prosody));
    let refused = login(gateway.listen_addr(), &alice).await.err().expect("the login fails");
    assert!(refused.contains("<failure") && refused.contains("not-authorized"), "{refused}");
}
