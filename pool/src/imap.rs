//! `imap` and `imap_unordered`: lazy streams of results.

use std::sync::Arc;

use multiproc_ipc::{FnRef, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::map::Deliver;
use crate::pool::Pool;
use crate::result::{IMapIter, Stream};
use crate::task::{self, ChunkResult};

impl Pool {
    /// Lazily ordered results of `f` over `items` (Python's `imap`, chunksize 1).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut it = pool.imap(square, 0..3u64)?;
    /// assert_eq!(it.next().unwrap()?, 0);
    /// assert_eq!(it.next().unwrap()?, 1);
    /// assert_eq!(it.next().unwrap()?, 4);
    /// assert!(it.next().is_none());
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_chunksize(f, items, 1)
    }

    /// [`imap`](Pool::imap) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let v: Vec<u64> = pool.imap_chunksize(square, 0..100u64, 10)?.map(|r| r.unwrap()).collect();
    /// assert_eq!(v[99], 9801);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.stream(f, items, chunksize, true)
    }

    /// Results of `f` over `items` in completion order (Python's
    /// `imap_unordered`, chunksize 1); every input yields exactly once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut v: Vec<u64> = pool.imap_unordered(square, 0..5u64)?.map(|r| r.unwrap()).collect();
    /// v.sort();
    /// assert_eq!(v, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.imap_unordered_chunksize(square, 0..50u64, 7)?.count(), 50);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_unordered_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.stream(f, items, chunksize, false)
    }

    pub(crate) fn stream<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::check_chunksize(chunksize)?;
        self.check_running()?;
        let items: Vec<A> = items.into_iter().collect();
        let total = items.len();
        let stream = Stream::<R>::new(ordered, Some(self.helper()));
        let s = Arc::clone(&stream);
        let deliver: Arc<Deliver<R>> =
            Arc::new(move |first: usize, v: ChunkResult<R>| s.deliver(first, v.into_items()));
        self.submit_chunked(
            &task::tramp_chunk::<A, R>(),
            FnRef::new(f),
            &items,
            chunksize,
            None,
            deliver,
        )?;
        Ok(IMapIter::new(stream, total))
    }
}
