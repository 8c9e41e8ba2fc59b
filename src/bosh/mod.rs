//! BOSH (XEP-0124 + XEP-0206) as a second front door on the public listener: an HTTP endpoint
//! (`[bosh] path`, default `/http-bind`) where each session runs the same shell and session
//! core as a WebSocket session, with a BOSH client side ([`client::BoshClient`]) instead of a
//! WebSocket.
//!
//! - `http`: the endpoint: CORS and the Origin check, bounded body reading, session creation
//!   (the session limits and permits of the WebSocket side), dispatch of a request to its
//!   session by `sid`.
//! - [`Registry`]: the live sessions by `sid` (128 random bits from the OS), one task each.
//! - `exchange`: the pure rid/hold/wait bookkeeping; `client`: the [`crate::session`]
//!   client side over it.
//!
//! The wire format is [`crate::xml::bosh`]'s; every XMPP decision is the session core's. The
//! rules are docs/PROTOCOL.md's BOSH-1… section.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

mod client;
mod exchange;
mod http;
#[cfg(test)]
mod tests;

pub use http::endpoint;

use client::Incoming;

/// The highest BOSH version spoken (XEP-0124 1.11).
pub const VERSION: (u32, u32) = (1, 11);

/// How long a session that ended with no request held keeps its terminal answer for the
/// client's next request.
const LINGER: Duration = Duration::from_secs(10);

/// One live session, as the endpoint reaches it.
#[derive(Debug, Clone)]
struct Entry {
    requests: mpsc::Sender<Incoming>,
    /// The session's `wait`: how long a request may be held.
    wait: Duration,
    /// Connections that are the session's (`crate::listener::ConnectionPlace`), at most
    /// `connections`.
    connections_taken: Arc<AtomicUsize>,
    connections: usize,
}

/// The live BOSH sessions by `sid`. Bounded by the session limits: every entry holds a
/// session permit ([`crate::control::AddressLimiter`]).
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Entry>>,
    /// Requests handed to a live session so far.
    forwarded: AtomicU64,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, sid: &str) -> Option<Entry> {
        self.map().get(sid).cloned()
    }

    fn insert(&self, sid: String, entry: Entry) {
        self.map().insert(sid, entry);
    }

    fn remove(&self, sid: &str) {
        self.map().remove(sid);
    }

    /// How many requests have been handed to a live session (creation requests not counted).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    fn count_forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new session id: 128 bits from the operating system's random source, hex.
fn new_sid() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The version to answer a client that speaks `asked` (`major.minor`): the lower of it and ours.
fn version(asked: Option<&str>) -> String {
    let parse = |text: &str| {
        let (major, minor) = text.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    };
    let theirs = asked.and_then(parse).unwrap_or(VERSION);
    let (major, minor) = theirs.min(VERSION);
    format!("{major}.{minor}")
}
