//! HTTP/2 on a `wss://` connection whose client chose `h2` by ALPN: each WebSocket session is an
//! extended CONNECT stream (RFC 8441), and one connection may carry several.
//!
//! What one connection may cost, and for how long:
//! - at most [`MAX_STREAMS`] streams at once; request headers up to `limits.max_header_bytes`, as
//!   on HTTP/1.1; at most [`CONNECTION_WINDOW`] bytes of client data the sessions have not read
//!   yet ([`STREAM_WINDOW`] per stream), and [`SEND_BUFFER`] queued towards the client per stream;
//! - streams the client resets before they are served (rapid reset, CVE-2023-44487) and streams
//!   its errors make the gateway reset are capped ([`MAX_PENDING_ACCEPT_RESETS`],
//!   [`MAX_LOCAL_ERROR_RESETS`]); beyond, the connection ends with GOAWAY;
//! - while it carries no session it counts as pending (`limits.max_pending_connections` and the
//!   per-address cap, as an HTTP/1.1 connection before its upgrade), and it has
//!   `limits.handshake_timeout_secs`, from the accept or from the end of its last session, to
//!   start one; then it gets GOAWAY and is closed;
//! - each session takes a descriptor slot of its own ([`Http2Connection::start_session`]), and
//!   the session limits count every stream as a session ([`crate::server`]);
//! - when a session ends, its stream has [`STREAM_FLUSH_GRACE`] to deliver what the session wrote
//!   last, then it is reset ([`Http2Session::end`]): a client that grants no flow-control window
//!   cannot keep ended streams, and the data queued on them, for the life of the connection.
//!
//! When draining starts the connection gets GOAWAY (no new streams); its sessions end as on
//! HTTP/1.1, and the connection closes after the last one. Which requests become sessions is
//! [`crate::server`]'s decision, not this module's.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::{service, Closed, Edge, Pending};
use crate::config::LimitsConfig;
use crate::server::PeerInfo;

/// Streams one connection may have open at once, sessions and other requests together (RFC 9113
/// §6.5.2 recommends allowing no fewer than 100).
const MAX_STREAMS: u32 = 100;
/// Client data one stream may send beyond what its session has read (the flow-control window).
const STREAM_WINDOW: u32 = 64 * 1024;
/// Client data all streams of a connection together may send beyond what was read.
const CONNECTION_WINDOW: u32 = 256 * 1024;
/// Data queued towards the client per stream before its session's writes wait.
const SEND_BUFFER: usize = 64 * 1024;
/// Streams the client may reset before they are served; beyond, GOAWAY (hyper's default is 20).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the gateway may reset for the client's protocol errors; beyond, GOAWAY.
const MAX_LOCAL_ERROR_RESETS: usize = 64;
/// How long a connection told to go away for carrying no session may take to close by itself
/// (a client answers GOAWAY's ping at once) before it is cut.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// How long the stream of an ended session may take to deliver its last data (the client must
/// grant the flow-control window for it) before it is reset.
const STREAM_FLUSH_GRACE: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The request stream whose task is running: set by [`StreamExecutor`] around each one.
    static STREAM: Arc<StreamTasks>;
}

/// What hyper spawned for one request stream besides the stream's own task: once the stream has
/// become a WebSocket, the task that sends the session's data on it.
#[derive(Default)]
struct StreamTasks {
    sender: Mutex<Option<JoinHandle<()>>>,
}

/// Spawns hyper's tasks for HTTP/2 connections on tokio: each request stream's task within a
/// [`STREAM`] scope of its own, so the one task hyper spawns from inside it (a WebSocket's send
/// task, after the upgrade) is recorded for that stream and its session can end it.
#[derive(Clone, Copy, Debug)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        match STREAM.try_with(Arc::clone) {
            Ok(stream) => {
                let sender = tokio::spawn(future);
                *stream.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sender);
            }
            Err(_) => drop(tokio::spawn(STREAM.scope(Arc::default(), future))),
        }
    }
}

/// What the WebSocket handler needs of the HTTP/2 connection a request came on (a request
/// extension, absent on HTTP/1.1).
#[derive(Clone)]
pub(crate) struct Http2Connection {
    slots: Arc<Semaphore>,
    sessions: Arc<watch::Sender<usize>>,
}

/// One session's share of its HTTP/2 connection, held until the session's stream has ended
/// ([`Self::end`]): a descriptor slot and a place in the connection's session count.
pub(crate) struct Http2Session {
    _slot: OwnedSemaphorePermit,
    sessions: Arc<watch::Sender<usize>>,
    /// The stream's tasks (absent only outside a stream task, which hyper never does).
    stream: Option<Arc<StreamTasks>>,
}

impl Http2Connection {
    /// A share of the connection for one more session, or `None` when every public connection
    /// slot the descriptor limit allows is in use. (On HTTP/1.1 the connection's own slot moves
    /// into its one session; an HTTP/2 session may need the same descriptors upstream.)
    pub(crate) fn start_session(&self) -> Option<Http2Session> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        self.sessions.send_modify(|count| *count += 1);
        let stream = STREAM.try_with(Arc::clone).ok();
        Some(Http2Session { _slot: slot, sessions: self.sessions.clone(), stream })
    }
}

/// A BOSH request held on an HTTP/2 connection: the connection counts as busy (not idle, not
/// pending) while it lasts, as with a session, without a descriptor slot of its own.
pub(crate) struct Http2LongPoll {
    sessions: Arc<watch::Sender<usize>>,
}

impl Http2Connection {
    /// Marks the connection busy until the returned guard is dropped.
    pub(crate) fn long_poll(&self) -> Http2LongPoll {
        self.sessions.send_modify(|count| *count += 1);
        Http2LongPoll { sessions: self.sessions.clone() }
    }
}

impl Drop for Http2LongPoll {
    fn drop(&mut self) {
        self.sessions.send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl Http2Session {
    /// Ends the session's share once its WebSocket is dropped: the stream's send task gets
    /// [`STREAM_FLUSH_GRACE`] to deliver the last data and end the stream, then it is aborted
    /// (and the stream reset).
    pub(crate) async fn end(self) {
        let sender = self
            .stream
            .as_ref()
            .and_then(|stream| stream.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        if let Some(mut sender) = sender {
            if tokio::time::timeout(STREAM_FLUSH_GRACE, &mut sender).await.is_err() {
                sender.abort();
            }
        }
    }
}

impl Drop for Http2Session {
    fn drop(&mut self) {
        self.sessions.send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// The HTTP/2 settings of the public listener (see the module documentation).
fn builder(limits: &LimitsConfig) -> http2::Builder<StreamExecutor> {
    let mut http = http2::Builder::new(StreamExecutor);
    http.timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buf_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    http
}

/// Serves HTTP/2 on one connection until it closes. `pending` is its place among the pending
/// connections, `deadline` the end of its handshake timeout. `Err` when the gateway closed it
/// while it carried no session.
pub(super) async fn serve<I>(
    io: I,
    peer: PeerInfo,
    edge: &Edge,
    pending: Pending,
    deadline: Instant,
) -> Result<(), Closed>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gateway = edge.control.current();
    let limits = &gateway.config.limits;
    let (count, mut sessions) = watch::channel(0usize);
    let shared = Http2Connection { slots: edge.slots.clone(), sessions: Arc::new(count) };
    let connection =
        builder(limits).serve_connection(TokioIo::new(io), service(edge.router.clone(), peer, Some(shared), None));
    tokio::pin!(connection);
    // Given back when the connection ends, whichever way.
    let mut pending = Some(pending);
    // While the connection carries no session: when it is closed, and why.
    let mut idle = Some((deadline, Closed::Timeout));
    // Set once the connection was told to go away for carrying no session, with the reason.
    let mut going_away: Option<Closed> = None;
    let mut draining = false;
    loop {
        let wake = idle.map_or_else(|| Instant::now() + Duration::from_secs(3600), |(at, _)| at);
        tokio::select! {
            _ = connection.as_mut() => return going_away.map_or(Ok(()), Err),
            _ = tokio::time::sleep_until(wake), if idle.is_some() => {
                let Some((_, why)) = idle else { continue };
                if going_away.is_some() || draining {
                    return Err(why);
                }
                connection.as_mut().graceful_shutdown();
                going_away = Some(why);
                idle = Some((Instant::now() + GOAWAY_GRACE, why));
            }
            _ = edge.control.drain.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
                if *sessions.borrow() == 0 {
                    return Err(Closed::Draining);
                }
            }
            Ok(()) = sessions.changed() => {
                let count = *sessions.borrow_and_update();
                if count > 0 {
                    drop(pending.take());
                    idle = None;
                    going_away = None;
                } else if idle.is_none() {
                    if draining {
                        // The sessions' last frames are flushed as the connection closes itself.
                        idle = Some((Instant::now() + GOAWAY_GRACE, Closed::Draining));
                        continue;
                    }
                    match Pending::admit(&edge.control, &gateway, peer.addr.ip()) {
                        Ok(admitted) => drop(pending.replace(admitted)),
                        Err(exceeded) => return Err(Closed::PendingLimit(exceeded)),
                    }
                    idle = Some((Instant::now() + limits.handshake_timeout, Closed::Http2Idle));
                }
            }
        }
    }
}
