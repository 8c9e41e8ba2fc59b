//! The drain signal: fired once when the gateway starts to shut down, waited on by every
//! listener, connection and session.
//!
//! A cancellation token does the waking. Asking it whether it has fired takes its lock, which
//! every session shares, and a session would ask each time it goes to sleep; so the signal also
//! keeps a flag, set before the token fires, that a registered waiter reads instead. Nothing
//! here knows about sessions or sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The drain signal (cheap to clone: every clone is the same signal).
#[derive(Debug, Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    started: Arc<AtomicBool>,
}

impl Drain {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal (again: no effect).
    pub fn cancel(&self) {
        self.started.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_cancelled(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Completes when the signal fires (for a wait made anew each time it is needed).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A wait for the signal that one task keeps and polls as often as it likes, on `wait`
    /// (made by [`Self::cancelled`] and pinned where the task keeps it): registered at its
    /// first poll, after which a poll only reads the flag until the signal fires.
    pub fn wait<'w, 't>(&'t self, wait: Pin<&'w mut WaitForCancellationFuture<'t>>) -> DrainWait<'w, 't> {
        DrainWait { wait, started: &self.started, registered: false }
    }
}

/// See [`Drain::wait`]. Must be polled by one task only: the waker of its first poll is the one
/// the signal wakes.
#[derive(Debug)]
pub struct DrainWait<'w, 't> {
    wait: Pin<&'w mut WaitForCancellationFuture<'t>>,
    started: &'t AtomicBool,
    registered: bool,
}

impl Future for DrainWait<'_, '_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.registered && !this.started.load(Ordering::Acquire) {
            // The token holds this task's waker since the first poll, and the flag is set
            // before the token fires: a wake then finds it set.
            return Poll::Pending;
        }
        let poll = this.wait.as_mut().poll(cx);
        this.registered = true;
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A kept wait is woken when the signal fires, however often it was polled before, and is
    /// then ready; a wait made after the signal is ready at once.
    #[test]
    fn a_kept_wait_is_woken_once_the_signal_fires() {
        let drain = Drain::new();
        let pinned = std::pin::pin!(drain.cancelled());
        let mut wait = drain.wait(pinned);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Pending);
        }
        assert!(!drain.is_cancelled());
        drain.clone().cancel();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the signal woke the waiting task");
        assert!(drain.is_cancelled());
        assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Ready(()));
        let pinned = std::pin::pin!(drain.cancelled());
        assert_eq!(drain.wait(pinned).now_or_never(), Some(()));
        assert_eq!(drain.cancelled().now_or_never(), Some(()));
    }
}
