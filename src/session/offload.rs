//! Where the CPU-heavy XML checks of a session run: large ones off the runtime's worker threads.
//!
//! Checking is linear in the size of a message, but one of 256 KiB still takes milliseconds, and
//! a few clients sending such messages back to back (before login) would otherwise keep every
//! worker thread busy and every other session waiting (issue 10). A check of at least
//! [`OFFLOAD_BYTES`] runs under [`tokio::task::block_in_place`]: the worker hands its other
//! tasks to another thread while it checks, so the operating system shares the cores between
//! the checks and everybody else. Ordinary stanzas are checked inline, as before: they cost
//! microseconds, and handing the worker over costs more than that.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Checks of inputs at least this large run off the worker threads.
pub(crate) const OFFLOAD_BYTES: usize = 16 * 1024;

/// Runs `check`, CPU-bound work on an input of `len` bytes, where it cannot hold up other
/// sessions: inline when small or on a single-threaded runtime (which has no other worker to
/// hand tasks to), else under `block_in_place`.
pub(crate) fn check<T>(len: usize, check: impl FnOnce() -> T) -> T {
    let multi_thread = Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len >= OFFLOAD_BYTES && multi_thread {
        tokio::task::block_in_place(check)
    } else {
        check()
    }
}
