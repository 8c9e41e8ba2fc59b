//! Incremental splitter for the server's RFC 6120 byte stream.
//!
//! Bytes arrive in arbitrary TCP chunks; the splitter yields the stream header, each complete
//! top-level element as a standalone XML document (CONFORMANCE D: the namespace declarations it
//! inherited from the header and uses added to its start tag), and the end of the stream.
//! Whitespace between elements is dropped (KA-1). Cost is linear in the input whatever the
//! chunking and whatever the shape of the XML, and buffering is bounded by [`SplitterLimits`].
//! No I/O, no tokio.
//!
//! This module is the byte-level lexer that finds where units end; `completion` checks and
//! namespace-completes a finished unit, `types` holds the limits and events.

mod completion;
#[cfg(test)]
mod tests;
mod types;

pub use types::{ServerElement, ServerElementKind, ServerEvent, SplitterLimits, StreamHeader};

use super::error::XmlError;
use super::lexical::{check_decl, DeclError};
use completion::{complete_element, parse_header, HeaderScope};

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
