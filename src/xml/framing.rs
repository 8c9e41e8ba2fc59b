//! Serialisation of the few XML documents the gateway writes itself.
//!
//! RFC 7395 framing towards the client (`<open/>` with the exact bytes of DECISIONS D13,
//! `<close/>`, `<stream:error>`), the RFC 6120 stream header towards the server (HDR-1..5), and the
//! features filter of D15. Pure functions of their arguments; attribute values are escaped here.

use super::client::OpenRequest;
use super::condition::StreamCondition;
use super::splitter::{ServerElement, StreamHeader};

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />`, byte for byte (D13: Strophe.js
/// compares this exact string).
pub const CLOSE: &str = r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" />"#;

/// The end of the upstream stream, written with the prefix the gateway declared.
pub const UPSTREAM_STREAM_END: &str = "</stream:stream>";

/// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
pub const STARTTLS_REQUEST: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// `<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>`, the answer to a client `<starttls/>` (TLS-7).
pub const STARTTLS_FAILURE: &str = r#"<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>"#;

/// The upstream stream header for a client `<open/>` (HDR-1..5): XML declaration, unclosed
/// `<stream:stream>` start tag with `xmlns='jabber:client'`, `xmlns:stream`, `to=domain`,
/// `version` and `xml:lang` copied from the client, `from` only when `include_from` (never before
/// TLS, HDR-4), never `id` (HDR-3).
pub fn upstream_header(open: &OpenRequest, domain: &str, include_from: bool) -> String {
    let _ = (open, domain, include_from);
    unimplemented!("xml core in progress")
}

/// The `<open/>` sent to the client for a server header (FR-6, D13): `from`, `id`, `to` (only if
/// the server sent one), `version`, `xml:lang`, in the framing namespace, starting with `<open `.
/// Missing `id`/`xml:lang`/`version` are filled from `fallback_id`, `fallback_lang` and `"1.0"` (HDR-6).
pub fn client_open(header: &StreamHeader, fallback_id: &str, fallback_lang: &str) -> String {
    let _ = (header, fallback_id, fallback_lang);
    unimplemented!("xml core in progress")
}

/// The `<open/>` the gateway makes itself when it must answer with an error before (or without)
/// any server header (ERR-2): `from` is the domain or empty (RFC 6120 §4.9.1.3).
pub fn gateway_open(from: &str, id: &str, lang: &str) -> String {
    let _ = (from, id, lang);
    unimplemented!("xml core in progress")
}

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="..." />` (RFC 7395 §3.6.1).
pub fn close_see_other_uri(uri: &str) -> String {
    let _ = uri;
    unimplemented!("xml core in progress")
}

/// A gateway-made `<stream:error>` for the client, with `xmlns:stream` declared and an optional
/// `<text>` (e.g. the D6 failure class).
pub fn client_stream_error(condition: StreamCondition, text: Option<&str>) -> String {
    let _ = (condition, text);
    unimplemented!("xml core in progress")
}

/// A `<stream:error>` written into the upstream stream (the `stream` prefix is declared on the
/// gateway's header, so none is added).
pub fn upstream_stream_error(condition: StreamCondition) -> String {
    let _ = condition;
    unimplemented!("xml core in progress")
}

/// The features shown to the client (D15): the server's post-TLS features minus
/// `<starttls/>` (TLS namespace) and `<compression/>` (XEP-0138); everything else unchanged.
pub fn client_features(features: &ServerElement) -> String {
    let _ = features;
    unimplemented!("xml core in progress")
}
