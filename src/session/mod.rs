//! One client session: a WebSocket on one side, an upstream XMPP stream on the other.
//!
//! The session is two halves. [`core`] is the state machine with no I/O, no clock and no
//! tokio: every decision about the protocol and every ending (one table, docs/OPERATIONS.md
//! "How a session ends") is made there, and its module documentation draws the states. The
//! shell (`shell`, with `client_io` and `upstream_link`) is one async loop that moves
//! bytes between the sockets and the core, runs the connect and TLS futures of
//! [`crate::upstream`] and the core's timers, and executes the core's actions.
//!
//! Neither half logs stanza content or SASL payloads, writes a client byte upstream before TLS
//! is up, or buffers without a bound.

use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use tracing::{debug, info, Instrument};

use crate::drain::Drain;

use crate::client_addr::ClientAddr;
use crate::config::Config;
use crate::control::AddressPermit;
use crate::listener::descriptors::DescriptorPools;
use crate::metrics::Metrics;
use crate::upstream::UpstreamDirectory;

mod client_io;
mod client_side;
pub mod core;
mod offload;
mod outcome;
mod shell;
mod upstream_link;

pub(crate) use client_io::{ClientInput, Lost};
pub(crate) use client_side::ClientSide;
pub use outcome::Outcome;
/// Most bytes taken from the upstream socket in one read (the bench floor relay uses the same).
pub use upstream_link::READ_CHUNK_BYTES;

/// Everything sessions share: built once in `main` (or a test) and passed down. A SIGHUP
/// reload builds a new one; a session keeps the one it started with.
#[derive(Debug)]
pub struct Gateway {
    /// The configuration, parsed.
    pub config: Config,
    /// What the session core needs of it, as typed values.
    pub settings: Arc<core::Settings>,
    /// The metrics.
    pub metrics: Metrics,
    /// Which domains are served, and where their servers are.
    pub upstreams: UpstreamDirectory,
    /// `listener.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The TLS configuration of the public listener when it serves `wss://` itself.
    pub listener_tls: Option<Arc<rustls::ServerConfig>>,
}

/// What one session gets from the edge besides the WebSocket.
#[derive(Debug)]
pub struct SessionContext {
    /// The client's address (from a trusted proxy's headers when behind one, without a port).
    pub client: ClientAddr,
    /// A process-unique session number for logs.
    pub id: u64,
    /// Fired when the gateway starts draining.
    pub drain: Drain,
    /// The session's slot in the limits; released when the session ends.
    pub permit: AddressPermit,
    /// The descriptor budget, which the sockets the session opens while it connects borrow
    /// from ([`DescriptorPools::borrow`]).
    pub descriptors: DescriptorPools,
}

/// Runs one session to its end on an upgraded WebSocket and records the outcome.
pub async fn run<W>(ws: W, gateway: Arc<Gateway>, context: SessionContext)
where
    W: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send,
{
    let span = tracing::info_span!("session", id = context.id, client = %context.client);
    async move {
        gateway.metrics.sessions_active.inc();
        debug!("session started");
        let settings = &gateway.settings;
        let client = client_io::ClientIo::new(ws, settings.send_deadline(), settings.pong_timeout);
        let mut shell = shell::Shell::new(client, &gateway, &context);
        let outcome = shell.run().await;
        drop(shell);
        drop(context.permit);
        gateway.metrics.sessions_ended.with_label_values(&[outcome.label()]).inc();
        gateway.metrics.sessions_active.dec();
        info!(outcome = outcome.label(), "session ended");
    }
    .instrument(span)
    .await
}

/// Runs one session to its end on another transport's client side (BOSH), records the outcome
/// like [`run`], and gives the client side back for what its transport does after the end.
pub(crate) async fn run_client<C: ClientSide>(client: C, gateway: &Arc<Gateway>, context: &SessionContext) -> C {
    let span = tracing::info_span!("session", id = context.id, client = %context.client, transport = "bosh");
    async move {
        gateway.metrics.sessions_active.inc();
        debug!("session started");
        let mut shell = shell::Shell::new(client, gateway, context);
        let outcome = shell.run().await;
        let client = shell.into_client();
        gateway.metrics.sessions_ended.with_label_values(&[outcome.label()]).inc();
        gateway.metrics.sessions_active.dec();
        info!(outcome = outcome.label(), "session ended");
        client
    }
    .instrument(span)
    .await
}
