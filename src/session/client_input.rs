//! What the client's WebSocket delivers, after control frames: a text message, the end of the
//! connection, or a WebSocket-level violation with the close code it deserves (RFC 6455, RFC
//! 7395 §3.2).
//!
//! Pings are answered by the WebSocket layer itself; pongs only signal liveness. This module
//! reads; it never writes to the socket.

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
}

/// Like [`recv_client`] but skipping pongs (before the relay, liveness is not tracked).
pub(crate) async fn recv_data<W>(ws: &mut W) -> ClientInput
where
    W: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        match recv_client(ws).await {
            ClientInput::Alive => continue,
            other => return other,
        }
    }
}

pub(crate) async fn recv_client<W>(ws: &mut W) -> ClientInput
where
    W: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return ClientInput::Text(text),
            Some(Ok(Message::Binary(_))) => {
                return ClientInput::Violation(close_code::UNSUPPORTED_DATA, "text frames only (RFC 7395 3.2)")
            }
            // Pongs to pings are queued by the WebSocket layer itself (WS-8).
            Some(Ok(Message::Ping(_))) => continue,
            // An answer to our ping, or unsolicited (ignored, WS-8): either way the client is alive.
            Some(Ok(Message::Pong(_))) => return ClientInput::Alive,
            Some(Ok(Message::Close(_))) | None => return ClientInput::Gone,
            Some(Err(error)) => return classify_ws_error(error),
        }
    }
}

fn classify_ws_error(error: axum::Error) -> ClientInput {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let inner = error.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => ClientInput::TooBig,
        Some(WsError::Utf8(_)) => ClientInput::Violation(close_code::INVALID_PAYLOAD, "invalid UTF-8 (RFC 6455 8.1)"),
        Some(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)) => {
            ClientInput::Violation(close_code::PROTOCOL_ERROR, "unmasked frame (RFC 6455 5.1)")
        }
        Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => ClientInput::Gone,
        Some(WsError::Protocol(_)) => ClientInput::Violation(close_code::PROTOCOL_ERROR, "WebSocket protocol error"),
        _ => ClientInput::Gone,
    }
}
