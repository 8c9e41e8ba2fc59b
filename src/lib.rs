//! xmpp-ws-gateway: an RFC 7395 WebSocket front for RFC 6120 TCP XMPP servers.
//!
//! Module map:
//! - [`xml`]: the pure XML core (client message validation, server stream splitting, framing
//!   translation). No I/O.
//! - [`session`]: one client session: [`session::core`], the state machine with no I/O that
//!   asks [`xml`] what bytes mean and ends every session from one table, and the async loop
//!   that moves bytes between the WebSocket, the upstream connection and that core.
//! - [`upstream`]: finding, reaching and securing the server (DNS, SRV, address guard, Happy
//!   Eyeballs, TCP, TLS); it does not speak XMPP.
//! - [`server`]: the HTTP/WebSocket edge (subprotocol, Origin, limits, upgrade, host-meta);
//!   [`listener`] its accept loops, TLS handshakes, HTTP framing and what a connection may
//!   cost before its upgrade (descriptors, time, header bytes); [`client_addr`] the client
//!   behind a proxy.
//! - [`control`]: drain signal, connection and session tracking and limits, reloadable state;
//!   [`admin`] the metrics and health endpoints.
//! - [`config`], [`domain`], [`metrics`]: settings, domain normalisation, Prometheus metrics.
//! - [`run`]: wiring used by the binary and by tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod bosh;
pub mod client_addr;
pub mod config;
pub mod control;
pub mod domain;
pub mod drain;
pub mod listener;
pub mod metrics;
pub mod run;
pub mod server;
pub mod session;
pub mod upstream;
pub mod xml;
