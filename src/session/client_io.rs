//! The client's WebSocket as the session shell uses it: what reading it delivers (a text
//! message, a sign of life, the end, or a WebSocket-level violation with the close code it
//! deserves, RFC 6455, RFC 7395 §3.2), and writes that give up on a client that stopped reading.
//!
//! Pings are answered by the WebSocket layer itself, which queues the pong; the client is read
//! no further until that pong is written, within the pong timeout, so a client that pings
//! without reading cannot keep its session alive (KA-2; its pings then wait in its own socket
//! buffers, not in ours). Once the client is gone or stalled nothing more is written to it, not
//! even a Close frame. Nothing here looks inside a message.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::time::error::Elapsed;
use tokio::time::Instant;
use tracing::debug;

use super::client_side::ClientSide;
use super::outcome::{close_code, truncate_reason};

/// How long a Close frame waits for the client's own (RFC 6455 §5.5.1).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What reading the WebSocket produced, after control frames are handled.
#[derive(Debug)]
pub(crate) enum ClientInput {
    /// A text message.
    Text(Utf8Bytes),
    /// A pong: the client is alive.
    Alive,
    /// The WebSocket ended (Close frame, EOF or I/O error) without a protocol violation.
    Gone,
    /// A message over the largest element limit, refused from its frame header (LIM-2).
    TooBig,
    /// A WebSocket-level violation: close with this code and reason.
    Violation(u16, &'static str),
    /// The client does not take what is sent to it.
    Stalled,
}

/// Why the client can no longer be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The WebSocket failed or ended.
    Gone,
    /// A write did not complete in time, or the write buffer is full: the client stopped reading.
    Stalled,
}

/// The client's WebSocket with the session's write deadlines.
pub(crate) struct ClientIo<W> {
    ws: W,
    /// How long one write may take (a ping interval plus the pong deadline).
    send_deadline: Duration,
    /// How long a pong the WebSocket layer owes may wait to be written.
    pong_timeout: Duration,
    /// The client pinged at this instant and its pong is not written yet.
    pong_owed_since: Option<Instant>,
    /// Messages were fed but not flushed.
    unflushed: bool,
    /// Set once the client is gone or stalled: nothing more is written.
    lost: Option<Lost>,
}

/// One WebSocket write.
enum Write {
    Send(Message),
    Feed(Message),
    Flush,
}

impl<W> ClientIo<W>
where
    W: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    pub(crate) fn new(ws: W, send_deadline: Duration, pong_timeout: Duration) -> Self {
        ClientIo { ws, send_deadline, pong_timeout, pong_owed_since: None, unflushed: false, lost: None }
    }

    /// The client's next input. Cancel-safe.
    pub(crate) async fn next_input(&mut self) -> ClientInput {
        loop {
            if let Some(since) = self.pong_owed_since {
                match tokio::time::timeout_at(since + self.pong_timeout, self.ws.flush()).await {
                    Ok(Ok(())) => {
                        self.pong_owed_since = None;
                        self.unflushed = false;
                    }
                    Ok(Err(error)) if is_write_buffer_full(&error) => return self.lose(Lost::Stalled),
                    Ok(Err(_)) => return self.lose(Lost::Gone),
                    Err(_) => {
                        debug!("client does not read its pongs");
                        return self.lose(Lost::Stalled);
                    }
                }
            }
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return ClientInput::Text(text),
                Some(Ok(Message::Binary(_))) => {
                    return ClientInput::Violation(close_code::UNSUPPORTED_DATA, "text frames only (RFC 7395 3.2)")
                }
                // The pong is queued by the WebSocket layer itself (WS-8).
                Some(Ok(Message::Ping(_))) => self.pong_owed_since = Some(Instant::now()),
                // An answer to our ping, or unsolicited (ignored, WS-8): either way the client is alive.
                Some(Ok(Message::Pong(_))) => return ClientInput::Alive,
                Some(Ok(Message::Close(_))) | None => return self.lose(Lost::Gone),
                Some(Err(error)) => {
                    return match classify_ws_error(&error) {
                        ClientInput::Gone => self.lose(Lost::Gone),
                        ClientInput::Stalled => self.lose(Lost::Stalled),
                        other => other,
                    }
                }
            }
        }
    }

    fn lose(&mut self, lost: Lost) -> ClientInput {
        self.lost.get_or_insert(lost);
        match lost {
            Lost::Gone => ClientInput::Gone,
            Lost::Stalled => ClientInput::Stalled,
        }
    }

    /// Queues a text message (written by [`Self::flush`], or when the write buffer fills).
    pub(crate) async fn feed(&mut self, text: String) -> Result<(), Lost> {
        self.unflushed = true;
        self.write(Write::Feed(Message::Text(text.into()))).await
    }

    /// Writes out what is queued, if anything.
    pub(crate) async fn flush(&mut self) -> Result<(), Lost> {
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        self.write(Write::Flush).await
    }

    /// Sends a ping (and whatever is queued before it).
    pub(crate) async fn ping(&mut self) -> Result<(), Lost> {
        self.unflushed = false;
        self.write(Write::Send(Message::Ping(bytes::Bytes::from_static(b"xmppgw")))).await
    }

    /// Sends a Close frame and waits briefly for the client's answer (RFC 6455 §5.5.1); not
    /// when the client is gone or stalled.
    pub(crate) async fn close_frame(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code, reason: truncate_reason(reason).into() };
        self.unflushed = false;
        if self.write(Write::Send(Message::Close(Some(frame)))).await.is_err() || self.lost.is_some() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = self.ws.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Runs one write under the send deadline: a client that does not take a message within a
    /// ping interval plus the pong deadline stopped reading, and cannot hold its session (and
    /// its upstream) forever. While a pong is owed the pong deadline is the earlier bound: the
    /// write would carry that pong out too, so a client that pings and stops reading is lost
    /// when its pong is late, whatever else the session writes meanwhile. `Err` once, when the
    /// client is lost by this write; later writes are skipped.
    async fn write(&mut self, write: Write) -> Result<(), Lost> {
        if self.lost.is_some() {
            return Ok(());
        }
        let (send_deadline, pong_owed_since, pong_timeout) =
            (self.send_deadline, self.pong_owed_since, self.pong_timeout);
        let deadline = |now| write_deadline(now, send_deadline, pong_owed_since, pong_timeout);
        let carries_pong = matches!(write, Write::Send(_) | Write::Flush);
        let result = match write {
            Write::Send(message) => finish_by(self.ws.send(message), deadline).await,
            Write::Feed(message) => finish_by(self.ws.feed(message), deadline).await,
            Write::Flush => finish_by(self.ws.flush(), deadline).await,
        };
        let lost = match result {
            Ok(Ok(())) => {
                if carries_pong {
                    // A flushed write carries the pong the WebSocket layer queued.
                    self.pong_owed_since = None;
                }
                return Ok(());
            }
            Ok(Err(error)) if is_write_buffer_full(&error) => {
                debug!("client stopped reading (write buffer full)");
                Lost::Stalled
            }
            Ok(Err(_)) => Lost::Gone,
            Err(_) => {
                debug!("client stopped reading");
                Lost::Stalled
            }
        };
        self.lost = Some(lost);
        Err(lost)
    }
}

impl<W> ClientSide for ClientIo<W>
where
    W: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send,
{
    fn next_input(&mut self) -> impl std::future::Future<Output = ClientInput> + Send {
        ClientIo::next_input(self)
    }

    fn feed(&mut self, text: String) -> impl std::future::Future<Output = Result<(), Lost>> + Send {
        ClientIo::feed(self, text)
    }

    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), Lost>> + Send {
        ClientIo::flush(self)
    }

    fn ping(&mut self) -> impl std::future::Future<Output = Result<(), Lost>> + Send {
        ClientIo::ping(self)
    }

    fn close(&mut self, code: u16, reason: &'static str) -> impl std::future::Future<Output = ()> + Send {
        self.close_frame(code, reason)
    }
}

/// Runs `write` to its end, or until the deadline that `deadline` gives for the moment the write
/// is found to wait (`Err` then). Polled once first: a write the socket takes at once, as most
/// are, reads no clock and arms no timer. The timeout of a write that waits is boxed, so that
/// every idle session's task does not carry its room. For the client's writes and the shell's
/// upstream writes.
pub(super) async fn finish_by<F: Future>(
    write: F,
    deadline: impl FnOnce(Instant) -> Instant,
) -> Result<F::Output, Elapsed> {
    let mut write = std::pin::pin!(write);
    if let Some(done) = write.as_mut().now_or_never() {
        return Ok(done);
    }
    Box::pin(tokio::time::timeout_at(deadline(Instant::now()), write)).await
}

/// When a write started at `now` must have finished: `send_deadline` after it, or
/// `pong_timeout` after an owed pong was asked for, whichever comes first.
fn write_deadline(
    now: Instant,
    send_deadline: Duration,
    pong_owed_since: Option<Instant>,
    pong_timeout: Duration,
) -> Instant {
    let sent_by = now + send_deadline;
    match pong_owed_since {
        Some(since) => sent_by.min(since + pong_timeout),
        None => sent_by,
    }
}

/// The tungstenite error inside an axum WebSocket error, if that is what it is.
fn tungstenite_error(error: &axum::Error) -> Option<&tungstenite::Error> {
    std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
}

/// True when a write failed because the WebSocket's write buffer is full
/// (`max_write_buffer_size`): what is already queued is not being taken by the client.
fn is_write_buffer_full(error: &axum::Error) -> bool {
    matches!(tungstenite_error(error), Some(tungstenite::Error::WriteBufferFull(_)))
}

fn classify_ws_error(error: &axum::Error) -> ClientInput {
    use tungstenite::error::{Error as WsError, ProtocolError};
    match tungstenite_error(error) {
        Some(WsError::Capacity(_)) => ClientInput::TooBig,
        Some(WsError::WriteBufferFull(_)) => ClientInput::Stalled,
        Some(WsError::Utf8(_)) => ClientInput::Violation(close_code::INVALID_PAYLOAD, "invalid UTF-8 (RFC 6455 8.1)"),
        Some(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)) => {
            ClientInput::Violation(close_code::PROTOCOL_ERROR, "unmasked frame (RFC 6455 5.1)")
        }
        Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => ClientInput::Gone,
        Some(WsError::Protocol(_)) => ClientInput::Violation(close_code::PROTOCOL_ERROR, "WebSocket protocol error"),
        _ => ClientInput::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_write_buffer_is_a_stalled_client() {
        let full = tungstenite::Error::WriteBufferFull(Box::new(tungstenite::Message::Pong(Default::default())));
        let error = axum::Error::new(full);
        assert!(is_write_buffer_full(&error));
        assert!(matches!(classify_ws_error(&error), ClientInput::Stalled));
        let reset = axum::Error::new(tungstenite::Error::ConnectionClosed);
        assert!(!is_write_buffer_full(&reset));
        assert!(matches!(classify_ws_error(&reset), ClientInput::Gone));
    }

    #[test]
    fn an_owed_pong_bounds_every_write() {
        let now = Instant::now();
        let send = Duration::from_secs(45);
        let pong = Duration::from_secs(15);
        assert_eq!(write_deadline(now, send, None, pong), now + send);
        let pinged = now - Duration::from_secs(10);
        assert_eq!(
            write_deadline(now, send, Some(pinged), pong),
            pinged + pong,
            "the pong is due before the write's own deadline"
        );
        let short_send = Duration::from_secs(2);
        assert_eq!(write_deadline(now, short_send, Some(pinged), pong), now + short_send);
    }
}
