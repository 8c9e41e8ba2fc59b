//! The pure XML core of the gateway: bytes in, elements or errors out.
//!
//! Everything the gateway knows about XML lives here: validating and classifying one client
//! WebSocket message ([`client`]), splitting the server's TCP byte stream into standalone
//! top-level elements ([`splitter`]), and translating between RFC 7395 framing and RFC 6120
//! stream headers ([`framing`]); every refusal is one [`error::XmlError`]. This module must not import tokio, perform I/O, read clocks or
//! log: the async shell calls it and decides what to do with the result.

pub mod bosh;
mod checker;
pub mod client;
pub mod condition;
pub mod error;
pub mod framing;
#[doc(hidden)]
pub mod fuzz;
mod inline_vec;
mod lexical;
#[cfg(test)]
mod old_scope;
mod picked;
mod scope;
pub mod see_other_host;
pub mod splitter;
#[cfg(test)]
mod wf;

/// Default cap on attributes per start tag, namespace declarations included (config
/// `limits.max_attributes_per_element`). Stanzas rarely carry more than a dozen.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 64;
/// Default cap on namespace declarations per start tag (config
/// `limits.max_namespace_declarations_per_element`). Real elements declare a handful at most.
pub const DEFAULT_MAX_NAMESPACE_DECLARATIONS: usize = 32;

/// `urn:ietf:params:xml:ns:xmpp-framing`, the RFC 7395 framing namespace.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// `http://etherx.jabber.org/streams`, the RFC 6120 stream namespace.
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// `jabber:client`, the content namespace of client streams.
pub const NS_CLIENT: &str = "jabber:client";
/// `urn:ietf:params:xml:ns:xmpp-tls`, STARTTLS.
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl`, RFC 6120 SASL.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:xmpp:sasl:2`, XEP-0388 SASL2.
pub const NS_SASL2: &str = "urn:xmpp:sasl:2";
/// `urn:ietf:params:xml:ns:xmpp-streams`, stream error conditions.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `http://jabber.org/features/compress`, the XEP-0138 stream feature (obsolete).
pub const NS_COMPRESS_FEATURE: &str = "http://jabber.org/features/compress";
/// `http://jabber.org/protocol/compress`, the XEP-0138 negotiation namespace (obsolete).
pub const NS_COMPRESS_PROTOCOL: &str = "http://jabber.org/protocol/compress";
