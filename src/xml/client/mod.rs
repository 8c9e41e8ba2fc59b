//! Validation and classification of one client WebSocket message (RFC 7395 §3.3.3).
//!
//! A client message must be exactly one well-formed, namespace-well-formed element in UTF-8,
//! optionally preceded by an XML declaration (DECISIONS D16), with nothing restricted by RFC 6120
//! §11.1 (no DTD, comment, processing instruction or entity other than the five predefined ones)
//! and no character XML 1.0 forbids (XML-5). This module decides what the message is; it never
//! rewrites stanza content and never performs I/O. Its one piece of state is scratch: each
//! runtime thread's checker, lent to one message at a time and reset for the next.

use std::borrow::Cow;
use std::cell::RefCell;

use super::checker::{Checker, Class, Progress, RootItem, Unit, WfLimits};
use super::condition::StreamCondition;
use super::error::XmlError;
use super::lexical::{check_decl, DeclError};
use super::picked::Picked;
use super::{DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_NAMESPACE_DECLARATIONS};

/// Limits applied while validating a client message.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Maximum nesting depth of elements inside one message.
    pub max_depth: usize,
    /// Maximum attributes on one start tag, namespace declarations included.
    pub max_attributes: usize,
    /// Maximum namespace declarations on one start tag.
    pub max_namespace_declarations: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_depth: 10_000,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations: DEFAULT_MAX_NAMESPACE_DECLARATIONS,
        }
    }
}

impl ClientLimits {
    fn wf(&self) -> WfLimits {
        WfLimits {
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_namespace_declarations: self.max_namespace_declarations,
        }
    }
}

/// The attributes of a client `<open/>` that the gateway uses (RFC 7395 §3.3.1), unescaped, in
/// one string.
///
/// `id` is deliberately absent: RFC 6120 §4.7.3 forbids sending it upstream (HDR-3).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OpenRequest(Picked<4>);

impl OpenRequest {
    /// The attributes kept.
    pub const NAMES: [&'static str; 4] = ["to", "from", "xml:lang", "version"];

    /// An `<open/>` with the values of `attrs` whose names are among [`Self::NAMES`] (others,
    /// `id` among them, are ignored).
    pub fn new<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> OpenRequest {
        OpenRequest(Picked::new(&Self::NAMES, attrs))
    }

    /// `to`, unnormalised, as the client wrote it.
    pub fn to(&self) -> Option<&str> {
        self.0.get(0)
    }

    /// `from`.
    pub fn from(&self) -> Option<&str> {
        self.0.get(1)
    }

    /// `xml:lang`.
    pub fn lang(&self) -> Option<&str> {
        self.0.get(2)
    }

    /// `version`.
    pub fn version(&self) -> Option<&str> {
        self.0.get(3)
    }
}

impl std::fmt::Debug for OpenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_named("OpenRequest", &Self::NAMES, f)
    }
}

/// What kind of ordinary element a client message carries, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientElementKind {
    /// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`: answered with `<failure/>`, never relayed (TLS-7).
    StartTls,
    /// `<compress xmlns='http://jabber.org/protocol/compress'>`: never relayed (TLS-7).
    Compress,
    /// `<stream:error>` in the stream namespace: relayed, then the upstream stream is closed (ERR-6).
    StreamError {
        /// Its defined condition, for metrics (anything outside the RFC 6120 list is
        /// `undefined-condition`: a bounded set). Learnt while the message was checked.
        condition: StreamCondition,
    },
    /// `<auth>` in the SASL namespace (its payload must never be logged).
    SaslAuth,
    /// Anything else: relayed as is.
    Other,
}

/// One classified client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// `<open/>` in the framing namespace.
    Open(OpenRequest),
    /// `<close/>` in the framing namespace.
    Close,
    /// Any other element. `xml` is the exact text to write upstream: the message with a leading
    /// XML declaration (and whitespace after it) removed, otherwise byte-identical.
    Element {
        /// The bytes to relay.
        xml: &'a str,
        /// What the element is.
        kind: ClientElementKind,
    },
}

/// Validates one client WebSocket text message and says what it is.
///
/// Accepted shape: an optional XML declaration (`version` 1.0, `encoding` absent or UTF-8 in any
/// case) at the very first byte, optional whitespace, then exactly one element and nothing else.
/// Strictness, documented choices:
/// - the first character must be `<`: leading whitespace or U+FEFF is `NotWellFormed` (FR-4);
/// - anything after the root element, even whitespace, is `NotWellFormed` (one element per
///   message, RFC 7395 §3.3.3);
/// - `standalone` in the declaration is `RestrictedXml` (RFC 6120 §11.5 says it MUST NOT be sent);
/// - a legacy `<stream:stream ...>` header (any element whose local name is `stream`, well-formed
///   or not) is `InvalidNamespace`, like `<open/>`/`<close/>` outside the framing namespace and
///   any other element in the framing namespace.
///
/// Cost is linear in the message size whatever its shape (many attributes, many namespace
/// declarations in scope, deep nesting); nesting is handled without recursion.
pub fn classify<'a>(message: &'a str, limits: &ClientLimits) -> Result<ClientFrame<'a>, XmlError> {
    let xml = strip_declaration(message)?;
    with_scratch_checker(limits.wf(), |checker| classify_element(xml, checker))
}

/// Memory a thread's scratch checker may keep from one message to the next. Storage grown
/// past it for an unusual message (deep nesting, hundreds of attributes) is given back after it.
const SCRATCH_KEPT_BYTES: usize = 4096;

thread_local! {
    /// One checker per thread, lent to each client message checked on it in turn: a message
    /// then costs neither a checker's construction nor the allocations its storage needs (every
    /// stanza that declares `xmlns='jabber:client'` needs some). A message is checked within one
    /// call, so no session holds it, and an idle session holds nothing for it.
    static SCRATCH_CHECKER: RefCell<Option<Checker>> = const { RefCell::new(None) };
}

/// Runs `check` with this thread's scratch checker reset for one element within `limits` (a
/// new checker if the scratch one is in use, which no check causes).
fn with_scratch_checker<T>(limits: WfLimits, check: impl FnOnce(&mut Checker) -> T) -> T {
    SCRATCH_CHECKER.with(|scratch| {
        let Ok(mut slot) = scratch.try_borrow_mut() else {
            return check(&mut Checker::new(limits, Unit::Element));
        };
        let checker = slot.get_or_insert_with(|| Checker::new(limits, Unit::Element));
        checker.reset_within(limits, Unit::Element);
        let result = check(checker);
        if checker.capacity_bytes() > SCRATCH_KEPT_BYTES {
            *slot = None;
        }
        result
    })
}

/// Bytes this thread's scratch checker keeps for the next message (for tests).
#[cfg(test)]
fn scratch_held_bytes() -> usize {
    SCRATCH_CHECKER.with(|scratch| scratch.borrow().as_ref().map_or(0, Checker::capacity_bytes))
}

/// [`classify`] of `xml` (the message without its declaration) with `checker`, reset for it.
fn classify_element<'a>(xml: &'a str, checker: &mut Checker) -> Result<ClientFrame<'a>, XmlError> {
    match check_message(xml, checker) {
        Ok(()) => {}
        Err(err) => {
            if root_local_name(xml) == Some("stream") {
                return Err(XmlError::InvalidNamespace("legacy <stream:stream> instead of <open/>"));
            }
            return Err(err);
        }
    }
    let kind = match checker.root_class() {
        Class::Open => {
            return Ok(ClientFrame::Open(open_request(xml, checker)?));
        }
        Class::Close => return Ok(ClientFrame::Close),
        Class::OtherFraming => return Err(XmlError::InvalidNamespace("unknown element in the framing namespace")),
        _ if matches!(checker.root_local(xml), "open" | "close") => {
            return Err(XmlError::InvalidNamespace("<open/> or <close/> outside the framing namespace"))
        }
        _ if checker.root_local(xml) == "stream" => {
            return Err(XmlError::InvalidNamespace("legacy <stream:stream> instead of <open/>"))
        }
        Class::StartTls => ClientElementKind::StartTls,
        Class::Compress => ClientElementKind::Compress,
        Class::StreamError => ClientElementKind::StreamError {
            condition: StreamCondition::from_name(checker.error_child().map_or("", |(name, _)| name)),
        },
        Class::SaslAuth => ClientElementKind::SaslAuth,
        _ => ClientElementKind::Other,
    };
    Ok(ClientFrame::Element { xml, kind })
}

/// Checks that `xml` is exactly one element, in one pass; `checker` (reset) holds what it learnt.
fn check_message(xml: &str, checker: &mut Checker) -> Result<(), XmlError> {
    let bytes = xml.as_bytes();
    match bytes {
        [b'<', next, ..] if !matches!(next, b'!' | b'?' | b'/') => {}
        [b'<', ..] => return Err(misc_markup(bytes)),
        _ => return Err(XmlError::NotWellFormed("the message does not start with an element")),
    }
    match checker.advance(bytes, None)? {
        Progress::NeedMore => Err(XmlError::NotWellFormed("unclosed element")),
        Progress::Done if checker.end() == bytes.len() => Ok(()),
        Progress::Done => Err(after_the_element(&bytes[checker.end()..])),
    }
}

/// Why `rest` (not empty), which follows the element, makes the message unacceptable.
fn after_the_element(rest: &[u8]) -> XmlError {
    match rest {
        [b'<', ..] => match misc_markup(rest) {
            XmlError::NotWellFormed(_) => XmlError::NotWellFormed("more than one element"),
            other => other,
        },
        _ => XmlError::NotWellFormed("text outside the element"),
    }
}

/// Why markup other than an element (`<!`, `<?`, `</`) outside the element is refused:
/// comments, processing instructions and DTDs are restricted XML, the rest is not well-formed.
fn misc_markup(markup: &[u8]) -> XmlError {
    match markup.get(1) {
        Some(b'!') if markup.starts_with(b"<!--") => XmlError::RestrictedXml("comment"),
        Some(b'!') if markup.starts_with(b"<!DOCTYPE") => XmlError::RestrictedXml("document type declaration"),
        Some(b'?') => {
            let xml_declaration =
                markup.starts_with(b"<?xml") && markup.get(5).is_none_or(|&b| b == b'?' || b.is_ascii_whitespace());
            if xml_declaration {
                XmlError::NotWellFormed("XML declaration not at the start")
            } else {
                XmlError::RestrictedXml("processing instruction")
            }
        }
        _ => XmlError::NotWellFormed("markup outside the element"),
    }
}

/// Removes a leading XML declaration and the whitespace after it, checking the declaration.
/// Anything that merely starts like one (`<?xml-stylesheet`, `<?xml` not at byte 0) is left for
/// the element check, which refuses it as a processing instruction.
fn strip_declaration(message: &str) -> Result<&str, XmlError> {
    let Some(after) = message.strip_prefix("<?xml") else {
        return Ok(message);
    };
    if !after.starts_with([' ', '\t', '\r', '\n']) {
        return Ok(message);
    }
    let end = after.find("?>").ok_or(XmlError::NotWellFormed("unterminated XML declaration"))?;
    check_decl(&after[..end]).map_err(|e| match e {
        DeclError::NotWellFormed => XmlError::NotWellFormed("malformed XML declaration"),
        DeclError::Standalone => XmlError::RestrictedXml("standalone in the XML declaration"),
        DeclError::UnsupportedEncoding => XmlError::UnsupportedEncoding,
    })?;
    Ok(after[end + 2..].trim_start_matches([' ', '\t', '\r', '\n']))
}

/// The local part of the first start tag's name, read without parsing (used only to recognise a
/// legacy stream header, which is not well-formed on its own).
fn root_local_name(xml: &str) -> Option<&str> {
    let rest = xml.strip_prefix('<')?;
    let end = rest.find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
    let qname = &rest[..end];
    Some(qname.rsplit_once(':').map_or(qname, |(_, local)| local))
}

/// What an `<open/>` the checker has read says (its attributes read once, nothing collected
/// but the values). Out of line: one message in thousands is an `<open/>`, and its
/// code inlined into the check of every message made that slower (callgrind, per echo).
#[inline(never)]
fn open_request(xml: &str, checker: &Checker) -> Result<OpenRequest, XmlError> {
    let mut values: [Option<Cow<str>>; 4] = Default::default();
    checker.each_root_attr(xml, &OpenRequest::NAMES, false, |item| {
        if let RootItem::Attr(name, value) = item {
            if let Some(i) = Picked::slot(&OpenRequest::NAMES, name) {
                values[i] = Some(value);
            }
        }
    })?;
    Ok(OpenRequest(Picked::from_slots(values.each_ref().map(|value| value.as_deref()))))
}

#[cfg(test)]
mod tests;
