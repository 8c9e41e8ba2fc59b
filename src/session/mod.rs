//! One client session: the state machine between one WebSocket and one upstream XMPP stream.
//!
//! ```text
//!  AwaitingOpen ──<open/>──▶ Connecting ──upstream ready──▶ Relaying ──▶ (closing) ──▶ Ended
//!       │ timeout / bad first message   │ failure (D6)          │
//!       ▼                               ▼                       ├─ client <close/>  ⇒ ClientClosing: </stream:stream> up,
//!   <open/>+error+<close/>        <open/>+remote-connection-    │     wait for the server's end, then <close/> down
//!                                 failed+<close/>               ├─ server end       ⇒ ServerClosing: <close/> down, keep
//!                                                               │     relaying up until the client's <close/>
//!                                                               ├─ WebSocket lost   ⇒ upstream closed, no </stream:stream> (CL-4)
//!                                                               └─ upstream lost    ⇒ WebSocket close 1014, no <close/> (D5)
//! ```
//! Inside `Relaying`, a client `<open/>` is a stream restart only right after the server's SASL
//! `<success/>` (SASL-3/5); any other `<open/>` is `<bad-format/>` (D3).
//!
//! The session only moves bytes and follows the state machine; every XML decision is made by
//! [`crate::xml`]. It must never write a client byte upstream before TLS is up, never log stanza
//! content or SASL payloads, and never buffer without a bound.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use tokio_util::sync::CancellationToken;

use crate::client_addr::ClientAddr;
use crate::config::Config;
use crate::control::AddressPermit;
use crate::metrics::{Metrics, TO_CLIENT, TO_SERVER};
use crate::upstream::{self, Established, Upstream, UpstreamDirectory};
use crate::xml::client::{self, ClientElementKind, ClientFrame, ClientLimits, OpenRequest};
use crate::xml::condition::StreamCondition;
use crate::xml::framing;
use crate::xml::splitter::{ServerElementKind, ServerEvent, SplitterLimits};

mod client_input;
pub mod core;
mod offload;
mod outcome;
mod relay;

use client_input::{is_write_buffer_full, recv_client, ClientInput};
pub use outcome::Outcome;
use outcome::{close_code, refusal_close_code, truncate_reason};
use relay::{Closing, Relay, UPSTREAM_BATCH_BYTES};

/// Everything sessions share: built once in `main` (or a test) and passed down. A SIGHUP
/// reload builds a new one; a session keeps the one it started with.
#[derive(Debug)]
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
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
    pub drain: CancellationToken,
    /// The session's slot in the limits; released when the session ends.
    pub permit: AddressPermit,
}

/// A write to the client WebSocket, run under the send deadline.
enum SinkOp {
    /// Queue and flush.
    Send(Message),
    /// Queue only (flushed later, or when the write buffer fills).
    Feed(Message),
    /// Write out what is queued.
    Flush,
}

/// What the relay loop should do after handling one input.
enum Flow {
    Continue,
    End(Outcome),
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
        let mut session = Session::new(ws, &gateway, &context);
        let mut outcome = session.drive().await;
        if session.client_stalled && outcome == Outcome::ClientVanished {
            outcome = Outcome::ClientStalled;
        }
        drop(session);
        drop(context.permit);
        gateway.metrics.sessions_ended.with_label_values(&[outcome.label()]).inc();
        gateway.metrics.sessions_active.dec();
        info!(outcome = outcome.label(), "session ended");
    }
    .instrument(span)
    .await
}

struct Session<'g, W> {
    ws: W,
    gateway: &'g Gateway,
    context: &'g SessionContext,
    /// `xml:lang` the client asked for, used when the gateway must make an `<open/>` itself.
    lang: String,
    /// Messages were fed to the WebSocket but not flushed yet.
    unflushed: bool,
    /// A send ran out of time: the client stopped reading; nothing more is sent to it.
    client_stalled: bool,
    /// The element limit of this session, both directions: the global one until the domain is
    /// known, then its upstream's (D10).
    element_limit: usize,
    /// The client pinged at this instant and its pong is not written yet.
    pong_owed_since: Option<Instant>,
}

fn random_stream_id() -> String {
    let value: u64 = rand::rng().random();
    format!("gw-{value:016x}")
}

impl<'g, W> Session<'g, W>
where
    W: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send,
{
    fn new(ws: W, gateway: &'g Gateway, context: &'g SessionContext) -> Self {
        Session {
            ws,
            gateway,
            context,
            lang: "en".to_string(),
            unflushed: false,
            client_stalled: false,
            element_limit: gateway.config.limits.max_element_bytes,
            pong_owed_since: None,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.gateway.metrics
    }

    fn client_limits(&self) -> ClientLimits {
        let limits = &self.gateway.config.limits;
        ClientLimits {
            max_attributes: limits.max_attributes_per_element,
            max_namespace_declarations: limits.max_namespace_declarations_per_element,
            ..ClientLimits::default()
        }
    }

    fn splitter_limits(&self) -> SplitterLimits {
        let limits = &self.gateway.config.limits;
        SplitterLimits {
            max_element_bytes: self.element_limit,
            max_attributes: limits.max_attributes_per_element,
            max_namespace_declarations: limits.max_namespace_declarations_per_element,
            ..SplitterLimits::default()
        }
    }

    /// The client's next input. A ping's pong (queued by the WebSocket layer) must be written
    /// within the pong timeout before the client is read any further: a client that pings but
    /// does not read is [`ClientInput::Stalled`], and meanwhile its pings wait in its own socket
    /// buffers, not in ours. A text message over this session's element limit is
    /// [`ClientInput::TooBig`].
    async fn next_input(&mut self) -> ClientInput {
        loop {
            if let Some(since) = self.pong_owed_since {
                let deadline = since + self.gateway.config.limits.pong_timeout();
                match tokio::time::timeout_at(deadline, self.ws.flush()).await {
                    Ok(Ok(())) => {
                        self.pong_owed_since = None;
                        self.unflushed = false;
                    }
                    Ok(Err(error)) if is_write_buffer_full(&error) => {
                        self.client_stalled = true;
                        return ClientInput::Stalled;
                    }
                    Ok(Err(_)) => return ClientInput::Gone,
                    Err(_) => {
                        debug!("client does not read its pongs");
                        self.client_stalled = true;
                        return ClientInput::Stalled;
                    }
                }
            }
            match recv_client(&mut self.ws).await {
                ClientInput::Ping => self.pong_owed_since = Some(Instant::now()),
                ClientInput::Text(text) if text.len() > self.element_limit => return ClientInput::TooBig,
                other => return other,
            }
        }
    }

    /// Like [`Self::next_input`] but skipping pongs (before the relay, liveness is not tracked).
    async fn next_data(&mut self) -> ClientInput {
        loop {
            match self.next_input().await {
                ClientInput::Alive => continue,
                other => return other,
            }
        }
    }

    async fn drive(&mut self) -> Outcome {
        let open_timeout = self.gateway.config.limits.open_timeout();
        let drain = self.context.drain.clone();
        let input = tokio::select! {
            result = tokio::time::timeout(open_timeout, self.next_data()) => match result {
                Ok(input) => input,
                Err(_) => {
                    debug!("no <open/> in time");
                    self.refuse_before_stream("", StreamCondition::ConnectionTimeout, None, close_code::NORMAL).await;
                    return Outcome::OpenTimeout;
                }
            },
            _ = drain.cancelled() => return self.drain_before_stream("").await,
        };
        let text = match input {
            ClientInput::Text(text) => text,
            other => return self.end_on_ws_input(other, None).await,
        };
        let limits = self.client_limits();
        let request = match offload::check(text.len(), || client::classify(text.as_str(), &limits)) {
            Ok(ClientFrame::Open(request)) => request,
            Ok(ClientFrame::Close) => {
                self.send(framing::CLOSE).await;
                self.close_ws(close_code::NORMAL, "stream closed").await;
                return Outcome::Clean;
            }
            Ok(ClientFrame::Element { .. }) => {
                self.metrics().client_refused.with_label_values(&["not-open"]).inc();
                // FR-2: the first message must be <open/> (TV-82).
                self.refuse_before_stream("", StreamCondition::InvalidNamespace, None, close_code::NORMAL).await;
                return Outcome::ClientError;
            }
            Err(error) => {
                self.metrics().client_refused.with_label_values(&[error.reason_label()]).inc();
                debug!(%error, "first message refused");
                self.refuse_before_stream("", error.condition(), None, refusal_close_code(&error)).await;
                return Outcome::ClientError;
            }
        };
        if let Some(lang) = &request.lang {
            self.lang = lang.clone();
        }
        let Some(to) = request.to.as_deref() else {
            self.refuse_before_stream("", StreamCondition::HostUnknown, None, close_code::NORMAL).await;
            return Outcome::HostUnknown;
        };
        let domain = match crate::domain::normalize(to) {
            Ok(domain) => domain,
            Err(error) => {
                debug!(%error, "unusable 'to'");
                self.refuse_before_stream("", StreamCondition::HostUnknown, None, close_code::NORMAL).await;
                return Outcome::HostUnknown;
            }
        };
        let target = match self.gateway.upstreams.lookup(&domain) {
            Ok(target) => target,
            Err(refusal) => {
                // D17: a domain the configuration does not allow is unknown to this gateway.
                debug!(domain = %domain, class = refusal.class(), "domain not served");
                self.metrics().connect_failures.with_label_values(&[refusal.class()]).inc();
                self.refuse_before_stream(
                    &domain,
                    StreamCondition::HostUnknown,
                    Some(refusal.class()),
                    close_code::NORMAL,
                )
                .await;
                return Outcome::HostUnknown;
            }
        };
        if let Some(limit) = target.element_limit() {
            self.element_limit = limit;
        }
        let (established, queued) = match self.connect(&target, &request).await {
            Ok(Some(ready)) => ready,
            Ok(None) => return Outcome::ClientVanished,
            Err(outcome) => return outcome,
        };
        self.relay(established, queued, request, domain).await
    }

    /// Opens the upstream while reading (and queueing, bounded: LIM-4) what the client sends
    /// meanwhile. `Ok(None)`: the client went away.
    async fn connect(
        &mut self,
        target: &Upstream,
        request: &OpenRequest,
    ) -> Result<Option<(Established, VecDeque<axum::extract::ws::Utf8Bytes>)>, Outcome> {
        let gateway = self.gateway;
        let drain = self.context.drain.clone();
        let establish = gateway.upstreams.establish(
            target,
            upstream::OpenFor { open: request, client: self.context.client.socket_addr() },
            &gateway.config.connect,
            self.splitter_limits(),
            &gateway.metrics,
        );
        tokio::pin!(establish);
        let mut queue = VecDeque::new();
        // LIM-4: bounded in count, and in bytes by one element limit.
        let mut queued_bytes = 0;
        let result = loop {
            tokio::select! {
                result = &mut establish => break result,
                _ = drain.cancelled() => return Err(self.drain_before_stream(target.domain()).await),
                input = self.next_data() => match input {
                    ClientInput::Text(text)
                        if queue.len() < gateway.config.limits.max_queued_messages
                            && queued_bytes + text.len() <= self.element_limit =>
                    {
                        queued_bytes += text.len();
                        queue.push_back(text);
                    }
                    ClientInput::Text(_) => {
                        self.metrics().client_refused.with_label_values(&["queue-full"]).inc();
                        self.refuse_before_stream(target.domain(), StreamCondition::PolicyViolation, Some("too many messages before the stream was open"), close_code::POLICY).await;
                        return Err(Outcome::ClientError);
                    }
                    ClientInput::Gone => return Ok(None),
                    other => return Err(self.end_on_ws_input(other, Some(target.domain())).await),
                },
            }
        };
        match result {
            Ok(established) => Ok(Some((established, queue))),
            Err(error) => {
                let class = error.class();
                self.metrics().connect_failures.with_label_values(&[class]).inc();
                warn!(domain = %target.domain(), class, %error, "upstream unavailable");
                self.refuse_before_stream(
                    target.domain(),
                    StreamCondition::RemoteConnectionFailed,
                    Some(class),
                    close_code::NORMAL,
                )
                .await;
                Err(Outcome::UpstreamFailed)
            }
        }
    }

    /// The relay loop (state `Relaying` and the two closing states).
    async fn relay(
        &mut self,
        established: Established,
        queued: VecDeque<axum::extract::ws::Utf8Bytes>,
        request: OpenRequest,
        domain: String,
    ) -> Outcome {
        let Established { io, splitter, header, first } = established;
        let mut relay = Relay {
            io,
            splitter,
            request,
            domain,
            restart_allowed: false,
            awaiting_restart_header: false,
            features_relayed: false,
            closing: Closing::No,
            close_deadline: None,
            upstream_eof: false,
            last_activity: Instant::now(),
            out: Vec::new(),
        };
        let open = framing::client_open(&header, &random_stream_id(), &self.lang);
        if !self.send(&open).await {
            return relay.vanish_upstream().await;
        }
        // The upstream layer read the first element to rule out a redirect (D4).
        if let Some(event) = first {
            if let Flow::End(outcome) = self.on_server_event(&mut relay, event).await {
                return outcome;
            }
        }
        for text in queued {
            if let Flow::End(outcome) = self.on_client_text(&mut relay, text.as_str()).await {
                return outcome;
            }
        }
        let limits = &self.gateway.config.limits;
        let close_timeout = limits.close_timeout();
        let (ping_interval, pong_timeout, idle_timeout) =
            (limits.ping_interval(), limits.pong_timeout(), limits.idle_timeout());
        let drain = self.context.drain.clone();
        // The ping and idle timers live across iterations: registering two fresh timers for
        // every relayed stanza cost more than the relaying (docs/PERFORMANCE.md). The idle timer
        // is pushed back lazily: when it fires early, it is re-armed at last activity + timeout.
        let ping_timer = tokio::time::sleep(ping_interval);
        tokio::pin!(ping_timer);
        let idle_timer = tokio::time::sleep(idle_timeout.unwrap_or(ping_interval));
        tokio::pin!(idle_timer);
        let mut pong_deadline: Option<Instant> = None;
        loop {
            // Drain what the splitter already holds before reading more, then send the
            // messages it produced to the client in one write.
            let splitter = &mut relay.splitter;
            let flow = match offload::check(splitter.buffered_len(), || splitter.next_event()) {
                Ok(Some(event)) => {
                    relay.last_activity = Instant::now();
                    self.on_server_event(&mut relay, event).await
                }
                Err(error) => self.on_server_bad_xml(&mut relay, error).await,
                Ok(None) if self.unflushed => self.flush_or_vanish(&mut relay).await,
                // Client elements are queued for the upstream: take the client's next message if
                // it is already here (no waiting), else write the queue out in one go.
                Ok(None) if !relay.out.is_empty() => {
                    let ready =
                        if relay.out.len() < UPSTREAM_BATCH_BYTES { self.next_input().now_or_never() } else { None };
                    match ready {
                        Some(input) => {
                            pong_deadline = None;
                            if matches!(input, ClientInput::Text(_)) {
                                relay.last_activity = Instant::now();
                            }
                            self.on_client_input(&mut relay, input).await
                        }
                        None if relay.flush_out().await.is_err() => self.on_server_vanished(&mut relay).await,
                        None => Flow::Continue,
                    }
                }
                Ok(None) => {
                    let deadline = relay.close_deadline;
                    tokio::select! {
                        input = self.next_input() => {
                            pong_deadline = None;
                            if matches!(input, ClientInput::Text(_)) {
                                relay.last_activity = Instant::now();
                            }
                            self.on_client_input(&mut relay, input).await
                        }
                        _ = drain.cancelled() => self.drain_relaying(&mut relay).await,
                        _ = &mut ping_timer, if pong_deadline.is_none() => {
                            ping_timer.as_mut().reset(Instant::now() + ping_interval);
                            pong_deadline = Some(Instant::now() + pong_timeout);
                            if !self.send_message(Message::Ping(bytes::Bytes::from_static(b"xmppgw"))).await {
                                relay.abort_upstream().await;
                                Flow::End(Outcome::ClientVanished)
                            } else {
                                Flow::Continue
                            }
                        }
                        _ = sleep_until(pong_deadline) => {
                            debug!("no pong in time");
                            // Treated like a vanished client: no </stream:stream>, so it can resume (CL-4).
                            relay.abort_upstream().await;
                            self.close_ws(close_code::POLICY, "no pong within the deadline").await;
                            Flow::End(Outcome::PongTimeout)
                        }
                        _ = &mut idle_timer, if relay.closing == Closing::No && idle_timeout.is_some() => {
                            let due = relay.last_activity + idle_timeout.unwrap_or_default();
                            if due > Instant::now() {
                                idle_timer.as_mut().reset(due);
                                continue;
                            }
                            debug!("idle timeout");
                            self.stream_error_and_close(&mut relay, StreamCondition::ConnectionTimeout, close_code::NORMAL).await;
                            Flow::End(Outcome::IdleTimeout)
                        }
                        read = upstream::read_into_splitter(&mut relay.io, &mut relay.splitter), if !relay.upstream_eof => match read {
                            Ok(0) | Err(_) => self.on_upstream_eof(&mut relay).await,
                            Ok(_) => Flow::Continue,
                        },
                        _ = sleep_until(deadline) => {
                            debug!(closing = ?relay.closing, "close timed out");
                            relay.finish_upstream(true).await;
                            self.close_ws(close_code::NORMAL, "close timed out").await;
                            Flow::End(Outcome::CloseTimeout)
                        }
                    }
                }
            };
            if let Flow::End(outcome) = flow {
                return outcome;
            }
            if relay.closing != Closing::No && relay.close_deadline.is_none() {
                relay.close_deadline = Some(Instant::now() + close_timeout);
            }
        }
    }

    async fn on_client_input(&mut self, relay: &mut Relay, input: ClientInput) -> Flow {
        match input {
            ClientInput::Text(text) => self.on_client_text(relay, text.as_str()).await,
            ClientInput::Gone => {
                debug!("client vanished without <close/>");
                // CL-4: no </stream:stream>, so a server with stream management can resume.
                relay.abort_upstream().await;
                Flow::End(Outcome::ClientVanished)
            }
            ClientInput::TooBig => {
                self.metrics().client_refused.with_label_values(&["too-big"]).inc();
                self.stream_error_and_close(relay, StreamCondition::PolicyViolation, close_code::MESSAGE_TOO_BIG).await;
                Flow::End(Outcome::ClientError)
            }
            ClientInput::Alive | ClientInput::Ping => Flow::Continue,
            ClientInput::Stalled => {
                // Like a vanished client: no </stream:stream>, so the session can be resumed.
                relay.abort_upstream().await;
                Flow::End(Outcome::ClientStalled)
            }
            ClientInput::Violation(code, reason) => {
                self.metrics().client_refused.with_label_values(&["websocket"]).inc();
                debug!(code, reason, "WebSocket violation");
                relay.finish_upstream(false).await;
                self.close_ws(code, reason).await;
                Flow::End(Outcome::ClientError)
            }
        }
    }

    async fn on_client_text(&mut self, relay: &mut Relay, text: &str) -> Flow {
        let limits = self.client_limits();
        let frame = match offload::check(text.len(), || client::classify(text, &limits)) {
            Ok(frame) => frame,
            Err(error) => {
                self.metrics().client_refused.with_label_values(&[error.reason_label()]).inc();
                debug!(%error, "client message refused");
                self.stream_error_and_close(relay, error.condition(), refusal_close_code(&error)).await;
                return Flow::End(Outcome::ClientError);
            }
        };
        match frame {
            ClientFrame::Open(request) => self.on_client_open(relay, request).await,
            ClientFrame::Close => match relay.closing {
                Closing::ByServer => {
                    relay.finish_upstream(true).await;
                    self.close_ws(close_code::NORMAL, "stream closed").await;
                    Flow::End(Outcome::Clean)
                }
                Closing::ByClient => Flow::Continue,
                Closing::No => {
                    if relay.write(framing::UPSTREAM_STREAM_END).await.is_err() {
                        return self.on_server_vanished(relay).await;
                    }
                    relay.closing = Closing::ByClient;
                    Flow::Continue
                }
            },
            ClientFrame::Element { .. } if relay.closing == Closing::ByClient => {
                // RFC 7395 §3.6: nothing may follow the client's own <close/>.
                self.stream_error_and_close(relay, StreamCondition::NotWellFormed, close_code::NORMAL).await;
                Flow::End(Outcome::ClientError)
            }
            ClientFrame::Element { kind: ClientElementKind::StartTls, .. } => {
                // TLS-7: answer as a server that did not offer STARTTLS; never relay it.
                self.send(framing::STARTTLS_FAILURE).await;
                self.send(framing::CLOSE).await;
                relay.finish_upstream(false).await;
                self.close_ws(close_code::NORMAL, "STARTTLS is not available over WebSocket").await;
                Flow::End(Outcome::ClientError)
            }
            ClientFrame::Element { kind: ClientElementKind::Compress, .. } => {
                // XEP-0138 is never offered; refuse without relaying.
                self.send(r#"<failure xmlns="http://jabber.org/protocol/compress"><setup-failed/></failure>"#).await;
                Flow::Continue
            }
            ClientFrame::Element { xml, kind } => {
                relay.restart_allowed = false;
                // Written out by the relay loop together with any other message already waiting.
                relay.queue(xml);
                self.metrics().relayed(TO_SERVER, xml.len());
                if kind == ClientElementKind::StreamError {
                    // ERR-6: the client ended the stream with an error; close our side of it.
                    let condition = offload::check(xml.len(), || client::stream_error_condition(xml));
                    self.metrics().stream_errors.with_label_values(&[condition.as_str(), "client"]).inc();
                    if relay.write(framing::UPSTREAM_STREAM_END).await.is_err() {
                        return self.on_server_vanished(relay).await;
                    }
                    if relay.closing == Closing::No {
                        relay.closing = Closing::ByClient;
                    }
                }
                Flow::Continue
            }
        }
    }

    async fn on_client_open(&mut self, relay: &mut Relay, request: OpenRequest) -> Flow {
        if !relay.restart_allowed || relay.closing != Closing::No {
            // D3: only a restart right after SASL <success/> is a valid second <open/>.
            self.metrics().client_refused.with_label_values(&["unexpected-open"]).inc();
            self.stream_error_and_close(relay, StreamCondition::BadFormat, close_code::NORMAL).await;
            return Flow::End(Outcome::ClientError);
        }
        let same_domain = request.to.as_deref().and_then(|to| crate::domain::normalize(to).ok());
        if same_domain.as_deref() != Some(relay.domain.as_str()) {
            // SASL-6: a restart cannot switch domains (TV-22).
            self.stream_error_and_close(relay, StreamCondition::HostUnknown, close_code::NORMAL).await;
            return Flow::End(Outcome::ClientError);
        }
        relay.restart_allowed = false;
        relay.awaiting_restart_header = true;
        relay.request = request;
        let header = framing::upstream_header(&relay.request, &relay.domain, true);
        if relay.write(&header).await.is_err() {
            return self.on_server_vanished(relay).await;
        }
        Flow::Continue
    }

    async fn on_server_event(&mut self, relay: &mut Relay, event: ServerEvent) -> Flow {
        match event {
            ServerEvent::Header(header) => {
                if !relay.awaiting_restart_header {
                    return self
                        .on_server_bad_xml(
                            relay,
                            crate::xml::error::XmlError::NotWellFormed("unexpected stream header"),
                        )
                        .await;
                }
                relay.awaiting_restart_header = false;
                relay.features_relayed = false;
                let open = framing::client_open(&header, &random_stream_id(), &self.lang);
                self.send_or_vanish(relay, &open).await
            }
            ServerEvent::Element(element) => {
                let text = match element.kind {
                    ServerElementKind::Features => {
                        relay.features_relayed = true;
                        framing::client_features(&element)
                    }
                    ServerElementKind::SaslSuccess => {
                        // RFC 6120 §6.4.6: the next thing from the server is a new stream header.
                        relay.splitter.expect_new_stream();
                        relay.restart_allowed = true;
                        element.xml
                    }
                    ServerElementKind::StreamError => {
                        let condition = element.error_condition.unwrap_or(StreamCondition::UndefinedCondition);
                        self.metrics().stream_errors.with_label_values(&[condition.as_str(), "server"]).inc();
                        if condition == StreamCondition::SeeOtherHost {
                            // D4: a TCP redirect means nothing to a WebSocket client; never relay it.
                            framing::client_stream_error(
                                StreamCondition::RemoteConnectionFailed,
                                Some("see-other-host"),
                            )
                        } else {
                            element.xml
                        }
                    }
                    _ => element.xml,
                };
                self.metrics().relayed(TO_CLIENT, text.len());
                self.feed_or_vanish(relay, text).await
            }
            ServerEvent::End => {
                if !self.send(framing::CLOSE).await {
                    relay.finish_upstream(true).await;
                    return Flow::End(Outcome::ClientVanished);
                }
                match relay.closing {
                    Closing::ByClient => {
                        relay.finish_upstream(false).await;
                        self.close_ws(close_code::NORMAL, "stream closed").await;
                        Flow::End(Outcome::Clean)
                    }
                    _ => {
                        relay.closing = Closing::ByServer;
                        Flow::Continue
                    }
                }
            }
        }
    }

    async fn on_server_bad_xml(&mut self, relay: &mut Relay, error: crate::xml::error::XmlError) -> Flow {
        warn!(%error, "server sent bad XML");
        let condition = error.condition();
        self.metrics().stream_errors.with_label_values(&[condition.as_str(), "gateway"]).inc();
        // ERR-4: tell the server what it did wrong, and the client that the server failed.
        let _ = relay.write(&framing::upstream_stream_error(condition)).await;
        relay.finish_upstream(true).await;
        let error_text =
            framing::client_stream_error(StreamCondition::RemoteConnectionFailed, Some("upstream-bad-xml"));
        self.send(&error_text).await;
        self.send(framing::CLOSE).await;
        self.close_ws(close_code::NORMAL, "upstream-bad-xml").await;
        Flow::End(Outcome::ServerError)
    }

    /// Ends a relaying session because the gateway drains: a redirect when configured
    /// (RFC 7395 §3.6.1), else `<system-shutdown/>` + `<close/>`; WebSocket close 1001. The
    /// upstream is closed without `</stream:stream>` so a client with stream management can
    /// resume through another gateway.
    async fn drain_relaying(&mut self, relay: &mut Relay) -> Flow {
        if let Some(uri) = self.gateway.config.shutdown.redirect_uri.clone() {
            self.send(&framing::close_see_other_uri(&uri)).await;
        } else {
            self.metrics()
                .stream_errors
                .with_label_values(&[StreamCondition::SystemShutdown.as_str(), "gateway"])
                .inc();
            self.send(&framing::client_stream_error(StreamCondition::SystemShutdown, None)).await;
            self.send(framing::CLOSE).await;
        }
        relay.abort_upstream().await;
        self.close_ws(close_code::GOING_AWAY, "gateway shutting down").await;
        Flow::End(Outcome::Drained)
    }

    /// Ends a session that has no stream yet because the gateway drains (TV-96).
    async fn drain_before_stream(&mut self, domain: &str) -> Outcome {
        if let Some(uri) = self.gateway.config.shutdown.redirect_uri.clone() {
            self.send(&framing::close_see_other_uri(&uri)).await;
            self.close_ws(close_code::GOING_AWAY, "gateway shutting down").await;
        } else {
            self.metrics()
                .stream_errors
                .with_label_values(&[StreamCondition::SystemShutdown.as_str(), "gateway"])
                .inc();
            let open = framing::gateway_open(domain, &random_stream_id(), &self.lang);
            if self.send(&open).await
                && self.send(&framing::client_stream_error(StreamCondition::SystemShutdown, None)).await
            {
                self.send(framing::CLOSE).await;
            }
            self.close_ws(close_code::GOING_AWAY, "gateway shutting down").await;
        }
        Outcome::Drained
    }

    /// The upstream read side ended (EOF or error).
    async fn on_upstream_eof(&mut self, relay: &mut Relay) -> Flow {
        match relay.closing {
            // TV-92: the server may half-close after its </stream:stream>; keep relaying the
            // client's last stanzas and its <close/> into the still writable socket.
            Closing::ByServer => {
                relay.upstream_eof = true;
                Flow::Continue
            }
            // We already sent </stream:stream>; the server hung up instead of answering in kind.
            // The stream is over either way: end it cleanly towards the client.
            Closing::ByClient => {
                relay.abort_upstream().await;
                self.send(framing::CLOSE).await;
                self.close_ws(close_code::NORMAL, "stream closed").await;
                Flow::End(Outcome::Clean)
            }
            Closing::No => self.on_server_vanished(relay).await,
        }
    }

    async fn on_server_vanished(&mut self, relay: &mut Relay) -> Flow {
        debug!("upstream lost without </stream:stream>");
        relay.abort_upstream().await;
        // D5: no <close/>, so a client with stream management can resume.
        self.close_ws(close_code::BAD_GATEWAY, "upstream connection lost").await;
        Flow::End(Outcome::ServerVanished)
    }

    /// Queues one message for the client without writing it yet (the relay loop flushes once
    /// the splitter has nothing more, so one upstream read becomes one client write).
    /// Takes the text by value: it becomes the message's payload without a copy.
    async fn feed_or_vanish(&mut self, relay: &mut Relay, text: String) -> Flow {
        self.unflushed = true;
        if self.within_send_deadline(SinkOp::Feed(Message::Text(text.into()))).await {
            Flow::Continue
        } else {
            relay.abort_upstream().await;
            Flow::End(Outcome::ClientVanished)
        }
    }

    /// Writes out the messages queued by [`Self::feed_or_vanish`].
    async fn flush_or_vanish(&mut self, relay: &mut Relay) -> Flow {
        self.unflushed = false;
        if self.within_send_deadline(SinkOp::Flush).await {
            Flow::Continue
        } else {
            relay.abort_upstream().await;
            Flow::End(Outcome::ClientVanished)
        }
    }

    async fn send_or_vanish(&mut self, relay: &mut Relay, text: &str) -> Flow {
        if self.send(text).await {
            Flow::Continue
        } else {
            relay.abort_upstream().await;
            Flow::End(Outcome::ClientVanished)
        }
    }

    /// A gateway-made error inside an open stream: `<stream:error>` + `<close/>` to the client,
    /// a plain `</stream:stream>` upstream (ERR-3), then the WebSocket close.
    async fn stream_error_and_close(&mut self, relay: &mut Relay, condition: StreamCondition, code: u16) {
        self.metrics().stream_errors.with_label_values(&[condition.as_str(), "gateway"]).inc();
        self.send(&framing::client_stream_error(condition, None)).await;
        self.send(framing::CLOSE).await;
        relay.finish_upstream(true).await;
        self.close_ws(code, condition.as_str()).await;
    }

    /// A gateway-made error before any server header reached the client (ERR-2):
    /// `<open/>` + `<stream:error>` + `<close/>`, then the WebSocket close (D6).
    async fn refuse_before_stream(&mut self, from: &str, condition: StreamCondition, text: Option<&str>, code: u16) {
        self.metrics().stream_errors.with_label_values(&[condition.as_str(), "gateway"]).inc();
        let open = framing::gateway_open(from, &random_stream_id(), &self.lang);
        let error = framing::client_stream_error(condition, text);
        if self.send(&open).await && self.send(&error).await {
            self.send(framing::CLOSE).await;
        }
        self.close_ws(code, text.unwrap_or(condition.as_str())).await;
    }

    /// Ends a session whose client input was not a text message (before the relay started).
    async fn end_on_ws_input(&mut self, input: ClientInput, domain: Option<&str>) -> Outcome {
        match input {
            ClientInput::Text(_) | ClientInput::Gone | ClientInput::Alive | ClientInput::Ping => {
                Outcome::ClientVanished
            }
            // Nothing more is sent to a client that does not read, not even a Close frame.
            ClientInput::Stalled => Outcome::ClientStalled,
            ClientInput::TooBig => {
                self.metrics().client_refused.with_label_values(&["too-big"]).inc();
                self.refuse_before_stream(
                    domain.unwrap_or(""),
                    StreamCondition::PolicyViolation,
                    None,
                    close_code::MESSAGE_TOO_BIG,
                )
                .await;
                Outcome::ClientError
            }
            ClientInput::Violation(code, reason) => {
                self.metrics().client_refused.with_label_values(&["websocket"]).inc();
                self.close_ws(code, reason).await;
                Outcome::ClientError
            }
        }
    }

    /// Sends one text message (and any queued before it); false when the client is gone or
    /// stopped reading.
    async fn send(&mut self, text: &str) -> bool {
        self.send_message(Message::Text(text.into())).await
    }

    /// Sends one message (and any queued before it) within the send deadline: a client that
    /// does not take a message within a ping interval plus the pong deadline is treated as gone,
    /// so a client that stopped reading cannot hold its session (and its upstream) forever.
    async fn send_message(&mut self, message: Message) -> bool {
        self.unflushed = false;
        self.within_send_deadline(SinkOp::Send(message)).await
    }

    /// Runs one WebSocket write (send, feed or flush) under the send deadline.
    async fn within_send_deadline(&mut self, op: SinkOp) -> bool {
        if self.client_stalled {
            return false;
        }
        let limits = &self.gateway.config.limits;
        let deadline = limits.ping_interval() + limits.pong_timeout();
        let result = match op {
            SinkOp::Send(message) => tokio::time::timeout(deadline, self.ws.send(message)).await,
            SinkOp::Feed(message) => tokio::time::timeout(deadline, self.ws.feed(message)).await,
            SinkOp::Flush => tokio::time::timeout(deadline, self.ws.flush()).await,
        };
        match result {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                if is_write_buffer_full(&error) {
                    debug!("client stopped reading (write buffer full)");
                    self.client_stalled = true;
                }
                false
            }
            Err(_) => {
                debug!("client stopped reading");
                self.client_stalled = true;
                false
            }
        }
    }

    /// Sends a WebSocket Close and waits briefly for the client's answer (RFC 6455 §5.5.1).
    async fn close_ws(&mut self, code: u16, reason: &str) {
        let reason = truncate_reason(reason);
        if self.client_stalled {
            return;
        }
        let frame = CloseFrame { code, reason: reason.into() };
        if !self.send_message(Message::Close(Some(frame))).await {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(message)) = self.ws.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
