//! The public edge under attack, on the built binary (issue 10): what an unauthenticated client
//! can make the gateway hold (memory, time, descriptors), measured and bounded.
//!
//! - A ping flood from a client that never reads: memory per connection stays bounded and the
//!   client is closed, before `<open/>`, while the upstream is being reached, and while relaying.
//! - Slowloris before the upgrade: connections dripping header lines or sending nothing are
//!   capped per address and in total, closed after the handshake timeout, oversized headers get
//!   431, and every descriptor comes back.
//! - Descriptor exhaustion: with a low RLIMIT_NOFILE the public listener stops short of it, so
//!   the admin `/healthz` still answers; the soft limit is raised to the hard one at start.
//! - SIGTERM while requests are half-sent and a session is stalled: the process exits within the
//!   grace period.
//!
//! Every figure is printed (`cargo test --test hostile -- --nocapture`); docs/OPERATIONS.md
//! ("What an attacker can cost you") quotes them. Linux only (reads /proc).

#![allow(clippy::unwrap_used)]

mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use harness::fake_server::FakeServer;
use harness::net::{connect_from, loopback};
use harness::process::GatewayProcess;
use harness::raw_ws::{encode, opcode, RawWs};
use harness::ws_client::{raw_http, WsClient};
use harness::xmpp::{CLOSE, DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::{TestCa, STEP};

/// The element limit of the gateways under test (the per-connection memory bound is stated
/// relative to it).
const ELEMENT_LIMIT: usize = 65_536;
/// The pre-upgrade settings under test, small so the whole file runs in about a minute.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_HEADER_BYTES: usize = 8192;
const MAX_PENDING: usize = 48;
const MAX_PENDING_PER_ADDRESS: usize = 6;

/// `[limits]` lines for the pre-upgrade settings above (the handshake timeout can be overridden).
fn edge_limits(handshake_timeout_secs: u64) -> String {
    format!(
        "handshake_timeout_secs = {handshake_timeout_secs}\nmax_header_bytes = {MAX_HEADER_BYTES}\n\
         max_pending_connections = {MAX_PENDING}\nmax_pending_connections_per_address = {MAX_PENDING_PER_ADDRESS}\n"
    )
}

/// A gateway configuration: `limits` goes into `[limits]` after the element limit, `rest` after
/// it (more sections); `example.com` is served by `server` when given, else by a closed port.
fn config(limits: &str, rest: &str, server: Option<(&FakeServer, &TestCa)>) -> String {
    let upstream = match server {
        Some((server, ca)) => {
            format!("address = \"{}\"\nca_file = \"{}\"\n", server.addr(), ca.ca_file().display())
        }
        None => "address = \"127.0.0.1:9\"\n".to_string(),
    };
    format!(
        "[listener]\nallow_missing_origin = true\n[limits]\nmax_element_bytes = {ELEMENT_LIMIT}\n{limits}\n{rest}\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\n{upstream}"
    )
}

/// `GET /healthz` on the admin listener within `limit`: the status code, 0 when no answer came.
async fn healthz(gateway: &GatewayProcess, limit: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let request = "GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    let status = tokio::time::timeout(limit, raw_http(&gateway.admin_addr(), request)).await.map_or(0, |(s, _)| s);
    (status, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Attack 1: ping flood without reading.

/// Connections flooding at once in each phase (the growth is divided among them).
const FLOOD_CONNECTIONS: usize = 6;
/// Most bytes of pings one flooding connection sends.
const FLOOD_BUDGET_BYTES: usize = 24 << 20;
/// Longest time one flood runs.
const FLOOD_TIME: Duration = Duration::from_secs(20);
/// Peak memory growth allowed per flooding connection, in KiB: the element limit plus 192 KiB.
/// What the gateway holds per connection is about the WebSocket buffers (a 4 KiB read buffer, a
/// write buffer bounded by the element limit plus 20 KiB, one pending pong) and the session's
/// state; the rest is room for the allocator and the debug build. A gateway that queues pongs
/// holds about everything the client sent beyond the kernel's socket buffers: megabytes.
const FLOOD_GROWTH_LIMIT_KIB: u64 = (ELEMENT_LIMIT / 1024) as u64 + 192;

/// How one flood ended.
#[derive(Debug)]
struct Flood {
    /// Bytes of ping frames written.
    sent: usize,
    /// When the gateway closed the connection (a write failed), from the first ping.
    closed_after: Option<Duration>,
}

/// Sends masked 125-byte pings as fast as the connection takes them and never reads, until the
/// gateway closes the connection, [`FLOOD_BUDGET_BYTES`] are sent, or [`FLOOD_TIME`] passes.
async fn ping_flood(mut ws: RawWs) -> Flood {
    let ping = encode(true, opcode::PING, &[b'p'; 125], Some([7, 1, 2, 3]));
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 512).collect();
    let started = Instant::now();
    let mut sent = 0;
    while sent < FLOOD_BUDGET_BYTES {
        let left = FLOOD_TIME.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, ws.try_write_raw(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => return Flood { sent, closed_after: Some(started.elapsed()) },
            Err(_) => break,
        }
    }
    Flood { sent, closed_after: None }
}

#[derive(Debug, Clone, Copy)]
enum FloodPhase {
    BeforeOpen,
    Connecting,
    Relaying,
}

/// Runs [`FLOOD_CONNECTIONS`] ping floods against a fresh gateway in `phase` and checks the
/// bound: every flooding client closed, peak memory growth per connection within
/// [`FLOOD_GROWTH_LIMIT_KIB`].
async fn flood_in_phase(phase: FloodPhase) {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    // An upstream that completes the TCP handshake (in the kernel's backlog) and never answers:
    // sessions to it stay in the connecting state.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = format!(
        "[connect]\nattempt_timeout_secs = 60\noverall_timeout_secs = 60\n\
         [[upstream]]\ndomain = \"hole.example\"\naddress = \"{}\"\n",
        black_hole.local_addr().unwrap()
    );
    let limits = format!("open_timeout_secs = 60\npong_timeout_secs = 2\n{}", edge_limits(3));
    let gateway = GatewayProcess::start(&config(&limits, &rest, Some((&server, &ca))));
    let mut upstreams = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        let stream = connect_from(loopback(1), gateway.listener_addr(), true).await;
        let mut ws = RawWs::upgrade(stream, &gateway.url, "Sec-WebSocket-Protocol: xmpp\r\n").await;
        match phase {
            FloodPhase::BeforeOpen => {}
            FloodPhase::Connecting => {
                ws.send_text(&OPEN.replace("example.com", "hole.example")).await;
            }
            FloodPhase::Relaying => {
                ws.send_text(OPEN).await;
                let mut upstream = server.accept().await;
                upstream.open_with_starttls(DOMAIN, FEATURES).await;
                assert!(ws.recv_text().await.starts_with("<open "));
                assert!(ws.recv_text().await.contains("<stream:features"));
                upstreams.push(upstream);
            }
        }
        clients.push(ws);
    }
    let rss_before = gateway.status_kib("VmRSS:");
    let floods: Vec<_> = clients.into_iter().map(|ws| tokio::spawn(ping_flood(ws))).collect();
    let mut results = Vec::new();
    for flood in floods {
        results.push(flood.await.unwrap());
    }
    let peak = gateway.status_kib("VmHWM:");
    let growth_per_connection = peak.saturating_sub(rss_before) / FLOOD_CONNECTIONS as u64;
    let sent: usize = results.iter().map(|flood| flood.sent).sum();
    let slowest_close = results.iter().filter_map(|flood| flood.closed_after).max();
    println!(
        "ping flood {phase:?}: {FLOOD_CONNECTIONS} clients sent {:.1} MiB of pings without reading; \
         RSS {rss_before} KiB -> peak {peak} KiB: {growth_per_connection} KiB per connection \
         (limit {FLOOD_GROWTH_LIMIT_KIB}); last client closed after {slowest_close:?}",
        sent as f64 / (1 << 20) as f64
    );
    for (index, flood) in results.iter().enumerate() {
        assert!(
            flood.closed_after.is_some(),
            "{phase:?}: flooding client {index} was never closed ({flood:?}); log: {}",
            gateway.log_text()
        );
    }
    assert!(
        growth_per_connection <= FLOOD_GROWTH_LIMIT_KIB,
        "{phase:?}: memory grew by {growth_per_connection} KiB per flooding connection (limit {FLOOD_GROWTH_LIMIT_KIB})"
    );
    let ended = gateway.wait_for_log("outcome=\"client_stalled\"", STEP);
    assert!(ended.contains("client_stalled"), "{ended}");
    drop(upstreams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_before_open_is_bounded_and_closed() {
    flood_in_phase(FloodPhase::BeforeOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_while_connecting_is_bounded_and_closed() {
    flood_in_phase(FloodPhase::Connecting).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_while_relaying_is_bounded_and_closed() {
    flood_in_phase(FloodPhase::Relaying).await;
}

// ---------------------------------------------------------------------------------------------
// Attack 3: slowloris before the upgrade.

/// How a slow connection ended.
#[derive(Debug)]
struct Held {
    /// The source address.
    from: IpAddr,
    /// When the gateway closed it, from the connect.
    closed_after: Option<Duration>,
    /// What the gateway sent before closing (an HTTP status line, or nothing).
    answer: String,
}

impl Held {
    /// The gateway refused the connection at once (429/503) instead of admitting it.
    fn refused(&self) -> bool {
        self.answer.starts_with("HTTP/1.1 429") || self.answer.starts_with("HTTP/1.1 503")
    }
}

/// Connects from `from` and then sends nothing (`drip` = None) or the start of an upgrade
/// request followed by one header line every `drip`, until the gateway closes the connection or
/// `hold` passes. `ready` is told once the connection is up.
async fn slow_request(
    from: IpAddr,
    to: SocketAddr,
    drip: Option<Duration>,
    hold: Duration,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Held {
    let mut stream = connect_from(from, to, false).await;
    let started = Instant::now();
    let _ = ready.send(()).await;
    if drip.is_some() {
        let _ = stream.write_all(b"GET /xmpp-websocket HTTP/1.1\r\nHost: gateway\r\n").await;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut line = 0;
    let mut next_drip = drip.map(|every| tokio::time::Instant::now() + every);
    loop {
        let left = hold.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Held { from, closed_after: None, answer: String::from_utf8_lossy(&answer).into_owned() };
        }
        let drip_due = async {
            match next_drip {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    return Held { from, closed_after: Some(started.elapsed()), answer };
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = drip_due => {
                line += 1;
                let _ = stream.write_all(format!("X-Drip-{line}: a\r\n").as_bytes()).await;
                next_drip = drip.map(|every| tokio::time::Instant::now() + every);
            }
            _ = tokio::time::sleep(left) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_capped_timed_out_and_release_their_descriptors() {
    let gateway = GatewayProcess::start(&config(&edge_limits(HANDSHAKE_TIMEOUT.as_secs()), "", None));
    let to = gateway.listener_addr();
    let descriptors_before = gateway.open_descriptors();
    // An oversized header block gets 431.
    let mut big = connect_from(loopback(3), to, false).await;
    let header = format!(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: gateway\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES + 1024)
    );
    let _ = big.write_all(header.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(STEP, big.read(&mut answer)).await.expect("answer in time").unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    println!("header block of {} bytes: {:?}", header.len(), answer.lines().next());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // That connection counts as pending until its task ends, a moment after the answer. The
    // attackers below must find every pending slot free: one still taken admits one attacker
    // fewer, and its slot then frees while they hold theirs, letting the newcomer in.
    let pending = gateway.metric_settles("xmppgw_connections_pending", STEP, |pending| pending == 0.0).await;
    assert_eq!(pending, 0.0, "the 431 connection still counts as pending");

    // Attacker A: 20 connections from one address; attackers B: 12 addresses with the
    // per-address maximum each (72 in all, more than the total cap). Half drip, half are silent.
    let mut sources: Vec<IpAddr> = vec![loopback(2); 20];
    for n in 10..22 {
        sources.extend(std::iter::repeat_n(loopback(n), MAX_PENDING_PER_ADDRESS));
    }
    let hold = HANDSHAKE_TIMEOUT + Duration::from_secs(7);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(sources.len());
    let burst_started = Instant::now();
    let tasks: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(index, from)| {
            let drip = (index % 2 == 0).then_some(Duration::from_millis(500));
            tokio::spawn(slow_request(*from, to, drip, hold, ready_tx.clone()))
        })
        .collect();
    for _ in 0..sources.len() {
        ready_rx.recv().await.unwrap();
    }
    let burst = burst_started.elapsed();

    // While the attackers hold their connections: the admin listener answers, and a newcomer is
    // refused at once (the total cap is reached) instead of hanging.
    let (status, took) = healthz(&gateway, Duration::from_secs(3)).await;
    assert_eq!(status, 200, "/healthz during the slowloris took {took:?}");
    let (newcomer_ready, _keep) = tokio::sync::mpsc::channel(1);
    let newcomer = slow_request(loopback(1), to, None, Duration::from_secs(2), newcomer_ready).await;
    println!("newcomer during the slowloris: {newcomer:?}");
    assert!(
        newcomer.refused() && newcomer.answer.starts_with("HTTP/1.1 503"),
        "a newcomer during the slowloris should get 503 at once: {newcomer:?}"
    );

    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.unwrap());
    }
    // Connections opened within one handshake timeout can hold at most the caps at once.
    let rounds = 1 + (burst.as_secs_f64() / HANDSHAKE_TIMEOUT.as_secs_f64()) as usize;
    let admitted: Vec<&Held> = held.iter().filter(|h| !h.refused()).collect();
    let admitted_a = admitted.iter().filter(|h| h.from == loopback(2)).count();
    let slowest = held.iter().map(|h| h.closed_after.unwrap_or(hold)).max().unwrap();
    println!(
        "slowloris: {} connections opened in {burst:?}; {} admitted ({admitted_a} of 20 from one address), \
         {} refused at once; the last one closed after {slowest:?} (handshake timeout {HANDSHAKE_TIMEOUT:?})",
        held.len(),
        admitted.len(),
        held.len() - admitted.len(),
    );
    for h in &held {
        assert!(h.closed_after.is_some(), "a slow connection was still open after {hold:?}: {h:?}");
    }
    assert!(slowest <= HANDSHAKE_TIMEOUT + Duration::from_secs(2) + burst, "slowest close after {slowest:?}");
    assert!(admitted_a <= MAX_PENDING_PER_ADDRESS * rounds, "{admitted_a} admitted from one address");
    assert!(admitted.len() <= MAX_PENDING * rounds, "{} admitted in total", admitted.len());

    let descriptors_after = gateway.descriptors_settle(descriptors_before).await;
    println!("descriptors: {descriptors_before} before, {descriptors_after} after");
    assert!(descriptors_after <= descriptors_before, "descriptors leaked: {descriptors_before} -> {descriptors_after}");

    // With the attackers gone, a real client gets in.
    let mut client = WsClient::connect(&gateway.url).await;
    client.send(CLOSE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_connection_costs_at_most_its_header_buffer() {
    let gateway = GatewayProcess::start(&config(&edge_limits(30), "", None));
    let to = gateway.listener_addr();
    let rss_before = gateway.status_kib("VmRSS:");
    // The per-address and total caps let MAX_PENDING connections in from 8 addresses; each sends
    // a header block just under the limit and then waits.
    let header =
        format!("GET /xmpp-websocket HTTP/1.1\r\nHost: gateway\r\nX-Fill: {}\r\n", "a".repeat(MAX_HEADER_BYTES - 200));
    let mut streams = Vec::new();
    for index in 0..MAX_PENDING {
        let mut stream = connect_from(loopback(30 + (index % 8) as u8), to, false).await;
        stream.write_all(header.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    // Every connection is in: the next one from a fresh address is refused (total cap).
    let mut probe = connect_from(loopback(40), to, false).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(STEP, probe.read(&mut answer)).await.expect("refused in time").unwrap_or(0);
    assert!(answer[..n].starts_with(b"HTTP/1.1 503"), "{:?}", String::from_utf8_lossy(&answer[..n]));
    let peak = gateway.status_kib("VmHWM:");
    let per_connection = peak.saturating_sub(rss_before) / MAX_PENDING as u64;
    println!(
        "{MAX_PENDING} pending connections with {} header bytes each: RSS {rss_before} KiB -> peak {peak} KiB, \
         {per_connection} KiB per connection",
        header.len()
    );
    assert!(
        per_connection <= (MAX_HEADER_BYTES / 1024) as u64 + 64,
        "{per_connection} KiB per pending connection (header limit {MAX_HEADER_BYTES} bytes)"
    );
}

// ---------------------------------------------------------------------------------------------
// Descriptor exhaustion.

/// The descriptor limit the gateway is started with.
const NOFILE: usize = 256;
/// Silent connections opened against it: more than it has descriptors for, fewer than the
/// listen backlog holds beyond what the gateway accepts (so every connect completes).
const SILENT_CONNECTIONS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_the_public_listener_has_used_every_descriptor_it_may() {
    // Default caps (far above what 256 descriptors allow); a long handshake timeout.
    let gateway =
        GatewayProcess::start_with_ulimit(&config("handshake_timeout_secs = 60\n", "", None), &format!("-n {NOFILE}"));
    let to = gateway.listener_addr();
    let descriptors_before = gateway.open_descriptors();
    let started = Instant::now();
    // Silent connections from 30 addresses: more than the process has descriptors for.
    let mut streams = Vec::new();
    for index in 0..SILENT_CONNECTIONS {
        streams.push(connect_from(loopback(50 + (index % 30) as u8), to, false).await);
    }
    let (status, took) = healthz(&gateway, Duration::from_secs(3)).await;
    let held = gateway.open_descriptors();
    println!(
        "{SILENT_CONNECTIONS} silent connections against RLIMIT_NOFILE {NOFILE}: the gateway holds {held} descriptors \
         ({descriptors_before} before); /healthz answered {status} in {took:?}"
    );
    assert_eq!(status, 200, "/healthz must answer while the public side is saturated");
    assert!(held < NOFILE - 64, "the public side left too few descriptors: {held} of {NOFILE}");
    let failures = gateway.log_text().lines().filter(|line| line.contains("accept failed")).count();
    let seconds = started.elapsed().as_secs() as usize + 1;
    println!("'accept failed' logged {failures} times in {seconds} s");
    assert!(failures <= seconds, "'accept failed' logged {failures} times in {seconds} s");
    drop(streams);
    let descriptors_after = gateway.descriptors_settle(descriptors_before).await;
    assert!(descriptors_after <= descriptors_before, "descriptors leaked: {descriptors_before} -> {descriptors_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let gateway = GatewayProcess::start_with_ulimit(&config("", "", None), "-Sn 256");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gateway.pid())).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    println!("{line}");
    assert_eq!(numbers[0], numbers[1], "soft limit not raised to the hard one: {line}");
    assert_ne!(numbers[0], "256", "{line}");
}

// ---------------------------------------------------------------------------------------------
// Attack 4: SIGTERM while connections are half-way.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_whatever_connections_are_doing() {
    const GRACE: Duration = Duration::from_secs(2);
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let mut gateway = GatewayProcess::start(&config(
        &format!("{}ping_interval_secs = 30\n", edge_limits(60)),
        &format!("[shutdown]\ngrace_period_secs = {}\n", GRACE.as_secs()),
        Some((&server, &ca)),
    ));
    let to = gateway.listener_addr();

    // Five half-sent requests and three silent connections.
    let mut pre_upgrade = Vec::new();
    for index in 0..8u8 {
        let mut stream = connect_from(loopback(2 + index), to, false).await;
        if index < 5 {
            stream.write_all(b"GET /xmpp-websocket HTTP/1.1\r\nHost: gateway\r\nUpgr").await.unwrap();
        }
        pre_upgrade.push(stream);
    }
    // A WebSocket that never sent <open/>.
    let mut unopened = WsClient::connect(&gateway.url).await;
    // A relaying session whose client reads.
    let mut reader = WsClient::connect(&gateway.url).await;
    reader.send(OPEN).await;
    let mut reader_upstream = server.accept().await;
    reader_upstream.open_with_starttls(DOMAIN, FEATURES).await;
    reader.recv_text().await;
    reader.recv_text().await;
    // A relaying session whose client stopped reading while its server floods it: the gateway
    // is stuck in a send to it.
    let stream = connect_from(loopback(20), to, true).await;
    let mut stalled = RawWs::upgrade(stream, &gateway.url, "Sec-WebSocket-Protocol: xmpp\r\n").await;
    stalled.send_text(OPEN).await;
    let mut stalled_upstream = server.accept().await;
    stalled_upstream.open_with_starttls(DOMAIN, FEATURES).await;
    let stanza = format!("<message to='a@example.com'><body>{}</body></message>", "x".repeat(16 * 1024));
    let mut flooded = 0;
    while flooded < 64 << 20 {
        match tokio::time::timeout(Duration::from_secs(1), stalled_upstream.try_write(&stanza)).await {
            Ok(true) => flooded += stanza.len(),
            Ok(false) | Err(_) => break,
        }
    }
    println!("the stalled client's server wrote {} KiB before blocking", flooded / 1024);

    let signalled = Instant::now();
    gateway.signal("TERM");
    let pre_upgrade_closed: Vec<_> = pre_upgrade
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match tokio::time::timeout(GRACE + STEP, stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return Some(signalled.elapsed()),
                        Ok(Ok(_)) => continue,
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect();
    let error = reader.recv_text().await;
    assert!(error.contains("<system-shutdown"), "{error}");
    let unopened_end = unopened.next_event().await;
    let (code, elapsed) = tokio::task::block_in_place(|| gateway.wait_exit(GRACE + Duration::from_secs(10)));
    let mut slowest_pre_upgrade = Duration::ZERO;
    for closed in pre_upgrade_closed {
        let closed = closed.await.unwrap().expect("a pre-upgrade connection outlived the process");
        slowest_pre_upgrade = slowest_pre_upgrade.max(closed);
    }
    println!(
        "SIGTERM with 5 half-sent requests, 3 silent connections, an unopened WebSocket ({unopened_end:?}), \
         a reading and a stalled session: exit {code:?} after {elapsed:?} (grace {GRACE:?}); \
         pre-upgrade connections closed within {slowest_pre_upgrade:?}"
    );
    assert_eq!(code, Some(0), "log: {}", gateway.log_text());
    assert!(elapsed <= GRACE + Duration::from_secs(2), "exit took {elapsed:?} with a {GRACE:?} grace period");
    // Closed on the signal, not at exit: well within the grace period.
    assert!(slowest_pre_upgrade <= GRACE / 2, "a pre-upgrade connection lived {slowest_pre_upgrade:?} after SIGTERM");
    drop((reader_upstream, stalled_upstream, stalled));
}
