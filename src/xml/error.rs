//! The XML layer's one error type: why a client message or the server's stream was refused,
//! with the one mapping to the stream error condition that answers it (ERR-3, ERR-4) and to
//! the bounded `reason` label of `xmppgw_client_elements_refused_total`.
//!
//! Both directions share it: the same checks ([`super::wf`]) run on client messages and on
//! server elements, so the same refusal means the same condition whichever side sent it.

use super::condition::StreamCondition;

/// Why XML was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed or not namespace-well-formed: a partial element, several elements, text
    /// or whitespace outside the element, an undeclared prefix, mismatched tags, a forbidden
    /// character, invalid UTF-8 (XML-2, XML-5).
    #[error("not well-formed: {0}")]
    NotWellFormed(&'static str),
    /// A DTD, comment, processing instruction or undefined entity (RFC 6120 §11.1, XML-1).
    #[error("restricted XML: {0}")]
    RestrictedXml(&'static str),
    /// `<open/>` or `<close/>` outside the framing namespace, a legacy `<stream:stream>` from a
    /// client, or a server stream header that is not `stream` in the stream namespace.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(&'static str),
    /// An XML declaration naming an encoding other than UTF-8 (XML-3).
    #[error("unsupported encoding")]
    UnsupportedEncoding,
    /// A server element or stream header over its size limit (LIM-3).
    #[error("element over the size limit")]
    TooLarge,
    /// Nesting deeper than the limit.
    #[error("element nesting too deep")]
    TooDeep,
    /// A start tag with more attributes than the limit (namespace declarations included).
    #[error("too many attributes on one element")]
    TooManyAttributes,
    /// A start tag with more namespace declarations than the limit.
    #[error("too many namespace declarations on one element")]
    TooManyNamespaceDeclarations,
}

impl XmlError {
    /// The stream error condition that answers this refusal: to the client for its own
    /// messages (ERR-3), to the server for its stream (ERR-4).
    pub fn condition(self) -> StreamCondition {
        match self {
            XmlError::NotWellFormed(_) => StreamCondition::NotWellFormed,
            XmlError::RestrictedXml(_) => StreamCondition::RestrictedXml,
            XmlError::InvalidNamespace(_) => StreamCondition::InvalidNamespace,
            XmlError::UnsupportedEncoding => StreamCondition::UnsupportedEncoding,
            XmlError::TooLarge
            | XmlError::TooDeep
            | XmlError::TooManyAttributes
            | XmlError::TooManyNamespaceDeclarations => StreamCondition::PolicyViolation,
        }
    }

    /// A short, bounded label for metrics (`xmppgw_client_elements_refused_total{reason}`).
    pub fn reason_label(self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::UnsupportedEncoding => "unsupported-encoding",
            XmlError::TooLarge => "too-big",
            XmlError::TooDeep => "too-deep",
            XmlError::TooManyAttributes => "too-many-attributes",
            XmlError::TooManyNamespaceDeclarations => "too-many-namespace-declarations",
        }
    }

    /// Whether a limit refused the XML (a policy, not a syntax error): the WebSocket close
    /// code is then 1008 rather than 1000 (PROTOCOL.md section J).
    pub fn is_limit(self) -> bool {
        self.condition() == StreamCondition::PolicyViolation
    }
}
