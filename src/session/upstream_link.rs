//! The upstream connection as the session shell holds it: the connect in flight, the TLS
//! handshake in flight, or the byte stream; reads fed straight into the session core, writes in
//! the order the core asks, and the three ways of closing (discard, finish, abort with linger).
//!
//! It moves bytes and runs the futures of [`crate::upstream`]; it never decides anything about
//! the stream (that is [`super::core`]'s) and never talks to the client.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::upstream::{tls, Connector, FailureClass, Link, UpstreamIo};

/// Most bytes taken from the upstream socket in one read.
pub const READ_CHUNK_BYTES: usize = 4096;

/// How long closing waits: for a write of what is queued, for the TLS close and FIN, and (after
/// an abort) for the server's own close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

thread_local! {
    /// One read buffer per runtime thread, shared by the sessions it runs: a read is handed to
    /// the session core within the same poll, so an idle session keeps no read buffer of its
    /// own (docs/PERFORMANCE.md).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK_BYTES].into_boxed_slice());
}

/// A connect in flight: the connector comes back with its result (`None`: no route left).
pub(crate) type Connecting = Pin<Box<dyn Future<Output = (Box<Connector>, Option<Result<Link, FailureClass>>)> + Send>>;

type Handshake = Pin<Box<dyn Future<Output = Result<TlsStream<TcpStream>, FailureClass>> + Send>>;

/// What the upstream side has to tell.
pub(crate) enum LinkEvent<T> {
    /// The connect in flight finished: the connector is back, with the route's result (`None`:
    /// no route was left).
    Connected(Box<Connector>, Option<Result<Link, FailureClass>>),
    /// The TLS handshake finished; on success the byte stream is the TLS stream.
    Secured(Result<(), FailureClass>),
    /// What `handle` made of one read.
    Read(T),
}

/// What one read produced.
pub(crate) enum Read<'a> {
    /// Bytes from the server.
    Bytes(&'a [u8]),
    /// The read side ended (EOF or an error).
    End,
}

/// The upstream side of one session.
#[derive(Default)]
pub(crate) struct UpstreamLink {
    /// The connect in flight.
    connecting: Option<Connecting>,
    /// The TLS handshake in flight.
    handshake: Option<Handshake>,
    /// The connected byte stream (plain TCP before TLS, or for `tls = "none"`).
    io: Option<UpstreamIo>,
    /// The TLS configuration of the connected route.
    tls_config: Option<Arc<ClientConfig>>,
}

impl UpstreamLink {
    /// Starts a connect (dropping anything there was).
    pub(crate) fn start_connect(&mut self, connecting: Connecting) {
        self.discard();
        self.connecting = Some(connecting);
    }

    /// Takes a connected route's TCP stream as the byte stream.
    pub(crate) fn attach(&mut self, tcp: TcpStream, tls_config: Option<Arc<ClientConfig>>) {
        self.io = Some(UpstreamIo::Plain(tcp));
        self.tls_config = tls_config;
    }

    /// Starts the TLS handshake on the connected TCP stream, for `domain` (CERT-1). `Err` when
    /// there is no plain TCP stream or no TLS configuration to run it with.
    pub(crate) fn start_tls(&mut self, domain: String) -> Result<(), FailureClass> {
        let (Some(UpstreamIo::Plain(tcp)), Some(config)) = (self.io.take(), self.tls_config.clone()) else {
            return Err(FailureClass::ProtocolError);
        };
        self.handshake = Some(Box::pin(async move { tls::handshake(tcp, config, &domain).await }));
        Ok(())
    }

    /// Whether there is a byte stream to read from and write to.
    pub(crate) fn is_attached(&self) -> bool {
        self.io.is_some()
    }

    /// The next thing the upstream side has to tell, in this order: the connect in flight
    /// finished, the handshake in flight finished, or (when `reads`) one read (at most
    /// [`READ_CHUNK_BYTES`]), handed to `handle` within the same poll from the thread's shared
    /// buffer. Cancel-safe: nothing is read unless the poll that reads also hands it over.
    pub(crate) async fn next_event<T>(&mut self, reads: bool, mut handle: impl FnMut(Read<'_>) -> T) -> LinkEvent<T> {
        std::future::poll_fn(|cx| {
            if let Some(connecting) = &mut self.connecting {
                if let Poll::Ready((connector, result)) = connecting.as_mut().poll(cx) {
                    self.connecting = None;
                    return Poll::Ready(LinkEvent::Connected(connector, result));
                }
            }
            if let Some(handshake) = &mut self.handshake {
                if let Poll::Ready(result) = handshake.as_mut().poll(cx) {
                    self.handshake = None;
                    let secured = result.map(|stream| self.io = Some(UpstreamIo::Tls(Box::new(stream))));
                    return Poll::Ready(LinkEvent::Secured(secured));
                }
            }
            match reads {
                true => self.poll_read_into(cx, &mut handle).map(LinkEvent::Read),
                false => Poll::Pending,
            }
        })
        .await
    }

    fn poll_read_into<T>(&mut self, cx: &mut Context<'_>, handle: &mut impl FnMut(Read<'_>) -> T) -> Poll<T> {
        let Some(io) = &mut self.io else { return Poll::Pending };
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(handle(Read::End)),
                Poll::Ready(Ok(())) => Poll::Ready(handle(Read::Bytes(buf.filled()))),
                Poll::Ready(Err(_)) => Poll::Ready(handle(Read::End)),
                Poll::Pending => Poll::Pending,
            }
        })
    }

    /// Writes `bytes` and flushes. A failed write drops the byte stream.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(io) = &mut self.io else { return Err(std::io::ErrorKind::NotConnected.into()) };
        let result = match io.write_all(bytes).await {
            Ok(()) => io.flush().await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            self.io = None;
        }
        result
    }

    /// Drops whatever there is: a connect or handshake in flight, a connection being set up.
    pub(crate) fn discard(&mut self) {
        self.connecting = None;
        self.handshake = None;
        self.io = None;
        self.tls_config = None;
    }

    /// TLS close_notify and FIN, waiting a little for them to go out (TLS-9).
    pub(crate) async fn finish(&mut self) {
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
        }
        self.discard();
    }

    /// Ends the connection without `</stream:stream>` (CL-4): close_notify and FIN, then it
    /// lingers: it reads (and drops) what the server still sends until the server closes too,
    /// for at most [`CLOSE_WAIT`].
    ///
    /// Dropping a socket with unread input makes the kernel answer with RST, and a server
    /// writing its acks meets EPIPE and gives up on the connection before it has parsed the
    /// input it already has: Prosody 0.12 then keeps a half-parsed element in the stream parser
    /// that the resumed session goes on using, and the first stanza after `<resumed/>` fails as
    /// not-well-formed (the SIGTERM burst fault test in tests/faults.rs caught it). With the
    /// linger the server reads our FIN after the last complete element and hibernates a
    /// session whose parser is clean.
    pub(crate) async fn abort(&mut self) {
        if let Some(mut io) = self.io.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
            // Read into spare capacity, never zeroed (a zeroed array cost every session end a
            // 4 KiB memset, and the boxed close future 4 KiB of room).
            let mut sink = Vec::with_capacity(4096);
            let drain = async {
                loop {
                    sink.clear();
                    if !matches!(io.read_buf(&mut sink).await, Ok(n) if n > 0) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
        }
        self.discard();
    }
}
