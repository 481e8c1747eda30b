//! Where a large result travels: back in its argument's block when the
//! argument came in one, else in a block the worker makes. Observed by
//! watching `/dev/shm` for the blocks a pool creates (`mpp-<pool>-<maker>-n`).

use std::os::unix::ffi::OsStrExt;

use multiproc_pool::Pool;
use multiproc_testkit::{checked, LIMIT};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

fn triple(x: u64) -> u64 {
    3 * x
}

fn widen(x: u8) -> u64 {
    u64::from(x) << 40
}

/// Runs `body` with a pool of 2, and returns the names of the blocks it
/// created in `/dev/shm` meanwhile: those the pool made, and those its
/// workers made.
fn blocks_made(body: impl FnOnce(&Pool)) -> (Vec<String>, Vec<String>) {
    let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    watch
        .add_watch("/dev/shm", AddWatchFlags::IN_CREATE)
        .unwrap();
    let pool = Pool::new(2).unwrap();
    let workers = pool.worker_pids();
    body(&pool);
    let mut names = Vec::new();
    loop {
        match watch.read_events() {
            Ok(events) => names.extend(
                events
                    .into_iter()
                    .filter_map(|e| e.name)
                    .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned()),
            ),
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("reading the /dev/shm watch: {e}"),
        }
    }
    let me = std::process::id();
    let by = |maker: u32| format!("mpp-{me}-{maker}-");
    let pool_made = names.iter().filter(|n| n.starts_with(&by(me))).cloned();
    let worker_made = names
        .iter()
        .filter(|n| workers.iter().any(|&w| n.starts_with(&by(w as u32))))
        .cloned();
    (pool_made.collect(), worker_made.collect())
}

#[test]
fn large_chunk_results_go_back_into_their_argument_blocks() {
    checked(LIMIT, || {
        // Four chunks of 100,000 numbers: 800 KB of arguments each (a
        // block), 800 KB of results each (too large for the result ring).
        let (pool_made, worker_made) = blocks_made(|pool| {
            let out = pool.map_chunksize(triple, 0..400_000u64, 100_000).unwrap();
            assert!(out.iter().zip(0u64..).all(|(&y, x)| y == 3 * x));
        });
        assert!(!pool_made.is_empty(), "the arguments travel in blocks");
        assert!(worker_made.is_empty(), "{worker_made:?}");
    });
}

#[test]
fn large_results_of_small_arguments_get_their_own_blocks() {
    checked(LIMIT, || {
        // 200,000 bytes of arguments per chunk travel in the ring; their
        // 1.6 MB of results need blocks of the workers' own.
        let (_, worker_made) = blocks_made(|pool| {
            let items: Vec<u8> = (0..400_000u32).map(|i| i as u8).collect();
            let out = pool.map_chunksize(widen, items, 200_000).unwrap();
            assert!(out
                .iter()
                .zip(0u32..)
                .all(|(&y, i)| y == u64::from(i as u8) << 40));
        });
        assert!(
            !worker_made.is_empty(),
            "the results travel in worker blocks"
        );
    });
}
