//! The server-stream splitter on arbitrary bytes cut into arbitrary reads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xmpp_ws_gateway::xml::fuzz::server_stream(data));
