//! The upstream half of a relaying session: the byte stream to the server, its splitter, the
//! restart and closing bookkeeping, and the batched writes of client elements.
//!
//! It writes only what the session hands it, in order; it never talks to the client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::outcome::Outcome;
use crate::upstream::UpstreamIo;
use crate::xml::client::OpenRequest;
use crate::xml::framing;
use crate::xml::splitter::StreamSplitter;

/// Where the clean close of a relaying session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Nobody has closed yet.
    No,
    /// The client sent `<close/>`; `</stream:stream>` went upstream; waiting for the server's end.
    ByClient,
    /// The server ended its stream; `<close/>` went to the client; waiting for the client's `<close/>`.
    ByServer,
}

/// The upstream half of a relaying session.
pub(crate) struct Relay {
    pub(crate) io: UpstreamIo,
    pub(crate) splitter: StreamSplitter,
    /// The latest client `<open/>` (its `from`/`xml:lang`/`version` go into restart headers).
    pub(crate) request: OpenRequest,
    pub(crate) domain: String,
    /// The server's SASL `<success/>` was relayed and no client element followed yet.
    pub(crate) restart_allowed: bool,
    /// A restart header went upstream; the server's new header is expected.
    pub(crate) awaiting_restart_header: bool,
    /// Features of the current stream reached the client (D4).
    pub(crate) features_relayed: bool,
    pub(crate) closing: Closing,
    pub(crate) close_deadline: Option<Instant>,
    /// The server's read side has ended (only possible while `closing` is `ByServer`).
    pub(crate) upstream_eof: bool,
    /// When a stanza last crossed in either direction (idle timeout).
    pub(crate) last_activity: Instant,
    /// Client elements queued for the upstream, written by [`Relay::flush_out`] (in order, before
    /// anything else is written upstream).
    pub(crate) out: Vec<u8>,
}

/// How long [`Relay::abort_upstream`] waits for the server to close after our FIN.
pub(crate) const ABORT_LINGER: Duration = Duration::from_secs(2);

/// Most bytes of client elements gathered into one upstream write.
pub(crate) const UPSTREAM_BATCH_BYTES: usize = 16 * 1024;

impl Relay {
    /// Queues bytes for the upstream; [`Relay::flush_out`] writes them.
    pub(crate) fn queue(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// Writes the queued bytes out. A large batch's buffer is released, so an idle session keeps
    /// at most a small one.
    pub(crate) async fn flush_out(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let result = self.io.write_all(&self.out).await;
            self.out.clear();
            if self.out.capacity() > UPSTREAM_BATCH_BYTES {
                self.out = Vec::new();
            }
            result?;
        }
        self.io.flush().await
    }

    /// Writes the queued bytes, then `text`.
    pub(crate) async fn write(&mut self, text: &str) -> std::io::Result<()> {
        self.queue(text);
        self.flush_out().await
    }

    /// Ends the upstream stream cleanly: `</stream:stream>` unless already sent, then TLS
    /// close_notify and FIN, waiting a little for the server's own end (TLS-9).
    pub(crate) async fn finish_upstream(&mut self, send_stream_end: bool) {
        if send_stream_end && self.closing != Closing::ByClient {
            let _ = self.write(framing::UPSTREAM_STREAM_END).await;
        } else {
            let _ = self.flush_out().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
    }

    /// Ends the upstream connection without `</stream:stream>` (CL-4), after the client
    /// elements already queued.
    ///
    /// Then it lingers: it reads (and drops) what the server still sends until the server closes
    /// too, for at most [`ABORT_LINGER`]. Dropping a socket with unread input makes the kernel
    /// answer with RST, and a server writing its acks meets EPIPE and gives up on the connection
    /// before it has parsed the input it already has: Prosody 0.12 then keeps a half-parsed
    /// element in the stream parser that the resumed session goes on using, and the first stanza
    /// after `<resumed/>` fails as not-well-formed (the SIGTERM burst fault test in
    /// tests/faults.rs caught it). With the linger the server reads our FIN after the last
    /// complete element and hibernates a session whose parser is clean.
    pub(crate) async fn abort_upstream(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush_out()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(ABORT_LINGER, async {
            while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    pub(crate) async fn vanish_upstream(&mut self) -> Outcome {
        self.abort_upstream().await;
        Outcome::ClientVanished
    }
}
