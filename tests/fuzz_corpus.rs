//! Runs the fuzz targets' entry points over the committed corpus (`fuzz/corpus/<target>/`), so
//! the targets under `fuzz/` cannot rot and every seed keeps passing the invariants in stable CI.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use xmpp_ws_gateway::xml::fuzz;

fn run_corpus(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut count = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        entry(&data);
        // Every prefix too: a corpus file cut anywhere is a stream cut by a read.
        for end in 0..data.len().min(512) {
            entry(&data[..end]);
        }
        count += 1;
    }
    assert!(count >= 10, "corpus {} has only {count} files", dir.display());
}

#[test]
fn client_message_corpus() {
    run_corpus("client_message", fuzz::client_message);
}

#[test]
fn server_stream_corpus() {
    run_corpus("server_stream", fuzz::server_stream);
}
