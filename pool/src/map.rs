//! `map`, `map_async`, `starmap`: eager submission of chunked inputs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_ipc::{codec, Error, ErrorKind, FnRef, Result, StarFn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::collector::dispatch_new;
use crate::options::{auto_chunksize, run_guarded, ApplyOptions};
use crate::pool::Pool;
use crate::result::{AsyncResult, Cell};
use crate::shared::{check_state, lock, Completion, Counters, Encoded, Shared};
use crate::task::{self, ChunkResult};

/// Receives the outcome of a chunk: the index of its first item, its number
/// of items, and the worker's bytes (decoded by the receiver, which knows
/// where the items go) or the error that failed the whole chunk. It counts
/// the chunk in the totals it is given before it resolves anything.
pub(crate) type Deliver = dyn Fn(usize, usize, Result<&[u8]>, &Counters) + Send + Sync;

/// A map submits its chunks in batches of this many chunks...
pub(crate) const BATCH_CHUNKS: usize = 256;

/// ...or of this many items, whichever comes first.
pub(crate) const BATCH_ITEMS: usize = 16 * 1024;

impl Shared {
    /// Submits a batch of the chunks of a map; `deliver(first_index,
    /// results)` receives each chunk's item results in the parent. A pool
    /// that stopped running fails the submission, or, for a `later` batch
    /// (the map's first chunks are already running), fails its chunks.
    pub(crate) fn submit_chunks(
        &self,
        chunks: Vec<(usize, Result<Encoded>, usize)>,
        timeout: Option<Duration>,
        deliver: &Arc<Deliver>,
        later: bool,
    ) -> Result<()> {
        let timeout = timeout.or(self.config.task_timeout);
        let mut failed = Vec::new();
        {
            let mut g = lock(&self.inner);
            if let Err(e) = check_state(&g) {
                drop(g);
                if !later {
                    return Err(e);
                }
                // Never submitted: not counted.
                let uncounted = Counters::default();
                for (first, _, n) in chunks {
                    deliver(first, n, Err(e.clone()), &uncounted);
                }
                return Ok(());
            }
            let tasks = chunks.into_iter().filter_map(|(first, body, n)| {
                let (id, record, block) = match body {
                    Ok(b) => b,
                    Err(e) => {
                        failed.push((first, n, e));
                        return None;
                    }
                };
                let complete = Completion::chunk(Arc::clone(deliver), first, n);
                Some(((id, record, block), complete))
            });
            dispatch_new(self, &mut g, timeout, tasks);
        }
        let uncounted = Counters::default();
        for (first, n, e) in failed {
            deliver(first, n, Err(e), &uncounted);
        }
        Ok(())
    }
}

impl Pool {
    /// Encodes the chunks of `chunksize` items of `items` as records for
    /// `f` (with the trampoline's `template`), one per call, with their
    /// numbers of items: for [`submit_batched`](Pool::submit_batched).
    fn slice_chunks<'a, F, A>(
        &'a self,
        template: &'a [u8],
        f: F,
        items: &'a [A],
        chunksize: usize,
    ) -> impl FnMut() -> Option<(Result<Encoded>, usize)> + 'a
    where
        F: Serialize + Copy + 'a,
        A: Serialize + 'static,
    {
        let mut chunks = items.chunks(chunksize.max(1));
        move || {
            let chunk = chunks.next()?;
            let body = task::chunk_body(f, chunk);
            Some((self.shared.build_record(template, &body), chunk.len()))
        }
    }

    /// As [`slice_chunks`](Pool::slice_chunks) for plain numbers pulled
    /// from `items`, after `head` (the function, encoded once for every
    /// chunk): each chunk's items are written straight into its record (or
    /// its block) as they are pulled, never collected.
    fn streamed_chunks<'a, A: 'static>(
        &'a self,
        template: &'a [u8],
        head: codec::PlainHead<A>,
        items: impl Iterator<Item = A> + 'a,
        chunksize: usize,
    ) -> impl FnMut() -> Option<(Result<Encoded>, usize)> + 'a {
        let chunksize = chunksize.max(1);
        let mut items = items.peekable();
        move || {
            items.peek()?;
            Some(
                match self
                    .shared
                    .build_plain_chunk(template, &head, chunksize, &mut items)
                {
                    Ok((record, n)) => (Ok(record), n),
                    // The chunk's items fail with the error, in their places.
                    Err(e) => (Err(e), items.by_ref().take(chunksize).count()),
                },
            )
        }
    }

    /// Submits the chunks `next` encodes (a record and its number of
    /// items) as they are encoded, in batches of [`BATCH_CHUNKS`] chunks or
    /// [`BATCH_ITEMS`] items, so that the workers start on the first chunks
    /// while the parent encodes the rest; `chunks` is how many are
    /// expected. Returns how many items were submitted.
    fn submit_batched(
        &self,
        mut next: impl FnMut() -> Option<(Result<Encoded>, usize)>,
        chunks: usize,
        timeout: Option<Duration>,
        deliver: &Arc<Deliver>,
    ) -> Result<usize> {
        let per_batch = BATCH_CHUNKS.min(chunks.max(1));
        let mut batch = Vec::with_capacity(per_batch);
        let (mut first, mut batch_items, mut later) = (0, 0, false);
        while let Some((record, n)) = next() {
            batch.push((first, record, n));
            first += n;
            batch_items += n;
            if batch_items >= BATCH_ITEMS || batch.len() >= BATCH_CHUNKS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(per_batch));
                self.shared.submit_chunks(full, timeout, deliver, later)?;
                later = true;
                batch_items = 0;
            }
        }
        if !batch.is_empty() {
            self.shared.submit_chunks(batch, timeout, deliver, later)?;
        }
        Ok(first)
    }

    pub(crate) fn check_chunksize(chunksize: usize) -> Result<()> {
        if chunksize == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "chunksize must be at least 1",
            ));
        }
        Ok(())
    }

    /// Applies `f` to every item in parallel and returns the results in
    /// order (Python's `map`, with its automatic chunksize).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(square, vec![1u64, 2, 3])?, vec![1, 4, 9]);
    /// assert!(pool.map(square, Vec::<u64>::new())?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`; otherwise the
    /// error of the first failed item (in input order).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Pool::map) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map_chunksize(square, 0..4u64, 1)?, vec![0, 1, 4, 9]);
    /// assert!(pool.map_chunksize(square, 0..4u64, 0).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; otherwise as [`map`](Pool::map).
    pub fn map_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::check_chunksize(chunksize)?;
        self.map_async_with(f, items, Some(chunksize), ApplyOptions::new())?
            .get()
    }

    /// Submits a `map` and returns at once; the [`AsyncResult`] resolves to
    /// all results in order, or to the first error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let r = pool.map_async(square, 0..100u64)?;
    /// assert_eq!(r.get()?.len(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map), for submission.
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, None, ApplyOptions::new())
    }

    /// [`map_async`](Pool::map_async) with a chunksize (`None`: automatic),
    /// callbacks (on the whole result list) and a per-chunk timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ApplyOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let r = pool.map_async_with(square, 0..10u64, Some(3),
    ///     ApplyOptions::new().callback(|v: &Vec<u64>| assert_eq!(v.len(), 10)))?;
    /// assert_eq!(r.get()?[9], 81);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a zero chunksize; as [`map`](Pool::map).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        options: ApplyOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_ref(FnRef::new(f), items, chunksize, options)
    }

    fn map_ref<A, R, I>(
        &self,
        f: FnRef<A, R>,
        items: I,
        chunksize: Option<usize>,
        options: ApplyOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.check_running()?;
        let items = items.into_iter();
        let template = task::head_template(&task::tramp_chunk::<A, R>())?;
        let exact = match items.size_hint() {
            (n, Some(m)) if n == m && n > 0 => Some(n),
            _ => None,
        };
        // `None` unless the items are plain numbers.
        match exact.and_then(|n| Some((n, codec::PlainHead::<A>::new(&f)?))) {
            // Plain numbers whose count is known: each chunk pulls its items
            // straight into its record (a range is never materialized). An
            // iterator whose count was wrong still maps every item it yields.
            Some((n, head)) => {
                let cs = chunksize.unwrap_or_else(|| auto_chunksize(n, self.processes()));
                Pool::check_chunksize(cs)?;
                let next = self.streamed_chunks(&template, head?, items, cs);
                self.gather(n, options, |deliver, timeout| {
                    self.submit_batched(next, n.div_ceil(cs), timeout, &deliver)
                })
            }
            None => {
                let items: Vec<A> = items.collect();
                let cs = chunksize.unwrap_or_else(|| auto_chunksize(items.len(), self.processes()));
                Pool::check_chunksize(cs)?;
                let next = self.slice_chunks(&template, f, &items, cs);
                self.gather(items.len(), options, |deliver, timeout| {
                    self.submit_batched(next, items.len().div_ceil(cs), timeout, &deliver)
                })
            }
        }
    }

    /// Applies `f` to every tuple of arguments (Python's `starmap`), in
    /// order: `f` is a fn item or non-capturing closure of one to six
    /// arguments, and each item is the tuple of its arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn add(a: u64, b: u64) -> u64 { a + b }
    /// fn clamp(x: i64, lo: i64, hi: i64) -> i64 { x.clamp(lo, hi) }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, vec![(1u64, 2u64), (3, 4)])?, vec![3, 7]);
    /// assert_eq!(pool.starmap(clamp, vec![(5, 0, 3), (-2, 0, 3)])?, vec![3, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, items, None)?.get()
    }

    /// Submits a `starmap` with an optional chunksize and returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn add(a: u64, b: u64) -> u64 { a + b }
    /// let pool = Pool::new(2)?;
    /// let r = pool.starmap_async(add, vec![(1u64, 2u64), (3, 4)], Some(1))?;
    /// assert_eq!(r.get()?, vec![3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map_async_with`](Pool::map_async_with).
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.map_ref(f.into_fn_ref(), items, chunksize, ApplyOptions::new())
    }

    /// Gathers the results of `total` items, submitted in chunks by
    /// `submit(deliver, timeout)`, into one ordered list.
    pub(crate) fn gather<R>(
        &self,
        total: usize,
        options: ApplyOptions<Vec<R>>,
        submit: impl FnOnce(Arc<Deliver>, Option<Duration>) -> Result<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let cell = Cell::<Vec<R>>::new(Some(self.helper()));
        let ApplyOptions {
            callback,
            error_callback,
            timeout,
            progress,
        } = options;
        progress.start(total);
        let panics = Arc::clone(&self.shared.callback_panics);
        let finish = {
            let cell = Arc::clone(&cell);
            move |res: Result<Vec<R>>| {
                match &res {
                    Ok(v) => {
                        if let Some(cb) = callback {
                            run_guarded(&panics, || cb(v));
                        }
                    }
                    Err(e) => {
                        if let Some(cb) = error_callback {
                            run_guarded(&panics, || cb(e));
                        }
                    }
                }
                cell.resolve(res);
            }
        };
        if total == 0 {
            finish(Ok(Vec::new()));
            return Ok(AsyncResult::from_cell(cell, None));
        }
        let mut all = Vec::with_capacity(total);
        multiproc_ipc::heap::prefer_huge_pages(&mut all);
        let state = Arc::new(Mutex::new(Gather::<R> {
            // Filled in order, straight from the workers' bytes.
            all,
            early: BTreeMap::new(),
            first_error: None,
            received: 0,
            expected: None,
        }));
        let finish = Arc::new(Mutex::new(Some(finish)));
        let deliver = {
            let (state, finish) = (Arc::clone(&state), Arc::clone(&finish));
            Arc::new(
                move |first: usize, n: usize, outcome: Result<&[u8]>, stats: &Counters| {
                    progress.advance(n);
                    let done = {
                        let mut g = lock(&state);
                        let ok = g.take(first, n, outcome);
                        stats.count(ok);
                        g.received += n;
                        g.done()
                    };
                    finish_once(&finish, done);
                },
            )
        };
        let submitted = submit(deliver, timeout)?;
        // Every chunk may be in already.
        let done = {
            let mut g = lock(&state);
            g.expected = Some(submitted);
            g.done()
        };
        finish_once(&finish, done);
        Ok(AsyncResult::from_cell(cell, None))
    }
}

/// Runs `finish` with the map's result, if there is one now (outside the
/// gather's lock: it runs the user's callbacks), and only once.
fn finish_once<T, F: FnOnce(T)>(finish: &Mutex<Option<F>>, res: Option<T>) {
    if let Some(res) = res {
        if let Some(f) = lock(finish).take() {
            f(res);
        }
    }
}

/// The results of a map as its chunks come in.
struct Gather<R> {
    /// The results of items `0..all.len()`, in order: a chunk that comes in
    /// order is decoded straight onto its end. Plain numbers are placed
    /// where they belong whatever the order (zeros stand for the items of
    /// chunks yet to come: the map is done when every item has come in).
    all: Vec<R>,
    /// Chunks that came before an earlier one, by their first item's index.
    early: BTreeMap<usize, Vec<R>>,
    /// The first failed item (in input order) and its error.
    first_error: Option<(usize, Error)>,
    /// Items whose chunk has come in.
    received: usize,
    /// Items submitted, once the submission is over (an input iterator
    /// may yield more or fewer items than its size hint said).
    expected: Option<usize>,
}

impl<R: DeserializeOwned + 'static> Gather<R> {
    /// Takes in the outcome of the chunk of `n` items from `first`; true if
    /// every item succeeded.
    fn take(&mut self, first: usize, n: usize, outcome: Result<&[u8]>) -> bool {
        let bytes = match outcome {
            Ok(bytes) => bytes,
            Err(e) => {
                self.failed_at(first, e);
                return false;
            }
        };
        // Plain numbers go straight to their place in `all`, in whatever
        // order the chunks come (no vector of their own); other results
        // only onto its end.
        if self.first_error.is_none() && (first == self.all.len() || codec::is_plain::<R>()) {
            match task::decode_chunk_at(bytes, n, &mut self.all, first) {
                Ok(()) => {
                    while let Some(v) = self.early.remove(&self.all.len()) {
                        self.all.extend(v);
                    }
                    return true;
                }
                Err(items) => return self.take_items(first, items),
            }
        }
        if self.first_error.as_ref().is_some_and(|(at, _)| *at < first) {
            // The map has failed before this chunk: it can only count.
            return matches!(task::decode_chunk::<R>(bytes, n), ChunkResult::All(_));
        }
        self.take_items(first, task::decode_chunk(bytes, n))
    }

    /// Takes in the decoded results of the chunk from `first`.
    fn take_items(&mut self, first: usize, items: ChunkResult<R>) -> bool {
        match items {
            ChunkResult::All(v) => {
                if self.first_error.is_none() {
                    self.early.insert(first, v);
                }
                true
            }
            ChunkResult::Mixed(items) => {
                if let Some((i, e)) = items
                    .into_iter()
                    .enumerate()
                    .find_map(|(i, r)| r.err().map(|e| (i, e)))
                {
                    self.failed_at(first + i, e);
                }
                false
            }
        }
    }

    /// Item `at` failed with `e`: the map's error if no earlier item failed.
    fn failed_at(&mut self, at: usize, e: Error) {
        if self.first_error.as_ref().is_none_or(|(j, _)| at < *j) {
            self.first_error = Some((at, e));
            // The map fails: its results are never read.
            self.all = Vec::new();
            self.early.clear();
        }
    }

    /// The map's result, once every chunk submitted has come in.
    fn done(&mut self) -> Option<Result<Vec<R>>> {
        let total = self.expected.filter(|&n| n == self.received)?;
        Some(self.finish(total))
    }

    /// The map's result from the chunks of `total` items.
    fn finish(&mut self, total: usize) -> Result<Vec<R>> {
        if let Some((_, e)) = self.first_error.take() {
            return Err(e);
        }
        if self.all.len() != total || !self.early.is_empty() {
            return Err(Error::new(
                ErrorKind::Serialization,
                format!(
                    "the chunks of a map of {total} items carried {} results",
                    self.all.len() + self.early.values().map(Vec::len).sum::<usize>()
                ),
            ));
        }
        Ok(std::mem::take(&mut self.all))
    }
}

#[cfg(test)]
mod tests {
    use multiproc_ipc::codec::{self, PlainSlice};
    use multiproc_ipc::{Error, ErrorKind, FnRef};

    use super::Gather;
    use crate::task::{tramp_chunk, TaskBody};

    fn triple(x: u64) -> u64 {
        3 * x
    }

    /// The worker's outcome bytes for `triple` over `items`.
    fn chunk(items: &[u64]) -> Vec<u8> {
        let body = codec::encode(&(FnRef::new(triple), PlainSlice(items))).unwrap();
        tramp_chunk::<u64, u64>()
            .call(TaskBody::Inline(body))
            .unwrap()
    }

    fn gather<R>(total: usize) -> Gather<R> {
        Gather {
            all: Vec::with_capacity(total),
            early: Default::default(),
            first_error: None,
            received: 0,
            expected: Some(total),
        }
    }

    /// Takes in a chunk as the map's delivery does: counted, then checked
    /// for the end.
    fn deliver<R: serde::de::DeserializeOwned + 'static>(
        g: &mut Gather<R>,
        first: usize,
        n: usize,
        bytes: &[u8],
    ) -> (bool, Option<multiproc_ipc::Result<Vec<R>>>) {
        let ok = g.take(first, n, Ok(bytes));
        g.received += n;
        (ok, g.done())
    }

    fn shout(s: String) -> String {
        s.to_uppercase()
    }

    /// The worker's outcome bytes for `shout` over `words` (results that
    /// are not plain numbers).
    fn words(words: &[&str]) -> Vec<u8> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let body = codec::encode(&(FnRef::new(shout), PlainSlice(&words))).unwrap();
        tramp_chunk::<String, String>()
            .call(TaskBody::Inline(body))
            .unwrap()
    }

    #[test]
    fn chunks_in_any_order_come_out_in_input_order() {
        let mut g = gather::<u64>(7);
        for (first, items) in [(5, &[5u64, 6][..]), (2, &[2, 3, 4][..])] {
            let (ok, done) = deliver(&mut g, first, items.len(), &chunk(items));
            assert!(ok && done.is_none());
        }
        assert!(
            g.early.is_empty(),
            "plain numbers go straight to their place"
        );
        let (ok, done) = deliver(&mut g, 0, 2, &chunk(&[0, 1]));
        assert!(ok);
        assert_eq!(done.unwrap().unwrap(), [0, 3, 6, 9, 12, 15, 18]);
        // Other results wait for the chunks before them.
        let mut g = gather::<String>(3);
        assert!(deliver(&mut g, 1, 2, &words(&["b", "c"])).1.is_none());
        assert!(g.all.is_empty(), "nothing is in order yet");
        let done = deliver(&mut g, 0, 1, &words(&["a"])).1;
        assert_eq!(done.unwrap().unwrap(), ["A", "B", "C"]);
    }

    #[test]
    fn the_error_of_the_first_failed_item_in_input_order_wins() {
        let mut g = gather::<u64>(6);
        assert!(g.take(0, 2, Ok(&chunk(&[0, 1]))));
        let late = Error::new(ErrorKind::WorkerLost, "late");
        assert!(!g.take(4, 2, Err(late)));
        let early = Error::new(ErrorKind::TaskPanicked, "early");
        assert!(!g.take(2, 2, Err(early)));
        assert!(g.all.is_empty(), "a failed map keeps no results");
        // A chunk after the error only counts.
        assert!(g.take(6, 1, Ok(&chunk(&[6]))));
        assert_eq!(g.finish(7).unwrap_err().kind(), ErrorKind::TaskPanicked);
    }

    #[test]
    fn missing_results_are_an_error_not_a_short_list() {
        let mut g = gather::<u64>(3);
        // A chunk that claims two items but carries one.
        let (ok, done) = deliver(&mut g, 0, 2, &chunk(&[0]));
        assert!(!ok && done.is_none());
        let (ok, done) = deliver(&mut g, 2, 1, &chunk(&[2]));
        assert!(ok);
        assert_eq!(done.unwrap().unwrap_err().kind(), ErrorKind::Serialization);
        // Chunks that never cover the start.
        let mut g = gather::<String>(3);
        assert!(g.take(1, 2, Ok(&words(&["b", "c"]))));
        assert_eq!(g.finish(3).unwrap_err().kind(), ErrorKind::Serialization);
    }
}
