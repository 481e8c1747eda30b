//! map, map_async, imap, imap_unordered, starmap, chunksizes, large payloads.

use std::time::Duration;

use multiproc_pool::{ErrorKind, Pool};
use multiproc_testkit::{checked, LIMIT};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn jitter(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros((x * 7919) % 500));
    x
}

fn fail_on_7(x: u64) -> u64 {
    assert_ne!(x, 7, "seven");
    x
}

fn len_and_echo(v: Vec<u8>) -> (usize, Vec<u8>) {
    (v.len(), v)
}

#[test]
fn map_returns_results_in_order() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let out = pool.map(square, 0..10_000u64).unwrap();
        assert_eq!(out, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
        let out = pool.map_chunksize(jitter, 0..200u64, 1).unwrap();
        assert_eq!(out, (0..200).collect::<Vec<_>>());
        let out = pool.map_chunksize(square, 0..7u64, 100).unwrap();
        assert_eq!(out.len(), 7);
    });
}

/// An iterator of numbers whose size hint claims `claims` items (exactly)
/// while it yields `yields`.
struct Lying {
    next: u64,
    yields: u64,
    claims: usize,
}

impl Iterator for Lying {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        (self.next < self.yields).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claims, Some(self.claims))
    }
}

#[test]
fn numbers_are_mapped_as_they_are_pulled_even_from_a_wrong_size_hint() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        // Chunks of numbers pulled from a range: small (in the ring) and
        // large (in blocks, 80,000 numbers a chunk).
        let out = pool.map_chunksize(square, 0..200_000u64, 80_000).unwrap();
        assert!(out.iter().zip(0u64..).all(|(&y, x)| y == x * x));
        assert_eq!(out.len(), 200_000);
        for (yields, claims) in [(8, 5), (3, 8), (50_000, 10), (10, 100_000)] {
            let items = Lying {
                next: 0,
                yields,
                claims,
            };
            let out = pool.map_chunksize(square, items, 4).unwrap();
            let want: Vec<u64> = (0..yields).map(|x| x * x).collect();
            assert_eq!(out, want, "{yields} items under a hint of {claims}");
            let items = Lying {
                next: 0,
                yields,
                claims,
            };
            assert_eq!(
                pool.map(square, items).unwrap(),
                want,
                "automatic chunksize"
            );
        }
    });
}

#[test]
fn empty_inputs_give_empty_outputs() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
        assert_eq!(pool.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
        assert_eq!(
            pool.imap_unordered(square, Vec::<u64>::new())
                .unwrap()
                .count(),
            0
        );
        assert!(pool
            .starmap(add, Vec::<(u64, u64)>::new())
            .unwrap()
            .is_empty());
    });
}

#[test]
fn zero_chunksize_is_invalid() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        for e in [
            pool.map_chunksize(square, 0..3u64, 0).unwrap_err(),
            pool.imap_chunksize(square, 0..3u64, 0).unwrap_err(),
            pool.imap_unordered_chunksize(square, 0..3u64, 0)
                .unwrap_err(),
            pool.map_async_with(square, 0..3u64, Some(0), Default::default())
                .unwrap_err(),
            pool.starmap_async(add, vec![(1u64, 1u64)], Some(0))
                .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    });
}

#[test]
fn imap_yields_in_order_and_unordered_yields_each_exactly_once() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let v: Vec<u64> = pool
            .imap(jitter, 0..300u64)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(v, (0..300).collect::<Vec<_>>());
        let v: Vec<u64> = pool
            .imap_chunksize(jitter, 0..300u64, 7)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(v, (0..300).collect::<Vec<_>>());
        let it = pool.imap_unordered(jitter, 0..300u64).unwrap();
        let mut v: Vec<u64> = it.map(Result::unwrap).collect();
        v.sort_unstable();
        assert_eq!(v, (0..300).collect::<Vec<_>>());
    });
}

#[test]
fn imap_reports_failures_at_their_position() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let out: Vec<_> = pool.imap(fail_on_7, 0..10u64).unwrap().collect();
        for (i, r) in out.iter().enumerate() {
            if i == 7 {
                assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::TaskPanicked);
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u64);
            }
        }
        let e = pool.map(fail_on_7, 0..10u64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        assert!(e.panic_info().unwrap().message.contains("seven"));
        let mut it = pool.imap(jitter, vec![1u64]).unwrap();
        assert_eq!(
            it.next_timeout(Duration::from_secs(10)).unwrap().unwrap(),
            1
        );
        assert!(it.next_timeout(Duration::from_secs(1)).is_none());
    });
}

#[test]
fn starmap_applies_pairs() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let pairs: Vec<(u64, u64)> = (0..1000).map(|i| (i, 2 * i)).collect();
        let out = pool.starmap(add, pairs).unwrap();
        assert_eq!(out, (0..1000).map(|i| 3 * i).collect::<Vec<_>>());
        let r = pool
            .starmap_async(add, vec![(1u64, 1u64); 10], Some(3))
            .unwrap();
        assert_eq!(r.get().unwrap(), vec![2; 10]);
    });
}

#[test]
fn large_arguments_and_results_travel_through_shared_memory() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (n, back) = pool.apply(len_and_echo, big.clone()).unwrap();
        assert_eq!(n, big.len());
        assert_eq!(back, big);
        // Several at once, on both workers.
        let rs: Vec<_> = (0..4)
            .map(|_| pool.apply_async(len_and_echo, big.clone()).unwrap())
            .collect();
        for r in rs {
            assert_eq!(r.get().unwrap().0, big.len());
        }
    });
}

fn one(a: u64) -> u64 {
    a
}

fn six(a: u8, b: u16, c: u32, d: u64, e: i64, f: String) -> String {
    format!("{a}{b}{c}{d}{e}{f}")
}

fn three(a: u64, b: u64, c: u64) -> u64 {
    a * 100 + b * 10 + c
}

#[test]
fn starmap_and_starapply_take_one_to_six_arguments() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.starmap(one, vec![(7u64,), (8,)]).unwrap(), vec![7, 8]);
        assert_eq!(
            pool.starmap(three, (0..20u64).map(|i| (i % 10, 1, 2)))
                .unwrap()[3],
            312
        );
        let v = pool
            .starmap(six, vec![(1u8, 2u16, 3u32, 4u64, -5i64, "x".to_string())])
            .unwrap();
        assert_eq!(v, vec!["1234-5x".to_string()]);
        // Non-capturing closures work too.
        let sums = pool
            .starmap(|a: u64, b: u64| a + b, vec![(1, 2), (3, 4)])
            .unwrap();
        assert_eq!(sums, vec![3, 7]);
        assert_eq!(pool.starapply(three, (1, 2, 3)).unwrap(), 123);
        let r = pool
            .starapply_async(six, (9, 8, 7, 6, 5, "!".to_string()), Default::default())
            .unwrap();
        assert!(r.id().is_some());
        assert_eq!(r.get().unwrap(), "98765!");
        let e = pool
            .starapply(|_: u8, _: u8| -> u8 { panic!("two args") }, (1, 2))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    });
}
