//! An entry point for fuzzing the remote manager's server side; not part of
//! the public API (hidden from the docs, may change at any time).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use multiproc_ipc::{Error, Result};

use super::server::{builder_with_first_id, serve_one};

/// The authkey of the server [`serve_bytes`] runs.
pub const AUTHKEY: &[u8] = b"fuzz-authkey";

/// The largest frame the server of [`serve_bytes`] accepts (small, so that
/// oversized frames are cheap to reach).
pub const MAX_FRAME: usize = 64 << 10;

/// The names the server of [`serve_bytes`] serves, in registration order:
/// the object registered `i`-th (from 0) has id `i + 1`.
pub const NAMES: &[&str] = &[
    "queue", "bounded", "lifo", "prio", "joinable", "dict", "list", "lock", "event", "ns", "value",
    "double",
];

fn double(x: u64) -> u64 {
    x.wrapping_mul(2)
}

/// Serves `input`, sent by a client over a loopback TCP connection that then
/// closes its sending side, on the calling thread with the server's real
/// frame reader, handshake and request handler, and returns every byte the
/// server sent back.
///
/// With `authenticated` false the server runs its handshake first (so
/// `input` exercises the frame reader and the handshake's checks; it cannot
/// pass them, the challenge being random); with `authenticated` true it
/// goes straight to the request loop, as after a successful handshake. The
/// server is fresh for every call and serves the objects named in
/// [`NAMES`] under ids counting up from 1.
///
/// # Errors
///
/// `Io` if the loopback connection cannot be set up. Whatever the input,
/// the server's own failures only end the connection.
pub fn serve_bytes(input: &[u8], authenticated: bool) -> Result<Vec<u8>> {
    let io = |e| Error::io("fuzzing: loopback connection", e);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let client = TcpStream::connect(listener.local_addr().map_err(io)?).map_err(io)?;
    let (server_side, _) = listener.accept().map_err(io)?;
    let mut writer = client.try_clone().map_err(io)?;
    let mut reader = client;
    let data = input.to_vec();
    let send = std::thread::Builder::new()
        .name("fuzz-client-send".into())
        .spawn(move || {
            let _ = writer.write_all(&data);
            let _ = writer.shutdown(Shutdown::Write);
        })
        .map_err(io)?;
    let recv = std::thread::Builder::new()
        .name("fuzz-client-recv".into())
        .spawn(move || {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            out
        })
        .map_err(io)?;
    let mut b = builder_with_first_id(AUTHKEY, 1)
        .queue(NAMES[0])
        .bounded_queue(NAMES[1], 2)
        .lifo_queue(NAMES[2])
        .priority_queue::<u32>(NAMES[3])
        .joinable_queue(NAMES[4])
        .dict(NAMES[5])
        .list(NAMES[6])
        .lock(NAMES[7])
        .event(NAMES[8])
        .namespace(NAMES[9])
        .value(NAMES[10], &0u64)
        .callable(NAMES[11], double)
        .quiet(true);
    b = b.max_frame(MAX_FRAME);
    // The server side is dropped inside: the client's reader then sees the end.
    let served = serve_one(b, server_side, authenticated);
    let _ = send.join();
    let out = recv.join().unwrap_or_default();
    served.map(|()| out)
}
