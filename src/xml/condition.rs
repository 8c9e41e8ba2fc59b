//! The RFC 6120 §4.9.3 stream error conditions, as one type: the ones the gateway sends, and
//! the bounded set a received condition is counted under (anything else is
//! `undefined-condition`, §4.9.2).
//!
//! Only names live here; serialising a `<stream:error>` is [`super::framing`]'s job.

/// A defined stream error condition (RFC 6120 §4.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCondition {
    /// `<bad-format/>`: e.g. an unexpected second `<open/>` (D3).
    BadFormat,
    /// `<bad-namespace-prefix/>`.
    BadNamespacePrefix,
    /// `<conflict/>`: e.g. a new session replaced this one.
    Conflict,
    /// `<connection-timeout/>`: no `<open/>` in time, or an idle session.
    ConnectionTimeout,
    /// `<host-gone/>`.
    HostGone,
    /// `<host-unknown/>`: `to` missing, not allowed, or an IP literal (D17).
    HostUnknown,
    /// `<improper-addressing/>`.
    ImproperAddressing,
    /// `<internal-server-error/>`.
    InternalServerError,
    /// `<invalid-from/>`.
    InvalidFrom,
    /// `<invalid-namespace/>`: `<open/>`/`<close/>` outside the framing namespace (FR-1).
    InvalidNamespace,
    /// `<invalid-xml/>`.
    InvalidXml,
    /// `<not-authorized/>`.
    NotAuthorized,
    /// `<not-well-formed/>`: XML that is not (namespace-)well-formed (XML-2, D2).
    NotWellFormed,
    /// `<policy-violation/>`: a size, depth, attribute or queue limit (D10, LIM-2..LIM-4).
    PolicyViolation,
    /// `<remote-connection-failed/>`: the upstream could not be reached or secured (D6).
    RemoteConnectionFailed,
    /// `<reset/>`.
    Reset,
    /// `<resource-constraint/>`.
    ResourceConstraint,
    /// `<restricted-xml/>`: comments, processing instructions, DTDs, undefined entities (XML-1).
    RestrictedXml,
    /// `<see-other-host/>`: a TCP redirect (D4).
    SeeOtherHost,
    /// `<system-shutdown/>`: the gateway or the server is shutting down.
    SystemShutdown,
    /// `<undefined-condition/>`: also what any condition outside this list counts as.
    UndefinedCondition,
    /// `<unsupported-encoding/>`: an XML declaration naming anything but UTF-8 (XML-3).
    UnsupportedEncoding,
    /// `<unsupported-feature/>`.
    UnsupportedFeature,
    /// `<unsupported-stanza-type/>`.
    UnsupportedStanzaType,
    /// `<unsupported-version/>`.
    UnsupportedVersion,
}

impl StreamCondition {
    /// Every defined condition, in the RFC's (alphabetical) order.
    pub const ALL: [StreamCondition; 25] = [
        StreamCondition::BadFormat,
        StreamCondition::BadNamespacePrefix,
        StreamCondition::Conflict,
        StreamCondition::ConnectionTimeout,
        StreamCondition::HostGone,
        StreamCondition::HostUnknown,
        StreamCondition::ImproperAddressing,
        StreamCondition::InternalServerError,
        StreamCondition::InvalidFrom,
        StreamCondition::InvalidNamespace,
        StreamCondition::InvalidXml,
        StreamCondition::NotAuthorized,
        StreamCondition::NotWellFormed,
        StreamCondition::PolicyViolation,
        StreamCondition::RemoteConnectionFailed,
        StreamCondition::Reset,
        StreamCondition::ResourceConstraint,
        StreamCondition::RestrictedXml,
        StreamCondition::SeeOtherHost,
        StreamCondition::SystemShutdown,
        StreamCondition::UndefinedCondition,
        StreamCondition::UnsupportedEncoding,
        StreamCondition::UnsupportedFeature,
        StreamCondition::UnsupportedStanzaType,
        StreamCondition::UnsupportedVersion,
    ];

    /// The element name of the condition, e.g. `"not-well-formed"`; also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCondition::BadFormat => "bad-format",
            StreamCondition::BadNamespacePrefix => "bad-namespace-prefix",
            StreamCondition::Conflict => "conflict",
            StreamCondition::ConnectionTimeout => "connection-timeout",
            StreamCondition::HostGone => "host-gone",
            StreamCondition::HostUnknown => "host-unknown",
            StreamCondition::ImproperAddressing => "improper-addressing",
            StreamCondition::InternalServerError => "internal-server-error",
            StreamCondition::InvalidFrom => "invalid-from",
            StreamCondition::InvalidNamespace => "invalid-namespace",
            StreamCondition::InvalidXml => "invalid-xml",
            StreamCondition::NotAuthorized => "not-authorized",
            StreamCondition::NotWellFormed => "not-well-formed",
            StreamCondition::PolicyViolation => "policy-violation",
            StreamCondition::RemoteConnectionFailed => "remote-connection-failed",
            StreamCondition::Reset => "reset",
            StreamCondition::ResourceConstraint => "resource-constraint",
            StreamCondition::RestrictedXml => "restricted-xml",
            StreamCondition::SeeOtherHost => "see-other-host",
            StreamCondition::SystemShutdown => "system-shutdown",
            StreamCondition::UndefinedCondition => "undefined-condition",
            StreamCondition::UnsupportedEncoding => "unsupported-encoding",
            StreamCondition::UnsupportedFeature => "unsupported-feature",
            StreamCondition::UnsupportedStanzaType => "unsupported-stanza-type",
            StreamCondition::UnsupportedVersion => "unsupported-version",
        }
    }

    /// The condition an element named `name` (in the stream-errors namespace) stands for:
    /// anything outside the defined list is `undefined-condition` (RFC 6120 §4.9.2), so the
    /// result is a bounded set, safe as a metric label.
    pub fn from_name(name: &str) -> StreamCondition {
        StreamCondition::ALL
            .into_iter()
            .find(|condition| condition.as_str() == name)
            .unwrap_or(StreamCondition::UndefinedCondition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_anything_else_is_undefined() {
        for condition in StreamCondition::ALL {
            assert_eq!(StreamCondition::from_name(condition.as_str()), condition);
        }
        let mut names: Vec<&str> = StreamCondition::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StreamCondition::ALL.len());
        for other in ["", "Conflict", "x-custom", "conflict "] {
            assert_eq!(StreamCondition::from_name(other), StreamCondition::UndefinedCondition);
        }
    }
}
