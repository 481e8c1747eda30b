//! Parking on a 32-bit word in shared memory: the safe face of the shared
//! (cross-process) futex, for crates that build their own waiting protocols
//! (the pool's rings).
//!
//! The word normally lives in a [`ShmRegion`](crate::shm::ShmRegion) and is
//! obtained with [`atomic_u32`](crate::shm::ShmRegion::atomic_u32); a word in
//! ordinary memory works too, within one process.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys::futex;

/// Sleeps while `*word == expected`, at most `timeout` (forever if `None`).
///
/// Returns `false` only if the timeout elapsed; `true` when woken, when the
/// word did not hold `expected`, or spuriously. Callers re-check their
/// condition in a loop.
pub fn wait_u32(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    futex::wait(word, expected, timeout) == futex::Wake::Woken
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many woke.
pub fn wake_u32(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, n)
}

/// Wakes every process or thread sleeping on `word`; returns how many woke.
pub fn wake_all_u32(word: &AtomicU32) -> usize {
    futex::wake_all(word)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn waits_only_while_the_word_holds_the_expected_value() {
        let word = AtomicU32::new(0);
        // The word is not 1: returns at once.
        assert!(super::wait_u32(&word, 1, None));
        // The word is 0 and nobody wakes us: times out.
        assert!(!super::wait_u32(&word, 0, Some(Duration::from_millis(5))));
        word.store(1, Ordering::SeqCst);
        assert_eq!(super::wake_u32(&word, 1), 0);
    }
}
