//! Accepting TCP connections without spinning or flooding the log when the process is out of
//! descriptors (EMFILE), and a warning that is logged at most once per interval with a count of
//! the repeats it swallowed.
//!
//! Sockets only: what happens to an accepted connection is decided elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long the accept loop waits after a failed accept (typically EMFILE) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A repeated warning logged at most once per `interval`.
#[derive(Debug)]
pub(crate) struct RateLimited {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// At most one line per `interval`.
    pub(crate) fn new(interval: Duration) -> RateLimited {
        RateLimited { interval, last: None, suppressed: 0 }
    }

    /// Whether to log an occurrence at `now`: `Some(n)` with the `n` occurrences not logged since
    /// the last line, or `None` to stay quiet (the occurrence is counted).
    pub(crate) fn occurrence(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The next connection from `listener`, with TCP_NODELAY set. A failed accept is logged (rate
/// limited by `log`) and retried after [`ACCEPT_RETRY`], so descriptor exhaustion neither spins
/// nor floods the log.
pub(crate) async fn accept(listener: &TcpListener, log: &mut RateLimited) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return (stream, addr);
            }
            Err(error) => {
                if let Some(suppressed) = log.occurrence(Instant::now()) {
                    tracing::warn!(%error, suppressed, "accept failed");
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_with_the_count_of_what_it_swallowed() {
        let mut log = RateLimited::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(log.occurrence(start), Some(0));
        for tenth in 1..10 {
            assert_eq!(log.occurrence(start + Duration::from_millis(100 * tenth)), None);
        }
        assert_eq!(log.occurrence(start + Duration::from_millis(1000)), Some(9));
        assert_eq!(log.occurrence(start + Duration::from_millis(1500)), None);
        assert_eq!(log.occurrence(start + Duration::from_millis(2500)), Some(1));
        assert_eq!(log.occurrence(start + Duration::from_millis(9000)), Some(0));
    }
}
