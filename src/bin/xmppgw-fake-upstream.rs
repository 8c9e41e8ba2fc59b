//! `xmppgw-fake-upstream`: a fast fake XMPP server (RFC 6120, client-to-server) for benchmarks.
//!
//! It answers the stream header with its own header and features, optionally runs STARTTLS with
//! a certificate made at start-up (its CA written to `--ca-out` for the gateway's `ca_file`),
//! accepts any SASL PLAIN `<auth/>` with `<success/>`, handles the stream restart, then echoes
//! every top-level element back with its first `to=` turned into `from=` (so a gateway relays
//! it back to the client that sent it). `</stream:stream>` is answered in kind.
//!
//! It is a load target, not a conformance tool: it expects the well-behaved input of the
//! benchmark clients (no comments, CDATA or `>` inside attribute values) and does no
//! validation. Built only with `--features bench`; listens on loopback addresses only.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[path = "common/scan.rs"]
mod scan;
use scan::{find, scan, Scan};

/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 4096;
/// Largest amount of unprocessed input kept for one connection (a runaway client is cut off).
const MAX_PENDING_BYTES: usize = 1024 * 1024;

const NS_HEADER_ATTRS: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
const FEATURES_STARTTLS: &str =
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
const FEATURES_SASL: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const FEATURES_BOUND: &str = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const SUCCESS: &str = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
const STREAM_END: &str = "</stream:stream>";

/// How the fake server secures its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TlsMode {
    /// Plaintext only (the gateway's `tls = "none"`).
    None,
    /// STARTTLS required before SASL (the gateway's `tls = "starttls"`).
    Starttls,
}

/// A fast fake XMPP server for gateway benchmarks.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:5222")]
    listen: SocketAddr,
    /// `none` or `starttls`.
    #[arg(long, value_enum, default_value = "none")]
    tls: TlsMode,
    /// The domain served (stream `from`, certificate name).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Where to write the PEM CA certificate that signed the server certificate (with `--tls starttls`).
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Tokio worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

struct Server {
    domain: String,
    acceptor: Option<TlsAcceptor>,
    next_id: AtomicU64,
}

fn main() {
    let args = Args::parse();
    assert!(args.listen.ip().is_loopback(), "the fake upstream listens on loopback only");
    let acceptor = match args.tls {
        TlsMode::None => None,
        TlsMode::Starttls => Some(make_acceptor(&args.domain, args.ca_out.as_ref())),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = bind(args.listen).expect("bind the fake upstream");
        let server = Arc::new(Server { domain: args.domain, acceptor, next_id: AtomicU64::new(1) });
        // The benchmark script waits for this line.
        println!("ready {}", listener.local_addr().expect("local address"));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("accept: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = server.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &server).await;
            });
        }
    });
}

fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// A CA and a leaf for `domain` signed by it; the CA is written to `ca_out`.
fn make_acceptor(domain: &str, ca_out: Option<&PathBuf>) -> TlsAcceptor {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "xmppgw-fake-upstream CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
    if let Some(path) = ca_out {
        std::fs::write(path, ca_cert.pem()).expect("write the CA file");
    }
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = rcgen::CertificateParams::new(vec![domain.to_string()]).expect("leaf parameters");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("signed leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server certificate");
    TlsAcceptor::from(Arc::new(config))
}

/// Unprocessed input of one connection.
struct Input {
    pending: Vec<u8>,
    chunk: Box<[u8]>,
}

impl Input {
    fn new() -> Input {
        Input { pending: Vec::new(), chunk: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice() }
    }

    /// Reads once; false at EOF.
    async fn fill<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> io::Result<bool> {
        let read = io.read(&mut self.chunk).await?;
        if read == 0 {
            return Ok(false);
        }
        if self.pending.len() + read > MAX_PENDING_BYTES {
            return Err(io::Error::other("client sent too much unprocessed input"));
        }
        self.pending.extend_from_slice(&self.chunk[..read]);
        Ok(true)
    }

    /// Reads until `needle` is pending, then drops everything up to and including it.
    async fn skip_past<S: AsyncRead + Unpin>(&mut self, io: &mut S, needle: &[u8]) -> io::Result<()> {
        loop {
            if let Some(at) = find(&self.pending, needle) {
                self.pending.drain(..at + needle.len());
                return Ok(());
            }
            if !self.fill(io).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Skips an optional XML declaration and the `<stream:stream ...>` start tag.
    async fn skip_header<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        self.skip_past(io, b"<stream:stream").await?;
        self.skip_past(io, b">").await
    }

    /// Skips one element that starts with `start` and ends with `end`.
    async fn skip_element<S: AsyncRead + Unpin>(&mut self, io: &mut S, start: &[u8], end: &[u8]) -> io::Result<()> {
        self.skip_past(io, start).await?;
        self.skip_past(io, end).await
    }
}

async fn send<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

impl Server {
    fn header(&self) -> String {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!(
            "<?xml version='1.0'?><stream:stream {NS_HEADER_ATTRS} id='fake-{id}' from='{}' version='1.0' xml:lang='en'>",
            self.domain
        )
    }
}

async fn serve(mut tcp: TcpStream, server: &Server) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    match &server.acceptor {
        None => authenticate_and_echo(tcp, Input::new(), server).await,
        Some(acceptor) => {
            let mut input = Input::new();
            input.skip_header(&mut tcp).await?;
            send(&mut tcp, format!("{}{FEATURES_STARTTLS}", server.header()).as_bytes()).await?;
            input.skip_element(&mut tcp, b"<starttls", b">").await?;
            send(&mut tcp, PROCEED.as_bytes()).await?;
            let tls = acceptor.accept(tcp).await?;
            authenticate_and_echo(tls, Input::new(), server).await
        }
    }
}

async fn authenticate_and_echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    mut input: Input,
    server: &Server,
) -> io::Result<()> {
    input.skip_header(&mut io).await?;
    send(&mut io, format!("{}{FEATURES_SASL}", server.header()).as_bytes()).await?;
    input.skip_element(&mut io, b"<auth", b"</auth>").await?;
    send(&mut io, SUCCESS.as_bytes()).await?;
    input.skip_header(&mut io).await?;
    send(&mut io, format!("{}{FEATURES_BOUND}", server.header()).as_bytes()).await?;
    echo(io, input).await
}

/// Echoes complete top-level elements, one write per read.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, mut input: Input) -> io::Result<()> {
    let mut out = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        let mut consumed = 0;
        let mut ended = false;
        loop {
            match scan(&input.pending[consumed..]) {
                Scan::Element { skip, len } => {
                    echo_element(&input.pending[consumed + skip..consumed + skip + len], &mut out);
                    consumed += skip + len;
                }
                Scan::StreamEnd => {
                    ended = true;
                    break;
                }
                Scan::Incomplete => break,
            }
        }
        input.pending.drain(..consumed);
        if ended {
            out.extend_from_slice(STREAM_END.as_bytes());
        }
        if !out.is_empty() {
            send(&mut io, &out).await?;
            out.clear();
        }
        if ended {
            return io.shutdown().await;
        }
        if !input.fill(&mut io).await? {
            return Ok(());
        }
    }
}

/// Appends `element` with the first ` to=` of its start tag turned into ` from=`.
fn echo_element(element: &[u8], out: &mut Vec<u8>) {
    let start_tag_end = element.iter().position(|&byte| byte == b'>').unwrap_or(element.len());
    match find(&element[..start_tag_end], b" to=") {
        Some(at) => {
            out.extend_from_slice(&element[..at]);
            out.extend_from_slice(b" from=");
            out.extend_from_slice(&element[at + 4..]);
        }
        None => out.extend_from_slice(element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_turns_to_into_from() {
        let mut out = Vec::new();
        echo_element(b"<message to='a@b' id='1'><body>x to=y</body></message>", &mut out);
        assert_eq!(out, b"<message from='a@b' id='1'><body>x to=y</body></message>");
    }
}
