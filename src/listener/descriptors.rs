//! The descriptor budget: how many public connections and sessions the process can hold without
//! running out of file descriptors, so the admin listener (and everything else) always has some
//! left.
//!
//! `RLIMIT_NOFILE` is read (and, by `main`, raised from its soft to its hard value) once at
//! start and split into [`DescriptorPools`]: slots that connections and sessions hold for their
//! whole life, and descriptors lent for a moment to the sockets a session opens while it reaches
//! its server. Reading and setting the limit, sizing the pools and lending from them is all this
//! module does; who takes a slot when is the listener's and the handlers' business.

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Descriptors kept back from the public listener for everything else: the listeners, the admin
/// listener's connections, the resolver's own sockets, the runtime's own, log output.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// Descriptors one slot stands for: a public connection's socket and the upstream connection
/// of the session it carries. An HTTP/2 session and a BOSH session take a slot of their own
/// (for their upstream connection), so a slot never stands for more than two open sockets.
pub const DESCRIPTORS_PER_SLOT: u64 = 2;

/// The share of the descriptors (after the reserve) lent to connects: one eighth, at least
/// [`LENT_DESCRIPTORS_LEAST`] and at most [`LENT_DESCRIPTORS_MOST`].
const LENT_SHARE: u64 = 8;
/// The fewest descriptors lent to connects, so that a tiny limit still lets sessions connect.
pub const LENT_DESCRIPTORS_LEAST: u64 = 4;
/// The most descriptors lent to connects: enough for 256 sessions resolving at once (a lookup
/// asks two questions at once, each on its own socket), or 512 connection attempts.
pub const LENT_DESCRIPTORS_MOST: u64 = 512;

/// How a descriptor limit is shared out (see [`DescriptorPools`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// Slots of [`DESCRIPTORS_PER_SLOT`] descriptors for connections and sessions.
    pub slots: usize,
    /// Descriptors lent to the sockets a session opens while it connects: each DNS question
    /// and each Happy Eyeballs attempt borrows one until it is answered or the attempt ends.
    pub lent: usize,
}

impl DescriptorBudget {
    /// The budget of a descriptor limit (`None`: unlimited): the reserve first, then the lent
    /// share, then slots of two from the rest, at least one slot and [`LENT_DESCRIPTORS_LEAST`]
    /// lent descriptors however low the limit.
    pub fn of_limit(limit: Option<u64>) -> DescriptorBudget {
        const MOST: usize = Semaphore::MAX_PERMITS;
        let Some(limit) = limit else {
            return DescriptorBudget { slots: MOST, lent: LENT_DESCRIPTORS_MOST as usize };
        };
        let usable = limit.saturating_sub(RESERVED_DESCRIPTORS);
        let lent = (usable / LENT_SHARE).clamp(LENT_DESCRIPTORS_LEAST, LENT_DESCRIPTORS_MOST);
        let slots = usable.saturating_sub(lent) / DESCRIPTORS_PER_SLOT;
        DescriptorBudget {
            slots: usize::try_from(slots).unwrap_or(MOST).clamp(1, MOST),
            lent: usize::try_from(lent).unwrap_or(MOST),
        }
    }
}

/// The descriptor budget as semaphores, shared by every listener and session for the life of
/// the process (a reload does not change it).
#[derive(Debug, Clone)]
pub struct DescriptorPools {
    /// One permit per public connection (taken before its accept), HTTP/2 session and BOSH
    /// session, held until it ends.
    pub slots: Arc<Semaphore>,
    /// One permit per socket a connecting session has open beyond its slot: a DNS question or a
    /// connection attempt. Held only while that socket is.
    pub lent: Arc<Semaphore>,
    /// The sizes the pools started with.
    pub budget: DescriptorBudget,
}

/// Descriptors borrowed for the sockets of a connect ([`DescriptorPools::borrow`]); given
/// back when dropped.
#[derive(Debug)]
pub struct Borrowed {
    _permit: OwnedSemaphorePermit,
}

impl DescriptorPools {
    /// Pools sized by [`DescriptorBudget::of_limit`].
    pub fn new(budget: DescriptorBudget) -> DescriptorPools {
        DescriptorPools {
            slots: Arc::new(Semaphore::new(budget.slots)),
            lent: Arc::new(Semaphore::new(budget.lent)),
            budget,
        }
    }

    /// Borrows `count` descriptors (1 or 2) for sockets a connect opens: from the lent pool if
    /// it has them, else a free slot (two descriptors, unused while the gateway is below its
    /// connection limit), else whichever of the two frees first, waited for. So clients whose
    /// connects hang (a server that never answers) take slots, as connections do, before they
    /// make anyone wait; and the lent pool, which nothing else takes, keeps connects going when
    /// every slot is held.
    pub async fn borrow(&self, count: u32) -> Result<Borrowed, AcquireError> {
        let count = count.clamp(1, DESCRIPTORS_PER_SLOT as u32);
        if let Ok(permit) = self.lent.clone().try_acquire_many_owned(count) {
            return Ok(Borrowed { _permit: permit });
        }
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Borrowed { _permit: permit });
        }
        let permit = tokio::select! {
            permit = self.lent.clone().acquire_many_owned(count) => permit?,
            permit = self.slots.clone().acquire_owned() => permit?,
        };
        Ok(Borrowed { _permit: permit })
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
    use futures_util::FutureExt;

    #[test]
    fn the_reserve_comes_first_then_the_lent_share_then_slots_of_two() {
        let budget = DescriptorBudget::of_limit;
        // 65 536: 65 408 after the reserve, an eighth capped at 512 lent, 32 448 slots.
        assert_eq!(budget(Some(65_536)), DescriptorBudget { slots: (65_536 - 128 - 512) / 2, lent: 512 });
        // 20 000: room for 9 680 idle sessions (each holds two descriptors).
        assert_eq!(budget(Some(20_000)), DescriptorBudget { slots: 9_680, lent: 512 });
        // 256: an eighth of 128 is lent.
        assert_eq!(budget(Some(256)), DescriptorBudget { slots: 56, lent: 16 });
        // Below the reserve: one slot and the least that is lent.
        assert_eq!(budget(Some(100)), DescriptorBudget { slots: 1, lent: 4 });
        assert_eq!(budget(None).slots, tokio::sync::Semaphore::MAX_PERMITS);
    }

    #[test]
    fn the_budget_never_promises_more_descriptors_than_the_limit() {
        for limit in [140, 200, 256, 1_024, 4_096, 20_000, 65_536, 1_048_576] {
            let budget = DescriptorBudget::of_limit(Some(limit));
            let promised = RESERVED_DESCRIPTORS + budget.slots as u64 * DESCRIPTORS_PER_SLOT + budget.lent as u64;
            assert!(promised <= limit, "limit {limit}: {budget:?} promises {promised}");
        }
    }

    #[test]
    fn a_connect_borrows_from_the_lent_pool_then_a_free_slot_then_waits_for_either() {
        let pools = DescriptorPools::new(DescriptorBudget { slots: 1, lent: 3 });
        let lookup = pools.borrow(2).now_or_never().unwrap().unwrap();
        let attempt = pools.borrow(1).now_or_never().unwrap().unwrap();
        assert_eq!((pools.lent.available_permits(), pools.slots.available_permits()), (0, 1));
        // The lent pool is empty: a free slot.
        let second_lookup = pools.borrow(2).now_or_never().unwrap().unwrap();
        assert_eq!(pools.slots.available_permits(), 0);
        // Neither: wait for whichever frees first.
        let mut waiting = Box::pin(pools.borrow(1));
        assert!((&mut waiting).now_or_never().is_none());
        drop(attempt);
        let third = (&mut waiting).now_or_never().expect("the lent descriptor given back").unwrap();
        let mut waiting = Box::pin(pools.borrow(2));
        assert!((&mut waiting).now_or_never().is_none());
        drop(second_lookup);
        let fourth = (&mut waiting).now_or_never().expect("the slot given back").unwrap();
        assert_eq!((pools.lent.available_permits(), pools.slots.available_permits()), (0, 0));
        drop((lookup, third, fourth));
        assert_eq!((pools.lent.available_permits(), pools.slots.available_permits()), (3, 1));
    }
}
