//! The open stream: relaying both ways, stream restarts after SASL `<success/>` (SASL-3/5),
//! the clean close in either order (CL-1, CL-2), pings and the idle timeout.
//!
//! The hot path: a relayed element costs a classification or a splitter event, one action and
//! two counters, and the state is changed in place. Ends go through [`Ctx::end`], never by hand.

use std::mem;
use std::time::Instant;

use crate::metrics::Direction;
use crate::xml::client::{self, ClientElementKind, ClientFrame, OpenRequest};
use crate::xml::condition::StreamCondition;
use crate::xml::error::XmlError;
use crate::xml::framing;
use crate::xml::splitter::{ServerElementKind, ServerEvent};

use super::ending::{Ending, Site};
use super::events::{Action, Count, Input, Side, Timer, UpstreamGone};
use super::settings::UPSTREAM_BATCH_BYTES;
use super::state::{ClosedBy, Closing, Liveness, Relay, Restart, State, UpstreamStream};
use super::{Ctx, SessionCore};

/// What the open stream does after one input.
enum Next {
    /// Stays as it is.
    Stay,
    /// Starts a clean close.
    Close(ClosedBy),
    /// Ends.
    End(Ending),
}

impl UpstreamStream {
    /// Batches a client element; the batch goes out when it is full (or on `ClientIdle`).
    fn queue(&mut self, ctx: &mut Ctx, xml: &str) {
        self.batched.extend_from_slice(xml.as_bytes());
        if self.batched.len() >= UPSTREAM_BATCH_BYTES {
            self.flush(ctx);
        }
    }

    /// Writes the batch out.
    fn flush(&mut self, ctx: &mut Ctx) {
        if !self.batched.is_empty() {
            ctx.push(Action::ToServer(mem::take(&mut self.batched)));
        }
    }

    /// Writes the batch and then `bytes`.
    fn write(&mut self, ctx: &mut Ctx, bytes: &[u8]) {
        self.batched.extend_from_slice(bytes);
        self.flush(ctx);
    }

    /// Writes the batch and `</stream:stream>`, once.
    fn write_stream_end(&mut self, ctx: &mut Ctx) {
        if self.end_sent {
            self.flush(ctx);
        } else {
            self.end_sent = true;
            self.write(ctx, framing::UPSTREAM_STREAM_END.as_bytes());
        }
    }
}

impl Relay {
    /// The ending when both sides have closed.
    fn closed(&self) -> Ending {
        match self.server_error {
            Some(condition) => Ending::ClosedAfterServerError { condition },
            None => Ending::Closed,
        }
    }
}

impl SessionCore {
    /// The open stream's parts, `None` once it is over.
    fn live(&mut self) -> Option<(&mut Ctx, &mut Relay, Option<&mut Closing>)> {
        match &mut self.state {
            State::Relaying(relay) => Some((&mut self.ctx, relay, None)),
            State::Closing(relay, closing) => Some((&mut self.ctx, relay, Some(closing))),
            _ => None,
        }
    }

    /// Handles an input while the stream is open.
    pub(super) fn relay_input(&mut self, now: Instant, input: Input<'_>) {
        if matches!(input, Input::ClientText(_) | Input::ClientPong) {
            self.client_alive();
        }
        let next = match input {
            Input::ClientText(text) => return self.relay_client_text(text, now),
            Input::ServerBytes(bytes) => {
                if let Some((_, relay, closing)) = self.live() {
                    if !closing.is_some_and(|closing| closing.upstream_eof) {
                        relay.upstream.splitter.feed(bytes);
                    }
                }
                return self.relay_server_events(now);
            }
            Input::ClientIdle => {
                if let Some((ctx, relay, _)) = self.live() {
                    relay.upstream.flush(ctx);
                }
                Next::Stay
            }
            Input::TimerFired(timer) => self.relay_timer(timer, now),
            Input::UpstreamGone(gone) => {
                // Bytes the splitter left waiting for a `>` may hold an error: the server's bad
                // XML ends the session, as it would have on arrival, not its hanging up.
                if let Some((_, relay, _)) = self.live() {
                    if let Err(error) = relay.upstream.splitter.read_waiting_bytes() {
                        return self.relay_server_event(Err(error), now);
                    }
                }
                self.upstream_gone(gone)
            }
            // After the server's end the client leaving completes the close (Strophe closes the
            // WebSocket on <close/> without answering it).
            Input::ClientGone => match self.live() {
                Some((_, relay, Some(closing))) if closing.by == ClosedBy::Server => Next::End(relay.closed()),
                _ => Next::End(Ending::ClientVanished),
            },
            other => match self.ctx.common_ending(&other) {
                Some(ending) => Next::End(ending),
                None => Next::Stay,
            },
        };
        self.apply(next, now);
    }

    /// Any client input proves the client alive: a pending pong is no longer awaited.
    fn client_alive(&mut self) {
        if let Some((ctx, relay, _)) = self.live() {
            if let Liveness::AwaitingPong { sent_at } = relay.liveness {
                ctx.clear_timer(Timer::Pong);
                let next_ping = sent_at + ctx.settings.ping_interval;
                ctx.set_timer(Timer::Ping, next_ping);
                relay.liveness = Liveness::Quiet;
            }
        }
    }

    fn relay_timer(&mut self, timer: Timer, now: Instant) -> Next {
        let Some((ctx, relay, closing)) = self.live() else { return Next::Stay };
        match timer {
            Timer::Ping => {
                ctx.trim_actions = true;
                ctx.push(Action::Ping);
                let due = now + ctx.settings.pong_timeout;
                ctx.set_timer(Timer::Pong, due);
                relay.liveness = Liveness::AwaitingPong { sent_at: now };
                Next::Stay
            }
            Timer::Pong => Next::End(Ending::PongTimeout),
            // Re-armed lazily: a stanza does not touch the timer, the timer looks at the stanzas.
            Timer::Idle if closing.is_none() => {
                match ctx.settings.idle_timeout.map(|idle| relay.last_activity + idle) {
                    Some(due) if due > now => {
                        ctx.set_timer(Timer::Idle, due);
                        Next::Stay
                    }
                    _ => Next::End(Ending::IdleTimeout),
                }
            }
            Timer::Close if closing.is_some() => Next::End(Ending::CloseTimeout),
            _ => Next::Stay,
        }
    }

    /// Handles one client text message while the stream is open.
    pub(super) fn relay_client_text(&mut self, text: &str, now: Instant) {
        match client::classify(text, &self.ctx.settings.client_limits) {
            Ok(frame) => self.relay_client_frame(frame, now),
            Err(error) => self.apply(Next::End(Ending::Refused(error)), now),
        }
    }

    /// Handles one classified client message while the stream is open (also the queued ones).
    pub(super) fn relay_client_frame(&mut self, frame: ClientFrame<'_>, now: Instant) {
        let Some((ctx, relay, closing)) = self.live() else { return };
        let next = client_frame(ctx, relay, closing.map(|closing| closing.by), frame, now);
        self.apply(next, now);
    }

    /// Handles one server event (or the splitter's refusal) while the stream is open.
    pub(super) fn relay_server_event(&mut self, event: Result<ServerEvent, XmlError>, now: Instant) {
        let Some((ctx, relay, closing)) = self.live() else { return };
        let next = match event {
            Ok(event) => server_event(ctx, relay, closing.map(|closing| closing.by), event, now),
            Err(error) => Next::End(Ending::ServerBadXml(error)),
        };
        self.apply(next, now);
    }

    /// How the server's hanging up (or a failed write to it) ends or closes the stream.
    fn upstream_gone(&mut self, gone: UpstreamGone) -> Next {
        match self.live() {
            Some((_, _, Some(closing))) if gone == UpstreamGone::ReadEnd && closing.by == ClosedBy::Server => {
                // TV-92: the server may half-close after its end; the client's last stanzas
                // and its <close/> still go into the writable socket.
                closing.upstream_eof = true;
                Next::Stay
            }
            // The server hung up instead of answering the client's <close/> in kind.
            Some((ctx, relay, Some(_))) if gone == UpstreamGone::ReadEnd => {
                ctx.push(Action::ToClient(framing::CLOSE.to_string()));
                Next::End(relay.closed())
            }
            _ => Next::End(Ending::ServerVanished),
        }
    }

    /// Handles every event the splitter holds.
    pub(super) fn relay_server_events(&mut self, now: Instant) {
        loop {
            let Some((_, relay, _)) = self.live() else { return };
            let event = match relay.upstream.splitter.next_event() {
                Ok(None) => return,
                Ok(Some(event)) => Ok(event),
                Err(error) => Err(error),
            };
            self.relay_server_event(event, now);
        }
    }

    /// Makes the state follow `next`.
    fn apply(&mut self, next: Next, now: Instant) {
        match next {
            Next::Stay => {}
            Next::Close(by) => match mem::replace(&mut self.state, State::AwaitingOpen) {
                State::Relaying(relay) => {
                    self.ctx.clear_timer(Timer::Idle);
                    let deadline = now + self.ctx.settings.close_timeout;
                    self.ctx.set_timer(Timer::Close, deadline);
                    self.state = State::Closing(relay, Closing { by, deadline, upstream_eof: false });
                }
                other => self.state = other,
            },
            Next::End(ending) => match mem::replace(&mut self.state, State::AwaitingOpen) {
                State::Relaying(relay) | State::Closing(relay, _) => {
                    let UpstreamStream { batched, end_sent, .. } = relay.upstream;
                    self.state = self.ctx.end(ending, Site::InStream { batched, end_sent });
                }
                other => self.state = other,
            },
        }
    }
}

fn client_frame(
    ctx: &mut Ctx,
    relay: &mut Relay,
    closed_by: Option<ClosedBy>,
    frame: ClientFrame<'_>,
    now: Instant,
) -> Next {
    relay.last_activity = now;
    match frame {
        ClientFrame::Open(request) => restart(ctx, relay, closed_by, request),
        ClientFrame::Close => match closed_by {
            None => {
                relay.upstream.write_stream_end(ctx);
                Next::Close(ClosedBy::Client)
            }
            Some(ClosedBy::Client) => Next::Stay,
            Some(ClosedBy::Server) => Next::End(relay.closed()),
        },
        // RFC 7395 §3.6: nothing may follow the client's own <close/>.
        ClientFrame::Element { .. } if closed_by == Some(ClosedBy::Client) => Next::End(Ending::ElementAfterClose),
        ClientFrame::Element { kind: ClientElementKind::StartTls, .. } => Next::End(Ending::ClientStartTls),
        ClientFrame::Element { kind: ClientElementKind::Compress, .. } => {
            ctx.push(Action::ToClient(framing::COMPRESS_FAILURE.to_string()));
            Next::Stay
        }
        ClientFrame::Element { xml, kind } => {
            if relay.restart == Restart::Allowed {
                relay.restart = Restart::No;
            }
            relay.upstream.queue(ctx, xml);
            ctx.count(Count::Relayed { direction: Direction::ToServer, bytes: xml.len() });
            let ClientElementKind::StreamError { condition } = kind else {
                return Next::Stay;
            };
            // ERR-6: the client ended the stream with an error; close our side of it.
            ctx.count(Count::StreamError { condition, side: Side::Client });
            relay.upstream.write_stream_end(ctx);
            match closed_by {
                None => Next::Close(ClosedBy::Client),
                Some(_) => Next::Stay,
            }
        }
    }
}

/// A client `<open/>` inside the stream: a restart only right after SASL `<success/>` and for
/// the same domain (D3, SASL-5, SASL-6).
fn restart(ctx: &mut Ctx, relay: &mut Relay, closed_by: Option<ClosedBy>, request: OpenRequest) -> Next {
    if relay.restart != Restart::Allowed || closed_by.is_some() {
        return Next::End(Ending::UnexpectedOpen);
    }
    let domain = request.to().and_then(|to| crate::domain::normalize(to).ok());
    if domain.as_deref() != Some(relay.upstream.domain.as_str()) {
        return Next::End(Ending::RestartElsewhere);
    }
    relay.restart = Restart::AwaitingHeader;
    let header = framing::upstream_header(&request, &relay.upstream.domain, true);
    relay.upstream.request = request;
    relay.upstream.write(ctx, header.as_bytes());
    Next::Stay
}

fn server_event(
    ctx: &mut Ctx,
    relay: &mut Relay,
    closed_by: Option<ClosedBy>,
    event: ServerEvent,
    now: Instant,
) -> Next {
    relay.last_activity = now;
    match event {
        ServerEvent::Header(header) => {
            if relay.restart != Restart::AwaitingHeader {
                return Next::End(Ending::ServerBadXml(XmlError::NotWellFormed("unexpected stream header")));
            }
            relay.restart = Restart::No;
            let stream_id = ctx.next_stream_id();
            let open = framing::client_open(&header, stream_id.as_str(), &ctx.lang);
            ctx.push(Action::ToClient(open));
            Next::Stay
        }
        ServerEvent::Element(element) => {
            let text = if let Some(condition) = element.stream_error_condition() {
                ctx.count(Count::StreamError { condition, side: Side::Server });
                relay.server_error = Some(condition);
                if element.see_other_host.is_some() {
                    // D4: a TCP redirect means nothing to a WebSocket client; never relay it.
                    framing::client_stream_error(StreamCondition::RemoteConnectionFailed, Some(condition.as_str()))
                } else {
                    element.xml
                }
            } else {
                match element.kind {
                    ServerElementKind::Features => {
                        // The end of a stream restart: what the restart allocated (the new
                        // splitter's buffer and checker, room for its actions) is given back
                        // once it has been handled, before the session goes quiet.
                        ctx.trim_actions = true;
                        framing::client_features(&element)
                    }
                    ServerElementKind::SaslSuccess => {
                        // RFC 6120 §6.4.6: the next thing from the server is a new stream header.
                        relay.upstream.splitter.expect_new_stream();
                        relay.restart = Restart::Allowed;
                        element.xml
                    }
                    _ => element.xml,
                }
            };
            ctx.count(Count::Relayed { direction: Direction::ToClient, bytes: text.len() });
            ctx.push(Action::ToClient(text));
            Next::Stay
        }
        ServerEvent::End => match closed_by {
            None => {
                ctx.push(Action::ToClient(framing::CLOSE.to_string()));
                Next::Close(ClosedBy::Server)
            }
            Some(ClosedBy::Client) => {
                ctx.push(Action::ToClient(framing::CLOSE.to_string()));
                Next::End(relay.closed())
            }
            Some(ClosedBy::Server) => Next::Stay,
        },
    }
}
