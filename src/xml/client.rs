//! Validation and classification of one client WebSocket message (RFC 7395 §3.3.3).
//!
//! A client message must be exactly one well-formed, namespace-well-formed element in UTF-8,
//! optionally preceded by an XML declaration (DECISIONS D16), with nothing restricted by RFC 6120
//! §11.1 (no DTD, comment, processing instruction or entity other than the five predefined ones)
//! and no character XML 1.0 forbids (XML-5). This module decides what the message is; it never
//! rewrites stanza content and never performs I/O.

use super::condition::StreamCondition;
use super::error::XmlError;
use super::lexical::{check_decl, DeclError};
use super::wf::{self, WfLimits};
use super::{DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_NAMESPACE_DECLARATIONS};
use super::{NS_COMPRESS_PROTOCOL, NS_FRAMING, NS_SASL, NS_STREAM, NS_TLS};

/// Limits applied while validating a client message.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Maximum nesting depth of elements inside one message.
    pub max_depth: usize,
    /// Maximum attributes on one start tag, namespace declarations included.
    pub max_attributes: usize,
    /// Maximum namespace declarations on one start tag.
    pub max_namespace_declarations: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_depth: 10_000,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_namespace_declarations: DEFAULT_MAX_NAMESPACE_DECLARATIONS,
        }
    }
}

impl ClientLimits {
    fn wf(&self) -> WfLimits {
        WfLimits {
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_namespace_declarations: self.max_namespace_declarations,
        }
    }
}

/// The attributes of a client `<open/>` that the gateway uses (RFC 7395 §3.3.1).
///
/// `id` is deliberately absent: RFC 6120 §4.7.3 forbids sending it upstream (HDR-3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenRequest {
    /// `to`, unnormalised, as the client wrote it (after XML unescaping).
    pub to: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// `version`.
    pub version: Option<String>,
}

/// What kind of ordinary element a client message carries, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientElementKind {
    /// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`: answered with `<failure/>`, never relayed (TLS-7).
    StartTls,
    /// `<compress xmlns='http://jabber.org/protocol/compress'>`: never relayed (TLS-7).
    Compress,
    /// `<stream:error>` in the stream namespace: relayed, then the upstream stream is closed (ERR-6).
    StreamError,
    /// `<auth>` in the SASL namespace (its payload must never be logged).
    SaslAuth,
    /// Anything else: relayed as is.
    Other,
}

/// One classified client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// `<open/>` in the framing namespace.
    Open(OpenRequest),
    /// `<close/>` in the framing namespace.
    Close,
    /// Any other element. `xml` is the exact text to write upstream: the message with a leading
    /// XML declaration (and whitespace after it) removed, otherwise byte-identical.
    Element {
        /// The bytes to relay.
        xml: &'a str,
        /// What the element is.
        kind: ClientElementKind,
    },
}

/// Validates one client WebSocket text message and says what it is.
///
/// Accepted shape: an optional XML declaration (`version` 1.0, `encoding` absent or UTF-8 in any
/// case) at the very first byte, optional whitespace, then exactly one element and nothing else.
/// Strictness, documented choices:
/// - the first character must be `<`: leading whitespace or U+FEFF is `NotWellFormed` (FR-4);
/// - anything after the root element, even whitespace, is `NotWellFormed` (one element per
///   message, RFC 7395 §3.3.3);
/// - `standalone` in the declaration is `RestrictedXml` (RFC 6120 §11.5 says it MUST NOT be sent);
/// - a legacy `<stream:stream ...>` header (any element whose local name is `stream`, well-formed
///   or not) is `InvalidNamespace`, like `<open/>`/`<close/>` outside the framing namespace and
///   any other element in the framing namespace.
///
/// Cost is linear in the message size whatever its shape (many attributes, many namespace
/// declarations in scope, deep nesting); nesting is handled without recursion.
pub fn classify<'a>(message: &'a str, limits: &ClientLimits) -> Result<ClientFrame<'a>, XmlError> {
    let xml = strip_declaration(message)?;
    let root = match wf::check_element(xml, &limits.wf()) {
        Ok(root) => root,
        Err(err) => {
            if root_local_name(xml) == Some("stream") {
                return Err(XmlError::InvalidNamespace("legacy <stream:stream> instead of <open/>"));
            }
            return Err(err);
        }
    };
    let ns = root.ns.as_deref();
    let local = root.local;
    let kind = match (ns, local) {
        (Some(NS_FRAMING), "open") => {
            let attrs = root.attrs().map_err(|_| XmlError::NotWellFormed("malformed attribute"))?;
            return Ok(ClientFrame::Open(open_request(attrs)));
        }
        (Some(NS_FRAMING), "close") => return Ok(ClientFrame::Close),
        (Some(NS_FRAMING), _) => return Err(XmlError::InvalidNamespace("unknown element in the framing namespace")),
        (_, "open" | "close") => {
            return Err(XmlError::InvalidNamespace("<open/> or <close/> outside the framing namespace"))
        }
        (_, "stream") => return Err(XmlError::InvalidNamespace("legacy <stream:stream> instead of <open/>")),
        (Some(NS_TLS), "starttls") => ClientElementKind::StartTls,
        (Some(NS_COMPRESS_PROTOCOL), "compress") => ClientElementKind::Compress,
        (Some(NS_STREAM), "error") => ClientElementKind::StreamError,
        (Some(NS_SASL), "auth") => ClientElementKind::SaslAuth,
        _ => ClientElementKind::Other,
    };
    Ok(ClientFrame::Element { xml, kind })
}

/// The defined condition of a client `<stream:error>` message, for metrics: bounded to the
/// RFC 6120 list, `"undefined-condition"` for anything else. Call it only on messages
/// [`classify`] accepted as [`ClientElementKind::StreamError`].
pub fn stream_error_condition(xml: &str) -> StreamCondition {
    match wf::check_element(xml, &WfLimits::UNLIMITED) {
        Ok(root) => StreamCondition::from_name(root.error_child.map(|(name, _)| name).as_deref().unwrap_or("")),
        Err(_) => StreamCondition::UndefinedCondition,
    }
}

/// Removes a leading XML declaration and the whitespace after it, checking the declaration.
/// Anything that merely starts like one (`<?xml-stylesheet`, `<?xml` not at byte 0) is left for
/// the element check, which refuses it as a processing instruction.
fn strip_declaration(message: &str) -> Result<&str, XmlError> {
    let Some(after) = message.strip_prefix("<?xml") else {
        return Ok(message);
    };
    if !after.starts_with([' ', '\t', '\r', '\n']) {
        return Ok(message);
    }
    let end = after.find("?>").ok_or(XmlError::NotWellFormed("unterminated XML declaration"))?;
    check_decl(&after[..end]).map_err(|e| match e {
        DeclError::NotWellFormed => XmlError::NotWellFormed("malformed XML declaration"),
        DeclError::Standalone => XmlError::RestrictedXml("standalone in the XML declaration"),
        DeclError::UnsupportedEncoding => XmlError::UnsupportedEncoding,
    })?;
    Ok(after[end + 2..].trim_start_matches([' ', '\t', '\r', '\n']))
}

/// The local part of the first start tag's name, read without parsing (used only to recognise a
/// legacy stream header, which is not well-formed on its own).
fn root_local_name(xml: &str) -> Option<&str> {
    let rest = xml.strip_prefix('<')?;
    let end = rest.find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
    let qname = &rest[..end];
    Some(qname.rsplit_once(':').map_or(qname, |(_, local)| local))
}

fn open_request(attrs: Vec<(String, String)>) -> OpenRequest {
    let mut open = OpenRequest::default();
    for (name, value) in attrs {
        match name.as_str() {
            "to" => open.to = Some(value),
            "from" => open.from = Some(value),
            "xml:lang" => open.lang = Some(value),
            "version" => open.version = Some(value),
            _ => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_default(message: &str) -> Result<ClientFrame<'_>, XmlError> {
        classify(message, &ClientLimits::default())
    }

    fn not_well_formed(message: &str) {
        let got = classify_default(message);
        assert!(matches!(got, Err(XmlError::NotWellFormed(_))), "{message:?} gave {got:?}");
    }

    fn restricted(message: &str) {
        let got = classify_default(message);
        assert!(matches!(got, Err(XmlError::RestrictedXml(_))), "{message:?} gave {got:?}");
    }

    fn invalid_namespace(message: &str) {
        let got = classify_default(message);
        assert!(matches!(got, Err(XmlError::InvalidNamespace(_))), "{message:?} gave {got:?}");
    }

    fn element(message: &str) -> (&str, ClientElementKind) {
        match classify_default(message) {
            Ok(ClientFrame::Element { xml, kind }) => (xml, kind),
            other => panic!("{message:?} gave {other:?}"),
        }
    }

    fn open(message: &str) -> OpenRequest {
        match classify_default(message) {
            Ok(ClientFrame::Open(open)) => open,
            other => panic!("{message:?} gave {other:?}"),
        }
    }

    #[test]
    fn tv10_open() {
        let got =
            open(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" xml:lang="en"/>"#);
        assert_eq!(
            got,
            OpenRequest {
                to: Some("example.com".into()),
                from: None,
                lang: Some("en".into()),
                version: Some("1.0".into()),
            }
        );
    }

    #[test]
    fn tv23_tv24_open_id_is_dropped_and_from_kept() {
        let got = open(
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" from="juliet@example.com" version="1.0" id="client-chosen"/>"#,
        );
        assert_eq!(got.from.as_deref(), Some("juliet@example.com"));
        assert_eq!(got.to.as_deref(), Some("example.com"));
        assert_eq!(got.lang, None);
    }

    #[test]
    fn fr8_open_forms() {
        let expected =
            OpenRequest { to: Some("example.com".into()), from: None, lang: None, version: Some("1.0".into()) };
        for message in [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
            "<open version=\"1.0\" to='example.com' xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" />",
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'></open>",
            "<f:open xmlns:f='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
            "<?xml version='1.0'?><open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
            "<open\n xmlns='urn:ietf:params:xml:ns:xmpp-framing'\tto='example.com' version='1.0'\n/>",
        ] {
            assert_eq!(open(message), expected, "{message}");
        }
    }

    #[test]
    fn open_attributes_are_unescaped() {
        let got = open(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a&amp;b/>c' from=\"x&#x27;y\" xml:lang='d&#101;'/>",
        );
        assert_eq!(got.to.as_deref(), Some("a&b/>c"));
        assert_eq!(got.from.as_deref(), Some("x'y"));
        assert_eq!(got.lang.as_deref(), Some("de"));
    }

    #[test]
    fn close_forms() {
        for message in [
            r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#,
            r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#,
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'></close>",
            "<x:close xmlns:x='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ] {
            assert_eq!(classify_default(message), Ok(ClientFrame::Close), "{message}");
        }
    }

    #[test]
    fn tv80_open_outside_framing_namespace() {
        invalid_namespace(r#"<open xmlns="jabber:client" to="example.com" version="1.0"/>"#);
        invalid_namespace(r#"<open to="example.com" version="1.0"/>"#);
        invalid_namespace(r#"<close xmlns="jabber:client"/>"#);
        invalid_namespace(r#"<stream xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#);
        invalid_namespace(r#"<presence xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#);
    }

    #[test]
    fn tv81_legacy_stream_header() {
        invalid_namespace(
            r#"<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="example.com" version="1.0">"#,
        );
        invalid_namespace(
            r#"<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="example.com" version="1.0"/>"#,
        );
    }

    #[test]
    fn tv82_first_message_presence_is_an_element() {
        // The session refuses it because it is not <open/>; here it is just an element.
        assert_eq!(
            element(r#"<presence xmlns="jabber:client"/>"#),
            (r#"<presence xmlns="jabber:client"/>"#, ClientElementKind::Other)
        );
    }

    #[test]
    fn tv60_tv61_are_for_the_websocket_layer() {
        // A binary frame never reaches classify (TV-60) and invalid UTF-8 (TV-61) cannot be a
        // &str: the WebSocket layer refuses both before this module is involved.
        let bytes = std::hint::black_box(vec![0x3C, 0x6D, 0xC3, 0x28, 0x2F, 0x3E]);
        assert!(std::str::from_utf8(&bytes).is_err());
    }

    #[test]
    fn tv62_leading_whitespace_or_bom() {
        not_well_formed(" <presence/>");
        not_well_formed("\u{FEFF}<presence/>");
        not_well_formed("\n<presence xmlns='jabber:client'/>");
        not_well_formed("<?xml version='1.0'?>\u{FEFF}<presence/>");
    }

    #[test]
    fn tv63_two_elements() {
        not_well_formed(r#"<presence/><presence type="unavailable"/>"#);
        not_well_formed("<presence/> <presence/>");
    }

    #[test]
    fn tv64_partial_element() {
        not_well_formed(r#"<message xmlns="jabber:client"><body>hi"#);
        not_well_formed("<message xmlns='jabber:client'");
        not_well_formed("");
    }

    #[test]
    fn trailing_whitespace_or_text() {
        not_well_formed("<presence/> ");
        not_well_formed("<presence/>\n");
        not_well_formed("<presence/>x");
    }

    #[test]
    fn tv65_declaration_is_stripped() {
        assert_eq!(
            element(r#"<?xml version="1.0"?><presence xmlns="jabber:client"/>"#),
            (r#"<presence xmlns="jabber:client"/>"#, ClientElementKind::Other)
        );
        assert_eq!(element("<?xml version='1.0' encoding='UTF-8' ?>\r\n <presence/>").0, "<presence/>");
    }

    #[test]
    fn tv66_other_encoding() {
        assert_eq!(
            classify_default(r#"<?xml version="1.0" encoding="ISO-8859-1"?><presence xmlns="jabber:client"/>"#),
            Err(XmlError::UnsupportedEncoding)
        );
    }

    #[test]
    fn declaration_variants() {
        restricted(r#"<?xml version="1.0" standalone="yes"?><presence/>"#);
        not_well_formed(r#"<?xml version="1.1"?><presence/>"#);
        not_well_formed(r#"<?xml encoding="UTF-8"?><presence/>"#);
        not_well_formed(r#"<?xml version="1.0"<presence/>"#);
        not_well_formed(r#"<?xml version="1.0"?>"#);
        // A second declaration, or one not at the very start.
        not_well_formed(r#"<?xml version="1.0"?><?xml version="1.0"?><presence/>"#);
        not_well_formed(r#"<presence/><?xml version="1.0"?>"#);
        restricted(r#"<?xml-stylesheet href="a"?><presence/>"#);
    }

    #[test]
    fn tv67_comment() {
        restricted(r#"<message xmlns="jabber:client" to="romeo@example.net"><!--x--><body>hi</body></message>"#);
        restricted("<presence/><!--x-->");
    }

    #[test]
    fn tv68_processing_instruction() {
        restricted(r#"<message xmlns="jabber:client"><?php echo 1?></message>"#);
    }

    #[test]
    fn tv69_doctype_is_never_expanded() {
        restricted(r#"<!DOCTYPE message [<!ENTITY x "y">]><message xmlns="jabber:client">&x;</message>"#);
        restricted(r#"<message xmlns="jabber:client">&x;</message>"#);
    }

    #[test]
    fn tv70_undefined_entity() {
        restricted(r#"<message xmlns="jabber:client"><body>&nbsp;</body></message>"#);
        restricted(r#"<message xmlns="jabber:client" id="&nbsp;"/>"#);
    }

    #[test]
    fn tv71_undeclared_prefix() {
        not_well_formed(r#"<message xmlns="jabber:client"><foo:body>x</foo:body></message>"#);
        not_well_formed(r#"<message xmlns="jabber:client" foo:id="1"/>"#);
        not_well_formed(r#"<foo:message/>"#);
    }

    #[test]
    fn malformed_markup() {
        not_well_formed("<message><body>x</message></body>");
        not_well_formed("<message id='1' id='2'/>");
        not_well_formed("<message id=1/>");
        not_well_formed("<message id='a<b'/>");
        not_well_formed("<message>a & b</message>");
        not_well_formed("<message>]]></message>");
        not_well_formed("<1message/>");
        not_well_formed("</message>");
        not_well_formed("text");
    }

    #[test]
    fn forbidden_characters() {
        for c in ['\u{0}', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{E}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            not_well_formed(&format!("<message><body>{c}</body></message>"));
            not_well_formed(&format!("<message id='{c}'/>"));
        }
        for r in ["&#0;", "&#x1;", "&#x8;", "&#11;", "&#xFFFE;", "&#xffff;", "&#xD800;", "&#x110000;"] {
            not_well_formed(&format!("<message><body>{r}</body></message>"));
            not_well_formed(&format!("<message id='{r}'/>"));
        }
        // Allowed characters and references.
        element("<message id='&#9;&#10;&#13;'><body>\t\n\r&#x1F600;😀&#xFFFD;</body></message>");
    }

    #[test]
    fn kinds() {
        assert_eq!(element(r#"<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#).1, ClientElementKind::StartTls);
        assert_eq!(
            element("<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>").1,
            ClientElementKind::Compress
        );
        assert_eq!(
            element(r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#).1,
            ClientElementKind::StreamError
        );
        assert_eq!(
            element(r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"#).1,
            ClientElementKind::SaslAuth
        );
        assert_eq!(element("<starttls xmlns='jabber:client'/>").1, ClientElementKind::Other);
        assert_eq!(element("<authenticate xmlns='urn:xmpp:sasl:2'/>").1, ClientElementKind::Other);
    }

    #[test]
    fn element_bytes_are_relayed_unchanged() {
        let message = "<message xmlns='jabber:client' id='a/>b' to=\"x>y\"><body><![CDATA[</message>]]> &amp; &#x1F600;</body></message>";
        assert_eq!(element(message), (message, ClientElementKind::Other));
    }

    #[test]
    fn tv76_deep_nesting() {
        let n = 10_000;
        let message = format!("<message xmlns='jabber:client'>{}{}</message>", "<a>".repeat(n), "</a>".repeat(n));
        assert_eq!(classify_default(&message), Err(XmlError::TooDeep));
        let roomy = ClientLimits { max_depth: n + 1, ..ClientLimits::default() };
        assert!(matches!(classify(&message, &roomy), Ok(ClientFrame::Element { kind: ClientElementKind::Other, .. })));
        // Unclosed deep nesting is refused without recursion either.
        not_well_formed(&"<a>".repeat(n));
    }

    #[test]
    fn error_mapping() {
        assert_eq!(XmlError::TooDeep.condition(), StreamCondition::PolicyViolation);
        assert_eq!(XmlError::UnsupportedEncoding.condition(), StreamCondition::UnsupportedEncoding);
    }

    #[test]
    fn client_stream_error_condition_is_bounded() {
        let conflict = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams">x</text></stream:error>"#;
        assert_eq!(stream_error_condition(conflict), StreamCondition::Conflict);
        let invented = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><made-up xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#;
        assert_eq!(stream_error_condition(invented), StreamCondition::UndefinedCondition);
    }
}
