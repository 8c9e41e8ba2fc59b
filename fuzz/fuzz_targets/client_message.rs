//! The client-message validator (`xml::client::classify`) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xmpp_ws_gateway::xml::fuzz::client_message(data));
