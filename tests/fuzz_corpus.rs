//! Replays the committed fuzz corpus (fuzz/seeds/TARGET/*) through the same
//! decoders the `cargo fuzz` targets drive (fuzz/harness.rs), on stable
//! Rust: no input may panic, and each must finish in bounded time.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest one input may take (a remote input's blocking requests each
/// wait for the departed client's detection, about 100 ms).
const PER_INPUT: Duration = Duration::from_secs(10);

/// The longest a whole target's corpus may take.
const PER_TARGET: Duration = Duration::from_secs(120);

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let (tx, rx) = mpsc::channel();
    let count = files.len();
    let worker = std::thread::spawn(move || {
        for f in files {
            let data = std::fs::read(&f).expect("a readable seed");
            let t = Instant::now();
            run(&data);
            let took = t.elapsed();
            assert!(took < PER_INPUT, "{} took {took:?}", f.display());
        }
        let _ = tx.send(());
    });
    match rx.recv_timeout(PER_TARGET) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{target}: the corpus took over {PER_TARGET:?}")
        }
        // The worker panicked: report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
    }
    if let Err(p) = worker.join() {
        std::panic::resume_unwind(p);
    }
    eprintln!("{target}: {count} inputs replayed");
}

#[test]
fn codec_corpus() {
    replay("codec", harness::codec);
}

#[test]
fn channel_corpus() {
    replay("channel", harness::channel);
}

#[test]
fn pipe_corpus() {
    replay("pipe", harness::pipe);
}

#[test]
fn remote_corpus() {
    replay("remote", harness::remote);
}
