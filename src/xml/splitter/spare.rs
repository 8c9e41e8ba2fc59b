//! The storage a splitter needs only while it reads: its byte buffer and its checker, kept by
//! the thread between reads instead of by each session.
//!
//! A splitter takes them when bytes arrive and it has none, keeps them while its session is
//! busy, and gives them back when the session goes idle (every byte consumed, no unit in
//! progress) or the splitter goes (a stream restart, the session's end): so a new stream, or the
//! next read of a quiet session, costs no allocation for them, and a busy one no thread-local
//! access per read.
//! Bounded: what grew past [`SPARE_BUFFER_KEPT_BYTES`] or [`SPARE_CHECKER_KEPT_BYTES`] for an
//! unusual read is freed instead of kept. Holds nothing a session could read: a buffer is given
//! back empty and a checker is reset before it is lent again.

use std::cell::Cell;

use super::super::checker::{Checker, Unit, WfLimits};

/// Capacity of a buffer the thread keeps for the next read: room for a few reads of the
/// session loop's 4 KiB, not for a large element.
pub(super) const SPARE_BUFFER_KEPT_BYTES: usize = 16 * 1024;

/// Reusable storage of a checker the thread keeps (as for client messages, `xml::client`).
pub(super) const SPARE_CHECKER_KEPT_BYTES: usize = 4096;

thread_local! {
    static SPARE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SPARE_CHECKER: Cell<Option<Box<Checker>>> = const { Cell::new(None) };
}

/// An empty buffer, with the thread's spare capacity if it has some.
#[inline]
pub(super) fn take_buffer() -> Vec<u8> {
    SPARE_BUFFER.try_with(Cell::take).unwrap_or_default()
}

/// A checker for a unit whose `<` is the next byte, within `limits`: the thread's spare one
/// reset, or a new one.
#[inline]
pub(super) fn take_checker(limits: WfLimits, unit: Unit) -> Box<Checker> {
    match SPARE_CHECKER.try_with(Cell::take).ok().flatten() {
        Some(mut checker) => {
            checker.reset_within(limits, unit);
            checker
        }
        None => Box::new(Checker::new(limits, unit)),
    }
}

/// Gives `buffer` (whatever it holds is dropped) and `checker` to the thread for the next read,
/// unless they grew past what it keeps or it already has some (then they are freed, as they are
/// while the thread is being torn down).
#[inline]
pub(super) fn give_back(mut buffer: Vec<u8>, checker: Option<Box<Checker>>) {
    let capacity = buffer.capacity();
    if capacity > 0 && capacity <= SPARE_BUFFER_KEPT_BYTES {
        buffer.clear();
        let _ = SPARE_BUFFER.try_with(|spare| {
            let kept = spare.take();
            spare.set(if kept.capacity() == 0 { buffer } else { kept });
        });
    }
    if let Some(checker) = checker.filter(|checker| checker.capacity_bytes() <= SPARE_CHECKER_KEPT_BYTES) {
        let _ = SPARE_CHECKER.try_with(|spare| {
            let kept = spare.take();
            spare.set(kept.or(Some(checker)));
        });
    }
}

/// What the thread keeps: the buffer's capacity, and the checker's reusable storage in bytes if
/// it keeps one (for tests).
#[cfg(test)]
pub(super) fn kept() -> (usize, Option<usize>) {
    let buffer = SPARE_BUFFER.with(|spare| {
        let buffer = spare.take();
        let capacity = buffer.capacity();
        spare.set(buffer);
        capacity
    });
    let checker = SPARE_CHECKER.with(|spare| {
        let checker = spare.take();
        let bytes = checker.as_ref().map(|checker| checker.capacity_bytes());
        spare.set(checker);
        bytes
    });
    (buffer, checker)
}
