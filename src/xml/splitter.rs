//! Incremental splitter for the server's RFC 6120 byte stream.
//!
//! Bytes arrive in arbitrary TCP chunks; the splitter yields the stream header, each complete
//! top-level element as a standalone XML document (CONFORMANCE D: the namespace declarations it
//! inherited from the header and uses added to its start tag), and the end of the stream.
//! Whitespace between elements is dropped (KA-1). Cost is linear in the input whatever the
//! chunking and whatever the shape of the XML, and buffering is bounded by [`SplitterLimits`].
//! No I/O, no tokio.

use super::condition::StreamCondition;
use super::error::XmlError;
use super::framing::escape_attr;
use super::lexical::{check_decl, DeclError};
use super::scope::Inherited;
use super::wf::{self, WfLimits};
use super::{DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_NAMESPACE_DECLARATIONS, NS_SASL, NS_STREAM, NS_TLS};

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
    fn wf(&self) -> WfLimits {
        WfLimits {
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_namespace_declarations: self.max_namespace_declarations,
        }
    }
}

/// The attributes and namespace declarations of a server's stream header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// Every namespace declaration on the header, in document order: `(None, uri)` for the
    /// default namespace, `(Some(prefix), uri)` for `xmlns:prefix`. Values are unescaped.
    pub namespaces: Vec<(Option<String>, String)>,
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

/// The incremental splitter. Feed bytes, then drain events until `Ok(None)`.
///
/// How it works: a byte-level lexer finds the boundaries of the stream header and of each
/// top-level element (tracking quotes in tags, CDATA sections and nesting depth), keeping its
/// state between [`feed`](Self::feed) calls so every byte is scanned once whatever the chunking.
/// When a unit is complete its bytes are checked as UTF-8, then by the same well-formedness,
/// restricted-XML and per-element rules as client messages, inside the namespace scope of the
/// header, and finally namespace-completed (the header's declarations it uses added to the start
/// tag, NS-1/NS-3): what is emitted is what was validated plus declarations that were validated
/// with the header.
///
/// Invariants:
/// - `start <= pos <= buf.len()`; bytes before `start` are consumed and may be compacted away;
///   bytes `start..pos` belong to the unit being scanned (or are nothing when `lex` is `Idle`).
/// - Buffered bytes stay bounded by the unit limit plus one feed, as long as the caller drains
///   events after each feed: the limit is checked every time the lexer runs out of bytes.
/// - Whitespace between top-level elements is consumed (never emitted) when the lexer passes it.
/// - After an error every call returns that error; [`expect_new_stream`](Self::expect_new_stream)
///   does not clear it.
#[derive(Debug)]
pub struct StreamSplitter {
    limits: SplitterLimits,
    buf: Vec<u8>,
    /// First byte not yet consumed into an event.
    start: usize,
    /// Next byte for the lexer to look at.
    pos: usize,
    /// Start of the markup construct being lexed (`<` of a tag, CDATA section, declaration).
    tag_start: usize,
    /// Index of the `>` closing the current top-level element's start tag.
    root_tag_end: usize,
    /// Open elements of the current top-level element.
    depth: usize,
    lex: Lex,
    phase: Phase,
    /// Bytes of the prolog (declaration, whitespace) already consumed, counted against
    /// `max_header_bytes` together with the header start tag.
    prolog_bytes: usize,
    /// Whether an XML declaration may still come (only at the very first byte of a stream).
    decl_allowed: bool,
    poisoned: Option<XmlError>,
}

/// Where the lexer is inside the current unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between units: whitespace is skipped, `<` starts a unit.
    Idle,
    /// Just after `<`.
    Lt,
    /// After `<!`: a CDATA section (allowed in elements), or a comment/DTD (refused).
    Bang,
    /// After `<?` in the prolog: an XML declaration.
    Decl,
    /// Inside a start tag; `quote` is the open attribute quote, if any.
    StartTag { quote: Option<u8> },
    /// Inside an end tag.
    EndTag,
    /// Character data inside an element.
    Content,
    /// Inside a CDATA section.
    CData,
}

/// Which part of the stream comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before the header: optional declaration, whitespace, the header.
    Prolog,
    /// After the header: top-level elements, the end tag.
    Stream(HeaderScope),
    /// After the stream's end tag: only whitespace may follow.
    Ended,
}

/// What the rest of the stream needs from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderScope {
    /// The header's qualified name, which the stream end tag must repeat.
    qname: String,
    /// The header's namespace declarations, in document order, indexed.
    inherited: Inherited,
    /// Each of `bindings` written out as namespace completion adds it (` xmlns:p="uri"`), made
    /// once per stream instead of once per element.
    declarations: Vec<String>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl StreamSplitter {
    /// A splitter expecting a stream header (optionally preceded by an XML declaration).
    pub fn new(limits: SplitterLimits) -> Self {
        StreamSplitter {
            limits,
            buf: Vec::new(),
            start: 0,
            pos: 0,
            tag_start: 0,
            root_tag_end: 0,
            depth: 0,
            lex: Lex::Idle,
            phase: Phase::Prolog,
            prolog_bytes: 0,
            decl_allowed: true,
            poisoned: None,
        }
    }

    /// Appends bytes read from the server. Bytes fed to a poisoned splitter are dropped.
    #[inline]
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.poisoned.is_some() {
            return;
        }
        // Compact only when the consumed prefix is at least half the buffer, so each byte is
        // moved at most a constant number of times (amortised linear cost).
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.compact();
        }
        // A one-byte read is a plain push, without the general copy's call into memcpy.
        match bytes {
            [b] => self.buf.push(*b),
            _ => self.buf.extend_from_slice(bytes),
        }
    }

    /// Drops the consumed prefix `..start` of the buffer.
    #[cold]
    #[inline(never)]
    fn compact(&mut self) {
        let shift = self.start;
        self.buf.drain(..shift);
        self.start = 0;
        self.pos -= shift;
        self.tag_start = self.tag_start.saturating_sub(shift);
        self.root_tag_end = self.root_tag_end.saturating_sub(shift);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed. After an error the
    /// splitter is poisoned and keeps returning that error.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        if let Some(err) = &self.poisoned {
            return Err(*err);
        }
        // Returned as it is (no unwrapping and re-wrapping of the large event type).
        let result = self.lex_unit();
        if let Err(err) = &result {
            self.poison(*err);
        }
        result
    }

    /// Records `err` and frees the buffer: every later call returns `err`.
    #[cold]
    #[inline(never)]
    fn poison(&mut self, err: XmlError) {
        self.poisoned = Some(err);
        self.buf = Vec::new();
        self.start = 0;
        self.pos = 0;
    }

    /// Forget the current stream and expect a new header: called after `<proceed/>` (the TLS
    /// layer starts a fresh byte stream) and after SASL `<success/>` (RFC 6120 §6.4.6).
    ///
    /// Buffered bytes are discarded (after `<proceed/>` they would be plaintext injected before
    /// TLS, TV-14; check [`buffered_len`](Self::buffered_len) first to detect them). A poisoned
    /// splitter stays poisoned.
    pub fn expect_new_stream(&mut self) {
        let poisoned = self.poisoned.take();
        *self = StreamSplitter::new(self.limits);
        self.poisoned = poisoned;
    }

    /// Bytes fed but not yet returned in an event (used to detect data injected after
    /// `<proceed/>`, TV-14). Whitespace after the last event counts until the lexer has passed it
    /// (on the next call to [`next_event`](Self::next_event)).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Runs the lexer until an event is complete or the bytes run out.
    fn lex_unit(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                self.check_pending_size()?;
                return Ok(None);
            };
            match self.lex {
                Lex::Idle => {
                    if is_space(b) {
                        self.pos += 1;
                        self.start = self.pos;
                        if matches!(self.phase, Phase::Prolog) {
                            self.decl_allowed = false;
                            self.prolog_bytes += 1;
                        }
                    } else if b == b'<' && !matches!(self.phase, Phase::Ended) {
                        self.tag_start = self.pos;
                        self.pos += 1;
                        self.lex = Lex::Lt;
                    } else if matches!(self.phase, Phase::Ended) {
                        return Err(XmlError::NotWellFormed("data after the end of the stream"));
                    } else {
                        return Err(XmlError::NotWellFormed("text outside elements"));
                    }
                }
                Lex::Lt => match b {
                    b'/' => {
                        if matches!(self.phase, Phase::Prolog) {
                            return Err(XmlError::NotWellFormed("end tag before the header"));
                        }
                        self.pos += 1;
                        self.lex = Lex::EndTag;
                    }
                    b'!' => {
                        self.pos += 1;
                        self.lex = Lex::Bang;
                    }
                    b'?' => {
                        if matches!(self.phase, Phase::Prolog) && self.decl_allowed {
                            self.pos += 1;
                            self.lex = Lex::Decl;
                        } else {
                            return Err(XmlError::RestrictedXml("processing instruction"));
                        }
                    }
                    _ => self.lex = Lex::StartTag { quote: None },
                },
                Lex::Bang => self.lex_bang()?,
                Lex::Decl => {
                    if let Some(()) = self.lex_decl()? {
                        continue;
                    }
                    self.check_pending_size()?;
                    return Ok(None);
                }
                Lex::StartTag { quote } => {
                    if let Some(event) = self.lex_start_tag(quote)? {
                        return Ok(Some(event));
                    }
                }
                Lex::EndTag => {
                    if let Some(event) = self.lex_end_tag()? {
                        return Ok(Some(event));
                    }
                }
                Lex::Content => match self.buf[self.pos..].iter().position(|&c| c == b'<') {
                    Some(offset) => {
                        self.tag_start = self.pos + offset;
                        self.pos = self.tag_start + 1;
                        self.lex = Lex::Lt;
                    }
                    None => self.pos = self.buf.len(),
                },
                Lex::CData => match find(&self.buf[self.pos..], b"]]>") {
                    Some(offset) => {
                        self.pos += offset + 3;
                        self.lex = Lex::Content;
                    }
                    None => {
                        // Keep the last two bytes: they may be the start of a split `]]>`.
                        self.pos = self.pos.max(self.buf.len().saturating_sub(2));
                        self.check_pending_size()?;
                        return Ok(None);
                    }
                },
            }
            // Checked here too so that an oversized unit in one big feed fails promptly. When the
            // bytes have run out that check is also the whole of the next turn of the loop, so
            // return at once (the common case with small reads).
            if self.pos == self.buf.len() {
                self.check_pending_size()?;
                return Ok(None);
            }
            if matches!(self.lex, Lex::Idle) {
                self.check_pending_size()?;
            }
        }
    }

    /// Refuses a unit in progress that is already over its limit.
    #[inline]
    fn check_pending_size(&self) -> Result<(), XmlError> {
        let pending = self.pos - self.start;
        let over = match self.phase {
            Phase::Prolog => self.prolog_bytes + pending > self.limits.max_header_bytes,
            Phase::Stream(_) => pending > self.limits.max_element_bytes,
            Phase::Ended => false,
        };
        if over {
            Err(XmlError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// After `<!`: CDATA inside an element, anything else refused.
    fn lex_bang(&mut self) -> Result<(), XmlError> {
        const CDATA: &[u8] = b"<![CDATA[";
        let seen = &self.buf[self.tag_start..];
        match seen.get(2) {
            Some(b'[') => {
                if self.depth == 0 {
                    return Err(XmlError::NotWellFormed("CDATA outside elements"));
                }
                let n = seen.len().min(CDATA.len());
                if seen[..n] != CDATA[..n] {
                    return Err(XmlError::NotWellFormed("malformed CDATA section"));
                }
                if n == CDATA.len() {
                    self.pos = self.tag_start + CDATA.len();
                    self.lex = Lex::CData;
                } else {
                    self.pos = self.buf.len();
                }
                Ok(())
            }
            Some(b'-') => Err(XmlError::RestrictedXml("comment")),
            Some(_) => Err(XmlError::RestrictedXml("document type declaration")),
            None => {
                self.pos = self.buf.len();
                Ok(())
            }
        }
    }

    /// After `<?` at the first byte of a stream: an XML declaration. `Some(())` when it was
    /// complete and accepted, `None` when more bytes are needed.
    fn lex_decl(&mut self) -> Result<Option<()>, XmlError> {
        let seen = &self.buf[self.tag_start..];
        if seen.len() < 6 {
            self.pos = self.buf.len();
            return Ok(None);
        }
        if &seen[..5] != b"<?xml" || !is_space(seen[5]) {
            return Err(XmlError::RestrictedXml("processing instruction"));
        }
        // Resume the search one byte back in case `?` ended the previous feed.
        let from = self.pos.max(self.tag_start + 6) - 1;
        let Some(offset) = find(&self.buf[from..], b"?>") else {
            self.pos = self.buf.len();
            return Ok(None);
        };
        let end = from + offset + 2;
        let body = std::str::from_utf8(&self.buf[self.tag_start + 5..end - 2])
            .map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
        check_decl(body).map_err(|e| match e {
            DeclError::NotWellFormed => XmlError::NotWellFormed("malformed XML declaration"),
            DeclError::Standalone => XmlError::RestrictedXml("standalone in the XML declaration"),
            DeclError::UnsupportedEncoding => XmlError::UnsupportedEncoding,
        })?;
        self.prolog_bytes += end - self.start;
        self.start = end;
        self.pos = end;
        self.decl_allowed = false;
        self.lex = Lex::Idle;
        Ok(Some(()))
    }

    /// Inside a start tag: finds its `>` outside quotes.
    fn lex_start_tag(&mut self, mut quote: Option<u8>) -> Result<Option<ServerEvent>, XmlError> {
        let mut i = self.pos;
        let len = self.buf.len();
        while i < len {
            let b = self.buf[i];
            match quote {
                Some(q) => {
                    if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'"' | b'\'' => quote = Some(b),
                    b'<' => return Err(XmlError::NotWellFormed("'<' inside a tag")),
                    b'>' => {
                        self.pos = i + 1;
                        let self_closing = i > self.tag_start + 1 && self.buf[i - 1] == b'/';
                        return self.start_tag_done(i, self_closing);
                    }
                    _ => {}
                },
            }
            i += 1;
        }
        self.pos = len;
        self.lex = Lex::StartTag { quote };
        Ok(None)
    }

    /// A start tag ended at `gt` (the index of its `>`).
    fn start_tag_done(&mut self, gt: usize, self_closing: bool) -> Result<Option<ServerEvent>, XmlError> {
        if matches!(self.phase, Phase::Prolog) {
            self.check_pending_size()?;
            if self_closing {
                return Err(XmlError::NotWellFormed("self-closed stream header"));
            }
            let (header, scope) = parse_header(&self.buf[self.start..=gt], &self.limits)?;
            self.phase = Phase::Stream(scope);
            self.start = self.pos;
            self.lex = Lex::Idle;
            return Ok(Some(ServerEvent::Header(Box::new(header))));
        }
        if self.depth == 0 {
            self.root_tag_end = gt;
        }
        if self_closing {
            if self.depth == 0 {
                return self.element_done().map(Some);
            }
        } else {
            self.depth += 1;
            if self.depth > self.limits.max_depth {
                return Err(XmlError::TooDeep);
            }
        }
        self.lex = Lex::Content;
        Ok(None)
    }

    /// Inside an end tag: finds its `>`.
    fn lex_end_tag(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        let Some(offset) = self.buf[self.pos..].iter().position(|&c| c == b'>') else {
            self.pos = self.buf.len();
            return Ok(None);
        };
        let gt = self.pos + offset;
        self.pos = gt + 1;
        if self.depth == 0 {
            // The stream's own end tag: it must repeat the header's name exactly.
            let Phase::Stream(scope) = &self.phase else {
                return Err(XmlError::NotWellFormed("unexpected end tag"));
            };
            let name = &self.buf[self.tag_start + 2..gt];
            let name = &name[..name.len() - name.iter().rev().take_while(|&&b| is_space(b)).count()];
            if name != scope.qname.as_bytes() {
                return Err(XmlError::NotWellFormed("end tag does not match the header"));
            }
            self.phase = Phase::Ended;
            self.start = self.pos;
            self.lex = Lex::Idle;
            return Ok(Some(ServerEvent::End));
        }
        self.depth -= 1;
        if self.depth == 0 {
            return self.element_done().map(Some);
        }
        self.lex = Lex::Content;
        Ok(None)
    }

    /// The top-level element `start..pos` is complete: check, complete and classify it.
    fn element_done(&mut self) -> Result<ServerEvent, XmlError> {
        if self.pos - self.start > self.limits.max_element_bytes {
            return Err(XmlError::TooLarge);
        }
        let Phase::Stream(scope) = &self.phase else {
            return Err(XmlError::NotWellFormed("element outside a stream"));
        };
        let raw = std::str::from_utf8(&self.buf[self.start..self.pos])
            .map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
        let element = complete_element(raw, self.root_tag_end - self.start, scope, &self.limits)?;
        self.start = self.pos;
        self.lex = Lex::Idle;
        Ok(ServerEvent::Element(element))
    }
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The qualified name at the start of a tag (`bytes` starts with `<`).
fn tag_qname(tag: &str) -> &str {
    let rest = &tag[1..];
    let end = rest.find(|c: char| (c.is_ascii() && is_space(c as u8)) || c == '/' || c == '>').unwrap_or(rest.len());
    &rest[..end]
}

/// Checks the header start tag (`<` to `>`) and extracts what the gateway needs.
fn parse_header(tag: &[u8], limits: &SplitterLimits) -> Result<(StreamHeader, HeaderScope), XmlError> {
    let tag = std::str::from_utf8(tag).map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
    // Checked as the empty element the start tag would be on its own.
    let doc = format!("{}/>", &tag[..tag.len() - 1]);
    let info = wf::check_element(&doc, &WfLimits { max_depth: 1, ..limits.wf() })?;
    if info.ns.as_deref() != Some(NS_STREAM) || info.local != "stream" {
        return Err(XmlError::InvalidNamespace("the stream header is not a stream in the stream namespace"));
    }
    let ns_decls = info.ns_decls()?;
    let mut header = StreamHeader { namespaces: ns_decls.clone(), ..StreamHeader::default() };
    for (name, value) in info.attrs()? {
        match name.as_str() {
            "from" => header.from = Some(value),
            "to" => header.to = Some(value),
            "id" => header.id = Some(value),
            "version" => header.version = Some(value),
            "xml:lang" => header.lang = Some(value),
            _ => {}
        }
    }
    let declarations = ns_decls
        .iter()
        .map(|(prefix, uri)| {
            let mut text = String::new();
            push_declaration(&mut text, prefix.as_deref(), uri);
            text
        })
        .collect();
    let scope = HeaderScope { qname: tag_qname(tag).to_owned(), inherited: Inherited::new(ns_decls), declarations };
    Ok((header, scope))
}

/// Namespace completion of one top-level element (`raw`, whose start tag's `>` is at
/// `tag_end`), then the full check and the classification.
///
/// `raw` is checked in the scope of the header's declarations (what is checked is what is
/// relayed: the declarations added below are the header's, already checked). Every header
/// binding that a name in the element resolves to is then added right after the element name,
/// as `xmlns="..."`/`xmlns:p="..."` (double quotes, `&`, `<`, `"` escaped, NS-1), in the
/// header's order; bindings the element does not use are not added, so the output is at most
/// the element plus the header's declarations, never a copy of them per unused prefix. An
/// element in the stream namespace is renamed to the `stream` prefix (start and end tag of the
/// top-level element only) with `xmlns:stream` declared (NS-3). When `stream` is bound to
/// another namespace on the element or the header, renaming would change the meaning of
/// descendants, so the element keeps its original prefix, which is declared like any other.
/// `xml:lang` is not pushed down (D7).
fn complete_element(
    raw: &str,
    tag_end: usize,
    scope: &HeaderScope,
    limits: &SplitterLimits,
) -> Result<ServerElement, XmlError> {
    let (info, mut used) = wf::check_in_scope(raw, &limits.wf(), Some(&scope.inherited))?;
    let qname = tag_qname(raw);
    let name_end = 1 + qname.len();
    let prefix = qname.split_once(':').map(|(p, _)| p);
    let self_closing = raw[..=tag_end].ends_with("/>");
    let end_name_at = if self_closing {
        None
    } else {
        // The last `</` of an element is its own end tag (no `</` can follow it).
        raw.rfind("</").map(|i| i + 2).filter(|&i| {
            raw[i..].starts_with(qname)
                && raw[i + qname.len()..].starts_with(|c: char| c == '>' || (c.is_ascii() && is_space(c as u8)))
        })
    };
    let in_stream_ns = info.ns.as_deref() == Some(NS_STREAM) && prefix != Some("stream");
    let mut rename = false;
    let mut declare_stream = false;
    if in_stream_ns && (self_closing || end_name_at.is_some()) {
        // Only stream elements (features, errors) get here: reading the root's declarations
        // again is cheap and rare.
        let own = info.ns_decls()?;
        let own_stream = own.iter().find(|(p, _)| p.as_deref() == Some("stream")).map(|(_, uri)| uri.as_str());
        let bindings = scope.inherited.bindings();
        let header_stream = bindings.iter().position(|(p, _)| p.as_deref() == Some("stream"));
        let header_stream_uri = header_stream.map(|i| bindings[i].1.as_str());
        rename = own_stream.unwrap_or(NS_STREAM) == NS_STREAM
            && (own_stream.is_some() || header_stream_uri.unwrap_or(NS_STREAM) == NS_STREAM);
        if rename && own_stream.is_none() {
            match header_stream {
                Some(i) => {
                    if let Err(at) = used.binary_search(&i) {
                        used.insert(at, i);
                    }
                }
                None => declare_stream = true,
            }
        }
    }

    // The caps apply to what is relayed: the declarations added count on the root's start tag.
    let added = used.len() + usize::from(declare_stream);
    if info.attributes + added > limits.max_attributes {
        return Err(XmlError::TooManyAttributes);
    }
    if info.declarations + added > limits.max_namespace_declarations {
        return Err(XmlError::TooManyNamespaceDeclarations);
    }
    let added: usize = used.iter().map(|&i| scope.declarations[i].len()).sum();
    let mut out = String::with_capacity(raw.len() + added + 48);
    out.push('<');
    if rename {
        out.push_str("stream:");
        out.push_str(info.local);
        if declare_stream {
            push_declaration(&mut out, Some("stream"), NS_STREAM);
        }
    } else {
        out.push_str(qname);
    }
    for &i in &used {
        out.push_str(&scope.declarations[i]);
    }
    match (rename, end_name_at) {
        (true, Some(at)) => {
            out.push_str(&raw[name_end..at]);
            out.push_str("stream:");
            out.push_str(info.local);
            out.push_str(&raw[at + qname.len()..]);
        }
        _ => out.push_str(&raw[name_end..]),
    }

    let kind = match (info.ns.as_deref(), info.local) {
        (Some(NS_STREAM), "features") => ServerElementKind::Features,
        (Some(NS_STREAM), "error") => ServerElementKind::StreamError,
        (Some(NS_TLS), "proceed") => ServerElementKind::TlsProceed,
        (Some(NS_TLS), "failure") => ServerElementKind::TlsFailure,
        (Some(NS_SASL), "success") => ServerElementKind::SaslSuccess,
        _ => ServerElementKind::Other,
    };
    let (mut error_condition, mut see_other_host) = (None, None);
    if kind == ServerElementKind::StreamError {
        let (condition, text) = info.error_child.unwrap_or_default();
        let condition = StreamCondition::from_name(&condition);
        if condition == StreamCondition::SeeOtherHost {
            see_other_host = Some(text.trim().to_owned());
        }
        error_condition = Some(condition);
    }
    Ok(ServerElement { xml: out, kind, error_condition, see_other_host })
}

/// Appends ` xmlns="uri"` or ` xmlns:prefix="uri"`, the URI escaped for double quotes.
fn push_declaration(out: &mut String, prefix: Option<&str>, uri: &str) {
    out.push_str(" xmlns");
    if let Some(prefix) = prefix {
        out.push(':');
        out.push_str(prefix);
    }
    out.push_str("=\"");
    escape_attr(out, uri, '"');
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::framing::client_features;
    use super::super::wf::canonical;
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' version='1.0' xml:lang='en'>";
    /// What namespace completion adds to a stanza of [`HEADER`]'s stream: only the default
    /// namespace it uses, not the unused `stream` prefix.
    const DECLS: &str = r#" xmlns="jabber:client""#;

    /// Feeds `chunks` one after the other, draining after each; stops at the first error.
    fn run_chunks<'a>(
        limits: SplitterLimits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<ServerEvent>, Option<XmlError>) {
        let mut splitter = StreamSplitter::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk);
            loop {
                match splitter.next_event() {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(err) => return (events, Some(err)),
                }
            }
        }
        (events, None)
    }

    fn run(input: &str) -> (Vec<ServerEvent>, Option<XmlError>) {
        run_chunks(SplitterLimits::default(), [input.as_bytes()])
    }

    /// The elements of a stream that must split without error.
    fn elements(input: &str) -> Vec<ServerElement> {
        let (events, err) = run(input);
        assert_eq!(err, None, "{input}");
        events
            .into_iter()
            .filter_map(|e| match e {
                ServerEvent::Element(el) => {
                    canonical(&el.xml); // namespace-well-formed on its own
                    Some(el)
                }
                _ => None,
            })
            .collect()
    }

    fn only_element(after_header: &str) -> ServerElement {
        let mut all = elements(&format!("{HEADER}{after_header}"));
        assert_eq!(all.len(), 1, "{after_header}");
        all.remove(0)
    }

    fn error_of(input: &str) -> XmlError {
        let (_, err) = run(input);
        err.unwrap_or_else(|| panic!("no error for {input}"))
    }

    #[test]
    fn tv10_header_and_features() {
        let input = format!(
            "{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>"
        );
        let (events, err) = run(&input);
        assert_eq!(err, None);
        assert_eq!(
            events[0],
            ServerEvent::Header(Box::new(StreamHeader {
                from: Some("example.com".into()),
                to: None,
                id: Some("ID-2".into()),
                version: Some("1.0".into()),
                lang: Some("en".into()),
                namespaces: vec![(None, "jabber:client".into()), (Some("stream".into()), NS_STREAM.into()),],
            }))
        );
        let ServerEvent::Element(features) = &events[1] else { panic!("{events:?}") };
        assert_eq!(features.kind, ServerElementKind::Features);
        let expected = format!("<stream:features xmlns:stream=\"{NS_STREAM}\"><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>");
        assert_eq!(features.xml, expected);
        // TV-20b: relayed to the client unchanged.
        assert_eq!(client_features(features), expected);
        assert_eq!(
            canonical(&features.xml),
            canonical(
                r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns="urn:xmpp:sasl-cb:0"><channel-binding type="tls-exporter"/></sasl-channel-binding></stream:features>"#
            )
        );
    }

    #[test]
    fn tv10_tv14_starttls_then_restart() {
        let mut splitter = StreamSplitter::new(SplitterLimits::default());
        splitter.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='PRE-TLS-ID' from='example.com' version='1.0' xml:lang='en'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
        assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
        assert!(matches!(
            splitter.next_event(),
            Ok(Some(ServerEvent::Element(ServerElement { kind: ServerElementKind::Features, .. })))
        ));
        assert_eq!(splitter.next_event(), Ok(None));
        assert_eq!(splitter.buffered_len(), 0);
        // TV-14: bytes injected after <proceed/> in the same segment stay visible.
        splitter.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>INJECTED</mechanism></mechanisms></stream:features>");
        let Ok(Some(ServerEvent::Element(proceed))) = splitter.next_event() else { panic!() };
        assert_eq!(proceed.kind, ServerElementKind::TlsProceed);
        assert!(splitter.buffered_len() > 0);
        splitter.expect_new_stream();
        assert_eq!(splitter.buffered_len(), 0);
        assert_eq!(splitter.next_event(), Ok(None));
        splitter.feed(HEADER.as_bytes());
        let Ok(Some(ServerEvent::Header(header))) = splitter.next_event() else { panic!() };
        assert_eq!(header.id.as_deref(), Some("ID-2"));
    }

    #[test]
    fn tv16_post_tls_features_filtered() {
        let features = only_element("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        assert_eq!(
            canonical(&client_features(&features)),
            canonical(
                r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>"#
            )
        );
    }

    #[test]
    fn tls_failure_and_sasl_kinds() {
        assert_eq!(
            only_element("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").kind,
            ServerElementKind::TlsFailure
        );
        let success = only_element("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        assert_eq!(success.kind, ServerElementKind::SaslSuccess);
        assert_eq!(success.xml, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        // TV-21: SASL2 success does not restart the stream.
        assert_eq!(
            only_element("<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>juliet@example.com/balcony</authorization-identifier></success>").kind,
            ServerElementKind::Other
        );
    }

    #[test]
    fn tv30_default_namespace_added() {
        let iq = only_element("<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>");
        assert_eq!(
            iq.xml,
            format!("<iq{DECLS} type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>")
        );
        assert_eq!(
            canonical(&iq.xml),
            canonical(
                r#"<iq xmlns="jabber:client" type="result" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><jid>juliet@example.com/balcony</jid></bind></iq>"#
            )
        );
        assert_eq!(iq.kind, ServerElementKind::Other);
    }

    #[test]
    fn tv31_children_inherit_jabber_client() {
        let message = only_element("<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou not Romeo?</body><thread>e0ffe42b</thread></message>");
        assert_eq!(
            canonical(&message.xml),
            "<{jabber:client}message {}from=\"romeo@example.net/orchard\" {}to=\"juliet@example.com/balcony\" {}type=\"chat\"><{jabber:client}body >\"Art thou not Romeo?\"</><{jabber:client}thread >\"e0ffe42b\"</></>"
        );
    }

    #[test]
    fn tv32_stream_error_then_end() {
        let (events, err) = run(&format!("{HEADER}<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced by new connection</text><x xmlns='urn:example:app'/></stream:error></stream:stream>"));
        assert_eq!(err, None);
        assert_eq!(events.len(), 3);
        let ServerEvent::Element(error) = &events[1] else { panic!() };
        assert_eq!(error.kind, ServerElementKind::StreamError);
        assert_eq!(error.error_condition, Some(StreamCondition::Conflict));
        assert_eq!(error.see_other_host, None);
        assert_eq!(
            canonical(&error.xml),
            canonical(
                r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">Replaced by new connection</text><x xmlns="urn:example:app"/></stream:error>"#
            )
        );
        assert_eq!(events[2], ServerEvent::End);
    }

    #[test]
    fn tv97_see_other_host_and_undefined_conditions() {
        let error = only_element("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp2.example.com:5222</see-other-host></stream:error>");
        assert_eq!(error.error_condition, Some(StreamCondition::SeeOtherHost));
        assert_eq!(error.see_other_host.as_deref(), Some("xmpp2.example.com:5222"));
        let odd = only_element("<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>t</text><made-up xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
        assert_eq!(odd.error_condition, Some(StreamCondition::UndefinedCondition));
        let empty = only_element("<stream:error/>");
        assert_eq!(empty.error_condition, Some(StreamCondition::UndefinedCondition));
    }

    #[test]
    fn tv33_prefix_free_header() {
        let (events, err) = run("<stream xmlns='http://etherx.jabber.org/streams' id='ID-P' from='example.com' version='1.0' xml:lang='en'><features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features><message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message></stream>");
        assert_eq!(err, None);
        assert_eq!(events.len(), 4);
        let ServerEvent::Header(header) = &events[0] else { panic!() };
        assert_eq!(header.id.as_deref(), Some("ID-P"));
        let ServerEvent::Element(features) = &events[1] else { panic!() };
        assert_eq!(features.kind, ServerElementKind::Features);
        assert_eq!(
            features.xml,
            r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams" xmlns="http://etherx.jabber.org/streams"><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"#
        );
        let ServerEvent::Element(message) = &events[2] else { panic!() };
        assert_eq!(message.xml, "<message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message>");
        assert_eq!(events[3], ServerEvent::End);
    }

    #[test]
    fn tv34_other_prefix() {
        let (events, err) = run("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns='jabber:client' id='ID-Q' from='example.com' version='1.0' xml:lang='en'><ns0:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ns0:x/></ns0:features></ns0:stream>");
        assert_eq!(err, None);
        let ServerEvent::Element(features) = &events[1] else { panic!() };
        assert_eq!(features.kind, ServerElementKind::Features);
        assert_eq!(
            features.xml,
            r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams" xmlns:ns0="http://etherx.jabber.org/streams"><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ns0:x/></stream:features>"#
        );
        assert_eq!(events[2], ServerEvent::End);
        // The end tag must repeat the header's name.
        assert!(matches!(
            error_of("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams'></stream:stream>"),
            XmlError::NotWellFormed(_)
        ));
    }

    #[test]
    fn ns3_clash_keeps_the_original_prefix() {
        let (events, err) = run("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns:stream='urn:other' xmlns='jabber:client'><ns0:features><stream:x/></ns0:features>");
        assert_eq!(err, None);
        let ServerEvent::Element(features) = &events[1] else { panic!() };
        assert_eq!(
            features.xml,
            r#"<ns0:features xmlns:ns0="http://etherx.jabber.org/streams" xmlns:stream="urn:other"><stream:x/></ns0:features>"#
        );
        assert_eq!(features.kind, ServerElementKind::Features);
        let element =
            only_element("<ns1:features xmlns:ns1='http://etherx.jabber.org/streams' xmlns:stream='urn:other'/>");
        assert_eq!(
            element.xml,
            r#"<ns1:features xmlns:ns1='http://etherx.jabber.org/streams' xmlns:stream='urn:other'/>"#
        );
    }

    #[test]
    fn tv35_extra_header_prefix() {
        let (events, err) = run("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:example:foo' id='x'><message><foo:x/></message>");
        assert_eq!(err, None);
        let ServerEvent::Element(message) = &events[1] else { panic!() };
        assert_eq!(message.xml, r#"<message xmlns="jabber:client" xmlns:foo="urn:example:foo"><foo:x/></message>"#);
        assert_eq!(
            canonical(&message.xml),
            canonical(r#"<message xmlns="jabber:client"><foo:x xmlns:foo="urn:example:foo"/></message>"#)
        );
    }

    #[test]
    fn tv36_language_not_pushed_down() {
        // DECISIONS D7: the client has the header's xml:lang from <open/>.
        let message = only_element("<message><body>Hallo</body></message>");
        assert!(!message.xml.contains("xml:lang"));
    }

    #[test]
    fn tv37_features_children_keep_default_namespace() {
        let features = only_element("<stream:features><foo/></stream:features>");
        assert_eq!(
            features.xml,
            format!("<stream:features{DECLS} xmlns:stream=\"{NS_STREAM}\"><foo/></stream:features>")
        );
        assert!(canonical(&features.xml).contains("<{jabber:client}foo >"));
    }

    #[test]
    fn own_declarations_win() {
        let message = only_element("<message xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'/>");
        assert_eq!(message.xml, "<message xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'/>");
    }

    #[test]
    fn tv40_whitespace_is_dropped() {
        let (events, err) = run(&format!("{HEADER}\n \n<presence/> \t\r\n<presence/> "));
        assert_eq!(err, None);
        assert_eq!(events.len(), 3);
        for event in &events[1..] {
            let ServerEvent::Element(el) = event else { panic!() };
            assert!(el.xml.starts_with("<presence "));
        }
    }

    #[test]
    fn tv41_pretty_printed_features() {
        let features = only_element("<stream:features>\n  <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\n    <mechanism>PLAIN</mechanism>\n  </mechanisms>\n</stream:features>\n");
        assert!(canonical(&features.xml).contains("<{urn:ietf:params:xml:ns:xmpp-sasl}mechanism >\"PLAIN\"</>"));
    }

    #[test]
    fn tv50_utf8_split_across_feeds() {
        let input = format!("{HEADER}<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou 😀</body><thread>e0ffe42b</thread></message>");
        let (events, err) = run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1));
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        let ServerEvent::Element(message) = &events[1] else { panic!() };
        assert!(canonical(&message.xml).contains("\"Art thou 😀\""));
    }

    #[test]
    fn tv51_several_elements_in_one_feed() {
        let all = elements(&format!("{HEADER}<presence from='a@example.com/x'/><presence from='b@example.com/y'/><message from='c@example.com/z'><body>3</body></message>"));
        let xml: Vec<&str> = all.iter().map(|e| e.xml.as_str()).collect();
        assert_eq!(
            xml,
            [
                format!("<presence{DECLS} from='a@example.com/x'/>"),
                format!("<presence{DECLS} from='b@example.com/y'/>"),
                format!("<message{DECLS} from='c@example.com/z'><body>3</body></message>"),
            ]
        );
    }

    #[test]
    fn tv52_tv53_markup_in_attribute_values() {
        let iq = only_element("<iq type='result' id='7b0d57bb>fabe' to='juliet@example.com/balcony'/>");
        assert!(canonical(&iq.xml).contains("{}id=\"7b0d57bb>fabe\""));
        let presence = only_element("<presence id='a/>b'/>");
        assert_eq!(presence.xml, format!("<presence{DECLS} id='a/>b'/>"));
        let quoted = only_element(r#"<presence id="a'/>b"/>"#);
        assert!(canonical(&quoted.xml).contains(r#"{}id="a'/>b""#));
    }

    #[test]
    fn tv54_cdata_with_markup() {
        let message =
            only_element("<message><body><![CDATA[</message><message to='evil@example.org'>]]></body></message>");
        assert!(canonical(&message.xml).contains(r#""</message><message to='evil@example.org'>""#));
    }

    #[test]
    fn tv55_entities() {
        let message =
            only_element("<message><body>a &amp; b &lt;c&gt; &#x1F600; &#233; &apos;q&apos; &quot;</body></message>");
        assert!(canonical(&message.xml).contains(r#""a & b <c> 😀 é 'q' \"""#));
    }

    #[test]
    fn tv56_tv57_tv58_references_survive_relay() {
        let message = only_element("<message id='l1&#10;l2&#9;t'/>");
        assert!(canonical(&message.xml).contains(r#"{}id="l1\nl2\tt""#));
        let cr = only_element("<message><body>a&#13;b</body></message>");
        assert!(canonical(&cr.xml).contains(r#""a\rb""#));
        let brackets = only_element("<message><body>x ]]&gt; y</body></message>");
        assert!(canonical(&brackets.xml).contains(r#""x ]]> y""#));
    }

    #[test]
    fn tv59_restricted_xml() {
        for body in [
            "<message><!-- x --><body>y</body></message>",
            "<!-- x -->",
            "<message><?php x?></message>",
            "<?php x?>",
            "<message><!DOCTYPE x></message>",
            "<message><body>&nbsp;</body></message>",
        ] {
            assert!(matches!(error_of(&format!("{HEADER}{body}")), XmlError::RestrictedXml(_)), "{body}");
        }
        assert!(matches!(
            error_of("<!DOCTYPE stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
            XmlError::RestrictedXml(_)
        ));
        assert!(matches!(
            error_of(
                "<?xml version='1.0' standalone='yes'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"
            ),
            XmlError::RestrictedXml(_)
        ));
        // A declaration not at the very first byte is a processing instruction.
        assert!(matches!(
            error_of(" <?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
            XmlError::RestrictedXml(_)
        ));
    }

    #[test]
    fn not_well_formed_input() {
        for body in [
            "text",
            "<message><body>x</message></body>",
            "<message id='1' id='2'/>",
            "<foo:x/>",
            "<message><body>\u{1}</body></message>",
            "<message><body>&#0;</body></message>",
            "<message><body>&#xFFFF;</body></message>",
            "<message a='<'/>",
            "<![CDATA[x]]>",
            "<message><![CDAT[x]]></message>",
            "</stream>",
            "<message>a & b</message>",
        ] {
            assert!(matches!(error_of(&format!("{HEADER}{body}")), XmlError::NotWellFormed(_)), "{body}");
        }
        let mut invalid_utf8 = HEADER.as_bytes().to_vec();
        invalid_utf8.extend_from_slice(b"<message><body>\xC3\x28</body></message>");
        let (_, err) = run_chunks(SplitterLimits::default(), [invalid_utf8.as_slice()]);
        assert!(matches!(err, Some(XmlError::NotWellFormed(_))));
        assert!(matches!(error_of(&format!("{HEADER}</stream:stream><presence/>")), XmlError::NotWellFormed(_)));
    }

    #[test]
    fn header_checks() {
        assert!(matches!(error_of("<stream:stream xmlns:stream='jabber:client'>"), XmlError::InvalidNamespace(_)));
        assert!(matches!(
            error_of("<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>"),
            XmlError::InvalidNamespace(_)
        ));
        assert_eq!(
            error_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
            XmlError::UnsupportedEncoding
        );
        assert!(matches!(error_of("<stream:stream xmlns='jabber:client'>"), XmlError::NotWellFormed(_)));
        assert!(matches!(
            error_of("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(error_of("hello"), XmlError::NotWellFormed(_)));
        // Whitespace before the header and an upper-case encoding are fine; attributes unescaped.
        let (events, err) = run("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='a&amp;b' to=\"x'y\">");
        assert_eq!(err, None);
        let ServerEvent::Header(header) = &events[0] else { panic!() };
        assert_eq!(header.from.as_deref(), Some("a&b"));
        assert_eq!(header.to.as_deref(), Some("x'y"));
    }

    #[test]
    fn limits() {
        let limits =
            SplitterLimits { max_element_bytes: 100, max_header_bytes: 300, max_depth: 3, ..SplitterLimits::default() };
        let ok = format!("{HEADER}<a><b><c/></b></a>");
        assert_eq!(run_chunks(limits, [ok.as_bytes()]).1, None);
        let deep = format!("{HEADER}<a><b><c><d/></c></b></a>");
        assert_eq!(run_chunks(limits, [deep.as_bytes()]).1, Some(XmlError::TooDeep));
        let exact = format!("{HEADER}<a>{}</a>", "x".repeat(93));
        assert_eq!(run_chunks(limits, [exact.as_bytes()]).1, None);
        let big = format!("{HEADER}<a>{}</a>", "x".repeat(94));
        assert_eq!(run_chunks(limits, [big.as_bytes()]).1, Some(XmlError::TooLarge));
        let big_header =
            format!("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='{}'>", "x".repeat(300));
        assert_eq!(run_chunks(limits, [big_header.as_bytes()]).1, Some(XmlError::TooLarge));
        let endless_prolog = " ".repeat(400);
        assert_eq!(run_chunks(limits, [endless_prolog.as_bytes()]).1, Some(XmlError::TooLarge));
    }

    #[test]
    fn caps_count_the_declarations_that_namespace_completion_adds() {
        let limits = SplitterLimits { max_attributes: 4, max_namespace_declarations: 2, ..SplitterLimits::default() };
        let small_header = format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>");
        let stream = |element: &str| format!("{small_header}{element}");
        // Three attributes plus the default namespace added: four, at the cap.
        assert_eq!(run_chunks(limits, [stream("<message a='1' b='2' c='3'/>").as_bytes()]).1, None);
        assert_eq!(
            run_chunks(limits, [stream("<message a='1' b='2' c='3' d='4'/>").as_bytes()]).1,
            Some(XmlError::TooManyAttributes)
        );
        // Declaring its own default namespace adds nothing.
        assert_eq!(run_chunks(limits, [stream("<m xmlns='urn:m' a='1' b='2' c='3'/>").as_bytes()]).1, None);
        assert_eq!(
            run_chunks(limits, [stream("<m xmlns:p='urn:p' xmlns:q='urn:q'/>").as_bytes()]).1,
            Some(XmlError::TooManyNamespaceDeclarations)
        );
        // The header itself is held to the caps.
        let header =
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:x'>";
        assert_eq!(run_chunks(limits, [header.as_bytes()]).1, Some(XmlError::TooManyNamespaceDeclarations));
    }

    #[test]
    fn a_header_with_many_declarations_costs_elements_only_what_they_use() {
        let limits =
            SplitterLimits { max_attributes: 1000, max_namespace_declarations: 1000, ..SplitterLimits::default() };
        let declarations: String = (0..300).map(|i| format!(" xmlns:p{i}='u:{i}'")).collect();
        let header = format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'{declarations}>");
        let (events, err) = run_chunks(limits, [format!("{header}<a/><p7:b p299:c=''/>").as_bytes()]);
        assert_eq!(err, None);
        let xml: Vec<&str> = events[1..]
            .iter()
            .map(|event| match event {
                ServerEvent::Element(element) => element.xml.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(xml, [r#"<a xmlns="jabber:client"/>"#, r#"<p7:b xmlns:p7="u:7" xmlns:p299="u:299" p299:c=''/>"#]);
    }

    #[test]
    fn oversized_element_is_refused_before_it_ends_and_memory_stays_bounded() {
        let limits = SplitterLimits::default();
        let mut splitter = StreamSplitter::new(limits);
        splitter.feed(HEADER.as_bytes());
        assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
        splitter.feed(b"<message><body>");
        let chunk = vec![b'A'; 4096];
        let mut fed = 0;
        let err = loop {
            splitter.feed(&chunk);
            fed += chunk.len();
            assert!(splitter.buffered_len() <= limits.max_element_bytes + chunk.len());
            match splitter.next_event() {
                Ok(None) => {}
                Ok(Some(event)) => panic!("{event:?}"),
                Err(err) => break err,
            }
            assert!(fed < 2 * limits.max_element_bytes, "never refused");
        };
        assert_eq!(err, XmlError::TooLarge);
        assert!(fed <= limits.max_element_bytes + chunk.len());
        // Poisoned: the same error again, and nothing more is buffered.
        splitter.feed(&chunk);
        assert_eq!(splitter.buffered_len(), 0);
        assert_eq!(splitter.next_event(), Err(XmlError::TooLarge));
        splitter.expect_new_stream();
        assert_eq!(splitter.next_event(), Err(XmlError::TooLarge));
    }

    #[test]
    fn one_byte_feeds_of_a_large_element_are_linear() {
        // 256 KiB minus some slack, with CDATA and attributes so every lexer state is exercised.
        let mut body = String::new();
        while body.len() < 250 * 1024 {
            body.push_str("<x a='1>2' b=\"/>\">t&amp;<![CDATA[<y>]]]]></x>");
        }
        let input = format!("{HEADER}<message>{body}</message>");
        let started = std::time::Instant::now();
        let (events, err) = run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1));
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        // A quadratic rescan would take minutes here; linear takes well under a second.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn deep_nesting_within_limits_does_not_recurse() {
        let limits = SplitterLimits { max_depth: 20_000, ..SplitterLimits::default() };
        let n = 10_000;
        let input = format!("{HEADER}<message>{}{}</message>", "<a>".repeat(n), "</a>".repeat(n));
        assert_eq!(run_chunks(limits, [input.as_bytes()]).1, None);
    }

    /// A realistic server byte stream touching every lexer state.
    fn realistic_stream() -> String {
        [
            HEADER,
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            "\n",
            "<message from='romeo@example.net/orchard' id='7b0d57bb>fabe' type=\"chat\"><body>Art thou 😀 &amp; &#x1F600; &lt;</body><x xmlns='urn:x'><![CDATA[</message><message to='evil'>]]></x></message>",
            " ",
            "<presence id='a/>b'/>",
            "\r\n\t",
            "<iq type='result' id=\"q'>\"><query xmlns='jabber:iq:roster'><item jid='é@example.com' name='Zoë ]] &gt;'/></query></iq>",
            "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp2.example.com:5222</see-other-host></stream:error>",
            "</stream:stream>",
        ]
        .concat()
    }

    #[test]
    fn realistic_stream_in_one_feed() {
        let (events, err) = run(&realistic_stream());
        assert_eq!(err, None);
        assert_eq!(events.len(), 7);
        assert_eq!(events[6], ServerEvent::End);
    }

    #[test]
    fn realistic_stream_one_byte_at_a_time() {
        let input = realistic_stream();
        assert_eq!(run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1)), run(&input));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(mut cuts in proptest::collection::vec(0usize..2000, 0..40)) {
            let input = realistic_stream();
            let bytes = input.as_bytes();
            cuts.iter_mut().for_each(|c| *c %= bytes.len() + 1);
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for cut in cuts {
                chunks.push(&bytes[last..cut]);
                last = cut;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(run_chunks(SplitterLimits::default(), chunks), run(&input));
        }
    }
}
