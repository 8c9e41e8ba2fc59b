//! What checking XML can cost (issue 10, attack 2: quadratic work on attributes, before login).
//!
//! The worst shapes we can think of, each the size of the largest element the gateway accepts,
//! against an ordinary stanza of the same size (a roster result: the large stanza real servers
//! send), as ratios of CPU time. Measured twice: in-process on the pure XML core (this thread's
//! CPU time), with the default caps and with every cap lifted (so linearity does not hide behind
//! the caps), and against the built gateway binary on loopback (the process's CPU time around
//! each message), plus a logged-in bystander's round trip while eight attackers send the worst
//! shapes. Every figure is printed (`cargo test --test hostile_cpu -- --nocapture`).
//!
//! Linux only (reads /proc, and the thread CPU clock). The ratios are bounds on security, asserted with a wide margin:
//! before the fix the worst shapes cost hundreds to thousands of times an ordinary stanza.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use xmpp_ws_gateway::xml::client::{classify, ClientFrame, ClientLimits, ClientMessageError};
use xmpp_ws_gateway::xml::splitter::{ServerEvent, ServerStreamError, SplitterLimits, StreamSplitter};

/// The default `limits.max_element_bytes`; every shape is just under it.
const ELEMENT_BYTES: usize = 256 * 1024;
/// Shapes are built up to this size (the WebSocket frame and the header must fit too).
const SHAPE_BYTES: usize = ELEMENT_BYTES - 200;
/// A worst shape may cost at most this many times the ordinary stanza of the same size. Measured
/// after the fix: at most about 4 (element-dense markup); before it: 50 to 2000.
const MAX_RATIO: f64 = 12.0;
/// Repetitions per measurement (the minimum is kept: CPU time only grows with interference).
const REPS: usize = 5;
/// No single measurement loop runs longer than this (today's quadratic code would run minutes).
const BUDGET: Duration = Duration::from_secs(20);

/// Shapes of XML that are as expensive to check as we could make them, and ordinary ones.
mod shapes {
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
            (
                "one element, 40k attributes",
                fill("<x xmlns='jabber:client'", |i| format!(" {}=''", name(i)), "/>", size),
            ),
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
                fill(
                    "<x xmlns='jabber:client'>",
                    |_| "<y a='&amp;&#x1F600;&lt;'>&amp;&#233;&gt;</y>".into(),
                    "</x>",
                    size,
                ),
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
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID: exact, unlike /proc's counters,
/// which move only at scheduler ticks while a thread runs).
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(now.tv_sec).unwrap(), u32::try_from(now.tv_nsec).unwrap())
}

/// The least CPU time `work` took over [`REPS`] runs, stopping early past [`BUDGET`].
fn min_cpu(mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    for _ in 0..REPS {
        let before = thread_cpu();
        work();
        best = best.min(thread_cpu() - before);
        if started.elapsed() > BUDGET {
            break;
        }
    }
    best
}

fn unlimited_client() -> ClientLimits {
    ClientLimits { max_depth: 10_000, max_attributes: usize::MAX, max_namespace_declarations: usize::MAX }
}

fn unlimited_splitter() -> SplitterLimits {
    SplitterLimits { max_attributes: usize::MAX, max_namespace_declarations: usize::MAX, ..SplitterLimits::default() }
}

/// Prints one table of ratios and returns the shapes over [`MAX_RATIO`].
fn report(title: &str, reference: Duration, rows: &[(&str, Duration, String)]) -> Vec<String> {
    println!("\n{title}: ordinary roster stanza {:.2} ms", reference.as_secs_f64() * 1e3);
    let mut over = Vec::new();
    for (shape, cpu, outcome) in rows {
        let ratio = cpu.as_secs_f64() / reference.as_secs_f64();
        println!("  {shape:<58} {:>9.2} ms  ratio {ratio:>7.2}  {outcome}", cpu.as_secs_f64() * 1e3);
        if ratio > MAX_RATIO {
            over.push(format!("{shape}: {ratio:.1}"));
        }
    }
    over
}

fn classify_outcome(message: &str, limits: &ClientLimits) -> String {
    match classify(message, limits) {
        Ok(ClientFrame::Open(_)) => "accepted (<open/>)".into(),
        Ok(ClientFrame::Close) => "accepted (<close/>)".into(),
        Ok(ClientFrame::Element { .. }) => "accepted".into(),
        Err(error @ (ClientMessageError::TooManyAttributes | ClientMessageError::TooManyNamespaceDeclarations)) => {
            format!("refused: {}", error.reason_label())
        }
        Err(error) => panic!("{message:.80}... refused unexpectedly: {error}"),
    }
}

#[test]
fn checking_a_client_message_costs_a_bounded_multiple_of_an_ordinary_stanza() {
    let ordinary = shapes::roster(SHAPE_BYTES);
    let mut over = Vec::new();
    for (title, limits) in
        [("client, default caps", ClientLimits::default()), ("client, caps lifted", unlimited_client())]
    {
        let reference = min_cpu(|| assert!(classify(&ordinary, &limits).is_ok()));
        let message = shapes::long_message(SHAPE_BYTES);
        let mut rows = vec![(
            "(ordinary) message with a long body",
            min_cpu(|| assert!(classify(&message, &limits).is_ok())),
            String::new(),
        )];
        for (shape, message) in shapes::worst(SHAPE_BYTES, limits.max_depth) {
            assert!(message.len() <= SHAPE_BYTES, "{shape}: {}", message.len());
            let outcome = classify_outcome(&message, &limits);
            rows.push((shape, min_cpu(|| drop(std::hint::black_box(classify(&message, &limits)))), outcome));
        }
        over.extend(report(title, reference, &rows));
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times an ordinary stanza: {over:?}");
}

/// Splits `stream` (header included) as the session does, in 16 KiB reads; returns the
/// elements and the error, if any.
fn split(stream: &[u8], limits: SplitterLimits) -> (usize, Option<ServerStreamError>) {
    let mut splitter = StreamSplitter::new(limits);
    let mut elements = 0;
    for chunk in stream.chunks(16 * 1024) {
        splitter.feed(chunk);
        loop {
            match splitter.next_event() {
                Ok(Some(ServerEvent::Element(element))) => {
                    std::hint::black_box(&element);
                    elements += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return (elements, Some(error)),
            }
        }
    }
    (elements, None)
}

#[test]
fn splitting_a_server_stream_costs_a_bounded_multiple_of_ordinary_stanzas() {
    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='h' from='example.com' version='1.0'>";
    let mut over = Vec::new();
    for (title, limits) in
        [("server, default caps", SplitterLimits::default()), ("server, caps lifted", unlimited_splitter())]
    {
        let stream = |elements: &str| format!("{HEADER}{elements}").into_bytes();
        let ordinary = stream(&shapes::roster(SHAPE_BYTES));
        let reference = min_cpu(|| assert_eq!(split(&ordinary, limits), (1, None)));
        let mut rows = Vec::new();
        for (shape, element) in shapes::worst(SHAPE_BYTES, limits.max_depth) {
            if shape.starts_with("<open/>") {
                continue;
            }
            let input = stream(&element);
            let (elements, error) = split(&input, limits);
            let outcome = match error {
                None => format!("{elements} element(s) relayed"),
                Some(error) => format!("refused: {error}"),
            };
            rows.push((
                shape,
                min_cpu(|| {
                    std::hint::black_box(split(&input, limits));
                }),
                outcome,
            ));
        }
        // Stanza floods: the same bytes as many small top-level elements, after an ordinary
        // header and after a header with as many declarations as allowed (each element must
        // pay only for the declarations it uses).
        let declarations =
            if limits.max_namespace_declarations == usize::MAX { 150 } else { limits.max_namespace_declarations - 2 };
        let tiny = shapes::fill("", |_| "<a/>".into(), "", SHAPE_BYTES);
        let presences =
            shapes::fill("", |i| format!("<presence from='contact{i}@example.net/phone'/>"), "", SHAPE_BYTES);
        for (shape, header, elements) in [
            ("(ordinary) stanza flood: presences", HEADER.to_owned(), &presences),
            ("stanza flood: empty elements", HEADER.to_owned(), &tiny),
            (
                "stanza flood: empty elements, header with many declarations",
                shapes::header_with_declarations(declarations),
                &tiny,
            ),
        ] {
            let input = format!("{header}{elements}").into_bytes();
            let (count, error) = split(&input, limits);
            assert_eq!(error, None, "{shape}");
            rows.push((
                shape,
                min_cpu(|| {
                    std::hint::black_box(split(&input, limits));
                }),
                format!("{count} elements relayed"),
            ));
        }
        over.extend(report(title, reference, &rows));
    }
    assert!(over.is_empty(), "shapes over {MAX_RATIO} times ordinary stanzas: {over:?}");
}
