//! Progress bars (feature `progress`): the bar of a lazy stream moves as
//! results are consumed, the bar of an eager submission as items finish,
//! and each ends finished at the number of items, failures included.

use multiproc_pool::indicatif::ProgressBar;
use multiproc_pool::{ApplyOptions, ErrorKind, Executor, Pool};
use multiproc_testkit::{checked, LIMIT};

fn square(x: u64) -> u64 {
    x * x
}

fn fails_on_13(x: u64) -> u64 {
    assert_ne!(x, 13, "thirteen");
    x
}

#[test]
fn an_eager_map_moves_the_bar_to_every_item_without_anybody_consuming() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let bar = ProgressBar::hidden();
        let r = pool
            .map_async_with(
                square,
                0..1_000u64,
                Some(7),
                ApplyOptions::new().progress_bar(bar.clone()),
            )
            .unwrap();
        r.wait();
        // The result is ready, and nobody has read it: the bar is full.
        assert_eq!(bar.length(), Some(1_000));
        assert_eq!(bar.position(), 1_000);
        assert!(bar.is_finished());
        let squares = r.get().unwrap();
        assert_eq!(squares[999], 999 * 999);
    });
}

#[test]
fn a_failed_map_still_counts_every_item() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let bar = ProgressBar::hidden();
        let err = pool
            .map_async_with(
                fails_on_13,
                0..100u64,
                Some(10),
                ApplyOptions::new().progress_bar(bar.clone()),
            )
            .unwrap()
            .get()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskPanicked);
        assert_eq!((bar.position(), bar.length()), (100, Some(100)));
        assert!(bar.is_finished());
    });
}

#[test]
fn an_empty_map_finishes_its_bar_at_once() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let bar = ProgressBar::hidden();
        let r = pool
            .map_async_with(
                square,
                Vec::<u64>::new(),
                None,
                ApplyOptions::new().progress_bar(bar.clone()),
            )
            .unwrap();
        assert!(r.get().unwrap().is_empty());
        assert_eq!((bar.position(), bar.length()), (0, Some(0)));
        assert!(bar.is_finished());
    });
}

#[test]
fn an_apply_counts_its_one_task() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let bar = ProgressBar::hidden();
        let r = pool
            .apply_async_with(square, 9, ApplyOptions::new().progress_bar(bar.clone()))
            .unwrap();
        assert_eq!(r.get().unwrap(), 81);
        assert_eq!((bar.position(), bar.length()), (1, Some(1)));
        assert!(bar.is_finished());
    });
}

#[test]
fn the_default_bar_is_accepted_by_map_and_apply() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let options = ApplyOptions::new().progress();
        assert!(format!("{options:?}").contains("progress: true"));
        let v = pool
            .map_async_with(square, 0..50u64, None, options)
            .unwrap()
            .get()
            .unwrap();
        assert_eq!(v.len(), 50);
        let r = pool.apply_async_with(square, 3, ApplyOptions::new().progress());
        assert_eq!(r.unwrap().get().unwrap(), 9);
        assert!(format!("{:?}", ApplyOptions::<u64>::new()).contains("progress: false"));
    });
}

#[test]
fn a_lazy_stream_moves_its_bar_as_results_are_consumed() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        for ordered in [true, false] {
            let it = if ordered {
                pool.imap_chunksize(square, 0..300u64, 10).unwrap()
            } else {
                pool.imap_unordered_chunksize(square, 0..300u64, 10)
                    .unwrap()
            };
            let mut it = it.progress();
            assert_eq!(it.bar().length(), Some(300));
            let first: Vec<_> = it.by_ref().take(120).collect();
            assert_eq!(first.len(), 120);
            assert_eq!(it.bar().position(), 120);
            assert!(!it.bar().is_finished());
            assert_eq!(it.by_ref().count(), 180);
            assert_eq!(it.bar().position(), 300);
            assert!(it.bar().is_finished());
        }
    });
}

#[test]
fn an_executor_map_moves_its_bar() {
    checked(LIMIT, || {
        let ex = Executor::new(2).unwrap();
        let mut it = ex.map(square, 0..40u64).unwrap().progress();
        assert_eq!(it.bar().length(), Some(40));
        let total: u64 = it.by_ref().map(|r| r.unwrap()).sum();
        assert_eq!(total, (0..40u64).map(square).sum());
        assert_eq!(it.bar().position(), 40);
        assert!(it.bar().is_finished());
    });
}
