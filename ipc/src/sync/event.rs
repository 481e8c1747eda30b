//! `Event`: a cross-process flag that processes can wait for.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{cell, create_region, deadline_after, magic, park, unpark, Parked};
use crate::shm::ShmRegion;
use crate::sys::layout::EventCell;

/// A cross-process event, Python's `multiprocessing.Event`.
///
/// A flag, initially clear: [`set`](Event::set) sets it and wakes every
/// waiter, [`clear`](Event::clear) clears it, [`wait`](Event::wait) blocks
/// while it is clear. Handles are [`Clone`], inherited by forked processes
/// and serializable.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::sync::Event;
/// use std::time::Duration;
///
/// let ready = Event::new()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(5))); // timed out
/// ready.set();
/// ready.wait();
/// assert!(ready.is_set());
/// # Ok::<(), multiproc_ipc::Error>(())
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
        self.cell().flag.load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let c = self.cell();
        if c.flag.swap(1, Ordering::SeqCst) == 0 {
            unpark(&c.flag, &c.sleepers, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.cell().flag.store(0, Ordering::Release);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let c = self.cell();
        loop {
            if self.is_set() {
                return true;
            }
            if park(&c.flag, 0, &c.sleepers, deadline) == Parked::TimedOut {
                return self.is_set();
            }
        }
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it is set
    /// (false: timed out), like Python's `wait(timeout)`.
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
