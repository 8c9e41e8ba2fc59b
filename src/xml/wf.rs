//! Well-formedness and restricted-XML checks for one complete, standalone element (private).
//!
//! [`check_element`] is the single place where the gateway decides whether a piece of XML is
//! acceptable: it is used on every client message (after the XML declaration is stripped) and on
//! every server element *after* namespace completion, so what is checked is exactly what is
//! relayed. quick-xml's [`NsReader`] does the tokenising, end-tag matching, duplicate-attribute
//! and namespace-scope bookkeeping; this module adds what quick-xml leaves to its caller: XML 1.0
//! character ranges, name syntax, references (only the five predefined entities and character
//! references to allowed characters), `<` in attribute values, `]]>` in text, undeclared prefixes
//! and the restricted features of RFC 6120 §11.1.
//!
//! Invariants: cost is linear in the input (one pass of quick-xml, one pass over the characters,
//! no recursion, so 10 000 nested elements are fine); no entity is ever expanded beyond the five
//! predefined ones and character references; nothing here allocates more than a constant factor
//! of the input.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::NS_STREAM_ERRORS;

/// Why a document was refused. Callers map it onto their own error enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WfError {
    /// Not (namespace-)well-formed.
    NotWellFormed(&'static str),
    /// A comment, PI, DTD or undefined entity.
    Restricted(&'static str),
    /// Deeper than allowed.
    TooDeep,
}

/// What [`check_element`] learned about the root element. Everything borrows from the checked
/// document where it can: an ordinary stanza costs no allocation here. The root's attributes
/// are only read (again, already checked) when a caller asks for them ([`RootInfo::attrs`],
/// [`RootInfo::ns_decls`]): only `<open/>` and the stream header need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootInfo<'a> {
    /// The namespace the root element is in (`None` if unqualified or bound to "").
    pub ns: Option<Cow<'a, str>>,
    /// The root's local name.
    pub local: Cow<'a, str>,
    /// The root's start tag between `<` and `>` (or `/>`): its name and attributes.
    start: Cow<'a, str>,
    /// Length of the root's qualified name at the start of `start`.
    name_len: usize,
    /// The first child of the root in the stream-errors namespace other than `<text>`: its local
    /// name and its direct character data (used for `<see-other-host>`).
    pub error_child: Option<(String, String)>,
}

impl RootInfo<'_> {
    /// The root's attributes other than namespace declarations: raw qualified name and
    /// unescaped (attribute-value-normalised) value, in document order.
    pub fn attrs(&self) -> Result<Vec<(String, String)>, WfError> {
        Ok(self.root_attributes()?.0)
    }

    /// The root's namespace declarations in document order: `(None, uri)` for `xmlns`,
    /// `(Some(prefix), uri)` for `xmlns:prefix`, values unescaped.
    pub fn ns_decls(&self) -> Result<Vec<(Option<String>, String)>, WfError> {
        Ok(self.root_attributes()?.1)
    }

    /// Reads the root's attributes (already checked by [`check_element`]) into attributes and
    /// namespace declarations.
    #[allow(clippy::type_complexity)]
    fn root_attributes(&self) -> Result<(Vec<(String, String)>, Vec<(Option<String>, String)>), WfError> {
        let start = BytesStart::from_content(self.start.as_ref(), self.name_len);
        let (mut attrs, mut ns_decls) = (Vec::new(), Vec::new());
        for attr in start.attributes() {
            let attr = attr.map_err(|_| WfError::NotWellFormed("malformed attribute"))?;
            let key = std::str::from_utf8(attr.key.as_ref()).map_err(|_| WfError::NotWellFormed("UTF-8"))?;
            let raw = std::str::from_utf8(&attr.value).map_err(|_| WfError::NotWellFormed("UTF-8"))?;
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
/// without checking UTF-8 again: `doc` is a `&str` and quick-xml cuts it only at ASCII
/// delimiters. Anything not inside `doc` (or not on character boundaries) is checked as usual.
fn doc_str<'a>(doc: &'a str, part: &[u8]) -> Result<Cow<'a, str>, WfError> {
    let inside = (part.as_ptr() as usize)
        .checked_sub(doc.as_ptr() as usize)
        .and_then(|offset| doc.get(offset..offset.checked_add(part.len())?))
        .filter(|s| s.len() == part.len() && s.as_ptr() == part.as_ptr());
    match inside {
        Some(s) => Ok(Cow::Borrowed(s)),
        None => {
            std::str::from_utf8(part).map(|s| Cow::Owned(s.to_owned())).map_err(|_| WfError::NotWellFormed("UTF-8"))
        }
    }
}

/// Checks that `doc` is exactly one well-formed, namespace-well-formed element with no
/// restricted XML, nested at most `max_depth` deep (the root counts as depth 1). Nothing may
/// precede or follow the element, not even whitespace.
pub(crate) fn check_element(doc: &str, max_depth: usize) -> Result<RootInfo<'_>, WfError> {
    check_chars(doc)?;
    if !doc.starts_with('<') {
        return Err(WfError::NotWellFormed("the document does not start with '<'"));
    }
    let mut reader = NsReader::from_str(doc);
    // Defaults matter: end names are checked, `&` must start a reference, text is not trimmed.
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut root: Option<RootInfo<'_>> = None;
    let mut error_child: Option<(String, String)> = None;
    let mut depth = 0usize;
    // True while inside the captured stream-error condition child (its direct text is kept).
    let mut capturing = false;
    loop {
        let event = reader.read_event().map_err(|_| WfError::NotWellFormed("malformed XML"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if depth == 0 && root.is_some() {
                    return Err(WfError::NotWellFormed("more than one element"));
                }
                depth += 1;
                if depth > max_depth {
                    return Err(WfError::TooDeep);
                }
                let own_declaration = check_start(doc, &reader, e)?;
                let (res, local) = reader.resolve_element(e.name());
                let ns = match res {
                    ResolveResult::Bound(ns) if !ns.as_ref().is_empty() => {
                        Some(std::str::from_utf8(ns.0).map_err(|_| WfError::NotWellFormed("UTF-8"))?)
                    }
                    ResolveResult::Bound(_) | ResolveResult::Unbound => None,
                    ResolveResult::Unknown(_) => return Err(WfError::NotWellFormed("undeclared element prefix")),
                };
                let local = doc_str(doc, local.as_ref())?;
                if depth == 1 {
                    let start = doc_str(doc, e)?;
                    // The root's namespace is declared on the root itself (quick-xml keeps the
                    // raw value) or is a reserved one: borrow the declaration when it is the same.
                    let ns = ns.map(|ns| match own_declaration {
                        Some(raw) if raw == ns => raw,
                        _ => Cow::Owned(ns.to_owned()),
                    });
                    root = Some(RootInfo { ns, local, start, name_len: e.name().as_ref().len(), error_child: None });
                } else if depth == 2 && error_child.is_none() && ns == Some(NS_STREAM_ERRORS) && local != "text" {
                    error_child = Some((local.into_owned(), String::new()));
                    capturing = !empty;
                }
                if empty {
                    depth -= 1;
                }
            }
            Event::End(_) => {
                // quick-xml has already checked the name against the open element.
                if depth == 2 {
                    capturing = false;
                }
                depth = depth.checked_sub(1).ok_or(WfError::NotWellFormed("unmatched end tag"))?;
            }
            Event::Text(ref t) => {
                if depth == 0 {
                    return Err(WfError::NotWellFormed("text outside the element"));
                }
                let text = doc_str(doc, t)?;
                if contains_cdata_end(&text) {
                    return Err(WfError::NotWellFormed("']]>' in character data"));
                }
                if capturing && depth == 2 {
                    push_text(&mut error_child, &text);
                }
            }
            Event::GeneralRef(ref r) => {
                if depth == 0 {
                    return Err(WfError::NotWellFormed("reference outside the element"));
                }
                let name = doc_str(doc, r)?;
                let c = resolve_reference(&name)?;
                if capturing && depth == 2 {
                    push_text(&mut error_child, c.encode_utf8(&mut [0; 4]));
                }
            }
            Event::CData(ref c) => {
                if depth == 0 {
                    return Err(WfError::NotWellFormed("CDATA outside the element"));
                }
                if capturing && depth == 2 {
                    let text = doc_str(doc, c)?;
                    push_text(&mut error_child, &text);
                }
            }
            Event::Comment(_) => return Err(WfError::Restricted("comment")),
            Event::PI(_) => return Err(WfError::Restricted("processing instruction")),
            Event::DocType(_) => return Err(WfError::Restricted("document type declaration")),
            Event::Decl(_) => return Err(WfError::NotWellFormed("XML declaration not at the start")),
            Event::Eof => break,
        }
    }
    let Some(mut root) = root else {
        return Err(WfError::NotWellFormed("no element"));
    };
    if depth != 0 {
        return Err(WfError::NotWellFormed("unclosed element"));
    }
    root.error_child = error_child;
    Ok(root)
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

/// Attribute names already seen on one start tag (duplicates are not well-formed): the first
/// few on the stack, any further ones in a vector.
struct SeenKeys<'k> {
    first: [&'k [u8]; 8],
    count: usize,
    more: Vec<&'k [u8]>,
}

impl<'k> SeenKeys<'k> {
    fn new() -> Self {
        SeenKeys { first: [&[]; 8], count: 0, more: Vec::new() }
    }

    /// Records `key`; false if it was already there.
    fn insert(&mut self, key: &'k [u8]) -> bool {
        let on_stack = self.count.min(self.first.len());
        if self.first[..on_stack].contains(&key) || self.more.contains(&key) {
            return false;
        }
        if self.count < self.first.len() {
            self.first[self.count] = key;
        } else {
            self.more.push(key);
        }
        self.count += 1;
        true
    }
}

/// Checks one start tag: names, attributes (unique names, values, namespace declarations,
/// attribute prefixes). The element's own name is resolved by the caller. Returns the raw value
/// of the tag's own declaration of the element's prefix (or default namespace), if any.
fn check_start<'a>(
    doc: &'a str,
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
) -> Result<Option<Cow<'a, str>>, WfError> {
    let name = e.name();
    if !is_qname(name.as_ref()) {
        return Err(WfError::NotWellFormed("invalid element name"));
    }
    let element_prefix = name.prefix().map(|p| p.into_inner());
    let mut own_declaration = None;
    let mut seen = SeenKeys::new();
    // Uniqueness is checked here rather than by quick-xml, whose check allocates per element.
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|_| WfError::NotWellFormed("malformed attribute"))?;
        let key = attr.key.0;
        if !seen.insert(key) {
            return Err(WfError::NotWellFormed("malformed attribute"));
        }
        if !is_qname(key) {
            return Err(WfError::NotWellFormed("invalid attribute name"));
        }
        let raw = doc_str(doc, &attr.value)?;
        check_attr_value(&raw)?;
        if let Some(prefix) = key.strip_prefix(b"xmlns:") {
            // A value is empty after unescaping exactly when it is empty raw.
            if raw.is_empty() {
                return Err(WfError::NotWellFormed("namespace prefix bound to the empty name"));
            }
            if prefix == b"xmlns" {
                return Err(WfError::NotWellFormed("the xmlns prefix declared"));
            }
            if element_prefix == Some(prefix) {
                own_declaration = Some(raw);
            }
            continue;
        }
        if key == b"xmlns" {
            if element_prefix.is_none() {
                own_declaration = Some(raw);
            }
            continue;
        }
        if key.contains(&b':') {
            let (res, _) = reader.resolve_attribute(attr.key);
            if let ResolveResult::Unknown(_) = res {
                return Err(WfError::NotWellFormed("undeclared attribute prefix"));
            }
        }
    }
    Ok(own_declaration)
}

/// Whether `c` may appear in an XML 1.0 document (the `Char` production).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Refuses any character XML 1.0 forbids (XML-5).
///
/// Works on the bytes, which is the same test as [`is_xml_char`] on every character: a `&str`
/// holds no surrogates, so the only characters refused are the C0 controls other than TAB, LF
/// and CR (single bytes below 0x20) and U+FFFE/U+FFFF (`EF BF BE`/`EF BF BF`, and `EF` only
/// ever starts a character).
pub(crate) fn check_chars(doc: &str) -> Result<(), WfError> {
    let bytes = doc.as_bytes();
    // Fast path, without early exit so that it vectorises: every byte in 0x20..0xEF is fine.
    if bytes.chunks(64).all(|chunk| chunk.iter().fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0xEF - 0x20))) {
        return Ok(());
    }
    for (i, &b) in bytes.iter().enumerate() {
        let bad = match b {
            b'\t' | b'\n' | b'\r' => false,
            0..0x20 => true,
            0xEF => bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)),
            _ => false,
        };
        if bad {
            return Err(WfError::NotWellFormed("character not allowed in XML"));
        }
    }
    Ok(())
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// The `NCName` production of Namespaces in XML (a name without a colon).
pub(crate) fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if is_name_start(c)) && chars.all(is_name_char)
}

/// The `QName` production: `NCName` or `NCName:NCName`.
pub(crate) fn is_qname(name: &[u8]) -> bool {
    if name.is_ascii() {
        // The same productions restricted to ASCII, on bytes.
        let ncname = |s: &[u8]| {
            matches!(s.first(), Some(b'A'..=b'Z' | b'_' | b'a'..=b'z'))
                && s.iter().all(|&b| matches!(b, b'A'..=b'Z' | b'_' | b'a'..=b'z' | b'-' | b'.' | b'0'..=b'9'))
        };
        return match name.iter().position(|&b| b == b':') {
            Some(colon) => ncname(&name[..colon]) && ncname(&name[colon + 1..]),
            None => ncname(name),
        };
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    match name.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(name),
    }
}

/// Resolves the name of a reference (`amp`, `#233`, `#x1F600`) to its character.
/// Undefined entities are restricted XML (never expanded); character references to characters
/// XML forbids are not well-formed.
pub(crate) fn resolve_reference(name: &str) -> Result<char, WfError> {
    let code = match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "apos" => return Ok('\''),
        "quot" => return Ok('"'),
        _ => {
            if let Some(hex) = name.strip_prefix("#x") {
                parse_digits(hex, 16)?
            } else if let Some(dec) = name.strip_prefix('#') {
                parse_digits(dec, 10)?
            } else if is_ncname(name) {
                return Err(WfError::Restricted("undefined entity"));
            } else {
                return Err(WfError::NotWellFormed("malformed reference"));
            }
        }
    };
    match char::from_u32(code) {
        Some(c) if is_xml_char(c) => Ok(c),
        _ => Err(WfError::NotWellFormed("character reference to a forbidden character")),
    }
}

fn parse_digits(digits: &str, radix: u32) -> Result<u32, WfError> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(WfError::NotWellFormed("malformed character reference"));
    }
    u32::from_str_radix(digits, radix).map_err(|_| WfError::NotWellFormed("character reference out of range"))
}

/// Validates and unescapes a raw attribute value (without its quotes): references resolved,
/// `<` refused, literal TAB/LF/CR normalised to a space as XML 1.0 §3.3.3 requires (a CR LF pair
/// counts once, end-of-line handling comes first).
pub(crate) fn unescape_attr(raw: &str) -> Result<String, WfError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '<', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.as_bytes()[0] {
            b'&' => {
                let end = tail.find(';').ok_or(WfError::NotWellFormed("unterminated reference"))?;
                out.push(resolve_reference(&tail[1..end])?);
                rest = &tail[end + 1..];
            }
            b'<' => return Err(WfError::NotWellFormed("'<' in an attribute value")),
            b'\r' if tail.as_bytes().get(1) == Some(&b'\n') => {
                out.push(' ');
                rest = &tail[2..];
            }
            _ => {
                out.push(' ');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Validates a raw attribute value (without its quotes) exactly as [`unescape_attr`] does,
/// without building the unescaped value: references must resolve, `<` is refused.
pub(crate) fn check_attr_value(raw: &str) -> Result<(), WfError> {
    let mut rest = raw.as_bytes();
    while let Some(i) = rest.iter().position(|&b| b == b'&' || b == b'<') {
        let tail = &rest[i..];
        if tail[0] == b'<' {
            return Err(WfError::NotWellFormed("'<' in an attribute value"));
        }
        let end = tail.iter().position(|&b| b == b';').ok_or(WfError::NotWellFormed("unterminated reference"))?;
        let name = std::str::from_utf8(&tail[1..end]).map_err(|_| WfError::NotWellFormed("UTF-8"))?;
        resolve_reference(name)?;
        rest = &tail[end + 1..];
    }
    Ok(())
}

/// The outcome of reading an XML declaration's pseudo-attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeclError {
    /// Malformed, or a version other than 1.0.
    NotWellFormed,
    /// `standalone` present: RFC 6120 §11.5 says it MUST NOT be included; we refuse it as
    /// restricted XML (XML-4 allows ignoring or refusing; refusing is the strict choice).
    Standalone,
    /// An encoding other than UTF-8.
    UnsupportedEncoding,
}

/// Checks the inside of an XML declaration, `body` being what lies between `<?xml` and `?>`.
/// Accepts `version` 1.0 (required, first) and an optional `encoding` equal to UTF-8 in any case.
pub(crate) fn check_decl(body: &str) -> Result<(), DeclError> {
    let mut rest = body;
    let mut index = 0;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let had_space = trimmed.len() != rest.len();
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        if !had_space {
            return Err(DeclError::NotWellFormed);
        }
        let eq = rest.find('=').ok_or(DeclError::NotWellFormed)?;
        let name = rest[..eq].trim_end_matches([' ', '\t', '\r', '\n']);
        let after = rest[eq + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
        let quote = after.chars().next().ok_or(DeclError::NotWellFormed)?;
        if quote != '"' && quote != '\'' {
            return Err(DeclError::NotWellFormed);
        }
        let close = after[1..].find(quote).ok_or(DeclError::NotWellFormed)?;
        let value = &after[1..1 + close];
        rest = &after[close + 2..];
        match (index, name) {
            (0, "version") => {
                if value != "1.0" {
                    return Err(DeclError::NotWellFormed);
                }
            }
            (1, "encoding") => {
                if !value.eq_ignore_ascii_case("UTF-8") {
                    let valid = value.starts_with(|c: char| c.is_ascii_alphabetic())
                        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    return Err(if valid { DeclError::UnsupportedEncoding } else { DeclError::NotWellFormed });
                }
            }
            (1 | 2, "standalone") => return Err(DeclError::Standalone),
            _ => return Err(DeclError::NotWellFormed),
        }
        index += 1;
    }
    if index == 0 {
        return Err(DeclError::NotWellFormed);
    }
    Ok(())
}

/// A namespace-aware rendering of a document for `[xml]` comparisons in tests: expanded names,
/// attributes sorted (namespace declarations dropped), character data with references resolved.
#[cfg(test)]
pub(crate) fn canonical(doc: &str) -> String {
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

    #[test]
    fn references() {
        assert_eq!(resolve_reference("amp"), Ok('&'));
        assert_eq!(resolve_reference("#x1F600"), Ok('😀'));
        assert_eq!(resolve_reference("#233"), Ok('é'));
        assert!(matches!(resolve_reference("#0"), Err(WfError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#x1"), Err(WfError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#xFFFE"), Err(WfError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#xD800"), Err(WfError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#99999999999"), Err(WfError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("nbsp"), Err(WfError::Restricted(_))));
        assert!(matches!(resolve_reference("#x"), Err(WfError::NotWellFormed(_))));
    }

    #[test]
    fn attribute_values() {
        assert_eq!(unescape_attr("a&amp;b&#10;c\td\r\ne").as_deref(), Ok("a&b\nc d e"));
        assert!(unescape_attr("a<b").is_err());
        assert!(unescape_attr("a&b").is_err());
    }

    #[test]
    fn declarations() {
        assert_eq!(check_decl(" version='1.0'"), Ok(()));
        assert_eq!(check_decl(" version=\"1.0\" encoding='utf-8' "), Ok(()));
        assert_eq!(check_decl(" version='1.0' encoding='ISO-8859-1'"), Err(DeclError::UnsupportedEncoding));
        assert_eq!(check_decl(" version='1.0' standalone='no'"), Err(DeclError::Standalone));
        assert_eq!(check_decl(" version='1.1'"), Err(DeclError::NotWellFormed));
        assert_eq!(check_decl(" encoding='UTF-8'"), Err(DeclError::NotWellFormed));
        assert_eq!(check_decl(""), Err(DeclError::NotWellFormed));
        assert_eq!(check_decl(" version='1.0'encoding='UTF-8'"), Err(DeclError::NotWellFormed));
    }

    #[test]
    fn names() {
        assert!(is_qname(b"stream:features"));
        assert!(is_qname(b"a-b.c"));
        assert!(!is_qname(b"1a"));
        assert!(!is_qname(b"a:b:c"));
        assert!(!is_qname(b"a\"b"));
    }

    #[test]
    fn elements() {
        assert!(check_element("<a><b/></a>", 10).is_ok());
        assert_eq!(check_element("<a><b/></a>", 1), Err(WfError::TooDeep));
        assert!(matches!(check_element("<a></b>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a x='1' x='2'/>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a p:x='1'/>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a>]]></a>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a>\u{1}</a>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a xmlns:p=''/>", 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a><!--c--></a>", 10), Err(WfError::Restricted(_))));
        let info = check_element(
            "<e xmlns='urn:x'><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>h&amp;<![CDATA[x]]></see-other-host></e>",
            10,
        )
        .expect("ok");
        assert_eq!(info.ns.as_deref(), Some("urn:x"));
        assert_eq!(info.error_child, Some(("see-other-host".into(), "h&x".into())));
    }

    /// The reference definitions the fast paths must agree with.
    fn check_chars_by_char(doc: &str) -> bool {
        doc.chars().all(is_xml_char)
    }

    fn is_qname_by_char(name: &str) -> bool {
        match name.split_once(':') {
            Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
            None => is_ncname(name),
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_paths_agree_with_the_definitions(s in "[\\x00-\\x7F\u{80}-\u{3FF}\u{D7FF}\u{E000}\u{FFFD}-\u{FFFF}\u{10000}&;#<:a-zA-Z0-9._-]{0,24}") {
            proptest::prop_assert_eq!(check_chars(&s).is_ok(), check_chars_by_char(&s));
            proptest::prop_assert_eq!(is_qname(s.as_bytes()), is_qname_by_char(&s));
            proptest::prop_assert_eq!(check_attr_value(&s), unescape_attr(&s).map(|_| ()));
        }
    }

    #[test]
    fn fast_path_edges() {
        for c in ['\u{FFFE}', '\u{FFFF}', '\u{0}', '\u{1F}', '\u{B}'] {
            let doc = format!("<a>{}{c}</a>", "x".repeat(100));
            assert!(check_chars(&doc).is_err(), "{c:?}");
        }
        for c in ['\u{EFFF}', '\u{FFFD}', '\u{F000}', '\u{7F}', '\u{10FFFF}', '\t', '\n', '\r'] {
            assert!(check_chars(&format!("<a>{c}</a>")).is_ok(), "{c:?}");
        }
        // Duplicate attributes beyond the first eight are still found.
        let many: String = (0..12).map(|i| format!(" a{i}='x'")).collect();
        assert!(check_element(&format!("<a{many}/>"), 10).is_ok());
        assert!(matches!(check_element(&format!("<a{many} a10='y'/>"), 10), Err(WfError::NotWellFormed(_))));
        assert!(matches!(check_element("<a x='1' y='2' x='3'/>", 10), Err(WfError::NotWellFormed(_))));
    }

    #[test]
    fn root_info_borrows_or_owns_the_same_values() {
        let info =
            check_element("<p:a xmlns='urn:d' xmlns:p='urn:&amp;p' to='a&amp;b' xml:lang='en'/>", 10).expect("ok");
        // quick-xml keeps the raw declaration value as the namespace name.
        assert_eq!(info.ns.as_deref(), Some("urn:&amp;p"));
        assert_eq!(info.local, "a");
        assert_eq!(info.attrs(), Ok(vec![("to".into(), "a&b".into()), ("xml:lang".into(), "en".into())]));
        assert_eq!(info.ns_decls(), Ok(vec![(None, "urn:d".into()), (Some("p".into()), "urn:&p".into())]));
        let info = check_element("<xml:a/>", 10).expect("ok");
        assert_eq!(info.ns.as_deref(), Some("http://www.w3.org/XML/1998/namespace"));
        let info = check_element("<a xmlns:p='urn:p' xmlns='urn:d'><p:b/></a>", 10).expect("ok");
        assert_eq!(info.ns.as_deref(), Some("urn:d"));
        assert!(matches!(check_element("<a>x]]y]]></a>", 10), Err(WfError::NotWellFormed(_))));
        assert!(check_element("<a>x]]y]>]</a>", 10).is_ok());
    }

    #[test]
    fn deep_nesting_is_linear_and_iterative() {
        let n = 10_000;
        let doc = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(check_element(&doc, n).is_ok());
        assert_eq!(check_element(&doc, n - 1), Err(WfError::TooDeep));
    }
}
