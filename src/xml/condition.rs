//! RFC 6120 §4.9.3 stream error conditions that the gateway itself produces or must recognise.
//!
//! Only names live here; serialising a `<stream:error>` is [`super::framing`]'s job.

/// A defined stream error condition (RFC 6120 §4.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamCondition {
    /// `<bad-format/>`: e.g. an unexpected second `<open/>` (DECISIONS D3).
    BadFormat,
    /// `<host-unknown/>`: `to` missing, not allowed, or an IP literal (D17).
    HostUnknown,
    /// `<invalid-namespace/>`: `<open/>`/`<close/>` outside the framing namespace (FR-1).
    InvalidNamespace,
    /// `<not-well-formed/>`: XML that is not (namespace-)well-formed (XML-2, D2).
    NotWellFormed,
    /// `<policy-violation/>`: an element over the size limit (D10).
    PolicyViolation,
    /// `<remote-connection-failed/>`: the upstream could not be reached or secured (D6).
    RemoteConnectionFailed,
    /// `<restricted-xml/>`: comments, processing instructions, DTDs, undefined entities (XML-1).
    RestrictedXml,
    /// `<system-shutdown/>`: the gateway is shutting down.
    SystemShutdown,
    /// `<unsupported-encoding/>`: an XML declaration naming anything but UTF-8 (D16).
    UnsupportedEncoding,
    /// `<unsupported-stanza-type/>`.
    UnsupportedStanzaType,
    /// `<connection-timeout/>`: the client never sent `<open/>` in time.
    ConnectionTimeout,
    /// `<internal-server-error/>`.
    InternalServerError,
}

impl StreamCondition {
    /// The element name of the condition, e.g. `"not-well-formed"`; also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCondition::BadFormat => "bad-format",
            StreamCondition::HostUnknown => "host-unknown",
            StreamCondition::InvalidNamespace => "invalid-namespace",
            StreamCondition::NotWellFormed => "not-well-formed",
            StreamCondition::PolicyViolation => "policy-violation",
            StreamCondition::RemoteConnectionFailed => "remote-connection-failed",
            StreamCondition::RestrictedXml => "restricted-xml",
            StreamCondition::SystemShutdown => "system-shutdown",
            StreamCondition::UnsupportedEncoding => "unsupported-encoding",
            StreamCondition::UnsupportedStanzaType => "unsupported-stanza-type",
            StreamCondition::ConnectionTimeout => "connection-timeout",
            StreamCondition::InternalServerError => "internal-server-error",
        }
    }
}
