//! Progress bars on result streams (feature `progress`, through
//! `indicatif`): Python users wrap `imap` in tqdm by hand; here it is one
//! call.

use indicatif::{ProgressBar, ProgressStyle};

use crate::executor::ExecutorMap;
use crate::imap::IMapIter;

/// A result stream that draws a progress bar on stderr as it is consumed
/// (see [`IMapIter::progress`]).
///
/// The bar's length is the input's, when the input told it (a range, a
/// `Vec`, any `ExactSizeIterator`); otherwise it counts results without a
/// total. It finishes when the stream ends, and is cleared from the
/// terminal if the stream is dropped before.
#[derive(Debug)]
pub struct Progress<I> {
    inner: I,
    bar: ProgressBar,
}

impl<I: Iterator> Progress<I> {
    fn new(inner: I) -> Progress<I> {
        let bar = match inner.size_hint() {
            (_, Some(n)) => {
                let bar = counting_bar();
                bar.set_length(n as u64);
                bar
            }
            (_, None) => ProgressBar::new_spinner(),
        };
        Progress { inner, bar }
    }

    /// The bar, to restyle it or to print above it.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let next = self.inner.next();
        match next {
            Some(_) => self.bar.inc(1),
            None => self.bar.finish(),
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A bar on stderr that counts items towards a length set later:
/// elapsed time, the bar, position/length, rate and ETA.
pub(crate) fn counting_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

impl<'a, R> IMapIter<'a, R> {
    /// Shows a progress bar on stderr as results are consumed (feature
    /// `progress`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Pool::new(2)?;
    /// let total: u64 = pool
    ///     .imap_chunksize(square, 0..10_000u64, 100)?
    ///     .progress()
    ///     .map(|r| r.unwrap())
    ///     .sum();
    /// assert_eq!(total, (0..10_000u64).map(square).sum());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn progress(self) -> Progress<IMapIter<'a, R>> {
        Progress::new(self)
    }
}

impl<'a, R> ExecutorMap<'a, R> {
    /// Shows a progress bar on stderr as results are consumed (feature
    /// `progress`), as [`IMapIter::progress`].
    pub fn progress(self) -> Progress<ExecutorMap<'a, R>> {
        Progress::new(self)
    }
}
