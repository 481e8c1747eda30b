//! `map`, `imap` and `imap_unordered` over 1,000,000 items, with a progress
//! bar driven by `imap` as results stream in.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use multiproc::Pool;

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

    // imap: results in order, as they arrive; drives the progress bar.
    let bar = ProgressBar::new(ITEMS);
    bar.set_style(
        ProgressStyle::with_template("imap          : [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let mut total = 0u128;
    for (i, r) in pool.imap_chunksize(square, 0..ITEMS, 10_000)?.enumerate() {
        let v = r?;
        assert_eq!(v, (i as u64) * (i as u64), "imap keeps input order");
        total += u128::from(v);
        if i % 10_000 == 9_999 {
            bar.inc(10_000);
        }
    }
    bar.finish();
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

    pool.close();
    pool.join()?;
    Ok(())
}
