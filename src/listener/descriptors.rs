//! The descriptor budget: how many public connections the process can hold without running out
//! of file descriptors, so the admin listener (and everything else) always has some left.
//!
//! `RLIMIT_NOFILE` is read (and, by `main`, raised from its soft to its hard value) once at
//! start; the public listener then takes a slot per connection from a fixed pool and stops
//! accepting while none is free. Reading and setting the limit is all this module does.

/// Descriptors kept back from the public listener for everything else: the listeners, the admin
/// listener's connections, DNS sockets, the runtime's own, log output.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// Descriptors one public connection may need at worst: its own socket and, while its session
/// reaches the upstream, two Happy Eyeballs attempts and a DNS socket (two once relaying).
pub const DESCRIPTORS_PER_CONNECTION: u64 = 4;

/// Most public connections a descriptor limit allows: `(limit - RESERVED) / PER_CONNECTION`,
/// at least 1; unlimited (`None`) means as many as a semaphore can count.
pub fn public_connection_slots(limit: Option<u64>) -> usize {
    const MOST: usize = tokio::sync::Semaphore::MAX_PERMITS;
    match limit {
        None => MOST,
        Some(limit) => {
            let slots = limit.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION;
            usize::try_from(slots).unwrap_or(MOST).clamp(1, MOST)
        }
    }
}

/// The soft `RLIMIT_NOFILE` of the process now (`None`: unlimited, or unknown on this platform).
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// What [`raise_descriptor_limit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// The soft limit was below the hard one and now equals it.
    From {
        /// The soft limit before.
        was: u64,
        /// The soft limit now.
        now: Option<u64>,
    },
    /// Nothing to do: the soft limit already was the hard one.
    AlreadyAtMost(Option<u64>),
    /// The system refused (the soft limit stays as it was).
    Refused(u64),
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a process may always do that), so the
/// configured connection limits are not cut short by a low default such as 1024.
pub fn raise_descriptor_limit() -> Raised {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        match limit.current {
            Some(was) if limit.maximum.is_none_or(|hard| was < hard) => {
                let wanted = Rlimit { current: limit.maximum, maximum: limit.maximum };
                match setrlimit(Resource::Nofile, wanted) {
                    Ok(()) => Raised::From { was, now: getrlimit(Resource::Nofile).current },
                    Err(_) => Raised::Refused(was),
                }
            }
            current => Raised::AlreadyAtMost(current),
        }
    }
    #[cfg(not(unix))]
    {
        Raised::AlreadyAtMost(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_leave_the_reserve_and_count_four_descriptors_each() {
        assert_eq!(public_connection_slots(Some(65_536)), (65_536 - 128) / 4);
        assert_eq!(public_connection_slots(Some(256)), 32);
        assert_eq!(public_connection_slots(Some(100)), 1);
        assert_eq!(public_connection_slots(None), tokio::sync::Semaphore::MAX_PERMITS);
    }
}
