//! Tests of client message validation and classification.

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
    assert_eq!(got, OpenRequest::new([("to", "example.com"), ("xml:lang", "en"), ("version", "1.0")]));
}

#[test]
fn tv23_tv24_open_id_is_dropped_and_from_kept() {
    let got = open(
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" from="juliet@example.com" version="1.0" id="client-chosen"/>"#,
    );
    assert_eq!(got.from(), Some("juliet@example.com"));
    assert_eq!(got.to(), Some("example.com"));
    assert_eq!(got.lang(), None);
}

#[test]
fn fr8_open_forms() {
    let expected = OpenRequest::new([("to", "example.com"), ("version", "1.0")]);
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
    assert_eq!(got.to(), Some("a&b/>c"));
    assert_eq!(got.from(), Some("x'y"));
    assert_eq!(got.lang(), Some("de"));
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
        ClientElementKind::StreamError { condition: StreamCondition::UndefinedCondition }
    );
    assert_eq!(
        element(
            r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"#
        )
        .1,
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
    assert_eq!(element(conflict).1, ClientElementKind::StreamError { condition: StreamCondition::Conflict });
    let invented = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><made-up xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#;
    assert_eq!(element(invented).1, ClientElementKind::StreamError { condition: StreamCondition::UndefinedCondition });
    let none = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"/>"#;
    assert_eq!(element(none).1, ClientElementKind::StreamError { condition: StreamCondition::UndefinedCondition });
}

/// Messages checked one after another on a thread share one checker: nothing of one message
/// (its namespace bindings, its limits, a refusal half-way through it) reaches the next, and
/// what an unusual message made the checker grow is not kept.
#[test]
fn a_message_leaves_nothing_behind_for_the_next() {
    let stanza = "<message xmlns='jabber:client' to='a@b' id='1'><body>hi</body></message>";
    let tight = ClientLimits { max_attributes: 1, ..ClientLimits::default() };
    assert_eq!(classify(stanza, &tight), Err(XmlError::TooManyAttributes));
    assert_eq!(element(stanza), (stanza, ClientElementKind::Other));
    // Refused inside an element that bound `p`: the binding is gone for the next message.
    not_well_formed("<p:message xmlns:p='jabber:client'><p:body>hi</p:message>");
    not_well_formed("<p:message/>");
    // A stream error's condition is not carried into the next element.
    let error = "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    assert_eq!(element(error).1, ClientElementKind::StreamError { condition: StreamCondition::Conflict });
    assert_eq!(element(stanza).1, ClientElementKind::Other);
    // An <open/>'s attributes are not carried into the next one.
    assert_eq!(open(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="a" version="1.0"/>"#).to(), Some("a"));
    assert_eq!(open(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" version="1.0"/>"#).to(), None);
    // Deep nesting grows the checker past what it keeps; the storage goes with the message.
    let n = 5_000;
    let deep = format!("<message xmlns='jabber:client'>{}{}</message>", "<a>".repeat(n), "</a>".repeat(n));
    let roomy = ClientLimits { max_depth: n + 1, ..ClientLimits::default() };
    assert!(matches!(classify(&deep, &roomy), Ok(ClientFrame::Element { .. })));
    assert_eq!(scratch_held_bytes(), 0);
    element(stanza);
    assert!((1..=SCRATCH_KEPT_BYTES).contains(&scratch_held_bytes()), "{}", scratch_held_bytes());
}
