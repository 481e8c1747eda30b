//! `SharedBytes` arguments: read in place by the worker when they travel in
//! a block, and a block a task kept is never reused under it.

use std::sync::Mutex;

use multiproc_ipc::SharedBytes;
use multiproc_pool::Pool;
use multiproc_testkit::{checked, LIMIT};

/// Above the pool's inline limit (512 KiB): travels in a block.
const LARGE: usize = 1 << 20;

fn sum_and_in_place(b: SharedBytes) -> (u64, usize, bool) {
    (
        b.iter().map(|&x| u64::from(x)).sum(),
        b.len(),
        b.is_in_place(),
    )
}

#[test]
fn a_large_argument_is_read_in_place_and_a_small_one_is_copied() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let large = SharedBytes::from(vec![3u8; LARGE]);
        for _ in 0..3 {
            // The parent reuses the block: the worker keeps its mapping.
            let got = pool.apply(sum_and_in_place, large.clone()).unwrap();
            assert_eq!(got, (3 * LARGE as u64, LARGE, true));
        }
        let small = SharedBytes::from(&b"abc"[..]);
        assert_eq!(
            pool.apply(sum_and_in_place, small).unwrap(),
            (294, 3, false)
        );
        // Inside a larger argument, and as map items in a large chunk.
        let items: Vec<SharedBytes> = (1..=3u8)
            .map(|i| SharedBytes::from(vec![i; 400 << 10]))
            .collect();
        let got = pool.map_chunksize(sum_and_in_place, items, 3).unwrap();
        let want: Vec<_> = (1..=3u64)
            .map(|i| (i * (400 << 10), 400 << 10, true))
            .collect();
        assert_eq!(got, want);
        pool.close();
        pool.join().unwrap();
    });
}

/// What the worker's tasks kept (a worker is one process: its own static).
static KEPT: Mutex<Vec<SharedBytes>> = Mutex::new(Vec::new());

fn keep(b: SharedBytes) -> bool {
    let in_place = b.is_in_place();
    KEPT.lock().unwrap().push(b);
    in_place
}

fn kept_sums(_: ()) -> Vec<u64> {
    KEPT.lock()
        .unwrap()
        .iter()
        .map(|b| b.iter().map(|&x| u64::from(x)).sum())
        .collect()
}

#[test]
fn a_block_a_task_kept_is_not_reused_for_the_next_argument() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        for fill in 1..=3u8 {
            assert!(pool
                .apply(keep, SharedBytes::from(vec![fill; LARGE]))
                .unwrap());
        }
        // Had the parent reused the first block for the second argument,
        // the first kept bytes would now read 2s (or 3s).
        let want: Vec<u64> = (1..=3u64).map(|f| f * LARGE as u64).collect();
        assert_eq!(pool.apply(kept_sums, ()).unwrap(), want);
        pool.close();
        pool.join().unwrap();
    });
}
