//! One pass over one element (private): [`Checker`] reads an element's bytes once, in as many
//! pieces as they arrive, finds where the element ends, and checks on the way everything that
//! makes it acceptable, so that nothing has to read it again.
//!
//! It is the gateway's one XML checker, for both directions: a client message is checked in one
//! call over the whole message ([`super::client`]); the server's stream is fed read by read
//! ([`super::splitter`]) and the checker resumes at the byte where the previous read ended,
//! whatever construct that byte is in. What it checks: XML 1.0 characters (XML-5), names,
//! the start-tag, end-tag, attribute, reference, character-data and CDATA grammar, end tags
//! matching their start tags, unique attributes (by raw and by expanded name), namespace
//! declarations and resolution with inherited declarations (a stream header's), undeclared
//! prefixes, the restricted features of RFC 6120 §11.1 (comments, processing instructions, DTDs,
//! undefined entities: refused, never expanded), and the caps of [`WfLimits`]. What it learns
//! on the way and keeps for the caller: the root's name and namespace, where its start and end
//! tags are, which inherited declarations the element uses, the condition of a `<stream:error>`,
//! the children of `<stream:features>` that D15 removes, and the root's attributes when they
//! are wanted (`<open/>`, a stream header).
//!
//! Invariants: every byte is looked at once by the scanner, in order, and the state between two
//! reads is a position and a few offsets, so the cost is linear in the input whatever its shape
//! and chunking, and errors come in document order whatever the chunking. Namespace lookups and
//! duplicate checks are constant time ([`super::scope`]). No recursion. No entity is expanded
//! beyond the five predefined ones and character references. Nothing is allocated per byte; an
//! ordinary stanza costs a few small allocations, reused by the splitter from one element to the
//! next.
//!
//! (Over 500 lines: the scanner's states are one `match`, kept together on purpose; the tables
//! and byte-level helpers it uses are in `checker/bytes.rs`, tests in `checker/tests.rs`.)

use std::borrow::Cow;
use std::ops::Range;

use super::error::XmlError;
use super::inline_vec::InlineVec;
use super::lexical::{resolve_reference, unescape_attr};
use super::scope::{Bindings, Inherited, ManyNames, Resolved, SeenNames, UsedSet, NS_XML, NS_XMLNS};
use super::{NS_COMPRESS_FEATURE, NS_COMPRESS_PROTOCOL, NS_FRAMING, NS_SASL, NS_STREAM, NS_STREAM_ERRORS, NS_TLS};
use bytes::*;

mod bytes;
#[cfg(test)]
mod tests;

/// The caps applied while checking one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WfLimits {
    /// Maximum nesting depth; the root counts as depth 1.
    pub max_depth: usize,
    /// Maximum attributes on one start tag, namespace declarations included.
    pub max_attributes: usize,
    /// Maximum namespace declarations (`xmlns`, `xmlns:p`) on one start tag.
    pub max_namespace_declarations: usize,
}

impl WfLimits {
    /// No caps: for tests of the cost itself.
    #[cfg(test)]
    pub const UNLIMITED: WfLimits =
        WfLimits { max_depth: usize::MAX, max_attributes: usize::MAX, max_namespace_declarations: usize::MAX };
}

/// What is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A whole element: done when its end tag (or its empty-element tag) has been read.
    Element,
    /// A stream header: only its start tag, done at that tag's `>`.
    Header,
}

/// How far [`Checker::advance`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Every byte so far is fine; the element goes on.
    NeedMore,
    /// The element (or header start tag) ends at [`Checker::end`].
    Done,
}

/// Where the scanner is (everything it needs to resume at [`Checker::pos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data inside an element.
    Content,
    /// A reference in character data; `start` is its `&`.
    ContentRef { start: usize },
    /// After the `<` at `start`, inside an element.
    Markup { start: usize },
    /// The name of the start tag whose `<` is at `start`.
    TagName { start: usize },
    /// Inside a start tag, after its name or an attribute; `space`: whitespace since.
    Attrs { space: bool },
    /// An attribute name starting at `start`.
    AttrName { start: usize },
    /// After an attribute name: optional whitespace, then `=`.
    Eq,
    /// After `=`: optional whitespace, then the opening quote.
    Quote,
    /// An attribute value opened by `quote`, its first byte at `start`.
    Value { quote: u8, start: usize },
    /// A reference (its `&` at `at`) in that attribute value.
    ValueRef { quote: u8, start: usize, at: usize },
    /// After the `/` of `/>`.
    Slash,
    /// The name of the end tag whose `<` is at `start`.
    EndName { start: usize },
    /// After the end tag's name: optional whitespace, then `>`.
    EndSpace { start: usize },
    /// After `<!` (the `<` at `start`): a CDATA section or refused markup.
    Bang { start: usize },
    /// A CDATA section whose content starts at `start`.
    CData { start: usize },
    /// After `<?` (the `<` at `start`): refused.
    Pi { start: usize },
    /// The element is complete.
    Done,
}

/// One attribute of the start tag being read (offsets into the unit).
#[derive(Debug, Clone, Copy, Default)]
struct Attr {
    name: (u32, u32),
    /// [`name_key`] of the name: names with different keys differ.
    key: u32,
    /// Offset of the `:` in the name, 0 if none.
    colon: u32,
    value: (u32, u32),
    /// The value holds a reference, TAB, LF or CR: its meaning differs from its bytes.
    normalise: bool,
    /// `xmlns` or `xmlns:p`.
    declaration: bool,
}

/// What the checker learnt about the root element.
#[derive(Debug, Clone, Default)]
struct Root {
    ns: Option<ResolvedNs>,
    qname: (u32, u32),
    /// Offset of the local name in the qualified name (after the `:`, or 0).
    local: u32,
    class: Class,
    in_stream_ns: bool,
    tag_end: usize,
    empty: bool,
    attributes: usize,
    declarations: usize,
    /// The offset of the root end tag's name (after `</`).
    end_name: Option<usize>,
    /// The namespace declared for the `stream` prefix on the root itself, if any.
    own_stream: Option<usize>,
    /// The root's attributes, kept only for a stream header and `<open/>`.
    attrs: Vec<Attr>,
}

/// A resolved namespace that stays valid after the scan ([`Resolved`] without the cases that
/// have no namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResolvedNs {
    Own(usize),
    Inherited(usize),
    Xml,
}

/// The elements whose names matter to the gateway: what a root is (for the caller's
/// classification), and what the checker collects inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Class {
    /// `<error/>` in the stream namespace (a root whose condition is collected).
    StreamError,
    /// `<features/>` in the stream namespace (a root whose D15 children are found).
    Features,
    /// `<open/>` in the framing namespace (a root whose attributes are kept).
    Open,
    /// `<close/>` in the framing namespace.
    Close,
    /// Another element in the framing namespace.
    OtherFraming,
    /// `<proceed/>` in the TLS namespace.
    TlsProceed,
    /// `<failure/>` in the TLS namespace.
    TlsFailure,
    /// `<success/>` in the RFC 6120 SASL namespace.
    SaslSuccess,
    /// `<auth/>` in the RFC 6120 SASL namespace.
    SaslAuth,
    /// `<compress/>` in the XEP-0138 protocol namespace.
    Compress,
    /// An element in the stream-errors namespace other than `<text/>` (a condition).
    ErrorCondition,
    /// `<starttls/>` in the TLS namespace (a feature D15 removes, a client request refused).
    StartTls,
    /// `<compression/>` in the compression feature namespace (a feature D15 removes).
    Compression,
    /// Anything else.
    #[default]
    Other,
}

/// Shortest and longest of the namespaces [`Class::of`] knows: a namespace outside that range
/// (`jabber:client`, the namespace of nearly every stanza, is shorter) needs no comparison.
const CLASSIFIED_NS_LEN: std::ops::RangeInclusive<usize> = {
    let lens = [
        NS_STREAM.len(),
        NS_FRAMING.len(),
        NS_STREAM_ERRORS.len(),
        NS_TLS.len(),
        NS_SASL.len(),
        NS_COMPRESS_PROTOCOL.len(),
        NS_COMPRESS_FEATURE.len(),
    ];
    let (mut shortest, mut longest, mut i) = (usize::MAX, 0, 0);
    while i < lens.len() {
        if lens[i] < shortest {
            shortest = lens[i];
        }
        if lens[i] > longest {
            longest = lens[i];
        }
        i += 1;
    }
    shortest..=longest
};

impl Class {
    fn of(ns: Option<&str>, local: &[u8]) -> Class {
        if !ns.is_some_and(|ns| CLASSIFIED_NS_LEN.contains(&ns.len())) {
            return Class::Other;
        }
        match (ns, local) {
            (Some(NS_STREAM), b"error") => Class::StreamError,
            (Some(NS_STREAM), b"features") => Class::Features,
            (Some(NS_FRAMING), b"open") => Class::Open,
            (Some(NS_FRAMING), b"close") => Class::Close,
            (Some(NS_FRAMING), _) => Class::OtherFraming,
            (Some(NS_STREAM_ERRORS), local) if local != b"text" => Class::ErrorCondition,
            (Some(NS_TLS), b"starttls") => Class::StartTls,
            (Some(NS_TLS), b"proceed") => Class::TlsProceed,
            (Some(NS_TLS), b"failure") => Class::TlsFailure,
            (Some(NS_SASL), b"success") => Class::SaslSuccess,
            (Some(NS_SASL), b"auth") => Class::SaslAuth,
            (Some(NS_COMPRESS_PROTOCOL), b"compress") => Class::Compress,
            (Some(NS_COMPRESS_FEATURE), b"compression") => Class::Compression,
            _ => Class::Other,
        }
    }
}

/// What the checker collects beyond the root, decided by the root's name.
#[derive(Debug, Clone, Default)]
enum Capture {
    #[default]
    Nothing,
    /// `<stream:error>`: its first child in the stream-errors namespace other than `<text>`
    /// (local name, and its direct character data); `open` while inside that child.
    ErrorChild { child: Option<(String, String)>, open: bool },
    /// `<stream:features>`: the children D15 removes, as byte ranges; `open` is the start of one
    /// being read.
    FeatureCuts { cuts: Vec<Range<usize>>, open: Option<usize> },
}

/// The scanner and checker of one element at a time (see the module doc). Reset it with
/// [`Checker::reset`] before each element; its allocations are kept for the next.
#[derive(Debug)]
pub(crate) struct Checker {
    limits: WfLimits,
    unit: Unit,
    /// The next byte to look at, as an offset into the unit.
    pos: usize,
    lex: Lex,
    depth: usize,
    /// The qualified name of each open element, outermost first.
    open: InlineVec<(u32, u32), OPEN_INLINE>,
    scope: Bindings,
    used: UsedSet,
    /// The attributes of the start tag being read.
    attrs: InlineVec<Attr, ATTRS_INLINE>,
    /// The prefixed attributes of that tag (indices into `attrs`) and what each prefix resolved
    /// to, kept for reuse from tag to tag.
    resolved: Vec<(usize, Resolved)>,
    /// Raw attribute names of that tag, past the few [`Self::attrs`] is scanned for.
    many_names: Option<ManyNames>,
    /// Namespace declarations on that tag.
    declarations: usize,
    /// Prefixed attributes on that tag other than declarations.
    prefixed_attrs: usize,
    /// The start tag being read: its `<` and its qualified name.
    tag_start: usize,
    tag_name: (u32, u32),
    /// Offset of the `:` in that name, 0 if none.
    tag_colon: u32,
    /// Whether the attribute value being read needs normalising.
    normalise: bool,
    root: Root,
    capture: Capture,
}

/// Open elements kept without an allocation (an ordinary stanza nests a few levels deep).
const OPEN_INLINE: usize = 8;
/// Attributes of one start tag kept without an allocation.
const ATTRS_INLINE: usize = 8;

/// Attributes up to which duplicates are found by scanning the tag's attributes.
const FEW_ATTRIBUTES: usize = 16;

fn range(r: (u32, u32)) -> Range<usize> {
    r.0 as usize..(r.0 + r.1) as usize
}

/// An attribute's index (attributes are fewer than the element's bytes: it fits in 32 bits).
fn attrs_index(i: usize) -> u32 {
    i as u32
}

fn span(start: usize, end: usize) -> (u32, u32) {
    // An element is at most a few hundred KiB (the caller's limit): offsets fit in 32 bits.
    (start as u32, (end - start) as u32)
}

/// `bytes` as text: names and reference names are checked (ASCII or valid UTF-8) before they
/// get here; anything else reads as an empty string, which no check accepts.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

impl Checker {
    /// A checker for `unit`s within `limits`; [`Self::reset`] it before the first element.
    pub fn new(limits: WfLimits, unit: Unit) -> Self {
        Checker {
            limits,
            unit,
            pos: 1,
            lex: Lex::TagName { start: 0 },
            depth: 0,
            open: InlineVec::default(),
            scope: Bindings::default(),
            used: UsedSet::default(),
            attrs: InlineVec::default(),
            resolved: Vec::new(),
            many_names: None,
            declarations: 0,
            prefixed_attrs: 0,
            tag_start: 0,
            tag_name: (0, 0),
            tag_colon: 0,
            normalise: false,
            root: Root::default(),
            capture: Capture::Nothing,
        }
    }

    /// Prepares for an element (or header) whose `<` is the first byte of the next unit.
    pub fn reset(&mut self, unit: Unit) {
        self.unit = unit;
        self.pos = 1;
        self.lex = Lex::TagName { start: 0 };
        self.depth = 0;
        self.open.clear();
        self.scope.clear();
        self.used.clear();
        self.attrs.clear();
        self.many_names = None;
        // The rest of `root` is written whole when the root's start tag ends, before anything
        // reads it (the callers read it only once the unit is done).
        self.root.attrs.clear();
        self.capture = Capture::Nothing;
    }

    /// [`Self::reset`], within `limits` from now on (for a checker lent to one message after
    /// another whose limits may differ).
    pub fn reset_within(&mut self, limits: WfLimits, unit: Unit) {
        self.limits = limits;
        self.reset(unit);
    }

    /// Bytes held for reuse.
    pub fn capacity_bytes(&self) -> usize {
        self.open.heap_bytes()
            + self.scope.capacity_bytes()
            + self.attrs.heap_bytes()
            + self.root.attrs.capacity() * std::mem::size_of::<Attr>()
            + self.resolved.capacity() * std::mem::size_of::<(usize, Resolved)>()
    }

    /// The offset just after the element, once [`Progress::Done`].
    pub fn end(&self) -> usize {
        self.pos
    }

    /// How far into the unit the scanner has read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Scans `unit` (the element's bytes so far, from its `<`; each call passes the same bytes
    /// plus any that arrived since) from where the last call stopped. `inherited`: the stream
    /// header's declarations, for a server element.
    pub fn advance(&mut self, unit: &[u8], inherited: Option<&Inherited>) -> Result<Progress, XmlError> {
        let len = unit.len();
        loop {
            let i = self.pos;
            if i >= len {
                return Ok(if matches!(self.lex, Lex::Done) { Progress::Done } else { Progress::NeedMore });
            }
            // Where a construct usually runs straight into the next (`<` and a name, a name and
            // `='`, whitespace and an attribute name), an arm goes on with the next one's work
            // itself instead of a turn of this loop, exactly as that turn would have.
            match self.lex {
                Lex::Content => {
                    let mut j = i;
                    loop {
                        j = skip_plain_ascii(unit, j, &TEXT_STOPS);
                        while j < len && TEXT_PLAIN[unit[j] as usize] {
                            j += 1;
                        }
                        if j == len {
                            self.text(unit, i, j);
                            self.pos = j;
                            return Ok(Progress::NeedMore);
                        }
                        match unit[j] {
                            b'<' => {
                                self.text(unit, i, j);
                                self.lex = Lex::Markup { start: j };
                                self.pos = j + 1;
                                if j + 1 < len {
                                    self.markup_from(unit, j, j + 1, inherited)?;
                                }
                                break;
                            }
                            b'&' => {
                                self.text(unit, i, j);
                                self.lex = Lex::ContentRef { start: j };
                                self.pos = j + 1;
                                break;
                            }
                            b'>' => {
                                if j >= 2 && unit[j - 1] == b']' && unit[j - 2] == b']' {
                                    return Err(XmlError::NotWellFormed("']]>' in character data"));
                                }
                                j += 1;
                            }
                            0xEF => {
                                if j + 2 >= len {
                                    self.text(unit, i, j);
                                    self.pos = j;
                                    return Ok(Progress::NeedMore);
                                }
                                check_ef(unit, j)?;
                                j += 1;
                            }
                            _ => return Err(forbidden_char()),
                        }
                    }
                }
                Lex::ContentRef { start } => {
                    let Some(semicolon) = self.reference_end(unit, i)? else { return Ok(Progress::NeedMore) };
                    let c = resolve_reference(text(&unit[start + 1..semicolon]))?;
                    self.text_char(c);
                    self.lex = Lex::Content;
                    self.pos = semicolon + 1;
                }
                Lex::Markup { start } => self.markup_from(unit, start, i, inherited)?,
                Lex::TagName { start } => self.tag_name_from(unit, start, i, inherited)?,
                Lex::Attrs { space } => {
                    let mut j = i;
                    while j < len && is_space(unit[j]) {
                        j += 1;
                    }
                    if j == len {
                        self.lex = Lex::Attrs { space: space || j > i };
                        self.pos = j;
                        return Ok(Progress::NeedMore);
                    }
                    let space = space || j > i;
                    match unit[j] {
                        b'>' => {
                            self.pos = j + 1;
                            self.start_tag_end(unit, j, false, inherited)?;
                        }
                        b'/' => {
                            self.lex = Lex::Slash;
                            self.pos = j + 1;
                        }
                        b if NAME_BYTE[b as usize] => {
                            if !space {
                                return Err(XmlError::NotWellFormed("no whitespace before an attribute"));
                            }
                            self.lex = Lex::AttrName { start: j };
                            self.attribute_name_from(unit, j, j)?;
                        }
                        b'<' => return Err(XmlError::NotWellFormed("'<' inside a tag")),
                        _ => return Err(XmlError::NotWellFormed("malformed start tag")),
                    }
                }
                Lex::AttrName { start } => {
                    self.attribute_name_from(unit, start, i)?;
                }
                Lex::Eq | Lex::Quote => {
                    let mut j = i;
                    while j < len && is_space(unit[j]) {
                        j += 1;
                    }
                    if j == len {
                        self.pos = j;
                        return Ok(Progress::NeedMore);
                    }
                    match (self.lex, unit[j]) {
                        (Lex::Eq, b'=') => self.lex = Lex::Quote,
                        (Lex::Quote, quote @ (b'"' | b'\'')) => {
                            self.normalise = false;
                            self.lex = Lex::Value { quote, start: j + 1 };
                        }
                        _ => return Err(XmlError::NotWellFormed("malformed attribute")),
                    }
                    self.pos = j + 1;
                }
                Lex::Value { mut quote, mut start } => {
                    let mut j = i;
                    loop {
                        j = skip_plain_ascii(unit, j, &VALUE_STOPS);
                        while j < len && VALUE_PLAIN[unit[j] as usize] {
                            j += 1;
                        }
                        if j == len {
                            self.pos = j;
                            return Ok(Progress::NeedMore);
                        }
                        match unit[j] {
                            b if b == quote => {
                                self.attribute_value(unit, start, j)?;
                                if !self.after_value(unit, j + 1, inherited)? {
                                    break;
                                }
                                // The next attribute's value opened: read on here.
                                (start, j) = (self.pos, self.pos);
                                quote = unit[start - 1];
                            }
                            b'"' | b'\'' => j += 1,
                            b'\t' | b'\n' | b'\r' => {
                                self.normalise = true;
                                j += 1;
                            }
                            b'<' => return Err(XmlError::NotWellFormed("'<' in an attribute value")),
                            b'&' => {
                                self.normalise = true;
                                self.lex = Lex::ValueRef { quote, start, at: j };
                                self.pos = j + 1;
                                break;
                            }
                            0xEF => {
                                if j + 2 >= len {
                                    self.pos = j;
                                    return Ok(Progress::NeedMore);
                                }
                                check_ef(unit, j)?;
                                j += 1;
                            }
                            _ => return Err(forbidden_char()),
                        }
                    }
                }
                Lex::ValueRef { quote, start, at } => {
                    let Some(semicolon) = self.reference_end(unit, i)? else { return Ok(Progress::NeedMore) };
                    resolve_reference(text(&unit[at + 1..semicolon]))?;
                    self.lex = Lex::Value { quote, start };
                    self.pos = semicolon + 1;
                }
                Lex::Slash => {
                    if unit[i] != b'>' {
                        return Err(XmlError::NotWellFormed("'/' not followed by '>' in a tag"));
                    }
                    self.pos = i + 1;
                    self.start_tag_end(unit, i, true, inherited)?;
                }
                Lex::EndName { start } => {
                    let (end, _) = name_end(unit, i);
                    if end == len {
                        self.pos = end;
                        return Ok(Progress::NeedMore);
                    }
                    let expected = self.open.last().map(|&name| &unit[range(name)]);
                    if expected != Some(&unit[start + 2..end]) {
                        return Err(XmlError::NotWellFormed("end tag does not match the start tag"));
                    }
                    self.lex = Lex::EndSpace { start };
                    self.pos = end;
                }
                Lex::EndSpace { start } => {
                    let mut j = i;
                    while j < len && is_space(unit[j]) {
                        j += 1;
                    }
                    if j == len {
                        self.pos = j;
                        return Ok(Progress::NeedMore);
                    }
                    if unit[j] != b'>' {
                        return Err(XmlError::NotWellFormed("malformed end tag"));
                    }
                    self.pos = j + 1;
                    self.end_tag(start, j);
                }
                Lex::Bang { start } => {
                    // `<![CDATA[` opens a section; a comment or a DTD is restricted XML once
                    // its opening is complete; anything else is not well-formed.
                    let (opening, refusal): (&[u8], _) = match unit[i] {
                        b'[' => (b"<![CDATA[", None),
                        b'-' => (b"<!--", Some(XmlError::RestrictedXml("comment"))),
                        b'D' => (b"<!DOCTYPE", Some(XmlError::RestrictedXml("document type declaration"))),
                        _ => return Err(XmlError::NotWellFormed("malformed markup")),
                    };
                    let seen = &unit[start..len.min(start + opening.len())];
                    if seen != &opening[..seen.len()] {
                        return Err(XmlError::NotWellFormed("malformed markup"));
                    }
                    if seen.len() < opening.len() {
                        return Ok(Progress::NeedMore);
                    }
                    if let Some(refusal) = refusal {
                        return Err(refusal);
                    }
                    self.lex = Lex::CData { start: start + opening.len() };
                    self.pos = start + opening.len();
                }
                Lex::CData { start } => {
                    let mut j = i;
                    loop {
                        while j < len && CDATA_PLAIN[unit[j] as usize] {
                            j += 1;
                        }
                        if j == len {
                            self.pos = j;
                            return Ok(Progress::NeedMore);
                        }
                        match unit[j] {
                            b'>' => {
                                if j >= start + 2 && unit[j - 1] == b']' && unit[j - 2] == b']' {
                                    self.text(unit, start, j - 2);
                                    self.lex = Lex::Content;
                                    self.pos = j + 1;
                                    break;
                                }
                                j += 1;
                            }
                            0xEF => {
                                if j + 2 >= len {
                                    self.pos = j;
                                    return Ok(Progress::NeedMore);
                                }
                                check_ef(unit, j)?;
                                j += 1;
                            }
                            _ => return Err(forbidden_char()),
                        }
                    }
                }
                Lex::Pi { start } => {
                    // `<?xml` followed by whitespace or `?` is an XML declaration out of place
                    // (not well-formed); any other `<?` is a processing instruction, restricted
                    // XML, refused at once (without waiting for its `?>`).
                    let target = &unit[start + 2..len.min(start + 6)];
                    let xml = target[..target.len().min(3)] == b"xml"[..target.len().min(3)];
                    if xml && target.len() < 4 {
                        self.pos = len;
                        return Ok(Progress::NeedMore);
                    }
                    if xml && (is_space(target[3]) || target[3] == b'?') {
                        return Err(XmlError::NotWellFormed("XML declaration not at the start"));
                    }
                    return Err(XmlError::RestrictedXml("processing instruction"));
                }
                Lex::Done => return Ok(Progress::Done),
            }
        }
    }

    /// [`Lex::Markup`] at `i` (the `<` at `start`), there being a byte at `i`. The usual end tag,
    /// `</name>` with the name of the element it closes and no whitespace, is taken at once.
    #[inline(always)]
    fn markup_from(
        &mut self,
        unit: &[u8],
        start: usize,
        i: usize,
        inherited: Option<&Inherited>,
    ) -> Result<(), XmlError> {
        match unit[i] {
            b'/' => {
                if let Some(&name) = self.open.last() {
                    let gt = i + 1 + name.1 as usize;
                    if unit.get(gt) == Some(&b'>') && unit[i + 1..gt] == unit[range(name)] {
                        self.pos = gt + 1;
                        self.end_tag(start, gt);
                        return Ok(());
                    }
                }
                self.lex = Lex::EndName { start };
                self.pos = i + 1;
            }
            b'!' => {
                self.lex = Lex::Bang { start };
                self.pos = i + 1;
            }
            b'?' => {
                self.lex = Lex::Pi { start };
                self.pos = i + 1;
            }
            _ => {
                self.lex = Lex::TagName { start };
                self.tag_name_from(unit, start, i, inherited)?;
            }
        }
        Ok(())
    }

    /// [`Lex::TagName`] from `from`: at the name's end, the tag's attributes follow, or (the
    /// usual `<name>`) its `>` is taken at once.
    #[inline(always)]
    fn tag_name_from(
        &mut self,
        unit: &[u8],
        start: usize,
        from: usize,
        inherited: Option<&Inherited>,
    ) -> Result<(), XmlError> {
        let (end, special) = name_end(unit, from);
        self.pos = end;
        if end == unit.len() {
            return Ok(());
        }
        self.start_tag_name(unit, start, end, from == start + 1 && !special)?;
        if unit[end] == b'>' {
            self.pos = end + 1;
            self.start_tag_end(unit, end, false, inherited)?;
        } else {
            self.lex = Lex::Attrs { space: false };
        }
        Ok(())
    }

    /// [`Lex::AttrName`] from `from`: at the name's end, `=` and the opening quote, when they
    /// follow at once (as usual), are taken too; then true, the value starting at the position.
    #[inline(always)]
    fn attribute_name_from(&mut self, unit: &[u8], start: usize, from: usize) -> Result<bool, XmlError> {
        let (end, special) = name_end(unit, from);
        self.pos = end;
        if end == unit.len() {
            return Ok(false);
        }
        self.attribute_name(unit, start, end, from == start && !special)?;
        match unit.get(end + 1) {
            Some(&quote @ (b'"' | b'\'')) if unit[end] == b'=' => {
                self.normalise = false;
                self.lex = Lex::Value { quote, start: end + 2 };
                self.pos = end + 2;
                Ok(true)
            }
            _ => {
                self.lex = Lex::Eq;
                Ok(false)
            }
        }
    }

    /// [`Lex::Attrs`] at `k`, just after an attribute's closing quote. What usually follows, the
    /// tag's `>` or `/>` or ` name='` of another attribute, is taken at once; then true if an
    /// attribute value opened (at the position).
    #[inline(always)]
    fn after_value(&mut self, unit: &[u8], k: usize, inherited: Option<&Inherited>) -> Result<bool, XmlError> {
        match unit.get(k) {
            Some(b'>') => {
                self.pos = k + 1;
                self.start_tag_end(unit, k, false, inherited)?;
                Ok(false)
            }
            Some(b'/') if unit.get(k + 1) == Some(&b'>') => {
                self.pos = k + 2;
                self.start_tag_end(unit, k + 1, true, inherited)?;
                Ok(false)
            }
            Some(b' ') if unit.get(k + 1).is_some_and(|&b| NAME_BYTE[b as usize]) => {
                self.lex = Lex::AttrName { start: k + 1 };
                self.attribute_name_from(unit, k + 1, k + 1)
            }
            _ => {
                self.lex = Lex::Attrs { space: false };
                self.pos = k;
                Ok(false)
            }
        }
    }

    /// The `;` ending a reference whose name starts at `from`: `None` when the bytes run out
    /// first (the scan resumes at the end), an error when something else ends the name.
    fn reference_end(&mut self, unit: &[u8], from: usize) -> Result<Option<usize>, XmlError> {
        let mut j = from;
        while j < unit.len() && REFERENCE_BYTE[unit[j] as usize] {
            j += 1;
        }
        if j == unit.len() {
            self.pos = j;
            return Ok(None);
        }
        if unit[j] != b';' {
            return Err(XmlError::NotWellFormed("unterminated reference"));
        }
        Ok(Some(j))
    }

    /// A start tag's name ends at `end` (its `<` at `start`).
    /// `plain`: the whole name was scanned in one piece and holds only [`NAME_PLAIN`] bytes.
    fn start_tag_name(&mut self, unit: &[u8], start: usize, end: usize, plain: bool) -> Result<(), XmlError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(XmlError::TooDeep);
        }
        let name = &unit[start + 1..end];
        let Some(colon) = checked_qname(name, plain) else {
            return Err(XmlError::NotWellFormed("invalid element name"));
        };
        if colon != 0 && name.starts_with(b"xmlns:") {
            return Err(XmlError::NotWellFormed("element name with the xmlns prefix"));
        }
        self.tag_start = start;
        self.tag_name = span(start + 1, end);
        self.tag_colon = colon as u32;
        self.open.push(self.tag_name);
        self.attrs.clear();
        if self.many_names.is_some() {
            self.many_names = None;
        }
        self.declarations = 0;
        self.prefixed_attrs = 0;
        Ok(())
    }

    /// An attribute's name ends at `end`: counted, checked unique and well-formed.
    /// `plain` as for [`Self::start_tag_name`].
    fn attribute_name(&mut self, unit: &[u8], start: usize, end: usize, plain: bool) -> Result<(), XmlError> {
        let count = self.attrs.len();
        if count >= self.limits.max_attributes {
            return Err(XmlError::TooManyAttributes);
        }
        let name = &unit[start..end];
        let key = name_key(name);
        let unique = if self.many_names.is_none() && count < FEW_ATTRIBUTES {
            self.new_among_attrs(unit, name, key)
        } else {
            self.unique_among_many(unit, name, key)
        };
        if !unique {
            return Err(XmlError::NotWellFormed("duplicate attribute"));
        }
        let Some(colon) = checked_qname(name, plain) else {
            return Err(XmlError::NotWellFormed("invalid attribute name"));
        };
        let declaration = name.starts_with(b"xmlns") && (name.len() == 5 || name[5] == b':');
        if colon != 0 && !declaration {
            self.prefixed_attrs += 1;
        }
        *self.attrs.push_slot() =
            Attr { name: span(start, end), key, colon: colon as u32, value: (0, 0), normalise: false, declaration };
        Ok(())
    }

    /// Whether `name` (with [`name_key`] `key`) differs from every attribute of the tag so far,
    /// by a scan of them (the keys first).
    #[inline(always)]
    fn new_among_attrs(&self, unit: &[u8], name: &[u8], key: u32) -> bool {
        !self.attrs.iter().any(|attr| attr.key == key && unit[range(attr.name)] == *name)
    }

    /// Whether `name` (with [`name_key`] `key`), the next attribute of a tag that has
    /// [`FEW_ATTRIBUTES`] or more, differs from the others: found in, or first put into,
    /// [`Self::many_names`] (out of line: the few-attribute case is the one to keep small).
    #[cold]
    #[inline(never)]
    fn unique_among_many(&mut self, unit: &[u8], name: &[u8], key: u32) -> bool {
        let (attrs, index) = (&self.attrs, attrs_index(self.attrs.len()));
        let name_of = |k: u32| if k == index { name } else { &unit[range(attrs[k as usize].name)] };
        match &mut self.many_names {
            Some(many) => many.insert(index, name_of),
            None => {
                let unique = self.new_among_attrs(unit, name, key);
                if unique {
                    // Sized for the cap (up to a point), so that filling it rarely rehashes.
                    let mut many = ManyNames::with_capacity(self.limits.max_attributes.min(4096));
                    for k in 0..=index {
                        many.insert(k, name_of);
                    }
                    self.many_names = Some(many);
                }
                unique
            }
        }
    }

    /// The value of the last attribute ends at `end` (its first byte at `start`); a namespace
    /// declaration takes effect.
    fn attribute_value(&mut self, unit: &[u8], start: usize, end: usize) -> Result<(), XmlError> {
        let Some(attr) = self.attrs.last_mut() else { return Err(XmlError::NotWellFormed("malformed attribute")) };
        attr.value = span(start, end);
        attr.normalise = self.normalise;
        let attr = *attr;
        if !attr.declaration {
            return Ok(());
        }
        self.declarations += 1;
        if self.declarations > self.limits.max_namespace_declarations {
            return Err(XmlError::TooManyNamespaceDeclarations);
        }
        let prefix = if attr.colon == 0 { "" } else { text(&unit[range(attr.name)][attr.colon as usize + 1..]) };
        let uri = value_text(text(&unit[start..end]), attr.normalise)?;
        if check_declaration(prefix, &uri)? {
            self.scope.declare(prefix, &uri, self.depth);
        }
        Ok(())
    }

    /// The innermost binding of `prefix`, own or inherited (recording the use of an inherited
    /// one). `xml` is not looked up here (see [`Self::resolve`]).
    fn lookup(&mut self, prefix: &str, inherited: Option<&Inherited>) -> Option<Resolved> {
        if let Some(i) = self.scope.lookup(prefix) {
            return Some(Resolved::Binding(i));
        }
        let i = inherited?.lookup(prefix)?;
        self.used.insert(i);
        Some(Resolved::Inherited(i))
    }

    /// Resolves the prefix of an element (`use_default`) or attribute name.
    fn resolve(&mut self, prefix: Option<&str>, use_default: bool, inherited: Option<&Inherited>) -> Resolved {
        match prefix {
            None if !use_default => Resolved::NoNamespace,
            None => match self.lookup("", inherited) {
                Some(found) if uri_of(&self.scope, inherited, found).is_some_and(|uri| !uri.is_empty()) => found,
                _ => Resolved::NoNamespace,
            },
            Some("xml") => Resolved::Xml,
            Some(prefix) => self.lookup(prefix, inherited).unwrap_or(Resolved::Undeclared),
        }
    }

    /// The start tag whose `>` is at `gt` is complete: names resolve, the root is recorded, the
    /// captures follow the children, and an empty element ends.
    fn start_tag_end(
        &mut self,
        unit: &[u8],
        gt: usize,
        empty: bool,
        inherited: Option<&Inherited>,
    ) -> Result<(), XmlError> {
        let name = &unit[range(self.tag_name)];
        let (prefix, local) = match self.tag_colon as usize {
            0 => (None, name),
            colon => (Some(&name[..colon]), &name[colon + 1..]),
        };
        let ns = self.resolve(prefix.map(text), true, inherited);
        if ns == Resolved::Undeclared {
            return Err(XmlError::NotWellFormed("undeclared element prefix"));
        }
        if self.prefixed_attrs > 0 {
            self.resolve_attributes(unit, inherited)?;
        }
        let wanted = self.depth == 1 || (self.depth == 2 && !matches!(self.capture, Capture::Nothing));
        let ns_uri = if wanted { uri_of(&self.scope, inherited, ns) } else { None };
        let class = if wanted { Class::of(ns_uri, local) } else { Class::Other };
        if self.depth == 1 {
            let in_stream_ns = ns_uri == Some(NS_STREAM);
            self.root_start(ns, class, local.len());
            self.root.tag_end = gt;
            self.root.empty = empty;
            self.root.in_stream_ns = in_stream_ns;
            self.capture = match class {
                Class::StreamError => Capture::ErrorChild { child: None, open: false },
                Class::Features => Capture::FeatureCuts { cuts: Vec::new(), open: None },
                _ => Capture::Nothing,
            };
            if self.unit == Unit::Header || class == Class::Open {
                self.root.attrs.clear();
                self.root.attrs.extend_from_slice(&self.attrs);
            }
        } else if self.depth == 2 {
            match &mut self.capture {
                Capture::Nothing => {}
                Capture::ErrorChild { child, open } => {
                    if child.is_none() && class == Class::ErrorCondition {
                        *child = Some((text(local).to_owned(), String::new()));
                        *open = !empty;
                    }
                }
                Capture::FeatureCuts { cuts, open } => {
                    if matches!(class, Class::StartTls | Class::Compression) {
                        if empty {
                            cuts.push(self.tag_start..gt + 1);
                        } else {
                            *open = Some(self.tag_start);
                        }
                    }
                }
            }
        }
        if self.unit == Unit::Header && self.depth == 1 {
            self.lex = Lex::Done;
        } else if empty {
            self.end_element(gt);
        } else {
            self.lex = Lex::Content;
        }
        Ok(())
    }

    /// The prefixed attributes of the start tag just read resolve, and no two have the same
    /// expanded name (out of line: most tags have none).
    #[inline(never)]
    fn resolve_attributes(&mut self, unit: &[u8], inherited: Option<&Inherited>) -> Result<(), XmlError> {
        let mut resolved = std::mem::take(&mut self.resolved);
        resolved.clear();
        for k in 0..self.attrs.len() {
            let attr = self.attrs[k];
            if attr.colon == 0 || attr.declaration {
                continue;
            }
            let prefix = text(&unit[range(attr.name)][..attr.colon as usize]);
            let ns = self.resolve(Some(prefix), false, inherited);
            if ns == Resolved::Undeclared {
                self.resolved = resolved;
                return Err(XmlError::NotWellFormed("undeclared attribute prefix"));
            }
            resolved.push((k, ns));
        }
        if resolved.len() > 1 {
            // Namespaces in XML §6.3: no two attributes with the same expanded name.
            let mut expanded = SeenNames::with_capacity(resolved.len());
            for &(k, ns) in &resolved {
                let attr = self.attrs[k];
                let local = &unit[range(attr.name)][attr.colon as usize + 1..];
                if !expanded.insert((uri_of(&self.scope, inherited, ns), local)) {
                    self.resolved = resolved;
                    return Err(XmlError::NotWellFormed("two attributes with the same expanded name"));
                }
            }
        }
        self.resolved = resolved;
        Ok(())
    }

    /// Records what the root's start tag said; the caller then records where the tag ends.
    fn root_start(&mut self, ns: Resolved, class: Class, local_len: usize) {
        let ns = match ns {
            Resolved::Binding(i) => Some(ResolvedNs::Own(i)),
            Resolved::Inherited(i) => Some(ResolvedNs::Inherited(i)),
            Resolved::Xml => Some(ResolvedNs::Xml),
            Resolved::NoNamespace | Resolved::Undeclared => None,
        };
        // Only a root that declares something can bind `stream` itself.
        let own_stream = if self.declarations == 0 {
            None
        } else {
            self.scope.lookup("stream").filter(|&i| self.scope.declared_at(i, 1))
        };
        // Field by field: the kept `attrs` allocation stays where it is.
        let root = &mut self.root;
        root.ns = ns;
        root.qname = self.tag_name;
        root.local = self.tag_name.1 - local_len as u32;
        root.class = class;
        root.in_stream_ns = false;
        root.attributes = self.attrs.len();
        root.declarations = self.declarations;
        root.end_name = None;
        root.own_stream = own_stream;
    }

    /// An end tag (its `<` at `start`, its `>` at `gt`) closed the innermost element.
    fn end_tag(&mut self, start: usize, gt: usize) {
        if self.depth == 1 {
            self.root.end_name = Some(start + 2);
        }
        self.end_element(gt);
    }

    /// The innermost element ended at `gt`.
    fn end_element(&mut self, gt: usize) {
        if self.depth == 2 {
            match &mut self.capture {
                Capture::ErrorChild { open, .. } => *open = false,
                Capture::FeatureCuts { cuts, open } => {
                    if let Some(from) = open.take() {
                        cuts.push(from..gt + 1);
                    }
                }
                Capture::Nothing => {}
            }
        }
        // The root's own declarations stay: the caller reads the root's namespace after the end.
        if self.depth > 1 {
            self.scope.leave(self.depth);
        }
        self.open.pop();
        self.depth -= 1;
        self.lex = if self.depth == 0 { Lex::Done } else { Lex::Content };
    }

    /// Character data `unit[from..to]` was read (kept only inside a captured error condition).
    #[inline(always)]
    fn text(&mut self, unit: &[u8], from: usize, to: usize) {
        if matches!(self.capture, Capture::ErrorChild { open: true, .. }) {
            self.keep_text(unit, from, to);
        }
    }

    /// [`Self::text`] inside a `<stream:error>`'s child (out of line: rare).
    #[inline(never)]
    fn keep_text(&mut self, unit: &[u8], from: usize, to: usize) {
        if let Capture::ErrorChild { child: Some((_, kept)), open: true } = &mut self.capture {
            if self.depth == 2 && to > from {
                kept.push_str(&String::from_utf8_lossy(&unit[from..to]));
            }
        }
    }

    /// A reference resolved to `c` in character data.
    fn text_char(&mut self, c: char) {
        if let Capture::ErrorChild { child: Some((_, kept)), open: true } = &mut self.capture {
            if self.depth == 2 {
                kept.push(c);
            }
        }
    }

    // What the checker learnt, once the element is complete.

    /// The namespace the root element is in (`None` if unqualified or bound to "").
    pub fn root_ns<'s>(&'s self, inherited: Option<&'s Inherited>) -> Option<&'s str> {
        let resolved = match self.root.ns? {
            ResolvedNs::Own(i) => Resolved::Binding(i),
            ResolvedNs::Inherited(i) => Resolved::Inherited(i),
            ResolvedNs::Xml => Resolved::Xml,
        };
        uri_of(&self.scope, inherited, resolved).filter(|uri| !uri.is_empty())
    }

    /// The root's qualified name, in `unit` (the checked element, as text).
    pub fn root_qname<'u>(&self, unit: &'u str) -> &'u str {
        unit.get(range(self.root.qname)).unwrap_or("")
    }

    /// The root's qualified name and local name, in `unit`.
    pub fn root_names<'u>(&self, unit: &'u str) -> (&'u str, &'u str) {
        let qname = self.root_qname(unit);
        (qname, qname.get(self.root.local as usize..).unwrap_or(""))
    }

    /// The root's local name, in `unit`.
    pub fn root_local<'u>(&self, unit: &'u str) -> &'u str {
        let (start, len) = self.root.qname;
        unit.get((start + self.root.local) as usize..(start + len) as usize).unwrap_or("")
    }

    /// What the root is, as far as the gateway cares.
    pub fn root_class(&self) -> Class {
        self.root.class
    }

    /// Whether the root is in the stream namespace (whatever its name).
    pub fn root_in_stream_ns(&self) -> bool {
        self.root.in_stream_ns
    }

    /// The offset of the `>` ending the root's start tag.
    #[cfg(test)]
    pub fn root_tag_end(&self) -> usize {
        self.root.tag_end
    }

    /// Whether the root is an empty-element tag (`<x/>`).
    pub fn root_empty(&self) -> bool {
        self.root.empty
    }

    /// The offset of the name in the root's end tag (after `</`), if it has one.
    pub fn root_end_name(&self) -> Option<usize> {
        self.root.end_name
    }

    /// Attributes on the root's start tag, namespace declarations included.
    pub fn root_attributes(&self) -> usize {
        self.root.attributes
    }

    /// Namespace declarations on the root's start tag.
    pub fn root_declarations(&self) -> usize {
        self.root.declarations
    }

    /// The namespace the root itself binds the `stream` prefix to, if it does.
    pub fn root_stream_declaration(&self) -> Option<&str> {
        self.root.own_stream.map(|i| self.scope.uri(i))
    }

    /// The inherited declarations a name in the element resolved to.
    pub fn inherited_used(&self) -> &UsedSet {
        &self.used
    }

    /// For a `<stream:error>`: the local name of its condition element and that element's
    /// direct character data.
    pub fn error_child(&self) -> Option<(&str, &str)> {
        match &self.capture {
            Capture::ErrorChild { child: Some((name, text)), .. } => Some((name, text)),
            _ => None,
        }
    }

    /// For a `<stream:features>`: the byte ranges of the children D15 removes, in order.
    pub fn feature_cuts(&self) -> &[Range<usize>] {
        match &self.capture {
            Capture::FeatureCuts { cuts, .. } => cuts,
            _ => &[],
        }
    }

    /// The root's attributes named in `wanted` and (when `with_declarations`) its namespace
    /// declarations, values unescaped, in document order (kept only for a stream header and
    /// `<open/>`). Names and values are borrowed from `unit` (the text [`Self::advance`] read);
    /// only a value that had references or literal whitespace to normalise is made anew. Nothing
    /// is made for the attributes not asked for, however many there are.
    pub fn root_attrs<'u>(
        &self,
        unit: &'u str,
        wanted: &[&str],
        with_declarations: bool,
    ) -> Result<(Vec<RootAttr<'u>>, Vec<RootDeclaration<'u>>), XmlError> {
        let (mut attrs, mut declarations) = (Vec::new(), Vec::new());
        self.each_root_attr(unit, wanted, with_declarations, |item| match item {
            RootItem::Attr(name, value) => attrs.push((name, value)),
            RootItem::Declaration(prefix, uri) => declarations.push((prefix, uri)),
        })?;
        Ok((attrs, declarations))
    }

    /// [`Self::root_attrs`] one at a time, in document order, into `each`: nothing collected.
    pub fn each_root_attr<'u>(
        &self,
        unit: &'u str,
        wanted: &[&str],
        with_declarations: bool,
        mut each: impl FnMut(RootItem<'u>),
    ) -> Result<(), XmlError> {
        // Spans end at ASCII delimiters, so on char boundaries; `get` keeps this panic-free.
        let text_at = |span| unit.get(range(span)).unwrap_or("");
        for attr in &self.root.attrs {
            let name = text_at(attr.name);
            if if attr.declaration { !with_declarations } else { !wanted.contains(&name) } {
                continue;
            }
            let value = value_text(text_at(attr.value), attr.normalise)?;
            each(if !attr.declaration {
                RootItem::Attr(name, value)
            } else if attr.colon == 0 {
                RootItem::Declaration(None, value)
            } else {
                RootItem::Declaration(name.get(attr.colon as usize + 1..), value)
            });
        }
        Ok(())
    }
}

/// One of the root's attributes or declarations, as [`Checker::each_root_attr`] gives it.
pub enum RootItem<'u> {
    /// An attribute asked for: qualified name, unescaped value.
    Attr(&'u str, Cow<'u, str>),
    /// A namespace declaration: `None` for the default namespace, or the prefix; the namespace
    /// name unescaped.
    Declaration(Option<&'u str>, Cow<'u, str>),
}

/// What an attribute's raw value (without its quotes) means: the text itself, or, when it
/// holds a reference, TAB, LF or CR (`normalise`), the text unescaped and normalised. Always
/// inlined: as a call it changed how the scanner around its caller was compiled, 150 more
/// instructions per stanza that declares nothing (callgrind, benches/stanza.rs).
#[inline(always)]
fn value_text(raw: &str, normalise: bool) -> Result<Cow<'_, str>, XmlError> {
    if normalise {
        unescape_attr(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// A root attribute as [`Checker::root_attrs`] gives it: qualified name, unescaped value.
pub type RootAttr<'u> = (&'u str, Cow<'u, str>);

/// A root namespace declaration as [`Checker::root_attrs`] gives it: `(None, uri)` for the
/// default namespace, `(Some(prefix), uri)` otherwise.
pub type RootDeclaration<'u> = (Option<&'u str>, Cow<'u, str>);

/// The namespace name a [`Resolved`] stands for (`None`: no namespace or undeclared).
fn uri_of<'s>(scope: &'s Bindings, inherited: Option<&'s Inherited>, resolved: Resolved) -> Option<&'s str> {
    match resolved {
        Resolved::Binding(i) => Some(scope.uri(i)),
        Resolved::Inherited(i) => inherited.map(|outer| outer.uri(i)),
        Resolved::Xml => Some(NS_XML),
        Resolved::NoNamespace | Resolved::Undeclared => None,
    }
}

/// The constraints of Namespaces in XML 1.0 §3 on declaring `prefix` (`""`: the default
/// namespace) as `uri`. Ok(false) for a declaration that is legal but changes nothing
/// (`xmlns:xml` with its own namespace).
fn check_declaration(prefix: &str, uri: &str) -> Result<bool, XmlError> {
    match prefix {
        "xmlns" => Err(XmlError::NotWellFormed("the xmlns prefix declared")),
        "xml" if uri == NS_XML => Ok(false),
        "xml" => Err(XmlError::NotWellFormed("the xml prefix bound to another namespace")),
        _ if uri == NS_XML || uri == NS_XMLNS => {
            Err(XmlError::NotWellFormed("a reserved namespace bound to another prefix"))
        }
        "" => Ok(true),
        _ if uri.is_empty() => Err(XmlError::NotWellFormed("namespace prefix bound to the empty name")),
        _ => Ok(true),
    }
}
