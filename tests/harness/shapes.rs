//! Shapes of XML that are as expensive to check as we could make them, and ordinary ones of
//! the same size to compare them with (issue 10, attack 2), for the CPU tests of both front
//! doors (tests/hostile_cpu.rs, tests/bosh_hostile.rs).

/// A worst shape may cost at most this many times the ordinary stanza of the same size. Before
/// the fix (issue 10) the worst shapes cost 50 to 2000 times; after it, every shape is linear,
/// and the dearest (tens of thousands of prefixed attributes with caps lifted: three hash
/// operations an attribute) cost 8 to 11 times in a debug build on a quiet machine and up to
/// 15.8 in one CI run. Its ratio rises whenever the scan of ordinary bytes gets cheaper (it went
/// from about 8 to about 10.5 when the checker's names and text were read eight bytes at a
/// time, docs/PERFORMANCE.md), so the bound sits at 20: a margin over the linear shapes, and
/// still 2.5 times under the smallest quadratic blow-up this exists to catch.
pub const MAX_RATIO: f64 = 20.0;

/// A short attribute or prefix name, unique for each `i` (`Za`, `Zb`, ... `ZaB` ...).
pub fn name(i: usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut name = String::from("Z");
    let mut n = i;
    loop {
        name.push(LETTERS[n % LETTERS.len()] as char);
        n /= LETTERS.len();
        if n == 0 {
            return name;
        }
    }
}

/// `head`, then `unit(0)`, `unit(1)`, ... while they fit in `size` with `tail`, then `tail`.
pub fn fill(head: &str, unit: impl Fn(usize) -> String, tail: &str, size: usize) -> String {
    let mut out = String::with_capacity(size);
    out.push_str(head);
    for i in 0.. {
        let piece = unit(i);
        if out.len() + piece.len() + tail.len() > size {
            break;
        }
        out.push_str(&piece);
    }
    out.push_str(tail);
    out
}

/// The ordinary reference: a roster result (`<iq>` of `<item>`s with three attributes and a
/// group each), the large stanza every server sends.
pub fn roster(size: usize) -> String {
    fill(
        "<iq xmlns='jabber:client' type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='v42'>",
        |i| {
            format!("<item jid='contact{i}@example.net' name='Contact {i}' subscription='both'><group>Friends</group></item>")
        },
        "</query></iq>",
        size,
    )
}

/// Another ordinary stanza: a message with one long body (cheap: mostly a character scan).
pub fn long_message(size: usize) -> String {
    fill(
        "<message xmlns='jabber:client' to='juliet@example.com' type='chat'><body>",
        |_| "Art thou not Romeo? ".into(),
        "</body></message>",
        size,
    )
}

/// The worst shapes, by name. `max_depth` bounds the nesting shapes.
pub fn worst(size: usize, max_depth: usize) -> Vec<(&'static str, String)> {
    let prefixes: String = (0..3000).map(|i| format!(" xmlns:{}='urn:x:{i}'", name(i))).collect();
    // Nesting with 16 declarations per level (within the per-element cap), names at the
    // bottom resolving to the outermost ones: a backwards scan per lookup pays for all.
    let levels = (max_depth - 2).min(500);
    let nested_head: String = (0..levels)
        .map(|level| {
            let decls: String = (0..16).map(|k| format!(" xmlns:{}='urn:n'", name(level * 16 + k))).collect();
            format!("<a{decls}>")
        })
        .collect();
    let nested_tail = "</a>".repeat(levels);
    let long = "n".repeat(200);
    vec![
        // The shape: one element with ~40 000 unique attributes.
        ("one element, 40k attributes", fill("<x xmlns='jabber:client'", |i| format!(" {}=''", name(i)), "/>", size)),
        (
            "<open/> with 40k attributes",
            fill(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'",
                |i| format!(" {}=''", name(i)),
                "/>",
                size,
            ),
        ),
        (
            "3000 declarations, 25k prefixed attributes",
            fill(
                &format!("<x xmlns='jabber:client'{prefixes}"),
                |i| format!(" {}:{}=''", name(i % 3000), name(i / 3000)),
                "/>",
                size,
            ),
        ),
        (
            "elements with 64 attributes each",
            fill(
                "<x xmlns='jabber:client'>",
                |_| format!("<y{}/>", (0..64).map(|k| format!(" {}=''", name(k))).collect::<String>()),
                "</x>",
                size,
            ),
        ),
        (
            "elements with 32 declarations and 32 prefixed attributes",
            fill(
                "<x xmlns='jabber:client'>",
                |i| {
                    let decls: String = (0..32).map(|k| format!(" xmlns:{}='urn:{i}:{k}'", name(k))).collect();
                    let attrs: String = (0..32).map(|k| format!(" {}:a=''", name(k))).collect();
                    format!("<y{decls}{attrs}/>")
                },
                "</x>",
                size,
            ),
        ),
        (
            "nested declarations, prefixed names at the bottom",
            fill(
                &format!("<x xmlns='jabber:client'>{nested_head}"),
                |i| format!("<{0}:b {1}:c='' {2}:d=''/>", name(i % 16), name(16 + i % 16), name(32 + i % 16)),
                &format!("{nested_tail}</x>"),
                size,
            ),
        ),
        (
            "nested declarations, unprefixed elements at the bottom",
            fill(
                &format!("<x xmlns='jabber:client'>{nested_head}"),
                |_| "<b/>".into(),
                &format!("{nested_tail}</x>"),
                size,
            ),
        ),
        (
            "elements with 64 long attribute names",
            fill(
                "<x xmlns='jabber:client'>",
                |_| format!("<y{}/>", (0..64).map(|k| format!(" {long}{k}=''")).collect::<String>()),
                "</x>",
                size,
            ),
        ),
        (
            "references in text and attributes",
            fill("<x xmlns='jabber:client'>", |_| "<y a='&amp;&#x1F600;&lt;'>&amp;&#233;&gt;</y>".into(), "</x>", size),
        ),
        ("tiny elements", fill("<x xmlns='jabber:client'>", |_| "<y/>".into(), "</x>", size)),
        (
            "deep nesting",
            format!(
                "<x xmlns='jabber:client'>{}{}{}</x>",
                "<a>".repeat(max_depth - 1),
                "t".repeat(1000),
                "</a>".repeat(max_depth - 1)
            ),
        ),
    ]
}

/// A stream header declaring `count` prefixes besides the usual two.
pub fn header_with_declarations(count: usize) -> String {
    let decls: String =
        (0..count).map(|i| format!(" xmlns:{}='urn:xmpp:a-long-enough-namespace:{i}'", name(i))).collect();
    format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'{decls} id='h' from='example.com' version='1.0'>")
}
