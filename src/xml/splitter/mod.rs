//! Incremental splitter for the server's RFC 6120 byte stream.
//!
//! Bytes arrive in arbitrary TCP chunks; the splitter yields the stream header, each complete
//! top-level element as a standalone XML document (CONFORMANCE D: the namespace declarations it
//! inherited from the header and uses added to its start tag), and the end of the stream.
//! Whitespace between elements is dropped (KA-1). Cost is linear in the input whatever the
//! chunking and whatever the shape of the XML, and buffering is bounded by [`SplitterLimits`].
//! No I/O, no tokio.
//!
//! This module finds where the stream's units begin and handles what lies between them (the
//! prolog, whitespace, the stream's end tag); inside a unit the one-pass [`Checker`] reads every
//! byte once, checking it and finding where the unit ends, and `completion` namespace-completes
//! and classifies the finished unit from what the checker learnt, without parsing it again.
//! `types` holds the limits and events.

mod completion;
mod spare;
#[cfg(test)]
mod tests;
mod types;

pub use types::{ServerElement, ServerElementKind, ServerEvent, SplitterLimits, StreamHeader};

use super::checker::{Checker, Progress, Unit};
use super::error::XmlError;
use super::lexical::{check_decl, DeclError};
use completion::{complete_element, read_header, HeaderScope};

/// The incremental splitter. Feed bytes, then drain events until `Ok(None)`.
///
/// How it works: between units a small lexer skips whitespace and reads the prolog and the
/// stream's end tag; from the `<` of the stream header or of a top-level element the
/// [`Checker`] reads the unit, resuming at the byte where the previous feed ended, so every byte
/// is scanned once whatever the chunking. It applies the same well-formedness, restricted-XML
/// and per-element rules as to client messages, inside the namespace scope of the header, and
/// finds where the unit ends. A complete unit is checked as UTF-8 and namespace-completed (the
/// header's declarations it uses added to the start tag, NS-1/NS-3) from what the checker
/// learnt: what is emitted is what was validated plus declarations validated with the header.
///
/// Invariants:
/// - `start <= pos <= buf.len()`; bytes before `start` are consumed and may be compacted away;
///   bytes `start..pos` belong to the unit being scanned (or are nothing when `lex` is `Idle`).
/// - Buffered bytes stay bounded by the unit limit plus one feed, as long as the caller drains
///   events until `Ok(None)` after each feed: the limit is checked, and the consumed prefix
///   compacted away, every time the lexer runs out of bytes.
/// - A poisoned splitter holds no buffer (capacity 0): [`Self::feed`] tests only the capacity.
/// - Whitespace between top-level elements is consumed (never emitted) when the lexer passes it.
/// - After an error every call returns that error; [`expect_new_stream`](Self::expect_new_stream)
///   does not clear it.
#[derive(Debug)]
pub struct StreamSplitter {
    limits: SplitterLimits,
    buf: Vec<u8>,
    /// First byte not yet consumed into an event.
    start: usize,
    /// Next byte for the lexer to look at. Inside a unit the checker may not have read up to
    /// here yet: the bytes between are fewer than `DEFERRED_SCAN_BYTES` and none is a `>`.
    pos: usize,
    /// Start of the markup construct being lexed (`<` of a unit, declaration or end tag).
    tag_start: usize,
    lex: Lex,
    phase: Phase,
    /// Bytes of the prolog (declaration, whitespace) already consumed, counted against
    /// `max_header_bytes` together with the header start tag.
    prolog_bytes: usize,
    /// Whether an XML declaration may still come (only at the very first byte of a stream).
    decl_allowed: bool,
    poisoned: Option<XmlError>,
    /// While the checker waits for more of a top-level element: the buffer length below which
    /// bytes without a `>` may be left unread (see [`DEFERRED_SCAN_BYTES`]); 0 otherwise.
    /// Set only by [`Self::defer_next_reads`], cleared by every call that takes the general path.
    defer_below: usize,
    /// Checks the header or element in progress (from `tag_start`) as its bytes arrive. Boxed,
    /// taken from the thread when a unit starts and there is none, and given back with the
    /// buffer when the session goes idle or the splitter goes (`spare`): an idle session holds a
    /// pointer instead of the checker's few hundred bytes (docs/PERFORMANCE.md).
    checker: Option<Box<Checker>>,
}

impl Drop for StreamSplitter {
    /// A splitter that goes (its session ended, or a new stream replaced it) gives its storage
    /// to the thread like an idle one: whatever bytes it held are dropped.
    fn drop(&mut self) {
        self.give_back_storage();
    }
}

/// Where the lexer is between and around units; inside one, the [`Checker`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between units: whitespace is skipped, `<` starts a unit.
    Idle,
    /// Just after `<`.
    Lt,
    /// After `<!` between units: refused.
    Bang,
    /// After `<?` in the prolog: an XML declaration.
    Decl,
    /// Inside the stream header or a top-level element: the checker reads it.
    Unit,
    /// Inside the stream's end tag.
    EndTag,
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

/// How many bytes of an element in progress may wait unread when none of them is a `>`: small
/// reads are gathered into one call of the checker instead of one call each. An error in those
/// bytes is then found at the next `>` or once this many have arrived; the element is never
/// emitted before that, since it can only end at a `>`.
const DEFERRED_SCAN_BYTES: usize = 64;

/// Whether the bytes of small reads hold a `>`. One comparison for the one byte of a 1-byte
/// read, a plain loop otherwise: `contains` calls the general `memchr`, which costs more than
/// the loop for a few bytes (callgrind on `benches/splitter.rs`, docs/PERFORMANCE.md).
#[inline(always)]
#[allow(clippy::manual_contains)]
fn holds_gt(bytes: &[u8]) -> bool {
    match bytes {
        [b] => *b == b'>',
        _ => bytes.iter().any(|&b| b == b'>'),
    }
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
            lex: Lex::Idle,
            phase: Phase::Prolog,
            prolog_bytes: 0,
            decl_allowed: true,
            poisoned: None,
            defer_below: 0,
            checker: None,
        }
    }

    /// Appends bytes read from the server. Bytes fed to a poisoned splitter are dropped.
    ///
    /// Kept to a push for the 1-byte reads of the splitter benchmark (docs/PERFORMANCE.md): a
    /// poisoned splitter holds no buffer, so one test of the capacity covers both the poisoned
    /// splitter and the one that must take the thread's spare buffer; the consumed prefix is
    /// compacted away when the splitter runs out of bytes ([`Self::next_event_general`]).
    #[inline]
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0 && !self.take_spare_buffer() {
            return;
        }
        // A one-byte read is a plain push, without the general copy's call into memcpy.
        match bytes {
            [b] => self.buf.push(*b),
            _ => self.buf.extend_from_slice(bytes),
        }
    }

    /// Takes the thread's spare buffer (`spare`), unless the splitter is poisoned: then `false`,
    /// and the bytes are dropped. Out of line: inlined, the thread-local access kept
    /// [`Self::feed`] from being inlined into its callers, which made each 1-byte read cost
    /// about 40 instructions more (callgrind on `benches/splitter.rs`).
    #[cold]
    #[inline(never)]
    fn take_spare_buffer(&mut self) -> bool {
        if self.poisoned.is_some() {
            return false;
        }
        self.buf = spare::take_buffer();
        true
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
        self.defer_below = self.defer_below.saturating_sub(shift);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed. After an error the
    /// splitter is poisoned and keeps returning that error.
    #[inline(always)]
    pub fn next_event(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        // Small reads inside an element: it can only end at a `>`, so bytes without one wait
        // for the checker to read them later in one go (the 1-byte case of the splitter
        // benchmark, docs/PERFORMANCE.md). `defer_below` says whether, and up to where.
        if self.buf.len() < self.defer_below && !holds_gt(&self.buf[self.pos..]) {
            self.pos = self.buf.len();
            return Ok(None);
        }
        self.next_event_general()
    }

    /// The input has ended (the server hung up): reads the bytes still waiting for a `>` (see
    /// [`DEFERRED_SCAN_BYTES`]) and returns the error among them, if any, so that it is reported
    /// as it would have been on arrival. No event can be among them (an element ends only at a
    /// `>`), so none is held back. After an error already returned, `Ok`.
    pub fn read_waiting_bytes(&mut self) -> Result<(), XmlError> {
        if self.defer_below == 0 {
            return Ok(());
        }
        let event = self.next_event_general()?;
        debug_assert!(event.is_none(), "an element completed without a `>`");
        Ok(())
    }

    /// Whether the bytes buffered for the unit in progress are within the element limit (so
    /// the checker may read all of them; the lexer refuses the unit otherwise).
    #[inline(always)]
    fn within_element_limit(&self) -> bool {
        self.buf.len() - self.start <= self.limits.max_element_bytes
    }

    /// Whether the next bytes are `<` and a byte that starts an element's name (not `/`, `!` or
    /// `?`), with the stream open, a checker to read it and the buffered bytes within the
    /// element limit: what the lexer's turn through `Idle` and `Lt` would find before handing
    /// the element to the checker. Elements that follow each other without whitespace, as a
    /// server writes them, and the first element of a read start here.
    #[inline(always)]
    fn starts_element(&self) -> bool {
        matches!(self.phase, Phase::Stream(_))
            && self.within_element_limit()
            && matches!(self.buf.get(self.pos..self.pos + 2), Some([b'<', next]) if !matches!(next, b'/' | b'!' | b'?'))
    }

    /// Starts the element at `pos` (see [`Self::starts_element`]) and reads what is buffered of
    /// it, as the lexer does from `Idle`: the same checker state, events and errors. Its pending
    /// bytes are within the limit (looked at), so the lexer's size check would pass.
    #[inline(never)]
    fn start_element(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        self.tag_start = self.pos;
        self.pos += 1;
        self.start_unit(Unit::Element);
        self.lex = Lex::Unit;
        self.advance_element()
    }

    /// Advances the checker over the buffered bytes of the element in progress; outside the
    /// stream, or without a checker, the lexer reads the unit instead.
    #[inline(always)]
    fn advance_element(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        let (Phase::Stream(scope), Some(checker)) = (&self.phase, &mut self.checker) else {
            return self.lex_unit();
        };
        let progress = checker.advance(&self.buf[self.tag_start..], Some(scope.inherited()))?;
        self.pos = self.tag_start + checker.position();
        match progress {
            Progress::NeedMore => {
                self.defer_next_reads();
                Ok(None)
            }
            Progress::Done => self.finish_element(),
        }
    }

    /// The element the checker has just finished, as an event (out of line: rare next to the
    /// reads that only continue an element).
    #[inline(never)]
    fn finish_element(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        self.unit_done()
    }

    /// [`Self::next_event`] past its fast path: an element that starts here, an element in
    /// progress within the limit, or anything else for the lexer. An error poisons the splitter.
    fn next_event_general(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        self.defer_below = 0;
        if let Some(err) = &self.poisoned {
            return Err(*err);
        }
        // Returned as it is (no unwrapping and re-wrapping of the large event type).
        let result = if self.lex == Lex::Idle && self.starts_element() {
            self.start_element()
        } else if self.lex == Lex::Unit && self.within_element_limit() {
            self.advance_element()
        } else {
            self.lex_unit()
        };
        match &result {
            // Out of bytes, before the next feed: compact only when the consumed prefix is at
            // least half the buffer, so each byte is moved at most a constant number of times
            // (amortised linear cost).
            Ok(None) if self.start > 0 && self.start * 2 >= self.buf.len() => self.compact(),
            Ok(_) => {}
            Err(err) => self.poison(*err),
        }
        result
    }

    /// Gives the buffer (whatever it holds) and the checker to the thread (`spare`).
    fn give_back_storage(&mut self) {
        spare::give_back(std::mem::take(&mut self.buf), self.checker.take());
        self.start = 0;
        self.pos = 0;
        self.tag_start = 0;
    }

    /// After the checker has read every buffered byte of a top-level element and needs more:
    /// the next small reads may wait unread (see [`DEFERRED_SCAN_BYTES`]) while the buffer
    /// stays within the element limit.
    #[inline(always)]
    fn defer_next_reads(&mut self) {
        let within_limit = self.start.saturating_add(self.limits.max_element_bytes).saturating_add(1);
        self.defer_below = within_limit.min(self.pos + DEFERRED_SCAN_BYTES);
    }

    /// Records `err` and frees the buffer: every later call returns `err`.
    #[cold]
    #[inline(never)]
    fn poison(&mut self, err: XmlError) {
        self.poisoned = Some(err);
        self.defer_below = 0;
        self.buf = Vec::new();
        self.start = 0;
        self.pos = 0;
        self.checker = None;
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

    /// Gives what the splitter keeps between reads to the thread when no unit is in progress
    /// and every byte fed has been consumed: its buffer and its checker, for an idle session
    /// (the next read takes the thread's again). Anything pending is kept.
    pub fn release_idle_memory(&mut self) {
        if self.lex == Lex::Idle && self.start == self.buf.len() {
            self.give_back_storage();
        }
    }

    /// Bytes allocated and kept between reads: the buffer, the checker and its reusable storage.
    pub fn held_bytes(&self) -> usize {
        let checker = self.checker.as_ref().map_or(0, |checker| size_of::<Checker>() + checker.capacity_bytes());
        self.buf.capacity() + checker
    }

    /// The checker of the unit that starts at `tag_start`, reset for it (the thread's spare one,
    /// or a new one, if the splitter has none).
    fn start_unit(&mut self, unit: Unit) {
        match &mut self.checker {
            Some(checker) => checker.reset(unit),
            None => self.checker = Some(spare::take_checker(self.limits.wf(), unit)),
        }
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
                    _ => {
                        let unit = if matches!(self.phase, Phase::Prolog) { Unit::Header } else { Unit::Element };
                        self.start_unit(unit);
                        self.lex = Lex::Unit;
                    }
                },
                Lex::Bang => {
                    return Err(match b {
                        b'[' => XmlError::NotWellFormed("CDATA outside elements"),
                        b'-' => XmlError::RestrictedXml("comment"),
                        _ => XmlError::RestrictedXml("document type declaration"),
                    })
                }
                Lex::Decl => {
                    if let Some(()) = self.lex_decl()? {
                        continue;
                    }
                    self.check_pending_size()?;
                    return Ok(None);
                }
                Lex::Unit => {
                    // Made when the unit started (`Lex::Lt`); dropped only with the unit's state.
                    let Some(checker) = &mut self.checker else {
                        return Err(XmlError::NotWellFormed("element state lost"));
                    };
                    let inherited = match &self.phase {
                        Phase::Stream(scope) => Some(scope.inherited()),
                        _ => None,
                    };
                    let progress = checker.advance(&self.buf[self.tag_start..], inherited)?;
                    self.pos = self.tag_start + checker.position();
                    match progress {
                        Progress::NeedMore => {
                            self.check_pending_size()?;
                            if matches!(self.phase, Phase::Stream(_)) {
                                self.defer_next_reads();
                            }
                            return Ok(None);
                        }
                        Progress::Done => return self.unit_done(),
                    }
                }
                Lex::EndTag => {
                    if let Some(event) = self.lex_end_tag()? {
                        return Ok(Some(event));
                    }
                }
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

    /// Inside the stream's end tag: finds its `>`; the name must repeat the header's exactly.
    fn lex_end_tag(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        let Some(offset) = self.buf[self.pos..].iter().position(|&c| c == b'>') else {
            self.pos = self.buf.len();
            return Ok(None);
        };
        let gt = self.pos + offset;
        self.pos = gt + 1;
        let Phase::Stream(scope) = &self.phase else {
            return Err(XmlError::NotWellFormed("unexpected end tag"));
        };
        let name = &self.buf[self.tag_start + 2..gt];
        let name = &name[..name.len() - name.iter().rev().take_while(|&&b| is_space(b)).count()];
        if name != scope.qname().as_bytes() {
            return Err(XmlError::NotWellFormed("end tag does not match the header"));
        }
        self.phase = Phase::Ended;
        self.start = self.pos;
        self.lex = Lex::Idle;
        Ok(Some(ServerEvent::End))
    }

    /// The checker has read a whole unit `start..pos`: the header, or a top-level element to
    /// complete and classify. (Always `Some` when `Ok`.)
    #[inline(always)]
    fn unit_done(&mut self) -> Result<Option<ServerEvent>, XmlError> {
        let unit = &self.buf[self.start..self.pos];
        let Some(checker) = self.checker.as_deref() else {
            return Err(XmlError::NotWellFormed("element state lost"));
        };
        match &self.phase {
            Phase::Prolog => {
                self.check_pending_size()?;
                let (header, scope) = read_header(unit, checker)?;
                self.phase = Phase::Stream(scope);
                self.start = self.pos;
                self.lex = Lex::Idle;
                Ok(Some(ServerEvent::Header(Box::new(header))))
            }
            Phase::Stream(scope) => {
                if unit.len() > self.limits.max_element_bytes {
                    return Err(XmlError::TooLarge);
                }
                let raw = std::str::from_utf8(unit).map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
                // Returned as completion builds it, not unwrapped and wrapped again.
                let event = complete_element(raw, checker, scope, &self.limits);
                // After an error the splitter is poisoned whatever these say.
                self.start = self.pos;
                self.lex = Lex::Idle;
                event
            }
            Phase::Ended => Err(XmlError::NotWellFormed("element after the end of the stream")),
        }
    }
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
