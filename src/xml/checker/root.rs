//! What the [`Checker`] learns about the root element, and gives its caller once the element is
//! complete: the root's name, namespace and [`Class`], where its tags end, what was captured
//! inside it (a stream error's condition, the features D15 removes) and the attributes kept for
//! a stream header or `<open/>`. Nothing here scans: the scanner in `checker.rs` fills [`Root`]
//! and the capture as it reads, and uses [`Class`] to decide what to capture.

use std::ops::Range;

use super::{range, text, uri_of, Attr, Capture, Checker};
use crate::xml::error::XmlError;
use crate::xml::lexical::unescape_attr;
use crate::xml::scope::{Inherited, Resolved, UsedSet};
use crate::xml::{NS_COMPRESS_FEATURE, NS_COMPRESS_PROTOCOL, NS_FRAMING, NS_SASL, NS_STREAM, NS_STREAM_ERRORS, NS_TLS};

/// What the checker learnt about the root element.
#[derive(Debug, Clone, Default)]
pub(super) struct Root {
    pub(super) ns: Option<ResolvedNs>,
    pub(super) qname: (u32, u32),
    /// Offset of the local name in the qualified name (after the `:`, or 0).
    pub(super) local: u32,
    pub(super) class: Class,
    pub(super) in_stream_ns: bool,
    pub(super) tag_end: usize,
    pub(super) empty: bool,
    pub(super) attributes: usize,
    pub(super) declarations: usize,
    /// The offset of the root end tag's name (after `</`).
    pub(super) end_name: Option<usize>,
    /// The namespace declared for the `stream` prefix on the root itself, if any.
    pub(super) own_stream: Option<usize>,
    /// The root's attributes, kept only for a stream header and `<open/>`.
    pub(super) attrs: Vec<Attr>,
}

/// A resolved namespace that stays valid after the scan ([`Resolved`] without the cases that
/// have no namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResolvedNs {
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
    /// What an element named `local` in namespace `ns` is.
    pub(super) fn of(ns: Option<&str>, local: &[u8]) -> Class {
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

impl Checker {
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
    /// `<open/>`): `(qualified name, value)` for attributes, `(None, uri)`/`(Some(prefix), uri)`
    /// for declarations. Nothing is made for the others, however many there are.
    #[allow(clippy::type_complexity)]
    pub fn root_attrs(
        &self,
        unit: &[u8],
        wanted: &[&str],
        with_declarations: bool,
    ) -> Result<(Vec<(String, String)>, Vec<(Option<String>, String)>), XmlError> {
        let (mut attrs, mut declarations) = (Vec::new(), Vec::new());
        for attr in &self.root.attrs {
            let name = text(&unit[range(attr.name)]);
            if if attr.declaration { !with_declarations } else { !wanted.contains(&name) } {
                continue;
            }
            let value = unescape_attr(text(&unit[range(attr.value)]))?;
            if !attr.declaration {
                attrs.push((name.to_owned(), value));
            } else if attr.colon == 0 {
                declarations.push((None, value));
            } else {
                declarations.push((Some(name[attr.colon as usize + 1..].to_owned()), value));
            }
        }
        Ok((attrs, declarations))
    }
}
