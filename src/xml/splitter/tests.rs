//! Unit tests of the splitter, most named after the test vector they check.
//!
//! (Over 500 lines: one test per vector of docs/PROTOCOL.md sections 3.1–3.5 that the splitter
//! decides, with the helpers they share; split by topic they would each repeat the helpers.)

use super::super::condition::StreamCondition;
use super::super::framing::client_features;
use super::super::wf::canonical;
use super::super::NS_STREAM;
use super::*;
use proptest::prelude::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='example.com' version='1.0' xml:lang='en'>";
/// What namespace completion adds to a stanza of [`HEADER`]'s stream: only the default
/// namespace it uses, not the unused `stream` prefix.
const DECLS: &str = r#" xmlns="jabber:client""#;

/// Feeds `chunks` one after the other, draining after each; stops at the first error.
fn run_chunks<'a>(
    limits: SplitterLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ServerEvent>, Option<XmlError>) {
    let mut splitter = StreamSplitter::new(limits);
    let mut events = Vec::new();
    for chunk in chunks {
        splitter.feed(chunk);
        loop {
            match splitter.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => return (events, Some(err)),
            }
        }
    }
    (events, None)
}

fn run(input: &str) -> (Vec<ServerEvent>, Option<XmlError>) {
    run_chunks(SplitterLimits::default(), [input.as_bytes()])
}

/// The elements of a stream that must split without error.
fn elements(input: &str) -> Vec<ServerElement> {
    let (events, err) = run(input);
    assert_eq!(err, None, "{input}");
    events
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Element(el) => {
                canonical(&el.xml); // namespace-well-formed on its own
                Some(el)
            }
            _ => None,
        })
        .collect()
}

fn only_element(after_header: &str) -> ServerElement {
    let mut all = elements(&format!("{HEADER}{after_header}"));
    assert_eq!(all.len(), 1, "{after_header}");
    all.remove(0)
}

fn error_of(input: &str) -> XmlError {
    let (_, err) = run(input);
    err.unwrap_or_else(|| panic!("no error for {input}"))
}

#[test]
fn tv10_header_and_features() {
    let input = format!(
        "{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>"
    );
    let (events, err) = run(&input);
    assert_eq!(err, None);
    assert_eq!(
        events[0],
        ServerEvent::Header(Box::new(StreamHeader::new([
            ("from", "example.com"),
            ("id", "ID-2"),
            ("version", "1.0"),
            ("xml:lang", "en"),
        ])))
    );
    let ServerEvent::Element(features) = &events[1] else { panic!("{events:?}") };
    assert_eq!(features.kind, ServerElementKind::Features);
    let expected = format!("<stream:features xmlns:stream=\"{NS_STREAM}\"><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>");
    assert_eq!(features.xml, expected);
    // TV-20b: relayed to the client unchanged.
    assert_eq!(client_features(features), expected);
    assert_eq!(
        canonical(&features.xml),
        canonical(
            r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns="urn:xmpp:sasl-cb:0"><channel-binding type="tls-exporter"/></sasl-channel-binding></stream:features>"#
        )
    );
}

#[test]
fn tv10_tv14_starttls_then_restart() {
    let mut splitter = StreamSplitter::new(SplitterLimits::default());
    splitter.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='PRE-TLS-ID' from='example.com' version='1.0' xml:lang='en'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
    assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
    assert!(matches!(
        splitter.next_event(),
        Ok(Some(ServerEvent::Element(ServerElement { kind: ServerElementKind::Features, .. })))
    ));
    assert_eq!(splitter.next_event(), Ok(None));
    assert_eq!(splitter.buffered_len(), 0);
    // TV-14: bytes injected after <proceed/> in the same segment stay visible.
    splitter.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>INJECTED</mechanism></mechanisms></stream:features>");
    let Ok(Some(ServerEvent::Element(proceed))) = splitter.next_event() else { panic!() };
    assert_eq!(proceed.kind, ServerElementKind::TlsProceed);
    assert!(splitter.buffered_len() > 0);
    splitter.expect_new_stream();
    assert_eq!(splitter.buffered_len(), 0);
    assert_eq!(splitter.next_event(), Ok(None));
    splitter.feed(HEADER.as_bytes());
    let Ok(Some(ServerEvent::Header(header))) = splitter.next_event() else { panic!() };
    assert_eq!(header.id(), Some("ID-2"));
}

#[test]
fn tv16_post_tls_features_filtered() {
    let features = only_element("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
    assert_eq!(
        canonical(&client_features(&features)),
        canonical(
            r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>"#
        )
    );
}

#[test]
fn tls_failure_and_sasl_kinds() {
    assert_eq!(only_element("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").kind, ServerElementKind::TlsFailure);
    let success = only_element("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_eq!(success.kind, ServerElementKind::SaslSuccess);
    assert_eq!(success.xml, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    // TV-21: SASL2 success does not restart the stream.
    assert_eq!(
        only_element("<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>juliet@example.com/balcony</authorization-identifier></success>").kind,
        ServerElementKind::Other
    );
}

#[test]
fn tv30_default_namespace_added() {
    let iq = only_element("<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>");
    assert_eq!(
        iq.xml,
        format!("<iq{DECLS} type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>")
    );
    assert_eq!(
        canonical(&iq.xml),
        canonical(
            r#"<iq xmlns="jabber:client" type="result" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><jid>juliet@example.com/balcony</jid></bind></iq>"#
        )
    );
    assert_eq!(iq.kind, ServerElementKind::Other);
}

#[test]
fn tv31_children_inherit_jabber_client() {
    let message = only_element("<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou not Romeo?</body><thread>e0ffe42b</thread></message>");
    assert_eq!(
        canonical(&message.xml),
        "<{jabber:client}message {}from=\"romeo@example.net/orchard\" {}to=\"juliet@example.com/balcony\" {}type=\"chat\"><{jabber:client}body >\"Art thou not Romeo?\"</><{jabber:client}thread >\"e0ffe42b\"</></>"
    );
}

#[test]
fn tv32_stream_error_then_end() {
    let (events, err) = run(&format!("{HEADER}<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced by new connection</text><x xmlns='urn:example:app'/></stream:error></stream:stream>"));
    assert_eq!(err, None);
    assert_eq!(events.len(), 3);
    let ServerEvent::Element(error) = &events[1] else { panic!() };
    assert_eq!(error.kind, ServerElementKind::StreamError);
    assert_eq!(error.error_condition, Some(StreamCondition::Conflict));
    assert_eq!(error.see_other_host, None);
    assert_eq!(
        canonical(&error.xml),
        canonical(
            r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">Replaced by new connection</text><x xmlns="urn:example:app"/></stream:error>"#
        )
    );
    assert_eq!(events[2], ServerEvent::End);
}

#[test]
fn tv97_see_other_host_and_undefined_conditions() {
    let error = only_element("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp2.example.com:5222</see-other-host></stream:error>");
    assert_eq!(error.error_condition, Some(StreamCondition::SeeOtherHost));
    assert_eq!(error.see_other_host.as_deref(), Some("xmpp2.example.com:5222"));
    let odd = only_element("<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>t</text><made-up xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
    assert_eq!(odd.error_condition, Some(StreamCondition::UndefinedCondition));
    let empty = only_element("<stream:error/>");
    assert_eq!(empty.error_condition, Some(StreamCondition::UndefinedCondition));
}

#[test]
fn tv33_prefix_free_header() {
    let (events, err) = run("<stream xmlns='http://etherx.jabber.org/streams' id='ID-P' from='example.com' version='1.0' xml:lang='en'><features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features><message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message></stream>");
    assert_eq!(err, None);
    assert_eq!(events.len(), 4);
    let ServerEvent::Header(header) = &events[0] else { panic!() };
    assert_eq!(header.id(), Some("ID-P"));
    let ServerEvent::Element(features) = &events[1] else { panic!() };
    assert_eq!(features.kind, ServerElementKind::Features);
    assert_eq!(
        features.xml,
        r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams" xmlns="http://etherx.jabber.org/streams"><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"#
    );
    let ServerEvent::Element(message) = &events[2] else { panic!() };
    assert_eq!(message.xml, "<message xmlns='jabber:client' to='juliet@example.com'><body>x</body></message>");
    assert_eq!(events[3], ServerEvent::End);
}

#[test]
fn tv34_other_prefix() {
    let (events, err) = run("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns='jabber:client' id='ID-Q' from='example.com' version='1.0' xml:lang='en'><ns0:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ns0:x/></ns0:features></ns0:stream>");
    assert_eq!(err, None);
    let ServerEvent::Element(features) = &events[1] else { panic!() };
    assert_eq!(features.kind, ServerElementKind::Features);
    assert_eq!(
        features.xml,
        r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams" xmlns:ns0="http://etherx.jabber.org/streams"><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ns0:x/></stream:features>"#
    );
    assert_eq!(events[2], ServerEvent::End);
    // The end tag must repeat the header's name.
    assert!(matches!(
        error_of("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams'></stream:stream>"),
        XmlError::NotWellFormed(_)
    ));
}

#[test]
fn ns3_clash_keeps_the_original_prefix() {
    let (events, err) = run("<ns0:stream xmlns:ns0='http://etherx.jabber.org/streams' xmlns:stream='urn:other' xmlns='jabber:client'><ns0:features><stream:x/></ns0:features>");
    assert_eq!(err, None);
    let ServerEvent::Element(features) = &events[1] else { panic!() };
    assert_eq!(
        features.xml,
        r#"<ns0:features xmlns:ns0="http://etherx.jabber.org/streams" xmlns:stream="urn:other"><stream:x/></ns0:features>"#
    );
    assert_eq!(features.kind, ServerElementKind::Features);
    let element = only_element("<ns1:features xmlns:ns1='http://etherx.jabber.org/streams' xmlns:stream='urn:other'/>");
    assert_eq!(element.xml, r#"<ns1:features xmlns:ns1='http://etherx.jabber.org/streams' xmlns:stream='urn:other'/>"#);
}

#[test]
fn tv35_extra_header_prefix() {
    let (events, err) = run("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:example:foo' id='x'><message><foo:x/></message>");
    assert_eq!(err, None);
    let ServerEvent::Element(message) = &events[1] else { panic!() };
    assert_eq!(message.xml, r#"<message xmlns="jabber:client" xmlns:foo="urn:example:foo"><foo:x/></message>"#);
    assert_eq!(
        canonical(&message.xml),
        canonical(r#"<message xmlns="jabber:client"><foo:x xmlns:foo="urn:example:foo"/></message>"#)
    );
}

#[test]
fn tv36_language_not_pushed_down() {
    // DECISIONS D7: the client has the header's xml:lang from <open/>.
    let message = only_element("<message><body>Hallo</body></message>");
    assert!(!message.xml.contains("xml:lang"));
}

#[test]
fn tv37_features_children_keep_default_namespace() {
    let features = only_element("<stream:features><foo/></stream:features>");
    assert_eq!(features.xml, format!("<stream:features{DECLS} xmlns:stream=\"{NS_STREAM}\"><foo/></stream:features>"));
    assert!(canonical(&features.xml).contains("<{jabber:client}foo >"));
}

#[test]
fn own_declarations_win() {
    let message = only_element("<message xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'/>");
    assert_eq!(message.xml, "<message xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'/>");
}

#[test]
fn tv40_whitespace_is_dropped() {
    let (events, err) = run(&format!("{HEADER}\n \n<presence/> \t\r\n<presence/> "));
    assert_eq!(err, None);
    assert_eq!(events.len(), 3);
    for event in &events[1..] {
        let ServerEvent::Element(el) = event else { panic!() };
        assert!(el.xml.starts_with("<presence "));
    }
}

#[test]
fn tv41_pretty_printed_features() {
    let features = only_element("<stream:features>\n  <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\n    <mechanism>PLAIN</mechanism>\n  </mechanisms>\n</stream:features>\n");
    assert!(canonical(&features.xml).contains("<{urn:ietf:params:xml:ns:xmpp-sasl}mechanism >\"PLAIN\"</>"));
}

#[test]
fn tv50_utf8_split_across_feeds() {
    let input = format!("{HEADER}<message from='romeo@example.net/orchard' to='juliet@example.com/balcony' type='chat'><body>Art thou 😀</body><thread>e0ffe42b</thread></message>");
    let (events, err) = run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1));
    assert_eq!(err, None);
    assert_eq!(events.len(), 2);
    let ServerEvent::Element(message) = &events[1] else { panic!() };
    assert!(canonical(&message.xml).contains("\"Art thou 😀\""));
}

#[test]
fn tv51_several_elements_in_one_feed() {
    let all = elements(&format!("{HEADER}<presence from='a@example.com/x'/><presence from='b@example.com/y'/><message from='c@example.com/z'><body>3</body></message>"));
    let xml: Vec<&str> = all.iter().map(|e| e.xml.as_str()).collect();
    assert_eq!(
        xml,
        [
            format!("<presence{DECLS} from='a@example.com/x'/>"),
            format!("<presence{DECLS} from='b@example.com/y'/>"),
            format!("<message{DECLS} from='c@example.com/z'><body>3</body></message>"),
        ]
    );
}

#[test]
fn tv52_tv53_markup_in_attribute_values() {
    let iq = only_element("<iq type='result' id='7b0d57bb>fabe' to='juliet@example.com/balcony'/>");
    assert!(canonical(&iq.xml).contains("{}id=\"7b0d57bb>fabe\""));
    let presence = only_element("<presence id='a/>b'/>");
    assert_eq!(presence.xml, format!("<presence{DECLS} id='a/>b'/>"));
    let quoted = only_element(r#"<presence id="a'/>b"/>"#);
    assert!(canonical(&quoted.xml).contains(r#"{}id="a'/>b""#));
}

#[test]
fn tv54_cdata_with_markup() {
    let message = only_element("<message><body><![CDATA[</message><message to='evil@example.org'>]]></body></message>");
    assert!(canonical(&message.xml).contains(r#""</message><message to='evil@example.org'>""#));
}

#[test]
fn tv55_entities() {
    let message =
        only_element("<message><body>a &amp; b &lt;c&gt; &#x1F600; &#233; &apos;q&apos; &quot;</body></message>");
    assert!(canonical(&message.xml).contains(r#""a & b <c> 😀 é 'q' \"""#));
}

#[test]
fn tv56_tv57_tv58_references_survive_relay() {
    let message = only_element("<message id='l1&#10;l2&#9;t'/>");
    assert!(canonical(&message.xml).contains(r#"{}id="l1\nl2\tt""#));
    let cr = only_element("<message><body>a&#13;b</body></message>");
    assert!(canonical(&cr.xml).contains(r#""a\rb""#));
    let brackets = only_element("<message><body>x ]]&gt; y</body></message>");
    assert!(canonical(&brackets.xml).contains(r#""x ]]> y""#));
}

#[test]
fn tv59_restricted_xml() {
    for body in [
        "<message><!-- x --><body>y</body></message>",
        "<!-- x -->",
        "<message><?php x?></message>",
        "<?php x?>",
        "<message><!DOCTYPE x></message>",
        "<message><body>&nbsp;</body></message>",
    ] {
        assert!(matches!(error_of(&format!("{HEADER}{body}")), XmlError::RestrictedXml(_)), "{body}");
    }
    assert!(matches!(
        error_of("<!DOCTYPE stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
        XmlError::RestrictedXml(_)
    ));
    assert!(matches!(
        error_of(
            "<?xml version='1.0' standalone='yes'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"
        ),
        XmlError::RestrictedXml(_)
    ));
    // A declaration not at the very first byte is a processing instruction.
    assert!(matches!(
        error_of(" <?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
        XmlError::RestrictedXml(_)
    ));
}

#[test]
fn not_well_formed_input() {
    for body in [
        "text",
        "<message><body>x</message></body>",
        "<message id='1' id='2'/>",
        "<foo:x/>",
        "<message><body>\u{1}</body></message>",
        "<message><body>&#0;</body></message>",
        "<message><body>&#xFFFF;</body></message>",
        "<message a='<'/>",
        "<![CDATA[x]]>",
        "<message><![CDAT[x]]></message>",
        "</stream>",
        "<message>a & b</message>",
    ] {
        assert!(matches!(error_of(&format!("{HEADER}{body}")), XmlError::NotWellFormed(_)), "{body}");
    }
    let mut invalid_utf8 = HEADER.as_bytes().to_vec();
    invalid_utf8.extend_from_slice(b"<message><body>\xC3\x28</body></message>");
    let (_, err) = run_chunks(SplitterLimits::default(), [invalid_utf8.as_slice()]);
    assert!(matches!(err, Some(XmlError::NotWellFormed(_))));
    assert!(matches!(error_of(&format!("{HEADER}</stream:stream><presence/>")), XmlError::NotWellFormed(_)));
}

#[test]
fn header_checks() {
    assert!(matches!(error_of("<stream:stream xmlns:stream='jabber:client'>"), XmlError::InvalidNamespace(_)));
    assert!(matches!(
        error_of("<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>"),
        XmlError::InvalidNamespace(_)
    ));
    assert_eq!(
        error_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
        XmlError::UnsupportedEncoding
    );
    assert!(matches!(error_of("<stream:stream xmlns='jabber:client'>"), XmlError::NotWellFormed(_)));
    assert!(matches!(
        error_of("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"),
        XmlError::NotWellFormed(_)
    ));
    assert!(matches!(error_of("hello"), XmlError::NotWellFormed(_)));
    // Whitespace before the header and an upper-case encoding are fine; attributes unescaped.
    let (events, err) = run("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='a&amp;b' to=\"x'y\">");
    assert_eq!(err, None);
    let ServerEvent::Header(header) = &events[0] else { panic!() };
    assert_eq!(header.from(), Some("a&b"));
    assert_eq!(header.to(), Some("x'y"));
}

#[test]
fn limits() {
    let limits =
        SplitterLimits { max_element_bytes: 100, max_header_bytes: 300, max_depth: 3, ..SplitterLimits::default() };
    let ok = format!("{HEADER}<a><b><c/></b></a>");
    assert_eq!(run_chunks(limits, [ok.as_bytes()]).1, None);
    let deep = format!("{HEADER}<a><b><c><d/></c></b></a>");
    assert_eq!(run_chunks(limits, [deep.as_bytes()]).1, Some(XmlError::TooDeep));
    let exact = format!("{HEADER}<a>{}</a>", "x".repeat(93));
    assert_eq!(run_chunks(limits, [exact.as_bytes()]).1, None);
    let big = format!("{HEADER}<a>{}</a>", "x".repeat(94));
    assert_eq!(run_chunks(limits, [big.as_bytes()]).1, Some(XmlError::TooLarge));
    let big_header =
        format!("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='{}'>", "x".repeat(300));
    assert_eq!(run_chunks(limits, [big_header.as_bytes()]).1, Some(XmlError::TooLarge));
    let endless_prolog = " ".repeat(400);
    assert_eq!(run_chunks(limits, [endless_prolog.as_bytes()]).1, Some(XmlError::TooLarge));
}

#[test]
fn caps_count_the_declarations_that_namespace_completion_adds() {
    let limits = SplitterLimits { max_attributes: 4, max_namespace_declarations: 2, ..SplitterLimits::default() };
    let small_header = format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>");
    let stream = |element: &str| format!("{small_header}{element}");
    // Three attributes plus the default namespace added: four, at the cap.
    assert_eq!(run_chunks(limits, [stream("<message a='1' b='2' c='3'/>").as_bytes()]).1, None);
    assert_eq!(
        run_chunks(limits, [stream("<message a='1' b='2' c='3' d='4'/>").as_bytes()]).1,
        Some(XmlError::TooManyAttributes)
    );
    // Declaring its own default namespace adds nothing.
    assert_eq!(run_chunks(limits, [stream("<m xmlns='urn:m' a='1' b='2' c='3'/>").as_bytes()]).1, None);
    assert_eq!(
        run_chunks(limits, [stream("<m xmlns:p='urn:p' xmlns:q='urn:q'/>").as_bytes()]).1,
        Some(XmlError::TooManyNamespaceDeclarations)
    );
    // The header itself is held to the caps.
    let header =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:x'>";
    assert_eq!(run_chunks(limits, [header.as_bytes()]).1, Some(XmlError::TooManyNamespaceDeclarations));
}

#[test]
fn a_header_with_many_declarations_costs_elements_only_what_they_use() {
    let limits = SplitterLimits { max_attributes: 1000, max_namespace_declarations: 1000, ..SplitterLimits::default() };
    let declarations: String = (0..300).map(|i| format!(" xmlns:p{i}='u:{i}'")).collect();
    let header = format!("<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'{declarations}>");
    let (events, err) = run_chunks(limits, [format!("{header}<a/><p7:b p299:c=''/>").as_bytes()]);
    assert_eq!(err, None);
    let xml: Vec<&str> = events[1..]
        .iter()
        .map(|event| match event {
            ServerEvent::Element(element) => element.xml.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(xml, [r#"<a xmlns="jabber:client"/>"#, r#"<p7:b xmlns:p7="u:7" xmlns:p299="u:299" p299:c=''/>"#]);
}

#[test]
fn oversized_element_is_refused_before_it_ends_and_memory_stays_bounded() {
    let limits = SplitterLimits::default();
    let mut splitter = StreamSplitter::new(limits);
    splitter.feed(HEADER.as_bytes());
    assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
    splitter.feed(b"<message><body>");
    let chunk = vec![b'A'; 4096];
    let mut fed = 0;
    let err = loop {
        splitter.feed(&chunk);
        fed += chunk.len();
        assert!(splitter.buffered_len() <= limits.max_element_bytes + chunk.len());
        match splitter.next_event() {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{event:?}"),
            Err(err) => break err,
        }
        assert!(fed < 2 * limits.max_element_bytes, "never refused");
    };
    assert_eq!(err, XmlError::TooLarge);
    assert!(fed <= limits.max_element_bytes + chunk.len());
    // Poisoned: the same error again, and nothing more is buffered.
    splitter.feed(&chunk);
    assert_eq!(splitter.buffered_len(), 0);
    assert_eq!(splitter.next_event(), Err(XmlError::TooLarge));
    splitter.expect_new_stream();
    assert_eq!(splitter.next_event(), Err(XmlError::TooLarge));
}

/// Reads that end inside the next element leave a consumed prefix each time; it is compacted
/// away when the splitter runs out of bytes, so a long stream keeps the buffer it started with.
#[test]
fn the_consumed_prefix_is_compacted_away_between_reads() {
    let mut splitter = past_header(SplitterLimits::default());
    splitter.feed(b"<pres");
    assert_eq!(splitter.next_event(), Ok(None));
    let mut held_after_first_reads = 0;
    for read in 0..10_000 {
        splitter.feed(b"ence/><presence/><pres");
        for _ in 0..2 {
            assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Element(_)))));
        }
        assert_eq!(splitter.next_event(), Ok(None));
        assert_eq!(splitter.buffered_len(), "<pres".len());
        if read == 10 {
            held_after_first_reads = splitter.held_bytes();
        }
    }
    // Without compaction the buffer would hold all 220,000 bytes read.
    assert_eq!(splitter.held_bytes(), held_after_first_reads);
}

#[test]
fn one_byte_feeds_of_a_large_element_are_linear() {
    // 256 KiB minus some slack, with CDATA and attributes so every lexer state is exercised.
    let mut body = String::new();
    while body.len() < 250 * 1024 {
        body.push_str("<x a='1>2' b=\"/>\">t&amp;<![CDATA[<y>]]]]></x>");
    }
    let input = format!("{HEADER}<message>{body}</message>");
    let started = std::time::Instant::now();
    let (events, err) = run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1));
    assert_eq!(err, None);
    assert_eq!(events.len(), 2);
    // A quadratic rescan would take minutes here; linear takes well under a second.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn deep_nesting_within_limits_does_not_recurse() {
    let limits = SplitterLimits { max_depth: 20_000, ..SplitterLimits::default() };
    let n = 10_000;
    let input = format!("{HEADER}<message>{}{}</message>", "<a>".repeat(n), "</a>".repeat(n));
    assert_eq!(run_chunks(limits, [input.as_bytes()]).1, None);
}

/// A realistic server byte stream touching every lexer state.
fn realistic_stream() -> String {
    [
        HEADER,
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
        "\n",
        "<message from='romeo@example.net/orchard' id='7b0d57bb>fabe' type=\"chat\"><body>Art thou 😀 &amp; &#x1F600; &lt;</body><x xmlns='urn:x'><![CDATA[</message><message to='evil'>]]></x></message>",
        " ",
        "<presence id='a/>b'/>",
        "\r\n\t",
        "<iq type='result' id=\"q'>\"><query xmlns='jabber:iq:roster'><item jid='é@example.com' name='Zoë ]] &gt;'/></query></iq>",
        "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp2.example.com:5222</see-other-host></stream:error>",
        "</stream:stream>",
    ]
    .concat()
}

#[test]
fn realistic_stream_in_one_feed() {
    let (events, err) = run(&realistic_stream());
    assert_eq!(err, None);
    assert_eq!(events.len(), 7);
    assert_eq!(events[6], ServerEvent::End);
}

#[test]
fn realistic_stream_one_byte_at_a_time() {
    let input = realistic_stream();
    assert_eq!(run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1)), run(&input));
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(mut cuts in proptest::collection::vec(0usize..2000, 0..40)) {
        let input = realistic_stream();
        let bytes = input.as_bytes();
        cuts.iter_mut().for_each(|c| *c %= bytes.len() + 1);
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in cuts {
            chunks.push(&bytes[last..cut]);
            last = cut;
        }
        chunks.push(&bytes[last..]);
        prop_assert_eq!(run_chunks(SplitterLimits::default(), chunks), run(&input));
    }
}

/// An idle splitter gives its buffer and checker to the thread, keeps them while a unit is in
/// progress, and takes the thread's again with the next read.
#[test]
fn an_idle_splitter_gives_back_its_buffer_and_keeps_what_is_pending() {
    let mut splitter = past_header(SplitterLimits::default());
    splitter.feed(b"<message xmlns:p='urn:p' p:a='1'><body>hi</body></message><iq");
    assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Element(_)))));
    assert_eq!(splitter.next_event(), Ok(None));
    // An element is in progress: nothing is released.
    let held = splitter.held_bytes();
    assert!(held > 0);
    splitter.release_idle_memory();
    assert_eq!((splitter.held_bytes(), splitter.buffered_len()), (held, 3));
    splitter.feed(b" id='1'/>");
    match splitter.next_event() {
        Ok(Some(ServerEvent::Element(element))) => assert!(element.xml.starts_with("<iq"), "{}", element.xml),
        other => panic!("{other:?}"),
    }
    // Everything consumed: the buffer and the checker go to the thread, and splitting goes on
    // with them.
    assert_eq!(splitter.next_event(), Ok(None));
    splitter.release_idle_memory();
    assert_eq!(splitter.held_bytes(), 0);
    let (buffer, checker) = spare::kept();
    assert!(buffer >= HEADER.len() && checker.is_some(), "{buffer} {checker:?}");
    splitter.feed(b"<presence/>");
    assert_eq!(spare::kept(), (0, checker), "the read took the buffer");
    assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Element(_)))));
    assert_eq!(spare::kept(), (0, None), "and the element the checker");
}

/// What one splitter leaves with the thread says nothing to the next: a checker given back in
/// the middle of a deep element with undeclared-so-far prefixes and the other splitter's limits
/// is reset (limits included) before it reads again, and a buffer given back with bytes in it is
/// empty. Storage grown past what the thread keeps is freed.
#[test]
fn storage_given_back_carries_nothing_to_the_next_splitter() {
    // Left in the middle of a deep element that binds `q`, with the default limits.
    let leave_mid_element = || {
        let mut splitter = StreamSplitter::new(SplitterLimits::default());
        splitter.feed(HEADER.as_bytes());
        assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
        splitter.feed(b"<message xmlns:q='urn:q'><q:a><q:b><q:c x='1' q:y='2'");
        assert_eq!(splitter.next_event(), Ok(None));
        drop(splitter);
        assert!(spare::kept().1.is_some(), "the dropped splitter's checker is kept");
    };
    leave_mid_element();
    // The next splitter reads with its own limits (depth 2, where the first allowed 1,000) from
    // a fresh start: no open elements, no pending bytes.
    let strict = SplitterLimits { max_depth: 2, ..SplitterLimits::default() };
    let mut second = StreamSplitter::new(strict);
    second.feed(HEADER.as_bytes());
    assert!(matches!(second.next_event(), Ok(Some(ServerEvent::Header(_)))));
    second.feed(b"<message><body>hi</body></message>");
    match second.next_event() {
        Ok(Some(ServerEvent::Element(element))) => {
            assert_eq!(element.xml, format!("<message{DECLS}><body>hi</body></message>"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(second.next_event(), Ok(None));
    second.feed(b"<message><a><b><c/></b></a></message>");
    assert_eq!(second.next_event(), Err(XmlError::TooDeep), "max_depth 2 applies");
    // And without the first one's bindings.
    leave_mid_element();
    let mut third = StreamSplitter::new(SplitterLimits::default());
    third.feed(HEADER.as_bytes());
    assert!(matches!(third.next_event(), Ok(Some(ServerEvent::Header(_)))));
    third.feed(b"<q:a/>");
    let unbound = third.next_event();
    assert!(matches!(unbound, Err(XmlError::NotWellFormed(_))), "the q prefix is not bound here: {unbound:?}");
    // A buffer that grew past what the thread keeps is freed, not kept.
    let mut big = StreamSplitter::new(SplitterLimits::default());
    big.feed(HEADER.as_bytes());
    assert!(matches!(big.next_event(), Ok(Some(ServerEvent::Header(_)))));
    let body = "x".repeat(2 * spare::SPARE_BUFFER_KEPT_BYTES);
    big.feed(format!("<message><body>{body}</body></message>").as_bytes());
    assert!(matches!(big.next_event(), Ok(Some(ServerEvent::Element(_)))));
    assert_eq!(big.next_event(), Ok(None));
    assert!(spare::kept().0 <= spare::SPARE_BUFFER_KEPT_BYTES);
}

/// An element that starts right after another takes a shorter way into the checker than the
/// lexer's turn (`StreamSplitter::start_element`); what follows an element must still be read
/// exactly as the lexer reads it after the header, whatever the chunking.
#[test]
fn what_follows_an_element_is_read_as_after_the_header() {
    for after in [
        "<presence/>",
        " <presence/>",
        "<presence",
        "<",
        "<!-- x -->",
        "<?php x?>",
        "<![CDATA[x]]>",
        "<!DOCTYPE x>",
        "</stream:stream>",
        "</stream>",
        "<foo:x/>",
        "<message><body>\u{1}</body></message>",
        "text",
    ] {
        let alone = run(&format!("{HEADER}{after}"));
        let input = format!("{HEADER}<iq type='get' id='1'/>{after}");
        let (mut events, err) = run(&input);
        assert!(
            matches!(events.remove(1), ServerEvent::Element(ServerElement { ref xml, .. }) if xml.starts_with("<iq"))
        );
        assert_eq!((events, err), alone, "{after}");
        let whole = run(&input);
        assert_eq!(run_chunks(SplitterLimits::default(), input.as_bytes().chunks(1)), whole, "{after}");
        assert_eq!(run_chunks(SplitterLimits::default(), input.as_bytes().chunks(3)), whole, "{after}");
    }
}

/// A splitter that has read [`HEADER`].
fn past_header(limits: SplitterLimits) -> StreamSplitter {
    let mut splitter = StreamSplitter::new(limits);
    splitter.feed(HEADER.as_bytes());
    assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
    splitter
}

/// Feeds `bytes` one at a time until an event or an error; how many bytes that took, and what
/// came out (`None` when every byte was taken with `Ok(None)`).
fn feed_bytewise(splitter: &mut StreamSplitter, bytes: &[u8]) -> (usize, Option<Result<ServerEvent, XmlError>>) {
    for (fed, byte) in bytes.iter().enumerate() {
        splitter.feed(std::slice::from_ref(byte));
        match splitter.next_event() {
            Ok(None) => {}
            Ok(Some(event)) => return (fed + 1, Some(Ok(event))),
            Err(err) => return (fed + 1, Some(Err(err))),
        }
    }
    (bytes.len(), None)
}

/// Small reads inside an element wait unread until a `>` or `DEFERRED_SCAN_BYTES` of them have
/// arrived (`StreamSplitter::next_event`). An error among them is still found, by then at the
/// latest, and it is the error one read finds.
#[test]
fn bytes_left_unread_are_checked_by_the_next_gt_or_the_deferral_bound() {
    let bad = "<message><body>\u{1}";
    let expected = error_of(&format!("{HEADER}{bad}</body></message>"));

    // No `>` after the bad byte: found within the bound.
    let mut splitter = past_header(SplitterLimits::default());
    let input = format!("{bad}{}", "x".repeat(2 * DEFERRED_SCAN_BYTES));
    let (fed, outcome) = feed_bytewise(&mut splitter, input.as_bytes());
    assert_eq!(outcome, Some(Err(expected)));
    assert!(fed <= bad.len() + DEFERRED_SCAN_BYTES, "found after {fed} bytes");

    // A `>` right after it: found at the `>`.
    let mut splitter = past_header(SplitterLimits::default());
    assert_eq!(feed_bytewise(&mut splitter, bad.as_bytes()).1, None, "waits for a `>`");
    assert_eq!(feed_bytewise(&mut splitter, b">"), (1, Some(Err(expected))));

    // The same in reads of a few bytes each, across the bound.
    for size in [2, 5, 63, 64, 65] {
        let (events, err) = run_chunks(
            SplitterLimits::default(),
            std::iter::once(HEADER.as_bytes()).chain(input.as_bytes().chunks(size)),
        );
        assert_eq!((events.len(), err), (1, Some(expected)), "reads of {size}");
    }
}

/// Bytes waiting unread count against the element limit as read ones do: one byte over it, the
/// element is refused, in 1-byte reads too.
#[test]
fn bytes_left_unread_never_take_an_element_past_its_limit() {
    let limits = SplitterLimits { max_element_bytes: 300, ..SplitterLimits::default() };
    let mut splitter = past_header(limits);
    let input = format!("<message><body>{}", "A".repeat(400));
    for (fed, byte) in input.bytes().enumerate() {
        splitter.feed(&[byte]);
        match splitter.next_event() {
            Ok(None) => assert!(splitter.buffered_len() <= limits.max_element_bytes),
            Ok(Some(event)) => panic!("{event:?}"),
            Err(err) => {
                assert_eq!((err, fed + 1), (XmlError::TooLarge, limits.max_element_bytes + 1));
                return;
            }
        }
    }
    panic!("never refused");
}
