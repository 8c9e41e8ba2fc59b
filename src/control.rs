//! The process-wide control plane: the current (reloadable) gateway state, the drain signal,
//! the trackers of live connection and session tasks, and the limits on connections that have
//! not upgraded yet and on sessions.
//!
//! Built once by [`crate::run`] and shared by the listeners and sessions. It holds no XML and no
//! sockets; it only decides whether a new connection or session may start and tells live ones to
//! stop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::task::TaskTracker;

use crate::drain::Drain;
use crate::listener::descriptors::DescriptorPools;
use crate::metrics::Metrics;
use crate::session::Gateway;

/// Shared by every listener and session for the life of the process.
#[derive(Debug)]
pub struct Control {
    current: RwLock<Arc<Gateway>>,
    /// Fired once on SIGTERM/SIGINT: stop accepting, end sessions.
    pub drain: Drain,
    /// Every session task, so shutdown can wait for them (axum does not track upgraded sockets).
    pub sessions: TaskTracker,
    /// Every public connection task until its upgrade (TLS handshake and HTTP included).
    pub connections: TaskTracker,
    /// Session counts for `limits.max_sessions` and `limits.max_sessions_per_address`.
    pub limiter: AddressLimiter,
    /// Counts of connections not yet upgraded, for `limits.max_pending_connections` and
    /// `limits.max_pending_connections_per_address`.
    pub pending: AddressLimiter,
    /// The live BOSH sessions (they outlive a reload, like WebSocket sessions).
    pub bosh: crate::bosh::Registry,
    /// The descriptor budget: slots for connections and sessions, descriptors lent to connects.
    pub descriptors: DescriptorPools,
}

impl Control {
    /// A control plane serving `gateway` within the descriptor budget `descriptors`.
    pub fn new(gateway: Arc<Gateway>, descriptors: DescriptorPools) -> Control {
        Control {
            current: RwLock::new(gateway),
            drain: Drain::new(),
            sessions: TaskTracker::new(),
            connections: TaskTracker::new(),
            limiter: AddressLimiter::default(),
            pending: AddressLimiter::default(),
            bosh: crate::bosh::Registry::default(),
            descriptors,
        }
    }

    /// The state new sessions use; a session keeps the snapshot it started with.
    pub fn current(&self) -> Arc<Gateway> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the state for new sessions (SIGHUP reload); live sessions are untouched.
    pub fn replace(&self, gateway: Arc<Gateway>) {
        match self.current.write() {
            Ok(mut guard) => *guard = gateway,
            Err(poisoned) => *poisoned.into_inner() = gateway,
        }
    }

    /// The metrics (shared by every snapshot).
    pub fn metrics(&self) -> Metrics {
        self.current().metrics.clone()
    }

    /// True once draining has started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }
}

/// Which limit refused a session or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The total (`limits.max_sessions`, `limits.max_pending_connections`).
    Total,
    /// The per-address limit (`limits.max_sessions_per_address`,
    /// `limits.max_pending_connections_per_address`).
    PerAddress,
}

/// Counts holders (sessions, or connections that have not upgraded) in total and per client
/// address.
///
/// IPv6 clients are counted per /64, since one host usually owns a whole /64.
#[derive(Debug, Clone, Default)]
pub struct AddressLimiter {
    state: Arc<Mutex<LimiterState>>,
}

#[derive(Debug, Default)]
struct LimiterState {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AddressLimiter {
    /// Takes a slot for `address` if both limits allow it.
    pub fn try_acquire(
        &self,
        address: IpAddr,
        max_total: usize,
        max_per_address: usize,
    ) -> Result<AddressPermit, LimitExceeded> {
        let key = address_key(address);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.total >= max_total {
            return Err(LimitExceeded::Total);
        }
        let count = state.per_address.entry(key).or_insert(0);
        if *count >= max_per_address {
            return Err(LimitExceeded::PerAddress);
        }
        *count += 1;
        state.total += 1;
        Ok(AddressPermit { limiter: self.clone(), key })
    }

    /// Holders of a permit now.
    pub fn total(&self) -> usize {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total
    }
}

/// A slot in an [`AddressLimiter`], released when dropped.
#[derive(Debug)]
pub struct AddressPermit {
    limiter: AddressLimiter,
    key: IpAddr,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.per_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_address_and_releases_on_drop() {
        let limiter = AddressLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limiter.try_acquire(a, 3, 2).unwrap();
        let second = limiter.try_acquire(a, 3, 2).unwrap();
        assert_eq!(limiter.try_acquire(a, 3, 2).unwrap_err(), LimitExceeded::PerAddress);
        let third = limiter.try_acquire(b, 3, 2).unwrap();
        assert_eq!(limiter.try_acquire(b, 3, 2).unwrap_err(), LimitExceeded::Total);
        drop(first);
        assert_eq!(limiter.total(), 2);
        let _again = limiter.try_acquire(a, 3, 2).unwrap();
        drop((second, third));
        assert_eq!(limiter.total(), 1);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let limiter = AddressLimiter::default();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _p = limiter.try_acquire(one, 10, 1).unwrap();
        assert_eq!(limiter.try_acquire(same_64, 10, 1).unwrap_err(), LimitExceeded::PerAddress);
        assert!(limiter.try_acquire(other_64, 10, 1).is_ok());
    }
}
