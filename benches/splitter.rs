//! Microbenchmark of the server-stream splitter: one 256 KiB top-level element fed in one read,
//! in 1-byte reads and in random chunks (1..=4096 bytes, fixed seed). Prints one JSON object per
//! mode with the median nanoseconds per byte over several repetitions, and the ratio of each mode
//! to the single read (target: 1-byte reads ≤ 4×, so no quadratic path).
//!
//! Run on purpose, never as a test: `cargo bench --bench splitter`. `SPLITTER_MODE=1-byte`
//! (or another mode's name) runs that mode only, once after the warm-up: for an instruction
//! profile of one mode (`valgrind --tool=callgrind target/release/deps/splitter-*`).

use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use xmpp_ws_gateway::xml::splitter::{ServerEvent, SplitterLimits, StreamSplitter};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='bench' version='1.0' xml:lang='en'>";
const ELEMENT_BYTES: usize = 256 * 1024;

/// A message of exactly `ELEMENT_BYTES` bytes: many nested children with attributes, text and
/// entity references, like a large MAM result or vCard.
fn big_element() -> Vec<u8> {
    let start = "<message to='juliet@example.com/balcony' from='romeo@example.com/orchard' id='big' type='chat'>";
    let end = "</message>";
    let item = "<item jid='nurse@example.com' name='Nurse &amp; co'><group>Friends</group><note xml:lang='en'>O Romeo, Romeo! wherefore art thou Romeo?</note></item>";
    let mut element = String::with_capacity(ELEMENT_BYTES);
    element.push_str(start);
    while element.len() + item.len() + end.len() <= ELEMENT_BYTES {
        element.push_str(item);
    }
    let padding = ELEMENT_BYTES - element.len() - end.len() - "<body></body>".len();
    element.push_str("<body>");
    element.push_str(&"x".repeat(padding));
    element.push_str("</body>");
    element.push_str(end);
    assert_eq!(element.len(), ELEMENT_BYTES);
    element.into_bytes()
}

fn limits() -> SplitterLimits {
    SplitterLimits { max_element_bytes: 4 * ELEMENT_BYTES, ..SplitterLimits::default() }
}

/// Feeds `element` in the given chunk sizes to a splitter past the header; returns the time spent
/// feeding and draining, in nanoseconds.
fn run_once(element: &[u8], chunks: &[usize]) -> f64 {
    let mut splitter = StreamSplitter::new(limits());
    splitter.feed(HEADER.as_bytes());
    match splitter.next_event() {
        Ok(Some(ServerEvent::Header(_))) => {}
        other => panic!("expected the stream header, got {other:?}"),
    }
    let started = Instant::now();
    let mut offset = 0;
    let mut elements = 0;
    for &size in chunks {
        splitter.feed(&element[offset..offset + size]);
        offset += size;
        while let Some(event) = splitter.next_event().expect("the element is well-formed") {
            black_box(&event);
            elements += 1;
        }
    }
    let elapsed = started.elapsed().as_nanos() as f64;
    assert_eq!(offset, element.len());
    assert_eq!(elements, 1, "exactly one element comes out");
    elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let element = big_element();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7395);
    let mut random = Vec::new();
    let mut left = element.len();
    while left > 0 {
        let size = rng.random_range(1..=4096).min(left);
        random.push(size);
        left -= size;
    }
    let modes: [(&str, Vec<usize>, usize); 3] =
        [("one-read", vec![element.len()], 31), ("1-byte", vec![1; element.len()], 7), ("random-1..4096", random, 15)];
    let only = std::env::var("SPLITTER_MODE").ok();
    let mut one_read = 0.0;
    for (name, chunks, repetitions) in modes {
        let repetitions = match only.as_deref() {
            None => repetitions,
            Some(only) if only == name => 1,
            Some(_) => continue,
        };
        let _warm_up = run_once(&element, &chunks);
        let times: Vec<f64> = (0..repetitions).map(|_| run_once(&element, &chunks)).collect();
        let ns_per_byte = median(times) / element.len() as f64;
        if name == "one-read" {
            one_read = ns_per_byte;
        }
        println!(
            "{{\"bench\":\"splitter\",\"mode\":\"{name}\",\"element_bytes\":{},\"reads\":{},\"repetitions\":{repetitions},\"ns_per_byte\":{ns_per_byte:.3},\"ratio_to_one_read\":{:.2}}}",
            element.len(),
            chunks.len(),
            ns_per_byte / one_read
        );
    }
}
