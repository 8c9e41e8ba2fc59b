use super::*;
use crate::xml::lexical::is_qname;
use proptest::prelude::*;

/// Checks `doc` as one whole element (nothing may follow it), in one read.
fn check(doc: &str, limits: WfLimits) -> Result<Checker, XmlError> {
    check_in(doc, limits, None)
}

fn check_in(doc: &str, limits: WfLimits, inherited: Option<&Inherited>) -> Result<Checker, XmlError> {
    if !doc.starts_with('<') {
        return Err(XmlError::NotWellFormed("the document does not start with '<'"));
    }
    let mut checker = Checker::new(limits, Unit::Element);
    checker.reset(Unit::Element);
    match checker.advance(doc.as_bytes(), inherited)? {
        Progress::Done if checker.end() == doc.len() => Ok(checker),
        Progress::Done => Err(XmlError::NotWellFormed("content after the element")),
        Progress::NeedMore => Err(XmlError::NotWellFormed("unclosed element")),
    }
}

/// The same, fed `step` bytes at a time: the outcome must not depend on the reads.
fn check_chunked(doc: &str, step: usize) -> Result<usize, XmlError> {
    let bytes = doc.as_bytes();
    let mut checker = Checker::new(WfLimits::UNLIMITED, Unit::Element);
    checker.reset(Unit::Element);
    let mut end = 0;
    loop {
        end = (end + step).min(bytes.len());
        match checker.advance(&bytes[..end], None)? {
            // As in `check_in`: the element must be all of `doc`.
            Progress::Done if checker.end() == bytes.len() => return Ok(checker.end()),
            Progress::Done => return Err(XmlError::NotWellFormed("content after the element")),
            Progress::NeedMore if end == bytes.len() => return Err(XmlError::NotWellFormed("unclosed element")),
            Progress::NeedMore => {}
        }
    }
}

fn unlimited(max_depth: usize) -> WfLimits {
    WfLimits { max_depth, ..WfLimits::UNLIMITED }
}

fn ok(doc: &str) -> Checker {
    check(doc, unlimited(100)).unwrap_or_else(|error| panic!("{doc:?}: {error:?}"))
}

fn not_well_formed(doc: &str) {
    let got = check(doc, unlimited(100)).map(|_| ());
    assert!(matches!(got, Err(XmlError::NotWellFormed(_))), "{doc:?} gave {got:?}");
}

#[test]
fn elements() {
    ok("<a><b/></a>");
    assert_eq!(check("<a><b/></a>", unlimited(1)).map(|_| ()), Err(XmlError::TooDeep));
    for bad in [
        "<a></b>",
        "<a x='1' x='2'/>",
        "<a p:x='1'/>",
        "<a>]]></a>",
        "<a>\u{1}</a>",
        "<a xmlns:p=''/>",
        "<a x='1'y='2'/>",
        "<a x=1/>",
        "<a x/>",
        "<a x='1' / >",
        "< a/>",
        "</a>",
        "<a></ a>",
        "<a></a b>",
        "<a>&amp</a>",
        "<a>a & b</a>",
        "<a x='&'/>",
        "<a x='<'/>",
        "<a x='&#0;'/>",
        "<a>&#xFFFE;</a>",
        "<a>\u{FFFF}</a>",
        "<a x='\u{FFFE}'/>",
        "<a><![CDATA[\u{FFFF}]]></a>",
        "<a><![CDAT[x]]></a>",
        "<a><?xml version='1.0'?></a>",
        "<1a/>",
        "<a:b:c/>",
        "<a",
        "<a>",
        "<a></a",
    ] {
        not_well_formed(bad);
    }
    for restricted in ["<a><!--c--></a>", "<a><?php x?></a>", "<a><!DOCTYPE a></a>", "<a>&nbsp;</a>", "<a x='&nbsp;'/>"]
    {
        let got = check(restricted, unlimited(100)).map(|_| ());
        assert!(matches!(got, Err(XmlError::RestrictedXml(_))), "{restricted:?} gave {got:?}");
    }
    for good in [
        "<a x = '1'\ty=\"2\"\n/>",
        "<a></a >",
        "<a>]]&gt; ]] > ]></a>",
        "<a x='a>b' y=\"'\" z='\"'/>",
        "<a><![CDATA[<b>]]]]></a>",
        "<a>&lt;&#233;&#x1F600;&apos;</a>",
        "<a x='&amp;&#9;'/>",
        "<é:ü xmlns:é='urn:e'>ö</é:ü>",
        "<a>\u{FFFD}\u{EFFF}\u{10FFFF}\t\r\n</a>",
    ] {
        ok(good);
    }
}

#[test]
fn any_reads_give_the_same_outcome() {
    let docs = [
        "<message xmlns='jabber:client' to='a@b' id='7&amp;8'><body>Art thou 😀 &amp; &#x1F600; ]] &lt;</body><x xmlns='urn:x'><![CDATA[</message>]]]]></x></message>",
        "<a x = '1'\ty=\"2\"\n/>",
        "<a><b xmlns:p='urn:p' p:c='\u{FFFD}'><p:d/></b></a >",
        "<a>x]]>y</a>",
        "<a><!-- c --></a>",
        "<a>\u{EFFF}\u{FFFF}</a>",
        "<a><?xml version='1.0'?></a>",
        "<a x='&bogus;'/>",
        // The element ends before the document does (found by the property test below with
        // more cases than its default).
        "<r></r></r>",
    ];
    for doc in docs {
        let whole = check(doc, WfLimits::UNLIMITED).map(|checker| checker.end());
        for step in 1..=7 {
            assert_eq!(check_chunked(doc, step), whole, "{doc:?} in reads of {step}");
        }
    }
}

#[test]
fn duplicate_attributes_past_the_small_set_and_by_expanded_name() {
    let many: String = (0..40).map(|i| format!(" a{i}='x'")).collect();
    ok(&format!("<a{many}/>"));
    not_well_formed(&format!("<a{many} a30='y'/>"));
    not_well_formed("<a x='1' y='2' x='3'/>");
    // Namespaces in XML §6.3: the same expanded name through two prefixes.
    not_well_formed("<a xmlns:p='urn:u' xmlns:q='urn:u' p:x='1' q:x='2'/>");
    ok("<a xmlns:p='urn:u' xmlns:q='urn:v' p:x='1' q:x='2' x='3'/>");
    ok("<a xml:lang='en' xmlns:p='urn:u' p:lang='x'/>");
    let prefixed: String = (0..40).map(|i| format!(" xmlns:p{i}='urn:{i}' p{i}:x='1'")).collect();
    ok(&format!("<a{prefixed}/>"));
    not_well_formed(&format!("<a{prefixed} xmlns:q='urn:7' q:x='1'/>"));
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
        "<a xmlns:p='urn:p'><b/></a><p:b/>",
    ] {
        not_well_formed(bad);
    }
    for good in [
        "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>",
        "<a xmlns='urn:d'><b xmlns=''/></a>",
        "<p:a xmlns:p='urn:p'><p:b/><c xmlns:p='urn:q'><p:d/></c><p:e/></p:a>",
        "<a p:x='1' xmlns:p='urn:p'/>",
        "<xml:a/>",
    ] {
        ok(good);
    }
    let doc = "<a xmlns='urn:d'><b xmlns=''/></a>";
    assert_eq!(ok(doc).root_ns(None), Some("urn:d"));
    assert_eq!(ok("<a xmlns=''/>").root_ns(None), None);
    assert_eq!(ok("<xml:a/>").root_ns(None), Some(NS_XML));
    let doc = "<p:a xmlns='urn:d' xmlns:p='urn:&amp;p' to='a&amp;b' xml:lang='en'/>";
    assert_eq!(ok(doc).root_ns(None), Some("urn:&p"));
}

#[test]
fn caps_on_depth_attributes_and_declarations() {
    let limits = WfLimits { max_depth: 10, max_attributes: 4, max_namespace_declarations: 2 };
    assert!(check("<a xmlns='urn:d' xmlns:p='urn:p' p:x='1' y='2'/>", limits).is_ok());
    assert_eq!(
        check("<a xmlns='urn:d' xmlns:p='urn:p' p:x='1' y='2' z='3'/>", limits).map(|_| ()),
        Err(XmlError::TooManyAttributes)
    );
    assert_eq!(
        check("<a><b xmlns='urn:d' xmlns:p='urn:p' xmlns:q='urn:q'/></a>", limits).map(|_| ()),
        Err(XmlError::TooManyNamespaceDeclarations)
    );
    // Per start tag, not per element.
    assert!(check("<a x='1' y='2' z='3'><b x='1' y='2' z='3'/><c x='1' y='2' z='3'/></a>", limits).is_ok());
    let n = 10_000;
    let doc = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    assert!(check(&doc, unlimited(n)).is_ok());
    assert_eq!(check(&doc, unlimited(n - 1)).map(|_| ()), Err(XmlError::TooDeep));
    // Deeper than quick-xml's own 16-bit namespace levels could count.
    let n = 70_000;
    let doc = format!("{}{}", "<a xmlns:p='urn:p'>".repeat(n), "</a>".repeat(n));
    assert!(check(&doc, unlimited(n)).is_ok());
}

#[test]
fn inherited_declarations_resolve_and_are_reported_when_used() {
    let header = Inherited::new(vec![
        (None, "jabber:client".to_owned()),
        (Some("stream".to_owned()), "http://etherx.jabber.org/streams".to_owned()),
        (Some("foo".to_owned()), "urn:foo".to_owned()),
    ]);
    let used = |doc: &str| {
        check_in(doc, WfLimits::UNLIMITED, Some(&header)).map(|checker| {
            (checker.root_ns(Some(&header)).map(str::to_owned), checker.inherited_used().iter().collect())
        })
    };
    assert_eq!(used("<message><foo:x/><foo:y/></message>"), Ok((Some("jabber:client".to_owned()), vec![0, 2])));
    assert_eq!(used("<stream:features/>"), Ok((Some("http://etherx.jabber.org/streams".to_owned()), vec![1])));
    assert_eq!(used("<m xmlns='urn:m' xmlns:foo='urn:f'><foo:x/></m>"), Ok((Some("urn:m".to_owned()), vec![])));
    assert_eq!(used("<m xmlns='urn:m'><x xmlns=''/></m>"), Ok((Some("urn:m".to_owned()), vec![])));
    assert_eq!(used("<m foo:a='1'/>"), Ok((Some("jabber:client".to_owned()), vec![0, 2])));
    assert!(matches!(used("<bar:x/>"), Err(XmlError::NotWellFormed(_))));
    // Without the header the prefixes are undeclared.
    not_well_formed("<message><foo:x/></message>");
}

#[test]
fn what_is_learnt_about_the_root() {
    let doc = "<p:a xmlns='urn:d' xmlns:p='urn:p' to='a&amp;b' xml:lang='en'>x<b/></p:a >";
    let checker = ok(doc);
    assert_eq!((checker.root_qname(doc), checker.root_local(doc)), ("p:a", "a"));
    assert_eq!(&doc[..=checker.root_tag_end()], "<p:a xmlns='urn:d' xmlns:p='urn:p' to='a&amp;b' xml:lang='en'>");
    assert_eq!(checker.root_end_name().map(|at| &doc[at..]), Some("p:a >"));
    assert_eq!((checker.root_attributes(), checker.root_declarations(), checker.root_empty()), (4, 2, false));
    assert_eq!(checker.root_stream_declaration(), None);
    // Attributes are kept only for a header or <open/>.
    assert_eq!(
        checker.root_attrs(doc, &["a", "b", "to", "from", "version", "xml:lang", "id"], true),
        Ok((vec![], vec![]))
    );
    let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a&amp;b' xml:lang='en'/>";
    assert_eq!(
        ok(open).root_attrs(open, &["a", "b", "to", "from", "version", "xml:lang", "id"], true),
        Ok((vec![("to", "a&b".into()), ("xml:lang", "en".into())], vec![(None, NS_FRAMING.into())]))
    );
    // Only the attributes asked for, and the declarations only when asked.
    assert_eq!(ok(open).root_attrs(open, &["to"], false), Ok((vec![("to", "a&b".into())], vec![])));
    // Only a value with something to unescape is made anew; the others are lent from the text.
    let (attrs, declarations) = ok(open).root_attrs(open, &["to", "xml:lang"], true).unwrap();
    assert!(matches!((&attrs[0].1, &attrs[1].1), (Cow::Owned(_), Cow::Borrowed("en"))), "{attrs:?}");
    assert!(matches!(declarations[0].1, Cow::Borrowed(NS_FRAMING)), "{declarations:?}");
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='a\tb'>";
    let mut checker = Checker::new(WfLimits::UNLIMITED, Unit::Header);
    checker.reset(Unit::Header);
    assert_eq!(checker.advance(header.as_bytes(), None), Ok(Progress::Done));
    assert_eq!(checker.end(), header.len());
    assert_eq!(checker.root_ns(None), Some(NS_STREAM));
    assert_eq!(checker.root_stream_declaration(), Some(NS_STREAM));
    assert_eq!(
        checker.root_attrs(header, &["a", "b", "to", "from", "version", "xml:lang", "id"], true),
        Ok((vec![("id", "a b".into())], vec![(None, "jabber:client".into()), (Some("stream"), NS_STREAM.into())]))
    );
}

#[test]
fn stream_error_conditions_and_feature_cuts_are_collected_on_the_way() {
    let error = "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>t</text><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>h&amp;<![CDATA[x]]><i>no</i>y</see-other-host><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    assert_eq!(ok(error).error_child(), Some(("see-other-host", "h&xy")));
    assert_eq!(ok("<stream:error xmlns:stream='http://etherx.jabber.org/streams'/>").error_child(), None);
    // Only on a stream error.
    assert_eq!(ok("<e><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></e>").error_child(), None);
    let features = "<f:features xmlns:f='http://etherx.jabber.org/streams' xmlns:t='urn:ietf:params:xml:ns:xmpp-tls'>\n <t:starttls><t:required/></t:starttls><starttls/><compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression><x xmlns='urn:ietf:params:xml:ns:xmpp-tls'><t:starttls/></x><t:starttls/></f:features>";
    let cut: Vec<&str> = ok(features).feature_cuts().iter().map(|r| &features[r.clone()]).collect();
    assert_eq!(
        cut,
        [
            "<t:starttls><t:required/></t:starttls>",
            "<compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression>",
            "<t:starttls/>"
        ]
    );
}

#[test]
fn the_eight_byte_skip_stops_at_every_byte_the_scan_needs() {
    // For each byte at each place in a block: a byte the scan must see stops the skip exactly
    // there; printable ASCII that is not one of them is passed (but '#' in values).
    for (stops, needed, also) in [(&TEXT_STOPS, &b"<&>"[..], &b""[..]), (&VALUE_STOPS, &b"<&\"'"[..], &b"#"[..])] {
        for b in 0..=255u8 {
            for k in 0..8 {
                let stops_here = !(0x20..0x80).contains(&b) || needed.contains(&b) || also.contains(&b);
                let mut unit = [b'a'; 16];
                unit[k] = b;
                let skipped = skip_plain_ascii(&unit, 0, stops);
                assert_eq!(skipped, if stops_here { k } else { 16 }, "byte {b:#x} at {k}");
                // With a stop after it in the same block, the first of the two is found (a
                // borrow from a lower byte must not flag a higher one first).
                if k < 7 {
                    unit[7] = b'<';
                    let first = if stops_here { k } else { 7 };
                    assert_eq!(skip_plain_ascii(&unit, 0, stops), first, "byte {b:#x} at {k}, then '<'");
                }
            }
        }
    }
}

#[test]
fn the_lowercase_skip_stops_at_the_first_other_byte() {
    // Each byte at each place of two blocks of letters (followed by a letter, a non-ASCII byte
    // or a space): the skip passes both blocks when it is a lowercase letter and stops exactly
    // at it otherwise; the name scan built on it ends where a byte-by-byte scan does.
    for b in 0..=255u8 {
        for k in 0..8 {
            for next in [b'z', 0xFF, b' '] {
                let mut unit = [b'q'; 17];
                unit[k] = b;
                unit[k + 1] = next;
                let expected = if b.is_ascii_lowercase() && next.is_ascii_lowercase() {
                    16
                } else if b.is_ascii_lowercase() {
                    k + 1
                } else {
                    k
                };
                assert_eq!(skip_lowercase(&unit, 0), expected, "{b:#x} at {k}, then {next:#x}");
                let by_bytes = unit.iter().position(|&c| NAME_CLASS[c as usize] == 0).unwrap_or(unit.len());
                assert_eq!(name_end(&unit, 0).0, by_bytes, "{b:#x} at {k}, then {next:#x}");
            }
        }
    }
    // Fewer than eight bytes left: nothing skipped, the byte scan reads them.
    assert_eq!(skip_lowercase(b"abcdefg", 0), 0);
}

/// Pieces of XML, good and bad, that the generator strings together.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<a>".to_string()),
        Just("</a>".to_string()),
        Just("<b/>".to_string()),
        Just("<p:c xmlns:p='urn:p'>".to_string()),
        Just("</p:c>".to_string()),
        Just("<d x='1' y=\"&amp;\"/>".to_string()),
        Just("<d x='1' x='2'/>".to_string()),
        Just("<e xmlns='urn:e'>".to_string()),
        Just("</e>".to_string()),
        Just("text".to_string()),
        Just("]]>".to_string()),
        Just("]]".to_string()),
        Just(">".to_string()),
        Just("&lt;".to_string()),
        Just("&#x1F600;".to_string()),
        Just("&bogus;".to_string()),
        Just("&".to_string()),
        Just("<![CDATA[<x>]]>".to_string()),
        Just("<!--c-->".to_string()),
        Just("<?pi x?>".to_string()),
        Just("<q:d/>".to_string()),
        Just("<f xml:lang='en' p:z='1'/>".to_string()),
        Just("\u{FFFF}".to_string()),
        Just("\u{1}".to_string()),
        Just(" ".to_string()),
        Just("é".to_string()),
        "[<>&;'\"=/ a-z:!?\\[\\]#]{1,4}",
    ]
}

proptest! {
    /// The scanner's name check (a table over ASCII, the colon found on the way) accepts exactly
    /// the names the `QName` production does, and finds their first colon.
    #[test]
    fn name_check_agrees_with_the_qname_production(name in "[a-zA-Z0-9:._\\-\u{e9}\u{b7}\u{300}]{1,10}") {
        let colon = qname_colon(name.as_bytes());
        prop_assert_eq!(colon.is_some(), is_qname(name.as_bytes()), "{}", name);
        if let Some(colon) = colon {
            prop_assert_eq!(colon, name.find(':').unwrap_or(0));
        }
        if name.bytes().all(|b| NAME_PLAIN[b as usize]) {
            prop_assert_eq!(checked_qname(name.as_bytes(), true), colon);
        }
        let other = format!("{name}x");
        prop_assert_ne!(name_key(name.as_bytes()), name_key(other.as_bytes()));
    }

    /// Whatever the input and however it is cut into reads, the checker decides the same way.
    #[test]
    fn reads_never_change_the_outcome(pieces in proptest::collection::vec(piece(), 0..16), step in 1usize..9) {
        let doc = format!("<r xmlns:p='urn:p'>{}</r>", pieces.concat());
        let whole = check(&doc, WfLimits::UNLIMITED).map(|checker| checker.end());
        prop_assert_eq!(check_chunked(&doc, step), whole);
    }

    /// The same on raw runs of markup characters, in content and inside a start tag.
    #[test]
    fn agrees_with_the_quick_xml_walker_on_raw_markup(raw in "[<>/='\"&;#a-c:xmlns \t\\]!?\\[-]{0,24}") {
        for doc in [format!("<r xmlns:p='urn:p'>{raw}</r>"), format!("<r{raw}/>"), format!("<r{raw}>x</r>"), format!("<r {raw}></r>")] {
            let new = check(&doc, WfLimits::UNLIMITED).map(|_| ());
            let old = super::super::wf::check_element(&doc, &super::super::wf::WfLimits::UNLIMITED).map(|_| ());
            let same = match (&new, &old) {
                (Ok(()), Ok(())) => true,
                // A processing instruction, comment or DTD is refused here as soon as it begins,
                // whatever follows (quick-xml first looks for its end).
                (Err(XmlError::RestrictedXml(_)), Err(_)) => true,
                (Err(XmlError::NotWellFormed(_)), Err(XmlError::NotWellFormed(_))) => true,
                _ => false,
            };
            prop_assert!(same, "{:?}: new {:?}, old {:?}", doc, new, old);
        }
    }

    /// The checker agrees with the previous checker (quick-xml's tokenizer and a walker over its
    /// events) on what is acceptable and why not.
    #[test]
    fn agrees_with_the_quick_xml_walker(pieces in proptest::collection::vec(piece(), 0..16)) {
        let doc = format!("<r xmlns:p='urn:p'>{}</r>", pieces.concat());
        let new = check(&doc, WfLimits::UNLIMITED).map(|_| ());
        let old = super::super::wf::check_element(&doc, &super::super::wf::WfLimits::UNLIMITED).map(|_| ());
        let kind = |r: &Result<(), XmlError>| match r {
            Ok(()) => "ok",
            Err(XmlError::NotWellFormed(_)) => "nwf",
            Err(XmlError::RestrictedXml(_)) => "restricted",
            Err(_) => "limit",
        };
        let old_kind = match &old {
            Ok(()) => "ok",
            Err(XmlError::NotWellFormed(_)) => "nwf",
            Err(XmlError::RestrictedXml(_)) => "restricted",
            Err(_) => "limit",
        };
        if matches!(new, Err(XmlError::RestrictedXml(_))) {
            // A processing instruction, comment or DTD is refused here as soon as it begins,
            // whatever follows (quick-xml first looks for its end).
            prop_assert!(old.is_err());
        } else if super::super::lexical::check_chars(&doc).is_err() {
            // The old checker refused forbidden characters before anything else; this one
            // finds problems in document order.
            prop_assert!(new.is_err(), "{:?}", doc);
        } else {
            prop_assert_eq!(kind(&new), old_kind, "{:?}: new {:?}, old {:?}", doc, new, old);
        }
    }
}
