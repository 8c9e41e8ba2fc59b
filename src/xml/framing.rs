//! Serialisation of the few XML documents the gateway writes itself.
//!
//! RFC 7395 framing towards the client (`<open/>` with the exact bytes of DECISIONS D13,
//! `<close/>`, `<stream:error>`), the RFC 6120 stream header towards the server (HDR-1..5), and the
//! features filter of D15. Pure functions of their arguments; attribute values are escaped here.

use super::client::OpenRequest;
use super::condition::StreamCondition;
use super::splitter::{ServerElement, StreamHeader};
use super::{NS_CLIENT, NS_FRAMING, NS_STREAM, NS_STREAM_ERRORS};

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />`, byte for byte (D13: Strophe.js
/// compares this exact string).
pub const CLOSE: &str = r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#;

/// The end of the upstream stream, written with the prefix the gateway declared.
pub const UPSTREAM_STREAM_END: &str = "</stream:stream>";

/// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
pub const STARTTLS_REQUEST: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// `<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>`, the answer to a client `<starttls/>` (TLS-7).
pub const STARTTLS_FAILURE: &str = r#"<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#;

/// `<failure xmlns="http://jabber.org/protocol/compress"><setup-failed/></failure>`, the answer to
/// a client `<compress/>`: XEP-0138 is never offered over WebSocket (TLS-6, TLS-7).
pub const COMPRESS_FAILURE: &str = r#"<failure xmlns="http://jabber.org/protocol/compress"><setup-failed/></failure>"#;

/// The upstream stream header for a client `<open/>` (HDR-1..5): XML declaration, unclosed
/// `<stream:stream>` start tag with `xmlns='jabber:client'`, `xmlns:stream`, `to=domain`,
/// `version` and `xml:lang` copied from the client, `from` only when `include_from` (never before
/// TLS, HDR-4), never `id` (HDR-3).
///
/// Attribute order: `xmlns`, `xmlns:stream`, `from` (if included and the client sent one), `to`,
/// `version` and `xml:lang` (each only if the client sent it). Single quotes, as in RFC 6120's
/// examples. `domain` (the normalised domain) is used for `to`, never the raw client value.
pub fn upstream_header(open: &OpenRequest, domain: &str, include_from: bool) -> String {
    let mut out = String::with_capacity(200);
    out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
    out.push_str(NS_CLIENT);
    out.push_str("' xmlns:stream='");
    out.push_str(NS_STREAM);
    out.push('\'');
    if include_from {
        push_attr(&mut out, "from", open.from(), '\'');
    }
    push_attr(&mut out, "to", Some(domain), '\'');
    push_attr(&mut out, "version", open.version(), '\'');
    push_attr(&mut out, "xml:lang", open.lang(), '\'');
    out.push('>');
    out
}

/// The `<open/>` sent to the client for a server header (FR-6, D13): `from`, `id`, `to` (only if
/// the server sent one), `version`, `xml:lang`, in the framing namespace, starting with `<open `.
/// Missing `id`/`xml:lang`/`version` are filled from `fallback_id`, `fallback_lang` and `"1.0"` (HDR-6).
///
/// Exact shape: `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from=".." to=".." id=".."
/// version=".." xml:lang=".."/>` in that order, double quotes. A server header without `from`
/// (which RFC 6120 §4.7.1 forbids) gives an `<open/>` without `from` rather than an invented one.
/// None of the header's namespace declarations are copied.
pub fn client_open(header: &StreamHeader, fallback_id: &str, fallback_lang: &str) -> String {
    let id = header.id().unwrap_or(fallback_id);
    let lang = header.lang().unwrap_or(fallback_lang);
    open_element(header.from(), header.to(), id, header.version().unwrap_or("1.0"), lang)
}

/// `<open/>` with these attributes, in this order (see [`client_open`]).
fn open_element(from: Option<&str>, to: Option<&str>, id: &str, version: &str, lang: &str) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("<open xmlns=\"");
    out.push_str(NS_FRAMING);
    out.push('"');
    push_attr(&mut out, "from", from, '"');
    push_attr(&mut out, "to", to, '"');
    push_attr(&mut out, "id", Some(id), '"');
    push_attr(&mut out, "version", Some(version), '"');
    push_attr(&mut out, "xml:lang", Some(lang), '"');
    out.push_str("/>");
    out
}

/// The `<open/>` the gateway makes itself when it must answer with an error before (or without)
/// any server header (ERR-2): `from` is the domain or empty (RFC 6120 §4.9.1.3).
pub fn gateway_open(from: &str, id: &str, lang: &str) -> String {
    open_element(Some(from), None, id, "1.0", lang)
}

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="..." />` (RFC 7395 §3.6.1).
pub fn close_see_other_uri(uri: &str) -> String {
    let mut out = String::with_capacity(80 + uri.len());
    out.push_str("<close xmlns=\"");
    out.push_str(NS_FRAMING);
    out.push('"');
    push_attr(&mut out, "see-other-uri", Some(uri), '"');
    out.push_str(" />");
    out
}

/// A gateway-made `<stream:error>` for the client, with `xmlns:stream` declared and an optional
/// `<text>` (e.g. the D6 failure class).
///
/// `<stream:error xmlns:stream="http://etherx.jabber.org/streams"><CONDITION
/// xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams">TEXT</text></stream:error>`,
/// the text escaped.
pub fn client_stream_error(condition: StreamCondition, text: Option<&str>) -> String {
    let mut out = String::with_capacity(200);
    out.push_str("<stream:error xmlns:stream=\"");
    out.push_str(NS_STREAM);
    out.push_str("\"><");
    out.push_str(condition.as_str());
    out.push_str(" xmlns=\"");
    out.push_str(NS_STREAM_ERRORS);
    out.push_str("\"/>");
    if let Some(text) = text {
        out.push_str("<text xmlns=\"");
        out.push_str(NS_STREAM_ERRORS);
        out.push_str("\">");
        escape_text(&mut out, text);
        out.push_str("</text>");
    }
    out.push_str("</stream:error>");
    out
}

/// A `<stream:error>` written into the upstream stream (the `stream` prefix is declared on the
/// gateway's header, so none is added).
pub fn upstream_stream_error(condition: StreamCondition) -> String {
    format!("<stream:error><{} xmlns='{NS_STREAM_ERRORS}'/></stream:error>", condition.as_str())
}

/// The features shown to the client (D15): the server's post-TLS features minus
/// `<starttls/>` (TLS namespace) and `<compression/>` (XEP-0138); everything else unchanged.
///
/// Works on the already namespace-completed `features.xml`: the removed children (found by the
/// splitter while it checked the element; nothing is parsed here) are cut out byte for byte
/// with their whole subtree; every other byte is kept, including whitespace that surrounded
/// them.
pub fn client_features(features: &ServerElement) -> String {
    let xml = features.xml.as_str();
    let mut out = String::with_capacity(xml.len());
    let mut last = 0;
    for cut in &features.feature_cuts {
        out.push_str(&xml[last..cut.start]);
        last = cut.end;
    }
    out.push_str(&xml[last..]);
    out
}

/// Appends ` name="value"` (or with `'`), escaped, when `value` is present.
pub(crate) fn push_attr(out: &mut String, name: &str, value: Option<&str>, quote: char) {
    if let Some(value) = value {
        out.push(' ');
        out.push_str(name);
        out.push('=');
        out.push(quote);
        escape_attr(out, value, quote);
        out.push(quote);
    }
}

/// The XEP-0156 host-meta document (XRD) advertising one WebSocket endpoint.
pub fn host_meta_xrd(links: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for (rel, href) in links {
        out.push_str("  <Link rel=\"");
        escape_attr(&mut out, rel, '"');
        out.push_str("\" href=\"");
        escape_attr(&mut out, href, '"');
        out.push_str("\"/>\n");
    }
    out.push_str("</XRD>\n");
    out
}

/// Escapes an attribute value for the given quote: `&`, `<` and the quote as entities, TAB, LF
/// and CR as character references so that attribute-value normalisation keeps them (XML-6).
pub(crate) fn escape_attr(out: &mut String, value: &str, quote: char) {
    escape_with(out, value, |byte| match byte {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'"' if quote == '"' => Some("&quot;"),
        b'\'' if quote == '\'' => Some("&apos;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    })
}

/// Escapes character data: `&`, `<`, `>` (so `]]>` cannot appear) and CR (kept through
/// end-of-line normalisation).
fn escape_text(out: &mut String, text: &str) {
    escape_with(out, text, |byte| match byte {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#13;"),
        _ => None,
    })
}

/// Appends `text` with each byte that `escape` names replaced, the runs between them copied
/// whole. Every byte escaped is ASCII, so each run ends on a character boundary.
#[inline]
fn escape_with(out: &mut String, text: &str, escape: impl Fn(u8) -> Option<&'static str>) {
    let mut run_start = 0;
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        if let Some(replacement) = escape(byte) {
            out.push_str(&text[run_start..i]);
            out.push_str(replacement);
            run_start = i + 1;
        }
    }
    out.push_str(&text[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::super::splitter::{ServerElementKind, ServerEvent, SplitterLimits, StreamSplitter};
    use super::super::wf::canonical;
    use super::*;

    /// `xml` (which declares every namespace it uses) as the splitter hands it over, with what
    /// the splitter learnt while checking it.
    fn features(xml: &str) -> ServerElement {
        let mut splitter = StreamSplitter::new(SplitterLimits::default());
        splitter.feed(format!("<stream:stream xmlns:stream='{NS_STREAM}'>{xml}").as_bytes());
        assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
        match splitter.next_event() {
            Ok(Some(ServerEvent::Element(element))) => {
                assert_eq!((element.kind, element.xml.as_str()), (ServerElementKind::Features, xml));
                element
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fr7_close_exact() {
        assert_eq!(CLOSE, r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#);
    }

    #[test]
    fn tv10_client_open_exact() {
        let header =
            StreamHeader::new([("from", "example.com"), ("id", "ID-2"), ("version", "1.0"), ("xml:lang", "en")]);
        assert_eq!(
            client_open(&header, "unused", "unused"),
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="ID-2" version="1.0" xml:lang="en"/>"#
        );
    }

    #[test]
    fn tv24_client_open_with_to() {
        let header = StreamHeader::new([
            ("from", "example.com"),
            ("to", "juliet@example.com"),
            ("id", "ID-3"),
            ("version", "1.0"),
            ("xml:lang", "en"),
        ]);
        assert_eq!(
            client_open(&header, "x", "x"),
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" to="juliet@example.com" id="ID-3" version="1.0" xml:lang="en"/>"#
        );
    }

    #[test]
    fn hdr6_client_open_fallbacks_and_escaping() {
        let header = StreamHeader::new([("from", "a\"b&c<d\te")]);
        let open = client_open(&header, "GW-1", "de");
        assert_eq!(
            open,
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="a&quot;b&amp;c&lt;d&#9;e" id="GW-1" version="1.0" xml:lang="de"/>"#
        );
        assert!(canonical(&open).contains(r#"{}from="a\"b&c<d\te""#));
    }

    #[test]
    fn tv80_gateway_open() {
        assert_eq!(
            gateway_open("example.com", "G1", "en"),
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="G1" version="1.0" xml:lang="en"/>"#
        );
        assert_eq!(
            gateway_open("", "G2", "en"),
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="" id="G2" version="1.0" xml:lang="en"/>"#
        );
    }

    #[test]
    fn tv96_close_see_other_uri() {
        assert_eq!(
            close_see_other_uri("wss://gw2.example.net/xmpp-websocket?a=1&b=2"),
            r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="wss://gw2.example.net/xmpp-websocket?a=1&amp;b=2" />"#
        );
    }

    #[test]
    fn tv10_upstream_header_exact() {
        let open = OpenRequest::new([("to", "Example.COM."), ("xml:lang", "en"), ("version", "1.0")]);
        assert_eq!(
            upstream_header(&open, "example.com", false),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>"
        );
    }

    #[test]
    fn tv24_upstream_header_from_only_when_asked() {
        let open = OpenRequest::new([("to", "example.com"), ("from", "juliet@example.com"), ("version", "1.0")]);
        assert_eq!(
            upstream_header(&open, "example.com", false),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
        );
        assert_eq!(
            upstream_header(&open, "example.com", true),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='juliet@example.com' to='example.com' version='1.0'>"
        );
        let bare = OpenRequest::default();
        assert_eq!(
            upstream_header(&bare, "o'k", true),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='o&apos;k'>"
        );
    }

    #[test]
    fn stream_errors_exact() {
        assert_eq!(
            client_stream_error(StreamCondition::InvalidNamespace, None),
            r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><invalid-namespace xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#
        );
        assert_eq!(
            client_stream_error(StreamCondition::RemoteConnectionFailed, Some("dns-nxdomain <&>")),
            r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><remote-connection-failed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams">dns-nxdomain &lt;&amp;&gt;</text></stream:error>"#
        );
        assert_eq!(
            upstream_stream_error(StreamCondition::RestrictedXml),
            "<stream:error><restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        );
    }

    #[test]
    fn tv16_features_filtered() {
        let input = features(
            r#"<stream:features xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams"><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"#,
        );
        let out = client_features(&input);
        assert_eq!(
            out,
            r#"<stream:features xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"#
        );
        assert_eq!(
            canonical(&out),
            canonical(
                r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>"#
            )
        );
    }

    #[test]
    fn features_filter_by_namespace_not_by_name() {
        // starttls with required child, prefixed; a starttls in another namespace stays; a
        // nested starttls (depth 3) stays.
        let input = features(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\n <t:starttls xmlns:t='urn:ietf:params:xml:ns:xmpp-tls'><t:required/></t:starttls>\n <starttls xmlns='urn:example'/><x xmlns='urn:x'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></x></stream:features>",
        );
        assert_eq!(
            client_features(&input),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\n \n <starttls xmlns='urn:example'/><x xmlns='urn:x'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></x></stream:features>"
        );
    }

    #[test]
    fn tv10_tv20b_features_with_channel_binding_unchanged() {
        let xml = r#"<stream:features xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding></stream:features>"#;
        assert_eq!(client_features(&features(xml)), xml);
    }

    #[test]
    fn host_meta_xrd_escapes_the_url() {
        let xrd = host_meta_xrd(&[
            ("urn:xmpp:alt-connections:websocket", "wss://gw.example.net/xmpp-websocket?a=1&b=\"2\""),
            ("urn:xmpp:alt-connections:xbosh", "https://gw.example.net/http-bind"),
        ]);
        assert!(
            xrd.contains(r#"<Link rel="urn:xmpp:alt-connections:xbosh" href="https://gw.example.net/http-bind"/>"#),
            "{xrd}"
        );
        assert!(xrd.contains(r#"<Link rel="urn:xmpp:alt-connections:websocket" href="wss://gw.example.net/xmpp-websocket?a=1&amp;b=&quot;2&quot;"/>"#), "{xrd}");
        assert!(xrd.starts_with("<?xml version='1.0' encoding='utf-8'?>"));
    }

    proptest::proptest! {
        /// Whatever a value holds, escaped for either quote it reads back as it was, and
        /// nothing in it can end the value or start markup.
        #[test]
        fn escaped_attribute_values_read_back_unchanged(value in "[\\PC\t\n\r&<>\"']{0,40}") {
            for quote in ['"', '\''] {
                let mut out = String::from("x");
                escape_attr(&mut out, &value, quote);
                proptest::prop_assert!(!out.contains(quote) && !out.contains('<'), "{out}");
                let read_back = super::super::lexical::unescape_attr(&out[1..]);
                proptest::prop_assert_eq!(read_back.as_deref(), Ok(value.as_str()));
            }
        }

        /// Character data keeps every character but the four it must escape, in order.
        #[test]
        fn escaped_text_replaces_exactly_four_characters(text in "[\\PC\t\n\r&<>\"']{0,40}") {
            let mut out = String::new();
            escape_text(&mut out, &text);
            let expected: String = text
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".to_owned(),
                    '<' => "&lt;".to_owned(),
                    '>' => "&gt;".to_owned(),
                    '\r' => "&#13;".to_owned(),
                    c => c.to_string(),
                })
                .collect();
            proptest::prop_assert_eq!(out, expected);
        }
    }
}
