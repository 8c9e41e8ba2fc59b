//! Every way a session ends, in one table ([`ROWS`], in `table`), and the one function that
//! turns an [`Ending`] into actions ([`farewell`]).
//!
//! A row says, for one kind of ending: the outcome label, what the client is sent, what the
//! upstream gets, the WebSocket close code and reason, and which counters move. Two rules apply
//! to every row, so the rows need not repeat them:
//! - before the stream is open (the client has had no server `<open/>` yet), a `<stream:error>`
//!   is preceded by the gateway's own `<open/>` (ERR-2), and the upstream connection being set
//!   up, if any, is discarded whatever the row says about the upstream;
//! - client elements already batched for the server are written before the upstream is closed,
//!   and `</stream:stream>` goes up at most once (nothing, not even a stream error, after it).
//!
//! docs/OPERATIONS.md quotes the table as rendered by [`markdown_table`]; a unit test keeps the
//! two equal. This module decides nothing about when a session ends; the states do.

mod markdown;
mod table;

pub use markdown::markdown_table;
pub use table::*;

use crate::upstream::FailureClass;
use crate::xml::condition::StreamCondition;
use crate::xml::error::XmlError;
use crate::xml::framing;

use super::super::outcome::{close_code, refusal_close_code, truncate_reason, Outcome};
use super::events::{Action, Count, Side, UpstreamClose};

/// How a session ended. Each variant is one row of [`ROWS`]; the fields are what the row's
/// placeholders stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// No `<open/>` in time.
    OpenTimeout,
    /// The first message is `<close/>`.
    CloseBeforeOpen,
    /// The first message is an element other than `<open/>` (FR-2).
    NotOpen,
    /// The XML core refused a client message.
    Refused(XmlError),
    /// `<open/>` without a usable `to`.
    NoDomain,
    /// The domain is not served (D17).
    DomainNotServed {
        /// The failure class.
        class: FailureClass,
    },
    /// Too many messages (or bytes) queued before the stream was open (LIM-4).
    QueueFull,
    /// No route could be reached or secured (D6).
    UpstreamFailed {
        /// The failure class of the last route.
        class: FailureClass,
    },
    /// A client message over the element limit (LIM-2).
    TooBig,
    /// A WebSocket protocol violation.
    WebSocketViolation {
        /// The close code it deserves.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
    /// The client went away without `<close/>` (CL-4).
    ClientVanished,
    /// The client stopped reading.
    ClientStalled,
    /// The gateway drains (no redirect configured).
    Drained,
    /// The gateway drains and sends clients elsewhere (RFC 7395 §3.6.1).
    Redirected,
    /// An `<open/>` that is not a restart after SASL success (D3).
    UnexpectedOpen,
    /// A restart naming another domain (SASL-6).
    RestartElsewhere,
    /// A client element after its own `<close/>`.
    ElementAfterClose,
    /// The client asked for STARTTLS (TLS-7).
    ClientStartTls,
    /// Both sides closed the stream.
    Closed,
    /// Both sides closed, the server's end following its `<stream:error>` (ERR-1).
    ClosedAfterServerError {
        /// The server's condition.
        condition: StreamCondition,
    },
    /// The other side did not finish the close in time.
    CloseTimeout,
    /// The server sent XML the gateway refuses (ERR-4, LIM-3).
    ServerBadXml(XmlError),
    /// The upstream connection ended without `</stream:stream>` (D5).
    ServerVanished,
    /// No pong in time.
    PongTimeout,
    /// No stanza either way for the idle timeout.
    IdleTimeout,
}
impl Ending {
    /// The position of this ending's row in [`ROWS`]. The match has no wildcard, so a new
    /// variant cannot compile without a row.
    pub fn index(&self) -> usize {
        match self {
            Ending::OpenTimeout => 0,
            Ending::CloseBeforeOpen => 1,
            Ending::NotOpen => 2,
            Ending::Refused(_) => 3,
            Ending::NoDomain => 4,
            Ending::DomainNotServed { .. } => 5,
            Ending::QueueFull => 6,
            Ending::UpstreamFailed { .. } => 7,
            Ending::TooBig => 8,
            Ending::WebSocketViolation { .. } => 9,
            Ending::ClientVanished => 10,
            Ending::ClientStalled => 11,
            Ending::Drained => 12,
            Ending::Redirected => 13,
            Ending::UnexpectedOpen => 14,
            Ending::RestartElsewhere => 15,
            Ending::ElementAfterClose => 16,
            Ending::ClientStartTls => 17,
            Ending::Closed => 18,
            Ending::ClosedAfterServerError { .. } => 19,
            Ending::CloseTimeout => 20,
            Ending::ServerBadXml(_) => 21,
            Ending::ServerVanished => 22,
            Ending::PongTimeout => 23,
            Ending::IdleTimeout => 24,
        }
    }

    /// This ending's row.
    pub fn row(&self) -> &'static Row {
        &ROWS[self.index()]
    }

    /// The outcome label.
    pub fn outcome(&self) -> Outcome {
        self.row().outcome
    }

    fn class(&self) -> &'static str {
        match self {
            Ending::DomainNotServed { class } | Ending::UpstreamFailed { class } => class.class(),
            _ => "",
        }
    }

    fn condition(&self, cond: Cond) -> StreamCondition {
        match (cond, self) {
            (Cond::Is(condition), _) => condition,
            (Cond::OfRefusal, Ending::Refused(error)) => error.condition(),
            (Cond::OfServerFault, Ending::ServerBadXml(error)) => error.condition(),
            // The table pairs these placeholders only with their endings (tested).
            _ => StreamCondition::InternalServerError,
        }
    }

    fn close_frame(&self) -> Option<(u16, &'static str)> {
        let (code, reason) = self.row().websocket?;
        let code = match (code, self) {
            (Code::Is(code), _) => code,
            (Code::OfRefusal, Ending::Refused(error)) => refusal_close_code(error),
            (Code::OfViolation, Ending::WebSocketViolation { code, .. }) => *code,
            _ => close_code::NORMAL,
        };
        let reason = match (reason, self) {
            (Reason::Is(text), _) => text,
            (Reason::Condition, _) => match self.row().client {
                ToClient::Error { condition, .. } => self.condition(condition).as_str(),
                _ => "",
            },
            (Reason::Class, _) => self.class(),
            (Reason::OfViolation, Ending::WebSocketViolation { reason, .. }) => reason,
            (Reason::OfViolation, _) => "",
        };
        Some((code, truncate_reason(reason)))
    }
}

/// Where the session stood when it ended, as far as its farewell is concerned.
pub enum Site<'a> {
    /// No server `<open/>` reached the client yet.
    BeforeStream {
        /// `from` of the gateway's `<open/>`: the domain when known, else empty (ERR-2).
        from: &'a str,
        /// A connection is being set up (or a connect is in flight) and must be discarded.
        connection: bool,
    },
    /// The stream is open.
    InStream {
        /// Client elements batched for the server, written before the close.
        batched: Vec<u8>,
        /// `</stream:stream>` already went upstream.
        end_sent: bool,
    },
}

/// What a farewell needs besides the ending and the site: the stream id and language of a
/// gateway-made `<open/>`, and the drain redirect.
pub struct Voice<'a> {
    /// `id` of a gateway-made `<open/>`.
    pub stream_id: &'a str,
    /// `xml:lang` of a gateway-made `<open/>`.
    pub lang: &'a str,
    /// `shutdown.redirect_uri`.
    pub redirect_uri: Option<&'a str>,
}

/// The actions that end a session with `ending`, in order: counters, client messages, upstream
/// bytes and close, WebSocket close, [`Action::Done`].
pub fn farewell(ending: &Ending, site: Site<'_>, voice: &Voice<'_>, out: &mut impl Extend<Action>) {
    let row = ending.row();
    let mut actions = Vec::with_capacity(8);
    match row.refused {
        Some(Refusal::Is(label)) => actions.push(Action::Count(Count::ClientRefused(label))),
        Some(Refusal::OfRefusal) => {
            if let Ending::Refused(error) = ending {
                actions.push(Action::Count(Count::ClientRefused(error.reason_label())));
            }
        }
        None => {}
    }
    if let (true, Ending::DomainNotServed { class } | Ending::UpstreamFailed { class }) = (row.connect_failure, ending)
    {
        actions.push(Action::Count(Count::ConnectFailure(*class)));
    }
    if let Some(cond) = row.gateway_error {
        let condition = ending.condition(cond);
        actions.push(Action::Count(Count::StreamError { condition, side: Side::Gateway }));
    }
    let stream_open = matches!(site, Site::InStream { .. });
    match row.client {
        ToClient::Nothing => {}
        ToClient::Close => actions.push(Action::ToClient(framing::CLOSE.to_string())),
        ToClient::Error { condition, text } => {
            if let Site::BeforeStream { from, .. } = site {
                actions.push(Action::ToClient(framing::gateway_open(from, voice.stream_id, voice.lang)));
            }
            let text = match text {
                Text::None => None,
                Text::Class => Some(ending.class()),
                Text::Is(text) => Some(text),
            };
            actions.push(Action::ToClient(framing::client_stream_error(ending.condition(condition), text)));
            actions.push(Action::ToClient(framing::CLOSE.to_string()));
        }
        ToClient::StartTlsFailure => {
            actions.push(Action::ToClient(framing::STARTTLS_FAILURE.to_string()));
            actions.push(Action::ToClient(framing::CLOSE.to_string()));
        }
        ToClient::SeeOtherUri => {
            actions.push(Action::ToClient(framing::close_see_other_uri(voice.redirect_uri.unwrap_or_default())));
        }
    }
    match site {
        Site::BeforeStream { connection: true, .. } => actions.push(Action::CloseUpstream(UpstreamClose::Discard)),
        Site::BeforeStream { connection: false, .. } => {}
        Site::InStream { mut batched, end_sent } => {
            let close = match row.upstream {
                ToUpstream::Abort => UpstreamClose::Abort,
                ToUpstream::Nothing | ToUpstream::Discard => UpstreamClose::Discard,
                ToUpstream::Finish => UpstreamClose::Finish,
                ToUpstream::FinishWithStreamEnd | ToUpstream::ErrorThenStreamEnd => {
                    if !end_sent {
                        if row.upstream == ToUpstream::ErrorThenStreamEnd {
                            let condition = ending.condition(Cond::OfServerFault);
                            batched.extend_from_slice(framing::upstream_stream_error(condition).as_bytes());
                        }
                        batched.extend_from_slice(framing::UPSTREAM_STREAM_END.as_bytes());
                    }
                    UpstreamClose::Finish
                }
            };
            if !batched.is_empty() {
                actions.push(Action::ToServer(batched));
            }
            actions.push(Action::CloseUpstream(close));
        }
    }
    if let Some((code, reason)) = ending.close_frame() {
        actions.push(Action::CloseClient { code, reason });
    }
    actions.push(Action::Done(row.outcome));
    debug_assert!(stream_open || row.phase != Phase::InStream, "{} before the stream", row.name);
    debug_assert!(!stream_open || row.phase != Phase::BeforeStream, "{} in the stream", row.name);
    out.extend(actions);
}
