//! TCP connection to one route's addresses with Happy Eyeballs (RFC 8305).
//!
//! [`interleave`] orders the addresses (IPv6 first, then alternating families, §4);
//! [`happy_eyeballs`] starts one attempt, starts the next one after the attempt delay or as soon
//! as the previous attempt failed, keeps the first success and drops (cancels) the rest. The
//! dialing function is a parameter, so tests drive the algorithm with a recording dialer under a
//! paused clock. This module does not resolve names and does not apply the address guard.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

/// Orders addresses for connection attempts: IPv6 first (the preferred family), then the
/// families alternate, each family keeping its DNS order (RFC 8305 §4).
pub fn interleave(addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses.iter().partition(|address| address.is_ipv6());
    let mut ordered = Vec::with_capacity(addresses.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => break,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
    ordered
}

/// Every attempt failed; the last error and its address (for the D6 class).
#[derive(Debug)]
pub struct AllAttemptsFailed {
    /// The address of the last failure.
    pub address: Option<SocketAddr>,
    /// The last OS error.
    pub source: io::Error,
}

/// Connects to the first address that answers: attempts start in [`interleave`] order, one
/// every `delay` (or at once after a failure); the first success is returned with its address
/// and every other attempt is cancelled.
pub async fn happy_eyeballs<T, F, Fut>(
    addresses: &[SocketAddr],
    delay: Duration,
    mut dial: F,
) -> Result<(T, SocketAddr), AllAttemptsFailed>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    // One address (a static upstream's, the common case): one attempt, without the machinery
    // of racing several (its allocations and a timer per turn), with the same outcome.
    if let [address] = *addresses {
        return match dial(address).await {
            Ok(stream) => Ok((stream, address)),
            Err(source) => {
                tracing::debug!(%address, error = %source, "connection attempt failed");
                Err(AllAttemptsFailed { address: (address.port() != 0).then_some(address), source })
            }
        };
    }
    let ordered = interleave(addresses);
    let mut pending = ordered.into_iter();
    let mut running = FuturesUnordered::new();
    let mut last_error: Option<(SocketAddr, io::Error)> = None;
    let start_next = |running: &mut FuturesUnordered<_>, pending: &mut std::vec::IntoIter<SocketAddr>, dial: &mut F| {
        if let Some(address) = pending.next() {
            let attempt = dial(address);
            running.push(async move { (address, attempt.await) });
            true
        } else {
            false
        }
    };
    start_next(&mut running, &mut pending, &mut dial);
    loop {
        if running.is_empty() && !start_next(&mut running, &mut pending, &mut dial) {
            let (address, source) = last_error
                .unwrap_or_else(|| (SocketAddr::from(([0, 0, 0, 0], 0)), io::Error::other("no address to connect to")));
            let address = (address.port() != 0).then_some(address);
            return Err(AllAttemptsFailed { address, source });
        }
        tokio::select! {
            Some((address, result)) = running.next() => match result {
                Ok(stream) => return Ok((stream, address)),
                Err(error) => {
                    tracing::debug!(%address, %error, "connection attempt failed");
                    last_error = Some((address, error));
                    // RFC 8305 §5: a failure starts the next attempt without waiting.
                    start_next(&mut running, &mut pending, &mut dial);
                }
            },
            _ = tokio::time::sleep(delay), if pending.len() > 0 => {
                start_next(&mut running, &mut pending, &mut dial);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_first_then_alternating() {
        let input = [addr("127.0.0.2:1"), addr("127.0.0.3:1"), addr("[::1]:1"), addr("[::2]:1"), addr("[::3]:1")];
        assert_eq!(
            interleave(&input),
            vec![addr("[::1]:1"), addr("127.0.0.2:1"), addr("[::2]:1"), addr("127.0.0.3:1"), addr("[::3]:1")]
        );
        assert_eq!(interleave(&[addr("127.0.0.2:1")]), vec![addr("127.0.0.2:1")]);
    }

    type Log = Arc<Mutex<Vec<(SocketAddr, Duration)>>>;

    /// A dialer that records when each address is tried and behaves per `script`:
    /// `Some(d)` succeeds after `d`, `None` hangs for ever, refused addresses fail at once.
    fn recording_dialer(
        log: Log,
        start: Instant,
        behaviour: fn(SocketAddr) -> Result<Option<Duration>, ()>,
    ) -> impl FnMut(SocketAddr) -> std::pin::Pin<Box<dyn Future<Output = io::Result<SocketAddr>> + Send>> {
        move |address| {
            log.lock().unwrap().push((address, start.elapsed()));
            Box::pin(async move {
                match behaviour(address) {
                    Err(()) => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                    Ok(Some(after)) => {
                        tokio::time::sleep(after).await;
                        Ok(address)
                    }
                    Ok(None) => std::future::pending().await,
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ipv4_starts_after_the_delay_when_ipv6_hangs() {
        let log: Log = Arc::default();
        let start = Instant::now();
        let dial = recording_dialer(log.clone(), start, |a| {
            if a.is_ipv6() {
                Ok(None)
            } else {
                Ok(Some(Duration::from_millis(10)))
            }
        });
        let (winner, address) =
            happy_eyeballs(&[addr("127.0.0.2:5222"), addr("[::1]:5222")], Duration::from_millis(250), dial)
                .await
                .unwrap();
        assert_eq!(winner, addr("127.0.0.2:5222"));
        assert_eq!(address, winner);
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![(addr("[::1]:5222"), Duration::ZERO), (addr("127.0.0.2:5222"), Duration::from_millis(250))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_ipv6_success_never_starts_ipv4() {
        let log: Log = Arc::default();
        let dial = recording_dialer(log.clone(), Instant::now(), |_| Ok(Some(Duration::from_millis(20))));
        let (winner, _) =
            happy_eyeballs(&[addr("127.0.0.2:5222"), addr("[::1]:5222")], Duration::from_millis(250), dial)
                .await
                .unwrap();
        assert_eq!(winner, addr("[::1]:5222"));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_starts_the_next_address_at_once() {
        let log: Log = Arc::default();
        let dial =
            recording_dialer(
                log.clone(),
                Instant::now(),
                |a| if a.is_ipv6() { Err(()) } else { Ok(Some(Duration::ZERO)) },
            );
        let (winner, _) =
            happy_eyeballs(&[addr("127.0.0.2:5222"), addr("[::1]:5222")], Duration::from_millis(250), dial)
                .await
                .unwrap();
        assert_eq!(winner, addr("127.0.0.2:5222"));
        assert_eq!(log.lock().unwrap()[1], (addr("127.0.0.2:5222"), Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn all_refused_reports_the_last_error() {
        let dial = recording_dialer(Log::default(), Instant::now(), |_| Err(()));
        let error = happy_eyeballs(&[addr("127.0.0.2:1"), addr("[::1]:1")], Duration::from_millis(250), dial)
            .await
            .unwrap_err();
        assert_eq!(error.source.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(error.address, Some(addr("127.0.0.2:1")));
    }

    /// One address is dialled once, at once, and its outcome is the result: the winner, or the
    /// refusal with its address (as the general path reports the last one).
    #[tokio::test(start_paused = true)]
    async fn one_address_is_one_attempt_with_its_outcome() {
        let log: Log = Arc::default();
        let dial = recording_dialer(log.clone(), Instant::now(), |_| Ok(Some(Duration::from_millis(400))));
        let (winner, address) = happy_eyeballs(&[addr("[::1]:5222")], Duration::from_millis(250), dial).await.unwrap();
        assert_eq!((winner, address), (addr("[::1]:5222"), addr("[::1]:5222")));
        assert_eq!(log.lock().unwrap().clone(), vec![(addr("[::1]:5222"), Duration::ZERO)]);
        let log: Log = Arc::default();
        let dial = recording_dialer(log.clone(), Instant::now(), |_| Err(()));
        let error = happy_eyeballs(&[addr("127.0.0.2:1")], Duration::from_millis(250), dial).await.unwrap_err();
        assert_eq!((error.source.kind(), error.address), (io::ErrorKind::ConnectionRefused, Some(addr("127.0.0.2:1"))));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_address_is_an_error() {
        let dial = recording_dialer(Log::default(), Instant::now(), |_| Err(()));
        assert!(happy_eyeballs(&[], Duration::from_millis(250), dial).await.is_err());
    }
}
