//! xmpp-ws-gateway: an RFC 7395 WebSocket front for RFC 6120 TCP XMPP servers.
#![forbid(unsafe_code)]

pub mod xml;
