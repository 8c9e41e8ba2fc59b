//! The lexical rules of XML 1.0 that quick-xml leaves to its caller (private): which
//! characters may appear (XML-5), name syntax, references (only the five predefined entities
//! and character references to allowed characters, never an entity expansion), attribute values,
//! and the pseudo-attributes of an XML declaration.
//!
//! Pure functions on one string each; every one is linear in its input and allocates at most a
//! copy of it.

use super::error::XmlError;

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
pub(crate) fn check_chars(doc: &str) -> Result<(), XmlError> {
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
            return Err(XmlError::NotWellFormed("character not allowed in XML"));
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
pub(crate) fn resolve_reference(name: &str) -> Result<char, XmlError> {
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
                return Err(XmlError::RestrictedXml("undefined entity"));
            } else {
                return Err(XmlError::NotWellFormed("malformed reference"));
            }
        }
    };
    match char::from_u32(code) {
        Some(c) if is_xml_char(c) => Ok(c),
        _ => Err(XmlError::NotWellFormed("character reference to a forbidden character")),
    }
}

fn parse_digits(digits: &str, radix: u32) -> Result<u32, XmlError> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(XmlError::NotWellFormed("malformed character reference"));
    }
    u32::from_str_radix(digits, radix).map_err(|_| XmlError::NotWellFormed("character reference out of range"))
}

/// Validates and unescapes a raw attribute value (without its quotes): references resolved,
/// `<` refused, literal TAB/LF/CR normalised to a space as XML 1.0 §3.3.3 requires (a CR LF pair
/// counts once, end-of-line handling comes first).
pub(crate) fn unescape_attr(raw: &str) -> Result<String, XmlError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '<', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.as_bytes()[0] {
            b'&' => {
                let end = tail.find(';').ok_or(XmlError::NotWellFormed("unterminated reference"))?;
                out.push(resolve_reference(&tail[1..end])?);
                rest = &tail[end + 1..];
            }
            b'<' => return Err(XmlError::NotWellFormed("'<' in an attribute value")),
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
pub(crate) fn check_attr_value(raw: &str) -> Result<(), XmlError> {
    let mut rest = raw.as_bytes();
    while let Some(i) = rest.iter().position(|&b| b == b'&' || b == b'<') {
        let tail = &rest[i..];
        if tail[0] == b'<' {
            return Err(XmlError::NotWellFormed("'<' in an attribute value"));
        }
        let end = tail.iter().position(|&b| b == b';').ok_or(XmlError::NotWellFormed("unterminated reference"))?;
        let name = std::str::from_utf8(&tail[1..end]).map_err(|_| XmlError::NotWellFormed("UTF-8"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(resolve_reference("amp"), Ok('&'));
        assert_eq!(resolve_reference("#x1F600"), Ok('😀'));
        assert_eq!(resolve_reference("#233"), Ok('é'));
        assert!(matches!(resolve_reference("#0"), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#x1"), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#xFFFE"), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#xD800"), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("#99999999999"), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(resolve_reference("nbsp"), Err(XmlError::RestrictedXml(_))));
        assert!(matches!(resolve_reference("#x"), Err(XmlError::NotWellFormed(_))));
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
    }
}
