//! The remote manager against hostile clients, beyond `remote.rs` (which
//! covers wrong and empty keys, a replayed handshake, garbage and oversized
//! frames and one panicking callable): a client that skips authentication
//! and sends real requests, every kind of unregistered name, a panicking
//! callable called by ten clients at once, 1,000 connections opened and
//! dropped at every point of the handshake, and handshakes dribbled byte by
//! byte (slowloris). Each is rejected, cut or contained and the server keeps
//! serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiproc_manager::{ErrorKind, ManagerServer, RemoteManager};
use multiproc_testkit::{bounded, wait_until};

const KEY: &[u8] = b"security test authkey";
const LIMIT: Duration = Duration::from_secs(60);

fn server() -> ManagerServer {
    ManagerServer::builder(KEY)
        .queue("q")
        .joinable_queue("jq")
        .dict("d")
        .list("l")
        .lock("lock")
        .event("e")
        .namespace("ns")
        .value("v", &0u64)
        .callable("square", |x: u64| x * x)
        .callable("boom", |_: u8| -> u8 { panic!("callable failed") })
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap()
}

fn read_frame(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    c.read_exact(&mut buf)?;
    Ok(buf)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A relay that records what the client sends to `target`.
fn recording_relay(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let rec2 = Arc::clone(&rec);
    thread::spawn(move || {
        let (mut client, _) = l.accept().unwrap();
        let mut server = TcpStream::connect(target).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = client.read(&mut buf) {
            rec2.lock().unwrap().extend_from_slice(&buf[..n]);
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
    (addr, rec)
}

/// Reads until the server closes; returns what it sent.
fn rest(c: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = c.read_to_end(&mut v);
    v
}

#[test]
fn a_client_that_skips_authentication_is_served_nothing() {
    let s = server();
    // Record real requests of an authenticated client: a put of 42.
    let (relay, recorded) = recording_relay(s.local_addr());
    {
        let r = RemoteManager::connect(relay, KEY).unwrap();
        r.queue::<u64>("q").unwrap().put(42).unwrap();
    }
    let honest = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let q = honest.queue::<u64>("q").unwrap();
    assert_eq!(q.get().unwrap(), 42);
    let sent = recorded.lock().unwrap().clone();
    // The handshake answer is one frame of 64 bytes; what follows is requests.
    let requests = sent[4 + 64..].to_vec();
    assert!(!requests.is_empty());

    // Requests straight after the greeting, and before reading it.
    for read_hello_first in [true, false] {
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        if read_hello_first {
            assert!(read_frame(&mut c).unwrap().starts_with(b"MPMGR1"));
        }
        let _ = c.write_all(&requests);
        let got = rest(&mut c);
        // At most the greeting and the refusal, never a response.
        let mut expected = Vec::new();
        if !read_hello_first {
            expected.extend_from_slice(&got[..(4 + 6 + 32).min(got.len())]);
        }
        expected.extend_from_slice(&frame(b"DENIED"));
        assert_eq!(got, expected, "an unauthenticated client got a response");
    }
    // A request frame the size of a handshake answer is refused too.
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    read_frame(&mut c).unwrap();
    let mut fake = requests[4..].to_vec();
    fake.resize(64, 0);
    c.write_all(&frame(&fake)).unwrap();
    assert_eq!(rest(&mut c), frame(b"DENIED"));

    assert_eq!(q.qsize().unwrap(), 0, "a replayed request was executed");
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
}

#[test]
fn unregistered_names_of_every_kind_are_refused_and_the_client_goes_on() {
    let s = server();
    let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let kinds: Vec<(&str, multiproc_manager::Result<()>)> = vec![
        ("queue", r.queue::<u8>("nope").map(drop)),
        ("joinable_queue", r.joinable_queue::<u8>("nope").map(drop)),
        ("lifo_queue", r.lifo_queue::<u8>("nope").map(drop)),
        ("dict", r.dict::<u8, u8>("nope").map(drop)),
        ("list", r.list::<u8>("nope").map(drop)),
        ("value", r.value::<u8>("nope").map(drop)),
        ("lock", r.lock("nope").map(drop)),
        ("event", r.event("nope").map(drop)),
        ("namespace", r.namespace("nope").map(drop)),
        ("callable", r.callable::<u8, u8>("nope").map(drop)),
        // Registered names of another kind.
        ("lock named q", r.lock("q").map(drop)),
        ("callable named d", r.callable::<u8, u8>("d").map(drop)),
        ("queue named square", r.queue::<u8>("square").map(drop)),
        ("empty name", r.dict::<u8, u8>("").map(drop)),
        (
            "long name",
            r.dict::<u8, u8>(&"x".repeat(100_000)).map(drop),
        ),
    ];
    for (what, res) in kinds {
        let e = res.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{what}: {e}");
    }
    // The same connection still serves.
    let d = r.dict::<u8, u8>("d").unwrap();
    d.insert(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    assert_eq!(s.connections(), 1);
}

#[test]
fn a_panicking_callable_under_load_is_contained() {
    let s = server();
    let addr = s.local_addr();
    let panics = bounded(LIMIT, move || {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                thread::spawn(move || {
                    let r = RemoteManager::connect(addr, KEY).unwrap();
                    let boom = r.callable::<u8, u8>("boom").unwrap();
                    let square = r.callable::<u64, u64>("square").unwrap();
                    let mut n = 0;
                    for j in 0..20u64 {
                        let e = boom.call(&1).unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
                        n += 1;
                        assert_eq!(square.call(&(i + j)).unwrap(), (i + j) * (i + j));
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
    });
    assert_eq!(panics, 200);
    let r = RemoteManager::connect(addr, KEY).unwrap();
    assert_eq!(
        r.callable::<u64, u64>("square").unwrap().call(&9).unwrap(),
        81
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[test]
fn a_thousand_connections_opened_and_dropped_leave_the_server_serving() {
    let s = server();
    let addr = s.local_addr();
    let r = RemoteManager::connect(addr, KEY).unwrap();
    let v = r.value::<u64>("v").unwrap();
    v.get().unwrap();
    let (fds, tasks) = (open_fds(), threads());
    // An honest client counts meanwhile.
    let counter = {
        let r = r.clone();
        thread::spawn(move || {
            let d = r.dict::<u8, u64>("d").unwrap();
            let mut n = 0u64;
            let stop = Instant::now() + Duration::from_millis(1_500);
            while Instant::now() < stop {
                n += 1;
                d.insert(&0, &n).unwrap();
            }
            assert_eq!(d.get(&0).unwrap(), Some(n));
            n
        })
    };
    let t = Instant::now();
    for i in 0..1_000 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        match i % 5 {
            0 => {} // dropped at once
            1 => {
                let _ = read_frame(&mut c);
            }
            2 => {
                // Half a handshake frame.
                let _ = read_frame(&mut c);
                let _ = c.write_all(&frame(&[9u8; 64])[..30]);
            }
            3 => {
                // A wrong answer: refused, then dropped.
                let _ = read_frame(&mut c);
                let _ = c.write_all(&frame(&[9u8; 64]));
                let _ = read_frame(&mut c);
            }
            _ => {
                // Only a frame header.
                let _ = c.write_all(&[64, 0]);
            }
        }
    }
    let opened = t.elapsed();
    let counted = bounded(LIMIT, move || counter.join().unwrap());
    assert!(counted > 0);
    // Every dropped connection is closed by the server.
    assert!(
        wait_until(Duration::from_secs(20), || s.connections() == 1),
        "{} connections still open",
        s.connections()
    );
    assert!(
        wait_until(Duration::from_secs(10), || open_fds() <= fds + 2
            && threads() <= tasks + 2),
        "fds {} (was {fds}), threads {} (was {tasks})",
        open_fds(),
        threads()
    );
    eprintln!(
        "1,000 connections opened and dropped in {opened:?}; the honest client made {counted} updates meanwhile"
    );
    v.set(&5).unwrap();
    assert_eq!(v.get().unwrap(), 5);
    let r2 = RemoteManager::connect(addr, KEY).unwrap();
    assert_eq!(r2.value::<u64>("v").unwrap().get().unwrap(), 5);
}

/// Clients that send their handshake answer one byte every half second
/// (slowloris) are cut at the handshake's 10 s deadline, however the bytes
/// trickle in; meanwhile honest clients connect and are served as usual.
#[test]
fn handshakes_dribbled_byte_by_byte_are_cut_at_the_deadline_and_others_served() {
    const DRIBBLERS: usize = 20;
    let s = server();
    let addr = s.local_addr();
    bounded(LIMIT, move || {
        let t = Instant::now();
        let dribblers: Vec<_> = (0..DRIBBLERS)
            .map(|_| {
                thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let began = Instant::now();
                    c.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    read_frame(&mut c).unwrap();
                    // A 64-byte answer takes 32 s at this pace.
                    for &b in &frame(&[9u8; 64]) {
                        if c.write_all(&[b]).is_err() {
                            return (began.elapsed(), true);
                        }
                        // A read that returns (end of stream, or an error
                        // other than the timeout) means the server closed it.
                        let mut buf = [0u8; 64];
                        match c.read(&mut buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            _ => return (began.elapsed(), true),
                        }
                    }
                    (began.elapsed(), false)
                })
            })
            .collect();
        // Honest clients, each with a fresh connection, served while the
        // dribblers hold theirs.
        let mut served = 0u64;
        let mut slowest = Duration::ZERO;
        while t.elapsed() < Duration::from_secs(8) {
            let op = Instant::now();
            let r = RemoteManager::connect(addr, KEY).unwrap();
            assert_eq!(
                r.callable::<u64, u64>("square").unwrap().call(&7).unwrap(),
                49
            );
            slowest = slowest.max(op.elapsed());
            served += 1;
            thread::sleep(Duration::from_millis(50));
        }
        let cuts: Vec<(Duration, bool)> =
            dribblers.into_iter().map(|h| h.join().unwrap()).collect();
        let (first, last) = cuts
            .iter()
            .fold((Duration::MAX, Duration::ZERO), |(lo, hi), c| {
                (lo.min(c.0), hi.max(c.0))
            });
        eprintln!(
            "{DRIBBLERS} dribbling handshakes cut after {first:?} to {last:?}; \
             {served} honest clients served meanwhile, the slowest in {slowest:?}"
        );
        assert!(
            cuts.iter().all(|c| c.1),
            "a dribbler was never cut: {cuts:?}"
        );
        // Cut by the 10 s deadline, not earlier and not by the per-read
        // timeout (which each byte restarts).
        assert!(first >= Duration::from_secs(9), "cut early: {cuts:?}");
        assert!(last < Duration::from_secs(12), "cut late: {cuts:?}");
        assert!(served >= 20, "only {served} honest clients served");
        assert!(
            slowest < Duration::from_secs(2),
            "an honest client took {slowest:?}"
        );
    });
}
