//! What the splitter does with a complete unit, from what the one-pass checker learnt while it
//! read it: the stream header's attributes and the declarations later elements inherit, and a
//! top-level element namespace-completed (NS-1, NS-3) and classified. Nothing here parses the
//! unit again. Called by the lexer in the parent module.

use std::borrow::Cow;

use super::super::checker::{Checker, Class, RootItem};
use super::super::condition::StreamCondition;
use super::super::error::XmlError;
use super::super::framing::escape_attr;
use super::super::scope::Inherited;
use super::super::NS_STREAM;
use super::{ServerElement, ServerElementKind, ServerEvent, SplitterLimits, StreamHeader};

/// What the rest of the stream needs from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderScope {
    /// The header's namespace declarations, in document order, indexed.
    inherited: Inherited,
    /// The header's qualified name, which the stream end tag must repeat, then each of
    /// `inherited`'s bindings written out as namespace completion adds it (` xmlns:p="uri"`),
    /// one after the other: made once per stream instead of once per element.
    written: String,
    /// Where the qualified name ends in `written`.
    qname_len: usize,
    /// Where each declaration ends in `written`.
    declaration_ends: Vec<usize>,
    /// The header's binding of the `stream` prefix (the last one), if any.
    stream_binding: Option<usize>,
}

impl HeaderScope {
    /// The header's declarations, which every top-level element inherits.
    pub(super) fn inherited(&self) -> &Inherited {
        &self.inherited
    }

    /// The header's qualified name.
    pub(super) fn qname(&self) -> &str {
        &self.written[..self.qname_len]
    }

    /// The header's `i`th declaration as namespace completion writes it.
    fn declaration(&self, i: usize) -> &str {
        let start = if i == 0 { self.qname_len } else { self.declaration_ends[i - 1] };
        &self.written[start..self.declaration_ends[i]]
    }
}

/// What the stream header (`unit`, its start tag, already checked by `checker`) says, and what
/// the rest of the stream needs from it.
pub(super) fn read_header(unit: &[u8], checker: &Checker) -> Result<(StreamHeader, HeaderScope), XmlError> {
    if checker.root_empty() {
        return Err(XmlError::NotWellFormed("self-closed stream header"));
    }
    let text = std::str::from_utf8(unit).map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
    if checker.root_ns(None) != Some(NS_STREAM) || checker.root_local(text) != "stream" {
        return Err(XmlError::InvalidNamespace("the stream header is not a stream in the stream namespace"));
    }
    // Two passes over what the checker kept, without collecting: the attributes and the sizes
    // of the declarations, then the declarations into storage made at their size.
    let mut values: [Option<Cow<str>>; 5] = Default::default();
    let (mut count, mut written_bytes) = (0, 0);
    checker.each_root_attr(text, &StreamHeader::NAMES, true, |item| match item {
        RootItem::Attr(name, value) => {
            if let Some(i) = StreamHeader::slot(name) {
                values[i] = Some(value);
            }
        }
        RootItem::Declaration(prefix, uri) => {
            let prefix = prefix.map_or(0, str::len);
            count += 1;
            // ` xmlns:p="uri"`, sized for the common case of nothing to escape.
            written_bytes += 10 + prefix + uri.len();
        }
    })?;
    let header = StreamHeader::from_slots(values.each_ref().map(|value| value.as_deref()));
    let qname = checker.root_qname(text);
    let mut inherited = Inherited::with_capacity(count);
    let mut written = String::with_capacity(qname.len() + written_bytes);
    written.push_str(qname);
    let mut declaration_ends = Vec::with_capacity(count);
    let mut stream_binding = None;
    checker.each_root_attr(text, &[], true, |item| {
        if let RootItem::Declaration(prefix, uri) = item {
            if prefix == Some("stream") {
                stream_binding = Some(inherited.len());
            }
            inherited.push(prefix, &uri);
            push_declaration(&mut written, prefix, &uri);
            declaration_ends.push(written.len());
        }
    })?;
    let scope = HeaderScope { qname_len: qname.len(), inherited, written, declaration_ends, stream_binding };
    Ok((header, scope))
}

/// Namespace completion and classification of one top-level element (`raw`, checked by
/// `checker` in the header's scope as it arrived).
///
/// What is relayed is what was checked, plus declarations checked with the header: every header
/// binding that a name in the element resolved to is added right after the element name, as
/// `xmlns="..."`/`xmlns:p="..."` (double quotes, `&`, `<`, `"` escaped, NS-1), in the header's
/// order; bindings the element does not use are not added, so the output is at most the element
/// plus the header's declarations, never a copy of them per unused prefix. An element in the
/// stream namespace is renamed to the `stream` prefix (start and end tag of the top-level
/// element only) with `xmlns:stream` declared (NS-3). When `stream` is bound to another
/// namespace on the element or the header, renaming would change the meaning of descendants, so
/// the element keeps its original prefix, which is declared like any other. `xml:lang` is not
/// pushed down (D7). Nothing is parsed here: the checker has read the element once.
///
/// Returned as the splitter returns it, so that the element is built where the caller of
/// [`super::StreamSplitter::next_event`] finds it instead of being moved from type to type.
pub(super) fn complete_element(
    raw: &str,
    checker: &Checker,
    scope: &HeaderScope,
    limits: &SplitterLimits,
) -> Result<Option<ServerEvent>, XmlError> {
    if checker.root_in_stream_ns() {
        return complete_stream_element(raw, checker, scope, limits);
    }
    // Every other element, stanzas included: nothing to rename, and no stream error condition
    // or feature cuts (only `<error/>` and `<features/>` in the stream namespace collect them).
    let used = checker.inherited_used();
    check_caps(checker, used.len(), limits)?;
    let name_end = 1 + checker.root_qname(raw).len();
    // Exactly as long as it will be: a WebSocket message made from a string with spare capacity
    // costs one more allocation (bytes::Bytes keeps the capacity in a separate header).
    let mut added = 0;
    used.for_each(|i| added += scope.declaration(i).len());
    let mut out = String::with_capacity(raw.len() + added);
    out.push_str(&raw[..name_end]);
    used.for_each(|i| out.push_str(scope.declaration(i)));
    out.push_str(&raw[name_end..]);
    debug_assert_eq!(out.len(), out.capacity());
    let kind = match checker.root_class() {
        Class::TlsProceed => ServerElementKind::TlsProceed,
        Class::TlsFailure => ServerElementKind::TlsFailure,
        Class::SaslSuccess => ServerElementKind::SaslSuccess,
        _ => ServerElementKind::Other,
    };
    debug_assert!(checker.feature_cuts().is_empty() && checker.error_child().is_none());
    Ok(Some(ServerEvent::Element(ServerElement {
        xml: out,
        kind,
        error_condition: None,
        see_other_host: None,
        feature_cuts: Vec::new(),
    })))
}

/// The caps apply to what is relayed: the declarations completion adds (`added`) count on the
/// root's start tag.
#[inline]
fn check_caps(checker: &Checker, added: usize, limits: &SplitterLimits) -> Result<(), XmlError> {
    if checker.root_attributes() + added > limits.max_attributes {
        return Err(XmlError::TooManyAttributes);
    }
    if checker.root_declarations() + added > limits.max_namespace_declarations {
        return Err(XmlError::TooManyNamespaceDeclarations);
    }
    Ok(())
}

/// [`complete_element`] for an element in the stream namespace (features, errors): renamed to
/// the `stream` prefix where that keeps its meaning, classified, its error condition or feature
/// cuts taken from the checker.
#[inline(never)]
fn complete_stream_element(
    raw: &str,
    checker: &Checker,
    scope: &HeaderScope,
    limits: &SplitterLimits,
) -> Result<Option<ServerEvent>, XmlError> {
    let (qname, local) = checker.root_names(raw);
    let name_end = 1 + qname.len();
    let class = checker.root_class();
    let end_name_at = checker.root_end_name();
    // The header's declarations to add: those the element used, borrowed from the checker; a
    // copy only in the rare case that adds the header's `stream` binding to them.
    let mut used = checker.inherited_used();
    let with_stream;
    let mut rename = false;
    let mut declare_stream = false;
    if !qname.starts_with("stream:") {
        let own_stream = checker.root_stream_declaration();
        let header_stream_uri = scope.stream_binding.map(|i| scope.inherited.uri(i));
        rename = own_stream.unwrap_or(NS_STREAM) == NS_STREAM
            && (own_stream.is_some() || header_stream_uri.unwrap_or(NS_STREAM) == NS_STREAM);
        if rename && own_stream.is_none() {
            match scope.stream_binding {
                Some(i) => {
                    let mut copy = used.clone();
                    copy.insert(i);
                    with_stream = copy;
                    used = &with_stream;
                }
                None => declare_stream = true,
            }
        }
    }

    check_caps(checker, used.len() + usize::from(declare_stream), limits)?;
    // Room for the declarations of an ordinary stanza; a rare element that adds more grows `out`
    // once.
    let mut out = String::with_capacity(raw.len() + 64);
    if !rename {
        // `<` and the name in one copy.
        out.push_str(&raw[..name_end]);
    } else {
        out.push_str("<stream:");
        out.push_str(local);
        if declare_stream {
            push_declaration(&mut out, Some("stream"), NS_STREAM);
        }
    }
    used.for_each(|i| out.push_str(scope.declaration(i)));
    // Where the rest of the element lands in `out`, relative to `raw`.
    let shift = out.len() as isize - name_end as isize;
    match (rename, end_name_at) {
        (true, Some(at)) => {
            out.push_str(&raw[name_end..at]);
            out.push_str("stream:");
            out.push_str(local);
            out.push_str(&raw[at + qname.len()..]);
        }
        _ => out.push_str(&raw[name_end..]),
    }

    let kind = match class {
        Class::Features => ServerElementKind::Features,
        Class::StreamError => ServerElementKind::StreamError,
        Class::TlsProceed => ServerElementKind::TlsProceed,
        Class::TlsFailure => ServerElementKind::TlsFailure,
        Class::SaslSuccess => ServerElementKind::SaslSuccess,
        _ => ServerElementKind::Other,
    };
    let (mut error_condition, mut see_other_host) = (None, None);
    if kind == ServerElementKind::StreamError {
        let (condition, text) = checker.error_child().unwrap_or_default();
        let condition = StreamCondition::from_name(condition);
        if condition == StreamCondition::SeeOtherHost {
            see_other_host = Some(text.trim().to_owned());
        }
        error_condition = Some(condition);
    }
    let cuts = checker.feature_cuts();
    let feature_cuts = if cuts.is_empty() {
        Vec::new()
    } else {
        cuts.iter().map(|cut| cut.start.saturating_add_signed(shift)..cut.end.saturating_add_signed(shift)).collect()
    };
    Ok(Some(ServerEvent::Element(ServerElement { xml: out, kind, error_condition, see_other_host, feature_cuts })))
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
