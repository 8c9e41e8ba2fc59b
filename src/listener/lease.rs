//! How long an HTTP/1.1 connection of the public listener may live before its upgrade, and
//! what a BOSH long poll may change about it.
//!
//! A connection has `limits.handshake_timeout_secs` from its accept to upgrade to a WebSocket.
//! A BOSH request ([`crate::bosh`]) never upgrades: it is held up to the session's `wait`, and
//! its client sends the next one on the same connection. A request a live BOSH session takes
//! therefore extends the connection's deadline ([`ConnectionLease::hold_until`]) and gives back
//! the connection's place among the pending ones while the session has it (the session's own
//! limits count it then: at most `requests` per session). Once answered, the connection is
//! pending again ([`ConnectionLease::release`]): it needs a place within the pending caps and has
//! the handshake timeout for its next request, so a client cannot keep connections it no longer
//! uses beyond `limits.max_pending_connections_per_address`. When draining starts, such a
//! connection is not cut at once: it gets a short grace to deliver the `system-shutdown` its
//! session answers with. Nothing here knows BOSH.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::connection::Pending;
use crate::control::Control;
use crate::session::Gateway;

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
}

impl std::fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLease").finish_non_exhaustive()
    }
}

impl ConnectionLease {
    /// A lease until `deadline` (the handshake timeout), holding the connection's `pending` place.
    pub(crate) fn new(deadline: Instant, pending: Option<Pending>) -> Self {
        ConnectionLease(Arc::new(Mutex::new(LeaseState { deadline, long_poll: false, held: false, _pending: pending })))
    }

    fn state(&self) -> MutexGuard<'_, LeaseState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A BOSH session holds a request on this connection until at most `at`: the connection
    /// lives until then at least, and stops counting as pending until [`Self::release`].
    pub(crate) fn hold_until(&self, at: Instant) {
        let mut state = self.state();
        state.deadline = state.deadline.max(at);
        state.long_poll = true;
        state.held = true;
        state._pending = None;
    }

    /// The session answered the request it held: the connection from `peer` has the handshake
    /// timeout at most for its next request, and is pending again if the pending caps have room
    /// for it. `false` when they have none: the connection must close after this answer. `true`
    /// when no request was held.
    pub(crate) fn release(&self, control: &Control, gateway: &Gateway, peer: std::net::IpAddr) -> bool {
        let mut state = self.state();
        if !state.held {
            return true;
        }
        state.held = false;
        state.deadline = state.deadline.min(Instant::now() + gateway.config.limits.handshake_timeout);
        match Pending::admit(control, gateway, peer) {
            Ok(pending) => {
                state._pending = Some(pending);
                true
            }
            Err(_) => false,
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
