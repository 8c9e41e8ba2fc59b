//! The slow reader, measured on the real binary: a client that stops reading while its server
//! floods slows only its own upstream (TCP back-pressure reaches the server), the gateway's
//! memory stays bounded, and another session on the same gateway keeps relaying promptly. And
//! the other way: a server that stops reading while its client sends ends its session after a
//! send deadline, as a server that went away (it does not hold the session for ever).
//!
//! Linux only (reads the gateway's VmRSS/VmHWM from /proc).

#![allow(clippy::unwrap_used)]

mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::fake_server::FakeServer;
use harness::process::{proc_status_kib, GatewayProcess};
use harness::raw_ws::RawWs;
use harness::ws_client::WsClient;
use harness::xmpp::{DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::TestCa;

/// Stanzas the server tries to send to the client that never reads.
const FLOOD_STANZAS: usize = 50_000;
/// Size of each flood stanza on the wire.
const STANZA_BYTES: usize = 1024;
/// The server counts as stalled when no stanza went out for this long.
const STALL_QUIET: Duration = Duration::from_secs(2);
/// Upper bound on the whole flood phase.
const FLOOD_DEADLINE: Duration = Duration::from_secs(60);
/// The gateway's peak RSS may grow by at most this much over its idle RSS. Justification: the
/// gateway holds, per session, at most one element being split (`limits.max_element_bytes`,
/// 256 KiB by default) plus one 16 KiB read chunk and one outgoing WebSocket message; the rest
/// of the flood waits in kernel socket buffers (about 7 MiB measured on loopback) or at the
/// server. 8 MiB leaves room for the allocator, TLS records, the second session and the debug
/// build (measured growth: about 0.1 MiB), while a gateway that queued the flood in user space
/// would hold the ~40 MiB the kernel buffers cannot.
const RSS_GROWTH_LIMIT_KIB: u64 = 8 * 1024;
/// A relay through the second session must take less than this while the first one is stuck.
const PROMPT: Duration = Duration::from_secs(1);

fn flood_stanza(index: usize) -> String {
    let head = format!("<message to='slow@example.com' id='f{index:06}'><body>");
    let tail = "</body></message>";
    format!("{head}{}{tail}", "x".repeat(STANZA_BYTES - head.len() - tail.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_slows_only_its_own_upstream_and_memory_stays_bounded() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&format!(
        "[listener]\nallow_missing_origin = true\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ));
    let pid = gateway.pid();

    // The slow reader: handshake and <open/>, then it never reads again.
    let mut slow = RawWs::connect(&gateway.url).await;
    slow.send_text(OPEN).await;
    let mut slow_upstream = server.accept().await;
    slow_upstream.open_with_starttls(DOMAIN, FEATURES).await;
    let idle_rss = proc_status_kib(pid, "VmRSS:");

    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let flood = tokio::spawn(async move {
        for index in 0..FLOOD_STANZAS {
            slow_upstream.write(&flood_stanza(index)).await;
            counter.store(index + 1, Ordering::Relaxed);
        }
        slow_upstream
    });

    // Poll until the server's writes stop advancing (back-pressure), bounded in time.
    let started = Instant::now();
    let mut last = (0, Instant::now());
    let stalled_at = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::Relaxed);
        assert!(now < FLOOD_STANZAS, "the server sent the whole flood: nothing pushed back");
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= STALL_QUIET {
            break now;
        }
        assert!(started.elapsed() < FLOOD_DEADLINE, "the flood neither finished nor stalled in time");
    };
    let peak_rss = proc_status_kib(pid, "VmHWM:");
    let rss = proc_status_kib(pid, "VmRSS:");
    let growth = peak_rss.saturating_sub(idle_rss);
    println!(
        "slow reader: server stalled after {stalled_at} of {FLOOD_STANZAS} stanzas ({} KiB of {} KiB) in {:?}; \
         gateway VmRSS idle {idle_rss} KiB, now {rss} KiB, peak (VmHWM) {peak_rss} KiB, growth {growth} KiB \
         (limit {RSS_GROWTH_LIMIT_KIB} KiB)",
        stalled_at * STANZA_BYTES / 1024,
        FLOOD_STANZAS * STANZA_BYTES / 1024,
        last.1 - started,
    );
    assert!(stalled_at * 2 < FLOOD_STANZAS, "the server got {stalled_at} stanzas out before stalling");
    assert!(growth < RSS_GROWTH_LIMIT_KIB, "gateway RSS grew by {growth} KiB");

    // Meanwhile a second session on the same gateway relays both ways promptly.
    let mut other = WsClient::connect(&gateway.url).await;
    other.send(OPEN).await;
    let mut other_upstream = server.accept().await;
    other_upstream.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(other.recv_text().await.starts_with("<open "));
    other.recv_text().await;
    for round in 0..5 {
        let begun = Instant::now();
        other
            .send(&format!(
                r#"<message xmlns="jabber:client" to="a@example.com" id="up{round}"><body>x</body></message>"#
            ))
            .await;
        other_upstream.read_until(&format!("id=\"up{round}\"")).await;
        other_upstream.read_until("</message>").await;
        other_upstream.write(&format!("<message to='b@example.com' id='down{round}'><body>y</body></message>")).await;
        let down = other.recv_text().await;
        assert!(down.contains(&format!("down{round}")), "{down}");
        let took = begun.elapsed();
        assert!(took < PROMPT, "round trip {round} through the second session took {took:?}");
        if round == 0 {
            println!("slow reader: second session round trip {took:?} while the first is stuck");
        }
    }
    // The first session's upstream is still stuck where it was: only it was slowed.
    assert_eq!(sent.load(Ordering::Relaxed), stalled_at, "the stuck upstream moved");
    assert!(!flood.is_finished());
    flood.abort();
    let rss_after = proc_status_kib(pid, "VmHWM:");
    assert!(rss_after.saturating_sub(idle_rss) < RSS_GROWTH_LIMIT_KIB, "peak RSS {rss_after} KiB");
    drop(slow);
}

/// A client message of about 16 KiB.
fn big_message(index: usize) -> String {
    let head = format!("<message xmlns='jabber:client' to='a@example.com' id='b{index:06}'><body>");
    format!("{head}{}</body></message>", "x".repeat(16 * 1024))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_ends_its_session_after_the_send_deadline() {
    /// A ping interval plus the pong deadline: the time a server (like a client) gets to take
    /// what the gateway writes.
    const SEND_DEADLINE: Duration = Duration::from_secs(6);
    /// The client's messages, at most (about 16 MiB; the buffers on the way hold less).
    const MESSAGES: usize = 1_000;
    let ca = TestCa::new();
    let server = FakeServer::start_with_small_receive_buffers(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start(&format!(
        "[listener]\nallow_missing_origin = true\n[limits]\nping_interval_secs = 4\npong_timeout_secs = 2\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ));
    let mut client = RawWs::connect(&gateway.url).await;
    client.send_text(OPEN).await;
    let mut upstream = server.accept().await;
    upstream.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.contains("features"));
    // The server reads nothing more. The client sends until its writes fail (the gateway
    // closed the connection), or stop moving for a send deadline (what the kernel buffers on
    // the way hold is full), or it has sent them all.
    let started = Instant::now();
    let mut sent = 0;
    for index in 0..MESSAGES {
        let frame = harness::raw_ws::encode(true, 1, big_message(index).as_bytes(), Some([1, 2, 3, 4]));
        match tokio::time::timeout(SEND_DEADLINE, client.try_write_raw(&frame)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let flood_ended = started.elapsed();
    let series = "xmppgw_sessions_ended_total{outcome=\"server_vanished\"}";
    // The gateway gives the server a send deadline to take a write, then ends the session as
    // the server's; polled (the outcome is counted once the session's task has finished),
    // within three deadlines of the flood's end.
    let ended = gateway.metric_settles(series, SEND_DEADLINE * 3, |ended| ended >= 1.0).await;
    println!(
        "a server that stops reading: the client got {sent} of {MESSAGES} messages ({} KiB) out in {flood_ended:?}; \
         server_vanished sessions {ended} at {:?}",
        sent * 16,
        started.elapsed()
    );
    assert_eq!(ended, 1.0, "the session did not end when its server stopped reading: it froze");
    assert!(sent < MESSAGES, "every message went through: the server's socket pushed nothing back");
    drop(upstream);
}
