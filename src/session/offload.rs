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
    // The runtime is looked up only for a large input: the lookup costs more than checking a
    // small one's length.
    let multi_thread =
        || Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len >= OFFLOAD_BYTES && multi_thread() {
        tokio::task::block_in_place(check)
    } else {
        check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Spins (bounded by `limit`) until `flag` is set; whether it was.
    fn wait_for(flag: &AtomicBool, limit: Duration) -> bool {
        let started = Instant::now();
        while !flag.load(Ordering::Acquire) {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_during_a_large_check_but_not_during_a_small_one() {
        // Run on the runtime's only worker (the test body itself runs on another thread).
        tokio::spawn(async {
            // A small check runs inline: the only worker is busy, the other task cannot run.
            let flag = Arc::new(AtomicBool::new(false));
            let setter = flag.clone();
            let task = tokio::spawn(async move { setter.store(true, Ordering::Release) });
            assert!(!check(100, || wait_for(&flag, Duration::from_millis(200))));
            task.await.unwrap();
            // A large one hands the worker's tasks over while it runs.
            let flag = Arc::new(AtomicBool::new(false));
            let setter = flag.clone();
            let task = tokio::spawn(async move { setter.store(true, Ordering::Release) });
            assert!(check(OFFLOAD_BYTES, || wait_for(&flag, Duration::from_secs(10))));
            task.await.unwrap();
        })
        .await
        .unwrap();
    }

    #[test]
    fn runs_inline_without_a_multi_threaded_runtime() {
        assert_eq!(check(OFFLOAD_BYTES, || 7), 7);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(runtime.block_on(async { check(OFFLOAD_BYTES, || 8) }), 8);
    }
}
