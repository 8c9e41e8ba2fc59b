//! The BOSH front door under attack, on the built binary (issue 15): hostile input holds the
//! same bounds as on the WebSocket side (tests/hostile.rs, tests/hostile_cpu.rs).
//!
//! - CPU per request: each worst XML shape as the child of a `<body>` of a live session (parsed
//!   by the BOSH body parser, then checked by the session core, then refused or relayed) costs
//!   the gateway at most [`MAX_RATIO`] times an ordinary body of the same size.
//! - Memory per session: clients that send maximum-size bodies as fast as the gateway takes them
//!   and never read the answers, to a server that floods them and reads slowly: the growth per
//!   session stays within what the design may hold, and every such session ends.
//! - Requests per session: one client sending requests for its own session on many connections
//!   keeps no more of them than `limits.max_pending_connections_per_address` plus what its
//!   session holds: in-window requests, requests beyond the window (item-not-found, which ends
//!   the session), and requests refused while the session is busy (its server does not read).
//!
//! Every figure is printed (`cargo test --test bosh_hostile -- --nocapture`); docs/OPERATIONS.md
//! ("What an attacker can cost you") quotes them. Linux only (reads /proc).

#![allow(clippy::unwrap_used)]

mod harness;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use harness::fake_server::{FakeServer, ServerConn};
use harness::net::{connect_from, loopback};
use harness::process::{cpu_since, threads_cpu, GatewayProcess};
use harness::shapes::{self, MAX_RATIO};
use harness::xmpp::{DOMAIN, PLAIN_FEATURES};
use harness::{TestCa, STEP};

use xmpp_ws_gateway::config::BODY_OVERHEAD_BYTES;
use xmpp_ws_gateway::server::max_write_buffer_bytes;
use xmpp_ws_gateway::xml::client::ClientLimits;

const NS: &str = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";
const FIRST_RID: u64 = 1_000_000;

/// The measuring tests run one at a time (cargo runs a binary's tests in parallel), so that no
/// measurement loads the machine under another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A gateway process serving example.com through `server`, with `[limits]` lines `limits` and
/// `[bosh]` lines `bosh`.
fn gateway(server: &FakeServer, ca: &TestCa, limits: &str, bosh: &str) -> GatewayProcess {
    GatewayProcess::start(&format!(
        "[listener]\nallow_missing_origin = true\n[limits]\n{limits}\n[bosh]\n{bosh}\n\
         [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ))
}

/// The value of attribute `name` in the first tag of `body`.
fn attr(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + body[start..].find('"')?;
    Some(body[start..end].to_string())
}

/// The condition of a terminal answer; `None` for any other answer.
fn condition(body: &str) -> Option<String> {
    (attr(body, "type").as_deref() == Some("terminate")).then(|| attr(body, "condition").unwrap_or_default())
}

/// One keep-alive HTTP/1.1 connection to the BOSH endpoint.
struct Http {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Http {
    async fn open(from: IpAddr, gateway: &GatewayProcess, small_buffers: bool) -> Http {
        Http { stream: connect_from(from, gateway.listener_addr(), small_buffers).await, received: Vec::new() }
    }

    /// Writes one POST carrying `body`.
    async fn send(&mut self, body: &str) -> std::io::Result<()> {
        let request = format!(
            "POST /http-bind HTTP/1.1\r\nHost: gateway\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await
    }

    /// The next response (status, body) within `limit`; `None` if the connection ended or the
    /// limit passed first.
    async fn response(&mut self, limit: Duration) -> Option<(u16, String)> {
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.received[..end]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if self.received.len() >= end + 4 + length {
                        let body = String::from_utf8_lossy(&self.received[end + 4..end + 4 + length]).into_owned();
                        self.received.drain(..end + 4 + length);
                        return Some((head.split(' ').nth(1)?.parse().ok()?, body));
                    }
                }
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(limit, read).await.ok().flatten()
    }
}

/// A live session: its sid and last rid.
struct Session {
    sid: String,
    rid: u64,
}

impl Session {
    /// The body of request `rid` with `children`.
    fn body_with_rid(&self, rid: u64, children: &str) -> String {
        format!("<body {NS} rid='{rid}' sid='{}'>{children}</body>", self.sid)
    }

    /// The next request's body, with `children`.
    fn next(&mut self, children: &str) -> String {
        self.rid += 1;
        self.body_with_rid(self.rid, children)
    }
}

/// Creates a session from `from` through STARTTLS (hold 1, so `requests` 2); the session and
/// the server's side.
async fn create(gateway: &GatewayProcess, server: &FakeServer, from: IpAddr) -> (Session, ServerConn) {
    let mut http = Http::open(from, gateway, false).await;
    let creation =
        format!("<body {NS} rid='{FIRST_RID}' to='{DOMAIN}' wait='60' hold='1' ver='1.11' xmpp:version='1.0'/>");
    http.send(&creation).await.unwrap();
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
    let (status, body) = http.response(STEP).await.expect("the creation answer");
    assert_eq!(status, 200, "{body}");
    let sid = attr(&body, "sid").unwrap_or_else(|| panic!("no sid: {body}"));
    (Session { sid, rid: FIRST_RID }, conn)
}

/// Reads (and drops) what the gateway sends upstream until it closes the connection or `limit`
/// passes; how long that took, `None` if it did not close.
async fn drain_upstream(conn: ServerConn, limit: Duration) -> Option<Duration> {
    let mut tls = conn.into_tls();
    let started = Instant::now();
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), tls.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU per request.

/// The default `limits.max_element_bytes`; every shape is just under it.
const CPU_ELEMENT_BYTES: usize = 256 * 1024;
/// Shapes are built up to this size (the `<body>` around them must fit too).
const SHAPE_BYTES: usize = CPU_ELEMENT_BYTES - 200;
/// Requests per shape (each on a fresh session); the least CPU is kept: it only grows with
/// interference.
const CPU_REPS: usize = 3;

/// One request carrying `child` on a fresh session: the gateway's CPU from sending it to its
/// answer (a relayed child's request is held for the session's `wait` of 1 s, which costs
/// nothing), and the answer.
async fn cpu_of_one_request(gateway: &GatewayProcess, server: &FakeServer, child: &str) -> (Duration, String) {
    let (mut session, conn) = create(gateway, server, loopback(1)).await;
    let upstream = tokio::spawn(drain_upstream(conn, Duration::from_secs(30)));
    let body = session.next(child);
    let mut http = Http::open(loopback(1), gateway, false).await;
    let before = threads_cpu(gateway.pid());
    http.send(&body).await.unwrap();
    let answer = http.response(Duration::from_secs(60)).await;
    let cpu = cpu_since(gateway.pid(), &before);
    let outcome = match answer {
        None => "no answer within 60 s".to_owned(),
        Some((status, body)) => match condition(&body) {
            Some(condition) => format!("refused: {condition} ({status})"),
            None if status == 200 => "relayed".to_owned(),
            None => format!("HTTP {status}"),
        },
    };
    upstream.abort();
    (cpu, outcome)
}

/// The least CPU of [`CPU_REPS`] requests carrying `child`, and the last outcome.
async fn min_cpu_of_requests(gateway: &GatewayProcess, server: &FakeServer, child: &str) -> (Duration, String) {
    let mut best = Duration::MAX;
    let mut outcome = String::new();
    for _ in 0..CPU_REPS {
        let (cpu, last) = cpu_of_one_request(gateway, server, child).await;
        best = best.min(cpu);
        outcome = last;
    }
    (best, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bosh_request_with_a_worst_shape_costs_a_bounded_multiple_of_an_ordinary_body() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = gateway(&server, &ca, "", "max_wait_secs = 1\ninactivity_secs = 2\npolling_secs = 0\n");
    // Warm up (first-session allocations, lazy statics).
    cpu_of_one_request(&gateway, &server, &shapes::roster(1000)).await;
    let (reference, outcome) = min_cpu_of_requests(&gateway, &server, &shapes::roster(SHAPE_BYTES)).await;
    assert_eq!(outcome, "relayed", "the ordinary body is relayed");
    println!(
        "\nbinary, BOSH request on a live session: ordinary roster body {:.2} ms of gateway CPU",
        reference.as_secs_f64() * 1e3
    );
    let mut rows = vec![("(ordinary) message with a long body", shapes::long_message(SHAPE_BYTES))];
    rows.extend(shapes::worst(SHAPE_BYTES, ClientLimits::default().max_depth));
    let mut over = Vec::new();
    for (shape, child) in rows {
        assert!(child.len() <= SHAPE_BYTES, "{shape}: {}", child.len());
        let (cpu, outcome) = min_cpu_of_requests(&gateway, &server, &child).await;
        let ratio = cpu.as_secs_f64() / reference.as_secs_f64();
        println!("  {shape:<58} {:>9.2} ms  ratio {ratio:>7.2}  {outcome}", cpu.as_secs_f64() * 1e3);
        if ratio > MAX_RATIO || outcome.starts_with("no answer") {
            over.push(format!("{shape}: {ratio:.1} ({outcome})"));
        }
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times an ordinary body: {over:?}");
}

// ---------------------------------------------------------------------------------------------
// Memory per session.

/// The element limit of the memory test's gateway.
const ELEMENT_LIMIT: usize = 65_536;
/// Sessions flooding at once (the growth is divided among them).
const FLOOD_SESSIONS: usize = 6;
/// The `hold` the flooding clients ask for, and the `requests` it grants.
const HOLD: usize = 1;
const REQUESTS: usize = HOLD + 1;
/// The size of one flooding stanza, either way: just under the element limit.
const STANZA_BYTES: usize = ELEMENT_LIMIT - 1024;
/// Most bytes one flooding client connection (and its server) sends.
const FLOOD_BUDGET_BYTES: usize = 32 << 20;
/// The handshake timeout of the memory test's gateway: once its session is over, a connection
/// is pending again and is closed this long after its last request of a session.
const FLOOD_HANDSHAKE_TIMEOUT_SECS: u64 = 2;
/// Longest time one flood runs.
const FLOOD_TIME: Duration = Duration::from_secs(20);
/// The server reads this much of what the gateway relays, then pauses for [`SLOW_READ_PAUSE`].
const SLOW_READ_BYTES: usize = 16 * 1024;
const SLOW_READ_PAUSE: Duration = Duration::from_millis(20);

/// Peak memory growth allowed per flooding session, in KiB: what the design may hold for one
/// session, plus 192 KiB (as on the WebSocket side) for the session's state, the allocator and
/// the debug build. With `B` the largest body (element limit + [`BODY_OVERHEAD_BYTES`]) and `Q`
/// the client queue bound (`max_queued_bytes`, what a WebSocket may hold unsent: element limit
/// + 20 KiB):
///
/// - the session's request channel, `hold + 3` parsed bodies, and on each of the `requests`
///   connections a body being read: `(hold + 3 + requests) × B`;
/// - the stanzas queued for the client (`Q`), the retransmission cache of the last `requests`
///   answers, and the answer in each connection's write buffer: `(1 + 2 × requests) × Q`;
/// - the server's element being parsed: the element limit.
///
/// A gateway that queued what the server sends while the client does not fetch it, or every
/// answer, or every body it is sent, would hold megabytes per session.
fn flood_growth_limit_kib() -> u64 {
    let body = ELEMENT_LIMIT + BODY_OVERHEAD_BYTES;
    let queued = max_write_buffer_bytes(ELEMENT_LIMIT);
    let design = (HOLD + 3 + REQUESTS) * body + (1 + 2 * REQUESTS) * queued + ELEMENT_LIMIT;
    (design / 1024) as u64 + 192
}

/// How one flooding session went.
#[derive(Debug)]
struct Flood {
    /// Bytes of bodies the client wrote.
    client_sent: usize,
    /// When the gateway closed the client's last connection, from the start.
    client_closed_after: Option<Duration>,
    /// Bytes of stanzas the server wrote.
    server_sent: usize,
    /// When the gateway closed the upstream connection, from the start.
    upstream_closed_after: Option<Duration>,
}

/// A client connection that writes the bodies of rids `first`, `first + step`, ... as fast as
/// the gateway takes them and never reads (once its budget is spent, it waits for the close);
/// the bytes written and when the gateway closed the connection.
async fn flood_connection(mut http: Http, session: &Session, first: u64, step: u64) -> (usize, Option<Duration>) {
    let started = Instant::now();
    let stanza = shapes::long_message(STANZA_BYTES);
    let mut sent = 0;
    let mut rid = first;
    while sent < FLOOD_BUDGET_BYTES {
        let body = session.body_with_rid(rid, &stanza);
        let left = FLOOD_TIME.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, http.send(&body)).await {
            Ok(Ok(())) => sent += body.len(),
            Ok(Err(_)) => return (sent, Some(started.elapsed())),
            Err(_) => return (sent, None),
        }
        rid += step;
    }
    // The budget is spent: only the close is awaited now.
    let mut sink = [0u8; 4096];
    loop {
        let left = FLOOD_TIME.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, http.stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (sent, Some(started.elapsed())),
            Ok(Ok(_)) => {}
            Err(_) => return (sent, None),
        }
    }
}

/// One flooding session: `requests` client connections from `from` with small buffers sending
/// maximum-size bodies in rid order, never reading; its server writing maximum-size stanzas as
/// fast as it can and reading slowly.
async fn flood_session(gateway: &GatewayProcess, from: IpAddr, session: Session, conn: ServerConn) -> Flood {
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(conn.into_tls());
    let server_writes = tokio::spawn(async move {
        let stanza = shapes::long_message(STANZA_BYTES).replace(" xmlns='jabber:client'", "");
        let mut sent = 0;
        while sent < FLOOD_BUDGET_BYTES {
            let left = FLOOD_TIME.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, writer.write_all(stanza.as_bytes())).await {
                Ok(Ok(())) => sent += stanza.len(),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        (sent, writer)
    });
    let server_reads = tokio::spawn(async move {
        let mut buf = vec![0u8; SLOW_READ_BYTES];
        let limit = FLOOD_TIME + STEP;
        loop {
            match tokio::time::timeout(limit.saturating_sub(started.elapsed()), reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => tokio::time::sleep(SLOW_READ_PAUSE).await,
                Err(_) => return None,
            }
        }
    });
    let session = std::sync::Arc::new(session);
    let mut clients = Vec::new();
    for index in 0..REQUESTS as u64 {
        let http = Http::open(from, gateway, true).await;
        let session = session.clone();
        clients.push(tokio::spawn(async move {
            flood_connection(http, &session, FIRST_RID + 1 + index, REQUESTS as u64).await
        }));
    }
    let mut client_sent = 0;
    let mut client_closed_after = Some(Duration::ZERO);
    for client in clients {
        let (sent, closed) = client.await.unwrap();
        client_sent += sent;
        client_closed_after = match (client_closed_after, closed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let upstream_closed_after = server_reads.await.unwrap();
    let (server_sent, writer) = server_writes.await.unwrap();
    drop(writer);
    Flood { client_sent, client_closed_after, server_sent, upstream_closed_after }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_flooding_maximum_bodies_without_reading_are_bounded_and_ended() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = gateway(
        &server,
        &ca,
        &format!("max_element_bytes = {ELEMENT_LIMIT}\nhandshake_timeout_secs = {FLOOD_HANDSHAKE_TIMEOUT_SECS}\n"),
        "max_wait_secs = 2\ninactivity_secs = 3\npolling_secs = 0\n",
    );
    let mut sessions = Vec::new();
    for index in 0..FLOOD_SESSIONS {
        let from = loopback(20 + index as u8);
        let (session, conn) = create(&gateway, &server, from).await;
        sessions.push((from, session, conn));
    }
    let rss_before = gateway.status_kib("VmRSS:");
    let floods: Vec<_> = sessions
        .into_iter()
        .map(|(from, session, conn)| {
            let gateway = &gateway;
            async move { flood_session(gateway, from, session, conn).await }
        })
        .collect();
    let results = futures_util::future::join_all(floods).await;
    let peak = gateway.status_kib("VmHWM:");
    let growth_per_session = peak.saturating_sub(rss_before) / FLOOD_SESSIONS as u64;
    let limit = flood_growth_limit_kib();
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    let mut ended = [0.0; 3];
    for (count, outcome) in ended.iter_mut().zip(["client_stalled", "client_vanished", "client_error"]) {
        *count = gateway.metric(&format!("xmppgw_sessions_ended_total{{outcome=\"{outcome}\"}}")).await;
    }
    let [stalled, vanished, errors] = ended;
    println!(
        "BOSH flood: {FLOOD_SESSIONS} sessions sent {:.1} MiB of bodies without reading, their servers {:.1} MiB \
         of stanzas; RSS {rss_before} KiB -> peak {peak} KiB: {growth_per_session} KiB per session (limit {limit}); \
         sessions ended: {stalled} client_stalled, {vanished} client_vanished, {errors} client_error",
        mib(results.iter().map(|flood| flood.client_sent).sum()),
        mib(results.iter().map(|flood| flood.server_sent).sum()),
    );
    for (index, flood) in results.iter().enumerate() {
        println!("  session {index}: {flood:?}");
        assert!(flood.upstream_closed_after.is_some(), "session {index} was never ended; log: {}", gateway.log_text());
        assert!(flood.client_closed_after.is_some(), "session {index}: a client connection was never closed");
    }
    assert!(
        stalled + vanished + errors >= FLOOD_SESSIONS as f64,
        "not every flooding session ended for its client; log: {}",
        gateway.log_text()
    );
    assert!(
        growth_per_session <= limit,
        "memory grew by {growth_per_session} KiB per flooding BOSH session (limit {limit})"
    );
}

// ---------------------------------------------------------------------------------------------
// Requests per session.

/// The pending-connection cap per address of the requests test's gateway.
const PENDING_PER_ADDRESS: usize = 6;
/// Connections the attacker opens for its session.
const ATTACK_CONNECTIONS: usize = 40;
/// A held request is answered within this (the `wait` of 2 s and room).
const ANSWER_LIMIT: Duration = Duration::from_millis(300);

/// The connections a BOSH session may keep out of the pending caps: one per request it may hold
/// (`requests`) and one to send on (src/listener/lease.rs).
const SESSION_CONNECTIONS: usize = REQUESTS + 1;

/// Connections one client may make the gateway hold when it ends its session by overactivity:
/// its pending connections and its session's connections, and one more for the session's
/// upstream while it is being closed.
const ATTACK_DESCRIPTOR_LIMIT: usize = PENDING_PER_ADDRESS + SESSION_CONNECTIONS + 1;

/// The requests test's gateway: a short `wait`, `polling` 1 s unless `polling_secs` says.
fn requests_gateway(server: &FakeServer, ca: &TestCa, polling_secs: u64) -> GatewayProcess {
    gateway(
        server,
        ca,
        &format!(
            "handshake_timeout_secs = 5\nmax_pending_connections = 64\n\
             max_pending_connections_per_address = {PENDING_PER_ADDRESS}\n"
        ),
        &format!("max_wait_secs = 2\ninactivity_secs = 5\npolling_secs = {polling_secs}\n"),
    )
}

/// Connections one client may make the gateway hold while its session lives: its pending
/// connections and its session's connections.
const LIVE_DESCRIPTOR_LIMIT: usize = PENDING_PER_ADDRESS + SESSION_CONNECTIONS;

/// [`ATTACK_CONNECTIONS`] connections from `from`, in turn, each with the next request of
/// `session`: the connections, and their answers by kind (`unanswered`: none within
/// [`ANSWER_LIMIT`]).
async fn requests_on_fresh_connections(
    gateway: &GatewayProcess,
    from: IpAddr,
    session: &mut Session,
    unanswered: &str,
) -> (Vec<Http>, std::collections::BTreeMap<String, usize>) {
    let mut connections = Vec::new();
    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..ATTACK_CONNECTIONS {
        let mut http = Http::open(from, gateway, false).await;
        let answer = match http.send(&session.next("")).await {
            Err(_) => "connection refused".to_owned(),
            Ok(()) => match http.response(ANSWER_LIMIT).await {
                None => unanswered.to_owned(),
                Some((429, _)) => "429 (pending cap)".to_owned(),
                Some((status, body)) => match condition(&body) {
                    Some(condition) => format!("{status} {condition}"),
                    None => format!("{status} answered"),
                },
            },
        };
        *answers.entry(answer).or_default() += 1;
        connections.push(http);
    }
    (connections, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_window_requests_on_many_connections_stay_within_the_pending_cap() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = requests_gateway(&server, &ca, 0);
    let attacker = loopback(42);
    let descriptors_before = gateway.open_descriptors();
    let (mut session, _conn) = create(&gateway, &server, attacker).await;
    // Each request in rid order on a connection of its own, as a client within every rule may
    // send them: each answers the one before (hold 1), and the connections are kept open.
    let mut connections: Vec<Http> = Vec::new();
    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..ATTACK_CONNECTIONS {
        let mut http = Http::open(attacker, &gateway, false).await;
        let sent = http.send(&session.next("")).await;
        let answer = match (sent, connections.last_mut()) {
            (Err(_), _) => "connection refused".to_owned(),
            (Ok(()), None) => "first".to_owned(),
            (Ok(()), Some(previous)) => match previous.response(STEP).await {
                None => "previous closed".to_owned(),
                Some((status, body)) => match condition(&body) {
                    Some(condition) => format!("{status} {condition}"),
                    None => format!("{status} answered"),
                },
            },
        };
        *answers.entry(answer).or_default() += 1;
        connections.push(http);
    }
    let held = gateway
        .descriptors_settle(descriptors_before + 1 + LIVE_DESCRIPTOR_LIMIT)
        .await
        .saturating_sub(descriptors_before + 1);
    println!(
        "{ATTACK_CONNECTIONS} connections each with one in-window request of one session: {answers:?}; the gateway \
         holds {held} descriptors for them (limit {LIVE_DESCRIPTOR_LIMIT}: {PENDING_PER_ADDRESS} pending per \
         address, the session's {SESSION_CONNECTIONS})"
    );
    assert!(answers.get("200 answered").copied().unwrap_or(0) >= PENDING_PER_ADDRESS, "{answers:?}");
    assert!(
        held <= LIVE_DESCRIPTOR_LIMIT,
        "{held} descriptors held for one client's session (limit {LIVE_DESCRIPTOR_LIMIT}): answered connections \
         escaped the pending cap"
    );
    drop(connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_many_connections_end_the_session_and_stay_within_the_pending_cap() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = requests_gateway(&server, &ca, 1);
    let attacker = loopback(40);
    let descriptors_before = gateway.open_descriptors();
    let (mut session, mut conn) = create(&gateway, &server, attacker).await;
    // Each connection in turn: a request for a later rid, leaving the next one out, so that
    // none can be processed and they pile up in the session (a request that could be
    // processed would answer the one held before it), and its answer when it comes at once.
    // The window (`requests` rids ahead of the last processed one) is full after the first:
    // the next ends the session (item-not-found, XEP-0124 §14.3).
    session.rid += 1;
    let started = Instant::now();
    let (connections, answers) =
        requests_on_fresh_connections(&gateway, attacker, &mut session, "held (or closed)").await;
    let held = gateway
        .descriptors_settle(descriptors_before + ATTACK_DESCRIPTOR_LIMIT)
        .await
        .saturating_sub(descriptors_before);
    println!(
        "{ATTACK_CONNECTIONS} connections with requests for one session in {:?}: {answers:?}; the gateway holds \
         {held} descriptors for them (limit {ATTACK_DESCRIPTOR_LIMIT}: {PENDING_PER_ADDRESS} pending per address, \
         the session's {SESSION_CONNECTIONS}, the upstream)",
        started.elapsed(),
    );
    assert!(
        answers.keys().any(|answer| answer.ends_with("item-not-found") || answer.ends_with("policy-violation")),
        "requests beyond the window must end the session: {answers:?}"
    );
    // The session is over: its sid is unknown, and its upstream was closed.
    let mut other = Http::open(loopback(41), &gateway, false).await;
    other.send(&session.next("")).await.unwrap();
    let (_, after) = other.response(STEP).await.expect("an answer");
    assert_eq!(condition(&after).as_deref(), Some("item-not-found"), "{after}");
    let (received, _) = conn.read_to_end().await;
    assert!(!received.contains("<message"), "{received}");
    assert!(
        held <= ATTACK_DESCRIPTOR_LIMIT,
        "{held} descriptors held for one client's session (limit {ATTACK_DESCRIPTOR_LIMIT}): refused requests \
         took their connections out of the pending cap"
    );
    drop(connections);
}

/// Connections one client may make the gateway hold while its session cannot take requests
/// (its server does not read): its pending connections, its session's connections (requests
/// waiting in the session's channel keep theirs pending), and its upstream.
const BUSY_DESCRIPTOR_LIMIT: usize = PENDING_PER_ADDRESS + SESSION_CONNECTIONS + 1;
/// Most bodies sent to fill the upstream of a server that does not read.
const FILL_BODIES: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_while_the_session_is_busy_leave_their_connections_pending() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = requests_gateway(&server, &ca, 0);
    let attacker = loopback(43);
    let descriptors_before = gateway.open_descriptors();
    // The server never reads: the session's writes upstream fill the socket buffers, and then
    // its task waits on the upstream and takes no more requests.
    let (mut session, _conn) = create(&gateway, &server, attacker).await;
    let stanza = shapes::long_message(CPU_ELEMENT_BYTES - 1024);
    let mut pair = [Http::open(attacker, &gateway, false).await, Http::open(attacker, &gateway, false).await];
    let mut bodies = 0;
    pair[0].send(&session.next(&stanza)).await.unwrap();
    loop {
        bodies += 1;
        assert!(bodies < FILL_BODIES, "the upstream of a server that does not read never filled");
        let (current, previous) = (bodies % 2, (bodies + 1) % 2);
        pair[current].send(&session.next(&stanza)).await.unwrap();
        // A session that takes requests answers the previous one at once (hold 1).
        if pair[previous].response(Duration::from_secs(2)).await.is_none() {
            break;
        }
    }
    // The attack: requests for the session on fresh connections while it is busy.
    let (connections, answers) =
        requests_on_fresh_connections(&gateway, attacker, &mut session, "queued (or closed)").await;
    let held =
        gateway.descriptors_settle(descriptors_before + BUSY_DESCRIPTOR_LIMIT).await.saturating_sub(descriptors_before);
    println!(
        "a session whose server does not read, busy after {bodies} bodies of {} KiB; {ATTACK_CONNECTIONS} more \
         connections with requests for it: {answers:?}; the gateway holds {held} descriptors for the client \
         (limit {BUSY_DESCRIPTOR_LIMIT}: {PENDING_PER_ADDRESS} pending per address, the session's \
         {SESSION_CONNECTIONS}, the upstream)",
        stanza.len() / 1024,
    );
    assert!(
        answers.keys().any(|answer| answer.ends_with("policy-violation")),
        "requests beyond the session's channel are policy violations: {answers:?}"
    );
    assert!(
        held <= BUSY_DESCRIPTOR_LIMIT,
        "{held} descriptors held for one client's session (limit {BUSY_DESCRIPTOR_LIMIT}): requests refused by a \
         busy session took their connections out of the pending cap"
    );
    drop((connections, pair));
}

/// Browsers behind one address (a NAT, or a company proxy the gateway does not trust): each
/// session's two connections are its own once they carried one of its requests, so more
/// sessions than the pending cap allows connections keep a request held on one connection and
/// send on the other, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_one_address_are_not_held_to_the_pending_cap() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let limits = format!(
        "handshake_timeout_secs = 5\nmax_pending_connections = 64\n\
         max_pending_connections_per_address = {PENDING_PER_ADDRESS}\n"
    );
    let gateway = gateway(&server, &ca, &limits, "max_wait_secs = 30\ninactivity_secs = 30\n");
    let office = loopback(43);
    let clients = 2 * PENDING_PER_ADDRESS;
    let mut sessions = Vec::new();
    for _ in 0..clients {
        let (mut session, conn) = create(&gateway, &server, office).await;
        let mut waiting = Http::open(office, &gateway, false).await;
        waiting.send(&session.next("")).await.unwrap();
        sessions.push((session, conn, waiting));
    }
    // Every session holds a request now; each client in turn sends a message on a second
    // connection, which answers its held request (hold 1) and reaches the server. (In turn: a
    // connection counts as pending until its first request is taken, and a burst of new
    // connections faster than the gateway reads their requests does meet the cap.)
    let mut sending = Vec::new();
    let mut answered = 0;
    for (index, (session, conn, waiting)) in sessions.iter_mut().enumerate() {
        let mut http = Http::open(office, &gateway, false).await;
        let message = format!("<message xmlns='jabber:client' to='peer@{DOMAIN}' id='office-{index}'/>");
        http.send(&session.next(&message)).await.unwrap();
        let answer = waiting.response(STEP).await;
        if answer.is_none() {
            let sent = http.response(Duration::from_secs(1)).await;
            panic!("client {index}: no answer to the held request; the sending connection got {sent:?}");
        }
        assert!(matches!(&answer, Some((200, body)) if condition(body).is_none()), "client {index}: {answer:?}");
        conn.read_until(&format!("id='office-{index}'")).await;
        sending.push(http);
        answered += 1;
    }
    let open = gateway.open_descriptors();
    println!(
        "{clients} BOSH clients behind one address (pending cap {PENDING_PER_ADDRESS}): {answered} held requests \
         answered, every message relayed; the gateway holds {open} descriptors"
    );
    assert_eq!(answered, clients);
    drop(sending);
}

// ---------------------------------------------------------------------------------------------
// Descriptors: a session's upstream connection outlives the requests that carry it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_takes_a_descriptor_slot_for_its_upstream_and_gives_it_back() {
    /// RLIMIT_NOFILE of the gateway: (150 - 128 reserved - 4 lent to connects) / 2 = 9 slots.
    const NOFILE: usize = 150;
    const SLOTS: usize = 9;
    let _one = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = GatewayProcess::start_with_ulimit(
        &format!(
            "[listener]\nallow_missing_origin = true\n[limits]\nmax_sessions_per_address = 1000\n\
             [[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
            server.addr(),
            ca.ca_file().display()
        ),
        &format!("-n {NOFILE}"),
    );
    // Every creation on one keep-alive connection: it holds one slot, and the accept loop one
    // for the next connection (taken right after it accepted this one).
    let mut http = Http::open(loopback(1), &gateway, false).await;
    let creation = format!("<body {NS} rid='{FIRST_RID}' to='{DOMAIN}' wait='60' hold='1' ver='1.11'/>");
    let mut sessions = Vec::new();
    let refusal = loop {
        assert!(sessions.len() <= SLOTS, "{} sessions admitted with {SLOTS} slots", sessions.len());
        http.send(&creation).await.unwrap();
        let accepted = tokio::time::timeout(STEP, server.accept());
        let (status, body) = tokio::select! {
            answer = http.response(STEP) => answer.expect("an answer to the creation"),
            Ok(mut conn) = accepted => {
                conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
                let (status, body) = http.response(STEP).await.expect("the creation answer");
                assert_eq!(status, 200, "{body}");
                let sid = attr(&body, "sid").unwrap_or_else(|| panic!("no sid: {body}"));
                sessions.push((Session { sid, rid: FIRST_RID }, conn));
                continue;
            }
        };
        break (status, body);
    };
    let limited = gateway.metric("xmppgw_bosh_requests_total{result=\"limit-descriptors\"}").await;
    println!(
        "BOSH sessions with {SLOTS} descriptor slots (RLIMIT_NOFILE {NOFILE}): {} admitted, then {} {:?}; \
         the gateway holds {} descriptors",
        sessions.len(),
        refusal.0,
        refusal.1.trim(),
        gateway.open_descriptors()
    );
    assert!(
        sessions.len() == SLOTS - 2 || sessions.len() == SLOTS - 1,
        "{} sessions with {SLOTS} slots",
        sessions.len()
    );
    assert_eq!(refusal, (503, "This gateway has no room for another connection.\n".to_string()));
    assert_eq!(limited, 1.0);

    // One session ends: its slot comes back, and the next creation is admitted.
    let (mut ending, conn) = sessions.pop().unwrap();
    http.send(&ending.next("").replace("<body ", "<body type='terminate' ")).await.unwrap();
    let (status, body) = http.response(STEP).await.expect("the terminate answer");
    assert_eq!((status, condition(&body)), (200, Some(String::new())), "{body}");
    drop(conn);
    let active = sessions.len() as f64;
    let counted = gateway.metric_settles("xmppgw_bosh_sessions_active", STEP, |now| now <= active).await;
    assert!(counted <= active, "the ended session is still counted after {STEP:?}");
    http.send(&creation).await.unwrap();
    let mut conn = tokio::time::timeout(STEP, server.accept()).await.expect("a slot for the next session");
    conn.open_with_starttls(DOMAIN, PLAIN_FEATURES).await;
    let (status, body) = http.response(STEP).await.expect("the creation answer");
    assert_eq!(status, 200, "{body}");
}
