//! The remote manager: authentication, hostile input, many clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiproc_manager::{ErrorKind, ManagerServer, RemoteManager};
use multiproc_testkit::wait_until;

const KEY: &[u8] = b"test authkey";

fn server() -> ManagerServer {
    ManagerServer::builder(KEY)
        .queue("tasks")
        .queue("results")
        .dict("d")
        .list("l")
        .lock("lock")
        .value("v", &0u64)
        .callable("square", |x: u64| x * x)
        .callable("boom", |_: u8| -> u8 { panic!("callable failed") })
        .callable("count", count)
        .max_frame(64 * 1024)
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn count(n: u64) -> u64 {
    COUNTER.fetch_add(n, Ordering::SeqCst) + n
}

/// Runs `f` on a thread and fails the test if it does not finish in time.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("test step timed out")
}

#[test]
fn typed_objects_and_callables_by_name() {
    let s = server();
    assert_ne!(s.local_addr().port(), 0);
    let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let q = r.queue::<String>("tasks").unwrap();
    q.put("a".into()).unwrap();
    q.put("b".into()).unwrap();
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), "b");
    assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
    let t = Instant::now();
    let e = q.get_timeout(Duration::from_millis(200)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let d = r.dict::<String, Vec<u32>>("d").unwrap();
    d.insert(&"x".into(), &vec![1, 2]).unwrap();
    assert_eq!(d.get("x").unwrap(), Some(vec![1, 2]));
    assert_eq!(d.len().unwrap(), 1);

    assert_eq!(
        r.callable::<u64, u64>("square").unwrap().call(&12).unwrap(),
        144
    );
    let e = r.callable::<u8, u8>("boom").unwrap().call(&1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    // Wrong argument type for the registered callable: refused by name.
    let e = r.callable::<String, u64>("square").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("callable of (u64, u64)"), "{e}");

    // Unknown names and kind mismatches.
    assert_eq!(
        r.queue::<u8>("nope").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        r.dict::<u8, u8>("tasks").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // A dict asked for with other types than its first lookup's.
    d.insert(&"y".into(), &vec![300, 70000]).unwrap();
    let e = r.dict::<String, u8>("d").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // A list iterates live over TCP too.
    let l = r.list::<u32>("l").unwrap();
    l.extend([1, 2]).unwrap();
    let mut it = l.iter();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    l.push(&3).unwrap();
    assert_eq!(it.collect::<Result<Vec<_>, _>>().unwrap(), vec![2, 3]);

    // No code from clients: update_with is refused remotely.
    let v = r.value::<u64>("v").unwrap();
    assert_eq!(
        v.update_with(|x| x + 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(v.get().unwrap(), 0);
}

#[test]
fn a_panicking_callable_reports_its_message_and_location() {
    let s = server();
    let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let boom = r.callable::<u8, u8>("boom").unwrap();
    for _ in 0..2 {
        let e = boom.call(&1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
        let p = e.panic_info().expect("the panic's details");
        assert_eq!(p.message, "callable failed");
        let at = p.location.as_deref().expect("the panic's location");
        assert!(at.contains("tests/remote.rs:"), "{at}");
        assert!(e.to_string().contains("callable failed"), "{e}");
    }
    // The server keeps serving this client and others.
    let square = r.callable::<u64, u64>("square").unwrap();
    assert_eq!(square.call(&5).unwrap(), 25);
    let r2 = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    assert_eq!(
        r2.callable::<u64, u64>("square").unwrap().call(&6).unwrap(),
        36
    );
}

#[test]
fn wrong_authkey_is_rejected_and_served_nothing() {
    let s = server();
    let e = RemoteManager::connect(s.local_addr(), b"wrong key").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    let e = RemoteManager::connect(s.local_addr(), b"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");

    // Raw: answer the challenge with junk, then try to send a request anyway.
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = read_frame(&mut c).unwrap();
    assert!(hello.starts_with(b"MPMGR1"));
    write_frame(&mut c, &[7u8; 64]);
    assert_eq!(read_frame(&mut c).unwrap(), b"DENIED");
    let _ = c.write_all(&[1, 0, 0, 0, 0]);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "a rejected client got {} more bytes",
        rest.len()
    );

    // A server without the key is refused by the client, too.
    let other = ManagerServer::builder(b"other key")
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap();
    let e = RemoteManager::connect(other.local_addr(), KEY).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);

    assert_eq!(
        ManagerServer::builder(b"")
            .bind("127.0.0.1:0")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

fn read_frame(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    c.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_frame(c: &mut TcpStream, payload: &[u8]) {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    c.write_all(&out).unwrap();
}

/// A relay between a client and the server that records what the client sent.
fn recording_relay(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let rec2 = Arc::clone(&rec);
    thread::spawn(move || {
        let (mut client, _) = l.accept().unwrap();
        let mut server = TcpStream::connect(target).unwrap();
        let mut c2 = client.try_clone().unwrap();
        let mut s2 = server.try_clone().unwrap();
        thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    rec2.lock().unwrap().extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
    (addr, rec)
}

#[test]
fn replayed_handshake_is_rejected() {
    let s = server();
    let (relay, recorded) = recording_relay(s.local_addr());
    let r = RemoteManager::connect(relay, KEY).unwrap();
    let q = r.queue::<u64>("tasks").unwrap();
    q.put(5).unwrap();
    assert_eq!(q.get().unwrap(), 5);
    let sent = recorded.lock().unwrap().clone();
    // The client's first frame is its nonce and proof: 4 + 64 bytes.
    assert!(sent.len() > 68);

    // Replay everything the client sent on a fresh connection.
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = read_frame(&mut c).unwrap();
    assert!(hello.starts_with(b"MPMGR1"));
    c.write_all(&sent).unwrap();
    assert_eq!(read_frame(&mut c).unwrap(), b"DENIED");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the replayed session was served");
    // The queue saw nothing from the replay.
    assert_eq!(q.qsize().unwrap(), 0);
}

#[test]
fn garbage_and_oversized_frames_do_not_disturb_others() {
    let s = server();
    let addr = s.local_addr();
    let r = RemoteManager::connect(addr, KEY).unwrap();
    let d = r.dict::<u32, u32>("d").unwrap();
    d.insert(&1, &1).unwrap();

    let worker = {
        let r = r.clone();
        thread::spawn(move || {
            let d = r.dict::<u32, u32>("d").unwrap();
            let stop = Instant::now() + Duration::from_millis(800);
            let mut n = 0u32;
            while Instant::now() < stop {
                d.insert(&2, &n).unwrap();
                assert_eq!(d.get(&2).unwrap(), Some(n));
                n += 1;
            }
            n
        })
    };

    let attacker = move |payload: Vec<u8>, authenticate: bool| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if authenticate {
            // Authenticate properly through a relay-free handshake.
            let hello = read_frame(&mut c).unwrap();
            let nonce_s = &hello[6..];
            let nonce_c = [3u8; 32];
            let proof = hmac_sha256(KEY, &[b"client", nonce_s, &nonce_c]);
            let mut m = nonce_c.to_vec();
            m.extend_from_slice(&proof);
            write_frame(&mut c, &m);
            assert!(read_frame(&mut c).unwrap().starts_with(b"WELCOME"));
        }
        let _ = c.write_all(&payload);
        let mut rest = Vec::new();
        // The server closes the connection: read_to_end returns.
        let _ = c.read_to_end(&mut rest);
        rest
    };
    // Before authentication: garbage, an oversized header, a truncated frame.
    attacker(vec![0xff; 300], false);
    attacker(u32::MAX.to_le_bytes().to_vec(), false);
    // After authentication: undecodable request, oversized frame, truncated frame.
    let mut junk = 50u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xee; 50]);
    assert!(attacker(junk, true).is_empty());
    let mut huge = (1u32 << 30).to_le_bytes().to_vec();
    huge.extend_from_slice(&[0; 1000]);
    assert!(attacker(huge, true).is_empty());
    let mut cut = 100u32.to_le_bytes().to_vec();
    cut.extend_from_slice(&[0; 10]);
    let h = thread::spawn(move || attacker(cut, true));
    thread::sleep(Duration::from_millis(100));
    drop(h); // the connection stays open half-written; others go on

    // Meanwhile and afterwards the honest clients are served.
    let served = bounded(Duration::from_secs(60), move || worker.join().unwrap());
    assert!(served > 0);
    assert_eq!(d.get(&1).unwrap(), Some(1));
    let r2 = RemoteManager::connect(addr, KEY).unwrap();
    assert_eq!(r2.dict::<u32, u32>("d").unwrap().get(&1).unwrap(), Some(1));
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

#[test]
fn two_hundred_concurrent_clients_count_exactly() {
    let s = server();
    let addr = s.local_addr();
    COUNTER.store(0, Ordering::SeqCst);
    let total = bounded(Duration::from_secs(240), move || {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let r = RemoteManager::connect(addr, KEY).unwrap();
                        let count = r.callable::<u64, u64>("count").unwrap();
                        let q = r.queue::<u32>("results").unwrap();
                        for i in 0..1000u32 {
                            if i % 2 == 0 {
                                count.call(&1).unwrap();
                            } else {
                                q.put(i).unwrap();
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let r = RemoteManager::connect(addr, KEY).unwrap();
        r.queue::<u32>("results").unwrap().qsize().unwrap()
    });
    assert_eq!(COUNTER.load(Ordering::SeqCst), 200 * 500);
    assert_eq!(total, 200 * 500);
}

#[test]
fn server_shutdown_gives_clients_errors_not_hangs() {
    let s = server();
    let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let q = r.queue::<u8>("tasks").unwrap();
    let waiter = thread::spawn(move || q.get());
    thread::sleep(Duration::from_millis(100));
    s.shutdown();
    let res = bounded(Duration::from_secs(10), move || waiter.join().unwrap());
    // The get was in flight: an error naming the server, not a retry.
    let e = res.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.to_string().contains(&s.local_addr().to_string()), "{e}");
    let e = r.dict::<u8, u8>("d").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
}

#[test]
fn connect_to_a_server_restarted_on_the_same_address_works_at_once() {
    let first = server();
    let addr = first.local_addr();
    let r1 = RemoteManager::connect(addr, KEY).unwrap();
    let old = r1.dict::<u32, u32>("d").unwrap();
    old.insert(&1, &1).unwrap();
    first.shutdown();
    drop(first);

    let second = server_on(addr);
    // The stale connection of this thread is not handed out again.
    let r2 = RemoteManager::connect(addr, KEY).unwrap();
    let d = r2.dict::<u32, u32>("d").unwrap();
    assert_eq!(d.get(&1).unwrap(), None, "a fresh server has a fresh dict");
    d.insert(&2, &2).unwrap();
    // The first manager handle works again too (no request was in flight).
    assert_eq!(r1.dict::<u32, u32>("d").unwrap().get(&2).unwrap(), Some(2));
    // A proxy of an object of the first server names the problem.
    let e = old.get(&1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("restarted"), "{e}");
    drop(second);
}

/// The objects of [`server`] on `addr` (for a restart on the same address).
fn server_on(addr: SocketAddr) -> ManagerServer {
    ManagerServer::builder(KEY)
        .dict("d")
        .queue("tasks")
        .max_frame(64 * 1024)
        .quiet(true)
        .bind(addr)
        .unwrap()
}

/// A TCP relay to `target` whose client connections can be cut, as a
/// network failure would, while the server behind it stays up.
struct Relay {
    addr: SocketAddr,
    clients: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes passed on from clients to the server.
    forwarded: Arc<AtomicU64>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let clients = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (c2, f2) = (Arc::clone(&clients), Arc::clone(&forwarded));
        thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    return;
                };
                c2.lock().unwrap().push(client.try_clone().unwrap());
                let pumps = [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        Some(&f2),
                    ),
                    (server, client, None),
                ];
                for (mut from, mut to, count) in pumps {
                    let count = count.map(Arc::clone);
                    thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            if let Some(c) = &count {
                                c.fetch_add(n as u64, Ordering::SeqCst);
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            addr,
            clients,
            forwarded,
        }
    }

    /// Closes every client connection made so far.
    fn cut(&self) {
        for c in self.clients.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_lost_connection_is_reopened_on_the_next_call_when_nothing_was_in_flight() {
    let s = server();
    let relay = Relay::start(s.local_addr());
    let r = RemoteManager::connect(relay.addr, KEY).unwrap();
    let d = r.dict::<u32, u32>("d").unwrap();
    let q = r.queue::<u32>("tasks").unwrap();
    d.insert(&7, &70).unwrap();
    relay.cut();
    // The loss is complete once the server has seen it.
    assert!(wait_until(Duration::from_secs(10), || s.connections() == 0));
    // Nothing was in flight: the proxies reconnect and go on.
    assert_eq!(d.get(&7).unwrap(), Some(70));
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);

    // Cut while a request is in flight: an error that names the manager,
    // not a silent retry (the server may or may not have run it).
    let (q2, addr, forwarded) = (q.clone(), relay.addr, Arc::clone(&relay.forwarded));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let waiter = thread::spawn(move || {
        q2.qsize().unwrap(); // this thread's connection is open
        ready_tx.send(forwarded.load(Ordering::SeqCst)).unwrap();
        let first = q2.get_timeout(Duration::from_secs(20));
        // Nothing in flight any more: the next call reconnects.
        (first, q2.qsize())
    });
    let before = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The get has reached the server: it is in flight, blocked there.
    assert!(wait_until(Duration::from_secs(10), || {
        relay.forwarded.load(Ordering::SeqCst) > before
    }));
    relay.cut();
    let (first, after) = bounded(Duration::from_secs(30), move || waiter.join().unwrap());
    let e = first.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    assert!(e.to_string().contains("in flight"), "{e}");
    assert_eq!(after.unwrap(), 0);
    // Once the server has dropped every connection (the blocked get ended
    // when its client went), the get in flight has taken nothing.
    assert!(wait_until(Duration::from_secs(10), || s.connections() == 0));
    q.put(5).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 5);
}

#[test]
fn a_lock_taken_through_a_lost_connection_is_not_released_through_a_new_one() {
    let s = server();
    let relay = Relay::start(s.local_addr());
    let r = RemoteManager::connect(relay.addr, KEY).unwrap();
    let lock = r.lock("lock").unwrap();
    let d = r.dict::<u32, u32>("d").unwrap();
    let guard = lock.lock().unwrap();
    relay.cut();
    // The server releases the lock of the lost connection; another client
    // takes it.
    let other = RemoteManager::connect(s.local_addr(), KEY).unwrap();
    let other_lock = other.lock("lock").unwrap();
    let mut theirs = None;
    assert!(wait_until(Duration::from_secs(10), || {
        theirs = other_lock.try_lock().unwrap();
        theirs.is_some()
    }));
    // This thread believed it held the lock: its next call says it does not
    // any more instead of carrying on unprotected.
    let e = d.get(&1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.to_string().contains("lock"), "{e}");
    assert!(e.to_string().contains(&relay.addr.to_string()), "{e}");
    // Dropping the stale guard does not free the other client's lock.
    drop(guard);
    assert!(other_lock.is_locked().unwrap());
    assert!(lock.try_lock().unwrap().is_none());
    // The next calls go through a new connection.
    assert_eq!(d.get(&1).unwrap(), None);
    drop(theirs);
    assert!(lock.try_lock().unwrap().is_some());
}
