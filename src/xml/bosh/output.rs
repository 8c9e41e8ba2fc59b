//! What one message of the session core to its client is, for the BOSH connection manager:
//! the core writes RFC 7395 framing (`<open/>`, `<close/>`) and stream errors as for a
//! WebSocket, and BOSH carries them as attributes of `<body/>` instead (XEP-0206 §3, §6).
//! Only the start tag of `<open/>`/`<close/>` is read; a stream error is classified by the
//! same checker as a client message.

use super::super::checker::{Checker, Progress, Unit, WfLimits};
use super::super::client::{classify, ClientElementKind, ClientFrame, ClientLimits};
use super::super::condition::StreamCondition;
use super::super::NS_FRAMING;

/// One message of the core to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreOutput {
    /// The reply `<open/>`: the stream's `from`, `id` and `version`.
    Open {
        /// `from`.
        from: Option<String>,
        /// `id`.
        id: Option<String>,
        /// `version`.
        version: Option<String>,
    },
    /// `<close/>`, with its `see-other-uri` if any.
    Close {
        /// `see-other-uri`.
        see_other_uri: Option<String>,
    },
    /// `<stream:error>` with this condition.
    StreamError(StreamCondition),
    /// Anything else: carried as a child of a response body.
    Element,
}

const HEADER_LIMITS: WfLimits = WfLimits { max_depth: 1, max_attributes: 64, max_namespace_declarations: 32 };

/// What `text` (one message of the core) is.
pub fn core_output(text: &str) -> CoreOutput {
    if text.starts_with("<open") || text.starts_with("<close") {
        let mut checker = Checker::new(HEADER_LIMITS, Unit::Header);
        checker.reset(Unit::Header);
        if checker.advance(text.as_bytes(), None) == Ok(Progress::Done) && checker.root_ns(None) == Some(NS_FRAMING) {
            let wanted = ["from", "id", "version", "see-other-uri"];
            if let Ok((attrs, _)) = checker.root_attrs(text, &wanted, false) {
                let get = |name: &str| attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
                return match checker.root_local(text) {
                    "open" => CoreOutput::Open { from: get("from"), id: get("id"), version: get("version") },
                    "close" => CoreOutput::Close { see_other_uri: get("see-other-uri") },
                    _ => CoreOutput::Element,
                };
            }
        }
    }
    if text.starts_with("<stream:error") {
        if let Ok(ClientFrame::Element { kind: ClientElementKind::StreamError { condition }, .. }) =
            classify(text, &ClientLimits::default())
        {
            return CoreOutput::StreamError(condition);
        }
    }
    CoreOutput::Element
}

/// The XEP-0124 §17.2 terminal condition that stands for a stream error of the same meaning
/// (the failure classes of the WebSocket side); `None`: `remote-stream-error`, with the
/// `<stream:error/>` as the body's child.
pub fn terminal_condition(condition: StreamCondition) -> Option<&'static str> {
    match condition {
        StreamCondition::HostUnknown => Some("host-unknown"),
        StreamCondition::HostGone => Some("host-gone"),
        StreamCondition::ImproperAddressing => Some("improper-addressing"),
        StreamCondition::RemoteConnectionFailed => Some("remote-connection-failed"),
        StreamCondition::SystemShutdown => Some("system-shutdown"),
        StreamCondition::PolicyViolation => Some("policy-violation"),
        _ => None,
    }
}
