//! What checking XML can cost (issue 10, attack 2: quadratic work on attributes, before login).
//!
//! The worst shapes we can think of, each the size of the largest element the gateway accepts,
//! against an ordinary stanza of the same size (a roster result: the large stanza real servers
//! send), as ratios of CPU time. Measured twice: in-process on the pure XML core (this thread's
//! CPU time), with the default caps and with every cap lifted (so linearity does not hide behind
//! the caps), and against the built gateway binary on loopback (the process's CPU time around
//! each message), plus a logged-in bystander's round trip while eight attackers send the worst
//! shapes. Every figure is printed (`cargo test --test hostile_cpu -- --nocapture`).
//!
//! Linux only (reads /proc, and the thread CPU clock). The ratios are bounds on security, asserted with a wide margin:
//! before the fix the worst shapes cost hundreds to thousands of times an ordinary stanza.

#![allow(clippy::unwrap_used)]

mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use harness::fake_server::FakeServer;
use harness::gateway::TestGateway;
use harness::process::{cpu_since, threads_cpu, GatewayProcess};
use harness::raw_ws::{encode, opcode, RawWs};
use harness::shapes::{self, MAX_RATIO};
use harness::ws_client::{upgrade_request, WsClient};
use harness::xmpp::{DOMAIN, OPEN, PLAIN_FEATURES as FEATURES};
use harness::{TestCa, STEP};

use xmpp_ws_gateway::xml::client::{classify, ClientFrame, ClientLimits};
use xmpp_ws_gateway::xml::error::XmlError;
use xmpp_ws_gateway::xml::splitter::{ServerEvent, SplitterLimits, StreamSplitter};

/// The default `limits.max_element_bytes`; every shape is just under it.
const ELEMENT_BYTES: usize = 256 * 1024;
/// Shapes are built up to this size (the WebSocket frame and the header must fit too).
const SHAPE_BYTES: usize = ELEMENT_BYTES - 200;
/// Repetitions per measurement (the minimum is kept: CPU time only grows with interference).
const REPS: usize = 5;
/// No single measurement loop runs longer than this (today's quadratic code would run minutes).
const BUDGET: Duration = Duration::from_secs(20);

/// The measuring tests run one at a time (cargo runs a binary's tests in parallel), so that no
/// measurement loads the machine under another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID: exact, unlike /proc's counters,
/// which move only at scheduler ticks while a thread runs).
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(now.tv_sec).unwrap(), u32::try_from(now.tv_nsec).unwrap())
}

/// The least CPU time `work` took over [`REPS`] runs, stopping early past [`BUDGET`].
fn min_cpu(mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    for _ in 0..REPS {
        let before = thread_cpu();
        work();
        best = best.min(thread_cpu() - before);
        if started.elapsed() > BUDGET {
            break;
        }
    }
    best
}

fn unlimited_client() -> ClientLimits {
    ClientLimits { max_depth: 10_000, max_attributes: usize::MAX, max_namespace_declarations: usize::MAX }
}

fn unlimited_splitter() -> SplitterLimits {
    SplitterLimits { max_attributes: usize::MAX, max_namespace_declarations: usize::MAX, ..SplitterLimits::default() }
}

/// One shape's CPU time and the ordinary stanza's, measured side by side.
#[derive(Clone, Copy)]
struct Measured {
    cpu: Duration,
    reference: Duration,
}

/// The least CPU time of `work` and of `reference`, run alternately [`REPS`] times (side by
/// side: a noisy moment of the shared machine hits both, not only the shape measured in it),
/// stopping early past [`BUDGET`].
fn min_cpu_beside(reference: &mut impl FnMut(), mut work: impl FnMut()) -> Measured {
    let started = Instant::now();
    let mut best = Measured { cpu: Duration::MAX, reference: Duration::MAX };
    for _ in 0..REPS {
        let before = thread_cpu();
        reference();
        let between = thread_cpu();
        work();
        let after = thread_cpu();
        best.reference = best.reference.min(between - before);
        best.cpu = best.cpu.min(after - between);
        if started.elapsed() > BUDGET {
            break;
        }
    }
    best
}

/// Prints one table of ratios (each shape against the ordinary stanza measured beside it) and
/// returns the shapes over [`MAX_RATIO`].
fn report(title: &str, reference: Duration, rows: &[(&str, Measured, String)]) -> Vec<String> {
    println!("\n{title}: ordinary roster stanza {:.2} ms", reference.as_secs_f64() * 1e3);
    let mut over = Vec::new();
    for (shape, Measured { cpu, reference }, outcome) in rows {
        let ratio = cpu.as_secs_f64() / reference.as_secs_f64();
        println!("  {shape:<58} {:>9.2} ms  ratio {ratio:>7.2}  {outcome}", cpu.as_secs_f64() * 1e3);
        if ratio > MAX_RATIO {
            over.push(format!("{shape}: {ratio:.1}"));
        }
    }
    over
}

fn classify_outcome(message: &str, limits: &ClientLimits) -> String {
    match classify(message, limits) {
        Ok(ClientFrame::Open(_)) => "accepted (<open/>)".into(),
        Ok(ClientFrame::Close) => "accepted (<close/>)".into(),
        Ok(ClientFrame::Element { .. }) => "accepted".into(),
        Err(error @ (XmlError::TooManyAttributes | XmlError::TooManyNamespaceDeclarations)) => {
            format!("refused: {}", error.reason_label())
        }
        Err(error) => panic!("{message:.80}... refused unexpectedly: {error}"),
    }
}

#[test]
fn checking_a_client_message_costs_a_bounded_multiple_of_an_ordinary_stanza() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    let ordinary = shapes::roster(SHAPE_BYTES);
    let mut over = Vec::new();
    for (title, limits) in
        [("client, default caps", ClientLimits::default()), ("client, caps lifted", unlimited_client())]
    {
        let mut check_ordinary = || assert!(classify(&ordinary, &limits).is_ok());
        let reference = min_cpu(&mut check_ordinary);
        let message = shapes::long_message(SHAPE_BYTES);
        let mut rows = vec![(
            "(ordinary) message with a long body",
            min_cpu_beside(&mut check_ordinary, || assert!(classify(&message, &limits).is_ok())),
            String::new(),
        )];
        for (shape, message) in shapes::worst(SHAPE_BYTES, limits.max_depth) {
            assert!(message.len() <= SHAPE_BYTES, "{shape}: {}", message.len());
            let outcome = classify_outcome(&message, &limits);
            let measured =
                min_cpu_beside(&mut check_ordinary, || drop(std::hint::black_box(classify(&message, &limits))));
            rows.push((shape, measured, outcome));
        }
        over.extend(report(title, reference, &rows));
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times an ordinary stanza: {over:?}");
}

/// Splits `stream` (header included) as the session does, in 16 KiB reads; returns the
/// elements and the error, if any.
fn split(stream: &[u8], limits: SplitterLimits) -> (usize, Option<XmlError>) {
    let mut splitter = StreamSplitter::new(limits);
    let mut elements = 0;
    for chunk in stream.chunks(16 * 1024) {
        splitter.feed(chunk);
        loop {
            match splitter.next_event() {
                Ok(Some(ServerEvent::Element(element))) => {
                    std::hint::black_box(&element);
                    elements += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return (elements, Some(error)),
            }
        }
    }
    (elements, None)
}

#[test]
fn splitting_a_server_stream_costs_a_bounded_multiple_of_ordinary_stanzas() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='h' from='example.com' version='1.0'>";
    let mut over = Vec::new();
    for (title, limits) in
        [("server, default caps", SplitterLimits::default()), ("server, caps lifted", unlimited_splitter())]
    {
        let stream = |elements: &str| format!("{HEADER}{elements}").into_bytes();
        let ordinary = stream(&shapes::roster(SHAPE_BYTES));
        let mut split_ordinary = || assert_eq!(split(&ordinary, limits), (1, None));
        let reference = min_cpu(&mut split_ordinary);
        let mut rows = Vec::new();
        for (shape, element) in shapes::worst(SHAPE_BYTES, limits.max_depth) {
            if shape.starts_with("<open/>") {
                continue;
            }
            let input = stream(&element);
            let (elements, error) = split(&input, limits);
            let outcome = match error {
                None => format!("{elements} element(s) relayed"),
                Some(error) => format!("refused: {error}"),
            };
            rows.push((
                shape,
                min_cpu_beside(&mut split_ordinary, || {
                    std::hint::black_box(split(&input, limits));
                }),
                outcome,
            ));
        }
        // Stanza floods: the same bytes as many small top-level elements, after an ordinary
        // header and after a header with as many declarations as allowed (each element must
        // pay only for the declarations it uses). An ordinary server stream of this size is many
        // small stanzas, not one element, so the floods are measured beside an ordinary flood of
        // presences (itself measured beside the roster): what a flood costs per element is the
        // fixed cost every stanza pays, and against one large element it grows as the scan of
        // ordinary bytes gets cheaper, which says nothing about a shape the attacker chose.
        let declarations =
            if limits.max_namespace_declarations == usize::MAX { 150 } else { limits.max_namespace_declarations - 2 };
        let tiny = shapes::fill("", |_| "<a/>".into(), "", SHAPE_BYTES);
        let presences =
            stream(&shapes::fill("", |i| format!("<presence from='contact{i}@example.net/phone'/>"), "", SHAPE_BYTES));
        let (presence_count, error) = split(&presences, limits);
        assert_eq!(error, None);
        let mut split_presences = || assert_eq!(split(&presences, limits), (presence_count, None));
        rows.push((
            "(ordinary) stanza flood: presences",
            min_cpu_beside(&mut split_ordinary, &mut split_presences),
            format!("{presence_count} elements relayed"),
        ));
        for (shape, header) in [
            ("stanza flood: empty elements, against the presences", HEADER.to_owned()),
            (
                "stanza flood: empty elements, many header declarations, against the presences",
                shapes::header_with_declarations(declarations),
            ),
        ] {
            let input = format!("{header}{tiny}").into_bytes();
            let (count, error) = split(&input, limits);
            assert_eq!(error, None, "{shape}");
            rows.push((
                shape,
                min_cpu_beside(&mut split_presences, || {
                    std::hint::black_box(split(&input, limits));
                }),
                format!("{count} elements relayed"),
            ));
        }
        over.extend(report(title, reference, &rows));
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times ordinary stanzas: {over:?}");
}

// ---------------------------------------------------------------------------------------------
// Against the built binary on loopback.

/// A gateway process serving example.com through `server` with the default limits.
fn gateway_for(server: &FakeServer, ca: &TestCa) -> GatewayProcess {
    GatewayProcess::start(&format!(
        "[listener]\nallow_missing_origin = true\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ))
}

/// How one first message was answered.
#[derive(Debug)]
struct Answer {
    /// The WebSocket close code.
    code: Option<u16>,
    /// The text messages before the close.
    texts: Vec<String>,
}

/// One unauthenticated connection: upgrade, send `frame` (an encoded text frame), read the
/// answer until the gateway's Close frame, then hang up. `None` if that takes longer than
/// `limit` (the gateway is still busy with the message).
async fn one_message(url: &str, frame: &[u8], limit: Duration) -> Option<Answer> {
    let rest = url.trim_start_matches("ws://");
    let (host, path) = rest.split_once('/').unwrap();
    let exchange = async {
        let mut stream = TcpStream::connect(host).await.unwrap();
        stream
            .write_all(upgrade_request(host, &format!("/{path}"), "Sec-WebSocket-Protocol: xmpp\r\n").as_bytes())
            .await
            .unwrap();
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            pending.extend_from_slice(&buf[..n]);
        };
        assert!(pending.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&pending));
        pending.drain(..head_end);
        stream.write_all(frame).await.unwrap();
        let mut texts = Vec::new();
        loop {
            // Server frames are unmasked; payloads here are short (< 64 KiB).
            if pending.len() >= 2 {
                let (opcode, len) = (pending[0] & 0x0f, usize::from(pending[1] & 0x7f));
                let (header, len) = match len {
                    126 if pending.len() >= 4 => (4, usize::from(u16::from_be_bytes([pending[2], pending[3]]))),
                    126 => (usize::MAX, 0),
                    len => (2, len),
                };
                if header != usize::MAX && pending.len() >= header + len {
                    let payload: Vec<u8> = pending.drain(..header + len).skip(header).collect();
                    match opcode {
                        0x1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                        0x8 => {
                            return Answer { code: payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])), texts }
                        }
                        _ => {}
                    }
                    continue;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Answer { code: None, texts },
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, exchange).await.ok()
}

/// The refusal a first message gets: `(condition, close code)`.
fn refusal(answer: &Answer) -> (String, Option<u16>) {
    let error = answer.texts.iter().find(|t| t.starts_with("<stream:error")).cloned().unwrap_or_default();
    let condition = error.split('<').nth(2).and_then(|c| c.split([' ', '/']).next()).unwrap_or("").to_owned();
    (condition, answer.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_spends_a_bounded_multiple_of_an_ordinary_stanza_on_any_first_message() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = gateway_for(&server, &ca);
    let pid = gateway.pid();
    let frame = |text: &str| encode(true, opcode::TEXT, text.as_bytes(), Some([0x37, 0xfa, 0x21, 0x3d]));

    // Per-message CPU of the gateway for one shape: several connections in turn, each sending the
    // shape as its first message and reading the refusal; bounded in count and time.
    let measure = |frame: Vec<u8>| {
        let url = gateway.url.clone();
        async move {
            let started = Instant::now();
            let before = threads_cpu(pid);
            let mut messages = 0u32;
            let mut answer = None;
            while messages < 12 && (messages < 3 || started.elapsed() < Duration::from_secs(4)) {
                answer = one_message(&url, &frame, Duration::from_secs(60)).await;
                messages += 1;
                if answer.is_none() || started.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            (cpu_since(pid, &before) / messages, messages, answer)
        }
    };

    // Warm up (first-session allocations, lazy statics).
    one_message(&gateway.url, &frame(&shapes::roster(1000)), STEP).await.unwrap();
    let (reference, count, answer) = measure(frame(&shapes::roster(SHAPE_BYTES))).await;
    let answer = answer.expect("the ordinary stanza is answered");
    // The first message must be <open/> (TV-82): the ordinary stanza is checked, then refused.
    assert_eq!(refusal(&answer), ("invalid-namespace".to_owned(), Some(1000)));
    println!(
        "\nbinary, first message: ordinary roster stanza {:.2} ms of gateway CPU ({count} messages)",
        reference.as_secs_f64() * 1e3
    );
    let mut over = Vec::new();
    for (shape, message) in shapes::worst(SHAPE_BYTES, ClientLimits::default().max_depth) {
        let (cpu, count, answer) = measure(frame(&message)).await;
        let ratio = cpu.as_secs_f64() / reference.as_secs_f64();
        let outcome = match &answer {
            Some(answer) => format!("{:?}", refusal(answer)),
            None => "no answer within 60 s".to_owned(),
        };
        println!("  {shape:<58} {:>9.2} ms  ratio {ratio:>7.2}  ({count} messages) {outcome}", cpu.as_secs_f64() * 1e3);
        if ratio > MAX_RATIO || answer.is_none() {
            over.push(format!("{shape}: {ratio:.1}"));
        }
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times an ordinary stanza: {over:?}");
}

/// Attackers sending the worst shapes while the bystander measures.
const ATTACKERS: usize = 8;
/// Round trips measured with and without the attack, one every [`PING_EVERY`] (so the attack
/// is measured over seconds, not over a burst).
const PINGS: usize = 60;
const PING_EVERY: Duration = Duration::from_millis(50);
/// Under attack, the bystander's median round trip may grow to this multiple of the quiet one
/// plus [`BYSTANDER_SLACK`] (before the fix: from 1 ms to seconds, or lost).
const BYSTANDER_FACTOR: u32 = 10;
/// See [`BYSTANDER_FACTOR`]: room for the debug build on a shared two-core machine.
const BYSTANDER_SLACK: Duration = Duration::from_millis(100);
/// A bystander round trip slower than this counts as lost.
const PING_LIMIT: Duration = Duration::from_secs(8);

/// The bystander's ping round trips through its logged-in session (the fake server answers each
/// `<iq/>`), in order; a lost one counts as [`PING_LIMIT`].
async fn round_trips(client: &mut WsClient, first_id: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut every = tokio::time::interval(PING_EVERY);
    for id in first_id..first_id + PINGS {
        every.tick().await;
        let started = Instant::now();
        client
            .send(&format!("<iq xmlns='jabber:client' type='get' id='ping{id}'><ping xmlns='urn:xmpp:ping'/></iq>"))
            .await;
        let answered = tokio::time::timeout(PING_LIMIT, async {
            // Answers to earlier, timed-out pings may still arrive: skip them.
            while !client.recv_text().await.contains(&format!("id='ping{id}'")) {}
        })
        .await;
        times.push(if answered.is_ok() { started.elapsed() } else { PING_LIMIT });
    }
    times
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_bystander_keeps_its_round_trip_while_eight_attackers_send_the_worst_shapes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = gateway_for(&server, &ca);
    let pid = gateway.pid();

    // The bystander: a session through STARTTLS and SASL to a server that answers every <iq/>.
    let mut bystander = WsClient::connect(&gateway.url).await;
    bystander.send(OPEN).await;
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(bystander.recv_text().await.starts_with("<open "));
    assert!(bystander.recv_text().await.starts_with("<stream:features "));
    bystander
        .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>")
        .await;
    conn.read_until("</auth>").await;
    conn.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    assert!(bystander.recv_text().await.starts_with("<success "));
    // The stream restart after SASL (RFC 6120 §6.4.6), then resource binding is offered.
    bystander.send(OPEN).await;
    conn.read_stream_header().await;
    conn.write("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-3' from='example.com' version='1.0' xml:lang='en'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>").await;
    assert!(bystander.recv_text().await.starts_with("<open "));
    assert!(bystander.recv_text().await.contains("xmpp-bind"));
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = stop.clone();
    let echo = tokio::spawn(async move {
        while !server_stop.load(Ordering::Relaxed) {
            let request = conn.read_until("</iq>").await;
            let id = request.split("id='").nth(1).and_then(|rest| rest.split('\'').next()).unwrap().to_owned();
            conn.write(&format!("<iq type='result' id='{id}'/>")).await;
        }
    });

    let quiet = round_trips(&mut bystander, 0).await;

    // The attackers: each opens connection after connection and sends one worst shape as its
    // first message, until the bystander is done (or a count and time bound).
    let frames: Vec<(&str, Vec<u8>)> = shapes::worst(SHAPE_BYTES, ClientLimits::default().max_depth)
        .into_iter()
        .map(|(shape, text)| (shape, encode(true, opcode::TEXT, text.as_bytes(), Some([1, 2, 3, 4]))))
        .collect();
    let frames = Arc::new(frames);
    let sent = Arc::new(AtomicUsize::new(0));
    let before = threads_cpu(pid);
    let attack_started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|attacker| {
            let (url, frames, stop, sent) = (gateway.url.clone(), frames.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                for round in 0..500 {
                    if stop.load(Ordering::Relaxed) || attack_started.elapsed() > Duration::from_secs(120) {
                        break;
                    }
                    let (_, frame) = &frames[(attacker + round * ATTACKERS) % frames.len()];
                    if one_message(&url, frame, Duration::from_secs(30)).await.is_some() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Let every attacker get its first message in before measuring.
    while sent.load(Ordering::Relaxed) < ATTACKERS && attack_started.elapsed() < Duration::from_secs(60) {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let attacked = round_trips(&mut bystander, PINGS).await;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    let attack_time = attack_started.elapsed();
    let attack_cpu = cpu_since(pid, &before);
    let messages = sent.load(Ordering::Relaxed);
    echo.abort();

    let (quiet_median, attacked_median) = (median(&quiet), median(&attacked));
    let lost = attacked.iter().filter(|&&t| t == PING_LIMIT).count();
    println!(
        "\nbystander round trip, median of {PINGS}: {:.2} ms quiet, {:.2} ms under attack (max {:.2} ms, {lost} lost); \
         {ATTACKERS} attackers sent {messages} worst-shape messages ({} MiB) in {:.1} s, gateway CPU {:.1} s",
        quiet_median.as_secs_f64() * 1e3,
        attacked_median.as_secs_f64() * 1e3,
        attacked.iter().max().unwrap().as_secs_f64() * 1e3,
        messages * SHAPE_BYTES / (1024 * 1024),
        attack_time.as_secs_f64(),
        attack_cpu.as_secs_f64(),
    );
    assert!(messages >= ATTACKERS, "the attack did not run");
    assert_eq!(lost, 0, "round trips lost under attack: {attacked:?}");
    assert!(
        attacked_median < quiet_median * BYSTANDER_FACTOR + BYSTANDER_SLACK,
        "the bystander's median round trip went from {quiet_median:?} to {attacked_median:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The caps, on the wire (in-process gateway).

/// `count` attributes `a0='v' a1='v' ...`.
fn attributes(count: usize) -> String {
    (0..count).map(|i| format!(" a{i}='v'")).collect()
}

/// `count` namespace declarations `xmlns:p0='urn:p0' ...`.
fn declarations(count: usize) -> String {
    (0..count).map(|i| format!(" xmlns:p{i}='urn:p{i}'")).collect()
}

const POLICY_VIOLATION: &str = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#;

/// A gateway (with `limits` TOML) in front of a fake server, and a client through STARTTLS.
async fn session(limits: &str) -> (TestGateway, FakeServer, TestCa, RawWs, harness::fake_server::ServerConn) {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::start(&format!(
        "[limits]\n{limits}\n[[upstream]]\ndomain = \"{DOMAIN}\"\naddress = \"{}\"\nca_file = \"{}\"\n",
        server.addr(),
        ca.ca_file().display()
    ))
    .await;
    let mut client = RawWs::connect(&gateway.url).await;
    client.send_text(OPEN).await;
    let mut conn = server.accept().await;
    conn.open_with_starttls(DOMAIN, FEATURES).await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert!(client.recv_text().await.starts_with("<stream:features "));
    (gateway, server, ca, client, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_elements_over_the_attribute_or_declaration_cap_are_policy_violations() {
    for (element, reason) in [
        (
            format!(
                "<message xmlns='jabber:client' to='romeo@example.net'><x xmlns='urn:x'{}/></message>",
                attributes(65)
            ),
            "too-many-attributes",
        ),
        (format!("<message xmlns='jabber:client'{}/>", declarations(33)), "too-many-namespace-declarations"),
    ] {
        let (gateway, _server, _ca, mut client, mut conn) = session("").await;
        // At the caps (the default namespace declaration counts too): relayed byte for byte.
        let at_cap = format!("<message xmlns='jabber:client'{}{}/>", declarations(31), attributes(32));
        client.send_text(&at_cap).await;
        assert_eq!(conn.read_until("/>").await, at_cap);
        client.send_text(&element).await;
        assert_eq!(client.recv_text().await, POLICY_VIOLATION, "{reason}");
        assert_eq!(client.recv_text().await, harness::xmpp::CLOSE);
        assert_eq!(client.until_close().await, (Some(1008), vec![]), "a policy limit, like the depth limit");
        let (upstream, _) = conn.read_to_end().await;
        assert_eq!(upstream, "</stream:stream>", "nothing of the element reaches the server");
        gateway.wait_metric(&format!("xmppgw_client_elements_refused_total{{reason=\"{reason}\"}}"), 1.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_over_the_attribute_cap_is_refused_before_any_upstream_connection() {
    let ca = TestCa::new();
    let server = FakeServer::start(ca.leaf(&[DOMAIN])).await;
    let gateway = TestGateway::for_upstream(DOMAIN, server.addr(), &ca.ca_file()).await;
    let mut client = RawWs::connect(&gateway.url).await;
    client
        .send_text(&format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'{}/>",
            attributes(62)
        ))
        .await;
    assert!(client.recv_text().await.starts_with("<open "));
    assert_eq!(client.recv_text().await, POLICY_VIOLATION);
    assert_eq!(client.recv_text().await, harness::xmpp::CLOSE);
    assert_eq!(client.until_close().await, (Some(1008), vec![]));
    gateway.wait_metric("xmppgw_client_elements_refused_total{reason=\"too-many-attributes\"}", 1.0).await;
    assert!(
        server.try_accept(Duration::from_millis(300)).await.is_none(),
        "no upstream connection for a refused <open/>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_elements_over_the_cap_end_the_session_and_the_caps_are_configurable() {
    // Default caps: a server element with 65 attributes is bad XML from the server.
    let (_gateway, _server, _ca, mut client, mut conn) = session("").await;
    conn.write(&format!("<message to='juliet@example.com'><x xmlns='urn:x'{}/></message>", attributes(65))).await;
    let error = client.recv_text().await;
    assert!(error.contains("<remote-connection-failed") && error.contains("upstream-bad-xml"), "{error}");
    let (upstream, _) = conn.read_to_end().await;
    assert!(upstream.contains("<policy-violation"), "the server is told why: {upstream}");

    // Raised caps: the same element and a client element of the same shape are relayed.
    let (_gateway, _server, _ca, mut client, mut conn) =
        session("max_attributes_per_element = 100\nmax_namespace_declarations_per_element = 40").await;
    let element = format!("<message xmlns='jabber:client'{}{}/>", declarations(39), attributes(60));
    client.send_text(&element).await;
    assert_eq!(conn.read_until("/>").await, element);
    conn.write(&format!("<message to='juliet@example.com'><x xmlns='urn:x'{}/></message>", attributes(65))).await;
    assert!(client
        .recv_text()
        .await
        .starts_with("<message xmlns=\"jabber:client\" to='juliet@example.com'><x xmlns='urn:x' a0="));
}
