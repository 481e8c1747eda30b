//! `Fd<T>`: descriptors as `Process::spawn` arguments, pool and executor
//! task arguments and pipe messages (plain fork; `fd_forkserver.rs` covers
//! the fork server), and the errors of a descriptor that cannot travel.
//! Every test runs real processes on real sockets and checks that the
//! parent's descriptor table is back to where it started.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use multiproc::{Executor, Fd, Pipe, Pool, Process, Queue};
use multiproc_testkit::{checked, join_or_kill, wait_until};

mod fd_helpers;
use fd_helpers::{
    assert_no_fd_leak, echo_lines, open_fds, read_to_string, start_process_wide_helpers, talk,
    temp_file,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A connected loopback pair: (client, accepted server side).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn process_spawn_passes_an_fd_file() {
    checked(LIMIT, || {
        let before = open_fds();
        let file = temp_file("spawn", "hello from the parent");
        let p = Process::spawn(read_to_string, Fd::new(file)).unwrap();
        assert_eq!(join_or_kill(p, LIMIT), "hello from the parent");
        assert_no_fd_leak(before);
    });
}

#[test]
fn pool_task_receives_a_tcp_stream() {
    checked(LIMIT, || {
        let before = open_fds();
        let pool = Pool::new(2).unwrap();
        let mut pending = Vec::new();
        for _ in 0..4 {
            let (client, server) = tcp_pair();
            // The accepted socket moves to the task; the parent's copy
            // closes when the task ends.
            let r = pool.apply_async(echo_lines, Fd::new(server)).unwrap();
            pending.push((client, r));
        }
        for (client, r) in pending {
            talk(client, 10);
            // `talk` dropped the client: the worker sees end of file.
            assert_eq!(r.get_timeout(LIMIT).unwrap(), 10);
        }
        pool.close();
        pool.join().unwrap();
        drop(pool);
        assert_no_fd_leak(before);
    });
}

#[test]
fn executor_submit_and_pool_map_carry_fds() {
    checked(LIMIT, || {
        // Dropping an executor starts the process-wide reaper thread once
        // (it keeps one pipe): start it before counting.
        drop(Executor::new(1).unwrap());
        let before = open_fds();
        let ex = Executor::new(2).unwrap();
        let f = ex
            .submit(read_to_string, Fd::new(temp_file("ex", "executor")))
            .unwrap();
        assert_eq!(f.result().unwrap(), "executor");
        ex.shutdown(true, false).unwrap();
        drop(ex);
        let pool = Pool::new(2).unwrap();
        let files: Vec<Fd<File>> = (0..6)
            .map(|i| Fd::new(temp_file(&format!("map{i}"), &format!("file {i}"))))
            .collect();
        let got = pool.map(read_to_string, files).unwrap();
        let want: Vec<String> = (0..6).map(|i| format!("file {i}")).collect();
        assert_eq!(got, want);
        drop(pool);
        assert_no_fd_leak(before);
    });
}

fn answer_on(conn: Fd<UnixStream>) -> u32 {
    let mut s = conn.into_inner();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    s.write_all(&[b[0] + 1]).unwrap();
    u32::from(b[0])
}

/// Receives sockets on the pipe and answers on each until the pipe closes.
fn serve_pipe(end: multiproc::Inherited<multiproc::Connection<u32, Fd<UnixStream>>>) -> u32 {
    let Ok(end) = end.take() else { return 0 };
    let mut n = 0;
    while let Ok(sock) = end.recv() {
        answer_on(sock);
        n += 1;
        if end.send(n).is_err() {
            break;
        }
    }
    n
}

#[test]
fn pipe_message_carries_an_fd() {
    checked(LIMIT, || {
        let before = open_fds();
        let (parent, child) = Pipe::duplex::<Fd<UnixStream>, u32>().unwrap();
        let p = Process::spawn(serve_pipe, child.into_inherited()).unwrap();
        for i in 0..3u8 {
            let (mut mine, theirs) = UnixStream::pair().unwrap();
            parent.send(Fd::new(theirs)).unwrap();
            mine.write_all(&[i * 10]).unwrap();
            let mut b = [0u8; 1];
            mine.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i * 10 + 1);
            assert_eq!(parent.recv().unwrap(), u32::from(i) + 1);
        }
        parent.close();
        assert_eq!(join_or_kill(p, LIMIT), 3);
        assert_no_fd_leak(before);
    });
}

#[test]
fn fd_through_a_transport_without_descriptors_is_an_error() {
    checked(LIMIT, || {
        start_process_wide_helpers();
        let before = open_fds();
        let q: Queue<Fd<File>> = Queue::new().unwrap();
        let e = q.put(Fd::new(temp_file("queue", "x"))).unwrap_err();
        let e = multiproc::Error::from(e);
        assert_eq!(e.kind(), multiproc::ErrorKind::Serialization, "{e}");
        assert!(e.to_string().contains("cannot travel"), "{e}");
        drop(q);
        // Bytes with an Fd index decoded where no descriptor arrived.
        let (bytes, fds) = multiproc::codec::encode_with_fds(&Fd::new(temp_file("c", "")))
            .expect("encodes in a scope");
        drop(fds);
        let e = multiproc::codec::decode::<Fd<File>>(&bytes).unwrap_err();
        assert!(e.to_string().contains("did not arrive"), "{e}");
        assert_no_fd_leak(before);
    });
}

/// In a child (single-threaded, so no other thread can reuse the number):
/// closes a file's descriptor behind its back and tries to send it.
fn send_closed_fd(_: ()) -> String {
    let file = temp_file("closed", "x");
    nix::unistd::close(file.as_raw_fd()).unwrap();
    let fd = Fd::new(file);
    let e = multiproc::codec::encode_with_fds(&fd).unwrap_err();
    // Its descriptor is already closed: do not close it again.
    std::mem::forget(fd);
    e.to_string()
}

#[test]
fn closed_fd_is_an_error() {
    checked(LIMIT, || {
        let p = Process::spawn(send_closed_fd, ()).unwrap();
        let msg = join_or_kill(p, LIMIT);
        assert!(msg.contains("cannot pass file descriptor"), "{msg}");
        assert!(msg.contains("Bad file descriptor"), "{msg}");
    });
}

#[test]
fn channel_frames_keep_their_own_descriptors() {
    checked(LIMIT, || {
        let before = open_fds();
        let (tx, rx) = multiproc::channel::channel::<(u8, Option<Fd<UnixStream>>)>().unwrap();
        let mut peers = Vec::new();
        for i in 0..6u8 {
            if i % 2 == 0 {
                let (mine, theirs) = UnixStream::pair().unwrap();
                peers.push((i, mine));
                tx.send((i, Some(Fd::new(theirs)))).unwrap();
            } else {
                tx.send((i, None)).unwrap();
            }
        }
        for (i, mut mine) in peers {
            // Odd frames carry none; each even frame gets its own socket.
            let (j, fd) = rx.recv().unwrap();
            assert_eq!(j, i);
            let mut theirs = fd.expect("an even frame has a socket").into_inner();
            theirs.write_all(&[i]).unwrap();
            let mut b = [0u8; 1];
            mine.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i);
            let (k, none) = rx.recv().unwrap();
            assert_eq!((k, none.is_none()), (i + 1, true));
        }
        drop((tx, rx));
        assert_no_fd_leak(before);
    });
}

/// Publishes this worker's pid, then sleeps far longer than the test.
fn record_pid_then_sleep(slot: multiproc::Value<i32>) -> usize {
    slot.set(std::process::id() as i32);
    std::thread::sleep(Duration::from_secs(120));
    0
}

#[test]
fn fd_tasks_queued_on_a_killed_worker_are_sent_again() {
    checked(LIMIT, || {
        // The first named segment of the process (the `Value`) starts the
        // shared-memory tracker, whose pipe stays open for the process's
        // life: made before counting, it is not counted as a leak.
        let slot = multiproc::Value::new(0i32).unwrap();
        let before = open_fds();
        let pool = Pool::new(1).unwrap();
        let victim = pool
            .apply_async(record_pid_then_sleep, slot.clone())
            .unwrap();
        assert!(wait_until(LIMIT, || slot.get() != 0), "never started");
        // Queued behind the sleeper, in the same worker's ring: their
        // descriptors are already in its socket when it dies.
        let queued: Vec<_> = (0..5)
            .map(|i| {
                let f = temp_file(&format!("requeue{i}"), &format!("queued {i}"));
                pool.apply_async(read_to_string, Fd::new(f)).unwrap()
            })
            .collect();
        multiproc_testkit::kill_pid(slot.get());
        let e = victim.get_timeout(LIMIT).unwrap_err();
        assert_eq!(e.kind(), multiproc::ErrorKind::WorkerLost, "{e}");
        for (i, r) in queued.into_iter().enumerate() {
            assert_eq!(r.get_timeout(LIMIT).unwrap(), format!("queued {i}"));
        }
        drop(pool);
        assert_no_fd_leak(before);
        drop(slot);
    });
}

fn file_len(file: Fd<File>) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

#[test]
fn many_fd_tasks_each_get_their_descriptor() {
    checked(LIMIT, || {
        let before = open_fds();
        let pool = Pool::new(1).unwrap();
        let file = temp_file("many", "z");
        // Far more tasks than a worker's queue: their descriptors go out as
        // tasks are dispatched, each with its own record.
        let results: Vec<_> = (0..2000)
            .map(|_| {
                let copy = Fd::new(file.try_clone().unwrap());
                pool.apply_async(file_len, copy).unwrap()
            })
            .collect();
        drop(file);
        for r in results {
            assert_eq!(r.get_timeout(LIMIT).unwrap(), 1);
        }
        drop(pool);
        assert_no_fd_leak(before);
    });
}
