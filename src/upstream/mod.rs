//! Reaching and securing the upstream XMPP server for one session.
//!
//! [`UpstreamDirectory`] says where a domain's server is (today: the static `[[upstream]]`
//! table; DNS SRV discovery plugs in here). [`establish`] runs the opening sequence: TCP, the
//! pre-TLS stream header, STARTTLS (or direct TLS), certificate verification against the
//! domain, and the post-TLS stream header, so that nothing from the client is ever written
//! before TLS is up (TLS-3) and nothing learnt before TLS reaches the client (TLS-4). This module
//! never talks to the client.

pub mod io;
pub mod proxy_protocol;
pub mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{Config, ConnectConfig, UpstreamTls};
use crate::metrics::Metrics;
use crate::xml::client::OpenRequest;
use crate::xml::framing;
use crate::xml::splitter::{
    ServerElementKind, ServerEvent, ServerStreamError, SplitterLimits, StreamHeader, StreamSplitter,
};

pub use io::UpstreamIo;
pub use tls::{SystemRoots, TlsSetupError};

/// Most bytes taken from the upstream socket in one read.
pub const READ_CHUNK_BYTES: usize = 4096;

thread_local! {
    /// One read buffer per runtime thread, shared by the sessions it runs: [`read_into_splitter`]
    /// copies what it read into the session's splitter within the same poll, so an idle session
    /// keeps no read buffer of its own (4 KiB of each session's memory before, docs/PERFORMANCE.md).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK_BYTES].into_boxed_slice());
}

/// Reads once from `io` (at most [`READ_CHUNK_BYTES`]) and feeds the bytes to `splitter`.
/// Returns how many bytes arrived: 0 at end of stream. Cancel-safe: nothing is read unless the
/// poll that reads also feeds.
pub async fn read_into_splitter<R: AsyncRead + Unpin>(
    io: &mut R,
    splitter: &mut StreamSplitter,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    splitter.feed(buf.filled());
                    Poll::Ready(Ok(buf.filled().len()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// Where one domain's server is and how to secure the connection.
#[derive(Debug)]
pub struct UpstreamTarget {
    /// The normalised domain (reference identity for the certificate, SNI, `to`).
    pub domain: String,
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STARTTLS, direct TLS or none.
    pub tls: UpstreamTls,
    /// The TLS client configuration (absent for `tls = "none"`).
    pub tls_config: Option<Arc<ClientConfig>>,
    /// Send a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
}

/// The domains the gateway serves and their upstream servers.
#[derive(Debug, Default)]
pub struct UpstreamDirectory {
    targets: HashMap<String, Arc<UpstreamTarget>>,
}

impl UpstreamDirectory {
    /// Builds the directory from the `[[upstream]]` table, loading CA files once.
    pub fn from_config(config: &Config, roots: &SystemRoots) -> Result<UpstreamDirectory, TlsSetupError> {
        let mut targets = HashMap::new();
        for upstream in &config.upstream {
            // Validation already proved both parse.
            let Ok(domain) = crate::domain::normalize(&upstream.domain) else { continue };
            let Ok((host, port)) = parse_host_port(&upstream.address) else { continue };
            let tls_config = match upstream.tls {
                UpstreamTls::None => None,
                UpstreamTls::Starttls => Some(tls::client_config(roots, upstream.ca_file.as_deref(), false)?),
                UpstreamTls::Direct => Some(tls::client_config(roots, upstream.ca_file.as_deref(), true)?),
            };
            let target = UpstreamTarget {
                domain: domain.clone(),
                host,
                port,
                tls: upstream.tls,
                tls_config,
                proxy_protocol: upstream.proxy_protocol,
            };
            targets.insert(domain, Arc::new(target));
        }
        Ok(UpstreamDirectory { targets })
    }

    /// The upstream for a normalised domain, if the gateway serves it.
    pub fn lookup(&self, domain: &str) -> Option<Arc<UpstreamTarget>> {
        self.targets.get(domain).cloned()
    }
}

/// Splits `host:port`, `ip:port` or `[ipv6]:port`.
pub fn parse_host_port(address: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or("missing ']' after an IPv6 address")?;
        (host, rest.strip_prefix(':').ok_or("missing ':port' after ']'")?)
    } else {
        address.rsplit_once(':').ok_or("missing ':port'")?
    };
    if host.is_empty() {
        return Err("missing host");
    }
    if host.contains(':') && !address.starts_with('[') {
        return Err("IPv6 addresses must be written in brackets, e.g. [::1]:5222");
    }
    let port: u16 = port.parse().map_err(|_| "port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("port is not a number from 1 to 65535");
    }
    Ok((host.to_string(), port))
}

/// Why the upstream could not be reached, secured or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection failed.
    #[error("TCP connect to {address} failed: {source}")]
    Connect {
        /// What was dialled.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An attempt or the whole setup ran out of time.
    #[error("upstream setup timed out during {phase}")]
    Timeout {
        /// `tcp`, `tls` or `stream`.
        phase: &'static str,
    },
    /// The server refused STARTTLS (`<failure/>` or closed the stream).
    #[error("the server refused STARTTLS")]
    StartTlsRefused,
    /// Bytes followed `<proceed/>` in the same read: a STARTTLS response injection (TV-14).
    #[error("data injected after <proceed/>")]
    StartTlsInjection,
    /// The TLS handshake failed; `class` is the D6 class (e.g. `tls-cert-name-mismatch`).
    #[error("TLS handshake failed ({class}): {source}")]
    Tls {
        /// D6 failure class.
        class: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server's stream was malformed or broke the protocol.
    #[error("upstream stream error: {0}")]
    Stream(#[from] ServerStreamError),
    /// The server sent something unexpected during setup.
    #[error("unexpected upstream behaviour: {0}")]
    Protocol(&'static str),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// Reading or writing failed after the connection was up.
    #[error("upstream I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl UpstreamError {
    /// The machine-readable failure class of D6, used in the close reason, the `<text/>` of
    /// `<remote-connection-failed/>`, and as a metric label.
    pub fn class(&self) -> &'static str {
        match self {
            UpstreamError::Connect { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "connect-refused",
                std::io::ErrorKind::TimedOut => "connect-timeout",
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => "connect-unreachable",
                _ => "connect-failed",
            },
            UpstreamError::Timeout { phase: "tcp" } => "connect-timeout",
            UpstreamError::Timeout { phase: "tls" } => "tls-timeout",
            UpstreamError::Timeout { .. } => "stream-timeout",
            UpstreamError::StartTlsRefused => "starttls-refused",
            UpstreamError::StartTlsInjection => "starttls-injection",
            UpstreamError::Tls { class, .. } => class,
            UpstreamError::Stream(_) => "upstream-bad-xml",
            UpstreamError::Protocol(_) => "upstream-protocol-error",
            UpstreamError::Closed => "upstream-closed",
            UpstreamError::Io(_) => "upstream-io-error",
        }
    }
}

/// An upstream stream ready for the client: TLS up (unless configured off), the post-TLS
/// header received. The features and everything after it are still to be read with `splitter`.
#[derive(Debug)]
pub struct Established {
    /// The byte stream.
    pub io: UpstreamIo,
    /// The splitter, positioned after the post-TLS stream header.
    pub splitter: StreamSplitter,
    /// The post-TLS stream header (the only one the client may learn about, TLS-4).
    pub header: StreamHeader,
}

/// Reads from `io` until the splitter yields an event.
pub async fn next_event<R: AsyncRead + Unpin>(
    io: &mut R,
    splitter: &mut StreamSplitter,
    buf: &mut [u8],
) -> Result<ServerEvent, UpstreamError> {
    loop {
        if let Some(event) = splitter.next_event()? {
            return Ok(event);
        }
        let read = io.read(buf).await?;
        if read == 0 {
            return Err(UpstreamError::Closed);
        }
        splitter.feed(&buf[..read]);
    }
}

async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, text: &str) -> Result<(), UpstreamError> {
    write_bytes(io, text.as_bytes()).await
}

async fn write_bytes<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> Result<(), UpstreamError> {
    io.write_all(bytes).await?;
    io.flush().await?;
    Ok(())
}

async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
    splitter: &mut StreamSplitter,
    buf: &mut [u8],
) -> Result<StreamHeader, UpstreamError> {
    match next_event(io, splitter, buf).await? {
        ServerEvent::Header(header) => Ok(header),
        ServerEvent::End => Err(UpstreamError::Closed),
        ServerEvent::Element(_) => Err(UpstreamError::Protocol("element before the stream header")),
    }
}

/// Runs the opening sequence against `target` for a client `<open/>`, within the budgets of
/// `connect`, recording the duration of each phase (`tcp`, `tls`, `stream`) in `metrics`.
pub async fn establish(
    target: &UpstreamTarget,
    open: &OpenRequest,
    connect: &ConnectConfig,
    limits: SplitterLimits,
    metrics: &Metrics,
    client: SocketAddr,
) -> Result<Established, UpstreamError> {
    let mut phase = "tcp";
    let attempt = tokio::time::timeout(
        connect.attempt_timeout(),
        establish_once(target, open, limits, metrics, client, &mut phase),
    );
    match tokio::time::timeout(connect.overall_timeout(), attempt).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(UpstreamError::Timeout { phase }),
    }
}

async fn establish_once(
    target: &UpstreamTarget,
    open: &OpenRequest,
    limits: SplitterLimits,
    metrics: &Metrics,
    client: SocketAddr,
    phase: &mut &'static str,
) -> Result<Established, UpstreamError> {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut splitter = StreamSplitter::new(limits);

    *phase = "tcp";
    let started = Instant::now();
    let address = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| UpstreamError::Connect { address: address.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    metrics.observe_connect_phase("tcp", started.elapsed());
    let mut tcp = tcp;
    if target.proxy_protocol {
        let server = tcp.peer_addr()?;
        write_bytes(&mut tcp, &proxy_protocol::header_v2(client, server)).await?;
    }

    *phase = "tls";
    let started = Instant::now();
    let mut io = match target.tls {
        UpstreamTls::None => UpstreamIo::Plain(tcp),
        UpstreamTls::Direct => UpstreamIo::Tls(Box::new(handshake(target, tcp).await?)),
        UpstreamTls::Starttls => {
            starttls_negotiation(&mut tcp, &mut splitter, &mut buf, open, &target.domain).await?;
            UpstreamIo::Tls(Box::new(handshake(target, tcp).await?))
        }
    };
    if target.tls != UpstreamTls::None {
        metrics.observe_connect_phase("tls", started.elapsed());
    }

    *phase = "stream";
    let started = Instant::now();
    splitter.expect_new_stream();
    write_all(&mut io, &framing::upstream_header(open, &target.domain, true)).await?;
    let header = read_header(&mut io, &mut splitter, &mut buf).await?;
    metrics.observe_connect_phase("stream", started.elapsed());
    Ok(Established { io, splitter, header })
}

/// The plaintext part of STARTTLS: header without `from` (HDR-4), features (discarded, TLS-4),
/// `<starttls/>` sent whatever the features said (TLS-2), `<proceed/>` with nothing after it.
async fn starttls_negotiation(
    tcp: &mut TcpStream,
    splitter: &mut StreamSplitter,
    buf: &mut [u8],
    open: &OpenRequest,
    domain: &str,
) -> Result<(), UpstreamError> {
    write_all(tcp, &framing::upstream_header(open, domain, false)).await?;
    read_header(tcp, splitter, buf).await?;
    match next_event(tcp, splitter, buf).await {
        Ok(ServerEvent::Element(element)) if element.kind == ServerElementKind::Features => {}
        Ok(ServerEvent::Element(element)) if element.kind == ServerElementKind::StreamError => {
            return Err(UpstreamError::Protocol("stream error before TLS"))
        }
        Ok(ServerEvent::End) | Err(UpstreamError::Closed) => return Err(UpstreamError::Closed),
        Ok(_) => return Err(UpstreamError::Protocol("expected <stream:features/> before TLS")),
        Err(error) => return Err(error),
    }
    write_all(tcp, framing::STARTTLS_REQUEST).await?;
    match next_event(tcp, splitter, buf).await {
        Ok(ServerEvent::Element(element)) if element.kind == ServerElementKind::TlsProceed => {
            if splitter.buffered_len() > 0 {
                return Err(UpstreamError::StartTlsInjection);
            }
            Ok(())
        }
        Ok(ServerEvent::Element(element)) if element.kind == ServerElementKind::TlsFailure => {
            Err(UpstreamError::StartTlsRefused)
        }
        Ok(ServerEvent::End) | Err(UpstreamError::Closed) => Err(UpstreamError::StartTlsRefused),
        Ok(_) => Err(UpstreamError::Protocol("expected <proceed/> after <starttls/>")),
        Err(error) => Err(error),
    }
}

async fn handshake(
    target: &UpstreamTarget,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
    let Some(config) = target.tls_config.clone() else {
        return Err(UpstreamError::Protocol("TLS requested without a TLS configuration"));
    };
    let server_name = ServerName::try_from(target.domain.clone())
        .map_err(|_| UpstreamError::Protocol("domain is not a valid TLS server name"))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|source| UpstreamError::Tls { class: tls::classify_handshake_error(&source), source })?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("127.0.0.1:5222").unwrap(), ("127.0.0.1".to_string(), 5222));
        assert_eq!(parse_host_port("xmpp.example.com:5223").unwrap(), ("xmpp.example.com".to_string(), 5223));
        assert_eq!(parse_host_port("[::1]:5222").unwrap(), ("::1".to_string(), 5222));
        assert!(parse_host_port("::1:5222").is_err());
        assert!(parse_host_port("example.com").is_err());
        assert!(parse_host_port("example.com:0").is_err());
        assert!(parse_host_port("example.com:70000").is_err());
        assert!(parse_host_port(":5222").is_err());
    }
}
