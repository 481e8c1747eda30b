//! `Fd<T>` after `multiproc::init()`: children come from the fork server,
//! which was forked before the sockets and files of these tests existed, so
//! they reach a child only as descriptors passed with `SCM_RIGHTS`: a
//! `Process::spawn` argument, a pool task argument (a `TcpStream` accepted
//! after `init()`), an executor task argument. Each check also verifies
//! that the parent's descriptor table is back to where it started.
//!
//! `harness = false`: `multiproc::init()` must run before any thread exists.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use std::os::unix::net::UnixStream;

use multiproc::{Connection, Executor, Fd, Pipe, Pool, Process, StartMethod};
use multiproc_testkit::{join_or_kill, zombie_children, Cases};

/// The bound of the whole binary.
mod fd_helpers;
use fd_helpers::{
    assert_no_fd_leak, echo_lines, open_fds, read_to_string, start_process_wide_helpers, talk,
    temp_file,
};

const WATCHDOG: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(30);

fn process_spawn_sends_an_fd_file() {
    let before = open_fds();
    let p = Process::spawn(read_to_string, Fd::new(temp_file("p", "after init"))).unwrap();
    assert_eq!(join_or_kill(p, LIMIT), "after init");
    assert_no_fd_leak(before);
}

fn pool_task_receives_a_tcp_stream_accepted_after_init(method: StartMethod) {
    let before = open_fds();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut pending = Vec::new();
    for _ in 0..4 {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        pending.push((
            client,
            pool.apply_async(echo_lines, Fd::new(server)).unwrap(),
        ));
    }
    for (client, r) in pending {
        talk(client, 20);
        assert_eq!(r.get_timeout(LIMIT).unwrap(), 20);
    }
    drop(listener);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert_no_fd_leak(before);
}

fn executor_task_receives_an_fd_file() {
    let before = open_fds();
    let ex = Executor::new(1).unwrap();
    let f = ex
        .submit(read_to_string, Fd::new(temp_file("ex", "executor")))
        .unwrap();
    assert_eq!(f.result().unwrap(), "executor");
    ex.shutdown(true, false).unwrap();
    drop(ex);
    assert_no_fd_leak(before);
}

/// Gets sockets through the pipe end it was given and answers on each.
fn serve_pipe(end: Fd<Connection<u32, Fd<UnixStream>>>) -> u32 {
    let end = end.into_inner();
    let mut n = 0;
    while let Ok(sock) = end.recv() {
        let mut s = sock.into_inner();
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_err() || s.write_all(&[b[0] + 1]).is_err() {
            break;
        }
        n += 1;
        if end.send(n).is_err() {
            break;
        }
    }
    n
}

fn pipe_end_and_pipe_messages_carry_fds() {
    let before = open_fds();
    let (parent, child) = Pipe::duplex::<Fd<UnixStream>, u32>().unwrap();
    // The child comes from the fork server: its end travels as an Fd.
    let p = Process::spawn(serve_pipe, Fd::new(child)).unwrap();
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
}

fn main() {
    multiproc::init().expect("init before any thread");
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("fd_forkserver: timed out after {WATCHDOG:?}");
        std::process::exit(1);
    });
    start_process_wide_helpers();
    type Check = fn();
    let checks: [(&str, Check); 5] = [
        (
            "pipe_end_and_pipe_messages_carry_fds",
            pipe_end_and_pipe_messages_carry_fds,
        ),
        (
            "process_spawn_sends_an_fd_file",
            process_spawn_sends_an_fd_file,
        ),
        (
            "pool_task_receives_a_tcp_stream_accepted_after_init",
            || pool_task_receives_a_tcp_stream_accepted_after_init(StartMethod::Zygote),
        ),
        (
            "forkserver_pool_task_receives_a_tcp_stream_accepted_after_init",
            || pool_task_receives_a_tcp_stream_accepted_after_init(StartMethod::ForkServer),
        ),
        (
            "executor_task_receives_an_fd_file",
            executor_task_receives_an_fd_file,
        ),
    ];
    let mut cases = Cases::new();
    for (name, check) in checks {
        cases.run(name, check);
    }
    let zombies = zombie_children();
    if !zombies.is_empty() {
        cases.fail(&format!("zombie children left: {zombies:?}"));
    }
    cases.finish();
}
