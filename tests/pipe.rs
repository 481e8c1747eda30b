//! `Pipe` across real processes: ping-pong, 16 MiB messages, a SIGKILLed
//! peer, timeouts, `close` seen through inherited copies, and simplex pipes.
//!
//! Children are forked with `Process::spawn` and get their end through
//! `Inherited` (the parent's copy closes when the spawn returns). Tests run
//! one at a time (a fork from a concurrent test would hold copies of this
//! test's ends and delay `Closed`); every child is joined or killed within a
//! deadline, and each test checks that it leaves no child behind.

use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc_testkit::{assert_lasted, bounded, eventually, serial_clean, Kid, LIMIT};
use serde::{Deserialize, Serialize};

const BIG: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Ping(u64),
    Pong(u64, u32),
    Stop,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

/// Answers every `Ping(n)` with `Pong(n + 1, pid)` until `Stop`; returns the
/// number of pings.
fn pong_server(end: Inherited<Connection<Msg>>) -> u64 {
    let end = end.take().expect("forked with its end");
    let pid = std::process::id();
    let mut pings = 0;
    loop {
        match end.recv_timeout(LIMIT) {
            Ok(Msg::Ping(n)) => {
                end.send(Msg::Pong(n + 1, pid)).expect("parent is alive");
                pings += 1;
            }
            Ok(Msg::Stop) => return pings,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Receives a typed 16 MiB buffer and a 16 MiB byte message, checks them, and
/// sends both back with every byte incremented.
fn big_echo(end: Inherited<Connection<Vec<u8>>>) -> bool {
    let end = end.take().expect("forked with its end");
    let mut typed = end.recv_timeout(LIMIT).expect("typed message");
    let mut raw = end.recv_bytes_timeout(LIMIT).expect("byte message");
    let ok = typed == pattern(BIG, 1) && raw == pattern(BIG, 2);
    typed.iter_mut().for_each(|b| *b = b.wrapping_add(1));
    raw.iter_mut().for_each(|b| *b = b.wrapping_add(1));
    end.send(typed).expect("parent is alive");
    end.send_bytes(&raw).expect("parent is alive");
    ok
}

/// Says it is ready, then waits to be killed.
fn ready_then_sleep(end: Inherited<Connection<Msg>>) -> u64 {
    let end = end.take().expect("forked with its end");
    end.send(Msg::Ping(0)).expect("parent is alive");
    std::thread::sleep(LIMIT);
    0
}

/// Blocks in `recv` until the parent closes its end; returns the error kind.
fn wait_for_close(end: Inherited<Connection<Msg>>) -> String {
    let end = end.take().expect("forked with its end");
    end.send(Msg::Ping(0)).expect("parent is alive");
    match end.recv_timeout(LIMIT) {
        Ok(m) => format!("received {m:?}"),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Sleeps `ms`, then sends one message.
fn send_late(args: (Inherited<Connection<Msg>>, u64)) -> bool {
    let (end, ms) = args;
    let end = end.take().expect("forked with its end");
    std::thread::sleep(Duration::from_millis(ms));
    end.send(Msg::Ping(ms)).is_ok()
}

/// Sends `0..n` and a byte message on the sending end of a simplex pipe, then
/// exits (which closes it).
fn simplex_producer(args: (Inherited<SendConnection<u64>>, u64)) -> u64 {
    let (end, n) = args;
    let end = end.take().expect("forked with its end");
    for i in 0..n {
        end.send(i).expect("parent is alive");
    }
    end.send_bytes(b"done").expect("parent is alive");
    n
}

/// Receives on the receiving end of a simplex pipe until the parent closes.
fn simplex_consumer(end: Inherited<RecvConnection<u64>>) -> u64 {
    let end = end.take().expect("forked with its end");
    let mut sum = 0;
    loop {
        match end.recv_timeout(LIMIT) {
            Ok(v) => sum += v,
            Err(e) if e.kind() == ErrorKind::Closed => return sum,
            Err(e) => panic!("{e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn ping_pong_with_a_child() {
    let _c = serial_clean();
    let (parent, child) = Pipe::new::<Msg>().unwrap();
    let kid = Kid::spawn(pong_server, child.into_inherited());
    for i in 0..2_000 {
        parent.send(Msg::Ping(i)).unwrap();
        match parent.recv_timeout(LIMIT).unwrap() {
            Msg::Pong(n, pid) => {
                assert_eq!(n, i + 1);
                assert_eq!(pid as i32, kid.pid());
                assert_ne!(pid, std::process::id());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    parent.send(Msg::Stop).unwrap();
    assert_eq!(kid.join(), 2_000);
    // The child is gone and the parent holds no copy of its end.
    let e = bounded(LIMIT, move || parent.recv().unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
}

#[test]
fn sixteen_mib_messages_both_ways() {
    let _c = serial_clean();
    let (parent, child) = Pipe::new::<Vec<u8>>().unwrap();
    let kid = Kid::spawn(big_echo, child.into_inherited());
    parent.send(pattern(BIG, 1)).unwrap();
    parent.send_bytes(&pattern(BIG, 2)).unwrap();
    let typed = parent.recv_timeout(LIMIT).unwrap();
    let raw = parent.recv_bytes_timeout(LIMIT).unwrap();
    assert!(kid.join(), "the child received corrupted messages");
    let plus_one = |seed| -> Vec<u8> {
        pattern(BIG, seed)
            .into_iter()
            .map(|b| b.wrapping_add(1))
            .collect()
    };
    assert_eq!(typed.len(), BIG);
    assert!(typed == plus_one(1), "typed reply corrupted");
    assert_eq!(raw.len(), BIG);
    assert!(raw == plus_one(2), "byte reply corrupted");
}

#[test]
fn sigkilled_child_makes_a_blocked_recv_return_closed() {
    let _c = serial_clean();
    let (parent, child) = Pipe::new::<Msg>().unwrap();
    let kid = Kid::spawn(ready_then_sleep, child.into_inherited());
    assert_eq!(parent.recv_timeout(LIMIT).unwrap(), Msg::Ping(0));
    // The parent blocks in a plain `recv`; the child is killed meanwhile.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kid.kill();
    });
    let start = Instant::now();
    let (parent, e) = bounded(LIMIT, move || {
        let e = parent.recv().unwrap_err();
        (parent, e)
    });
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(start.elapsed() < LIMIT);
    killer.join().unwrap();
    // Sends to the dead peer fail too, with the value given back.
    let e = parent.send(Msg::Stop).unwrap_err();
    assert!(e.is_disconnected());
    assert_eq!(e.into_inner(), Msg::Stop);
    assert_eq!(
        parent.send_bytes(b"x").unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(parent.poll(Duration::ZERO));
}

#[test]
fn close_reaches_a_child_that_holds_a_copy_of_the_parent_end() {
    let _c = serial_clean();
    let (parent, child) = Pipe::new::<Msg>().unwrap();
    let kid = Kid::spawn(wait_for_close, child.into_inherited());
    // The child inherited a copy of `parent` too; `close` shuts the socket
    // down for every copy, so its `recv` still ends.
    assert_eq!(parent.recv_timeout(LIMIT).unwrap(), Msg::Ping(0));
    parent.close();
    assert_eq!(kid.join(), "Closed");
}

#[test]
fn timeouts_poll_and_try_recv_across_processes() {
    let _c = serial_clean();
    let (parent, child) = Pipe::new::<Msg>().unwrap();
    let kid = Kid::spawn(send_late, (child.into_inherited(), 1_500));

    assert_eq!(parent.try_recv().unwrap_err().kind(), ErrorKind::Empty);
    assert_eq!(
        parent.try_recv_bytes().unwrap_err().kind(),
        ErrorKind::Empty
    );

    let t = Duration::from_millis(300);
    let start = Instant::now();
    let e = parent.recv_timeout(t).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_lasted(start, t);

    let start = Instant::now();
    let e = parent.recv_bytes_timeout(t).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_lasted(start, t);

    let start = Instant::now();
    assert!(!parent.poll(t));
    assert_lasted(start, t);

    // The late message wakes a long poll.
    assert!(parent.poll(LIMIT));
    assert_eq!(parent.try_recv().unwrap(), Msg::Ping(1_500));
    assert!(kid.join());
    // After the child exits, `poll` is true at once and `recv` says Closed.
    eventually(|| parent.poll(Duration::ZERO));
    assert_eq!(
        parent.recv_timeout(LIMIT).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn simplex_child_sends_parent_receives() {
    let _c = serial_clean();
    let (rx, tx) = Pipe::simplex::<u64>().unwrap();
    let kid = Kid::spawn(simplex_producer, (tx.into_inherited(), 10_000));
    for i in 0..10_000 {
        assert_eq!(rx.recv_timeout(LIMIT).unwrap(), i);
    }
    assert_eq!(rx.recv_bytes_timeout(LIMIT).unwrap(), b"done");
    assert_eq!(kid.join(), 10_000);
    let e = bounded(LIMIT, move || rx.recv().unwrap_err());
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
}

#[test]
fn simplex_parent_sends_child_receives_until_close() {
    let _c = serial_clean();
    let (rx, tx) = Pipe::simplex::<u64>().unwrap();
    let kid = Kid::spawn(simplex_consumer, rx.into_inherited());
    for i in 1..=1_000 {
        tx.send(i).unwrap();
    }
    tx.close();
    assert_eq!(kid.join(), 500_500);
}
