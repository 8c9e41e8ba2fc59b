//! One session's way to its server's TCP port: the routes of its domain in order (the static
//! address, or SRV `_xmpp-client`/`_xmpps-client` in RFC 2782 order, or the A/AAAA fallback:
//! [`super::resolve`]), each route's address lookup, the address guard ([`super::guard`]) and
//! Happy Eyeballs ([`super::connect`]), and `<see-other-host/>` hops on the current route.
//!
//! It connects TCP and stops there: TLS is [`super::tls::handshake`], and everything XMPP (stream
//! headers, STARTTLS, the redirect itself) is the session core's. Each step runs within the
//! budget it is given (D12) and fails with a typed [`FailureClass`]. Every socket it opens
//! besides the winning connection (DNS questions, Happy Eyeballs attempts) borrows a descriptor
//! from the process's budget ([`DescriptorPools::borrow`]) for as long as it is open.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info};

use crate::config::{PreferTls, UpstreamTls};
use crate::listener::descriptors::{Borrowed, DescriptorPools};
use crate::metrics::Metrics;

use super::failure::{DnsFailure, FailureClass, TcpFailure};
use super::resolve::{self, DnsResolver, Route, RouteTls};
use super::{connect, guard, proxy_protocol, Upstream};

/// Descriptors one lookup borrows: its two questions are asked at once.
const DESCRIPTORS_PER_LOOKUP: u32 = 2;

/// The time a connect may take: the route's own budget from its start, and the whole setup's
/// deadline (D12).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// One route's budget (its address lookup and TCP count against it).
    pub attempt: Duration,
    /// The whole setup's deadline.
    pub overall_deadline: Instant,
}

/// A connected route, ready for the session to secure.
#[derive(Debug)]
pub struct Link {
    /// The TCP connection.
    pub tcp: TcpStream,
    /// How to secure it: STARTTLS, direct TLS, or not at all (a static `tls = "none"`).
    pub tls: UpstreamTls,
    /// The TLS client configuration (absent for `tls = "none"`).
    pub tls_config: Option<Arc<ClientConfig>>,
    /// A PROXY protocol v2 header to write first, when the upstream is configured for one.
    pub proxy_header: Option<Vec<u8>>,
    /// When this route's attempt started: its lookup and TCP time count against its budget.
    pub attempt_started: Instant,
}

/// One place to connect to, with how to secure it and how to look it up.
#[derive(Debug, Clone)]
struct Hop {
    host: String,
    port: u16,
    tls: UpstreamTls,
    tls_config: Option<Arc<ClientConfig>>,
    /// Whether the address guard applies (DNS-discovered, not exempted).
    guarded: bool,
    /// A static `[[upstream]]` address (resolved by the system, never guarded).
    is_static: bool,
    /// Announce the client in a PROXY protocol v2 header (only the configured address).
    proxy: bool,
}

/// What a [`Connector`] needs from the directory, shared by every session.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub resolver: DnsResolver,
    pub prefer: PreferTls,
    pub discovered_starttls: Arc<ClientConfig>,
    pub discovered_direct: Arc<ClientConfig>,
    pub happy_eyeballs_delay: Duration,
}

/// The routes of one session's domain, tried in order. Made by
/// [`super::UpstreamDirectory::connector`].
#[derive(Debug)]
pub struct Connector {
    shared: Shared,
    metrics: Metrics,
    upstream: Upstream,
    client: SocketAddr,
    /// Routes not tried yet.
    routes: VecDeque<Hop>,
    /// The route being tried (redirects keep its security, guard and identity).
    current: Option<Hop>,
    /// The descriptors this session's DNS questions and connection attempts borrow.
    descriptors: DescriptorPools,
}

impl Connector {
    pub(super) fn new(
        shared: Shared,
        metrics: Metrics,
        upstream: Upstream,
        client: SocketAddr,
        descriptors: DescriptorPools,
    ) -> Connector {
        Connector { shared, metrics, upstream, client, routes: VecDeque::new(), current: None, descriptors }
    }

    /// Borrows the descriptors of a lookup's questions (SRV: `_xmpp-client` and
    /// `_xmpps-client`; addresses: A and AAAA, or the system's lookup), asked at once. Waits
    /// while the pool is empty; the caller's deadline bounds the wait.
    async fn borrow_for_lookup(&self) -> Result<Borrowed, FailureClass> {
        self.descriptors.borrow(DESCRIPTORS_PER_LOOKUP).await.map_err(|_| FailureClass::IoError)
    }

    /// Plans the routes (SRV for a discovered domain, within the overall deadline) and
    /// connects the first one.
    pub async fn first(&mut self, budget: Budget) -> Result<Link, FailureClass> {
        self.routes = match self.plan(budget).await {
            Ok(routes) => routes,
            Err(class) => {
                self.current = None;
                return Err(class);
            }
        };
        self.next(budget).await.unwrap_or(Err(FailureClass::SrvDecidedlyUnavailable))
    }

    /// Connects the next route; `None` when every route has been tried.
    pub async fn next(&mut self, budget: Budget) -> Option<Result<Link, FailureClass>> {
        let hop = self.routes.pop_front()?;
        self.current = Some(hop.clone());
        Some(self.connect(&hop, budget).await)
    }

    /// Connects a `<see-other-host/>` target of the current route: the same security, address
    /// guard and certificate identity (CERT-5), the route's port when the target names none, no
    /// PROXY header (it is configured for the upstream's own address only).
    pub async fn redirect(&mut self, host: String, port: Option<u16>, budget: Budget) -> Result<Link, FailureClass> {
        let Some(current) = &self.current else { return Err(FailureClass::ProtocolError) };
        let hop = Hop { host, port: port.unwrap_or(current.port), proxy: false, ..current.clone() };
        info!(domain = self.upstream.domain(), host = %hop.host, port = hop.port, "following see-other-host");
        self.connect(&hop, budget).await
    }

    /// The routes of the domain, in order.
    async fn plan(&self, budget: Budget) -> Result<VecDeque<Hop>, FailureClass> {
        let (domain, guarded) = match &self.upstream {
            Upstream::Static(target) => {
                let hop = Hop {
                    host: target.host.clone(),
                    port: target.port,
                    tls: target.tls,
                    tls_config: target.tls_config.clone(),
                    guarded: false,
                    is_static: true,
                    proxy: target.proxy_protocol,
                };
                return Ok(VecDeque::from([hop]));
            }
            Upstream::Discovered { domain, special_addresses_allowed } => (domain, !special_addresses_allowed),
        };
        let lookup = async {
            let _borrowed = self.borrow_for_lookup().await?;
            Ok(self.shared.resolver.srv_pair(domain, &self.metrics).await)
        };
        let (xmpp, xmpps) =
            timeout_at(budget.overall_deadline, lookup).await.map_err(|_| FailureClass::Dns(DnsFailure::Timeout))??;
        let routes = resolve::plan(domain, &xmpp, &xmpps, self.shared.prefer, &mut rand::rng())
            .map_err(|_| FailureClass::SrvDecidedlyUnavailable)?;
        debug!(domain, ?xmpp, ?xmpps, ?routes, "SRV resolution");
        Ok(routes.into_iter().map(|route| self.discovered_hop(route, guarded)).collect())
    }

    fn discovered_hop(&self, route: Route, guarded: bool) -> Hop {
        let (tls, config) = match route.tls {
            RouteTls::StartTls => (UpstreamTls::Starttls, &self.shared.discovered_starttls),
            RouteTls::Direct => (UpstreamTls::Direct, &self.shared.discovered_direct),
        };
        Hop {
            host: route.host,
            port: route.port,
            tls,
            tls_config: Some(config.clone()),
            guarded,
            is_static: false,
            proxy: false,
        }
    }

    /// One hop: addresses, guard, TCP with Happy Eyeballs, within the route's budget.
    async fn connect(&self, hop: &Hop, budget: Budget) -> Result<Link, FailureClass> {
        let attempt_started = Instant::now();
        let deadline = (attempt_started + budget.attempt).min(budget.overall_deadline);
        let result = self.connect_by(hop, deadline, attempt_started).await;
        if let Err(class) = &result {
            let domain = self.upstream.domain();
            info!(domain, host = %hop.host, port = hop.port, %class, "route failed");
        }
        result
    }

    async fn connect_by(&self, hop: &Hop, deadline: Instant, attempt_started: Instant) -> Result<Link, FailureClass> {
        let lookup = self.addresses(hop);
        let ips = timeout_at(deadline, lookup).await.map_err(|_| FailureClass::Dns(DnsFailure::Timeout))??;
        let addresses = self.guard(hop, ips)?;
        let started = Instant::now();
        // Each attempt borrows a descriptor until it ends; the one that wins gives its back, as
        // the session's slot counts its upstream connection.
        let dial = connect::happy_eyeballs(&addresses, self.shared.happy_eyeballs_delay, |address| {
            let descriptors = self.descriptors.clone();
            async move {
                let _borrowed = descriptors.borrow(1).await.map_err(io::Error::other)?;
                TcpStream::connect(address).await
            }
        });
        let (tcp, _address) = timeout_at(deadline, dial)
            .await
            .map_err(|_| FailureClass::Tcp(TcpFailure::Timeout))?
            .map_err(|failed| FailureClass::Tcp(tcp_failure(&failed.source)))?;
        let _ = tcp.set_nodelay(true);
        self.metrics.observe_connect_phase("tcp", started.elapsed());
        let proxy_header = match hop.proxy {
            true => Some(proxy_protocol::header_v2(self.client, tcp.peer_addr().map_err(|_| FailureClass::IoError)?)),
            false => None,
        };
        Ok(Link { tcp, tls: hop.tls, tls_config: hop.tls_config.clone(), proxy_header, attempt_started })
    }

    /// The addresses of a hop's host: an IP literal as is, a static upstream's name through the
    /// system (hosts file too), anything else through the gateway's resolver.
    async fn addresses(&self, hop: &Hop) -> Result<Vec<IpAddr>, FailureClass> {
        if let Ok(ip) = hop.host.parse::<IpAddr>() {
            // A see-other-host target may be an address; the guard still applies.
            return Ok(vec![ip]);
        }
        let _borrowed = self.borrow_for_lookup().await?;
        if hop.guarded || !hop.is_static {
            return self.shared.resolver.addresses(&hop.host, &self.metrics).await.map_err(FailureClass::Dns);
        }
        let found = tokio::net::lookup_host((hop.host.as_str(), hop.port))
            .await
            .map_err(|_| FailureClass::Dns(DnsFailure::Other))?;
        let ips: Vec<IpAddr> = found.map(|address| address.ip()).collect();
        if ips.is_empty() {
            return Err(FailureClass::Dns(DnsFailure::NoData));
        }
        Ok(ips)
    }

    /// The addresses the guard lets through (all of them when it does not apply).
    fn guard(&self, hop: &Hop, ips: Vec<IpAddr>) -> Result<Vec<SocketAddr>, FailureClass> {
        let mut refused = false;
        let addresses: Vec<SocketAddr> = ips
            .into_iter()
            .filter(|ip| match guard::special_purpose(*ip).filter(|_| hop.guarded) {
                Some(range) => {
                    let domain = self.upstream.domain();
                    info!(domain, host = %hop.host, address = %ip, range = range.label(), "address refused by the guard");
                    refused = true;
                    false
                }
                None => true,
            })
            .map(|ip| SocketAddr::new(ip, hop.port))
            .collect();
        match (addresses.is_empty(), refused) {
            (false, _) => Ok(addresses),
            (true, true) => Err(FailureClass::AddressRefused),
            (true, false) => Err(FailureClass::Dns(DnsFailure::NoData)),
        }
    }
}

/// The class of a failed TCP connect.
fn tcp_failure(error: &std::io::Error) -> TcpFailure {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => TcpFailure::Refused,
        std::io::ErrorKind::TimedOut => TcpFailure::Timeout,
        std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => TcpFailure::Unreachable,
        _ => TcpFailure::Other,
    }
}
