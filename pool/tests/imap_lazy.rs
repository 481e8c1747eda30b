//! `imap` and `imap_unordered` read their input lazily, a bounded number of
//! chunks ahead of the consumer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc_pool::{ErrorKind, IMapOptions, Pool};
use multiproc_testkit::{checked, LIMIT};

fn square(x: u64) -> u64 {
    x * x
}

/// An endless input that counts the items read from it.
fn counted(pulled: &Arc<AtomicUsize>) -> impl Iterator<Item = u64> + Send + 'static {
    let pulled = Arc::clone(pulled);
    (0u64..).inspect(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    })
}

/// 0, 1, ... then a panic when item `at` is asked for.
fn panics_at(at: u64) -> impl Iterator<Item = u64> + Send + 'static {
    (0u64..).inspect(move |&i| {
        if i == at {
            panic!("the input ran dry at {i}");
        }
    })
}

#[test]
fn an_endless_input_yields_and_is_read_a_bounded_distance_ahead() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let (chunksize, buffersize) = (10, 4);
        let ahead = chunksize * buffersize;
        for ordered in [true, false] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let options = IMapOptions::new()
                .chunksize(chunksize)
                .buffersize(buffersize);
            let mut it = if ordered {
                pool.imap_with(square, counted(&pulled), options).unwrap()
            } else {
                pool.imap_unordered_with(square, counted(&pulled), options)
                    .unwrap()
            };
            let mut seen = std::collections::HashSet::new();
            for consumed in 1..=20_000usize {
                let v = it.next_timeout(Duration::from_secs(10)).unwrap().unwrap();
                if ordered {
                    assert_eq!(v, square(consumed as u64 - 1));
                }
                assert!(seen.insert(v), "{v} came twice");
                let read = pulled.load(Ordering::SeqCst);
                assert!(
                    read <= consumed + ahead,
                    "read {read} items for {consumed} results (at most {ahead} ahead)"
                );
            }
            let read = pulled.load(Ordering::SeqCst) as u64;
            assert!(
                seen.iter().all(|v| *v < square(read)),
                "a result of an unread input"
            );
            assert!(it.size_hint().1.is_none(), "an endless input has no end");
        }
    });
}

#[test]
fn the_first_result_comes_before_the_input_ends() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let first: Vec<u64> = pool
            .imap(square, 0u64..)
            .unwrap()
            .take(5)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(first, vec![0, 1, 4, 9, 16]);
    });
}

#[test]
fn a_panicking_input_yields_the_results_before_it_then_the_error() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        for ordered in [true, false] {
            for (chunksize, buffersize) in [(1, 1), (4, 3), (4, 100)] {
                let options = IMapOptions::new()
                    .chunksize(chunksize)
                    .buffersize(buffersize);
                let it = if ordered {
                    pool.imap_with(square, panics_at(25), options).unwrap()
                } else {
                    pool.imap_unordered_with(square, panics_at(25), options)
                        .unwrap()
                };
                let out: Vec<_> = it.collect();
                assert_eq!(out.len(), 26, "25 results and the error");
                let mut oks: Vec<u64> = out[..25].iter().map(|r| *r.as_ref().unwrap()).collect();
                if !ordered {
                    oks.sort_unstable();
                }
                assert_eq!(oks, (0..25u64).map(square).collect::<Vec<_>>());
                let e = out[25].as_ref().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
                assert!(e.to_string().contains("the input ran dry at 25"), "{e}");
                assert!(e.to_string().contains("item 25"), "{e}");
            }
        }
    });
}

#[test]
fn a_borrowed_input_works() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let data: Vec<u64> = (0..1_000).collect();
        let v: Vec<u64> = pool
            .imap_chunksize(square, data.iter().copied(), 7)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(v.len(), 1_000);
        assert_eq!(v[999], square(999));
    });
}

#[test]
fn zero_buffersize_is_invalid() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let e = pool
            .imap_with(square, 0..3u64, IMapOptions::new().buffersize(0))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = pool
            .imap_unordered_with(square, 0..3u64, IMapOptions::new().chunksize(0))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn a_failing_input_yields_the_results_before_it_then_the_error() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let input = || {
            (0..100u64).map(|i| {
                if i < 30 {
                    Ok(i)
                } else {
                    Err(format!("line {i} is not a number"))
                }
            })
        };
        for ordered in [true, false] {
            let options = IMapOptions::new().chunksize(4).buffersize(2);
            let it = if ordered {
                pool.try_imap_with(square, input(), options).unwrap()
            } else {
                pool.try_imap_unordered_with(square, input(), options)
                    .unwrap()
            };
            let out: Vec<_> = it.collect();
            assert_eq!(out.len(), 31);
            let mut oks: Vec<u64> = out[..30].iter().map(|r| *r.as_ref().unwrap()).collect();
            oks.sort_unstable();
            assert_eq!(oks, (0..30u64).map(square).collect::<Vec<_>>());
            let e = out[30].as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("line 30 is not a number"), "{e}");
        }
    });
}
