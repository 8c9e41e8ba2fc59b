//! What the splitter is configured with and what it produces: its limits, the stream header,
//! the elements and the events. Data only; the lexer is in the parent module.

use super::super::checker::WfLimits;
use super::super::condition::StreamCondition;
use super::super::picked::Picked;
use super::super::{DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_NAMESPACE_DECLARATIONS};

/// Bounds on what a server can make the splitter buffer.
#[derive(Debug, Clone, Copy)]
pub struct SplitterLimits {
    /// Maximum size in bytes of one top-level element, from `<` to the final `>` (DECISIONS D10).
    pub max_element_bytes: usize,
    /// Maximum size of the stream header start tag (and XML declaration before it).
    pub max_header_bytes: usize,
    /// Maximum element nesting depth inside a top-level element.
    pub max_depth: usize,
    /// Maximum attributes on one start tag (the header's included), namespace declarations
    /// included.
    pub max_attributes: usize,
    /// Maximum namespace declarations on one start tag (the header's included).
    pub max_namespace_declarations: usize,
}

impl Default for SplitterLimits {
    fn default() -> Self {
        SplitterLimits {
            max_element_bytes: 256 * 1024,
            max_header_bytes: 8 * 1024,
            max_depth: 1_000,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations: DEFAULT_MAX_NAMESPACE_DECLARATIONS,
        }
    }
}

impl SplitterLimits {
    pub(super) fn wf(&self) -> WfLimits {
        WfLimits {
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_namespace_declarations: self.max_namespace_declarations,
        }
    }
}

/// The attributes of a server's stream header that the client's `<open/>` repeats (its namespace
/// declarations stay with the splitter, which completes elements with them): `from`, `to`,
/// `id`, `version` and `xml:lang`, unescaped, in one string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StreamHeader(Picked<5>);

impl StreamHeader {
    /// The attributes kept.
    pub const NAMES: [&'static str; 5] = ["from", "to", "id", "version", "xml:lang"];

    /// A header with the values of `attrs` whose names are among [`Self::NAMES`] (others are
    /// ignored).
    pub fn new<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> StreamHeader {
        StreamHeader(Picked::new(&Self::NAMES, attrs))
    }

    /// Where `name`'s value goes among [`Self::NAMES`], if it is kept.
    pub(super) fn slot(name: &str) -> Option<usize> {
        Picked::slot(&Self::NAMES, name)
    }

    /// A header with the values by slot (see [`Self::slot`]).
    pub(super) fn from_slots(values: [Option<&str>; 5]) -> StreamHeader {
        StreamHeader(Picked::from_slots(values))
    }

    fn value(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }

    /// `from`.
    pub fn from(&self) -> Option<&str> {
        self.value(0)
    }

    /// `to`.
    pub fn to(&self) -> Option<&str> {
        self.value(1)
    }

    /// `id`.
    pub fn id(&self) -> Option<&str> {
        self.value(2)
    }

    /// `version`.
    pub fn version(&self) -> Option<&str> {
        self.value(3)
    }

    /// `xml:lang`.
    pub fn lang(&self) -> Option<&str> {
        self.value(4)
    }
}

impl std::fmt::Debug for StreamHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_named("StreamHeader", &Self::NAMES, f)
    }
}

/// What a complete top-level server element is, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerElementKind {
    /// `<features/>` in the stream namespace.
    Features,
    /// `<error/>` in the stream namespace.
    StreamError,
    /// `<proceed/>` in the TLS namespace.
    TlsProceed,
    /// `<failure/>` in the TLS namespace.
    TlsFailure,
    /// `<success/>` in the RFC 6120 SASL namespace (a stream restart follows).
    SaslSuccess,
    /// Anything else, including SASL2 `<success/>` (no restart, XEP-0388).
    Other,
}

/// One complete top-level element from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerElement {
    /// The element as a standalone XML document: its original bytes, with the namespace
    /// declarations inherited from the stream header added to the start tag and, for elements in
    /// the stream namespace, the prefix normalised to `stream:` (NS-3).
    pub xml: String,
    /// What it is.
    pub kind: ServerElementKind,
    /// For [`ServerElementKind::StreamError`], its condition (anything outside the RFC 6120
    /// list is `undefined-condition`: a bounded set, safe as a metric label).
    pub error_condition: Option<StreamCondition>,
    /// The text of a `<see-other-host/>` condition, if that is the condition.
    pub see_other_host: Option<String>,
    /// For [`ServerElementKind::Features`], the byte ranges of `xml` holding the children that
    /// the client must not see (D15: `<starttls/>`, `<compression/>`), found while the element
    /// was checked; [`super::super::framing::client_features`] cuts them out.
    pub(crate) feature_cuts: Vec<std::ops::Range<usize>>,
}

impl ServerElement {
    /// For a `<stream:error>`, its defined condition (RFC 6120 §4.9.3, anything else
    /// `"undefined-condition"`: a bounded set, safe as a metric label); `None` for any other
    /// element.
    pub fn stream_error_condition(&self) -> Option<StreamCondition> {
        self.error_condition
    }
}

/// One event from the server stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The stream header (`<stream:stream ...>` with any prefix, or prefix-free). Boxed: it comes
    /// once per stream, and unboxed it would make every event (and every `Ok(None)` returned by
    /// [`StreamSplitter::next_event`], one per read) nearly twice as large to move.
    Header(Box<StreamHeader>),
    /// A complete top-level element.
    Element(ServerElement),
    /// The closing tag of the stream (`</stream:stream>`, `</stream>`, `</ns0:stream>` ...).
    End,
}
