//! The BOSH side of one session as the shell sees it ([`ClientSide`]): the requests the HTTP
//! handlers pass to the session arrive on a channel and go through the session's [`Exchange`];
//! what the core writes is queued there and sent in the answers to held requests.
//!
//! BOSH has no ping: a core ping is answered at once as a sign of life, and a lost client is
//! found by the session's inactivity period instead (the core's ping timer then costs nothing).

use std::collections::VecDeque;
use std::future::Future;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::exchange::{Exchange, ToCore};
use crate::session::{ClientInput, ClientSide, Lost};
use crate::xml::bosh::BodyRequest;

/// One request handed to its session: the parsed body and where its answer goes.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub body: BodyRequest,
    pub reply: oneshot::Sender<String>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The client side of one BOSH session.
pub(crate) struct BoshClient {
    exchange: Exchange<oneshot::Sender<String>>,
    requests: mpsc::Receiver<Incoming>,
    /// Inputs for the core besides the exchange's (a ping's answer).
    inputs: VecDeque<ClientInput>,
    lost: bool,
}

impl BoshClient {
    pub(crate) fn new(exchange: Exchange<oneshot::Sender<String>>, requests: mpsc::Receiver<Incoming>) -> Self {
        BoshClient { exchange, requests, inputs: VecDeque::new(), lost: false }
    }

    fn send_answers(&mut self) {
        for (reply, body) in self.exchange.take_answers() {
            // A client that went away before its answer finds it again by repeating the rid.
            let _ = reply.send(body);
        }
    }

    /// After the session ended: a client that had no request held when the stream ended gets
    /// what was still queued and then the terminal response on its next requests, within
    /// `linger`.
    pub(crate) async fn linger(mut self, linger: std::time::Duration) {
        // Requests still held (the core ended without closing the client) get the end too.
        self.exchange.end_stream(None);
        self.exchange.answer_ready(now());
        self.send_answers();
        let deadline = Instant::now() + linger;
        // At most: one response with the queued stanzas, then the terminal one.
        for _ in 0..2 {
            if self.lost || self.exchange.terminal_delivered() {
                return;
            }
            let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, self.requests.recv()).await else { return };
            self.exchange.receive(now(), incoming.body, incoming.reply);
            self.send_answers();
        }
    }

    async fn next(&mut self) -> ClientInput {
        loop {
            if let Some(input) = self.inputs.pop_front() {
                return input;
            }
            if let Some(to_core) = self.exchange.next_for_core() {
                self.send_answers();
                return match to_core {
                    ToCore::Text(text) => ClientInput::Text(Utf8Bytes::from(text)),
                    ToCore::Gone => {
                        self.lost = true;
                        ClientInput::Gone
                    }
                    ToCore::Violation(condition) => ClientInput::Violation(1008, condition),
                };
            }
            self.send_answers();
            let deadline = self.exchange.next_deadline();
            tokio::select! {
                incoming = self.requests.recv() => match incoming {
                    Some(Incoming { body, reply }) => self.exchange.receive(now(), body, reply),
                    None => {
                        self.lost = true;
                        return ClientInput::Gone;
                    }
                },
                () = sleep_until(deadline) => self.exchange.tick(now()),
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl ClientSide for BoshClient {
    fn next_input(&mut self) -> impl Future<Output = ClientInput> + Send {
        self.next()
    }

    fn feed(&mut self, text: String) -> impl Future<Output = Result<(), Lost>> + Send {
        let result = self.exchange.core_wrote(text).map_err(|_| Lost::Stalled);
        if result.is_err() {
            self.lost = true;
        }
        std::future::ready(result)
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), Lost>> + Send {
        self.exchange.answer_ready(now());
        self.send_answers();
        std::future::ready(Ok(()))
    }

    fn ping(&mut self) -> impl Future<Output = Result<(), Lost>> + Send {
        self.inputs.push_back(ClientInput::Alive);
        std::future::ready(Ok(()))
    }

    fn close(&mut self, _code: u16, _reason: &'static str) -> impl Future<Output = ()> + Send {
        self.exchange.end_stream(None);
        self.exchange.answer_ready(now());
        self.send_answers();
        std::future::ready(())
    }
}
