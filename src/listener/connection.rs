//! One connection until its WebSocket upgrade: the TLS handshake on a `wss://` listener, then
//! HTTP/1.1 through hyper, all within the handshake timeout and cut short when draining starts;
//! or, when the client chose it by ALPN, HTTP/2 ([`super::http2`]).
//!
//! Also the socket wrapper that carries the connection's descriptor slot into the session after
//! the upgrade. Nothing here looks at XML or decides whether a request may become a session
//! (that is [`crate::server`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::debug;

use super::http2::Http2Connection;
use super::lease::ConnectionLease;
use crate::config::LimitsConfig;
use crate::control::{AddressPermit, Control, LimitExceeded};
use crate::server::PeerInfo;
use crate::session::Gateway;

/// A connection's socket with its descriptor slot: the slot is given back when the socket is
/// dropped, wherever the socket is by then (a session owns it after the upgrade).
pub(crate) struct Counted<I> {
    io: I,
    _slot: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What every connection of the public listener shares.
#[derive(Clone)]
pub(crate) struct Edge {
    /// The listener does the TLS handshake itself (`wss://`).
    pub(crate) secure: bool,
    /// Drain signal, limits, the current configuration.
    pub(crate) control: Arc<Control>,
    /// The public router ([`crate::server::router`]).
    pub(crate) router: Router,
    /// The descriptor budget's slots ([`super::descriptors`]): a connection holds one, and an
    /// HTTP/2 connection one more for each session it carries.
    pub(crate) slots: Arc<Semaphore>,
}

/// The HTTP/1.1 settings of a listener: request heads up to `max_header_bytes` (431 beyond), each
/// within `header_timeout` (counted from when the connection starts waiting for it, so an idle
/// keep-alive connection is closed after it too).
fn http1(max_header_bytes: usize, header_timeout: Duration) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header_bytes)
        .max_header_size(max_header_bytes);
    http
}

/// The router as a hyper service for one connection: each request carries the peer and, on
/// HTTP/2, what the WebSocket handler needs of the connection.
pub(super) fn service(
    router: Router,
    peer: PeerInfo,
    http2: Option<Http2Connection>,
    lease: Option<ConnectionLease>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(connection) = &http2 {
            request.extensions_mut().insert(connection.clone());
        }
        if let Some(lease) = &lease {
            request.extensions_mut().insert(lease.clone());
        }
        let mut router = router.clone();
        async move { router.call(request).await }
    })
}

/// How long a BOSH connection may still deliver its answers once draining starts.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 on one public connection until it upgrades, closes or fails: within the
/// deadline of its `lease` (the handshake timeout, extended by BOSH long polls), and cut short
/// when draining starts (after [`DRAIN_GRACE`] for a BOSH connection).
async fn serve_http1<I>(
    io: I,
    peer: PeerInfo,
    edge: &Edge,
    limits: &LimitsConfig,
    lease: ConnectionLease,
) -> Result<(), Closed>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1(limits.max_header_bytes, limits.handshake_timeout)
        .serve_connection(TokioIo::new(io), service(edge.router.clone(), peer, None, Some(lease.clone())))
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = lease.deadline();
        tokio::select! {
            result = connection.as_mut() => return http1_ended(result),
            () = tokio::time::sleep_until(deadline) => {
                if lease.deadline() <= Instant::now() {
                    return Err(if draining { Closed::Draining } else { Closed::Timeout });
                }
            }
            () = edge.control.drain.cancelled(), if !draining => {
                if !lease.long_poll() {
                    return Err(Closed::Draining);
                }
                draining = true;
                connection.as_mut().graceful_shutdown();
                lease.cut_at(Instant::now() + DRAIN_GRACE);
            }
        }
    }
}

/// A connection counted in `limits.max_pending_connections` (and the gauge) until it upgrades
/// or closes (on HTTP/2: while it carries no session).
pub(crate) struct Pending {
    _permit: AddressPermit,
    gauge: prometheus::IntGauge,
}

impl Pending {
    /// A place among the pending connections for one from `peer`: within
    /// `limits.max_pending_connections` and, unless `peer` is a trusted proxy,
    /// `limits.max_pending_connections_per_address`.
    pub(crate) fn admit(control: &Control, gateway: &Gateway, peer: IpAddr) -> Result<Pending, LimitExceeded> {
        let limits = &gateway.config.limits;
        let per_address = if crate::client_addr::is_trusted(peer, &gateway.trusted_proxies) {
            usize::MAX
        } else {
            limits.max_pending_connections_per_address
        };
        let permit = control.pending.try_acquire(peer, limits.max_pending_connections, per_address)?;
        let gauge = gateway.metrics.connections_pending.clone();
        gauge.inc();
        Ok(Pending { _permit: permit, gauge })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One accepted public connection with its descriptor slot and pending-connection permit.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) slot: OwnedSemaphorePermit,
    pub(crate) pending: Pending,
}

/// Why the gateway closed a connection that carried no session (the metric label is
/// [`Closed::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closed {
    /// No upgrade within the handshake timeout of the accept.
    Timeout,
    /// Draining started.
    Draining,
    /// The TLS handshake failed.
    TlsFailed,
    /// An HTTP/2 connection carried no session for the handshake timeout after its last one.
    Http2Idle,
    /// An HTTP/2 connection whose last session ended found no room among the pending ones.
    PendingLimit(LimitExceeded),
}

impl Closed {
    /// The `connections_dropped_total` label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Closed::Timeout => "handshake-timeout",
            Closed::Draining => "draining",
            Closed::TlsFailed => "tls-handshake-failed",
            Closed::Http2Idle => "http2-idle",
            Closed::PendingLimit(exceeded) => super::exceeded_label(exceeded),
        }
    }
}

/// `work` within the handshake `deadline`, unless draining starts first.
async fn before_upgrade<T>(deadline: Instant, control: &Control, work: impl Future<Output = T>) -> Result<T, Closed> {
    tokio::select! {
        done = tokio::time::timeout_at(deadline, work) => done.map_err(|_| Closed::Timeout),
        _ = control.drain.cancelled() => Err(Closed::Draining),
    }
}

/// Runs one public connection: the TLS handshake when the listener is `secure`, then HTTP/2 if
/// the client chose it by ALPN ([`super::http2`]), else HTTP/1.1 up to its upgrade. Until it
/// carries a session, a connection has `limits.handshake_timeout_secs` from the accept, and is
/// closed when draining starts.
pub(crate) async fn run(accepted: Accepted, edge: Edge) {
    // `pending` is given back when this returns (on HTTP/1.1: at the upgrade); on HTTP/2 the
    // connection's loop takes it and takes it again while the connection carries no session.
    let Accepted { stream, peer, slot, pending } = accepted;
    let gateway = edge.control.current();
    let limits = gateway.config.limits.clone();
    let deadline = Instant::now() + limits.handshake_timeout;
    let peer_info = PeerInfo { addr: peer, secure: edge.secure };
    let closed = if !edge.secure {
        let lease = ConnectionLease::new(deadline, Some(pending));
        serve_http1(Counted { io: stream, _slot: slot }, peer_info, &edge, &limits, lease).await
    } else {
        // A reload never switches the listener's mode, so a secure listener always has this.
        let Some(config) = gateway.listener_tls.clone() else { return };
        let handshake = before_upgrade(deadline, &edge.control, TlsAcceptor::from(config).accept(stream)).await;
        match handshake {
            Err(closed) => Err(closed),
            Ok(Err(error)) => {
                debug!(%error, client = %peer, "TLS handshake failed");
                Err(Closed::TlsFailed)
            }
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(super::tls::ALPN_H2) => {
                let io = Counted { io: tls, _slot: slot };
                super::http2::serve(io, peer_info, &edge, pending, deadline).await
            }
            Ok(Ok(tls)) => {
                let lease = ConnectionLease::new(deadline, Some(pending));
                serve_http1(Counted { io: tls, _slot: slot }, peer_info, &edge, &limits, lease).await
            }
        }
    };
    if let Err(closed) = closed {
        debug!(client = %peer, reason = closed.label(), "connection closed without a session");
        gateway.metrics.connections_dropped.with_label_values(&[closed.label()]).inc();
    }
}

/// How an HTTP/1.1 connection that hyper ended counts: its header timeout is the handshake
/// timeout; anything else (an upgrade, the client's close, a malformed request) is not a drop.
fn http1_ended(result: hyper::Result<()>) -> Result<(), Closed> {
    match result {
        Err(error) if error.is_timeout() => Err(Closed::Timeout),
        _ => Ok(()),
    }
}

/// Longest life of one admin connection: a keep-alive scraper reconnects, and a client that
/// stops reading its answers cannot keep an admin slot.
const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves HTTP/1.1 on one admin connection (no upgrades), each request head within
/// `header_timeout`, the whole connection within [`ADMIN_CONNECTION_LIFETIME`].
pub(crate) async fn run_admin(stream: TcpStream, slot: OwnedSemaphorePermit, router: Router, header_timeout: Duration) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let io = TokioIo::new(Counted { io: stream, _slot: slot });
    let connection = http1(crate::config::MIN_HEADER_BYTES, header_timeout).serve_connection(io, service);
    let _ = tokio::time::timeout(ADMIN_CONNECTION_LIFETIME, connection).await;
}
