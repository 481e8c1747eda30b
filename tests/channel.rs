//! Channels between processes: typed round trips, large messages, ordering,
//! peer death, timeouts, corrupt frames, and sends to a dead peer.
//!
//! Child processes are this test binary re-executed (no `fork`, so no
//! `unsafe` here): `spawn_role` runs the `child_entry` test in a new process
//! with an environment variable naming its role, and hands it one end of a
//! channel as its standard input (`Stdio::from(OwnedFd)`: std duplicates the
//! descriptor onto fd 0 in the child only, so no other concurrently spawned
//! process inherits it). The parent's copy is closed right after the spawn, as
//! the peer-death rule requires. Every child is waited for with a deadline,
//! killed on failure, and checked to be reaped.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use multiproc_ipc::channel::{
    channel, duplex, Duplex, Receiver, RecvError, RecvTimeoutError, SendError, Sender, TryRecvError,
};
use multiproc_ipc::codec::{self, CodecError};
use multiproc_ipc::ErrorKind;
use multiproc_testkit::{assert_lasted, bounded, Helper, Reexec};
use serde::{Deserialize, Serialize};

const ROLE_ENV: &str = "MULTIPROC_CHANNEL_TEST_ROLE";
const COUNT: u64 = 100_000;
const BIG: usize = 64 << 20;
/// No test waits longer than this for anything.
const LIMIT: Duration = Duration::from_secs(60);

/// Serializes the tests that use hundreds of MiB, so that they do not disturb
/// the allocation check of `lying_length_prefix_does_not_allocate_its_claim`.
static MEMORY: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Ping { id: u64, text: String },
    Pong { id: u64, text: String, pid: u32 },
    Unit,
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Runs the role `role` in a new process that receives `fd` as its stdin
/// (killed and reaped when dropped).
fn spawn_role(role: &str, fd: OwnedFd) -> Helper {
    Reexec::test("child_entry")
        .arg("-q")
        .env(ROLE_ENV, role)
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .spawn()
}

/// The child side: runs only when re-executed by `spawn_role`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return; // a normal test run: nothing to do
    };
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdin");
    let code = match role.as_str() {
        "echo" => {
            let end = Duplex::<Msg, Msg>::from(fd);
            loop {
                match end.recv() {
                    Ok(Msg::Ping { id, text }) => {
                        let pong = Msg::Pong {
                            id: id + 1,
                            text: text.to_uppercase(),
                            pid: std::process::id(),
                        };
                        if end.send(pong).is_err() {
                            break 2;
                        }
                    }
                    Ok(other) => {
                        if end.send(other).is_err() {
                            break 2;
                        }
                    }
                    Err(RecvError::Disconnected) => break 0,
                    Err(_) => break 3,
                }
            }
        }
        "count" => {
            let tx = Sender::<u64>::from(fd);
            for i in 0..COUNT {
                if tx.send(i).is_err() {
                    std::process::exit(2);
                }
            }
            0
        }
        "big" => {
            let end = Duplex::<String, ()>::from(fd);
            let s: String = (0..BIG).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let mut raw = s.clone().into_bytes();
            raw[BIG / 2] = 0xff; // not UTF-8: only raw bytes can carry it
            match (end.send(s), end.send_bytes(&raw)) {
                (Ok(()), Ok(())) => 0,
                _ => 2,
            }
        }
        "stream_forever" => {
            let tx = Sender::<(u64, String)>::from(fd);
            let mut i = 0;
            while tx.send((i, "x".repeat(1000))).is_ok() {
                i += 1;
            }
            0
        }
        "partial_then_hang" => {
            // A whole frame, then the first part of a second one.
            let mut s = UnixStream::from(fd);
            let one = codec::encode(&7u64).expect("encode");
            let mut bytes = (one.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(&one);
            bytes.extend_from_slice(&1000u64.to_le_bytes());
            bytes.extend_from_slice(&[1; 10]);
            s.write_all(&bytes).expect("write");
            std::thread::sleep(LIMIT);
            4
        }
        "exit_now" => {
            drop(fd);
            3
        }
        _ => 100,
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------
// Across processes
// ---------------------------------------------------------------------------

#[test]
fn typed_round_trips_across_processes() {
    let (parent, child_end) = duplex::<Msg, Msg>().unwrap();
    let mut child = spawn_role("echo", child_end.into_fd_for_test());
    for id in 0..100 {
        let ping = Msg::Ping {
            id,
            text: format!("hello {id}"),
        };
        parent.send(ping).unwrap();
        match parent.recv_timeout(LIMIT).unwrap() {
            Msg::Pong {
                id: back,
                text,
                pid,
            } => {
                assert_eq!(back, id + 1);
                assert_eq!(text, format!("HELLO {id}"));
                assert_eq!(pid, child.pid(), "the reply came from the child");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    parent.send(Msg::Unit).unwrap();
    assert_eq!(parent.recv_timeout(LIMIT).unwrap(), Msg::Unit);
    drop(parent);
    assert_eq!(
        child.wait(LIMIT).code(),
        Some(0),
        "the child saw Disconnected"
    );
}

#[test]
fn sixty_four_mib_messages_cross_intact() {
    let _mem = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let (parent, child_end) = duplex::<(), String>().unwrap();
    let mut child = spawn_role("big", child_end.into_fd_for_test());
    let (s, raw) = bounded(LIMIT, move || {
        let s = parent.recv().unwrap();
        let raw = parent.recv_bytes().unwrap();
        assert!(matches!(parent.recv(), Err(RecvError::Disconnected)));
        (s, raw)
    });
    assert_eq!(child.wait(LIMIT).code(), Some(0));
    assert_eq!(s.len(), BIG);
    assert!(s
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'a' + (i % 26) as u8));
    assert_eq!(raw.len(), BIG);
    assert_eq!(raw[BIG / 2], 0xff);
    assert_eq!(&raw[..BIG / 2], &s.as_bytes()[..BIG / 2]);
}

#[test]
fn many_messages_arrive_in_order_then_disconnected() {
    let (tx, rx) = channel::<u64>().unwrap();
    let mut child = spawn_role("count", tx.into_fd_for_test());
    bounded(LIMIT, move || {
        for i in 0..COUNT {
            assert_eq!(rx.recv().unwrap(), i);
        }
        assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
        assert!(
            rx.poll(Duration::ZERO),
            "poll is true on a disconnected channel"
        );
    });
    assert_eq!(child.wait(LIMIT).code(), Some(0));
}

#[test]
fn peer_exit_is_disconnected() {
    let (tx, rx) = channel::<Msg>().unwrap();
    let mut child = spawn_role("exit_now", tx.into_fd_for_test());
    let r = bounded(LIMIT, move || rx.recv());
    assert!(matches!(r, Err(RecvError::Disconnected)), "{r:?}");
    let e = multiproc_ipc::Error::from(r.unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(child.wait(LIMIT).code(), Some(3));
}

#[test]
fn sigkilled_peer_mid_stream_is_disconnected() {
    let (tx, rx) = channel::<(u64, String)>().unwrap();
    let mut child = spawn_role("stream_forever", tx.into_fd_for_test());
    let rx = bounded(LIMIT, move || {
        for i in 0..200 {
            assert_eq!(rx.recv().unwrap().0, i);
        }
        rx
    });
    let st = child.kill();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    // Whole messages still queued come out in order, then Disconnected; a
    // message cut by the kill is never delivered.
    let last = bounded(LIMIT, move || {
        let mut next = 200;
        loop {
            match rx.recv() {
                Ok((i, s)) => {
                    assert_eq!((i, s.len()), (next, 1000));
                    next += 1;
                }
                Err(RecvError::Disconnected) => return next,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    });
    assert!(last >= 200);
}

#[test]
fn partial_frame_times_out_then_peer_death_is_disconnected() {
    let (tx, rx) = channel::<u64>().unwrap();
    let mut child = spawn_role("partial_then_hang", tx.into_fd_for_test());
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 7);
    // Half a frame is not a message: a bounded wait ends in time.
    let t = Instant::now();
    let r = rx.recv_timeout(Duration::from_millis(300));
    assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(!rx.poll(Duration::from_millis(10)));
    child.kill();
    let r = bounded(LIMIT, move || rx.recv());
    assert!(matches!(r, Err(RecvError::Disconnected)), "{r:?}");
}

#[test]
fn send_to_exited_peer_gives_the_value_back() {
    let (tx, rx) = channel::<String>().unwrap();
    let mut child = spawn_role("exit_now", rx.into_fd_for_test());
    assert_eq!(child.wait(LIMIT).code(), Some(3));
    match tx.send("keep me".to_string()) {
        Err(SendError::Disconnected(v)) => assert_eq!(v, "keep me"),
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// In one process
// ---------------------------------------------------------------------------

#[test]
fn recv_timeout_times_out_with_tolerant_timing() {
    let (_tx, rx) = channel::<u8>().unwrap();
    let t = Instant::now();
    let r = rx.recv_timeout(Duration::from_secs(1));
    assert_lasted(t, Duration::from_secs(1));
    assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "{r:?}");
    let e = multiproc_ipc::Error::from(r.unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = multiproc_ipc::Error::from(rx.try_recv().unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Empty);
}

#[test]
fn zero_byte_messages_and_raw_bytes() {
    let (tx, rx) = channel::<()>().unwrap();
    assert_eq!(codec::encode(&()).unwrap().len(), 0);
    tx.send(()).unwrap();
    tx.send(()).unwrap();
    assert!(rx.poll(Duration::ZERO));
    rx.recv().unwrap();
    rx.try_recv().unwrap();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    let (a, b) = duplex::<u32, String>().unwrap();
    a.send(5).unwrap();
    a.send_bytes(b"").unwrap();
    b.send("typed".into()).unwrap();
    // A typed message is readable as its encoding, and bytes as a value.
    assert_eq!(b.recv_bytes().unwrap(), codec::encode(&5u32).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert_eq!(a.recv().unwrap(), "typed");
    b.send_bytes(&codec::encode("from bytes").unwrap()).unwrap();
    assert_eq!(a.recv().unwrap(), "from bytes");
}

/// A receiver reading a raw stream socket, and the writing side.
fn raw_pair<T>() -> (UnixStream, Receiver<T>) {
    let (a, b) = UnixStream::pair().unwrap();
    (a, Receiver::from(OwnedFd::from(b)))
}

fn frame(len: u64, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn oversized_length_prefix_is_an_error_and_closes_the_channel() {
    let (mut w, rx) = raw_pair::<String>();
    w.write_all(&frame(u64::MAX, b"junk")).unwrap();
    let r = rx.recv_timeout(LIMIT);
    assert!(
        matches!(
            r,
            Err(RecvTimeoutError::Decode(CodecError::TooLarge { .. }))
        ),
        "{r:?}"
    );
    let e = multiproc_ipc::Error::from(r.unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Serialization);
    // The stream cannot be resynchronized: the channel is closed both ways.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    assert!(w.write_all(b"more").is_err(), "the writer sees the close");
}

#[test]
fn lying_length_prefix_does_not_allocate_its_claim() {
    let _mem = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let before = vm_peak_kib();
    let (mut w, rx) = raw_pair::<Vec<u8>>();
    // Claims the maximum message size (1 GiB), sends 1 MiB, then closes.
    let max = codec::DEFAULT_MAX_MESSAGE as u64;
    let t = std::thread::spawn(move || {
        w.write_all(&frame(max, &vec![0; 1 << 20])).unwrap();
    });
    let r = bounded(LIMIT, move || rx.recv());
    t.join().unwrap();
    assert!(matches!(r, Err(RecvError::Disconnected)), "{r:?}");
    let grown = vm_peak_kib() - before;
    assert!(grown < 512 << 10, "peak address space grew by {grown} KiB");
}

fn vm_peak_kib() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmPeak:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn truncated_frame_at_eof_is_never_a_value() {
    for cut in [1, 7, 8, 9, 20] {
        let (mut w, rx) = raw_pair::<String>();
        let whole = frame(21, &codec::encode("twenty bytes here!!").unwrap());
        w.write_all(&whole[..cut]).unwrap();
        drop(w);
        let r = rx.recv_timeout(LIMIT);
        assert!(
            matches!(r, Err(RecvTimeoutError::Disconnected)),
            "cut {cut}: {r:?}"
        );
    }
}

#[test]
fn garbage_body_is_a_decode_error_and_the_channel_goes_on() {
    let (mut w, rx) = raw_pair::<String>();
    w.write_all(&frame(5, &[0xff, 0xff, 0xff, 0xff, 0xff]))
        .unwrap();
    w.write_all(&frame(3, &[2, 0xc3, 0x28])).unwrap(); // invalid UTF-8
    let ok = codec::encode("fine").unwrap();
    w.write_all(&frame(ok.len() as u64, &ok)).unwrap();
    let r = rx.recv();
    assert!(matches!(r, Err(RecvError::Decode(_))), "{r:?}");
    let r = rx.try_recv();
    assert!(matches!(r, Err(TryRecvError::Decode(_))), "{r:?}");
    assert_eq!(rx.recv().unwrap(), "fine");
    // Random garbage: errors, never a panic or a hang.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut junk = Vec::new();
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        junk.push((x % 7) as u8); // small bytes keep length prefixes plausible
    }
    w.write_all(&junk).unwrap();
    drop(w);
    bounded(LIMIT, move || loop {
        if let Err(RecvError::Disconnected) = rx.recv() {
            break;
        }
    });
}

#[test]
fn send_to_dropped_receiver_gives_the_value_back_without_sigpipe() {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};

    // The Rust runtime ignores SIGPIPE, and an ignored signal is discarded,
    // unless it is blocked: then Linux queues it as pending, where a signalfd
    // sees it. So block it on this thread and look for it.
    bounded(LIMIT, || {
        let mut set = SigSet::empty();
        set.add(Signal::SIGPIPE);
        set.thread_block().unwrap();
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK).unwrap();

        // Control: a plain send to a closed peer does raise SIGPIPE.
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let r = nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&a),
            b"x",
            nix::sys::socket::MsgFlags::empty(),
        );
        assert_eq!(r, Err(nix::errno::Errno::EPIPE));
        let sig = sfd.read_signal().unwrap().expect("control SIGPIPE");
        assert_eq!(sig.ssi_signo, Signal::SIGPIPE as u32);

        let (tx, rx) = channel::<Vec<u32>>().unwrap();
        drop(rx);
        match tx.send(vec![1, 2, 3]) {
            Err(SendError::Disconnected(v)) => assert_eq!(v, vec![1, 2, 3]),
            other => panic!("unexpected {other:?}"),
        }
        let (a, b) = duplex::<u8, u8>().unwrap();
        drop(b);
        assert!(a.send_bytes(&[0; 100_000]).unwrap_err().is_disconnected());
        let e = multiproc_ipc::Error::from(a.send(1).unwrap_err());
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert!(
            sfd.read_signal().unwrap().is_none(),
            "channel raised SIGPIPE"
        );
    });
}

#[test]
fn sender_is_shared_by_threads_and_frames_stay_whole() {
    let (tx, rx) = channel::<(u8, String)>().unwrap();
    let tx = std::sync::Arc::new(tx);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    tx.send((t, (t as char).to_string().repeat(100_000)))
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let counts = bounded(LIMIT, move || {
        let mut counts = [0; 4];
        for (t, s) in rx.iter() {
            assert_eq!(s.len(), 100_000);
            assert!(s.bytes().all(|b| b == t));
            counts[t as usize] += 1;
        }
        counts
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counts, [200; 4]);
}

/// Turns an end into its descriptor, for handing to a child.
trait IntoFdForTest {
    fn into_fd_for_test(self) -> OwnedFd;
}

impl<X: AsFd> IntoFdForTest for X {
    fn into_fd_for_test(self) -> OwnedFd {
        // A duplicate, then the original end is dropped: one open copy.
        self.as_fd().try_clone_to_owned().unwrap()
    }
}
