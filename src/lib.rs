//! xmpp-ws-gateway: an RFC 7395 WebSocket front for RFC 6120 TCP XMPP servers.
//!
//! Module map:
//! - [`xml`]: the pure XML core (client message validation, server stream splitting, framing
//!   translation). No I/O.
//! - [`session`]: the per-client state machine that moves bytes between the WebSocket and the
//!   upstream stream and asks [`xml`] what they mean.
//! - [`upstream`]: finding, reaching and securing the server (TCP, STARTTLS/direct TLS).
//! - [`server`]: the HTTP/WebSocket edge (subprotocol negotiation, upgrade).
//! - [`config`], [`domain`], [`metrics`]: settings, domain normalisation, Prometheus metrics.
//! - [`run`]: wiring used by the binary and by tests.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod metrics;
pub mod run;
pub mod server;
pub mod session;
pub mod upstream;
pub mod xml;
