//! `map`, `imap` and `imap_unordered` over 1,000,000 items, with progress
//! bars (feature `progress`: `cargo run --release --features progress
//! --example pool_map`): on an eager `map` as chunks finish
//! (`ApplyOptions::progress`), and on `imap` as results stream in
//! (`.progress()`).

use std::time::Instant;

use multiproc::{ApplyOptions, Pool};

const ITEMS: u64 = 1_000_000;

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(4)?;
    let expected: u128 = (0..ITEMS as u128).map(|x| x * x).sum();

    // map: everything at once, in order (automatic chunksize, as in Python).
    let t = Instant::now();
    let squares = pool.map(square, 0..ITEMS)?;
    let total: u128 = squares.iter().map(|&v| u128::from(v)).sum();
    assert_eq!(total, expected);
    println!(
        "map           : {} results in {:?}",
        squares.len(),
        t.elapsed()
    );

    // imap: results in order, as they arrive, with a progress bar (the
    // input's length gives the bar's).
    let t = Instant::now();
    let mut total = 0u128;
    let results = pool.imap_chunksize(square, 0..ITEMS, 10_000)?.progress();
    for (i, r) in results.enumerate() {
        let v = r?;
        assert_eq!(v, (i as u64) * (i as u64), "imap keeps input order");
        total += u128::from(v);
    }
    assert_eq!(total, expected);
    println!(
        "imap          : {ITEMS} in-order results in {:?}",
        t.elapsed()
    );

    // imap_unordered: completion order; every input exactly once.
    let t = Instant::now();
    let mut seen = vec![false; ITEMS as usize];
    for r in pool.imap_unordered_chunksize(square, 0..ITEMS, 10_000)? {
        let v = r?;
        let root = (v as f64).sqrt().round() as usize;
        assert!(!seen[root], "each input yields exactly once");
        seen[root] = true;
    }
    assert!(seen.iter().all(|&s| s));
    println!(
        "imap_unordered: {ITEMS} results, each exactly once, in {:?}",
        t.elapsed()
    );

    // An eager map with a progress bar: it moves as chunks come back,
    // while this thread just waits for the whole list.
    let t = Instant::now();
    let squares = pool
        .map_async_with(
            square,
            0..ITEMS,
            Some(10_000),
            ApplyOptions::new().progress(),
        )?
        .get()?;
    assert_eq!(
        squares.iter().map(|&v| u128::from(v)).sum::<u128>(),
        expected
    );
    println!(
        "map + progress: {} results in {:?}",
        squares.len(),
        t.elapsed()
    );

    pool.close();
    pool.join()?;
    Ok(())
}
