//! The local manager's protocol, seen from raw sockets and connections.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::Instant;

use multiproc_ipc::codec::Codec;

use super::conn::Channel;
use super::wire::{abstract_addr, read_frame, FIRST_REQUEST_MAX, SOCKET_REQUESTS, WAITING};
use super::*;
use crate::client::Conn;
use crate::protocol::{Block, Op, Response};

fn local(m: &Manager) -> (String, [u8; TOKEN], i32) {
    match m.endpoint() {
        Endpoint::Local { addr, token, pid } => (addr.clone(), *token, *pid),
        Endpoint::Remote { .. } => unreachable!("a local manager"),
    }
}

#[test]
fn a_wrong_token_is_refused_with_the_first_request_and_others_are_served() {
    let m = Manager::start().expect("manager");
    let (addr, token, pid) = local(&m);
    let mut wrong = token;
    wrong[0] ^= 1;
    let mut intruder = LocalConn::connect(&addr, &wrong, pid).expect("the socket connects");
    let e = intruder.call(&Request::Ping).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(!intruder.usable());
    let mut client = LocalConn::connect(&addr, &token, pid).expect("connect");
    client.call(&Request::Ping).expect("served");
    client
        .call(&Request::Ping)
        .expect("served again, on the socket");
}

#[test]
fn an_oversized_first_request_frame_closes_that_connection_only() {
    let m = Manager::start().expect("manager");
    let (addr, token, pid) = local(&m);
    let mut raw = UnixStream::connect_addr(&abstract_addr(&addr).unwrap()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&(TOKEN as u32).to_le_bytes());
    out.extend_from_slice(&token);
    out.extend_from_slice(&(FIRST_REQUEST_MAX as u32 + 1).to_le_bytes());
    raw.write_all(&out).unwrap();
    // Closed without an answer (the length alone is refused).
    let mut b = [0u8; 16];
    assert_eq!(raw.read(&mut b).expect("closed, not timed out"), 0);
    let mut client = LocalConn::connect(&addr, &token, pid).expect("connect");
    client.call(&Request::Ping).expect("others are served");
}

/// A fresh connection to `m`.
fn conn(m: &Manager) -> LocalConn {
    let (addr, token, pid) = local(m);
    LocalConn::connect(&addr, &token, pid).expect("connect")
}

fn new_queue(c: &mut LocalConn) -> u64 {
    match c.call(&Request::Create(
        Kind::Queue,
        Init::Queue { maxsize: 0 },
        None,
    )) {
        Ok(Response::Object(id, Kind::Queue)) => id,
        other => panic!("a queue, not {other:?}"),
    }
}

#[test]
fn a_connection_makes_its_first_requests_on_its_socket_and_then_takes_a_channel() {
    let m = Manager::start().expect("manager");
    let mut c = conn(&m);
    for answered in 1..=SOCKET_REQUESTS {
        c.call(&Request::Ping).expect("served");
        assert!(
            matches!(c.chan, Channel::Socket(n) if n == answered),
            "request {answered} is answered on the socket: {:?}",
            c.chan
        );
    }
    let q = new_queue(&mut c);
    assert!(
        matches!(c.chan, Channel::Ready(_)),
        "the next request takes the channel: {:?}",
        c.chan
    );
    let put = Request::Op(q, Op::QueuePut(vec![7], Block::No));
    assert!(matches!(c.call(&put), Ok(Response::Unit)));
    // The other connection sees what went through the channel.
    let mut other = conn(&m);
    let got = other.call(&Request::Op(q, Op::QueueGet(Block::No)));
    assert!(
        matches!(got, Ok(Response::Value(ref v)) if v == &[7]),
        "{got:?}"
    );
    assert!(matches!(other.chan, Channel::Socket(1)), "{:?}", other.chan);
}

#[test]
fn a_request_too_large_for_the_socket_takes_the_channel_at_once() {
    let m = Manager::start().expect("manager");
    let big = vec![1u8; FIRST_REQUEST_MAX + 1];
    let list = Request::Create(Kind::List, Init::List(vec![big.clone()]), None);
    // As a connection's first request, and after others.
    for before in [0, 2] {
        let mut c = conn(&m);
        for _ in 0..before {
            c.call(&Request::Ping).expect("served");
        }
        let id = match c.call(&list) {
            Ok(Response::Object(id, Kind::List)) => id,
            other => panic!("a list, not {other:?}"),
        };
        assert!(matches!(c.chan, Channel::Ready(_)), "{:?}", c.chan);
        let got = c.call(&Request::Op(id, Op::ListGet(0)));
        assert!(
            matches!(got, Ok(Response::Value(ref v)) if v == &big),
            "{got:?}"
        );
    }
}

#[test]
fn a_first_request_that_waits_says_so_before_its_answer() {
    let m = Manager::start().expect("manager");
    let q = new_queue(&mut conn(&m));
    let (addr, token, _) = local(&m);
    let mut raw = UnixStream::connect_addr(&abstract_addr(&addr).unwrap()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let wait = Duration::from_millis(300);
    let get = Request::Op(q, Op::QueueGet(Block::For(wait)));
    let body = Codec::default().encode(&get).unwrap();
    let mut out = Vec::new();
    wire::push_frame(&mut out, &token);
    wire::push_frame(&mut out, &body);
    let asked = Instant::now();
    raw.write_all(&out).unwrap();
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).expect("the manager's first word");
    assert_eq!(u32::from_le_bytes(len), WAITING);
    assert!(asked.elapsed() < wait, "said before the wait ends");
    let mut answer = Vec::new();
    read_frame(&mut raw, 1 << 20, &mut answer).expect("then the answer");
    assert!(asked.elapsed() >= wait);
    let resp: Response = Codec::default().decode(&answer).unwrap();
    assert!(
        matches!(resp, Response::Error(ref e) if e.kind == ErrorKind::Timeout),
        "{resp:?}"
    );
}

/// A socket that plays a manager: takes a connection, answers its first
/// request well and its second with `answer`'s bytes, then closes.
fn fake_manager(answer: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let addr = format!(
        "multiproc-fake-manager-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let listener = UnixListener::bind_addr(&abstract_addr(&addr).unwrap()).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        read_frame(&mut s, TOKEN, &mut buf).unwrap();
        read_frame(&mut s, FIRST_REQUEST_MAX, &mut buf).unwrap();
        let mut unit = Vec::new();
        wire::push_frame(
            &mut unit,
            &Codec::default().encode(&Response::Unit).unwrap(),
        );
        s.write_all(&unit).unwrap();
        read_frame(&mut s, FIRST_REQUEST_MAX, &mut buf).unwrap();
        s.write_all(&answer).unwrap();
    });
    (addr, t)
}

#[test]
fn a_bad_answer_on_the_socket_is_an_error_not_a_hang() {
    let oversized = (u32::MAX - 1).to_le_bytes().to_vec();
    let mut truncated = 100u32.to_le_bytes().to_vec();
    truncated.extend_from_slice(&[0; 10]);
    let mut garbage = 3u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 3]);
    // A frame read whole but not decodable leaves the connection in step.
    let cases = [
        (oversized, ErrorKind::Remote, false),
        (truncated, ErrorKind::Closed, false),
        (garbage, ErrorKind::Remote, true),
    ];
    for (answer, kind, in_step) in cases {
        let (addr, t) = fake_manager(answer);
        let mut c = LocalConn::connect(&addr, &[0; TOKEN], 1).expect("connect");
        c.call(&Request::Ping).expect("a good first answer");
        let e = c.call(&Request::Ping).unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(c.usable(), in_step, "{e}");
        t.join().unwrap();
    }
}

#[test]
fn a_manager_that_dies_before_it_accepts_is_gone_not_a_refusal() {
    // A connection left in the backlog of a listening socket that then
    // closes (the manager died) is reset without a word, as a refused
    // token is; nothing listens there any more, so it is the manager's
    // death. The listener closes while the request waits for its answer.
    let addr = format!("multiproc-dying-manager-{}", std::process::id());
    let listener = UnixListener::bind_addr(&abstract_addr(&addr).unwrap()).unwrap();
    let mut c = LocalConn::connect(&addr, &[0; TOKEN], 1).expect("connect");
    let dies = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(listener);
    });
    let e = c.call(&Request::Ping).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(!c.usable());
    dies.join().unwrap();
}

#[test]
fn first_requests_that_wait_leave_handlers_for_the_next_clients() {
    // Each connection thread that takes a client when too few wait in
    // `accept` starts another; one whose first request waits for ever must
    // do so before it waits, or the next client is never accepted.
    let m = Manager::start().expect("manager");
    let mut c = conn(&m);
    let q = new_queue(&mut c);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (addr, token, pid) = local(&m);
            std::thread::spawn(move || {
                let mut w = LocalConn::connect(&addr, &token, pid).expect("connect");
                w.call(&Request::Op(q, Op::QueueGet(Block::Forever)))
            })
        })
        .collect();
    // Let the three reach their wait in the manager.
    std::thread::sleep(Duration::from_millis(200));
    let (addr, token, pid) = local(&m);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut next = LocalConn::connect(&addr, &token, pid).expect("connect");
        let _ = tx.send(next.call(&Request::Ping).map(|_| ()));
    });
    let served = rx.recv_timeout(Duration::from_secs(5));
    assert!(matches!(served, Ok(Ok(()))), "{served:?}");
    for i in 0..3 {
        c.call(&Request::Op(q, Op::QueuePut(vec![i], Block::No)))
            .expect("put");
    }
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Ok(Response::Value(_))));
    }
}
