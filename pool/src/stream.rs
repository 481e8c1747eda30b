//! The shared state behind an `imap` iterator: results as the result thread
//! delivers them, handed to the iterator in batches.
//!
//! Results are kept item by item, in the order the iterator yields them,
//! and the iterator takes everything ready at once (one lock per batch, not
//! per chunk or item). With `chunksize` 1, the default, a chunk is one item:
//! handing over a vector per chunk cost an allocation per item on the
//! result thread, freed on the iterator's thread, malloc's slowest case.
//! The two sides swap their buffers instead, so a steady stream allocates
//! nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use multiproc_ipc::{Error, Result};

use crate::result::{help_until, on_result_thread, sleep_counted, spin_helping, Help, Sleepers};
use crate::shared::lock;
use crate::task::ChunkResult;

struct StreamState<R> {
    ordered: bool,
    /// Results ready for the iterator, in the order it yields them.
    ready: VecDeque<Result<R>>,
    /// Chunks whose results went into `ready` since the iterator last took
    /// them (it counts the chunks it still waits for).
    chunks: usize,
    /// Ordered: chunks that arrived ahead of `next`, by their first index,
    /// with their numbers of items.
    ahead: BTreeMap<usize, (usize, ChunkResult<R>)>,
    /// Ordered: the index of the next item to go into `ready`.
    next: usize,
    /// Threads blocked on the condition variable: a delivery notifies only
    /// if there are any that no delivery has notified yet (a notification
    /// is a system call even with no waiter, paid once per chunk
    /// otherwise).
    sleepers: Sleepers,
}

impl<R> StreamState<R> {
    fn push(&mut self, items: ChunkResult<R>) {
        match items {
            ChunkResult::All(v) => self.ready.extend(v.into_iter().map(Ok)),
            ChunkResult::Mixed(v) => self.ready.extend(v),
        }
        self.chunks += 1;
    }
}

/// The results of one `imap` or `imap_unordered` call (see the module).
pub(crate) struct Stream<R> {
    helper: Option<Weak<dyn Help>>,
    available: AtomicBool,
    state: Mutex<StreamState<R>>,
    cond: Condvar,
}

impl<R> Stream<R> {
    pub(crate) fn new(ordered: bool, helper: Option<Weak<dyn Help>>) -> Arc<Stream<R>> {
        Arc::new(Stream {
            helper,
            available: AtomicBool::new(false),
            state: Mutex::new(StreamState {
                ordered,
                ready: VecDeque::new(),
                chunks: 0,
                ahead: BTreeMap::new(),
                next: 0,
                sleepers: Sleepers::default(),
            }),
            cond: Condvar::new(),
        })
    }

    /// Delivers the results of the chunk of `n` items from index `first`.
    pub(crate) fn deliver(&self, first: usize, n: usize, items: ChunkResult<R>) {
        let notify = {
            let mut s = lock(&self.state);
            if !s.ordered {
                s.push(items);
            } else if first != s.next {
                s.ahead.insert(first, (n, items));
            } else {
                s.push(items);
                s.next += n;
                while let Some((n, items)) = {
                    let next = s.next;
                    s.ahead.remove(&next)
                } {
                    s.push(items);
                    s.next += n;
                }
            }
            if s.chunks == 0 {
                // Held back until the chunks before it arrive.
                return;
            }
            self.available.store(true, Ordering::Release);
            s.sleepers.notify()
        };
        if notify {
            self.cond.notify_all();
        }
    }

    /// Moves every ready result onto the end of `into` (swapping buffers
    /// when `into` is empty) and returns how many chunks they complete;
    /// `None` if there are none.
    fn take_ready(s: &mut StreamState<R>, into: &mut VecDeque<Result<R>>) -> Option<usize> {
        if s.chunks == 0 {
            return None;
        }
        if into.is_empty() {
            std::mem::swap(&mut s.ready, into);
        } else {
            into.append(&mut s.ready);
        }
        Some(std::mem::take(&mut s.chunks))
    }

    /// Waits until results are ready (or `deadline` passes: `Err(Timeout)`,
    /// nothing taken), moves them onto the end of `into`, and returns how
    /// many chunks they complete (at least one).
    pub(crate) fn take(
        &self,
        deadline: Option<Instant>,
        into: &mut VecDeque<Result<R>>,
    ) -> Result<usize> {
        let mut s = lock(&self.state);
        loop {
            if let Some(chunks) = Stream::take_ready(&mut s, into) {
                return Ok(chunks);
            }
            self.available.store(false, Ordering::Release);
            drop(s);
            let more = spin_helping(&self.helper, || self.available.load(Ordering::Acquire));
            s = lock(&self.state);
            if more {
                continue;
            }
            if let Some(chunks) = Stream::take_ready(&mut s, into) {
                return Ok(chunks);
            }
            if on_result_thread() {
                drop(s);
                if !help_until(&self.helper, deadline, || {
                    self.available.load(Ordering::Acquire)
                }) {
                    return Err(Error::timeout("no result arrived in time"));
                }
                s = lock(&self.state);
                continue;
            }
            match sleep_counted(&self.cond, s, |s| &mut s.sleepers, deadline) {
                Some(g) => s = g,
                None => return Err(Error::timeout("no result arrived in time")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use multiproc_ipc::ErrorKind;

    use super::*;

    fn values(q: &mut VecDeque<Result<u64>>) -> Vec<std::result::Result<u64, ErrorKind>> {
        q.drain(..).map(|r| r.map_err(|e| e.kind())).collect()
    }

    #[test]
    fn a_stream_wakes_a_sleeping_reader_and_keeps_track_of_timed_out_ones() {
        let stream = Stream::<u64>::new(false, None);
        let mut got = VecDeque::new();
        // Nobody there: nothing to wake, and a reader that gives up leaves
        // no sleeper counted.
        stream.deliver(0, 1, ChunkResult::All(vec![1]));
        assert_eq!(stream.take(None, &mut got).unwrap(), 1);
        assert_eq!(values(&mut got), [Ok(1)]);
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(stream.take(Some(soon), &mut got).unwrap_err().is_timeout());
        assert!(got.is_empty());
        assert_eq!(lock(&stream.state).sleepers.asleep(), 0);
        // A reader asleep (past its spin) is woken by the next delivery.
        let s = Arc::clone(&stream);
        let reader = std::thread::spawn(move || {
            let mut got = VecDeque::new();
            let chunks = s.take(Some(Instant::now() + Duration::from_secs(10)), &mut got);
            (chunks, got)
        });
        while lock(&stream.state).sleepers.asleep() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let sent = Instant::now();
        stream.deliver(1, 2, ChunkResult::All(vec![2, 3]));
        let (chunks, mut got) = reader.join().unwrap();
        assert_eq!(chunks.unwrap(), 1);
        assert_eq!(values(&mut got), [Ok(2), Ok(3)]);
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(lock(&stream.state).sleepers.asleep(), 0);
    }

    #[test]
    fn an_ordered_stream_holds_early_chunks_back_and_hands_over_all_that_is_ready() {
        let stream = Stream::<u64>::new(true, None);
        let mut got = VecDeque::new();
        let soon = || Some(Instant::now() + Duration::from_millis(20));
        // Items 3..5 and 1..3 arrive before item 0: nothing is ready yet.
        stream.deliver(3, 2, ChunkResult::All(vec![30, 40]));
        stream.deliver(1, 2, ChunkResult::All(vec![10, 20]));
        assert!(stream.take(soon(), &mut got).unwrap_err().is_timeout());
        // Item 0 releases all three chunks, in order, in one take.
        let failed = Error::new(ErrorKind::WorkerLost, "gone");
        stream.deliver(0, 1, ChunkResult::failed(1, &failed));
        assert_eq!(stream.take(None, &mut got).unwrap(), 3);
        assert_eq!(
            values(&mut got),
            [Err(ErrorKind::WorkerLost), Ok(10), Ok(20), Ok(30), Ok(40)]
        );
        // A mixed chunk keeps each item's own outcome; results still in
        // the reader's buffer stay first.
        stream.deliver(5, 1, ChunkResult::All(vec![50]));
        got.push_back(Ok(0));
        stream.deliver(
            6,
            2,
            ChunkResult::Mixed(vec![
                Ok(60),
                Err(Error::new(ErrorKind::TaskPanicked, "boom")),
            ]),
        );
        assert_eq!(stream.take(None, &mut got).unwrap(), 2);
        assert_eq!(
            values(&mut got),
            [Ok(0), Ok(50), Ok(60), Err(ErrorKind::TaskPanicked)]
        );
    }

    #[test]
    fn a_steady_stream_swaps_buffers_instead_of_allocating() {
        let stream = Stream::<u64>::new(false, None);
        let mut got = VecDeque::with_capacity(64);
        let mine = got.as_slices().0.as_ptr();
        stream.deliver(0, 1, ChunkResult::All(vec![7]));
        stream.take(None, &mut got).unwrap();
        // The reader now holds the stream's buffer, and the stream its own.
        assert_ne!(got.as_slices().0.as_ptr(), mine);
        assert_eq!(values(&mut got), [Ok(7)]);
        stream.deliver(1, 1, ChunkResult::All(vec![8]));
        stream.take(None, &mut got).unwrap();
        assert_eq!(got.as_slices().0.as_ptr(), mine);
        assert_eq!(values(&mut got), [Ok(8)]);
    }
}
