use super::*;

const LIMITS: BodyLimits = BodyLimits {
    max_body_bytes: 4096,
    max_children: 4,
    max_depth: 8,
    max_attributes: 16,
    max_namespace_declarations: 8,
};

fn body(attrs: &str, inner: &str) -> String {
    format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='7' {attrs}>{inner}</body>"
    )
}

#[test]
fn a_session_creation_request_gives_its_attributes() {
    let text = "<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' to='example.com' \
        route='xmpp:example.com:9999' ver='1.6' wait='60' ack='1' xml:lang='en' xmlns:xmpp='urn:xmpp:xbosh' \
        xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind'/>";
    let request = parse(text, &LIMITS).unwrap();
    assert_eq!(request.rid, 1_573_741_820);
    assert_eq!(request.sid, None);
    assert_eq!(request.to.as_deref(), Some("example.com"));
    assert_eq!(request.route.as_deref(), Some("xmpp:example.com:9999"));
    assert_eq!((request.wait, request.hold), (Some(60), Some(1)));
    assert_eq!(request.ver.as_deref(), Some("1.6"));
    assert_eq!(request.lang.as_deref(), Some("en"));
    assert_eq!(request.xmpp_version.as_deref(), Some("1.0"));
    assert!(!request.restart);
    assert_eq!(request.kind, BodyType::Normal);
    assert!(request.children.is_empty());
}

#[test]
fn children_come_out_standalone_in_order() {
    let text =
        body("sid='abc'", " <message xmlns='jabber:client' to='a@b'><body>hi</body></message>\n<presence/><xmpp:x/> ");
    let request = parse(&text, &LIMITS).unwrap();
    assert_eq!(request.sid.as_deref(), Some("abc"));
    assert_eq!(
        request.children,
        [
            "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>".to_string(),
            // The body's default namespace stands for jabber:client (XEP-0206 §3 note).
            "<presence xmlns=\"jabber:client\"/>".to_string(),
            "<xmpp:x xmlns:xmpp=\"urn:xmpp:xbosh\"/>".to_string(),
        ]
    );
}

#[test]
fn restart_and_terminate_are_read() {
    let restart = parse(&body("sid='s' xmpp:restart='true' to='example.com'", ""), &LIMITS).unwrap();
    assert!(restart.restart);
    let terminate =
        parse(&body("sid='s' type='terminate'", "<presence type='unavailable' xmlns='jabber:client'/>"), &LIMITS)
            .unwrap();
    assert_eq!(terminate.kind, BodyType::Terminate);
    assert_eq!(terminate.children.len(), 1);
    // xmpp:restart under another namespace is not XEP-0206's.
    let other =
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:other' rid='1' xmpp:restart='true'/>";
    assert!(!parse(other, &LIMITS).unwrap().restart);
}

#[test]
fn bad_bodies_are_bad_requests() {
    for (text, why) in [
        ("", "empty"),
        ("hello", "not XML"),
        ("<body xmlns='http://jabber.org/protocol/httpbind'/>", "no rid"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='x'/>", "rid not a number"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='0'/>", "rid zero"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='9007199254740992'/>", "rid 2^53"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='-1'/>", "rid negative"),
        ("<body rid='1'/>", "no namespace"),
        ("<bosh xmlns='http://jabber.org/protocol/httpbind' rid='1'/>", "not body"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1' type='bogus'/>", "unknown type"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1' wait='soon'/>", "wait not a number"),
    ] {
        let error = parse(text, &LIMITS).expect_err(why);
        assert_eq!(error.condition(), "bad-request", "{why}: {error}");
    }
}

#[test]
fn malformed_xml_is_refused() {
    for (text, why) in [
        (body("", "<message xmlns='jabber:client'>"), "unclosed child"),
        (body("", "<a xmlns='x'></b>"), "mismatched child"),
        (body("", "text"), "text in body"),
        (body("", "<!-- c --><a xmlns='x'/>"), "comment"),
        (body("", "<?pi?>"), "processing instruction"),
        (body("", "<a xmlns='x'>&ent;</a>"), "undefined entity"),
        (body("", "<p:a/>"), "undeclared prefix"),
        ("<!DOCTYPE body><body xmlns='http://jabber.org/protocol/httpbind' rid='1'/>".to_string(), "DTD"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>".to_string(), "unclosed body"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'></bodyx>".to_string(), "wrong end tag"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'/><body/>".to_string(), "two bodies"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'/>x".to_string(), "trailing text"),
        ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1' rid='2'/>".to_string(), "repeated attribute"),
    ] {
        let error = parse(&text, &LIMITS).expect_err(why);
        assert_eq!(error.condition(), "bad-request", "{why}: {error}");
    }
}

#[test]
fn limits_are_policy_violations() {
    let deep = format!("{}{}", "<a xmlns='x'>".repeat(9), "</a>".repeat(9));
    let many = "<a xmlns='x'/>".repeat(5);
    let attrs: String = (0..17).map(|i| format!(" a{i}='v'")).collect();
    let wide = format!("<a xmlns='x'{attrs}/>");
    let big = body("", &format!("<a xmlns='x'>{}</a>", "y".repeat(5000)));
    for (text, why) in [
        (body("", &deep), "too deep"),
        (body("", &many), "too many children"),
        (body("", &wide), "too many attributes"),
        (big, "too big"),
    ] {
        let error = parse(&text, &LIMITS).expect_err(why);
        assert_eq!(error.condition(), "policy-violation", "{why}: {error}");
    }
    // At the limits, accepted.
    let deep = format!("{}{}", "<a xmlns='x'>".repeat(8), "</a>".repeat(8));
    assert_eq!(parse(&body("", &deep), &LIMITS).unwrap().children.len(), 1);
    assert_eq!(parse(&body("", &"<a xmlns='x'/>".repeat(4)), &LIMITS).unwrap().children.len(), 4);
}

#[test]
fn responses_are_bodies_the_parser_reads_back() {
    let created = Created {
        sid: "s1",
        wait: 60,
        requests: 2,
        hold: 1,
        inactivity: 30,
        polling: 2,
        maxpause: 120,
        ver: "1.11",
        from: "example.com",
        authid: "id&1",
        xmpp_version: Some("1.0"),
    };
    let features = "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"/>".to_string();
    let text = created.body(std::slice::from_ref(&features));
    assert!(text.starts_with("<body xmlns=\"http://jabber.org/protocol/httpbind\""), "{text}");
    for part in [
        " sid=\"s1\"",
        " wait=\"60\"",
        " requests=\"2\"",
        " hold=\"1\"",
        " inactivity=\"30\"",
        " polling=\"2\"",
        " maxpause=\"120\"",
        " ver=\"1.11\"",
        " from=\"example.com\"",
        " authid=\"id&amp;1\"",
        " xmpp:version=\"1.0\"",
        " xmpp:restartlogic=\"true\"",
        " xmlns:xmpp=\"urn:xmpp:xbosh\"",
        " xmlns:stream=\"http://etherx.jabber.org/streams\"",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert!(text.ends_with(&format!(">{features}</body>")), "{text}");
    assert_eq!(empty(), "<body xmlns=\"http://jabber.org/protocol/httpbind\" xmlns:xmpp=\"urn:xmpp:xbosh\" xmlns:stream=\"http://etherx.jabber.org/streams\"/>");
    let end = terminate(Some("remote-stream-error"), &["<stream:error/>".to_string()]);
    assert!(end.contains(" type=\"terminate\" condition=\"remote-stream-error\"><stream:error/></body>"), "{end}");
    // Every response is itself a well-formed body (with a rid added, as a request would have).
    let with_rid = text.replacen("<body ", "<body rid=\"1\" ", 1);
    assert_eq!(parse(&with_rid, &LIMITS).unwrap().children, [features]);
}

#[test]
fn the_cores_framing_is_recognised() {
    use crate::xml::condition::StreamCondition;
    use crate::xml::framing;
    let open = framing::gateway_open("example.com", "gw-1", "en");
    assert_eq!(
        core_output(&open),
        CoreOutput::Open { from: Some("example.com".into()), id: Some("gw-1".into()), version: Some("1.0".into()) }
    );
    assert_eq!(
        core_output(&framing::close_see_other_uri("wss://b/x")),
        CoreOutput::Close { see_other_uri: Some("wss://b/x".into()) }
    );
    assert_eq!(
        core_output("<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>"),
        CoreOutput::Close { see_other_uri: None }
    );
    let error = framing::client_stream_error(StreamCondition::HostUnknown, Some("domain-not-allowed"));
    assert_eq!(core_output(&error), CoreOutput::StreamError(StreamCondition::HostUnknown));
    // An element that only looks like framing is an element.
    assert_eq!(core_output("<open xmlns='urn:other'/>"), CoreOutput::Element);
    assert_eq!(core_output("<message xmlns='jabber:client'/>"), CoreOutput::Element);
    assert_eq!(terminal_condition(StreamCondition::HostUnknown), Some("host-unknown"));
    assert_eq!(terminal_condition(StreamCondition::NotAuthorized), None);
}
