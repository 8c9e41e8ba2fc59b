//! The gateway behind each reverse proxy of deploy/ (nginx, Caddy, HAProxy), run from its deploy
//! file (tests/harness/proxy.rs) in front of a real Prosody:
//!
//! - the client address the gateway logs is the one the proxy reported: the client connects
//!   from 127.0.0.2 (the proxy reaches the gateway from 127.0.0.1, its only trusted proxy) and
//!   sends forged `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` headers, which must not
//!   get through (nor make the gateway think the page came over HTTPS);
//! - a quiet session outlives the proxy's idle timeout thanks to the gateway's pings: with the
//!   deploy file's timeout shortened to a few seconds and the gateway pinging every second, a
//!   logged-in session stays silent for more than twice that timeout and still answers; and, as
//!   the control, the same proxy does cut a quiet session when the gateway does not ping.
//!
//! Real logins and chats through every proxy with every client library are in the interop
//! matrix (tests/interop_matrix.rs). Needs the Debian packages prosody, nginx, caddy and haproxy;
//! ignored by a bare `cargo test` (scripts/test.sh runs it).

#![allow(clippy::unwrap_used)]

mod harness;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use harness::e2e::{Gateway, Prosody, DOMAIN};
use harness::proxy::{ProxyKind, ReverseProxy};
use harness::ws_client::{raw_http, WsClient, WsEvent};

/// Where the test's client connects from: local, but not the proxy's 127.0.0.1.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Headers a client might forge to pass for someone else, or for an HTTPS visitor.
const FORGED: [(&str, &str); 3] = [
    ("X-Forwarded-For", "198.51.100.66"),
    ("Forwarded", "for=198.51.100.67;proto=https"),
    ("X-Forwarded-Proto", "https"),
];
/// The idle timeout the test proxies run with instead of the deployed 120 s: short, but several
/// ping intervals long, as in production (120 s against 30 s).
const PROXY_IDLE: Duration = Duration::from_secs(3);
/// The test gateway's ping interval.
const PING_INTERVAL_SECS: u64 = 1;
/// A ping interval that never fires during the test (the control).
const NO_PING_SECS: u64 = 3600;
/// Longest a whole quiet period may take (it needs 2 x PROXY_IDLE + one ping interval).
const QUIET_DEADLINE: Duration = Duration::from_secs(60);

/// The gateway behind a proxy on 127.0.0.1, pinging every `ping_secs`, serving host-meta.
fn gateway_config(prosody: &Prosody, ping_secs: u64) -> String {
    format!(
        "{}\n[limits]\nping_interval_secs = {ping_secs}\npong_timeout_secs = 10\n\n\
         [host_meta]\nwebsocket_url = \"wss://{DOMAIN}/xmpp-websocket\"\ndomains = [\"{DOMAIN}\"]\n",
        Gateway::config_behind_proxy(prosody)
    )
}

struct Stack {
    prosody: Prosody,
    gateway: Gateway,
    proxy: ReverseProxy,
}

impl Stack {
    fn start(kind: ProxyKind, ping_secs: u64) -> Stack {
        let prosody = Prosody::start();
        let gateway = Gateway::start(&gateway_config(&prosody, ping_secs));
        let proxy = ReverseProxy::start_with(kind, gateway.listen_addr(), Some(PROXY_IDLE));
        Stack { prosody, gateway, proxy }
    }

    fn logs(&self) -> String {
        format!(
            "--- gateway log (tail) ---\n{}\n{}\n{}",
            harness::e2e::tail(&self.gateway.log(), 40),
            self.proxy.diagnostics(),
            self.prosody.diagnostics()
        )
    }
}

/// A client logged in through `stack`'s proxy from [`CLIENT_IP`] with [`FORGED`] headers.
async fn quiet_client(stack: &Stack, resource: &str) -> WsClient {
    let account = tokio::task::block_in_place(|| stack.prosody.register_random("quiet"));
    let mut client = WsClient::connect_from(&stack.proxy.url(), CLIENT_IP, &FORGED).await;
    client.login_plain(DOMAIN, &account.user, &account.password, resource).await;
    client
}

async fn behind(kind: ProxyKind) {
    let name = kind.name();
    let stack = tokio::task::block_in_place(|| Stack::start(kind, PING_INTERVAL_SECS));
    let mut client = quiet_client(&stack, "quiet").await;

    // The client address: the one the proxy saw, never a forged one, never the proxy's own.
    let logged = |line: &String| line.contains("session{") && line.contains("client=");
    let seen = harness::e2e::poll_until(Duration::from_secs(10), || stack.gateway.log_lines().iter().any(logged));
    assert!(seen, "no session line in the gateway's log\n{}", stack.logs());
    for line in stack.gateway.log_lines().iter().filter(|l| logged(l)) {
        // From a trusted proxy's header: the address alone, no port (the proxy's source port
        // would be a made-up one).
        assert!(
            line.contains("client=127.0.0.2}") || line.contains("client=127.0.0.2 "),
            "{name}: session logged with another client address: {line}"
        );
        assert!(!line.contains("198.51.100."), "{name}: a forged address reached the log: {line}");
    }

    // Quiet for more than twice the proxy's idle timeout: only the gateway's pings (and the
    // client's pongs) cross the proxy. Any stanza from the server restarts the quiet period.
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let mut pings = 0u32;
    while quiet_since.elapsed() < 2 * PROXY_IDLE + Duration::from_secs(PING_INTERVAL_SECS) {
        assert!(started.elapsed() < QUIET_DEADLINE, "{name}: the server kept talking\n{}", stack.logs());
        match client.next_event_or_ping().await {
            None => pings += 1,
            Some(WsEvent::Text(_)) => (quiet_since, pings) = (Instant::now(), 0),
            Some(other) => panic!(
                "{name}: the quiet session ended after {:?} ({pings} pings): {other:?}\n{}",
                quiet_since.elapsed(),
                stack.logs()
            ),
        }
    }
    let quiet = quiet_since.elapsed();
    assert!(pings >= 3, "{name}: only {pings} pings in {quiet:?}");
    client
        .send(&format!(
            r#"<iq xmlns="jabber:client" type="get" id="after-quiet" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>"#
        ))
        .await;
    let answer = client.wait_for("after-quiet").await;
    assert!(answer.contains(r#"type="result""#) || answer.contains("type='result'"), "{name}: {answer}");
    println!("{name}: a session quiet for {quiet:.1?} ({pings} gateway pings) outlived the proxy's {PROXY_IDLE:?} idle timeout");

    // host-meta is served only over HTTPS: the same forged header straight from a trusted peer
    // (127.0.0.1) is believed, which shows what the proxy must keep a client from doing. (nginx's
    // host-meta location is in its site file, not in the location block the fixture runs.)
    if kind == ProxyKind::Nginx {
        return;
    }
    let host_meta = |addr: String| async move {
        let forged: String = FORGED.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let request =
            format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {DOMAIN}\r\n{forged}Connection: close\r\n\r\n");
        raw_http(&addr, &request).await
    };
    let (status, _) = host_meta(stack.gateway.listen_addr().to_owned()).await;
    assert_eq!(status, 200, "the gateway must believe X-Forwarded-Proto from a trusted peer");
    let (status, response) = host_meta(stack.proxy.addr().to_string()).await;
    assert!(
        status == 404 && response.contains("No host-meta here."),
        "{name} let a forged scheme through to the gateway (or did not route host-meta): {response}"
    );
}

/// The control: with no ping from the gateway, the proxy's idle timeout does end a quiet
/// session, no earlier than the timeout after the last byte.
async fn cut_without_pings(kind: ProxyKind) {
    let name = kind.name();
    let stack = tokio::task::block_in_place(|| Stack::start(kind, NO_PING_SECS));
    let mut client = quiet_client(&stack, "unpinged").await;
    let mut last_byte = Instant::now();
    let ended = loop {
        assert!(last_byte.elapsed() < QUIET_DEADLINE, "{name}: the server kept talking");
        match client.next_event_or_ping().await {
            Some(WsEvent::Text(_)) => last_byte = Instant::now(),
            None => panic!("{name}: the gateway pinged although its interval is {NO_PING_SECS} s"),
            Some(end) => break end,
        }
    };
    let after = last_byte.elapsed();
    assert!(
        after >= PROXY_IDLE.mul_f64(0.9),
        "{name}: the session ended {after:?} after the last byte ({ended:?}), before the proxy's {PROXY_IDLE:?}\n{}",
        stack.logs()
    );
    println!("{name} without gateway pings: quiet session cut after {after:.1?} ({ended:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and nginx; run scripts/test.sh"]
async fn nginx_reports_the_client_and_keeps_quiet_sessions() {
    behind(ProxyKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and caddy; run scripts/test.sh"]
async fn caddy_reports_the_client_and_keeps_quiet_sessions() {
    behind(ProxyKind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and haproxy; run scripts/test.sh"]
async fn haproxy_reports_the_client_and_keeps_quiet_sessions() {
    behind(ProxyKind::Haproxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and nginx; run scripts/test.sh"]
async fn nginx_cuts_quiet_sessions_without_pings() {
    cut_without_pings(ProxyKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and caddy; run scripts/test.sh"]
async fn caddy_cuts_quiet_sessions_without_pings() {
    cut_without_pings(ProxyKind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs prosody and haproxy; run scripts/test.sh"]
async fn haproxy_cuts_quiet_sessions_without_pings() {
    cut_without_pings(ProxyKind::Haproxy).await;
}
