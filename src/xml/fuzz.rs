//! Entry points for the coverage-guided fuzz targets under `fuzz/` (hostile input, issue 3).
//!
//! Each fuzz target is a one-line call into this module, and `tests/fuzz_corpus.rs` calls the
//! same functions over the committed corpus, so the targets cannot rot (the rustls pattern).
//! The functions panic when an invariant breaks; that is what the fuzzer looks for. They are
//! pure like the rest of [`crate::xml`]: no I/O.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::client::{self, ClientFrame, ClientLimits};
use super::error::XmlError;
use super::splitter::{ServerEvent, SplitterLimits, StreamSplitter};

/// Small limits so the fuzzer reaches the limit checks with short inputs. The attribute and
/// declaration caps sit above the point (16) where the checker switches from scanning to hashing,
/// so both paths and the caps are reachable.
const FUZZ_LIMITS: SplitterLimits = SplitterLimits {
    max_element_bytes: 2048,
    max_header_bytes: 512,
    max_depth: 32,
    max_attributes: 40,
    max_namespace_declarations: 24,
};

/// The client-side counterpart of [`FUZZ_LIMITS`].
const FUZZ_CLIENT_LIMITS: ClientLimits =
    ClientLimits { max_depth: 64, max_attributes: 40, max_namespace_declarations: 24 };

/// The client-message validator on arbitrary bytes (only UTF-8 reaches it: the WebSocket layer
/// refuses the rest with 1007). Invariants: no panic; an accepted element is a suffix of the
/// message that starts with `<`, is classified the same way again (idempotent, so nothing is
/// hidden behind the stripped declaration), and parses on its own as one namespace-well-formed
/// element with an independent parser.
pub fn client_message(data: &[u8]) {
    let Ok(message) = std::str::from_utf8(data) else { return };
    let limits = FUZZ_CLIENT_LIMITS;
    if let Ok(ClientFrame::Element { xml, kind }) = client::classify(message, &limits) {
        assert!(message.ends_with(xml), "relayed bytes must come from the message");
        assert!(xml.starts_with('<'), "relayed element must start with '<': {xml:?}");
        match client::classify(xml, &limits) {
            Ok(ClientFrame::Element { xml: again, kind: kind_again }) => {
                assert_eq!((again, kind_again), (xml, kind), "classification is not idempotent");
            }
            other => panic!("accepted element {xml:?} is refused on its own: {other:?}"),
        }
        assert_standalone(xml);
    }
}

/// The server-stream splitter on arbitrary bytes. The first byte chooses how the rest is cut
/// into reads. Invariants: no panic; the events are the same in one read and in small reads,
/// once the end of the input has been read (an oversized unit may be refused at a different
/// point, but then both runs fail); every
/// element is a standalone, namespace-well-formed document that the client validator accepts as
/// well-formed; no element is empty or starts with anything but `<` (no whitespace messages).
pub fn server_stream(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else { return };
    let whole = split(data, data.len().max(1));
    let chunked = split(data, usize::from(seed % 16) + 1);
    let (events, error) = &whole;
    let (chunked_events, chunked_error) = &chunked;
    let common = events.len().min(chunked_events.len());
    assert_eq!(events[..common], chunked_events[..common], "chunking changed the events");
    match (error, chunked_error) {
        (None, None) => assert_eq!(events.len(), chunked_events.len(), "chunking changed the events"),
        (Some(a), Some(b)) => {
            // Which of two limits (size, depth) is hit first depends on where reads end.
            let limit = |error: &XmlError| matches!(error, XmlError::TooLarge | XmlError::TooDeep);
            if !limit(a) && !limit(b) {
                assert_eq!(a.condition(), b.condition(), "chunking changed the error");
                assert_eq!(events.len(), chunked_events.len(), "chunking changed the events before the error");
            }
        }
        (a, b) => panic!("chunking changed whether the stream fails: {a:?} vs {b:?}"),
    }
    for event in events {
        if let ServerEvent::Element(element) = event {
            let xml = element.xml.as_str();
            assert!(xml.starts_with('<') && xml.ends_with('>'), "element is not one piece of markup: {xml:?}");
            match client::classify(xml, &FUZZ_CLIENT_LIMITS) {
                Ok(_) | Err(XmlError::InvalidNamespace(_)) => {}
                Err(error) => panic!("emitted element {xml:?} is not a standalone document: {error}"),
            }
            assert_standalone(xml);
        }
    }
}

/// Feeds `data` in reads of `chunk` bytes, draining events after each read as the session does.
fn split(data: &[u8], chunk: usize) -> (Vec<ServerEvent>, Option<XmlError>) {
    let mut splitter = StreamSplitter::new(FUZZ_LIMITS);
    let mut events = Vec::new();
    for piece in data.chunks(chunk) {
        splitter.feed(piece);
        loop {
            match splitter.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, Some(error)),
            }
        }
        assert!(splitter.buffered_len() <= FUZZ_LIMITS.max_element_bytes + FUZZ_LIMITS.max_header_bytes + chunk);
    }
    // As the session does when the server hangs up: small reads may still wait for a `>`.
    if let Err(error) = splitter.read_waiting_bytes() {
        return (events, Some(error));
    }
    (events, None)
}

/// Parses `xml` with quick-xml's namespace reader: exactly one root element, no parse error,
/// every element and attribute prefix declared.
fn assert_standalone(xml: &str) {
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(pair) => pair,
            Err(error) => panic!("{xml:?} does not re-parse: {error}"),
        };
        let start = match &event {
            Event::Start(start) | Event::Empty(start) => Some(start.clone().into_owned()),
            _ => None,
        };
        if let Some(start) = start {
            assert!(!matches!(resolved, ResolveResult::Unknown(_)), "undeclared element prefix in {xml:?}");
            for attr in start.attributes() {
                let attr = attr.unwrap_or_else(|error| panic!("{xml:?}: bad attribute: {error}"));
                let (resolved, _) = reader.resolve_attribute(attr.key);
                assert!(!matches!(resolved, ResolveResult::Unknown(_)), "undeclared attribute prefix in {xml:?}");
            }
            if depth == 0 {
                roots += 1;
            }
        }
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth -= 1,
            Event::Text(text) if depth == 0 => panic!("text outside the root in {xml:?}: {text:?}"),
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) => panic!("restricted XML in {xml:?}"),
            Event::Decl(_) => panic!("XML declaration in a relayed element {xml:?}"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!((roots, depth), (1, 0), "not exactly one complete root element: {xml:?}");
}
