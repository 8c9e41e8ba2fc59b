//! The listeners' accept loops and what a connection may cost before it becomes a session.
//!
//! Public listener (plain `ws://`, or `wss://` with the TLS handshake done here):
//! - a descriptor slot is taken before each accept ([`descriptors`]): while none is free the
//!   listener stops accepting, so the process never runs out of descriptors and the admin
//!   listener can always accept;
//! - each accepted connection must fit `limits.max_pending_connections` and, unless it comes from
//!   a trusted proxy, `limits.max_pending_connections_per_address` (else 503 / 429 at once);
//! - it then has `limits.handshake_timeout_secs` for TLS, its request (at most
//!   `limits.max_header_bytes`) and the upgrade ([`connection`]); when draining starts it is
//!   closed at once. Upgraded connections leave these counts and become sessions;
//! - on `wss://` the client may choose HTTP/2 by ALPN (`listener.http2`): one connection then
//!   carries any number of sessions as streams (WS-12), with limits per connection, and counts as
//!   pending again whenever it carries none ([`http2`]).
//!
//! Admin listener: a small fixed number of connections, each request head within the handshake
//! timeout. This module handles sockets and HTTP framing; admission of sessions is
//! [`crate::server`]'s.

mod accept;
mod connection;
pub mod descriptors;
mod http2;
mod lease;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

pub(crate) use http2::{Http2Connection, Http2LongPoll, Http2Session};
pub(crate) use lease::{ConnectionLease, ConnectionPlace};
pub use tls::{server_config, ListenerTlsError};

use crate::control::{Control, LimitExceeded};
use accept::RateLimited;
use connection::{Accepted, Edge, Pending};

/// Admin connections served at once (Prometheus, probes); they come out of the descriptor
/// reserve.
const ADMIN_CONNECTIONS: usize = 32;

/// How often a repeated listener warning (accept failures, all slots taken) may be logged.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts public connections until draining starts. `slots` is the descriptor budget's slot
/// pool ([`descriptors::DescriptorPools::slots`]); `secure` means the TLS handshake is done here.
pub(crate) async fn serve_public(
    listener: TcpListener,
    secure: bool,
    control: Arc<Control>,
    router: Router,
    slots: Arc<Semaphore>,
) {
    let mut accept_log = RateLimited::new(WARNING_INTERVAL);
    let mut full_log = RateLimited::new(WARNING_INTERVAL);
    let drain = control.drain.clone();
    let edge = Edge { secure, control: control.clone(), router, slots: slots.clone() };
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(suppressed) = full_log.occurrence(tokio::time::Instant::now()) {
                    warn!(
                        suppressed,
                        "every public connection slot the descriptor limit allows is in use; new connections wait"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    _ = drain.cancelled() => return,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = accept::accept(&listener, &mut accept_log) => accepted,
            _ = drain.cancelled() => return,
        };
        let gateway = control.current();
        let pending = match Pending::admit(&control, &gateway, peer.ip()) {
            Ok(pending) => pending,
            Err(exceeded) => {
                let label = exceeded_label(exceeded);
                debug!(client = %peer, reason = label, "connection refused");
                gateway.metrics.connections_dropped.with_label_values(&[label]).inc();
                refuse(stream, edge.secure, exceeded);
                continue;
            }
        };
        let accepted = Accepted { stream, peer, slot, pending };
        // Boxed: the connection's future (TLS handshake, HTTP/1.1 or HTTP/2) is about 6 KiB,
        // and spawning a task copies its future several times over, and again as the task
        // ends. An HTTP/1.1 connection's task ends at the upgrade, so the box costs an idle
        // session nothing (docs/PERFORMANCE.md).
        control.connections.spawn(Box::pin(connection::run(accepted, edge.clone())));
    }
}

/// The `connections_dropped_total` label of a pending-connection limit.
fn exceeded_label(exceeded: LimitExceeded) -> &'static str {
    match exceeded {
        LimitExceeded::Total => "pending-limit-total",
        LimitExceeded::PerAddress => "pending-limit-per-address",
    }
}

/// Closes a connection over a pending-connection limit, with a one-line HTTP answer on a plain
/// listener (nothing on a TLS one: the client expects a handshake). What the client already
/// sent is read first (a little), so the close is a FIN rather than a reset that could destroy
/// the answer.
fn refuse(stream: TcpStream, secure: bool, exceeded: LimitExceeded) {
    if secure {
        return;
    }
    let mut sink = [0u8; 2048];
    for _ in 0..8 {
        if !matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let (status, text) = match exceeded {
        LimitExceeded::Total => ("503 Service Unavailable", "This gateway has too many new connections.\n"),
        LimitExceeded::PerAddress => ("429 Too Many Requests", "Too many new connections from this address.\n"),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Serves the admin router until the task is aborted: at most [`ADMIN_CONNECTIONS`] at once,
/// each request head within `limits.handshake_timeout_secs` of the current configuration.
pub(crate) async fn serve_admin(listener: TcpListener, control: Arc<Control>, router: Router) {
    let slots = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
    let mut accept_log = RateLimited::new(WARNING_INTERVAL);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (stream, _peer): (TcpStream, SocketAddr) = accept::accept(&listener, &mut accept_log).await;
        let timeout = control.current().config.limits.handshake_timeout;
        tokio::spawn(connection::run_admin(stream, slot, router.clone(), timeout));
    }
}
