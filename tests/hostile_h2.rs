//! HTTP/2 on the public `wss://` listener under attack, on the built binary: what a client that
//! speaks raw HTTP/2 frames can make the gateway hold or do, measured and bounded. The HTTP/1.1
//! attacks are in tests/hostile.rs; the rules HTTP/2 shares with them in tests/http2.rs.
//!
//! - Rapid reset (CVE-2023-44487): streams opened and reset at once end the connection with
//!   GOAWAY after a few; the gateway's CPU for the whole attack is printed and bounded, and a
//!   session on another connection is not disturbed. The same for streams the client makes the
//!   gateway reset (protocol errors on a stream).
//! - Many streams, large and endless headers: concurrent streams are capped per connection, a
//!   header list over `limits.max_header_bytes` is refused without harming the connection, and a
//!   CONTINUATION flood ends the connection after little more than that many bytes.
//! - Floods that never read: HTTP/2 PINGs from a connection that never reads its socket, and
//!   WebSocket pings on streams whose client grants no flow-control window, cost bounded memory;
//!   the stalled sessions are closed.
//! - Descriptors: every session on an HTTP/2 connection takes a descriptor slot, so one connection
//!   cannot run the process out of descriptors; `/healthz` still answers.
//!
//! Every figure is printed (`cargo test --test hostile_h2 -- --nocapture`); docs/OPERATIONS.md
//! ("What an attacker can cost you") quotes them. Linux only (reads /proc).

#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use harness::fake_server::FakeServer;
use harness::h2::{
    self, encode, frame, headers, setting, websocket_connect_fields, Frame, H2Connection, ListenerCert, RawH2,
};
use harness::process::GatewayProcess;
use harness::xmpp::{DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::{TestCa, STEP};

/// The element limit of the gateways under test.
const ELEMENT_LIMIT: usize = 65_536;
/// `limits.max_header_bytes` of the gateways under test (also their SETTINGS_MAX_HEADER_LIST_SIZE).
const MAX_HEADER_BYTES: usize = 8192;
/// RST_STREAM/GOAWAY error codes (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// A gateway process serving `wss://` with `cert`; `limits` goes into `[limits]`, and
/// `example.com` is served by `server` when given, else by a closed port.
fn start(cert: &ListenerCert, limits: &str, server: Option<(&FakeServer, &TestCa)>) -> GatewayProcess {
    let upstream = match server {
        Some((server, ca)) => format!("address = \"{}\"\nca_file = \"{}\"\n", server.addr(), ca.ca_file().display()),
        None => "address = \"127.0.0.1:9\"\n".to_owned(),
    };
    GatewayProcess::start(&format!(
        "[listener]\nallow_missing_origin = true\n{}\n[limits]\nmax_element_bytes = {ELEMENT_LIMIT}\n\
         max_header_bytes = {MAX_HEADER_BYTES}\n{limits}\n[[upstream]]\ndomain = \"{DOMAIN}\"\n{upstream}",
        cert.toml_lines()
    ))
}

/// What the gateway sent on a raw connection, read on a task of its own until the connection
/// ended: every frame.
fn read_all(mut reader: ReadHalf<TlsStream<TcpStream>>) -> tokio::task::JoinHandle<(Vec<Frame>, Instant)> {
    tokio::spawn(async move {
        let mut frames = Vec::new();
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some(frame) = Frame::take_from(&mut buffer) {
                frames.push(frame);
            }
            match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => return (frames, Instant::now()),
            }
        }
    })
}

/// The GOAWAY among `frames`, if any: its error code.
fn goaway(frames: &[Frame]) -> Option<u32> {
    frames.iter().find(|f| f.kind == frame::GOAWAY).map(Frame::error_code)
}

/// A response HEADERS frame that answers 200: h2 encodes `:status: 200` as index 8 of HPACK's
/// static table (RFC 7541 Appendix A), the one byte 0x88, first in the block.
fn is_200(frame: &Frame) -> bool {
    frame.kind == frame::HEADERS && frame.payload.first() == Some(&0x88)
}

/// A session on a fresh HTTP/2 connection that relays a stanza each way (the bystander).
async fn bystander_relays(gateway: &GatewayProcess, ca: &TestCa, server: &FakeServer, tag: &str) {
    let mut connection = H2Connection::connect(gateway.listener_addr(), ca).await;
    let mut client = connection.websocket("/xmpp-websocket", &[]).await.expect("the bystander's WebSocket");
    client.send(OPEN).await;
    let mut upstream = server.accept().await;
    upstream.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features"));
    client.send(&format!(r#"<presence xmlns="jabber:client" id="{tag}"/>"#)).await;
    upstream.read_until(tag).await;
    upstream.write(&format!("<message to='a@example.com'><body>{tag}</body></message>")).await;
    assert!(client.recv_text().await.contains(tag));
}

/// Streams opened and reset (or made to be reset) from one connection until the gateway ends it.
struct ResetAttack {
    /// Streams the attacker opened before its writes failed or it stopped.
    opened: usize,
    /// The GOAWAY's error code, if one came.
    goaway: Option<u32>,
    /// Streams the gateway answered (any HEADERS) or reset itself.
    answered: usize,
    /// How long the connection lived.
    lived: Duration,
}

/// Opens up to `streams` WebSocket CONNECT streams in batches of 100 per write, each followed at
/// once by `follow_up(stream)` (a reset, or a frame the gateway must reset the stream for).
async fn reset_attack(
    gateway: &GatewayProcess,
    ca: &TestCa,
    streams: usize,
    follow_up: impl Fn(u32) -> Vec<u8>,
) -> ResetAttack {
    let raw = RawH2::connect(gateway.listener_addr(), ca, &[]).await;
    let started = Instant::now();
    let (reader, mut writer): (_, WriteHalf<_>) = tokio::io::split(raw.tls);
    let frames = read_all(reader);
    let fields = websocket_connect_fields("/xmpp-websocket");
    let mut opened = 0;
    'attack: while opened < streams && started.elapsed() < STEP {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let stream = 1 + 2 * opened as u32;
            batch.extend(headers(stream, &fields, false));
            batch.extend(follow_up(stream));
            opened += 1;
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            break 'attack;
        }
    }
    let _ = writer.shutdown().await;
    let (frames, ended) = frames.await.unwrap();
    let answered = frames.iter().filter(|f| f.kind == frame::HEADERS || f.kind == frame::RST_STREAM).count();
    ResetAttack { opened, goaway: goaway(&frames), answered, lived: ended - started }
}

/// What one write of `streams` CONNECT streams, each followed by `follow_up(stream)`, got from
/// the gateway: the RST_STREAMs it sent, and the GOAWAY's code if it ended the connection. One
/// more, well-formed CONNECT after the burst marks the end: its answer comes after the gateway
/// has dealt with every frame before it.
async fn burst(
    gateway: &GatewayProcess,
    ca: &TestCa,
    streams: u32,
    follow_up: impl Fn(u32) -> Vec<u8>,
) -> (usize, Option<u32>) {
    let mut raw = RawH2::connect(gateway.listener_addr(), ca, &[]).await;
    let fields = websocket_connect_fields("/xmpp-websocket");
    let mut bytes: Vec<u8> =
        (0..streams).flat_map(|n| [headers(1 + 2 * n, &fields, false), follow_up(1 + 2 * n)].concat()).collect();
    let marker = 1 + 2 * streams;
    bytes.extend(headers(marker, &fields, false));
    raw.write(&bytes).await.unwrap();
    let mut seen = Vec::new();
    let end =
        raw.until(&mut seen, |f| (f.kind == frame::HEADERS && f.stream == marker) || f.kind == frame::GOAWAY).await;
    assert!(end.is_some(), "the burst got neither an answer nor a GOAWAY: {seen:?}");
    let resets = seen.iter().filter(|f| f.kind == frame::RST_STREAM).count();
    (resets, goaway(&seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_the_connection_and_costs_little() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let cert = ListenerCert::new(&ca);
    let gateway = start(&cert, "max_sessions_per_address = 10000\n", Some((&server, &ca)));
    bystander_relays(&gateway, &ca, &server, "before").await;
    let cpu_before = gateway.cpu_time();
    let upgrades_before = gateway.metric("xmppgw_websocket_upgrades_total{http_version=\"2\"}").await;

    // CVE-2023-44487: HEADERS then RST_STREAM(CANCEL) at once, 100 per write, up to 20 000.
    let reset = |stream: u32| encode(frame::RST_STREAM, 0, stream, &CANCEL.to_be_bytes());
    let rapid = reset_attack(&gateway, &ca, 20_000, reset).await;
    // Streams the gateway itself must reset ("MadeYouReset", CVE-2025-8671): a WINDOW_UPDATE that
    // takes a stream's window beyond 2^31-1 is a stream error (RFC 9113 §6.9.1), answered with
    // RST_STREAM(FLOW_CONTROL_ERROR).
    let overflow = |stream: u32| encode(frame::WINDOW_UPDATE, 0, stream, &0x7fff_ffffu32.to_be_bytes());
    let local = reset_attack(&gateway, &ca, 20_000, overflow).await;
    let cpu = gateway.cpu_time() - cpu_before;
    let sessions = gateway.metric("xmppgw_websocket_upgrades_total{http_version=\"2\"}").await - upgrades_before;
    // Below the caps (20 streams reset before they are served, 64 the gateway had to reset) the
    // connection lives on; beyond them it ends.
    let rapid_below = burst(&gateway, &ca, 15, reset).await;
    let rapid_beyond = burst(&gateway, &ca, 30, reset).await;
    let local_below = burst(&gateway, &ca, 50, overflow).await;
    let local_beyond = burst(&gateway, &ca, 80, overflow).await;
    println!(
        "rapid reset: {} streams opened and reset before the connection ended after {:?} (GOAWAY {:?}); \
         the gateway answered {} of them",
        rapid.opened, rapid.lived, rapid.goaway, rapid.answered
    );
    println!(
        "streams made to be reset: {} opened before the connection ended after {:?} (GOAWAY {:?}); {} answered",
        local.opened, local.lived, local.goaway, local.answered
    );
    println!("both attacks: {} ms of gateway CPU, {sessions} WebSocket upgrades", cpu.as_millis());
    println!(
        "one burst, (resets sent, GOAWAY): rapid reset 15 streams {rapid_below:?}, 30 streams {rapid_beyond:?}; \
         made to be reset 50 streams {local_below:?}, 80 streams {local_beyond:?}"
    );
    assert_eq!(rapid_below.1, None, "15 reset streams ended the connection");
    assert_eq!(rapid_beyond.1, Some(ENHANCE_YOUR_CALM));
    assert_eq!(local_below, (50, None), "each stream error gets its RST_STREAM, and the connection lives");
    assert_eq!(local_beyond.1, Some(ENHANCE_YOUR_CALM));
    for (name, attack) in [("rapid reset", &rapid), ("local resets", &local)] {
        assert_eq!(
            attack.goaway,
            Some(ENHANCE_YOUR_CALM),
            "{name}: the connection was not ended with ENHANCE_YOUR_CALM"
        );
        assert!(attack.answered <= 200, "{name}: the gateway answered {} streams", attack.answered);
    }
    assert!(sessions <= 400.0, "{sessions} sessions started by the attacks");
    assert!(cpu <= Duration::from_secs(3), "the attacks cost {cpu:?} of CPU");
    // Nothing of it reached anyone else.
    bystander_relays(&gateway, &ca, &server, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_header_lists_are_capped_and_a_continuation_flood_ends_the_connection() {
    let ca = TestCa::new();
    let cert = ListenerCert::new(&ca);
    let gateway = start(&cert, "max_sessions_per_address = 10000\nopen_timeout_secs = 60\n", None);
    let addr = gateway.listener_addr();

    // 150 CONNECT streams at once, ignoring the advertised limit of 100.
    let mut raw = RawH2::connect(addr, &ca, &[]).await;
    let mut seen = Vec::new();
    let settings = raw.until(&mut seen, |f| f.kind == frame::SETTINGS && f.flags & frame::ACK == 0).await.unwrap();
    let limit = settings.settings().iter().find(|(id, _)| *id == setting::MAX_CONCURRENT_STREAMS).unwrap().1;
    let fields = websocket_connect_fields("/xmpp-websocket");
    let burst: Vec<u8> = (0..150u32).flat_map(|n| headers(1 + 2 * n, &fields, false)).collect();
    let rss_before = gateway.status_kib("VmRSS:");
    raw.write(&burst).await.unwrap();
    let mut answers: HashMap<u32, &'static str> = HashMap::new();
    while answers.len() < 150 {
        let Some(f) = raw.next_frame().await else { break };
        match f.kind {
            frame::HEADERS if is_200(&f) => drop(answers.insert(f.stream, "200")),
            frame::HEADERS => drop(answers.insert(f.stream, "other")),
            frame::RST_STREAM if f.error_code() == REFUSED_STREAM => drop(answers.insert(f.stream, "refused")),
            frame::RST_STREAM | frame::GOAWAY => drop(answers.insert(f.stream, "reset")),
            _ => {}
        }
    }
    let count = |what: &str| answers.values().filter(|v| **v == what).count();
    let sessions = gateway.metric("xmppgw_sessions_active").await;
    let growth = gateway.status_kib("VmHWM:").saturating_sub(rss_before);
    println!(
        "150 streams at once (limit {limit}): {} sessions, {} refused (REFUSED_STREAM), {} otherwise; \
         {sessions} sessions active; peak memory +{growth} KiB ({} KiB per session)",
        count("200"),
        count("refused"),
        count("other") + count("reset"),
        growth / count("200").max(1) as u64
    );
    assert_eq!(limit, 100);
    assert!(count("200") <= limit as usize, "{} streams became sessions", count("200"));
    assert_eq!(count("200") + count("refused"), 150, "{answers:?}");
    assert!(growth / (count("200").max(1) as u64) <= 256, "{growth} KiB for {} sessions", count("200"));
    drop(raw);

    // A header list over max_header_bytes: refused, and the connection goes on.
    let mut raw = RawH2::connect(addr, &ca, &[]).await;
    let mut big = websocket_connect_fields("/xmpp-websocket");
    big.push(("x-filler", "a".repeat(MAX_HEADER_BYTES + 1024)));
    raw.write(&headers(1, &big, false)).await.unwrap();
    raw.write(&headers(3, &websocket_connect_fields("/xmpp-websocket"), false)).await.unwrap();
    let mut seen = Vec::new();
    let second = raw.until(&mut seen, |f| f.kind == frame::HEADERS && f.stream == 3).await;
    let first: Vec<String> = seen
        .iter()
        .filter(|f| f.stream == 1)
        .map(|f| format!("type {} code {:?}", f.kind, (f.kind == frame::RST_STREAM).then(|| f.error_code())))
        .collect();
    println!(
        "a {} byte header list: stream answered with {first:?}; the next stream: 200 = {}",
        MAX_HEADER_BYTES + 1024,
        second.as_ref().is_some_and(is_200)
    );
    assert!(seen.iter().all(|f| !(f.stream == 1 && is_200(f))), "the oversized request became a session");
    assert!(!first.is_empty(), "the oversized request was not answered");
    assert!(second.as_ref().is_some_and(is_200), "the connection did not survive: {seen:?}");
    drop(raw);

    // CONTINUATION flood: a header block that never ends.
    let raw = RawH2::connect(addr, &ca, &[]).await;
    let (reader, mut writer) = tokio::io::split(raw.tls);
    let frames = read_all(reader);
    let rss_before = gateway.status_kib("VmRSS:");
    let start_block = encode(frame::HEADERS, 0, 1, &h2::header_block(&[(":method", "CONNECT")]));
    let filler = h2::header_block(&[("x-a", &"b".repeat(16_000))]);
    let continuation = encode(frame::CONTINUATION, 0, 1, &filler);
    let mut sent = start_block.len();
    let _ = writer.write_all(&start_block).await;
    let started = Instant::now();
    while sent < 64 << 20 && started.elapsed() < STEP {
        if writer.write_all(&continuation).await.is_err() {
            break;
        }
        sent += continuation.len();
    }
    let (frames, ended) = frames.await.unwrap();
    let growth = gateway.status_kib("VmHWM:").saturating_sub(rss_before);
    println!(
        "CONTINUATION flood: {} KiB written before the gateway closed the connection after {:?} (GOAWAY {:?}); \
         peak memory +{growth} KiB",
        sent / 1024,
        ended - started,
        goaway(&frames)
    );
    assert!(goaway(&frames).is_some(), "no GOAWAY for the flood: {frames:?}");
    assert!(growth <= 4096, "the flood grew memory by {growth} KiB");
}

// ---------------------------------------------------------------------------------------------
// Floods from clients that never read.

/// The handshake timeout of the flood tests: a connection without a session lives this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes one flood sends.
const FLOOD_BUDGET_BYTES: usize = 24 << 20;
/// Longest time one flood runs.
const FLOOD_TIME: Duration = Duration::from_secs(30);

/// Writes `chunk` again and again without reading until a write fails (the gateway closed the
/// connection), [`FLOOD_BUDGET_BYTES`] are written or [`FLOOD_TIME`] passes: the bytes written
/// and, if it was closed, when (from the start).
async fn flood(writer: &mut WriteHalf<TlsStream<TcpStream>>, chunk: &[u8]) -> (usize, Option<Duration>) {
    let started = Instant::now();
    let mut sent = 0;
    while sent < FLOOD_BUDGET_BYTES {
        let left = FLOOD_TIME.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, writer.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => return (sent, Some(started.elapsed())),
            Err(_) => break,
        }
    }
    (sent, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_pings_from_a_client_that_never_reads_cost_little_and_end_with_the_connection() {
    let ca = TestCa::new();
    let cert = ListenerCert::new(&ca);
    let limits = format!(
        "handshake_timeout_secs = {}\nping_interval_secs = 1\npong_timeout_secs = 2\nopen_timeout_secs = 3\n",
        HANDSHAKE_TIMEOUT.as_secs()
    );
    let gateway = start(&cert, &limits, None);
    let pings: Vec<u8> = (0..4096u32).flat_map(|n| encode(frame::PING, 0, 0, &u64::from(n).to_be_bytes())).collect();
    for carrying_a_session in [false, true] {
        let raw = RawH2::connect(gateway.listener_addr(), &ca, &[]).await;
        let (_reader, mut writer) = tokio::io::split(raw.tls);
        if carrying_a_session {
            // A WebSocket stream that never sends <open/> and never answers the gateway's pings.
            writer.write_all(&headers(1, &websocket_connect_fields("/xmpp-websocket"), false)).await.unwrap();
            let deadline = Instant::now() + STEP;
            while gateway.metric("xmppgw_sessions_active").await < 1.0 {
                assert!(Instant::now() < deadline, "the session did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let rss_before = gateway.status_kib("VmRSS:");
        let (sent, closed_after) = flood(&mut writer, &pings).await;
        let growth = gateway.status_kib("VmHWM:").saturating_sub(rss_before);
        println!(
            "HTTP/2 PING flood without reading{}: {} KiB of PINGs written, connection closed after {closed_after:?}; \
             peak memory +{growth} KiB",
            if carrying_a_session { " (with a WebSocket stream that never sends <open/>)" } else { "" },
            sent / 1024
        );
        let closed_after = closed_after.expect("the flooding connection was never closed");
        // Without a session: the handshake timeout and the GOAWAY grace (1 s). With one, first the
        // session ends: no <open/> within its open timeout (3 s), its answer cannot be sent within
        // the send deadline (ping interval + pong timeout, 3 s), its stream gets the flush grace
        // (5 s) and is reset; then the same. A margin of 4 s on top.
        let session = if carrying_a_session { Duration::from_secs(3 + 3 + 5) } else { Duration::ZERO };
        let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(1) + session + Duration::from_secs(4);
        assert!(closed_after <= limit, "closed after {closed_after:?}");
        assert!(growth <= 2048, "the PING flood grew memory by {growth} KiB");
    }
}

/// Client data credit on a raw connection that grants the gateway no window of its own: what
/// the gateway's WINDOW_UPDATEs allow per stream (0: the connection), and which streams ended.
#[derive(Default)]
struct Credit {
    window: HashMap<u32, i64>,
    ended: std::collections::HashSet<u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_on_streams_that_grant_no_window_are_bounded_and_closed() {
    const STREAMS: u32 = 6;
    /// Peak memory growth allowed per flooding stream, in KiB: as on HTTP/1.1 (tests/hostile.rs,
    /// the element limit plus 192 KiB), plus what HTTP/2 queues per stream (64 KiB).
    const GROWTH_LIMIT_KIB: u64 = (ELEMENT_LIMIT / 1024) as u64 + 192 + 64;
    let ca = TestCa::new();
    let cert = ListenerCert::new(&ca);
    let gateway = start(&cert, "open_timeout_secs = 60\npong_timeout_secs = 2\nmax_sessions_per_address = 100\n", None);
    // The client's SETTINGS: the gateway may send it nothing on any stream (no pongs, no Close).
    let raw = RawH2::connect(gateway.listener_addr(), &ca, &[(setting::INITIAL_WINDOW_SIZE, 0)]).await;
    let (mut reader, mut writer) = tokio::io::split(raw.tls);
    let credit = std::sync::Arc::new(std::sync::Mutex::new(Credit::default()));
    let updated = std::sync::Arc::new(tokio::sync::Notify::new());
    // What the gateway grants: the connection starts at 65 535 (RFC 9113 §6.9.2), each stream at
    // its SETTINGS_INITIAL_WINDOW_SIZE (64 KiB, tests/http2.rs checks it).
    {
        let mut credit = credit.lock().unwrap();
        credit.window.insert(0, 65_535);
        for n in 0..STREAMS {
            credit.window.insert(1 + 2 * n, 65_536);
        }
    }
    let reading = {
        let (credit, updated) = (credit.clone(), updated.clone());
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                while let Some(got) = Frame::take_from(&mut buffer) {
                    let mut credit = credit.lock().unwrap();
                    match got.kind {
                        frame::WINDOW_UPDATE => {
                            let increment =
                                u32::from_be_bytes(got.payload[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
                            *credit.window.entry(got.stream).or_insert(0) += i64::from(increment);
                        }
                        frame::RST_STREAM => {
                            credit.ended.insert(got.stream);
                        }
                        frame::HEADERS | frame::DATA if got.flags & frame::END_STREAM != 0 => {
                            credit.ended.insert(got.stream);
                        }
                        _ => {}
                    }
                    drop(credit);
                    updated.notify_one();
                }
                match reader.read(&mut chunk).await {
                    Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
        })
    };
    writer.write_all(&encode(frame::SETTINGS, frame::ACK, 0, &[])).await.unwrap();
    let fields = websocket_connect_fields("/xmpp-websocket");
    let opening: Vec<u8> = (0..STREAMS).flat_map(|n| headers(1 + 2 * n, &fields, false)).collect();
    writer.write_all(&opening).await.unwrap();
    let deadline = Instant::now() + STEP;
    while gateway.metric("xmppgw_sessions_active").await < f64::from(STREAMS) {
        assert!(Instant::now() < deadline, "the sessions did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Masked 125-byte WebSocket pings, as many as each stream's window allows, round robin.
    let ping = harness::raw_ws::encode(true, harness::raw_ws::opcode::PING, &[b'p'; 125], Some([7, 1, 2, 3]));
    let pings_per_frame = 16_384 / ping.len();
    let payload: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * pings_per_frame).collect();
    let rss_before = gateway.status_kib("VmRSS:");
    let started = Instant::now();
    let mut sent = 0usize;
    let mut all_ended = None;
    while sent < FLOOD_BUDGET_BYTES && started.elapsed() < FLOOD_TIME {
        let mut batch = Vec::new();
        {
            let mut credit = credit.lock().unwrap();
            if credit.ended.len() as u32 == STREAMS {
                all_ended = Some(started.elapsed());
                break;
            }
            for n in 0..STREAMS {
                let stream = 1 + 2 * n;
                let room = credit.window[&0].min(credit.window[&stream]);
                if credit.ended.contains(&stream) || room < payload.len() as i64 {
                    continue;
                }
                batch.extend(encode(frame::DATA, 0, stream, &payload));
                *credit.window.get_mut(&0).unwrap() -= payload.len() as i64;
                *credit.window.get_mut(&stream).unwrap() -= payload.len() as i64;
                sent += payload.len();
            }
        }
        if batch.is_empty() {
            // Out of credit: wait for the gateway to read (and grant more) or to end a stream.
            let _ = tokio::time::timeout(Duration::from_millis(200), updated.notified()).await;
            continue;
        }
        if writer.write_all(&batch).await.is_err() {
            break;
        }
    }
    let growth = gateway.status_kib("VmHWM:").saturating_sub(rss_before);
    let per_stream = growth / u64::from(STREAMS);
    let ended = credit.lock().unwrap().ended.len();
    println!(
        "WebSocket ping flood on {STREAMS} HTTP/2 streams that grant no window: {:.1} MiB of pings sent; \
         {ended} streams ended by the gateway after {all_ended:?}; peak memory +{growth} KiB, \
         {per_stream} KiB per stream (limit {GROWTH_LIMIT_KIB})",
        sent as f64 / f64::from(1 << 20)
    );
    assert_eq!(ended as u32, STREAMS, "the gateway did not end every flooding stream");
    assert!(per_stream <= GROWTH_LIMIT_KIB, "{per_stream} KiB per flooding stream");
    let stalled = gateway.wait_for_log("outcome=\"client_stalled\"", STEP);
    assert!(stalled.contains("client_stalled"), "{stalled}");
    reading.abort();
}

// ---------------------------------------------------------------------------------------------
// Descriptors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_one_connection_take_descriptor_slots_and_healthz_still_answers() {
    /// RLIMIT_NOFILE of the gateway: (256 - 128 reserved - 16 lent to connects) / 2 per slot
    /// = 56 slots.
    const NOFILE: usize = 256;
    const SLOTS: usize = 56;
    const ASKED: usize = SLOTS + 10;
    let ca = TestCa::new();
    let cert = ListenerCert::new(&ca);
    let gateway = GatewayProcess::start_with_ulimit(
        &format!(
            "[listener]\nallow_missing_origin = true\n{}\n[limits]\nmax_sessions_per_address = 1000\nopen_timeout_secs = 60\n\
             [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"127.0.0.1:9\"\n",
            cert.toml_lines()
        ),
        &format!("-n {NOFILE}"),
    );
    let mut connection = H2Connection::connect(gateway.listener_addr(), &ca).await;
    let mut sessions = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..ASKED {
        match connection.websocket("/xmpp-websocket", &[]).await {
            Ok(client) => sessions.push(client),
            Err(answer) => refused.push(answer.status),
        }
    }
    let request = "GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    let (health, _) = harness::ws_client::raw_http(&gateway.admin_addr(), request).await;
    let held = gateway.open_descriptors();
    println!(
        "{ASKED} sessions asked for on one HTTP/2 connection with {SLOTS} descriptor slots: {} admitted, {} refused \
         with {:?}; the gateway holds {held} descriptors (RLIMIT_NOFILE {NOFILE}); /healthz {health}",
        sessions.len(),
        refused.len(),
        refused.first()
    );
    // This connection holds one slot, each session one, and the accept loop one for the next
    // connection (taken right after it accepted this one, so all but certainly by now).
    assert!(
        sessions.len() == SLOTS - 2 || sessions.len() == SLOTS - 1,
        "{} sessions with {SLOTS} slots",
        sessions.len()
    );
    assert!(refused.iter().all(|status| *status == 503), "{refused:?}");
    assert_eq!(health, 200);
    let limited = gateway.metric("xmppgw_websocket_handshakes_rejected_total{reason=\"limit-descriptors\"}").await;
    assert_eq!(limited, refused.len() as f64);
}
