//! What the client's WebSocket delivers, after control frames: a text message, a ping, the end
//! of the connection, or a WebSocket-level violation with the close code it deserves (RFC 6455,
//! RFC 7395 §3.2); and which write errors mean the client stopped reading.
//!
//! Pings are answered by the WebSocket layer itself, which queues the pong; the session must
//! then see that pong written (a client that pings without reading would otherwise keep the
//! session alive forever). Pongs only signal liveness. This module reads; it never writes.

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};

use super::outcome::close_code;

/// What reading the WebSocket produced, after control frames are handled.
#[derive(Debug)]
pub(crate) enum ClientInput {
    /// A text message.
    Text(axum::extract::ws::Utf8Bytes),
    /// The WebSocket ended (Close frame, EOF or I/O error) without a protocol violation.
    Gone,
    /// A message larger than the element limit (LIM-2).
    TooBig,
    /// A WebSocket-level violation: close with this code and reason.
    Violation(u16, &'static str),
    /// A pong: the client is alive.
    Alive,
    /// A ping: its pong is queued and must be written before the client is read further.
    Ping,
    /// The client does not take what is sent to it: its pongs (or our messages) stay unwritten
    /// past the deadline, or the WebSocket's write buffer is full.
    Stalled,
}

/// The next message from the client, classified.
pub(crate) async fn recv_client<W>(ws: &mut W) -> ClientInput
where
    W: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    match ws.next().await {
        Some(Ok(Message::Text(text))) => ClientInput::Text(text),
        Some(Ok(Message::Binary(_))) => {
            ClientInput::Violation(close_code::UNSUPPORTED_DATA, "text frames only (RFC 7395 3.2)")
        }
        // The pong is queued by the WebSocket layer itself (WS-8).
        Some(Ok(Message::Ping(_))) => ClientInput::Ping,
        // An answer to our ping, or unsolicited (ignored, WS-8): either way the client is alive.
        Some(Ok(Message::Pong(_))) => ClientInput::Alive,
        Some(Ok(Message::Close(_))) | None => ClientInput::Gone,
        Some(Err(error)) => classify_ws_error(error),
    }
}

/// The tungstenite error inside an axum WebSocket error, if that is what it is.
fn tungstenite_error(error: &axum::Error) -> Option<&tungstenite::Error> {
    std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
}

/// True when a write failed because the WebSocket's write buffer is full
/// (`max_write_buffer_size`): what is already queued is not being taken by the client.
pub(crate) fn is_write_buffer_full(error: &axum::Error) -> bool {
    matches!(tungstenite_error(error), Some(tungstenite::Error::WriteBufferFull(_)))
}

fn classify_ws_error(error: axum::Error) -> ClientInput {
    use tungstenite::error::{Error as WsError, ProtocolError};
    match tungstenite_error(&error) {
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
        assert!(matches!(classify_ws_error(error), ClientInput::Stalled));
        let reset = axum::Error::new(tungstenite::Error::ConnectionClosed);
        assert!(!is_write_buffer_full(&reset));
        assert!(matches!(classify_ws_error(reset), ClientInput::Gone));
    }
}
