//! Microbenchmark of the per-stanza XML work of the echo workload (docs/PERFORMANCE.md): the
//! client message validator (`classify`) on the load generator's chat stanza, and the splitter on
//! the same stanza echoed by the server (checking, namespace completion, classification), fed in
//! 4 KiB reads. Prints one JSON object per case with the median nanoseconds per stanza. Run on
//! purpose, never as a test: `cargo bench --bench stanza`.
//!
//! For instruction counts, `scripts/bench.sh` runs it under `valgrind --tool=callgrind` with
//! `STANZA_BENCH_CASE=classify` or `splitter` and two values of `STANZA_BENCH_ITERS`: nothing
//! outside the measured loops grows with the number of stanzas (the same 100 stanzas are used
//! over and over), so the difference of the two totals over the difference of stanzas is the
//! cost of one stanza. With `STANZA_BENCH_FLOOD` set, the splitter case splits `<a/>` instead of
//! the chat stanza: the fixed cost of one server element, which is what a flood of tiny
//! elements costs (tests/hostile_cpu.rs). With `STANZA_BENCH_XMLNS` set, both stanzas declare
//! `xmlns='jabber:client'`, as most browser clients write them.

use std::hint::black_box;
use std::time::Instant;

use xmpp_ws_gateway::xml::client::{classify, ClientFrame, ClientLimits};
use xmpp_ws_gateway::xml::splitter::{ServerEvent, SplitterLimits, StreamSplitter};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='plain.example' id='bench' version='1.0' xml:lang='en'>";

/// The load generator's echo stanza (64-byte body, its default). With `STANZA_BENCH_XMLNS` set,
/// the stanza declares `xmlns='jabber:client'`, as Strophe.js and Converse write every stanza.
fn client_stanza(n: usize) -> String {
    let xmlns = if std::env::var_os("STANZA_BENCH_XMLNS").is_some() { " xmlns='jabber:client'" } else { "" };
    format!(
        "<message{xmlns} to='echo@plain.example/bench' id='m{n}' type='chat'><body>{}</body></message>",
        "x".repeat(64)
    )
}

/// The same stanza as the fake upstream echoes it (`to` turned into `from`).
fn server_stanza(n: usize) -> String {
    client_stanza(n).replacen(" to=", " from=", 1)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let iters: usize = std::env::var("STANZA_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let case = std::env::var("STANZA_BENCH_CASE").unwrap_or_default();
    let rounds = if iters >= 100_000 { 9 } else { 1 };
    if case.is_empty() || case == "classify" {
        bench_classify(iters, rounds);
    }
    if case.is_empty() || case == "splitter" {
        bench_splitter(iters, rounds);
    }
}

fn bench_classify(iters: usize, rounds: usize) {
    let limits = ClientLimits::default();
    let messages: Vec<String> = (0..100).map(client_stanza).collect();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..iters {
            match classify(black_box(&messages[i % messages.len()]), &limits) {
                Ok(frame @ ClientFrame::Element { .. }) => {
                    black_box(frame);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        times.push(started.elapsed().as_nanos() as f64 / iters as f64);
    }
    println!(
        "{{\"bench\":\"stanza\",\"case\":\"classify\",\"stanzas\":{iters},\"ns_per_stanza\":{:.1}}}",
        median(times)
    );
}

fn bench_splitter(iters: usize, rounds: usize) {
    // 100 stanzas, fed over and over in 4 KiB reads (as the gateway's upstream reads): one read
    // in a hundred or so ends within a stanza, as with a real stream.
    let flood = std::env::var("STANZA_BENCH_FLOOD").is_ok();
    let block: Vec<u8> =
        (0..100).flat_map(|n| if flood { "<a/>".into() } else { server_stanza(n) }.into_bytes()).collect();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut splitter = StreamSplitter::new(SplitterLimits::default());
        splitter.feed(HEADER.as_bytes());
        assert!(matches!(splitter.next_event(), Ok(Some(ServerEvent::Header(_)))));
        let started = Instant::now();
        let mut elements = 0;
        let mut chunks = block.chunks(4096).cycle();
        while elements < iters {
            splitter.feed(chunks.next().expect("cycled"));
            while let Some(event) = splitter.next_event().expect("well-formed") {
                black_box(&event);
                elements += 1;
            }
        }
        times.push(started.elapsed().as_nanos() as f64 / elements as f64);
    }
    println!(
        "{{\"bench\":\"stanza\",\"case\":\"splitter\",\"stanzas\":{iters},\"ns_per_stanza\":{:.1}}}",
        median(times)
    );
}
