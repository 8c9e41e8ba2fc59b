//! One connection until its WebSocket upgrade: the TLS handshake on a `wss://` listener, then
//! HTTP through hyper, all within the handshake timeout and cut short when draining starts.
//!
//! Also the socket wrapper that carries the connection's descriptor slot into the session after
//! the upgrade. Nothing here looks at XML or decides whether a request may become a session
//! (that is [`crate::server`]).

use std::io;
use std::net::SocketAddr;
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
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::debug;

use crate::config::LimitsConfig;
use crate::control::{AddressPermit, Control};
use crate::server::PeerInfo;

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

/// Serves HTTP on one public connection, upgrades included, until it upgrades, closes or fails.
///
/// This is the one place that chooses the HTTP protocol: HTTP/2 on a `wss://` listener (RFC
/// 8441 extended CONNECT) would swap the HTTP/1.1 builder here for hyper-util's automatic one.
async fn serve_http<I>(io: I, peer: PeerInfo, router: Router, limits: &LimitsConfig) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    http1(limits.max_header_bytes, limits.handshake_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
}

/// A connection counted in `limits.max_pending_connections` (and the gauge) until it upgrades
/// or closes.
pub(crate) struct Pending {
    pub(crate) _permit: AddressPermit,
    pub(crate) gauge: prometheus::IntGauge,
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

/// How a pre-upgrade connection ended, when the gateway ended it (the metric label).
fn dropped_label(result: &Result<hyper::Result<()>, Closed>) -> Option<&'static str> {
    match result {
        Err(Closed::Timeout) => Some("handshake-timeout"),
        Err(Closed::Draining) => Some("draining"),
        Err(Closed::TlsFailed) => Some("tls-handshake-failed"),
        Ok(Err(error)) if error.is_timeout() => Some("handshake-timeout"),
        Ok(_) => None,
    }
}

/// Why a pre-upgrade connection was closed by the gateway rather than by HTTP.
#[derive(Debug)]
enum Closed {
    Timeout,
    Draining,
    TlsFailed,
}

/// Runs one public connection up to its upgrade (or its end): the TLS handshake when the
/// listener is `secure`, then HTTP. Everything happens within `limits.handshake_timeout_secs`
/// of the accept; when draining starts the connection is simply closed.
pub(crate) async fn run(accepted: Accepted, secure: bool, control: Arc<Control>, router: Router) {
    let Accepted { stream, peer, slot, pending } = accepted;
    let gateway = control.current();
    let limits = gateway.config.limits.clone();
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let work = async {
        let peer_info = PeerInfo { addr: peer, secure };
        if !secure {
            return Ok(serve_http(Counted { io: stream, _slot: slot }, peer_info, router, &limits).await);
        }
        // A reload never switches the listener's mode, so a secure listener always has this.
        let Some(config) = gateway.listener_tls.clone() else { return Err(Closed::TlsFailed) };
        match TlsAcceptor::from(config).accept(stream).await {
            Ok(tls) => Ok(serve_http(Counted { io: tls, _slot: slot }, peer_info, router, &limits).await),
            Err(error) => {
                debug!(%error, client = %peer, "TLS handshake failed");
                Err(Closed::TlsFailed)
            }
        }
    };
    let result = tokio::select! {
        result = tokio::time::timeout_at(deadline, work) => result.unwrap_or(Err(Closed::Timeout)),
        _ = control.drain.cancelled() => Err(Closed::Draining),
    };
    if let Some(label) = dropped_label(&result) {
        debug!(client = %peer, reason = label, "connection closed before an upgrade");
        gateway.metrics.connections_dropped.with_label_values(&[label]).inc();
    }
    drop(pending);
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
