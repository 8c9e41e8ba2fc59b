//! End-to-end: real browser XMPP libraries (Strophe.js, xmpp.js under Node) talk
//! RFC 7395 to the gateway, which relays to a real Prosody over STARTTLS.
//!
//! The same scenarios also run straight against Prosody's own mod_websocket, so
//! the fixtures and client scripts are proven independently of the gateway, and
//! a difference between the two runs points at the gateway.
//!
//! These tests need the Debian `prosody` package and `npm ci` in tests/e2e/js;
//! they are ignored by a bare `cargo test`. Run them with scripts/test.sh.

mod harness;

use std::time::Duration;

use harness::e2e::{chat_args, run_node, wrong_password_args, Account, Gateway, NodeRun, Prosody, ProsodyOptions};
use harness::proxy::{ProxyKind, ReverseProxy, FORWARDED_CLIENT};

/// Upper bound for one node scenario run; the scripts' own deadline is 20 s.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
/// A wrong password must be refused within this time (no lockout delays).
const WRONG_PASSWORD_BUDGET_MS: f64 = 5000.0;

/// Library scripts: (chat script, wrong-password script).
const STROPHE: (&str, &str) = ("strophe-chat", "strophe-wrong-password");
const XMPPJS: (&str, &str) = ("xmppjs-chat", "xmppjs-wrong-password");

/// Prosody with alice and bob, and the gateway in front of it.
struct Stack {
    gateway: Gateway,
    prosody: Prosody,
    alice: Account,
    bob: Account,
}

impl Stack {
    /// Both servers' logs, for assertion messages.
    fn logs(&self) -> String {
        format!(
            "--- gateway log (tail) ---\n{}\n{}",
            harness::e2e::tail(&self.gateway.log(), 60),
            self.prosody.diagnostics()
        )
    }
}

fn stack() -> Stack {
    let prosody = Prosody::start();
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    let gateway = Gateway::start(&Gateway::config_for(&prosody));
    Stack { gateway, prosody, alice, bob }
}

/// Runs a chat scenario and checks everything it reports.
/// `[a, b]`: A chats to B.
fn assert_chat(
    script: &str,
    url: &str,
    [a, b]: [&Account; 2],
    mechanism: Option<&str>,
    logs: &dyn Fn() -> String,
) -> NodeRun {
    let body = format!("héllo <&> from {script} via {url}");
    let run = run_node(script, &chat_args(url, a, b, mechanism, &body), &[], NODE_TIMEOUT);
    let why = format!("{}\n{}", run.describe(), logs());
    assert!(run.status.success(), "{script} failed\n{why}");
    assert_eq!(run.at("/ok"), true, "{why}");
    assert_eq!(run.at("/a/login_ok"), true, "{why}");
    assert_eq!(run.at("/b/login_ok"), true, "{why}");
    let expected_mechanism = mechanism.unwrap_or("SCRAM-SHA-1");
    assert_eq!(run.at("/a/mechanism"), expected_mechanism, "{why}");
    assert_eq!(run.at("/b/mechanism"), expected_mechanism, "{why}");
    assert_eq!(run.at("/a/jid"), format!("{}/a", a.jid()).as_str(), "{why}");
    assert_eq!(run.at("/roster/result_received"), true, "{why}");
    assert_eq!(run.at("/roster/set_ok"), true, "{why}");
    assert_eq!(run.at("/roster/items"), 1, "A's roster must hold exactly B\n{why}");
    assert_eq!(run.at("/roster/contains_b"), true, "{why}");
    assert_eq!(run.at("/message/received"), true, "{why}");
    assert_eq!(run.at("/message/body_received"), body.as_str(), "{why}");
    assert_eq!(run.at("/message/receipt_requested"), true, "{why}");
    assert_eq!(run.at("/message/from"), format!("{}/a", a.jid()).as_str(), "{why}");
    let msg_id = run.at("/message/id").as_str().expect("message id").to_owned();
    assert_eq!(run.at("/message/id_received"), msg_id.as_str(), "{why}");
    assert_eq!(run.at("/receipt/received"), true, "{why}");
    assert_eq!(run.at("/receipt/id"), msg_id.as_str(), "{why}");
    assert_eq!(run.at("/receipt/from"), format!("{}/b", b.jid()).as_str(), "{why}");
    for side in ["a", "b"] {
        assert_eq!(run.at(&format!("/disconnect/{side}/server_close_seen")), true, "{side}: {why}");
        assert_eq!(run.at(&format!("/disconnect/{side}/clean")), true, "{side}: {why}");
    }
    run
}

/// Runs a wrong-password scenario and checks the SASL condition and its speed.
fn assert_wrong_password(script: &str, url: &str, account: &Account, logs: &dyn Fn() -> String) -> NodeRun {
    let bad = format!("{}-wrong", account.password);
    let run = run_node(script, &wrong_password_args(url, &account.user, &bad, None), &[], NODE_TIMEOUT);
    let why = format!("{}\n{}", run.describe(), logs());
    assert!(run.status.success(), "{script} failed\n{why}");
    assert_eq!(run.at("/login_ok"), false, "{why}");
    assert_eq!(run.at("/condition"), "not-authorized", "{why}");
    let elapsed = run.at("/elapsed_ms").as_f64().expect("elapsed_ms");
    assert!(elapsed < WRONG_PASSWORD_BUDGET_MS, "refusal took {elapsed} ms\n{why}");
    run
}

/// Checks Prosody saw the gateway's session upgraded with STARTTLS.
fn assert_prosody_saw_starttls(stack: &Stack) {
    assert!(
        stack.prosody.log().contains("TLS negotiation started for c2s_unauthed"),
        "Prosody never saw STARTTLS from the gateway\n{}\n--- gateway log ---\n{}",
        stack.prosody.diagnostics(),
        stack.gateway.log()
    );
}

// --- Through the gateway -----------------------------------------------------

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn strophe_chat_through_gateway() {
    let s = stack();
    assert_chat(STROPHE.0, s.gateway.url(), [&s.alice, &s.bob], None, &|| s.logs());
    assert_prosody_saw_starttls(&s);
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn strophe_chat_with_plain_through_gateway() {
    let s = stack();
    assert_chat(STROPHE.0, s.gateway.url(), [&s.alice, &s.bob], Some("PLAIN"), &|| s.logs());
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn strophe_wrong_password_through_gateway() {
    let s = stack();
    assert_wrong_password(STROPHE.1, s.gateway.url(), &s.alice, &|| s.logs());
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn xmppjs_chat_through_gateway() {
    let s = stack();
    assert_chat(XMPPJS.0, s.gateway.url(), [&s.alice, &s.bob], None, &|| s.logs());
    assert_prosody_saw_starttls(&s);
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn xmppjs_chat_with_plain_through_gateway() {
    let s = stack();
    assert_chat(XMPPJS.0, s.gateway.url(), [&s.alice, &s.bob], Some("PLAIN"), &|| s.logs());
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn xmppjs_wrong_password_through_gateway() {
    let s = stack();
    assert_wrong_password(XMPPJS.1, s.gateway.url(), &s.alice, &|| s.logs());
}

// --- Through a real nginx with deploy's configuration ---------------------------

/// Both chat scenarios through nginx (deploy/nginx/xmpp-websocket.location.conf, included
/// as is) and the gateway, which trusts nginx on 127.0.0.1. Every session must be logged with
/// the client address nginx forwarded, never with nginx's own.
#[test]
#[ignore = "end-to-end: needs prosody, nginx and node; run scripts/test.sh"]
fn chat_through_nginx_logs_the_forwarded_client_address() {
    let prosody = Prosody::start();
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    let gateway = Gateway::start(&Gateway::config_behind_proxy(&prosody));
    let nginx = ReverseProxy::start(ProxyKind::Nginx, gateway.listen_addr());
    let url = nginx.outer_url().expect("nginx has an outer hop");
    let logs = || {
        format!(
            "--- gateway log (tail) ---\n{}\n{}\n{}",
            harness::e2e::tail(&gateway.log(), 60),
            nginx.diagnostics(),
            prosody.diagnostics()
        )
    };
    assert_chat(STROPHE.0, &url, [&alice, &bob], None, &logs);
    assert_chat(XMPPJS.0, &url, [&alice, &bob], None, &logs);

    // Two sessions (A and B) per scenario; each logs "session ended" inside its span
    // `session{id=N client=ADDRESS}`: the forwarded address, without a port (nginx's source
    // port would be made up).
    let ended = |line: &String| line.contains("session{") && line.contains("session ended");
    let all_ended = harness::e2e::poll_until(Duration::from_secs(10), || {
        gateway.log_lines().iter().filter(|l| ended(l)).count() >= 4
    });
    assert!(all_ended, "expected 4 ended sessions\n{}", logs());
    let session_lines: Vec<String> = gateway.log_lines().into_iter().filter(|line| line.contains("session{")).collect();
    let forwarded = format!("client={FORWARDED_CLIENT}}}");
    for line in &session_lines {
        assert!(line.contains(&forwarded), "session logged without the forwarded client address: {line}\n{}", logs());
        assert!(!line.contains("client=127.0.0.1"), "nginx's address logged as the client: {line}");
    }
    assert!(session_lines.iter().filter(|l| ended(l)).all(|l| l.contains("outcome=\"clean\"")), "{}", logs());
    println!("through nginx: {}", session_lines.iter().find(|l| ended(l)).map(String::as_str).unwrap_or_default());
}

// --- Straight against Prosody's mod_websocket (baseline, no gateway) ---------

fn prosody_with_websocket() -> (Prosody, String, Account, Account) {
    let prosody = Prosody::start_with(ProsodyOptions { websocket: true, ..ProsodyOptions::default() });
    let url = prosody.websocket_url().expect("websocket enabled");
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    (prosody, url, alice, bob)
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn strophe_scenarios_against_prosody_websocket() {
    let (prosody, url, alice, bob) = prosody_with_websocket();
    assert_chat(STROPHE.0, &url, [&alice, &bob], None, &|| prosody.diagnostics());
    assert_chat(STROPHE.0, &url, [&alice, &bob], Some("PLAIN"), &|| prosody.diagnostics());
    assert_wrong_password(STROPHE.1, &url, &alice, &|| prosody.diagnostics());
    // The fixture's log is real and readable: the logins went through mod_websocket.
    assert!(prosody.log().contains("mod_websocket"), "{}", prosody.diagnostics());
}

#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn xmppjs_scenarios_against_prosody_websocket() {
    let (prosody, url, alice, bob) = prosody_with_websocket();
    assert_chat(XMPPJS.0, &url, [&alice, &bob], None, &|| prosody.diagnostics());
    assert_chat(XMPPJS.0, &url, [&alice, &bob], Some("PLAIN"), &|| prosody.diagnostics());
    assert_wrong_password(XMPPJS.1, &url, &alice, &|| prosody.diagnostics());
    assert!(prosody.log().contains("mod_websocket"), "{}", prosody.diagnostics());
}

/// The fixture itself: Prosody requires STARTTLS before anything else, with a
/// certificate for e2e.test from the test CA. Proven with a raw TCP exchange.
#[test]
#[ignore = "end-to-end: needs prosody; run scripts/test.sh"]
fn prosody_fixture_requires_starttls() {
    use std::io::{Read, Write};
    let prosody = Prosody::start();
    let mut tcp = std::net::TcpStream::connect(prosody.c2s_addr()).expect("connect c2s");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(
        tcp,
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>",
        prosody.domain()
    )
    .expect("write header");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // Bounded: at most 20 reads, each with a 5 s timeout.
    for _ in 0..20 {
        if seen.contains("</stream:features>") {
            break;
        }
        let n = tcp.read(&mut buf).expect("read features");
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"), "{seen}");
    assert!(!seen.contains("<mechanisms"), "SASL must not be offered before TLS: {seen}");
}

/// Issue 4: the gateway finds Prosody only through SRV records served by a real DNS server on
/// loopback. The certificate is for the domain; the SRV target is another host name, which the
/// certificate does not name, so the chat only works if the gateway verifies against the domain.
#[test]
#[ignore = "end-to-end: needs prosody and node; run scripts/test.sh"]
fn xmppjs_chat_through_gateway_that_finds_prosody_by_srv() {
    use harness::dns::TestDns;
    use hickory_server::proto::rr::RecordType;

    let prosody = Prosody::start();
    let alice = prosody.register_random("alice");
    let bob = prosody.register_random("bob");
    let runtime = tokio::runtime::Runtime::new().expect("runtime for the DNS server");
    let dns = runtime.block_on(TestDns::start());
    let domain = prosody.domain();
    let target = format!("xmpp-node-1.{domain}");
    dns.srv(&format!("_xmpp-client._tcp.{domain}"), &[(0, 0, prosody.c2s_addr().port(), &target)]);
    dns.a(&target, &[std::net::Ipv4Addr::LOCALHOST]);
    // No static [[upstream]]: the domain is allowed and discovered. Its server is on loopback,
    // which the address guard refuses unless the domain is listed in special_addresses.
    let config = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\nallow_missing_origin = true\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\
         [domains]\nallow = [\"{domain}\"]\nspecial_addresses = [\"{domain}\"]\nca_file = \"{ca}\"\n\
         [dns]\nnameservers = [\"{ns}\"]\n",
        ca = prosody.ca_pem_path().display(),
        ns = dns.nameserver(),
    );
    let gateway = Gateway::start(&config);
    let logs = || format!("--- gateway log ---\n{}\n{}", harness::e2e::tail(&gateway.log(), 40), prosody.diagnostics());
    assert_chat(XMPPJS.0, gateway.url(), [&alice, &bob], None, &logs);
    assert!(dns.count(&format!("_xmpp-client._tcp.{domain}"), RecordType::SRV) >= 1, "{:?}", dns.queries());
    assert!(dns.count(&target, RecordType::A) >= 1, "the SRV target was not resolved: {:?}", dns.queries());
}
