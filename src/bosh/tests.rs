use super::*;

#[test]
fn sids_are_128_random_bits() {
    let a = new_sid();
    let b = new_sid();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn the_version_is_the_lower_of_both() {
    assert_eq!(version(Some("1.6")), "1.6");
    assert_eq!(version(Some("1.11")), "1.11");
    assert_eq!(version(Some("2.0")), "1.11");
    assert_eq!(version(Some("1.20")), "1.11");
    assert_eq!(version(None), "1.11");
    assert_eq!(version(Some("x")), "1.11");
}

/// What every idle BOSH session's task holds inline besides its heap: the shell's loop over a
/// BOSH client side, and that client side (the exchange and its channel). Measured, then bounded
/// with room for growth, like the WebSocket session's (`session::shell`'s test).
#[test]
fn a_bosh_session_task_stays_small() {
    use std::future::Future;
    use std::mem::size_of;

    use crate::session::{Gateway, SessionContext};

    fn future_size<'a, F: Future + 'a>(
        _: impl FnOnce(client::BoshClient, &'a std::sync::Arc<Gateway>, &'a SessionContext) -> F,
    ) -> usize {
        size_of::<F>()
    }
    let session = future_size(crate::session::run_client::<client::BoshClient>);
    let client = size_of::<client::BoshClient>();
    println!("BOSH session future {session} bytes, of which the client side {client}");
    assert!(session <= 6 * 1024, "BOSH session future {session} bytes (client side {client})");
}
