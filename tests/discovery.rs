//! Finding and securing the server through a real DNS server on loopback: TV-110..TV-120, the
//! certificate matrix of CONFORMANCE 3.10, the SSRF guard on live answers, caching and TLS
//! session resumption.
//!
//! Every address in these tests is a loopback address (127.0.0.x, ::1). Live answers point at
//! them, which the guard refuses unless the domain is listed in `[domains] special_addresses`
//! (the test domains are, except `guarded.example.com`). Private, link-local and other ranges
//! are covered by the guard's unit tests, so no packet ever leaves loopback.

mod harness;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::rr::RecordType;

use harness::certs::self_signed_leaf;
use harness::dns::{DnsAnswer, TestDns};
use harness::fake_server::{FakeServer, ServerConn};
use harness::gateway::TestGateway;
use harness::ws_client::WsClient;
use harness::xmpp::{CLOSE, DOMAIN, PLAIN_FEATURES as FEATURES};
use harness::{Leaf, TestCa};

const XMPP: &str = "_xmpp-client._tcp.example.com";
const XMPPS: &str = "_xmpps-client._tcp.example.com";
/// Long enough to be sure a connection is not coming.
const QUIET: Duration = Duration::from_millis(500);

fn open_to(to: &str) -> String {
    format!(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{to}" version="1.0" xml:lang="en"/>"#)
}

fn ip4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

struct Env {
    ca: TestCa,
    dns: TestDns,
}

impl Env {
    async fn new() -> Env {
        Env { ca: TestCa::new(), dns: TestDns::start().await }
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_ms = 300\nattempts = 1\n\n\
             [domains]\nallow = [\"example.com\", \"*.example.com\", \"bücher.example\"]\n\
             special_addresses = [\"example.com\", \"chat.example.com\", \"bücher.example\"]\n\
             ca_file = \"{}\"\n\n[connect]\nattempt_timeout_secs = 5\noverall_timeout_secs = 10\n{extra}",
            self.dns.nameserver(),
            self.ca.ca_file().display()
        )
    }

    async fn gateway(&self) -> TestGateway {
        TestGateway::start(&self.config("")).await
    }

    /// A fake server on `127.0.0.last` with a certificate for `names`, and its port.
    async fn server(&self, last: u8, names: &[&str]) -> (FakeServer, u16) {
        self.server_with(last, self.ca.leaf(names)).await
    }

    async fn server_with(&self, last: u8, leaf: Leaf) -> (FakeServer, u16) {
        let server = FakeServer::start_on(&format!("{}:0", ip4(last)), leaf).await;
        let port = server.addr().port();
        (server, port)
    }
}

/// A port on `127.0.0.last` where nothing listens.
async fn dead_port(last: u8) -> u16 {
    let listener = tokio::net::TcpListener::bind((ip4(last), 0)).await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The gateway's refusal before any stream: `<open/>`, `<stream:error>`, `<close/>`, then the
/// WebSocket close. Returns the error element and the close reason (the D6 class).
async fn expect_refusal(client: &mut WsClient) -> (String, String) {
    let open = client.recv_text().await;
    assert!(open.starts_with("<open "), "{open}");
    let error = client.recv_text().await;
    assert_eq!(client.recv_text().await, CLOSE);
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1000);
    (error, reason)
}

/// Completes a STARTTLS opening on `conn` and checks the client got the server's `<open/>`.
async fn finish_starttls(client: &mut WsClient, conn: &mut ServerConn, domain: &str) {
    let header = conn.open_with_starttls(domain, FEATURES).await;
    assert!(header.contains(&format!("to='{domain}'")), "{header}");
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains(&format!("from=\"{domain}\"")), "{open}");
    assert!(client.recv_text().await.starts_with("<stream:features"));
}

/// Completes a direct-TLS opening (TLS already up on `conn`).
async fn finish_direct(client: &mut WsClient, conn: &mut ServerConn, domain: &str) {
    let header = conn.read_stream_header().await;
    assert!(header.contains(&format!("to='{domain}'")), "{header}");
    conn.write(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='D-1' from='{domain}' version='1.0' xml:lang='en'>{FEATURES}"
    ))
    .await;
    let open = client.recv_text().await;
    assert!(open.starts_with("<open ") && open.contains("id=\"D-1\""), "{open}");
    assert!(client.recv_text().await.starts_with("<stream:features"));
    let plaintext = String::from_utf8_lossy(&conn.plaintext_received).into_owned();
    assert!(plaintext.is_empty(), "bytes before direct TLS: {plaintext}");
    assert!(!String::from_utf8_lossy(&conn.tls_received).contains("<starttls"));
}

async fn connect(gateway: &TestGateway, to: &str) -> WsClient {
    let mut client = WsClient::connect(&gateway.url).await;
    client.send(&open_to(to)).await;
    client
}

#[tokio::test]
async fn tv_110_lowest_priority_down_next_one_up_no_fallback() {
    let env = Env::new().await;
    let dead = dead_port(2).await;
    let (b, b_port) = env.server(3, &[DOMAIN]).await;
    env.dns.srv(XMPP, &[(10, 0, dead, "a.example.com"), (20, 0, b_port, "b.example.com")]);
    env.dns.a("a.example.com", &[ip4(2)]);
    env.dns.a("b.example.com", &[ip4(3)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = b.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
    assert_eq!(env.dns.count("example.com", RecordType::A), 0, "never A(example.com)");
    assert!(env.dns.count("a.example.com", RecordType::A) >= 1, "a was tried first");
}

#[tokio::test]
async fn tv_112_lone_dot_means_no_connection_at_all() {
    let env = Env::new().await;
    env.dns.srv(XMPP, &[(0, 0, 0, ".")]);
    env.dns.a(DOMAIN, &[ip4(112)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let (error, reason) = expect_refusal(&mut client).await;
    assert!(error.contains("<remote-connection-failed"), "{error}");
    assert_eq!(reason, "srv-decidedly-unavailable");
    assert_eq!(env.dns.count(DOMAIN, RecordType::A), 0, "no A/AAAA fallback");
    assert_eq!(env.dns.count(DOMAIN, RecordType::AAAA), 0, "no A/AAAA fallback");
    assert!(gateway
        .metrics()
        .contains("xmppgw_upstream_connect_failures_total{class=\"srv-decidedly-unavailable\"} 1"));
}

#[tokio::test]
async fn tv_113_no_srv_falls_back_to_the_domain_on_5222_with_starttls() {
    let env = Env::new().await;
    // The fallback port is fixed (5222); use an address of our own on loopback.
    let Some(server) = FakeServer::try_start_on(&format!("{}:5222", ip4(113)), env.ca.leaf(&[DOMAIN])).await else {
        eprintln!("skipped: 127.0.0.113:5222 is taken on this machine");
        return;
    };
    env.dns.a(DOMAIN, &[ip4(113)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = server.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
    assert_eq!(env.dns.count(XMPP, RecordType::SRV), 1);
    assert_eq!(env.dns.count(XMPPS, RecordType::SRV), 1);
    let metrics = gateway.metrics();
    assert!(metrics.contains("xmppgw_dns_lookups_total{result=\"nxdomain\"} 2"), "{metrics}");
    assert!(metrics.contains("xmppgw_upstream_connect_duration_seconds_count{phase=\"dns\"}"), "{metrics}");
}

#[tokio::test]
async fn tv_114_srv_target_down_means_failure_not_fallback() {
    let env = Env::new().await;
    let dead = dead_port(114).await;
    env.dns.srv(XMPP, &[(0, 0, dead, "dead.example.com")]);
    env.dns.a("dead.example.com", &[ip4(114)]);
    env.dns.a(DOMAIN, &[ip4(115)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let (error, reason) = expect_refusal(&mut client).await;
    assert!(error.contains("<remote-connection-failed") && error.contains("connect-refused"), "{error}");
    assert_eq!(reason, "connect-refused");
    assert_eq!(env.dns.count(DOMAIN, RecordType::A), 0, "no fallback after an SRV answer");
}

#[tokio::test]
async fn tv_115_xmpps_only_direct_tls_with_sni_and_alpn() {
    let env = Env::new().await;
    let (x, port) = env.server(15, &[DOMAIN]).await;
    env.dns.srv(XMPPS, &[(0, 0, port, "x.example.com")]);
    env.dns.a("x.example.com", &[ip4(15)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = x.accept_direct_tls().await;
    let seen = conn.tls_seen().expect("TLS");
    assert_eq!(seen.sni.as_deref(), Some(DOMAIN));
    assert_eq!(seen.alpn.as_deref(), Some(&b"xmpp-client"[..]));
    finish_direct(&mut client, &mut conn, DOMAIN).await;
}

#[tokio::test]
async fn tv_116_mixed_priorities_direct_tls_first() {
    let env = Env::new().await;
    let (h1, h1_port) = env.server(16, &[DOMAIN]).await;
    let (h2, h2_port) = env.server(17, &[DOMAIN]).await;
    env.dns.srv(XMPP, &[(10, 0, h1_port, "h1.example.com")]);
    env.dns.srv(XMPPS, &[(5, 0, h2_port, "h2.example.com")]);
    env.dns.a("h1.example.com", &[ip4(16)]);
    env.dns.a("h2.example.com", &[ip4(17)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = h2.accept_direct_tls().await;
    finish_direct(&mut client, &mut conn, DOMAIN).await;
    assert!(h1.try_accept(QUIET).await.is_none(), "h1 must not be tried");
}

#[tokio::test]
async fn tv_116_prefer_starttls_switch() {
    let env = Env::new().await;
    let (h1, h1_port) = env.server(18, &[DOMAIN]).await;
    let (_h2, h2_port) = env.server(19, &[DOMAIN]).await;
    env.dns.srv(XMPP, &[(10, 0, h1_port, "h1.example.com")]);
    env.dns.srv(XMPPS, &[(5, 0, h2_port, "h2.example.com")]);
    env.dns.a("h1.example.com", &[ip4(18)]);
    env.dns.a("h2.example.com", &[ip4(19)]);
    let config = env.config("").replace("[dns]\n", "[dns]\nprefer = \"starttls\"\n");
    let gateway = TestGateway::start(&config).await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = h1.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
}

#[tokio::test]
async fn tv_117a_xmpps_dot_uses_xmpp_client() {
    let env = Env::new().await;
    let (h1, port) = env.server(20, &[DOMAIN]).await;
    env.dns.srv(XMPPS, &[(0, 0, 0, ".")]);
    env.dns.srv(XMPP, &[(0, 0, port, "h1.example.com")]);
    env.dns.a("h1.example.com", &[ip4(20)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = h1.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
}

#[tokio::test]
async fn tv_117b_xmpps_dot_without_xmpp_client_fails_without_fallback() {
    let env = Env::new().await;
    env.dns.srv(XMPPS, &[(0, 0, 0, ".")]);
    env.dns.a(DOMAIN, &[ip4(21)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let (_, reason) = expect_refusal(&mut client).await;
    assert_eq!(reason, "srv-decidedly-unavailable");
    assert_eq!(env.dns.count(DOMAIN, RecordType::A), 0);
}

async fn tv_118_with(xmpps: DnsAnswer, last: u8) {
    let env = Env::new().await;
    let (h1, port) = env.server(last, &[DOMAIN]).await;
    env.dns.set(XMPPS, RecordType::SRV, xmpps);
    env.dns.srv(XMPP, &[(0, 0, port, "h1.example.com")]);
    env.dns.a("h1.example.com", &[ip4(last)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = h1.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
}

#[tokio::test]
async fn tv_118_xmpps_servfail_does_not_block_xmpp_client() {
    tv_118_with(DnsAnswer::ServFail, 22).await;
}

#[tokio::test]
async fn tv_118_xmpps_timeout_does_not_block_xmpp_client() {
    tv_118_with(DnsAnswer::Silence, 23).await;
}

#[tokio::test]
async fn tv_119_every_address_of_a_target_before_the_next_target() {
    let env = Env::new().await;
    let (h, port) = env.server(119, &[DOMAIN]).await;
    let (other, other_port) = env.server(24, &[DOMAIN]).await;
    // ::1 on the same port has no listener: refused; then 127.0.0.119 answers.
    env.dns.srv(XMPP, &[(0, 0, port, "h.example.com"), (10, 0, other_port, "other.example.com")]);
    env.dns.aaaa("h.example.com", &[Ipv6Addr::LOCALHOST]);
    env.dns.a("h.example.com", &[ip4(119)]);
    env.dns.a("other.example.com", &[ip4(24)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut conn = h.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
    assert!(other.try_accept(QUIET).await.is_none(), "the next target must not be tried");
    assert_eq!(env.dns.count("h.example.com", RecordType::AAAA), 1);
}

#[tokio::test]
async fn tv_120_trailing_dot_in_to() {
    let env = Env::new().await;
    let (x, port) = env.server(25, &[DOMAIN]).await;
    env.dns.srv(XMPPS, &[(0, 0, port, "x.example.com")]);
    env.dns.a("x.example.com", &[ip4(25)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, "example.com.").await;
    let mut conn = x.accept_direct_tls().await;
    assert_eq!(conn.tls_seen().expect("TLS").sni.as_deref(), Some(DOMAIN));
    finish_direct(&mut client, &mut conn, DOMAIN).await;
    assert_eq!(env.dns.count(XMPP, RecordType::SRV), 1, "{:?}", env.dns.queries());
    assert!(env.dns.queries().iter().all(|(name, _)| !name.contains("..")), "{:?}", env.dns.queries());
}

// ---- certificate matrix (domain example.com, SRV target xmpp.example.com) ----

/// Serves one direct-TLS SRV target with `leaf` for `domain`; returns whether the gateway
/// accepted the certificate and, when not, the close reason.
async fn certificate_case(env: &Env, domain: &str, last: u8, leaf: Leaf) -> Result<(), String> {
    let (server, port) = env.server_with(last, leaf).await;
    env.dns.srv(&format!("_xmpps-client._tcp.{domain}"), &[(0, 0, port, "xmpp.example.com")]);
    env.dns.a("xmpp.example.com", &[ip4(last)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, domain).await;
    let mut conn = server.accept().await;
    if conn.try_upgrade_tls().await {
        finish_direct(&mut client, &mut conn, domain).await;
        Ok(())
    } else {
        let (error, reason) = expect_refusal(&mut client).await;
        assert!(error.contains("<remote-connection-failed"), "{error}");
        Err(reason)
    }
}

#[tokio::test]
async fn cert_san_domain_is_accepted() {
    let env = Env::new().await;
    assert_eq!(certificate_case(&env, DOMAIN, 30, env.ca.leaf(&[DOMAIN])).await, Ok(()));
}

#[tokio::test]
async fn cert_for_the_srv_target_only_is_rejected() {
    let env = Env::new().await;
    let leaf = env.ca.leaf(&["xmpp.example.com"]);
    assert_eq!(certificate_case(&env, DOMAIN, 31, leaf).await, Err("tls-cert-name-mismatch".into()));
}

#[tokio::test]
async fn cert_wildcard_does_not_match_the_bare_domain() {
    let env = Env::new().await;
    let leaf = env.ca.leaf(&["*.example.com"]);
    assert_eq!(certificate_case(&env, DOMAIN, 32, leaf).await, Err("tls-cert-name-mismatch".into()));
}

#[tokio::test]
async fn cert_wildcard_matches_a_subdomain() {
    let env = Env::new().await;
    let leaf = env.ca.leaf(&["*.example.com"]);
    assert_eq!(certificate_case(&env, "chat.example.com", 33, leaf).await, Ok(()));
}

#[tokio::test]
async fn cert_expired_is_rejected() {
    let env = Env::new().await;
    let leaf = env.ca.expired_leaf(&[DOMAIN]);
    assert_eq!(certificate_case(&env, DOMAIN, 34, leaf).await, Err("tls-cert-expired".into()));
}

#[tokio::test]
async fn cert_from_an_untrusted_ca_is_rejected() {
    let env = Env::new().await;
    let leaf = TestCa::new().leaf(&[DOMAIN]);
    assert_eq!(certificate_case(&env, DOMAIN, 35, leaf).await, Err("tls-cert-untrusted".into()));
}

#[tokio::test]
async fn cert_self_signed_is_rejected() {
    let env = Env::new().await;
    assert_eq!(certificate_case(&env, DOMAIN, 36, self_signed_leaf(&[DOMAIN])).await, Err("tls-cert-untrusted".into()));
}

/// CERT-3: only DNS-IDs are supported (WebPKI); an XmppAddr-only certificate is rejected, as
/// docs/DISCOVERY.md says.
#[tokio::test]
async fn cert_xmpp_addr_only_is_rejected_as_documented() {
    let env = Env::new().await;
    let leaf = env.ca.xmpp_addr_only_leaf(DOMAIN);
    assert_eq!(certificate_case(&env, DOMAIN, 37, leaf).await, Err("tls-cert-name-mismatch".into()));
}

#[tokio::test]
async fn certificate_failure_moves_to_the_next_target_never_downgrades() {
    let env = Env::new().await;
    let (bad, bad_port) = env.server_with(38, env.ca.leaf(&["xmpp.example.com"])).await;
    let (good, good_port) = env.server(39, &[DOMAIN]).await;
    env.dns.srv(XMPPS, &[(0, 0, bad_port, "bad.example.com")]);
    env.dns.srv(XMPP, &[(10, 0, good_port, "good.example.com")]);
    env.dns.a("bad.example.com", &[ip4(38)]);
    env.dns.a("good.example.com", &[ip4(39)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, DOMAIN).await;
    let mut first = bad.accept().await;
    assert!(!first.try_upgrade_tls().await, "the wrong certificate must be refused");
    let mut conn = good.accept().await;
    finish_starttls(&mut client, &mut conn, DOMAIN).await;
}

// ---- the guard on live answers ----

#[tokio::test]
async fn loopback_answers_are_refused_for_a_domain_not_explicitly_trusted() {
    let env = Env::new().await;
    let (server, port) = env.server(40, &["guarded.example.com"]).await;
    env.dns.srv("_xmpp-client._tcp.guarded.example.com", &[(0, 0, port, "h.guarded.example.com")]);
    env.dns.a("h.guarded.example.com", &[ip4(40)]);
    env.dns.aaaa("h.guarded.example.com", &[Ipv6Addr::LOCALHOST]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, "guarded.example.com").await;
    let (error, reason) = expect_refusal(&mut client).await;
    assert!(error.contains("address-refused"), "{error}");
    assert_eq!(reason, "address-refused");
    assert!(server.try_accept(QUIET).await.is_none(), "no connection to a refused address");
    assert!(gateway.metrics().contains("xmppgw_upstream_connect_failures_total{class=\"address-refused\"} 1"));
}

#[tokio::test]
async fn fallback_to_a_loopback_a_record_is_refused_too() {
    let env = Env::new().await;
    env.dns.a("fallback.example.com", &[ip4(41)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, "fallback.example.com").await;
    let (_, reason) = expect_refusal(&mut client).await;
    assert_eq!(reason, "address-refused");
}

#[tokio::test]
async fn a_domain_outside_the_allowlist_is_host_unknown_without_any_dns() {
    let env = Env::new().await;
    let gateway = env.gateway().await;
    for to in ["other.example", "example.com.evil", "127.0.0.1", "[::1]"] {
        let mut client = connect(&gateway, to).await;
        let (error, _) = expect_refusal(&mut client).await;
        assert!(error.contains("<host-unknown"), "{to}: {error}");
    }
    assert!(env.dns.queries().is_empty(), "{:?}", env.dns.queries());
    assert!(gateway.metrics().contains("xmppgw_upstream_connect_failures_total{class=\"domain-not-allowed\"} 2"));
}

#[tokio::test]
async fn nxdomain_everywhere_is_dns_nxdomain_and_cached() {
    let env = Env::new().await;
    let gateway = env.gateway().await;
    for _ in 0..2 {
        let mut client = connect(&gateway, "gone.example.com").await;
        let (_, reason) = expect_refusal(&mut client).await;
        assert_eq!(reason, "dns-nxdomain");
    }
    // The negative answers were cached for their SOA TTL: asked once each.
    assert_eq!(env.dns.count("_xmpp-client._tcp.gone.example.com", RecordType::SRV), 1);
    assert_eq!(env.dns.count("gone.example.com", RecordType::A), 1);
}

#[tokio::test]
async fn servfail_everywhere_is_dns_servfail() {
    let env = Env::new().await;
    for name in ["_xmpp-client._tcp.broken.example.com", "_xmpps-client._tcp.broken.example.com"] {
        env.dns.set(name, RecordType::SRV, DnsAnswer::ServFail);
    }
    env.dns.set("broken.example.com", RecordType::A, DnsAnswer::ServFail);
    env.dns.set("broken.example.com", RecordType::AAAA, DnsAnswer::ServFail);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, "broken.example.com").await;
    let (_, reason) = expect_refusal(&mut client).await;
    assert_eq!(reason, "dns-servfail");
}

#[tokio::test]
async fn internationalised_domain_uses_a_labels_for_dns_and_sni() {
    let env = Env::new().await;
    let a_label = "xn--bcher-kva.example";
    let (x, port) = env.server(42, &[a_label]).await;
    env.dns.srv(&format!("_xmpps-client._tcp.{a_label}"), &[(0, 0, port, "x.example.com")]);
    env.dns.a("x.example.com", &[ip4(42)]);
    let gateway = env.gateway().await;
    let mut client = connect(&gateway, "Bücher.example").await;
    let mut conn = x.accept_direct_tls().await;
    assert_eq!(conn.tls_seen().expect("TLS").sni.as_deref(), Some(a_label));
    finish_direct(&mut client, &mut conn, a_label).await;
}

#[tokio::test]
async fn tls_sessions_resume_across_sessions_and_srv_answers_are_cached() {
    let env = Env::new().await;
    let (x, port) = env.server(43, &[DOMAIN]).await;
    env.dns.srv(XMPPS, &[(0, 0, port, "x.example.com")]);
    env.dns.a("x.example.com", &[ip4(43)]);
    let gateway = env.gateway().await;
    let resumed = two_direct_tls_sessions(&gateway, &x).await;
    assert_eq!(resumed, vec![false, true], "the second connection resumes the first TLS session");
    assert_eq!(env.dns.count(XMPPS, RecordType::SRV), 1, "the SRV answer came from the cache");
}

/// Two sessions in a row through `gateway` to `server` over direct TLS, each closed cleanly:
/// whether each one's TLS session was resumed.
async fn two_direct_tls_sessions(gateway: &TestGateway, server: &FakeServer) -> Vec<bool> {
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let mut client = connect(gateway, DOMAIN).await;
        let mut conn = server.accept_direct_tls().await;
        finish_direct(&mut client, &mut conn, DOMAIN).await;
        resumed.push(conn.tls_seen().expect("TLS").resumed);
        client.send(CLOSE).await;
        conn.read_until("</stream:stream>").await;
        conn.write("</stream:stream>").await;
        let _ = client.next_event().await;
    }
    resumed
}

#[tokio::test]
async fn static_upstream_sessions_resume_tls() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let address: SocketAddr = server.addr();
    let gateway = TestGateway::start(&format!(
        "[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{address}\"\ntls = \"direct\"\nca_file = \"{}\"\n",
        ca.ca_file().display()
    ))
    .await;
    let resumed = two_direct_tls_sessions(&gateway, &server).await;
    assert_eq!(resumed, vec![false, true]);
}
