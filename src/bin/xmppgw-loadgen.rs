//! `xmppgw-loadgen`: opens N XMPP sessions and measures setup, echo round trips and the
//! gateway's memory; prints one JSON object on stdout.
//!
//! `--target ws`: RFC 7395 sessions through a running gateway or floor relay (subprotocol
//! `xmpp`): `<open/>`, `<open/>` + features, SASL PLAIN `<auth/>`, `<success/>`, the restart
//! `<open/>`, `<open/>` + features. `--target bosh`: the same over BOSH (XEP-0124/XEP-0206) at
//! `--url http://…/http-bind`, two keep-alive connections per session with `hold='1'`
//! (`common/bosh_client.rs`); the report then counts the HTTP responses too. `--target tcp`: the same over an RFC 6120 TCP stream
//! straight to the server (with STARTTLS when `--tls starttls`), the baseline without a relay.
//!
//! Then `--workload idle` holds every session for `--hold-secs` and reads the relay's
//! VmRSS/VmHWM (`--gateway-pid`), or `--workload echo` has every session send `--messages`
//! `<message/>` stanzas with at most `--window` unanswered, timing each round trip through an
//! echoing server (`xmppgw-fake-upstream`). With `--gateway-pid` the relay's CPU time per
//! session set up and per echoed stanza is reported too. Every phase is bounded by
//! `--deadline-secs`.
//! Built only with `--features bench`; connects to loopback addresses only.
//!
//! (Over 500 lines: one measuring tool, read top to bottom: its arguments, the two kinds of
//! session with their scripted setup, the workloads and the JSON report.)
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[path = "common/scan.rs"]
mod scan;
use scan::{find, scan, Scan};

#[path = "common/bosh_client.rs"]
mod bosh_client;
use bosh_client::{BoshClient, BoshTarget};

/// Deadline for any single expected reply.
const STEP: Duration = Duration::from_secs(30);
/// Bytes read from a TCP stream at a time.
const READ_CHUNK_BYTES: usize = 4096;
/// `\0bench\0bench` in base64: any PLAIN credentials do for the fake upstream.
const PLAIN_CREDENTIALS: &str = "AGJlbmNoAGJlbmNo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// WebSocket through the gateway.
    Ws,
    /// TCP straight to the server (baseline).
    Tcp,
    /// BOSH through the gateway.
    Bosh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Tls {
    /// Plaintext stream.
    None,
    /// STARTTLS (with `--target tcp`; the gateway decides for itself).
    Starttls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Hold the sessions and measure the gateway's memory.
    Idle,
    /// Echo stanzas and time round trips.
    Echo,
}

/// Opens XMPP sessions through the gateway (or straight to the server) and measures them.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// `ws` (through the gateway) or `tcp` (straight to the server).
    #[arg(long, value_enum, default_value = "ws")]
    target: Target,
    /// The gateway's WebSocket URL (with `--target ws`), or its BOSH URL (`--target bosh`).
    #[arg(long, default_value = "ws://127.0.0.1:5280/xmpp-websocket")]
    url: String,
    /// The server's address (with `--target tcp`).
    #[arg(long, default_value = "127.0.0.1:5222")]
    addr: SocketAddr,
    /// STARTTLS on the direct TCP stream (with `--target tcp`).
    #[arg(long, value_enum, default_value = "none")]
    tls: Tls,
    /// CA certificate (PEM) trusted for `--tls starttls`.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The XMPP domain (`to` of the stream).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Number of sessions.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Sessions being set up at the same time.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// `idle` or `echo`.
    #[arg(long, value_enum, default_value = "echo")]
    workload: Workload,
    /// Stanzas each session sends (echo).
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Stanzas each session may have unanswered (echo).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Size of each stanza's body text (echo).
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Seconds to hold the sessions before reading the gateway's memory (idle).
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
    /// The measured relay's process id (the gateway or the floor relay), for VmRSS/VmHWM and
    /// CPU time from /proc.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Local addresses to connect from, round robin (spreads ephemeral ports), e.g. 127.0.0.2,127.0.0.3.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    source_ips: Vec<IpAddr>,
    /// Upper bound on the whole run, in seconds.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// Tokio worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Free text copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

fn main() {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let report = runtime.block_on(run(Arc::new(args)));
    println!("{report}");
}

/// A byte stream to the server: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One established session.
enum Session {
    Ws(Box<WsSession>),
    Tcp(TcpSession<Box<dyn Io>>),
    Bosh(Box<BoshClient>),
}

/// A WebSocket session. Received text is split into top-level elements here rather than taken
/// one message each: the gateway sends one element per message, the floor relay one message per
/// upstream read, and both are read by the same code.
struct WsSession {
    ws: WebSocketStream<TcpStream>,
    pending: Vec<u8>,
}

struct TcpSession<S> {
    io: S,
    pending: Vec<u8>,
    chunk: Box<[u8]>,
}

fn bench_error(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(error)
}

impl<S: Io> TcpSession<S> {
    fn new(io: S) -> TcpSession<S> {
        TcpSession { io, pending: Vec::new(), chunk: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice() }
    }

    async fn write(&mut self, text: &str) -> io::Result<()> {
        self.io.write_all(text.as_bytes()).await?;
        self.io.flush().await
    }

    async fn fill(&mut self) -> io::Result<()> {
        let read = self.io.read(&mut self.chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pending.extend_from_slice(&self.chunk[..read]);
        Ok(())
    }

    /// Skips the server's `<stream:stream ...>` start tag.
    async fn skip_header(&mut self) -> io::Result<()> {
        for needle in [&b"<stream:stream"[..], b">"] {
            loop {
                if let Some(at) = find(&self.pending, needle) {
                    self.pending.drain(..at + needle.len());
                    break;
                }
                self.fill().await?;
            }
        }
        Ok(())
    }

    /// The next complete top-level element.
    async fn element(&mut self) -> io::Result<String> {
        loop {
            match scan(&self.pending) {
                Scan::Element { skip, len } => {
                    let element = String::from_utf8_lossy(&self.pending[skip..skip + len]).into_owned();
                    self.pending.drain(..skip + len);
                    return Ok(element);
                }
                Scan::StreamEnd => return Err(bench_error("the server ended the stream")),
                Scan::Incomplete => self.fill().await?,
            }
        }
    }
}

impl Session {
    async fn send(&mut self, text: &str) -> io::Result<()> {
        match self {
            Session::Ws(session) => session.ws.send(Message::Text(text.into())).await.map_err(ws_error),
            Session::Tcp(tcp) => tcp.write(text).await,
            Session::Bosh(bosh) => bosh.send(text),
        }
    }

    /// The next element (WebSocket: the next text message).
    async fn recv(&mut self) -> io::Result<String> {
        match self {
            Session::Ws(session) => loop {
                match scan(&session.pending) {
                    Scan::Element { skip, len } => {
                        let element = String::from_utf8_lossy(&session.pending[skip..skip + len]).into_owned();
                        session.pending.drain(..skip + len);
                        return Ok(element);
                    }
                    Scan::StreamEnd => return Err(bench_error("end tag outside an element")),
                    Scan::Incomplete => {}
                }
                match session.ws.next().await {
                    Some(Ok(Message::Text(text))) => session.pending.extend_from_slice(text.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(_))) => return Err(bench_error("binary message")),
                    Some(Ok(Message::Close(frame))) => return Err(bench_error(format!("closed: {frame:?}"))),
                    Some(Err(error)) => return Err(ws_error(error)),
                    None => return Err(io::ErrorKind::UnexpectedEof.into()),
                }
            },
            Session::Tcp(tcp) => tcp.element().await,
            Session::Bosh(bosh) => bosh.recv().await,
        }
    }

    /// Receives one element and checks that it starts with `prefix`.
    async fn expect(&mut self, prefix: &str) -> io::Result<()> {
        let element = tokio::time::timeout(STEP, self.recv()).await.map_err(|_| bench_error("timed out"))??;
        if element.starts_with(prefix) {
            Ok(())
        } else {
            let shown: String = element.chars().take(120).collect();
            Err(bench_error(format!("expected {prefix}…, got {shown}")))
        }
    }
}

async fn tcp_connect(source: IpAddr, address: SocketAddr) -> io::Result<TcpStream> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn stream_header(domain: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")
}

fn auth_element() -> String {
    format!("<auth xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\" mechanism=\"PLAIN\">{PLAIN_CREDENTIALS}</auth>")
}

/// Connection settings shared by all sessions.
struct Plan {
    args: Arc<Args>,
    ws_address: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    bosh: Option<BoshTarget>,
}

/// The address a `ws://host:port/path` URL points to (loopback only).
fn ws_address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("ws://").expect("the URL starts with ws://");
    let authority = rest.split('/').next().expect("an authority");
    let address: SocketAddr = authority.parse().expect("the URL's host is an IP address with a port");
    assert!(address.ip().is_loopback(), "the load generator only connects to loopback addresses");
    address
}

fn tls_connector(args: &Args) -> (tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>) {
    use rustls::pki_types::pem::PemObject;
    let path = args.ca_file.as_ref().expect("--ca-file is required with --tls starttls");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).expect("read the CA file") {
        roots.add(cert.expect("a PEM certificate")).expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(args.domain.clone()).expect("the domain is a valid TLS name");
    (tokio_rustls::TlsConnector::from(Arc::new(config)), name)
}

/// Connects and authenticates one session, up to the features after the SASL restart.
async fn establish(plan: &Plan, index: usize) -> io::Result<Session> {
    let args = &plan.args;
    let source = args.source_ips[index % args.source_ips.len()];
    match args.target {
        Target::Ws => {
            let tcp = tcp_connect(source, plan.ws_address).await?;
            let mut request = args.url.as_str().into_client_request().map_err(ws_error)?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
            let config = WebSocketConfig::default().read_buffer_size(READ_CHUNK_BYTES).write_buffer_size(0);
            let (ws, response) =
                tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await.map_err(ws_error)?;
            if response.headers().get("Sec-WebSocket-Protocol").map(HeaderValue::as_bytes) != Some(b"xmpp") {
                return Err(bench_error("the gateway did not select the xmpp subprotocol"));
            }
            let mut session = Session::Ws(Box::new(WsSession { ws, pending: Vec::new() }));
            let open =
                format!("<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" to=\"{}\" version=\"1.0\"/>", args.domain);
            session.send(&open).await?;
            session.expect("<open").await?;
            session.expect("<stream:features").await?;
            session.send(&auth_element()).await?;
            session.expect("<success").await?;
            session.send(&open).await?;
            session.expect("<open").await?;
            session.expect("<stream:features").await?;
            Ok(session)
        }
        Target::Tcp => {
            let tcp = tcp_connect(source, args.addr).await?;
            let header = stream_header(&args.domain);
            let io: Box<dyn Io> = match &plan.tls {
                None => Box::new(tcp),
                Some((connector, name)) => {
                    let mut plain = TcpSession::new(tcp);
                    plain.write(&header).await?;
                    timed(plain.skip_header()).await?;
                    expect_prefix(timed(plain.element()).await?, "<stream:features")?;
                    plain.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
                    expect_prefix(timed(plain.element()).await?, "<proceed")?;
                    Box::new(timed(connector.connect(name.clone(), plain.io)).await?)
                }
            };
            let mut session = TcpSession::new(io);
            session.write(&header).await?;
            timed(session.skip_header()).await?;
            expect_prefix(timed(session.element()).await?, "<stream:features")?;
            session.write(&auth_element()).await?;
            expect_prefix(timed(session.element()).await?, "<success")?;
            session.write(&header).await?;
            timed(session.skip_header()).await?;
            expect_prefix(timed(session.element()).await?, "<stream:features")?;
            Ok(Session::Tcp(session))
        }
        Target::Bosh => {
            let target = plan.bosh.as_ref().expect("a BOSH target");
            let mut session = Session::Bosh(Box::new(BoshClient::connect(target, source).await?));
            session.expect("<stream:features").await?;
            session.send(&auth_element()).await?;
            session.expect("<success").await?;
            if let Session::Bosh(bosh) = &session {
                bosh.restart()?;
            }
            session.expect("<stream:features").await?;
            Ok(session)
        }
    }
}

async fn timed<T>(future: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(STEP, future).await.map_err(|_| bench_error("timed out"))?
}

fn expect_prefix(element: String, prefix: &str) -> io::Result<()> {
    if element.starts_with(prefix) {
        Ok(())
    } else {
        let shown: String = element.chars().take(120).collect();
        Err(bench_error(format!("expected {prefix}…, got {shown}")))
    }
}

/// What the sessions are told to do after their setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Echo,
    Release,
}

struct SetupReport {
    elapsed: Duration,
    error: Option<String>,
}

struct EchoReport {
    rtts_us: Vec<u64>,
    error: Option<String>,
}

struct Channels {
    permits: Arc<Semaphore>,
    setup: mpsc::UnboundedSender<SetupReport>,
    echo: mpsc::UnboundedSender<EchoReport>,
    phase: watch::Receiver<Phase>,
}

async fn session_task(plan: Arc<Plan>, index: usize, mut channels: Channels) {
    let permit = channels.permits.clone().acquire_owned().await.expect("the semaphore stays open");
    let started = Instant::now();
    let result = timed(establish(&plan, index)).await;
    let elapsed = started.elapsed();
    drop(permit);
    let mut session = match result {
        Ok(session) => {
            let _ = channels.setup.send(SetupReport { elapsed, error: None });
            session
        }
        Err(error) => {
            let _ = channels.setup.send(SetupReport { elapsed, error: Some(error.to_string()) });
            return;
        }
    };
    // Wait for the next phase, reading meanwhile like an idle client does (WebSocket pings are
    // answered by tungstenite while reading).
    let phase = tokio::select! {
        phase = channels.phase.wait_for(|phase| *phase != Phase::Setup) => match phase {
            Ok(phase) => *phase,
            Err(_) => return,
        },
        input = session.recv() => {
            let error = match input {
                Ok(element) => format!("unexpected element while idle: {}", element.chars().take(80).collect::<String>()),
                Err(error) => format!("lost while idle: {error}"),
            };
            let _ = channels.echo.send(EchoReport { rtts_us: Vec::new(), error: Some(error) });
            return;
        }
    };
    if phase == Phase::Echo {
        let report = echo(&mut session, &plan.args).await;
        let _ = channels.echo.send(report);
        let _ = channels.phase.wait_for(|phase| *phase == Phase::Release).await;
    }
    drop(session);
}

async fn echo(session: &mut Session, args: &Args) -> EchoReport {
    let body = "x".repeat(args.payload_bytes);
    let window = args.window.max(1);
    let mut rtts_us = Vec::with_capacity(args.messages);
    let mut sent_at = VecDeque::with_capacity(window);
    let mut sent = 0;
    while rtts_us.len() < args.messages {
        while sent < args.messages && sent_at.len() < window {
            let stanza = format!(
                "<message to='echo@{}/bench' id='m{sent}' type='chat'><body>{body}</body></message>",
                args.domain
            );
            sent_at.push_back(Instant::now());
            if let Err(error) = session.send(&stanza).await {
                return EchoReport { rtts_us, error: Some(error.to_string()) };
            }
            sent += 1;
        }
        let error = match timed(session.recv()).await {
            Ok(element) if element.starts_with("<message") => {
                let sent_time = sent_at.pop_front().expect("a stanza is in flight");
                rtts_us.push(u64::try_from(sent_time.elapsed().as_micros()).unwrap_or(u64::MAX));
                continue;
            }
            Ok(element) => format!("unexpected element {}", element.chars().take(80).collect::<String>()),
            Err(error) => error.to_string(),
        };
        return EchoReport { rtts_us, error: Some(error) };
    }
    EchoReport { rtts_us, error: None }
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: Option<u32>) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time used so far by every thread of a process, in nanoseconds (the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`: time on a CPU, counted by the scheduler to the
/// nanosecond, where `/proc/<pid>/stat` counts in 10 ms ticks).
fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", pid?)).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // A thread may end between the listing and the read: it is skipped.
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            character if (character as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", character as u32)),
            character => out.push(character),
        }
    }
    out.push('"');
    out
}

/// JSON for an optional number (`null` when absent).
fn json_number<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_string(), |value| value.to_string())
}

async fn run(args: Arc<Args>) -> String {
    let bosh = (args.target == Target::Bosh).then(|| BoshTarget::from_url(&args.url, &args.domain));
    let ws_address = match &bosh {
        Some(bosh) => bosh.address,
        None if args.target == Target::Ws => ws_address(&args.url),
        None => {
            assert!(args.addr.ip().is_loopback(), "the load generator only connects to loopback addresses");
            args.addr
        }
    };
    assert!(args.source_ips.iter().all(IpAddr::is_loopback), "source addresses must be loopback addresses");
    let tls = (args.target == Target::Tcp && args.tls == Tls::Starttls).then(|| tls_connector(&args));
    let responses = |bosh: &Option<BoshTarget>| {
        bosh.as_ref().map(|target| target.responses.load(std::sync::atomic::Ordering::Relaxed))
    };
    let plan = Arc::new(Plan { args: args.clone(), ws_address, tls, bosh: bosh.clone() });
    let deadline = Instant::now() + Duration::from_secs(args.deadline_secs);
    let memory_before = memory_kib(args.gateway_pid);
    let cpu_before_setup = cpu_ns(args.gateway_pid);

    let (setup_sender, mut setup_reports) = mpsc::unbounded_channel();
    let (echo_sender, mut echo_reports) = mpsc::unbounded_channel();
    let (phase_sender, phase) = watch::channel(Phase::Setup);
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let setup_started = Instant::now();
    for index in 0..args.sessions {
        let channels = Channels {
            permits: permits.clone(),
            setup: setup_sender.clone(),
            echo: echo_sender.clone(),
            phase: phase.clone(),
        };
        tokio::spawn(session_task(plan.clone(), index, channels));
    }
    drop((setup_sender, echo_sender));

    let mut timed_out = false;
    let mut errors = 0usize;
    let mut first_error: Option<String> = None;
    let mut setup_us = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        match tokio::time::timeout_at(deadline, setup_reports.recv()).await {
            Ok(Some(report)) => match report.error {
                None => setup_us.push(u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX)),
                Some(error) => {
                    errors += 1;
                    first_error.get_or_insert(error);
                }
            },
            Ok(None) => break,
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let cpu_after_setup = cpu_ns(args.gateway_pid);
    let ok_sessions = setup_us.len();
    setup_us.sort_unstable();

    let mut memory_idle = None;
    let mut rtts_us: Vec<u64> = Vec::new();
    let mut echo_secs = 0.0;
    let mut cpu_after_echo = None;
    let (mut responses_before_echo, mut responses_after_echo) = (None, None);
    match args.workload {
        Workload::Idle => {
            let hold_until = (Instant::now() + Duration::from_secs(args.hold_secs)).min(deadline);
            tokio::time::sleep_until(hold_until).await;
            memory_idle = memory_kib(args.gateway_pid);
            while let Ok(report) = echo_reports.try_recv() {
                if let Some(error) = report.error {
                    errors += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        Workload::Echo if !timed_out => {
            let _ = phase_sender.send(Phase::Echo);
            let echo_started = Instant::now();
            responses_before_echo = responses(&bosh);
            for _ in 0..ok_sessions {
                match tokio::time::timeout_at(deadline, echo_reports.recv()).await {
                    Ok(Some(report)) => {
                        rtts_us.extend_from_slice(&report.rtts_us);
                        if let Some(error) = report.error {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            echo_secs = echo_started.elapsed().as_secs_f64();
            cpu_after_echo = cpu_ns(args.gateway_pid);
            responses_after_echo = responses(&bosh);
        }
        Workload::Echo => {}
    }
    let memory_after = memory_kib(args.gateway_pid);
    let _ = phase_sender.send(Phase::Release);
    rtts_us.sort_unstable();

    let setup_rate = if setup_secs > 0.0 { ok_sessions as f64 / setup_secs } else { 0.0 };
    let stanzas_per_sec = if echo_secs > 0.0 { rtts_us.len() as f64 / echo_secs } else { 0.0 };
    let per_session_bytes = match (memory_before, memory_idle) {
        (Some((before, _)), Some((idle, _))) if ok_sessions > 0 => {
            Some((idle.saturating_sub(before) * 1024) / ok_sessions as u64)
        }
        _ => None,
    };
    // The measured process's CPU per session set up and per echoed stanza (each stanza crosses
    // it twice, to the server and back), in microseconds.
    let cpu_us_per = |before: Option<u64>, after: Option<u64>, count: usize| match (before, after) {
        (Some(before), Some(after)) if count > 0 => Some(after.saturating_sub(before) as f64 / 1000.0 / count as f64),
        _ => None,
    };
    let setup_cpu_us = cpu_us_per(cpu_before_setup, cpu_after_setup, ok_sessions);
    let stanza_cpu_us = cpu_us_per(cpu_after_setup, cpu_after_echo, rtts_us.len());
    let target = match args.target {
        Target::Ws => "ws",
        Target::Tcp => "tcp",
        Target::Bosh => "bosh",
    };
    // BOSH: HTTP responses in all, and per second while echoing.
    let http_responses = responses(&bosh);
    let http_responses_per_sec = match (responses_before_echo, responses_after_echo) {
        (Some(before), Some(after)) if echo_secs > 0.0 => Some(format!("{:.1}", (after - before) as f64 / echo_secs)),
        _ => None,
    };
    let workload = match args.workload {
        Workload::Idle => "idle",
        Workload::Echo => "echo",
    };
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        concat!(
            "{{\"label\":{},\"target\":\"{}\",\"workload\":\"{}\",\"sessions\":{},\"ok_sessions\":{},",
            "\"errors\":{},\"timed_out\":{},\"first_error\":{},",
            "\"setup_secs\":{:.3},\"setup_rate\":{:.1},\"setup_p50_ms\":{:.3},\"setup_p99_ms\":{:.3},",
            "\"messages\":{},\"window\":{},\"stanzas\":{},\"echo_secs\":{:.3},\"stanzas_per_sec\":{:.1},",
            "\"rtt_p50_us\":{},\"rtt_p90_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{},",
            "\"gateway_pid\":{},\"vm_rss_before_kib\":{},\"vm_rss_idle_kib\":{},\"vm_rss_kib\":{},\"vm_hwm_kib\":{},",
            "\"rss_per_session_bytes\":{},\"setup_cpu_us\":{},\"stanza_cpu_us\":{},",
            "\"http_responses\":{},\"http_responses_per_sec\":{}}}"
        ),
        json_string(&args.label),
        target,
        workload,
        args.sessions,
        ok_sessions,
        errors,
        timed_out,
        first_error.as_deref().map_or_else(|| "null".to_string(), json_string),
        setup_secs,
        setup_rate,
        ms(percentile(&setup_us, 0.50)),
        ms(percentile(&setup_us, 0.99)),
        args.messages,
        args.window,
        rtts_us.len(),
        echo_secs,
        stanzas_per_sec,
        percentile(&rtts_us, 0.50),
        percentile(&rtts_us, 0.90),
        percentile(&rtts_us, 0.99),
        rtts_us.last().copied().unwrap_or(0),
        json_number(args.gateway_pid),
        json_number(memory_before.map(|memory| memory.0)),
        json_number(memory_idle.map(|memory| memory.0)),
        json_number(memory_after.map(|memory| memory.0)),
        json_number(memory_after.map(|memory| memory.1)),
        json_number(per_session_bytes),
        json_number(setup_cpu_us.map(|us| format!("{us:.2}"))),
        json_number(stanza_cpu_us.map(|us| format!("{us:.3}"))),
        json_number(http_responses),
        json_number(http_responses_per_sec),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
