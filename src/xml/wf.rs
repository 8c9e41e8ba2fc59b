//! The previous checker (test-only): quick-xml's plain [`Reader`] tokenises and matches end
//! tags, and a walker over its events adds XML 1.0 characters, names, references, unique
//! attributes, namespace resolution ([`super::old_scope`]), the restricted features of RFC 6120
//! §11.1 and the caps of [`WfLimits`].
//!
//! The gateway itself checks with the one-pass [`super::checker`]; this independent
//! implementation stays as the reference the checker's differential property tests compare
//! against (same acceptance, same kind of refusal), and for the `canonical` rendering the
//! splitter and framing tests compare documents with.
//!
//! (Over 500 lines: about a third is tests, plus the test-only `canonical` rendering.)

use std::borrow::Cow;
use std::ops::Range;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::error::XmlError;
use super::lexical::{check_attr_value, check_chars, is_qname, resolve_reference, unescape_attr};
use super::old_scope::{Inherited, NsScope, Resolved, SeenNames, NS_XML, NS_XMLNS};
use super::NS_STREAM_ERRORS;

/// The caps are the one-pass checker's, so both walkers are driven by the same limits.
pub(crate) use super::checker::WfLimits;

/// What [`check_element`] learned about the root element. Everything borrows from the checked
/// document where it can: an ordinary stanza costs no allocation here. The root's attributes
/// are only read (again, already checked) when a caller asks for them ([`RootInfo::attrs`],
/// [`RootInfo::ns_decls`]): only `<open/>`, the stream header and renamed stream elements
/// need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootInfo<'a> {
    /// The namespace the root element is in (`None` if unqualified or bound to "").
    pub ns: Option<Cow<'a, str>>,
    /// The root's local name.
    pub local: &'a str,
    /// The root's start tag between `<` and `>` (or `/>`): its name and attributes.
    start: &'a str,
    /// Length of the root's qualified name at the start of `start`.
    name_len: usize,
    /// How many attributes the root's start tag has, namespace declarations included.
    pub attributes: usize,
    /// How many of those are namespace declarations.
    pub declarations: usize,
    /// The first child of the root in the stream-errors namespace other than `<text>`: its local
    /// name and its direct character data (used for `<see-other-host>`).
    pub error_child: Option<(String, String)>,
}

impl RootInfo<'_> {
    /// The root's attributes other than namespace declarations: raw qualified name and
    /// unescaped (attribute-value-normalised) value, in document order.
    pub fn attrs(&self) -> Result<Vec<(String, String)>, XmlError> {
        Ok(self.root_attributes()?.0)
    }

    /// The root's namespace declarations in document order: `(None, uri)` for `xmlns`,
    /// `(Some(prefix), uri)` for `xmlns:prefix`, values unescaped.
    pub fn ns_decls(&self) -> Result<Vec<(Option<String>, String)>, XmlError> {
        Ok(self.root_attributes()?.1)
    }

    /// Reads the root's attributes (already checked by [`check_element`]) into attributes and
    /// namespace declarations.
    #[allow(clippy::type_complexity)]
    fn root_attributes(&self) -> Result<(Vec<(String, String)>, Vec<(Option<String>, String)>), XmlError> {
        let start = BytesStart::from_content(self.start, self.name_len);
        let (mut attrs, mut ns_decls) = (Vec::new(), Vec::new());
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|_| XmlError::NotWellFormed("malformed attribute"))?;
            let key = std::str::from_utf8(attr.key.as_ref()).map_err(|_| XmlError::NotWellFormed("UTF-8"))?;
            let raw = std::str::from_utf8(&attr.value).map_err(|_| XmlError::NotWellFormed("UTF-8"))?;
            let value = unescape_attr(raw)?;
            if let Some(prefix) = key.strip_prefix("xmlns:") {
                ns_decls.push((Some(prefix.to_owned()), value));
            } else if key == "xmlns" {
                ns_decls.push((None, value));
            } else {
                attrs.push((key.to_owned(), value));
            }
        }
        Ok((attrs, ns_decls))
    }
}

/// `part` (a slice of an event of the reader over `doc`) as a `&str` borrowed from `doc`,
/// without checking UTF-8 again: `doc` is a `&str`, quick-xml reading a `&str` hands out
/// slices of it, and it cuts only at ASCII delimiters. Anything else is refused (fail closed).
fn doc_slice<'a>(doc: &'a str, part: &[u8]) -> Result<&'a str, XmlError> {
    (part.as_ptr() as usize)
        .checked_sub(doc.as_ptr() as usize)
        .and_then(|offset| doc.get(offset..offset.checked_add(part.len())?))
        .filter(|s| s.as_ptr() == part.as_ptr())
        .ok_or(XmlError::NotWellFormed("UTF-8"))
}

/// Checks that `doc` is exactly one well-formed, namespace-well-formed element with no
/// restricted XML, within `limits`. Nothing may precede or follow the element, not even
/// whitespace.
pub(crate) fn check_element<'a>(doc: &'a str, limits: &WfLimits) -> Result<RootInfo<'a>, XmlError> {
    check_in_scope(doc, limits, None).map(|(root, _)| root)
}

/// Like [`check_element`], for an element that inherits the namespace declarations
/// `inherited` (a stream header's). Also says which inherited declarations (indices into
/// [`Inherited::bindings`], increasing) a name in `doc` resolved to: those, and only those, must
/// be added to the element to make it standalone (CONFORMANCE NS-1).
pub(crate) fn check_in_scope<'a>(
    doc: &'a str,
    limits: &WfLimits,
    inherited: Option<&'a Inherited>,
) -> Result<(RootInfo<'a>, Vec<usize>), XmlError> {
    let mut walker = Walker::new(doc, *limits, inherited)?;
    let mut root: Option<RootInfo<'a>> = None;
    let mut error_child: Option<(String, String)> = None;
    // True while inside the captured stream-error condition child (its direct text is kept).
    let mut capturing = false;
    loop {
        match walker.next()? {
            Step::Start(start) => {
                if start.depth == 1 {
                    let ns = walker.scope.uri_cow(start.ns).filter(|ns| !ns.is_empty());
                    root = Some(RootInfo {
                        ns,
                        local: start.local,
                        start: start.tag,
                        name_len: start.name_len,
                        attributes: start.attributes,
                        declarations: start.declarations,
                        error_child: None,
                    });
                } else if start.depth == 2
                    && error_child.is_none()
                    && walker.scope.uri(start.ns) == Some(NS_STREAM_ERRORS)
                    && start.local != "text"
                {
                    error_child = Some((start.local.to_owned(), String::new()));
                    capturing = !start.empty;
                }
            }
            Step::End { depth } => {
                if depth == 2 {
                    capturing = false;
                }
            }
            Step::Text(text) => {
                if capturing && walker.depth == 2 {
                    push_text(&mut error_child, text);
                }
            }
            Step::Char(c) => {
                if capturing && walker.depth == 2 {
                    push_text(&mut error_child, c.encode_utf8(&mut [0; 4]));
                }
            }
            Step::Eof => break,
        }
    }
    let Some(mut root) = root else {
        return Err(XmlError::NotWellFormed("no element"));
    };
    if walker.depth != 0 {
        return Err(XmlError::NotWellFormed("unclosed element"));
    }
    root.error_child = error_child;
    Ok((root, walker.scope.inherited_used()))
}

/// The byte ranges in `doc` (one element, as [`check_element`] accepts) of the root's children
/// for which `wanted(namespace, local name)` holds, in document order.
pub(crate) fn root_children(
    doc: &str,
    wanted: impl Fn(Option<&str>, &str) -> bool,
) -> Result<Vec<Range<usize>>, XmlError> {
    let mut walker = Walker::new(doc, WfLimits::UNLIMITED, None)?;
    let mut ranges = Vec::new();
    let mut open: Option<usize> = None;
    loop {
        let before = walker.position();
        match walker.next()? {
            Step::Start(start) if start.depth == 2 && wanted(walker.scope.uri(start.ns), start.local) => {
                if start.empty {
                    ranges.push(before..walker.position());
                } else {
                    open = Some(before);
                }
            }
            Step::End { depth: 2 } => {
                if let Some(from) = open.take() {
                    ranges.push(from..walker.position());
                }
            }
            Step::Eof => return Ok(ranges),
            _ => {}
        }
    }
}

/// One step of [`Walker`]: a checked event with its names resolved.
enum Step<'a> {
    /// A start tag or empty-element tag.
    Start(StartTag<'a>),
    /// The end tag of the element that was at `depth`.
    End { depth: usize },
    /// Character data or a CDATA section's content, raw.
    Text(&'a str),
    /// A reference, resolved.
    Char(char),
    /// The end of the document.
    Eof,
}

/// A checked start tag.
struct StartTag<'a> {
    /// Its depth (the root is 1).
    depth: usize,
    /// Its namespace, for [`NsScope::uri`] (valid until the next step).
    ns: Resolved,
    /// Its local name.
    local: &'a str,
    /// `<x/>` rather than `<x>`.
    empty: bool,
    /// Everything between `<` and `>` (or `/>`).
    tag: &'a str,
    /// Length of the qualified name at the start of `tag`.
    name_len: usize,
    /// Its attributes, namespace declarations included.
    attributes: usize,
    /// Its namespace declarations.
    declarations: usize,
}

/// Walks one document event by event, checking everything as it goes (see the module doc).
struct Walker<'a> {
    doc: &'a str,
    reader: Reader<&'a [u8]>,
    scope: NsScope<'a>,
    limits: WfLimits,
    /// Elements open now.
    depth: usize,
    /// The root element has ended: anything but the end of the document is refused.
    root_done: bool,
    /// The last step was an empty element, whose declarations leave scope before the next.
    leave_pending: bool,
    /// Raw attribute names of the current start tag.
    seen: SeenNames<&'a str>,
    /// Prefixed attributes of the current start tag: prefix and local name, then resolved.
    prefixed: Vec<(&'a str, &'a str)>,
    resolved: Vec<(Resolved, &'a str)>,
}

impl<'a> Walker<'a> {
    fn new(doc: &'a str, limits: WfLimits, inherited: Option<&'a Inherited>) -> Result<Self, XmlError> {
        check_chars(doc)?;
        if !doc.starts_with('<') {
            return Err(XmlError::NotWellFormed("the document does not start with '<'"));
        }
        let mut reader = Reader::from_str(doc);
        // Defaults matter: end names are checked, `&` must start a reference, text is not trimmed.
        let config = reader.config_mut();
        config.check_end_names = true;
        config.allow_dangling_amp = false;
        config.allow_unmatched_ends = false;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Ok(Walker {
            doc,
            reader,
            scope: NsScope::new(inherited),
            limits,
            depth: 0,
            root_done: false,
            leave_pending: false,
            seen: SeenNames::new(),
            prefixed: Vec::new(),
            resolved: Vec::new(),
        })
    }

    /// Bytes of `doc` read so far (before a start tag: the offset of its `<`).
    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn next(&mut self) -> Result<Step<'a>, XmlError> {
        if self.leave_pending {
            self.scope.leave(self.depth + 1);
            self.leave_pending = false;
        }
        let event = self.reader.read_event().map_err(|_| XmlError::NotWellFormed("malformed XML"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if self.root_done {
                    return Err(XmlError::NotWellFormed("more than one element"));
                }
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    return Err(XmlError::TooDeep);
                }
                let empty = matches!(event, Event::Empty(_));
                let start = self.start_tag(e, empty)?;
                if empty {
                    self.depth -= 1;
                    self.leave_pending = true;
                    self.root_done = self.depth == 0;
                }
                Ok(Step::Start(start))
            }
            Event::End(_) => {
                // quick-xml has already checked the name against the open element.
                let depth = self.depth;
                self.scope.leave(depth);
                self.depth = depth.checked_sub(1).ok_or(XmlError::NotWellFormed("unmatched end tag"))?;
                self.root_done = self.depth == 0;
                Ok(Step::End { depth })
            }
            Event::Text(ref t) => {
                if self.depth == 0 {
                    return Err(XmlError::NotWellFormed("text outside the element"));
                }
                let text = doc_slice(self.doc, t)?;
                if contains_cdata_end(text) {
                    return Err(XmlError::NotWellFormed("']]>' in character data"));
                }
                Ok(Step::Text(text))
            }
            Event::GeneralRef(ref r) => {
                if self.depth == 0 {
                    return Err(XmlError::NotWellFormed("reference outside the element"));
                }
                Ok(Step::Char(resolve_reference(doc_slice(self.doc, r)?)?))
            }
            Event::CData(ref c) => {
                if self.depth == 0 {
                    return Err(XmlError::NotWellFormed("CDATA outside the element"));
                }
                Ok(Step::Text(doc_slice(self.doc, c)?))
            }
            Event::Comment(_) => Err(XmlError::RestrictedXml("comment")),
            Event::PI(_) => Err(XmlError::RestrictedXml("processing instruction")),
            Event::DocType(_) => Err(XmlError::RestrictedXml("document type declaration")),
            Event::Decl(_) => Err(XmlError::NotWellFormed("XML declaration not at the start")),
            Event::Eof => Ok(Step::Eof),
        }
    }

    /// Checks one start tag at `self.depth`: names, attributes (count, unique names, values),
    /// namespace declarations (count, legality; added to the scope), element and attribute
    /// prefixes.
    fn start_tag(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<StartTag<'a>, XmlError> {
        let tag = doc_slice(self.doc, e)?;
        let name_len = e.name().as_ref().len();
        let qname = tag.get(..name_len).ok_or(XmlError::NotWellFormed("invalid element name"))?;
        if !is_qname(qname.as_bytes()) {
            return Err(XmlError::NotWellFormed("invalid element name"));
        }
        let (prefix, local) = split_qname(qname);
        if prefix == Some("xmlns") {
            return Err(XmlError::NotWellFormed("element name with the xmlns prefix"));
        }
        self.seen.clear();
        self.prefixed.clear();
        let (mut attributes, mut declarations) = (0usize, 0usize);
        // Uniqueness is checked here rather than by quick-xml, whose check is quadratic.
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|_| XmlError::NotWellFormed("malformed attribute"))?;
            attributes += 1;
            if attributes > self.limits.max_attributes {
                return Err(XmlError::TooManyAttributes);
            }
            let key = doc_slice(self.doc, attr.key.as_ref())?;
            if !self.seen.insert(key) {
                return Err(XmlError::NotWellFormed("duplicate attribute"));
            }
            if !is_qname(key.as_bytes()) {
                return Err(XmlError::NotWellFormed("invalid attribute name"));
            }
            let raw = doc_slice(self.doc, &attr.value)?;
            check_attr_value(raw)?;
            let declared = match key.strip_prefix("xmlns") {
                Some("") => Some(""),
                Some(rest) => rest.strip_prefix(':'),
                None => None,
            };
            if let Some(declared) = declared {
                declarations += 1;
                if declarations > self.limits.max_namespace_declarations {
                    return Err(XmlError::TooManyNamespaceDeclarations);
                }
                let uri = namespace_name(raw)?;
                if check_declaration(declared, &uri)? {
                    self.scope.declare(declared, uri, self.depth);
                }
            } else if let (Some(prefix), local) = split_qname(key) {
                self.prefixed.push((prefix, local));
            }
        }
        let ns = self.scope.resolve(prefix, true);
        if ns == Resolved::Undeclared {
            return Err(XmlError::NotWellFormed("undeclared element prefix"));
        }
        self.resolved.clear();
        for &(prefix, local) in &self.prefixed {
            let resolved = self.scope.resolve(Some(prefix), false);
            if resolved == Resolved::Undeclared {
                return Err(XmlError::NotWellFormed("undeclared attribute prefix"));
            }
            self.resolved.push((resolved, local));
        }
        if self.resolved.len() > 1 {
            // Namespaces in XML §6.3: no two attributes with the same expanded name.
            let mut expanded = SeenNames::new();
            for &(resolved, local) in &self.resolved {
                if !expanded.insert((self.scope.uri(resolved), local)) {
                    return Err(XmlError::NotWellFormed("two attributes with the same expanded name"));
                }
            }
        }
        Ok(StartTag { depth: self.depth, ns, local, empty, tag, name_len, attributes, declarations })
    }
}

/// `(prefix, local)` of a qualified name already checked by `is_qname`.
fn split_qname(qname: &str) -> (Option<&str>, &str) {
    match qname.split_once(':') {
        Some((prefix, local)) => (Some(prefix), local),
        None => (None, qname),
    }
}

/// The namespace name a declaration's raw value stands for: borrowed unless it had to be
/// unescaped or normalised.
fn namespace_name(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    if raw.contains(['&', '\t', '\n', '\r']) {
        unescape_attr(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
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

/// Whether `text` contains `]]>` (found via the `>` bytes, which memchr finds quickly).
fn contains_cdata_end(text: &str) -> bool {
    let mut rest = text;
    while let Some(gt) = rest.find('>') {
        if rest[..gt].ends_with("]]") {
            return true;
        }
        rest = &rest[gt + 1..];
    }
    false
}

fn push_text(error_child: &mut Option<(String, String)>, text: &str) {
    if let Some((_, t)) = error_child.as_mut() {
        t.push_str(text);
    }
}

/// A namespace-aware rendering of a document for `[xml]` comparisons in tests: expanded names,
/// attributes sorted (namespace declarations dropped), character data with references resolved.
#[cfg(test)]
pub(crate) fn canonical(doc: &str) -> String {
    use quick_xml::name::ResolveResult;
    use quick_xml::NsReader;
    use std::fmt::Write;
    let mut reader = NsReader::from_str(doc);
    let mut out = String::new();
    let mut text = String::new();
    loop {
        let (res, event) = reader.read_resolved_event().expect("well-formed");
        let ns = match res {
            ResolveResult::Bound(ns) => String::from_utf8(ns.as_ref().to_vec()).expect("utf8"),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => panic!("undeclared prefix {p:?} in {doc}"),
        };
        if !matches!(event, Event::Text(_) | Event::GeneralRef(_) | Event::CData(_)) && !text.is_empty() {
            write!(out, "{text:?}").expect("write");
            text.clear();
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = String::from_utf8(e.local_name().as_ref().to_vec()).expect("utf8");
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.expect("attr");
                    if a.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (res, local) = reader.resolve_attribute(a.key);
                    let ans = match res {
                        ResolveResult::Bound(ns) => String::from_utf8(ns.as_ref().to_vec()).expect("utf8"),
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(p) => panic!("undeclared prefix {p:?}"),
                    };
                    let value = unescape_attr(std::str::from_utf8(&a.value).expect("utf8")).expect("value");
                    attrs.push(format!("{{{ans}}}{}={value:?}", String::from_utf8_lossy(local.as_ref())));
                }
                attrs.sort();
                write!(out, "<{{{ns}}}{local} {}>", attrs.join(" ")).expect("write");
                if matches!(event, Event::Empty(_)) {
                    out.push_str("</>");
                }
            }
            Event::End(_) => out.push_str("</>"),
            Event::Text(ref t) => text.push_str(std::str::from_utf8(t).expect("utf8")),
            Event::CData(ref t) => text.push_str(std::str::from_utf8(t).expect("utf8")),
            Event::GeneralRef(ref r) => {
                text.push(resolve_reference(std::str::from_utf8(r).expect("utf8")).expect("ref"))
            }
            Event::Eof => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    fn check(doc: &str, max_depth: usize) -> Result<RootInfo<'_>, XmlError> {
        check_element(doc, &WfLimits { max_depth, ..WfLimits::UNLIMITED })
    }

    #[test]
    fn elements() {
        assert!(check("<a><b/></a>", 10).is_ok());
        assert_eq!(check("<a><b/></a>", 1), Err(XmlError::TooDeep));
        assert!(matches!(check("<a></b>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a x='1' x='2'/>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a p:x='1'/>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a>]]></a>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a>\u{1}</a>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a xmlns:p=''/>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a><!--c--></a>", 10), Err(XmlError::RestrictedXml(_))));
        let info = check(
            "<e xmlns='urn:x'><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>h&amp;<![CDATA[x]]></see-other-host></e>",
            10,
        )
        .expect("ok");
        assert_eq!(info.ns.as_deref(), Some("urn:x"));
        assert_eq!(info.error_child, Some(("see-other-host".into(), "h&x".into())));
    }

    #[test]
    fn duplicate_attributes_past_the_small_set_and_by_expanded_name() {
        let many: String = (0..40).map(|i| format!(" a{i}='x'")).collect();
        assert!(check(&format!("<a{many}/>"), 10).is_ok());
        assert!(matches!(check(&format!("<a{many} a30='y'/>"), 10), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(check("<a x='1' y='2' x='3'/>", 10), Err(XmlError::NotWellFormed(_))));
        // Namespaces in XML §6.3: the same expanded name through two prefixes.
        assert!(matches!(
            check("<a xmlns:p='urn:u' xmlns:q='urn:u' p:x='1' q:x='2'/>", 10),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(check("<a xmlns:p='urn:u' xmlns:q='urn:v' p:x='1' q:x='2' x='3'/>", 10).is_ok());
        let prefixed: String = (0..40).map(|i| format!(" xmlns:p{i}='urn:{i}' p{i}:x='1'")).collect();
        assert!(check(&format!("<a{prefixed}/>"), 10).is_ok());
        let clash = format!("<a{prefixed} xmlns:q='urn:7' q:x='1'/>");
        assert!(matches!(check(&clash, 10), Err(XmlError::NotWellFormed(_))));
    }

    #[test]
    fn namespace_declaration_constraints() {
        for bad in [
            "<a xmlns:xmlns='urn:x'/>",
            "<a xmlns:xml='urn:x'/>",
            "<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
            "<a xmlns:p='http://www.w3.org/2000/xmlns/'/>",
            "<a xmlns='http://www.w3.org/2000/xmlns/'/>",
            "<a xmlns='http://www.w3.org/XML/1998/namespace'/>",
            "<xmlns:a/>",
            "<a xmlns:='urn:x'/>",
            "<a><b xmlns:p='urn:p'/><p:c/></a>",
            "<a xmlns:p='urn:p'></a><p:b/>",
        ] {
            assert!(matches!(check(bad, 10), Err(XmlError::NotWellFormed(_))), "{bad}");
        }
        for good in [
            "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>",
            "<a xmlns='urn:d'><b xmlns=''/></a>",
            "<p:a xmlns:p='urn:p'><p:b/><c xmlns:p='urn:q'><p:d/></c><p:e/></p:a>",
            "<a p:x='1' xmlns:p='urn:p'/>",
        ] {
            assert!(check(good, 10).is_ok(), "{good}");
        }
        let info = check("<a xmlns='urn:d'><b xmlns=''/></a>", 10).expect("ok");
        assert_eq!(info.ns.as_deref(), Some("urn:d"));
        assert_eq!(check("<a xmlns=''/>", 10).expect("ok").ns, None);
    }

    #[test]
    fn caps_on_attributes_and_declarations() {
        let limits = WfLimits { max_depth: 10, max_attributes: 4, max_namespace_declarations: 2 };
        assert!(check_element("<a xmlns='urn:d' xmlns:p='urn:p' p:x='1' y='2'/>", &limits).is_ok());
        assert_eq!(
            check_element("<a xmlns='urn:d' xmlns:p='urn:p' p:x='1' y='2' z='3'/>", &limits),
            Err(XmlError::TooManyAttributes)
        );
        assert_eq!(
            check_element("<a><b xmlns='urn:d' xmlns:p='urn:p' xmlns:q='urn:q'/></a>", &limits),
            Err(XmlError::TooManyNamespaceDeclarations)
        );
        // Per start tag, not per document.
        assert!(check_element("<a x='1' y='2' z='3'><b x='1' y='2' z='3'/><c x='1' y='2' z='3'/></a>", &limits).is_ok());
    }

    #[test]
    fn inherited_declarations_resolve_and_are_reported_when_used() {
        let header = Inherited::new(vec![
            (None, "jabber:client".to_owned()),
            (Some("stream".to_owned()), "http://etherx.jabber.org/streams".to_owned()),
            (Some("foo".to_owned()), "urn:foo".to_owned()),
        ]);
        let used = |doc: &str| {
            check_in_scope(doc, &WfLimits::UNLIMITED, Some(&header))
                .map(|(root, used)| (root.ns.map(|ns| ns.into_owned()), used))
        };
        assert_eq!(used("<message><foo:x/><foo:y/></message>"), Ok((Some("jabber:client".to_owned()), vec![0, 2])));
        assert_eq!(used("<stream:features/>"), Ok((Some("http://etherx.jabber.org/streams".to_owned()), vec![1])));
        assert_eq!(used("<m xmlns='urn:m' xmlns:foo='urn:f'><foo:x/></m>"), Ok((Some("urn:m".to_owned()), vec![])));
        assert_eq!(used("<m xmlns='urn:m'><x xmlns=''/></m>"), Ok((Some("urn:m".to_owned()), vec![])));
        assert!(matches!(used("<bar:x/>"), Err(XmlError::NotWellFormed(_))));
        // Without the header the prefixes are undeclared.
        assert!(matches!(check("<message><foo:x/></message>", 10), Err(XmlError::NotWellFormed(_))));
    }

    #[test]
    fn root_children_by_namespace() {
        let doc = "<f xmlns:t='urn:t'>\n <t:a><t:b/></t:a><a/><t:c/><x xmlns='urn:t'><t:a/></x></f>";
        let ranges = root_children(doc, |ns, local| ns == Some("urn:t") && local != "x").expect("ok");
        let cut: Vec<&str> = ranges.into_iter().map(|r| &doc[r]).collect();
        assert_eq!(cut, ["<t:a><t:b/></t:a>", "<t:c/>"]);
    }

    #[test]
    fn root_info_borrows_or_owns_the_same_values() {
        let info = check("<p:a xmlns='urn:d' xmlns:p='urn:&amp;p' to='a&amp;b' xml:lang='en'/>", 10).expect("ok");
        // The namespace name is the unescaped value.
        assert_eq!(info.ns.as_deref(), Some("urn:&p"));
        assert_eq!(info.local, "a");
        assert_eq!(info.attrs(), Ok(vec![("to".into(), "a&b".into()), ("xml:lang".into(), "en".into())]));
        assert_eq!(info.ns_decls(), Ok(vec![(None, "urn:d".into()), (Some("p".into()), "urn:&p".into())]));
        let info = check("<xml:a/>", 10).expect("ok");
        assert_eq!(info.ns.as_deref(), Some("http://www.w3.org/XML/1998/namespace"));
        let info = check("<a xmlns:p='urn:p' xmlns='urn:d'><p:b/></a>", 10).expect("ok");
        assert_eq!(info.ns.as_deref(), Some("urn:d"));
        assert!(matches!(info.ns, Some(Cow::Borrowed(_))));
        assert!(matches!(check("<a>x]]y]]></a>", 10), Err(XmlError::NotWellFormed(_))));
        assert!(check("<a>x]]y]>]</a>", 10).is_ok());
    }

    #[test]
    fn deep_nesting_is_linear_and_iterative() {
        let n = 10_000;
        let doc = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(check(&doc, n).is_ok());
        assert_eq!(check(&doc, n - 1), Err(XmlError::TooDeep));
        // Deeper than quick-xml's own 16-bit namespace levels could count.
        let n = 70_000;
        let doc = format!("{}{}", "<a xmlns:p='urn:p'>".repeat(n), "</a>".repeat(n));
        assert!(check(&doc, n).is_ok());
    }
}
