//! How long an HTTP/1.1 connection of the public listener may live before its upgrade, and
//! what a BOSH long poll may change about it.
//!
//! A connection has `limits.handshake_timeout_secs` from its accept to upgrade to a WebSocket.
//! A BOSH request ([`crate::bosh`]) never upgrades: it is held up to the session's `wait`, and
//! its client sends the next one on the same connection. A request a live BOSH session takes
//! therefore extends the connection's deadline ([`ConnectionLease::hold_until`]). The first such
//! request also makes the connection one of the session's, if the session has a place left for
//! it ([`ConnectionPlace`]: `requests` + 1 per session, as browsers use two): from then on it
//! counts against the session's limits instead of the pending-connection caps, so clients
//! behind one address are not limited by `limits.max_pending_connections_per_address`, and a
//! client cannot keep more connections than that cap plus its sessions' places. Once answered
//! ([`ConnectionLease::release`]) a connection has the handshake timeout for its next request.
//! When draining starts, such a connection is not cut at once: it gets a short grace to deliver
//! the `system-shutdown` its session answers with. Nothing here knows BOSH.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::connection::Pending;

/// A connection's deadline and pending-connection place, shared with its requests (as a request
/// extension).
#[derive(Clone)]
pub(crate) struct ConnectionLease(Arc<Mutex<LeaseState>>);

struct LeaseState {
    deadline: Instant,
    /// A BOSH session uses the connection.
    long_poll: bool,
    /// A BOSH session has a request of the connection now.
    held: bool,
    /// Held only to be given back (dropped) when a BOSH session takes the connection over.
    _pending: Option<Pending>,
    /// The BOSH session whose connection this is (one of its few places), once one took it.
    _owner: Option<ConnectionPlace>,
}

/// One of the few connections a BOSH session may keep out of the pending-connection caps
/// (`requests` + 1: one per request it may hold, and one to send on); given back when the
/// connection closes.
#[derive(Debug)]
pub(crate) struct ConnectionPlace(Arc<AtomicUsize>);

impl ConnectionPlace {
    /// A place among `taken`'s, if fewer than `most` are taken.
    pub(crate) fn take(taken: &Arc<AtomicUsize>, most: usize) -> Option<ConnectionPlace> {
        taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| (now < most).then_some(now + 1))
            .ok()
            .map(|_| ConnectionPlace(Arc::clone(taken)))
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLease").finish_non_exhaustive()
    }
}

impl ConnectionLease {
    /// A lease until `deadline` (the handshake timeout), holding the connection's `pending` place.
    pub(crate) fn new(deadline: Instant, pending: Option<Pending>) -> Self {
        ConnectionLease(Arc::new(Mutex::new(LeaseState {
            deadline,
            long_poll: false,
            held: false,
            _pending: pending,
            _owner: None,
        })))
    }

    fn state(&self) -> MutexGuard<'_, LeaseState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A BOSH session holds a request on this connection until at most `at`: the connection
    /// lives until then at least. With `place` (one of the session's connection places, offered
    /// when the connection has none yet), it stops counting as pending for good: it is the
    /// session's. Without one, it keeps its pending place, held or not.
    pub(crate) fn hold_until(&self, at: Instant, place: impl FnOnce() -> Option<ConnectionPlace>) {
        let mut state = self.state();
        state.deadline = state.deadline.max(at);
        state.long_poll = true;
        state.held = true;
        if state._owner.is_none() {
            if let Some(place) = place() {
                state._owner = Some(place);
                state._pending = None;
            }
        }
    }

    /// The session answered the request it held: the connection has the handshake timeout at
    /// most for its next request.
    pub(crate) fn release(&self, handshake_timeout: std::time::Duration) {
        let mut state = self.state();
        if state.held {
            state.held = false;
            state.deadline = state.deadline.min(Instant::now() + handshake_timeout);
        }
    }

    /// When the connection is closed unless a request extends it.
    pub(crate) fn deadline(&self) -> Instant {
        self.state().deadline
    }

    /// Whether a BOSH session has used the connection.
    pub(crate) fn long_poll(&self) -> bool {
        self.state().long_poll
    }

    /// Sets the deadline to `at`, earlier or later (the drain's grace).
    pub(crate) fn cut_at(&self, at: Instant) {
        self.state().deadline = at;
    }
}
