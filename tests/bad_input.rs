//! Bad input at the process and network boundaries: proxies that decode the
//! wrong type, a wait too long to represent, zero-length and oversized
//! frames, and frames split byte by byte across TCP segments.
//! (manager/tests/remote.rs covers garbage, oversized and truncated frames,
//! wrong keys and replays; they are not repeated here.)

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use multiproc::channel::{channel, Receiver, RecvTimeoutError, TryRecvError};
use multiproc::codec;
use multiproc::{ErrorKind, ManagerServer, Pipe, RemoteManager};

const KEY: &[u8] = b"bad input key";
const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` on a thread and fails the test if it does not finish in `limit`.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        // The step panicked: report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the step ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("test step did not finish within {limit:?}")
        }
    }
}

fn server() -> ManagerServer {
    ManagerServer::builder(KEY)
        .queue("q")
        .list("l")
        .dict("d")
        .value("v", &"text".to_string())
        .namespace("ns")
        .callable("len", |s: String| s.len() as u64)
        .max_frame(64 * 1024)
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap()
}

// ---------------------------------------------------------------------------
// Proxies decoding the wrong type
// ---------------------------------------------------------------------------

#[test]
fn remote_proxies_of_the_wrong_type_get_errors_and_the_connection_goes_on() {
    bounded(Duration::from_secs(60), || {
        let s = server();
        let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        let refused = |e: multiproc::Error| assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

        // The first typed lookup fixes a named queue's type; a lookup as
        // another type is refused, and so is every call of a proxy decoded as
        // another type (as when passed to a process expecting another): the
        // refused get takes nothing.
        let qs = r.queue::<String>("q").unwrap();
        qs.put("not a number".to_string()).unwrap();
        refused(r.queue::<u64>("q").unwrap_err());
        let qn: multiproc::QueueProxy<u64> = codec::decode(&codec::encode(&qs).unwrap()).unwrap();
        refused(qn.get_timeout(LIMIT).unwrap_err());
        refused(qn.put(7).unwrap_err().into());
        assert_eq!(qs.qsize().unwrap(), 1);
        assert_eq!(qs.get().unwrap(), "not a number");

        // A list, a value and a dict looked up or decoded as other types.
        let ls = r.list::<String>("l").unwrap();
        ls.push(&"abc".to_string()).unwrap();
        refused(r.list::<bool>("l").unwrap_err());
        let lb: multiproc::ListProxy<bool> = codec::decode(&codec::encode(&ls).unwrap()).unwrap();
        refused(lb.get(0).unwrap_err());
        let items: Vec<_> = lb.iter().collect();
        assert!(items.iter().all(Result::is_err), "{items:?}");
        assert_eq!(ls.get(0).unwrap(), "abc");
        refused(r.value::<u64>("v").unwrap_err());
        assert_eq!(r.value::<String>("v").unwrap().get().unwrap(), "text");
        let d = r.dict::<String, u64>("d").unwrap();
        d.insert(&"k".to_string(), &1).unwrap();
        refused(r.dict::<String, i64>("d").unwrap_err());
        refused(r.dict::<u64, u64>("d").unwrap_err());
        assert_eq!(d.get("k").unwrap(), Some(1));

        // A namespace holds untyped attributes: one read as another type
        // fails to decode, and the right type still reads it.
        let ns = r.namespace("ns").unwrap();
        ns.set("x", &-1i64).unwrap();
        assert_eq!(
            ns.get::<Vec<String>>("x").unwrap_err().kind(),
            ErrorKind::Serialization
        );
        assert_eq!(ns.get::<i64>("x").unwrap(), Some(-1));

        // A callable is typed at registration: other argument or result
        // types are refused before it runs.
        refused(r.callable::<Vec<u32>, u64>("len").unwrap_err());
        refused(r.callable::<String, String>("len").unwrap_err());
        assert_eq!(
            r.callable::<String, u64>("len")
                .unwrap()
                .call(&"four".to_string())
                .unwrap(),
            4
        );
        // The same connection served all of it.
        assert_eq!(s.connections(), 1);
    });
}

#[test]
fn a_wait_too_long_to_represent_is_a_wait_forever_not_a_dead_connection() {
    bounded(Duration::from_secs(60), || {
        let s = server();
        let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        let q = r.queue::<u64>("q").unwrap();
        q.put(1).unwrap();
        // `Instant::now() + Duration::MAX` overflows: the server must not
        // compute it (it used to panic and drop the connection).
        assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
        let waiter = {
            let q = q.clone();
            thread::spawn(move || q.get_timeout(Duration::MAX))
        };
        thread::sleep(Duration::from_millis(200));
        q.put(2).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 2);
        assert_eq!(q.qsize().unwrap(), 0);
    });
}

fn square(x: u64) -> u64 {
    x * x
}

fn exit_with(x: u64) -> u64 {
    x + 1
}

#[test]
fn every_timeout_too_long_to_represent_is_a_wait_forever() {
    use multiproc::{
        as_completed, wait, ApplyOptions, Executor, IMapOptions, Pool, Process, ReturnWhen,
    };
    multiproc_testkit::checked(Duration::from_secs(60), || {
        let pool = Pool::new(2).unwrap();
        let r = pool.apply_async(square, 3).unwrap();
        assert!(r.wait_timeout(Duration::MAX));
        assert_eq!(r.get_timeout(Duration::MAX).unwrap(), 9);
        // A task timeout of Duration::MAX is no timeout.
        let opts = ApplyOptions::new().timeout(Duration::MAX);
        let r = pool.apply_async_with(square, 4, opts).unwrap();
        assert_eq!(r.get_timeout(Duration::MAX).unwrap(), 16);
        let mut it = pool.imap(square, vec![5u64]).unwrap();
        assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap(), 25);
        assert!(it.next_timeout(Duration::MAX).is_none());
        pool.close();
        pool.join().unwrap();

        let ex = Executor::new(1).unwrap();
        let fs: Vec<_> = (0..3u64).map(|x| ex.submit(square, x).unwrap()).collect();
        assert_eq!(fs[0].result_timeout(Duration::MAX).unwrap(), 0);
        let w = wait(fs, Some(Duration::MAX), ReturnWhen::AllCompleted);
        assert_eq!(w.done.len(), 3);
        assert_eq!(as_completed(w.done, Some(Duration::MAX)).count(), 3);
        let sums: Vec<u64> = ex
            .map_with(square, 0..4u64, IMapOptions::new(), Some(Duration::MAX))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(sums, [0, 1, 4, 9]);
        ex.shutdown(true, false).unwrap();

        let mut p = Process::spawn(exit_with, 1).unwrap();
        assert_eq!(p.join_timeout(Duration::MAX).unwrap(), 2);
    });
}

// ---------------------------------------------------------------------------
// Zero-length and oversized frames
// ---------------------------------------------------------------------------

#[test]
fn zero_length_frames_are_errors_for_typed_receivers_and_the_channel_goes_on() {
    bounded(LIMIT, || {
        let (w, r) = UnixStream::pair().unwrap();
        let rx: Receiver<u64> = Receiver::from(OwnedFd::from(r));
        let mut w = w;
        // Three empty frames, then a real one.
        let mut bytes = vec![0u8; 24];
        let five = codec::encode(&5u64).unwrap();
        bytes.extend_from_slice(&(five.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&five);
        w.write_all(&bytes).unwrap();
        for _ in 0..3 {
            let e = rx.recv_timeout(LIMIT).unwrap_err();
            assert!(matches!(e, RecvTimeoutError::Decode(_)), "{e:?}");
        }
        assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 5);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

        // Through a pipe: an empty byte message read as a value.
        let (a, b) = Pipe::new::<u64>().unwrap();
        b.send_bytes(b"").unwrap();
        b.send(6).unwrap();
        assert_eq!(a.recv().unwrap_err().kind(), ErrorKind::Serialization);
        assert_eq!(a.recv().unwrap(), 6);
        // And the other way round: a value read as bytes is its encoding.
        b.send(7).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), codec::encode(&7u64).unwrap());
    });
}

#[test]
fn an_oversized_pipe_frame_is_an_error_then_the_pipe_is_closed() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<String>().unwrap();
        let mut raw = UnixStream::from(b.as_fd().try_clone_to_owned().unwrap());
        // A header claiming 2^40 bytes (over the 1 GiB limit), then junk.
        raw.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
        raw.write_all(b"junk").unwrap();
        let e = a.recv_bytes().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization, "{e}");
        // The stream cannot be resynchronized: both ways are closed.
        assert_eq!(a.recv().unwrap_err().kind(), ErrorKind::Closed);
        assert!(b.send("late".into()).is_err());
        // No allocation of the claimed size was attempted: we are still here.
        let (tx, rx) = channel::<u8>().unwrap();
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
    });
}

#[test]
fn zero_length_frames_to_the_remote_manager_end_that_connection_only() {
    use multiproc_manager::fuzzing::serve_bytes;
    bounded(Duration::from_secs(30), || {
        // Before authentication: an empty answer to the challenge is denied.
        let out = serve_bytes(&[0, 0, 0, 0], false).unwrap();
        assert!(out.ends_with(b"DENIED"), "{out:?}");
        // After it: an empty request does not decode; the connection closes
        // and a ping behind it is never answered.
        let ping = [1u8, 0, 0, 0, 4];
        let answered = serve_bytes(&ping, true).unwrap();
        assert!(!answered.is_empty());
        let mut input = vec![0, 0, 0, 0];
        input.extend_from_slice(&ping);
        assert!(serve_bytes(&input, true).unwrap().is_empty());

        // A real server goes on serving other clients meanwhile.
        let s = server();
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut hello = [0u8; 4 + 38];
        c.read_exact(&mut hello).unwrap();
        c.write_all(&[0, 0, 0, 0]).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.ends_with(b"DENIED"), "{rest:?}");
        let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        r.queue::<u8>("q").unwrap().put(1).unwrap();
    });
}

// ---------------------------------------------------------------------------
// Frames split byte by byte across TCP segments
// ---------------------------------------------------------------------------

/// Copies `from` to `to` one byte per write (with `TCP_NODELAY`, so each
/// byte is its own segment), pausing every 16 bytes; counts in `count`.
fn trickle(mut from: TcpStream, mut to: TcpStream, count: &AtomicUsize) {
    to.set_nodelay(true).unwrap();
    let mut b = [0u8; 1];
    while let Ok(1) = from.read(&mut b) {
        if to.write_all(&b).is_err() {
            break;
        }
        if count.fetch_add(1, Ordering::Relaxed) % 16 == 15 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A relay to `target` that splits everything, both ways, into one-byte
/// segments. Returns its address and the bytes it relayed up and down.
fn byte_relay(target: SocketAddr) -> (SocketAddr, Arc<[AtomicUsize; 2]>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let c = Arc::clone(&counts);
    thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let server = TcpStream::connect(target).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let c3 = Arc::clone(&c);
        thread::spawn(move || trickle(c2, s2, &c3[0]));
        trickle(server, client, &c[1]);
    });
    (addr, counts)
}

#[test]
fn frames_split_byte_by_byte_are_read_whole_by_server_and_client() {
    bounded(Duration::from_secs(60), || {
        let s = server();
        let (relay, counts) = byte_relay(s.local_addr());
        let r = RemoteManager::connect(relay, KEY).unwrap();
        let q = r.queue::<Vec<u8>>("q").unwrap();
        // A message bigger than one read buffer, so frames straddle reads.
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        q.put(big.clone()).unwrap();
        q.put(vec![]).unwrap();
        assert_eq!(q.get().unwrap(), big);
        assert_eq!(q.get().unwrap(), Vec::<u8>::new());
        let d = r.dict::<String, u64>("d").unwrap();
        for i in 0..20 {
            d.insert(&format!("k{i}"), &i).unwrap();
        }
        assert_eq!(d.get(&"k19".to_string()).unwrap(), Some(19));
        assert_eq!(d.len().unwrap(), 20);
        let (up, down) = (
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed),
        );
        assert!(up > 20_000 && down > 20_000, "relayed {up} up, {down} down");
    });
}
