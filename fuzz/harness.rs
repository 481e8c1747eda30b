//! What each fuzz target does with its input, shared by the `cargo fuzz`
//! targets (fuzz/fuzz_targets/) and the stable corpus replay
//! (tests/fuzz_corpus.rs), so that both feed the same decoders.
//!
//! Every function takes arbitrary bytes and must return without panicking,
//! whatever they hold; errors are expected and ignored.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use multiproc_ipc::channel::Receiver;
use multiproc_ipc::codec::{self, Codec};
use multiproc_ipc::pipe::Pipe;
use serde::{Deserialize, Serialize};

/// At most this many input bytes are written into a socket (its buffer
/// holds them without a reader).
const MAX_STREAM: usize = 96 << 10;

/// At most this many receives per input.
const MAX_RECVS: usize = 4096;

/// A message shaped like the project's own: enums, strings, byte buffers,
/// maps, options and recursion.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Task {
        id: u64,
        name: String,
        args: Vec<u8>,
    },
    Map(HashMap<String, Vec<i64>>),
    Ordered(BTreeMap<u32, (bool, char)>),
    Nested(Option<Box<Msg>>),
    Wide(i128, u128),
    Span(Duration),
    Unit,
}

fn check_round_trip<T>(c: &Codec, bytes: &[u8])
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = c.decode::<T>(bytes) {
        // What decodes re-encodes, and decodes to the same value.
        let again = match c.encode(&v) {
            Ok(b) => b,
            Err(e) => panic!("a decoded value does not re-encode: {e}"),
        };
        let back: T = match c.decode(&again) {
            Ok(b) => b,
            Err(e) => panic!("a re-encoded value does not decode: {e}"),
        };
        assert_eq!(back, v);
    }
    let _ = c.decode_prefix::<T>(bytes);
}

/// The codec: decodes `data` as several representative types, with the
/// default limit and with a small one, and checks that whatever decodes
/// round-trips.
pub fn codec(data: &[u8]) {
    for c in [Codec::default(), Codec::with_max_message(64)] {
        check_round_trip::<Msg>(&c, data);
        check_round_trip::<String>(&c, data);
        check_round_trip::<Vec<u8>>(&c, data);
        check_round_trip::<Vec<Vec<u64>>>(&c, data);
        check_round_trip::<(u8, HashMap<u32, String>, Option<i16>)>(&c, data);
        check_round_trip::<Result<Vec<String>, (u32, Box<[u16]>)>>(&c, data);
        let _ = c.decode::<(f64, f32)>(data);
        let _ = c.decode::<multiproc_ipc::Error>(data);
        let _ = c.decode::<multiproc_ipc::WireError>(data);
        let _ = c.decode::<multiproc_ipc::ExitInfo>(data);
        if let Ok(f) = c.decode::<multiproc_ipc::FnRef<u64, u64>>(data) {
            // Resolving a forged reference must fail cleanly (never call it).
            let _ = f.get();
        }
    }
    let _ = codec::decode::<Msg>(data);
}

/// Writes `data` into one end of a socketpair and closes it; returns the
/// other end.
fn stream_of(data: &[u8]) -> OwnedFd {
    let (mut w, r) = UnixStream::pair().expect("socketpair for the fuzz input");
    let n = data.len().min(MAX_STREAM);
    w.write_all(&data[..n])
        .expect("the socket buffer holds the input");
    drop(w);
    OwnedFd::from(r)
}

/// Receives from `rx` until the stream ends, with the receive call chosen by
/// `mode`'s bits in turn.
fn drain<T: serde::de::DeserializeOwned>(rx: &Receiver<T>, mode: u8) {
    for i in 0..MAX_RECVS {
        let r: multiproc_ipc::Result<()> = match (mode >> (i % 4 * 2)) & 3 {
            0 => rx.recv().map(drop).map_err(Into::into),
            1 => rx.try_recv().map(drop).map_err(Into::into),
            2 => rx
                .recv_timeout(Duration::from_millis(1))
                .map(drop)
                .map_err(Into::into),
            _ => {
                let _ = rx.poll(Duration::ZERO);
                Ok(())
            }
        };
        if let Err(e) = r {
            if e.kind() == multiproc_ipc::ErrorKind::Closed {
                return;
            }
        }
    }
}

/// The channel framing: the first byte picks the message type and the
/// receive calls, the rest is the byte stream a sender wrote.
pub fn channel(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let fd = stream_of(rest);
    match sel & 3 {
        0 => drain(&Receiver::<Msg>::from(fd), sel >> 2),
        1 => drain(&Receiver::<Vec<u8>>::from(fd), sel >> 2),
        2 => drain(&Receiver::<String>::from(fd), sel >> 2),
        _ => drain(&Receiver::<u64>::from(fd), sel >> 2),
    }
}

/// The pipe framing: the first byte picks the receive calls (typed and raw
/// byte messages mixed), the rest is the byte stream the peer end wrote.
pub fn pipe(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = Pipe::new::<Msg>().expect("a pipe for the fuzz input");
    {
        let fd = std::os::fd::AsFd::as_fd(&b)
            .try_clone_to_owned()
            .expect("dup of the pipe end");
        let mut w = UnixStream::from(fd);
        let n = rest.len().min(MAX_STREAM);
        // The end may be non-blocking: a full buffer just shortens the input.
        let _ = w.write_all(&rest[..n]);
    }
    b.close();
    for i in 0..MAX_RECVS {
        let r = match (sel >> (i % 4 * 2)) & 3 {
            0 => a.recv().map(drop),
            1 => a.recv_bytes().map(drop),
            2 => a.try_recv().map(drop),
            _ => a.recv_bytes_timeout(Duration::from_millis(1)).map(drop),
        };
        if let Err(e) = r {
            if e.kind() == multiproc_ipc::ErrorKind::Closed {
                return;
            }
        }
    }
}

/// The remote manager's server side: the first byte's low bit says whether
/// the connection starts authenticated (request loop) or at the handshake;
/// the rest is what the client sent.
pub fn remote(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let n = rest.len().min(MAX_STREAM);
    // Only setting up the loopback connection may fail; the server may not.
    let _ = multiproc_manager::fuzzing::serve_bytes(&rest[..n], sel & 1 == 1);
}
