//! What the session shell needs of its client, whatever the transport: the next input from it,
//! writes of whole elements, a flush, a ping and a close. The WebSocket (`client_io::ClientIo`)
//! implements it, and so does the BOSH connection manager (`crate::bosh`), so that one shell
//! and one core serve both.
//!
//! A transport decides nothing about XMPP here: it delivers the client's elements one by one as
//! the core accepts one WebSocket message, and writes what the core gives it.

use std::future::Future;

use super::client_io::{ClientInput, Lost};

/// The client side of one session (see the module documentation).
pub(crate) trait ClientSide: Send {
    /// The client's next input. Cancel-safe: dropped before it completes, nothing is lost.
    fn next_input(&mut self) -> impl Future<Output = ClientInput> + Send;

    /// Queues one element (or `<open/>`/`<close/>`) for the client; written by
    /// [`Self::flush`], or earlier when the transport's buffer fills. `Err` once, when the
    /// client is lost by this write.
    fn feed(&mut self, text: String) -> impl Future<Output = Result<(), Lost>> + Send;

    /// Writes out what is queued, if anything.
    fn flush(&mut self) -> impl Future<Output = Result<(), Lost>> + Send;

    /// Checks that the client is alive; the answer comes as [`ClientInput::Alive`].
    fn ping(&mut self) -> impl Future<Output = Result<(), Lost>> + Send;

    /// Ends the client side with this (WebSocket) close code and reason, when the client is
    /// still there.
    fn close(&mut self, code: u16, reason: &'static str) -> impl Future<Output = ()> + Send;
}
