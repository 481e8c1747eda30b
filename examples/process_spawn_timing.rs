//! Times `Process::spawn` + `join` of a trivial function, forking directly
//! and through the fork server (`multiproc::init`).
//!
//! `cargo run --release --example process_spawn_timing [count]`

use std::time::Instant;

use multiproc::Process;

fn add_one(x: u64) -> u64 {
    x + 1
}

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run(n: usize) -> multiproc::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let r = Process::spawn(add_one, i)?.join()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, i + 1);
    }
    Ok(median_us(times))
}

fn main() -> multiproc::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    // Direct forks create no thread, so init() below still finds one thread.
    let direct = run(n)?;
    println!("Process spawn+join, plain fork:   median {direct:.0} us over {n}");
    multiproc::init()?;
    let server = run(n)?;
    println!("Process spawn+join, fork server:  median {server:.0} us over {n}");
    Ok(())
}
