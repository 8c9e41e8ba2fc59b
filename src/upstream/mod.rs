//! Reaching and securing the upstream XMPP server for one session.
//!
//! [`UpstreamDirectory`] decides whether a domain is served (a static `[[upstream]]`, or a
//! domain `[domains] allow` lets the gateway find through DNS, D17) and runs the opening
//! sequence: routes (the static address, or SRV `_xmpp-client`/`_xmpps-client` in RFC 2782
//! order, or the A/AAAA fallback: [`resolve`]), addresses checked by the SSRF guard ([`guard`]),
//! TCP with Happy Eyeballs ([`connect`]), the pre-TLS stream header, STARTTLS (or direct TLS),
//! certificate verification against the domain, and the post-TLS stream header, so that nothing
//! from the client is ever written before TLS is up (TLS-3) and nothing learnt before TLS reaches
//! the client (TLS-4). A failed route moves on to the next one, never to plaintext. This module
//! never talks to the client.

pub mod connect;
pub mod guard;
pub mod io;
pub mod proxy_protocol;
pub mod resolve;
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
use tracing::{debug, info};

use crate::config::{Config, ConnectConfig, PreferTls, UpstreamTls};
use crate::metrics::Metrics;
use crate::xml::client::OpenRequest;
use crate::xml::error::XmlError;
use crate::xml::framing;
use crate::xml::splitter::{ServerElementKind, ServerEvent, SplitterLimits, StreamHeader, StreamSplitter};

pub use io::UpstreamIo;
pub use resolve::{DnsFailure, DnsResolver, ResolverSetupError};
pub use tls::{SystemRoots, TlsSetupError};

use guard::DomainPolicy;
use resolve::{Route, RouteTls};

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

/// Most `<see-other-host/>` redirects followed for one route (RFC 6120 §4.9.3.19: "2 to 5").
pub const MAX_REDIRECTS: usize = 5;

/// The host and port of a `<see-other-host/>` text ([`crate::xml::see_other_host`]);
/// `default_port` when there is no port.
fn redirect_target(text: &str, default_port: u16) -> Result<(String, u16), UpstreamError> {
    crate::xml::see_other_host::parse(text)
        .map(|target| (target.host, target.port.unwrap_or(default_port)))
        .ok_or(UpstreamError::Protocol("unusable see-other-host target"))
}

/// The client side of an upstream setup: the client's `<open/>` and its address (for a PROXY
/// protocol header).
#[derive(Debug, Clone, Copy)]
pub struct OpenFor<'a> {
    /// The client's `<open/>`.
    pub open: &'a OpenRequest,
    /// The client's address as the gateway sees it (after trusted proxies).
    pub client: SocketAddr,
}

/// A statically configured upstream: where one domain's server is and how to secure it.
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
    /// The element limit of sessions to this upstream, both directions (D10).
    pub max_element_bytes: usize,
}

/// A served domain and how its server is found.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A static `[[upstream]]`: explicitly configured, so the address guard does not apply.
    Static(Arc<UpstreamTarget>),
    /// Found through DNS (SRV, else A/AAAA); resolved addresses pass the guard unless the domain
    /// is listed in `[domains] special_addresses`.
    Discovered {
        /// The normalised domain.
        domain: String,
        /// Whether special-purpose addresses (loopback, private, …) are allowed for it.
        special_addresses_allowed: bool,
    },
}

impl Upstream {
    /// The normalised domain.
    pub fn domain(&self) -> &str {
        match self {
            Upstream::Static(target) => &target.domain,
            Upstream::Discovered { domain, .. } => domain,
        }
    }

    /// The element limit configured for this upstream (`[[upstream]] max_element_bytes`, which
    /// defaults to the global one); `None` for discovered domains, which use the global limit.
    pub fn element_limit(&self) -> Option<usize> {
        match self {
            Upstream::Static(target) => Some(target.max_element_bytes),
            Upstream::Discovered { .. } => None,
        }
    }
}

/// Why a domain is not served (the session answers `<host-unknown/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotServed {
    /// Neither a static upstream nor in `[domains] allow` (D17).
    #[error("the domain is not allowed by the configuration")]
    DomainNotAllowed,
}

impl NotServed {
    /// The D6-style class, used as `<text/>`, close reason and metric label.
    pub fn class(self) -> &'static str {
        match self {
            NotServed::DomainNotAllowed => "domain-not-allowed",
        }
    }
}

/// Why the upstream layer could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// A CA file could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The DNS resolver could not be configured.
    #[error(transparent)]
    Dns(#[from] ResolverSetupError),
}

/// The domains the gateway serves, how to find their servers, and the shared TLS client
/// configurations (one per static upstream, one pair for discovered domains: shared by every
/// session, so their TLS session caches make reconnections resume, RFC 6120 §3.3).
#[derive(Debug)]
pub struct UpstreamDirectory {
    targets: HashMap<String, Arc<UpstreamTarget>>,
    policy: DomainPolicy,
    resolver: DnsResolver,
    prefer: PreferTls,
    discovered_starttls: Arc<ClientConfig>,
    discovered_direct: Arc<ClientConfig>,
}

impl UpstreamDirectory {
    /// Builds the directory from the configuration: static upstreams (CA files loaded once),
    /// the domain policy, the resolver, and the TLS configurations for discovered domains.
    pub fn from_config(config: &Config, roots: &SystemRoots) -> Result<UpstreamDirectory, UpstreamSetupError> {
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
                max_element_bytes: upstream.element_limit(config.limits.max_element_bytes),
            };
            targets.insert(domain, Arc::new(target));
        }
        let policy = DomainPolicy::new(
            config.domains.allow.iter().map(String::as_str),
            config.domains.special_addresses.iter().map(String::as_str),
            targets.keys().map(String::as_str),
        );
        let ca_file = config.domains.ca_file.as_deref();
        Ok(UpstreamDirectory {
            targets,
            policy,
            resolver: DnsResolver::from_config(&config.dns)?,
            prefer: config.dns.prefer,
            discovered_starttls: tls::client_config(roots, ca_file, false)?,
            discovered_direct: tls::client_config(roots, ca_file, true)?,
        })
    }

    /// Whether and how a normalised domain is served: its static upstream, or DNS discovery
    /// when `[domains] allow` matches it.
    pub fn lookup(&self, domain: &str) -> Result<Upstream, NotServed> {
        if let Some(target) = self.targets.get(domain) {
            return Ok(Upstream::Static(target.clone()));
        }
        if self.policy.allows(domain) {
            return Ok(Upstream::Discovered {
                domain: domain.to_string(),
                special_addresses_allowed: self.policy.special_addresses_allowed(domain),
            });
        }
        Err(NotServed::DomainNotAllowed)
    }

    /// Runs the opening sequence for a client `<open/>`: every route in order, each within the
    /// per-attempt budget, all within the overall budget (D12); a route that fails (TCP, TLS,
    /// certificate, stream) moves on to the next one. Records the duration of each phase (`dns`,
    /// `tcp`, `tls`, `stream`) in `metrics`. The error is the last route's.
    pub async fn establish(
        &self,
        upstream: &Upstream,
        request: OpenFor<'_>,
        connect: &ConnectConfig,
        limits: SplitterLimits,
        metrics: &Metrics,
    ) -> Result<Established, UpstreamError> {
        let mut phase = "dns";
        let all = self.establish_routes(upstream, request, connect, limits, metrics, &mut phase);
        match tokio::time::timeout(connect.overall_timeout(), all).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { phase }),
        }
    }

    async fn establish_routes(
        &self,
        upstream: &Upstream,
        request: OpenFor<'_>,
        connect: &ConnectConfig,
        limits: SplitterLimits,
        metrics: &Metrics,
        phase: &mut &'static str,
    ) -> Result<Established, UpstreamError> {
        let OpenFor { open, client } = request;
        let domain = upstream.domain();
        let (routes, guarded) = match upstream {
            Upstream::Static(target) => {
                let attempt = Attempt {
                    domain,
                    host: &target.host,
                    port: target.port,
                    tls: target.tls,
                    tls_config: target.tls_config.clone(),
                    guarded: false,
                    is_static: true,
                    proxy_client: target.proxy_protocol.then_some(client),
                };
                return self.attempt_following_redirects(&attempt, open, connect, limits, metrics, phase).await;
            }
            Upstream::Discovered { special_addresses_allowed, .. } => {
                *phase = "dns";
                let (xmpp, xmpps) = self.resolver.srv_pair(domain, metrics).await;
                let routes = resolve::plan(domain, &xmpp, &xmpps, self.prefer, &mut rand::rng())
                    .map_err(|_| UpstreamError::SrvDecidedlyUnavailable)?;
                debug!(domain, ?xmpp, ?xmpps, ?routes, "SRV resolution");
                (routes, !special_addresses_allowed)
            }
        };
        let mut last_error = None;
        for Route { host, port, tls } in &routes {
            let (tls, tls_config) = match tls {
                RouteTls::StartTls => (UpstreamTls::Starttls, self.discovered_starttls.clone()),
                RouteTls::Direct => (UpstreamTls::Direct, self.discovered_direct.clone()),
            };
            let attempt = Attempt {
                domain,
                host,
                port: *port,
                tls,
                tls_config: Some(tls_config),
                guarded,
                is_static: false,
                proxy_client: None,
            };
            let error = match self.attempt_following_redirects(&attempt, open, connect, limits, metrics, phase).await {
                Ok(established) => return Ok(established),
                Err(error) => error,
            };
            info!(domain, host = %host, port, class = error.class(), %error, "route failed, trying the next one");
            last_error = Some(error);
        }
        Err(last_error.unwrap_or(UpstreamError::SrvDecidedlyUnavailable))
    }

    /// One route, each hop within the per-attempt budget, following `<see-other-host/>` received
    /// before the first element of the secured stream (D4, RFC 6120 §4.9.3.19): at most
    /// [`MAX_REDIRECTS`] hops, the same domain for `to`, SNI and the certificate (CERT-5), the same
    /// TLS mode, address guard and resolution as the route that redirected. A target without a
    /// port keeps the route's port (the redirect host is not looked up through SRV).
    async fn attempt_following_redirects(
        &self,
        route: &Attempt<'_>,
        open: &OpenRequest,
        connect: &ConnectConfig,
        limits: SplitterLimits,
        metrics: &Metrics,
        phase: &mut &'static str,
    ) -> Result<Established, UpstreamError> {
        let mut redirect: Option<(String, u16)> = None;
        for _ in 0..=MAX_REDIRECTS {
            let attempt = match &redirect {
                None => Attempt { tls_config: route.tls_config.clone(), ..*route },
                // A PROXY header is configured for the upstream's own address only.
                Some((host, port)) => {
                    Attempt { host, port: *port, tls_config: route.tls_config.clone(), proxy_client: None, ..*route }
                }
            };
            let hop = self.attempt(&attempt, open, connect, limits, metrics, phase);
            let target = match tokio::time::timeout(connect.attempt_timeout(), hop).await {
                Ok(Err(UpstreamError::SeeOtherHost(target))) => target,
                Ok(result) => return result,
                Err(_) => return Err(UpstreamError::Timeout { phase }),
            };
            let (host, port) = redirect_target(&target, route.port)?;
            info!(domain = route.domain, host = %host, port, "following see-other-host");
            redirect = Some((host, port));
        }
        Err(UpstreamError::TooManyRedirects)
    }

    /// One route: addresses, guard, TCP (Happy Eyeballs), TLS, stream header.
    async fn attempt(
        &self,
        attempt: &Attempt<'_>,
        open: &OpenRequest,
        connect: &ConnectConfig,
        limits: SplitterLimits,
        metrics: &Metrics,
        phase: &mut &'static str,
    ) -> Result<Established, UpstreamError> {
        *phase = "dns";
        let ips = if let Ok(ip) = attempt.host.parse::<std::net::IpAddr>() {
            // A see-other-host target may be an address; the guard below still applies.
            vec![ip]
        } else if attempt.guarded || !attempt.is_static {
            self.resolver.addresses(attempt.host, metrics).await.map_err(UpstreamError::Dns)?
        } else {
            // A static upstream's host is resolved by the system, as written (hosts file too).
            static_addresses(attempt.host, attempt.port).await?
        };
        let mut refused = None;
        let addresses: Vec<SocketAddr> = ips
            .into_iter()
            .filter(|ip| match guard::special_purpose(*ip).filter(|_| attempt.guarded) {
                Some(range) => {
                    info!(domain = attempt.domain, host = attempt.host, address = %ip, range = range.label(), "address refused by the guard");
                    refused = Some(range);
                    false
                }
                None => true,
            })
            .map(|ip| SocketAddr::new(ip, attempt.port))
            .collect();
        if addresses.is_empty() {
            return Err(match refused {
                Some(range) => UpstreamError::AddressRefused { range: range.label() },
                None => UpstreamError::Dns(DnsFailure::NoData),
            });
        }

        *phase = "tcp";
        let started = Instant::now();
        let (tcp, _address) = connect::happy_eyeballs(&addresses, connect.happy_eyeballs_delay(), TcpStream::connect)
            .await
            .map_err(|failed| UpstreamError::Connect {
                address: failed.address.map_or_else(|| attempt.host.to_string(), |a| a.to_string()),
                source: failed.source,
            })?;
        let _ = tcp.set_nodelay(true);
        metrics.observe_connect_phase("tcp", started.elapsed());
        secure(tcp, attempt, open, limits, metrics, phase).await
    }
}

/// One route to try, with how to secure it.
struct Attempt<'a> {
    domain: &'a str,
    host: &'a str,
    port: u16,
    tls: UpstreamTls,
    tls_config: Option<Arc<ClientConfig>>,
    /// Whether the address guard applies (DNS-discovered, not exempted).
    guarded: bool,
    /// A static `[[upstream]]` address (resolved by the system, never guarded).
    is_static: bool,
    /// The client address to announce in a PROXY protocol v2 header, when configured.
    proxy_client: Option<SocketAddr>,
}

/// The addresses of a static upstream's host (an IP literal as is, a name through the system).
async fn static_addresses(host: &str, port: u16) -> Result<Vec<std::net::IpAddr>, UpstreamError> {
    if let Ok(ip) = host.parse() {
        return Ok(vec![ip]);
    }
    let found = tokio::net::lookup_host((host, port)).await.map_err(|_| UpstreamError::Dns(DnsFailure::Other))?;
    let ips: Vec<std::net::IpAddr> = found.map(|address| address.ip()).collect();
    if ips.is_empty() {
        return Err(UpstreamError::Dns(DnsFailure::NoData));
    }
    Ok(ips)
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
    Stream(#[from] XmlError),
    /// The server sent something unexpected during setup.
    #[error("unexpected upstream behaviour: {0}")]
    Protocol(&'static str),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server redirected with `<see-other-host/>` (followed by the route, D4; reaching the
    /// session only as [`UpstreamError::TooManyRedirects`] or the last hop's error).
    #[error("the server redirected to {0:?}")]
    SeeOtherHost(String),
    /// More than [`MAX_REDIRECTS`] successive `<see-other-host/>`.
    #[error("more than {MAX_REDIRECTS} successive see-other-host redirects")]
    TooManyRedirects,
    /// Reading or writing failed after the connection was up.
    #[error("upstream I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A DNS lookup gave no usable answer.
    #[error("DNS lookup failed ({})", .0.class())]
    Dns(DnsFailure),
    /// SRV records exist but none is usable (a lone "." target): no A/AAAA fallback.
    #[error("the service is decidedly not available at this domain (SRV target \".\")")]
    SrvDecidedlyUnavailable,
    /// Every address of a route is a special-purpose address the guard refuses (D17).
    #[error("every address is in a refused range ({range})")]
    AddressRefused {
        /// The range of the last refused address (for logs).
        range: &'static str,
    },
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
            UpstreamError::Timeout { phase: "dns" } => "dns-timeout",
            UpstreamError::Timeout { phase: "tcp" } => "connect-timeout",
            UpstreamError::Timeout { phase: "tls" } => "tls-timeout",
            UpstreamError::Timeout { .. } => "stream-timeout",
            UpstreamError::StartTlsRefused => "starttls-refused",
            UpstreamError::StartTlsInjection => "starttls-injection",
            UpstreamError::Tls { class, .. } => class,
            UpstreamError::Stream(_) => "upstream-bad-xml",
            UpstreamError::Protocol(_) => "upstream-protocol-error",
            UpstreamError::Closed => "upstream-closed",
            UpstreamError::SeeOtherHost(_) => "see-other-host",
            UpstreamError::TooManyRedirects => "see-other-host-loop",
            UpstreamError::Io(_) => "upstream-io-error",
            UpstreamError::Dns(failure) => failure.class(),
            UpstreamError::SrvDecidedlyUnavailable => "srv-decidedly-unavailable",
            UpstreamError::AddressRefused { .. } => "address-refused",
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
    /// The first event after that header, already read to see whether it was a redirect (D4):
    /// the session handles it before reading more. `None` when the splitter refused the bytes
    /// (it stays poisoned, so the session's next read reports the same error, ERR-4).
    pub first: Option<ServerEvent>,
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
        ServerEvent::Header(header) => Ok(*header),
        ServerEvent::End => Err(UpstreamError::Closed),
        ServerEvent::Element(_) => Err(UpstreamError::Protocol("element before the stream header")),
    }
}

/// Secures a connected TCP stream as `attempt` says (STARTTLS, direct TLS, or none for a static
/// `tls = "none"` upstream) and exchanges the stream headers.
async fn secure(
    tcp: TcpStream,
    attempt: &Attempt<'_>,
    open: &OpenRequest,
    limits: SplitterLimits,
    metrics: &Metrics,
    phase: &mut &'static str,
) -> Result<Established, UpstreamError> {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut splitter = StreamSplitter::new(limits);
    let domain = attempt.domain;
    let mut tcp = tcp;
    if let Some(client) = attempt.proxy_client {
        let server = tcp.peer_addr()?;
        write_bytes(&mut tcp, &proxy_protocol::header_v2(client, server)).await?;
    }

    *phase = "tls";
    let started = Instant::now();
    let mut io = match attempt.tls {
        UpstreamTls::None => UpstreamIo::Plain(tcp),
        UpstreamTls::Direct => UpstreamIo::Tls(Box::new(handshake(attempt, tcp).await?)),
        UpstreamTls::Starttls => {
            starttls_negotiation(&mut tcp, &mut splitter, &mut buf, open, domain).await?;
            UpstreamIo::Tls(Box::new(handshake(attempt, tcp).await?))
        }
    };
    if attempt.tls != UpstreamTls::None {
        metrics.observe_connect_phase("tls", started.elapsed());
    }

    *phase = "stream";
    let started = Instant::now();
    splitter.expect_new_stream();
    write_all(&mut io, &framing::upstream_header(open, domain, true)).await?;
    let header = read_header(&mut io, &mut splitter, &mut buf).await?;
    let first = match next_event(&mut io, &mut splitter, &mut buf).await {
        Ok(ServerEvent::Element(element)) if element.see_other_host.is_some() => {
            let _ = write_all(&mut io, framing::UPSTREAM_STREAM_END).await;
            let _ = io.shutdown().await;
            return Err(UpstreamError::SeeOtherHost(element.see_other_host.unwrap_or_default()));
        }
        Ok(event) => Some(event),
        Err(UpstreamError::Stream(_)) => None,
        Err(error) => return Err(error),
    };
    metrics.observe_connect_phase("stream", started.elapsed());
    Ok(Established { io, splitter, header, first })
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
            return Err(match element.see_other_host {
                // Followed like a redirect after TLS: the certificate is still checked against the
                // original domain, so a forged redirect can only deny service (§4.9.3.19).
                Some(target) => UpstreamError::SeeOtherHost(target),
                None => UpstreamError::Protocol("stream error before TLS"),
            });
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

/// The TLS handshake; the server name (SNI and the certificate's reference identity) is always
/// the source domain, never the SRV target (CERT-1, CERT-4).
async fn handshake(
    attempt: &Attempt<'_>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
    let Some(config) = attempt.tls_config.clone() else {
        return Err(UpstreamError::Protocol("TLS requested without a TLS configuration"));
    };
    let server_name = ServerName::try_from(attempt.domain.to_string())
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

    fn directory(toml: &str) -> UpstreamDirectory {
        let config = Config::from_toml(toml).unwrap();
        UpstreamDirectory::from_config(&config, &SystemRoots::empty()).unwrap()
    }

    #[tokio::test]
    async fn lookup_consults_static_upstreams_then_the_allowlist() {
        let directory = directory(
            "[dns]\nnameservers = [\"127.0.0.1:53\"]\n[domains]\nallow = [\"*.example.net\", \"corp.example\"]\n\
             special_addresses = [\"corp.example\"]\n\
             [[upstream]]\ndomain = \"static.example\"\naddress = \"127.0.0.1:5222\"\n",
        );
        assert!(matches!(directory.lookup("static.example"), Ok(Upstream::Static(_))));
        assert!(matches!(
            directory.lookup("a.example.net"),
            Ok(Upstream::Discovered { special_addresses_allowed: false, .. })
        ));
        assert!(matches!(
            directory.lookup("corp.example"),
            Ok(Upstream::Discovered { special_addresses_allowed: true, .. })
        ));
        assert_eq!(directory.lookup("example.net").unwrap_err(), NotServed::DomainNotAllowed);
        assert_eq!(directory.lookup("other.example").unwrap_err().class(), "domain-not-allowed");
    }

    #[test]
    fn discovery_failure_classes() {
        assert_eq!(UpstreamError::Dns(DnsFailure::NxDomain).class(), "dns-nxdomain");
        assert_eq!(UpstreamError::SrvDecidedlyUnavailable.class(), "srv-decidedly-unavailable");
        assert_eq!(UpstreamError::AddressRefused { range: "loopback" }.class(), "address-refused");
        assert_eq!(UpstreamError::Timeout { phase: "dns" }.class(), "dns-timeout");
    }

    #[test]
    fn see_other_host_targets() {
        let ok = |text: &str| redirect_target(text, 5222).unwrap();
        assert_eq!(ok("xmpp2.example.com:5223"), ("xmpp2.example.com".to_string(), 5223));
        assert_eq!(ok(" XMPP2.example.com. "), ("xmpp2.example.com".to_string(), 5222));
        assert_eq!(ok("\n  [2001:41D0:1:A49b::1]:9222\n"), ("2001:41D0:1:A49b::1".to_string(), 9222));
        assert_eq!(ok("[::1]"), ("::1".to_string(), 5222));
        assert_eq!(ok("127.0.0.1:5269"), ("127.0.0.1".to_string(), 5269));
        for bad in ["", ":5222", "host:0", "host:x", "[nope]:1", "a b", "wss://gw.example/x", "::1:5222"] {
            assert!(redirect_target(bad, 5222).is_err(), "{bad:?}");
        }
    }

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
