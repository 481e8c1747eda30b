//! `Event`: a cross-process flag that processes can wait for.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{cell, create_region, deadline_after, magic, park, unpark, Parked};
use crate::shm::ShmRegion;
use crate::sys::layout::EventCell;

/// Bit 0 of the event word: the flag.
const SET: u32 = 1;
/// The rest of the word counts the sets of a clear flag (wrapping): one
/// generation.
const GENERATION: u32 = 2;

/// A cross-process event, Python's `multiprocessing.Event`.
///
/// A flag, initially clear: [`set`](Event::set) sets it and wakes every
/// waiter, [`clear`](Event::clear) clears it, [`wait`](Event::wait) blocks
/// while it is clear. Handles are [`Clone`], inherited by forked processes
/// and serializable.
///
/// As in Python, a wait returns `true` if the flag was set at any moment
/// while it waited: a `set()` immediately followed by a `clear()` still
/// releases every process and thread that was blocked in `wait` at the time
/// of the `set`, even if the flag is clear again when they get to run. (The
/// shared word holds a generation number bumped by every `set` of a clear
/// flag; a waiter compares it with the one it saw on entry rather than
/// re-reading the flag.)
///
/// # Examples
///
/// ```
/// use multiproc::sync::Event;
/// use std::time::Duration;
///
/// let ready = Event::new()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(5))); // timed out
/// ready.set();
/// ready.wait();
/// assert!(ready.is_set());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    region: ShmRegion,
}

impl Event {
    /// Creates a clear event.
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new() -> crate::Result<Event> {
        Ok(Event {
            region: create_region::<EventCell>(magic::EVENT, 0)?,
        })
    }

    fn cell(&self) -> &EventCell {
        cell(&self.region, 0)
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        self.cell().flag.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter, also those that will only run
    /// after a `clear` that follows at once.
    pub fn set(&self) {
        let c = self.cell();
        // A clear flag becomes set in the next generation; a set one stays.
        let r = c
            .flag
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w & SET == 0).then(|| w.wrapping_add(GENERATION) | SET)
            });
        if r.is_ok() {
            unpark(&c.flag, &c.sleepers, u32::MAX);
        }
    }

    /// Clears the flag. Processes already released by a `set` stay released.
    pub fn clear(&self) {
        self.cell().flag.fetch_and(!SET, Ordering::SeqCst);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let c = self.cell();
        let entry = c.flag.load(Ordering::Acquire);
        if entry & SET != 0 {
            return true;
        }
        // Released once the flag is set, or a set happened since entry (the
        // generation moved on), whatever the flag says now.
        let released = |w: u32| w & SET != 0 || w != entry;
        loop {
            let parked = park(&c.flag, entry, &c.sleepers, deadline);
            let now = c.flag.load(Ordering::Acquire);
            if released(now) {
                return true;
            }
            if parked == Parked::TimedOut {
                return false;
            }
        }
    }

    /// Waits until the flag is set (or was set at some moment since the call).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::Event;
    ///
    /// let ev = Event::new()?;
    /// ev.set();
    /// ev.wait(); // set: returns at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Caveats
    ///
    /// Waits forever if nobody sets the event; prefer
    /// [`wait_timeout`](Event::wait_timeout) where a peer may die.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns `true` if it was set at
    /// some moment during the wait (even if cleared since), `false` if the
    /// time ran out, like Python's `wait(timeout)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::Event;
    /// use std::time::Duration;
    ///
    /// let ev = Event::new()?;
    /// assert!(!ev.wait_timeout(Duration::from_millis(1)));
    /// ev.set();
    /// assert!(ev.wait_timeout(Duration::from_millis(1)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(deadline_after(timeout))
    }

    /// True if both handles refer to the same event.
    pub fn same_event(&self, other: &Event) -> bool {
        self.region.same_region(&other.region)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("region", &self.region.name())
            .field("set", &self.is_set())
            .finish()
    }
}

region_serde!(Event, EventCell, magic::EVENT);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_wakes_waiting_threads() {
        let ev = Event::new().unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| ev.wait_timeout(Duration::from_secs(10))))
                .collect();
            std::thread::sleep(Duration::from_millis(20));
            ev.set();
            for h in hs {
                assert!(h.join().unwrap());
            }
        });
        ev.clear();
        assert!(!ev.is_set());
    }
}
