//! Measures the two candidate transports for `multiproc_ipc::channel` between
//! a parent and a forked child: the framed stream socketpair of
//! `channel`/`duplex`, and ipc-channel's `IpcBytesSender`/`IpcReceiver` (plus
//! its `IpcSharedMemory` for a 64 MiB payload).
//!
//! Run with `cargo run --release -p multiproc-ipc --example channel_rtt`
//! (`-- quick` for a short smoke run). Small messages are codec-encoded on both
//! transports (the channel encodes; ipc-channel carries the codec's bytes);
//! large ones are raw bytes, so the numbers compare the transports.

use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcSharedMemory};
use multiproc_ipc::channel::{channel, duplex};
use multiproc_ipc::codec;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

type Small = (u64, u64);

/// Runs `child` in a forked child that exits with 0 (1 on error), and `parent`
/// here; then reaps the child.
fn forked<P: FnOnce() -> R, C: FnOnce(), R>(child: C, parent: P) -> R {
    // SAFETY: this example is single-threaded when it forks (no thread is ever
    // started), so the child may run arbitrary code; it leaves with `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // Each process drops the ends it does not own (the peer-death rule).
            drop(parent);
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
            // SAFETY: `_exit` ends the child without running the parent's
            // destructors or atexit handlers twice.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child: pid } => {
            drop(child);
            let r = parent();
            let st = waitpid(pid, None).expect("waitpid");
            assert_eq!(st, WaitStatus::Exited(pid, 0), "child failed");
            r
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn report_rtt(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{name:<28} round trip 16 B   median {:7.1} us   p99 {:7.1} us",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

fn report_rate(name: &str, what: &str, n: usize, bytes: usize, t: Duration) {
    let s = t.as_secs_f64();
    if bytes == 0 {
        println!("{name:<28} {what:<17} {:10.0} msgs/s", n as f64 / s);
    } else {
        println!(
            "{name:<28} {what:<17} {:10.3} GB/s",
            (n * bytes) as f64 / s / 1e9
        );
    }
}

// --- framed socketpair -----------------------------------------------------

fn sock_rtt(n: usize) {
    let (a, b) = duplex::<Small, Small>().expect("duplex");
    let lat = forked(
        move || {
            while let Ok(m) = b.recv() {
                if b.send(m).is_err() {
                    break;
                }
            }
        },
        move || {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                a.send((i, i)).expect("send");
                assert_eq!(a.recv().expect("recv"), (i, i));
                lat.push(t.elapsed());
            }
            lat
        },
    );
    report_rtt("socketpair", lat);
}

fn sock_small_stream(n: usize) {
    let (tx, rx) = channel::<Small>().expect("channel");
    let (done_tx, done_rx) = channel::<u64>().expect("channel");
    let t = forked(
        move || {
            let mut sum = 0;
            for _ in 0..n {
                sum += rx.recv().expect("recv").0;
            }
            done_tx.send(sum).expect("send");
        },
        move || {
            let t = Instant::now();
            for i in 0..n as u64 {
                tx.send((i, i)).expect("send");
            }
            done_rx.recv().expect("done");
            t.elapsed()
        },
    );
    report_rate("socketpair", "one-way 16 B", n, 0, t);
}

fn sock_bytes(n: usize, size: usize) {
    let (a, b) = duplex::<(), ()>().expect("duplex");
    let t = forked(
        move || {
            for _ in 0..n {
                let v = b.recv_bytes().expect("recv");
                assert_eq!(v.len(), size);
            }
            b.send_bytes(b"done").expect("send");
        },
        move || {
            let payload = vec![7u8; size];
            let t = Instant::now();
            for _ in 0..n {
                a.send_bytes(&payload).expect("send");
            }
            a.recv_bytes().expect("done");
            t.elapsed()
        },
    );
    report_rate(
        "socketpair",
        &format!("one-way {} MiB", size >> 20),
        n,
        size,
        t,
    );
}

// --- ipc-channel -------------------------------------------------------------

fn ipc_rtt(n: usize) {
    let (to_child, child_rx): (IpcBytesSender, IpcBytesReceiver) = ipc::bytes_channel().unwrap();
    let (child_tx, from_child) = ipc::bytes_channel().unwrap();
    let lat = forked(
        move || {
            while let Ok(m) = child_rx.recv() {
                let v: Small = codec::decode(&m).expect("decode");
                let b = codec::encode(&v).expect("encode");
                if child_tx.send(&b).is_err() {
                    break;
                }
            }
        },
        move || {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                to_child.send(&codec::encode(&(i, i)).unwrap()).unwrap();
                let back: Small = codec::decode(&from_child.recv().unwrap()).unwrap();
                assert_eq!(back, (i, i));
                lat.push(t.elapsed());
            }
            drop(to_child);
            lat
        },
    );
    report_rtt("ipc-channel bytes", lat);
}

fn ipc_small_stream(n: usize) {
    let (tx, rx) = ipc::bytes_channel().unwrap();
    let (done_tx, done_rx) = ipc::bytes_channel().unwrap();
    let t = forked(
        move || {
            let mut sum = 0;
            for _ in 0..n {
                let v: Small = codec::decode(&rx.recv().unwrap()).unwrap();
                sum += v.0;
            }
            done_tx.send(&codec::encode(&sum).unwrap()).unwrap();
        },
        move || {
            let t = Instant::now();
            for i in 0..n as u64 {
                tx.send(&codec::encode(&(i, i)).unwrap()).unwrap();
            }
            done_rx.recv().unwrap();
            t.elapsed()
        },
    );
    report_rate("ipc-channel bytes", "one-way 16 B", n, 0, t);
}

fn ipc_bytes(n: usize, size: usize) {
    let (tx, rx) = ipc::bytes_channel().unwrap();
    let (done_tx, done_rx) = ipc::bytes_channel().unwrap();
    let t = forked(
        move || {
            for _ in 0..n {
                assert_eq!(rx.recv().unwrap().len(), size);
            }
            done_tx.send(b"done").unwrap();
        },
        move || {
            let payload = vec![7u8; size];
            let t = Instant::now();
            for _ in 0..n {
                tx.send(&payload).unwrap();
            }
            done_rx.recv().unwrap();
            t.elapsed()
        },
    );
    report_rate(
        "ipc-channel bytes",
        &format!("one-way {} MiB", size >> 20),
        n,
        size,
        t,
    );
}

fn ipc_shm(n: usize, size: usize) {
    let (tx, rx) = ipc::channel::<IpcSharedMemory>().unwrap();
    let (done_tx, done_rx) = ipc::bytes_channel().unwrap();
    let t = forked(
        move || {
            for _ in 0..n {
                let m = rx.recv().unwrap();
                assert_eq!(m.len(), size);
                assert_eq!((m[0], m[size - 1]), (7, 7));
            }
            done_tx.send(b"done").unwrap();
        },
        move || {
            let payload = vec![7u8; size];
            let t = Instant::now();
            for _ in 0..n {
                // Copying the payload into the region is part of the cost.
                tx.send(IpcSharedMemory::from_bytes(&payload)).unwrap();
            }
            done_rx.recv().unwrap();
            t.elapsed()
        },
    );
    report_rate(
        "ipc-channel IpcSharedMemory",
        &format!("one-way {} MiB", size >> 20),
        n,
        size,
        t,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (rtt, small, mib, big) = if quick {
        (200, 2_000, 8, 1)
    } else {
        (20_000, 200_000, 256, 8)
    };
    for round in 0..2 {
        println!("-- round {round}");
        sock_rtt(rtt);
        ipc_rtt(rtt);
        sock_small_stream(small);
        ipc_small_stream(small);
        sock_bytes(mib, 1 << 20);
        ipc_bytes(mib, 1 << 20);
        sock_bytes(big, 64 << 20);
        ipc_bytes(big, 64 << 20);
        ipc_shm(big, 64 << 20);
    }
}
