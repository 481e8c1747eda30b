//! `imap` and `imap_unordered`: lazy streams of results.
//!
//! The input is pulled as the results are consumed: at most `buffersize`
//! chunks are submitted and not yet handed to the caller (Python 3.14's
//! `buffersize`), so memory stays flat over an unbounded input. The caller's
//! thread pulls, encodes and submits the next chunks when it asks for a
//! result, in batches of a quarter of the buffer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_ipc::process::catch_remote_panic;
use multiproc_ipc::{Error, ErrorKind, FnRef, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::map::Deliver;
use crate::pool::Pool;
use crate::shared::{Counters, Shared};
use crate::stream::Stream;
use crate::task::{self, ChunkResult};

/// Chunks in flight per worker process when no buffersize is given: as many
/// as a worker may have queued (a smaller buffer starves tiny tasks: 128
/// chunks for 2 workers ran `imap_unordered` of 100,000 no-op tasks at
/// about two thirds of this default's rate).
pub const DEFAULT_BUFFER_PER_PROCESS: usize = 256;

/// Options of [`Pool::imap_with`] and [`Pool::imap_unordered_with`]: the
/// chunksize and how far ahead of the consumer the input is read.
///
/// # Examples
///
/// ```
/// use multiproc::{IMapOptions, Pool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// // An endless input: read 4 chunks of 100 ahead of the consumer at most.
/// let options = IMapOptions::new().chunksize(100).buffersize(4);
/// let first: Vec<u64> = pool
///     .imap_with(square, 0u64.., options)?
///     .take(1_000)
///     .collect::<Result<_, _>>()?;
/// assert_eq!(first[999], 999 * 999);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IMapOptions {
    chunksize: usize,
    buffersize: Option<usize>,
}

impl Default for IMapOptions {
    fn default() -> Self {
        IMapOptions {
            chunksize: 1,
            buffersize: None,
        }
    }
}

impl IMapOptions {
    /// Chunksize 1, the default buffer.
    pub fn new() -> Self {
        IMapOptions::default()
    }

    /// Items per task (default 1).
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = chunksize;
        self
    }

    /// The most chunks submitted and not yet consumed (Python 3.14's
    /// `buffersize`); default [`DEFAULT_BUFFER_PER_PROCESS`] per worker
    /// process. At most `buffersize * chunksize` input items are held at
    /// once.
    pub fn buffersize(mut self, buffersize: usize) -> Self {
        self.buffersize = Some(buffersize);
        self
    }
}

/// What one round of reading the input did.
struct Fed {
    chunks: usize,
    items: usize,
    /// `Some` once the input is over: `None` at its end, else its failure.
    end: Option<Option<Error>>,
}

/// The input side of a stream: pulls, encodes and submits chunks.
trait Feed: Send {
    /// Submits at most `max_chunks` more chunks.
    fn feed(&mut self, max_chunks: usize) -> Fed;
}

struct Source<I, A: 'static, R: 'static> {
    items: I,
    f: FnRef<A, R>,
    chunksize: usize,
    template: Vec<u8>,
    shared: Arc<Shared>,
    deliver: Arc<Deliver>,
    /// The index of the next input item.
    next: usize,
    /// The items of the chunk being encoded (kept: no allocation per chunk).
    chunk: Vec<A>,
}

impl<I, A, R> Feed for Source<I, A, R>
where
    I: Iterator<Item = std::result::Result<A, String>> + Send,
    A: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    fn feed(&mut self, max_chunks: usize) -> Fed {
        let mut batch = Vec::with_capacity(max_chunks);
        let mut end = None;
        let mut items = 0;
        let mut chunk = std::mem::take(&mut self.chunk);
        while batch.len() < max_chunks && end.is_none() {
            chunk.clear();
            while chunk.len() < self.chunksize {
                let at = self.next + chunk.len();
                let failed = match catch_remote_panic(|| self.items.next()) {
                    Ok(Some(Ok(a))) => {
                        chunk.push(a);
                        continue;
                    }
                    Ok(None) => {
                        end = Some(None);
                        break;
                    }
                    Ok(Some(Err(e))) => format!("the input failed at item {at}: {e}"),
                    Err(panic) => format!("the input iterator panicked at item {at}: {panic}"),
                };
                end = Some(Some(Error::new(ErrorKind::InvalidArgument, failed)));
                break;
            }
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            let record = self
                .shared
                .build_record(&self.template, &task::chunk_body(self.f, &chunk[..]));
            batch.push((self.next, record, n));
            self.next += n;
            items += n;
        }
        chunk.clear();
        self.chunk = chunk;
        let chunks = batch.len();
        if chunks > 0 {
            // A pool that stopped running fails these chunks (`later`).
            let _ = self.shared.submit_chunks(batch, None, &self.deliver, true);
        }
        Fed { chunks, items, end }
    }
}

/// The iterator of [`Pool::imap`] (results in input order) and
/// [`Pool::imap_unordered`] (results as they arrive). Each item is the
/// result of one input, `Ok` or the error of that input's task.
///
/// The input is read lazily, as results are consumed (see [`IMapOptions`]);
/// an input that panics (or, for [`Pool::try_imap_with`], yields an `Err`)
/// ends the stream: the results of the items before it come first, then the
/// failure as an [`ErrorKind::InvalidArgument`] error.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// let squares: Vec<u64> = pool.imap(square, 0..10u64)?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, (0..10).map(|x| x * x).collect::<Vec<_>>());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the input is read and tasks run only as the iterator is consumed"]
pub struct IMapIter<'a, R> {
    stream: Arc<Stream<R>>,
    /// Results taken from the stream and not yet yielded.
    local: VecDeque<Result<R>>,
    /// The input; `None` once it ended or failed.
    feed: Option<Box<dyn Feed + 'a>>,
    /// The input's failure, yielded after every result before it.
    failure: Option<Error>,
    buffersize: usize,
    /// Chunks submitted and not yet taken from the stream.
    in_flight: usize,
    /// Items submitted and not yet yielded.
    pending_items: usize,
    /// Items left to yield, when the input told its exact length.
    remaining: Option<usize>,
}

impl<R> fmt::Debug for IMapIter<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapIter")
            .field("in_flight_chunks", &self.in_flight)
            .field("buffersize", &self.buffersize)
            .field("input_done", &self.feed.is_none())
            .finish()
    }
}

impl<R> IMapIter<'_, R> {
    /// Tops the chunks in flight up to the buffer, in batches of at least a
    /// quarter of it (one lock round per batch, not per chunk).
    fn top_up(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let room = self.buffersize - self.in_flight.min(self.buffersize);
        if room == 0 || (self.in_flight > 0 && room < self.buffersize.div_ceil(4)) {
            return;
        }
        let fed = feed.feed(room);
        self.in_flight += fed.chunks;
        self.pending_items += fed.items;
        if let Some(end) = fed.end {
            self.feed = None;
            self.failure = end;
        }
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(v) = self.local.pop_front() {
                self.pending_items = self.pending_items.saturating_sub(1);
                self.remaining = self.remaining.map(|n| n.saturating_sub(1));
                return Some(v);
            }
            self.top_up();
            if self.in_flight == 0 {
                return self.failure.take().map(Err);
            }
            match self.stream.take(deadline, &mut self.local) {
                // Taken, so no longer in flight: the input is read again only
                // once `local` is empty (above), so what it holds never adds
                // to the `buffersize` chunks read ahead.
                Ok(chunks) => self.in_flight = self.in_flight.saturating_sub(chunks),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`);
    /// `None` at the end. A timeout yields `Err(Timeout)` and does not
    /// consume anything: calling again continues.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let mut it = pool.imap(square, vec![3u64])?;
    /// assert_eq!(it.next_timeout(Duration::from_secs(5)).unwrap()?, 9);
    /// assert!(it.next_timeout(Duration::from_secs(5)).is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Instant::now().checked_add(timeout))
    }
}

impl<R> Iterator for IMapIter<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let known = self.pending_items + usize::from(self.failure.is_some());
        match (&self.feed, self.remaining) {
            (None, _) => (known, Some(known)),
            // An input that told its length: at most that many results.
            (Some(_), Some(n)) => (known.min(n), Some(n)),
            (Some(_), None) => (known, None),
        }
    }
}

impl Pool {
    /// Lazily ordered results of `f` over `items` (Python's `imap`, chunksize 1).
    ///
    /// The input is read as results are consumed, a bounded number of
    /// chunks ahead ([`IMapOptions::buffersize`]), so `items` may be endless.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut it = pool.imap(square, 0..3u64)?;
    /// assert_eq!(it.next().unwrap()?, 0);
    /// assert_eq!(it.next().unwrap()?, 1);
    /// assert_eq!(it.next().unwrap()?, 4);
    /// assert!(it.next().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.imap_with(f, items, IMapOptions::new())
    }

    /// [`imap`](Pool::imap) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let v: Vec<u64> = pool.imap_chunksize(square, 0..100u64, 10)?.map(|r| r.unwrap()).collect();
    /// assert_eq!(v[99], 9801);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_chunksize<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.imap_with(f, items, IMapOptions::new().chunksize(chunksize))
    }

    /// [`imap`](Pool::imap) with a chunksize and a buffersize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{IMapOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let it = pool.imap_with(square, 0..100u64, IMapOptions::new().chunksize(10).buffersize(2))?;
    /// assert_eq!(it.map(|r| r.unwrap()).sum::<u64>(), 328_350);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a zero chunksize or buffersize; as
    /// [`imap`](Pool::imap).
    pub fn imap_with<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.stream(f, items.into_iter().map(Ok), options, true)
    }

    /// Results of `f` over `items` in completion order (Python's
    /// `imap_unordered`, chunksize 1); every input yields exactly once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut v: Vec<u64> = pool.imap_unordered(square, 0..5u64)?.map(|r| r.unwrap()).collect();
    /// v.sort();
    /// assert_eq!(v, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap_unordered<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.imap_unordered_with(f, items, IMapOptions::new())
    }

    /// [`imap_unordered`](Pool::imap_unordered) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.imap_unordered_chunksize(square, 0..50u64, 7)?.count(), 50);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_unordered_chunksize<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.imap_unordered_with(f, items, IMapOptions::new().chunksize(chunksize))
    }

    /// [`imap_unordered`](Pool::imap_unordered) with a chunksize and a
    /// buffersize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{IMapOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let n = pool.imap_unordered_with(square, 0..50u64, IMapOptions::new().buffersize(3))?.count();
    /// assert_eq!(n, 50);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`imap_with`](Pool::imap_with).
    pub fn imap_unordered_with<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.stream(f, items.into_iter().map(Ok), options, false)
    }

    /// [`imap_with`](Pool::imap_with) over a fallible input (items read from
    /// a file or a socket, say): the first `Err` ends the stream, after the
    /// results of every item before it, as an
    /// [`ErrorKind::InvalidArgument`] error carrying its text.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ErrorKind, IMapOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let lines = ["1", "2", "x", "4"];
    /// let input = lines.iter().map(|l| l.parse::<u64>());
    /// let out: Vec<_> = pool.try_imap_with(square, input, IMapOptions::new())?.collect();
    /// assert_eq!(out.len(), 3);
    /// assert_eq!(*out[1].as_ref().unwrap(), 4);
    /// assert_eq!(out[2].as_ref().unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`imap_with`](Pool::imap_with).
    pub fn try_imap_with<'a, A, R, E, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: fmt::Display,
        I: IntoIterator<Item = std::result::Result<A, E>>,
        I::IntoIter: Send + 'a,
    {
        let items = items.into_iter().map(|r| r.map_err(|e| e.to_string()));
        self.stream(f, items, options, true)
    }

    /// [`imap_unordered_with`](Pool::imap_unordered_with) over a fallible
    /// input, as [`try_imap_with`](Pool::try_imap_with).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{IMapOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let input = (0..10u64).map(|x| if x < 5 { Ok(x) } else { Err("closed") });
    /// let out: Vec<_> = pool.try_imap_unordered_with(square, input, IMapOptions::new())?.collect();
    /// assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 5);
    /// assert!(out[5].is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`imap_with`](Pool::imap_with).
    pub fn try_imap_unordered_with<'a, A, R, E, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: fmt::Display,
        I: IntoIterator<Item = std::result::Result<A, E>>,
        I::IntoIter: Send + 'a,
    {
        let items = items.into_iter().map(|r| r.map_err(|e| e.to_string()));
        self.stream(f, items, options, false)
    }

    fn stream<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
        ordered: bool,
    ) -> Result<IMapIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: Iterator<Item = std::result::Result<A, String>> + Send + 'a,
    {
        Pool::check_chunksize(options.chunksize)?;
        if options.buffersize == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "buffersize must be at least 1",
            ));
        }
        self.check_running()?;
        let remaining = match items.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let stream = Stream::<R>::new(ordered, Some(self.helper()));
        let s = Arc::clone(&stream);
        let deliver: Arc<Deliver> = Arc::new(
            move |first: usize, n: usize, outcome: Result<&[u8]>, stats: &Counters| {
                let items = task::chunk_result::<R>(n, outcome);
                stats.count(matches!(items, ChunkResult::All(_)));
                s.deliver(first, n, items);
            },
        );
        let source = Source {
            items,
            f: FnRef::new(f),
            chunksize: options.chunksize,
            template: task::head_template(&task::tramp_chunk::<A, R>())?,
            shared: Arc::clone(&self.shared),
            deliver,
            next: 0,
            chunk: Vec::new(),
        };
        let mut it = IMapIter {
            stream,
            local: VecDeque::new(),
            feed: Some(Box::new(source)),
            failure: None,
            buffersize: options
                .buffersize
                .unwrap_or(DEFAULT_BUFFER_PER_PROCESS * self.processes()),
            in_flight: 0,
            pending_items: 0,
            remaining,
        };
        // The workers start on the first chunks at once.
        it.top_up();
        Ok(it)
    }
}
