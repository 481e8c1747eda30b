//! A prefork echo server on loopback, in the two shapes of Python's socket
//! servers, each driven by a bounded load test:
//!
//! - `shared`: N worker processes accept on one listening socket (the
//!   classic prefork server);
//! - `pool`: the parent accepts, and hands each connection to a pool worker
//!   as an `Fd<TcpStream>` task argument (Python's
//!   `executor.submit(communicate, conn, addr)` after `accept()`).
//!
//! ```python
//! with ProcessPoolExecutor() as ex:
//!     while True:
//!         conn, addr = listener.accept()
//!         ex.submit(communicate, conn, addr)   # the socket travels by SCM_RIGHTS
//! ```
//!
//! The load test runs `--clients` clients (default 200) that each send
//! `--messages` lines (default 100), check every echo, and close; the run
//! must finish within `--bound` seconds (default 60). It prints
//! connections/s and the p50/p99 echo latency.
//!
//! Flags: `--shape shared|pool|both` (default both), `--workers N`
//! (default 4), `--init` (call `multiproc::init()` first: workers then come
//! from the fork server, which only ever sees the sockets as passed
//! descriptors). With no `--init`, the example runs both shapes, then runs
//! itself again with `--init`, so one plain run covers all four cases.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::arg;
use multiproc::{Fd, Pool, Process};

/// How long a client waits for one echo before it gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Echoes lines on `conn` until the peer closes it; returns how many.
fn communicate(conn: TcpStream) -> u64 {
    let Ok(mut out) = conn.try_clone() else {
        return 0;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return n,
            // One write per echo: two small writes would meet Nagle's
            // algorithm and the peer's delayed ACK (40 ms each).
            Ok(_) => {
                if out.write_all(line.as_bytes()).is_err() {
                    return n;
                }
                n += 1;
            }
        }
    }
}

/// The pool shape's task: one accepted connection.
fn serve_connection(conn: Fd<TcpStream>) -> u64 {
    communicate(conn.into_inner())
}

/// The shared shape's worker: accepts on the shared listener until a
/// connection says `QUIT`; returns (connections, lines echoed).
fn prefork_worker(listener: Fd<TcpListener>) -> (u64, u64) {
    let listener = listener.into_inner();
    let (mut conns, mut lines) = (0, 0);
    loop {
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        let mut first = String::new();
        let Ok(mut reader) = conn.try_clone().map(BufReader::new) else {
            continue;
        };
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            continue;
        }
        if first == "QUIT\n" {
            return (conns, lines);
        }
        conns += 1;
        let mut out = conn;
        if out.write_all(first.as_bytes()).is_err() {
            continue;
        }
        lines += 1;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if out.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                    lines += 1;
                }
            }
        }
    }
}

struct Load {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Runs `clients` clients against `addr`, `threads` at a time; each sends
/// `messages` lines, checks every echo and closes. Panics on a wrong echo.
fn drive(addr: SocketAddr, clients: usize, messages: usize, threads: usize) -> Load {
    let next = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(clients / threads * messages + messages);
                loop {
                    let c = {
                        let mut n = next.lock().unwrap();
                        if *n == clients {
                            break;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let conn = TcpStream::connect(addr).expect("connect");
                    conn.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                    conn.set_nodelay(true).unwrap();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    let mut got = String::new();
                    for m in 0..messages {
                        let msg = format!("client {c} message {m}\n");
                        let t = Instant::now();
                        out.write_all(msg.as_bytes()).expect("send");
                        got.clear();
                        reader.read_line(&mut got).expect("echo");
                        lat.push(t.elapsed());
                        assert_eq!(got, msg, "wrong echo");
                    }
                    // Closing both halves: the server sees end of file.
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(clients * messages);
    for h in handles {
        latencies.extend(h.join().expect("a client failed"));
    }
    Load {
        elapsed: start.elapsed(),
        latencies,
    }
}

fn report(shape: &str, init: bool, workers: usize, clients: usize, load: &mut Load) {
    load.latencies.sort();
    let pct = |p: f64| {
        let i = ((load.latencies.len() as f64 - 1.0) * p).round() as usize;
        load.latencies.get(i).copied().unwrap_or_default()
    };
    println!(
        "{shape:>6} {}: {workers} workers, {clients} clients x {} messages in {:.2?}: \
         {:.0} connections/s, echo p50 {:.1?} p99 {:.1?}",
        if init { "(init)" } else { "      " },
        load.latencies.len() / clients.max(1),
        load.elapsed,
        clients as f64 / load.elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
}

/// N worker processes accepting on one listening socket.
fn run_shared(init: bool, workers: usize, clients: usize, messages: usize) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut procs = Vec::new();
    for _ in 0..workers {
        // Each worker gets its own copy of the listening socket.
        let copy = Fd::new(listener.try_clone().map_err(|e| e.to_string())?);
        procs.push(Process::spawn(prefork_worker, copy).map_err(|e| e.to_string())?);
    }
    drop(listener); // the workers hold it now
    let mut load = drive(addr, clients, messages, workers);
    for _ in 0..workers {
        let mut quit = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        quit.write_all(b"QUIT\n").map_err(|e| e.to_string())?;
    }
    let (mut conns, mut lines) = (0, 0);
    for mut p in procs {
        match p.join_timeout(Duration::from_secs(10)) {
            Ok((c, l)) => {
                conns += c;
                lines += l;
            }
            Err(e) => {
                let _ = p.kill();
                return Err(format!("a worker did not finish: {e}"));
            }
        }
    }
    if conns != clients as u64 || lines != (clients * messages) as u64 {
        return Err(format!(
            "the workers served {conns} connections and {lines} lines"
        ));
    }
    report("shared", init, workers, clients, &mut load);
    Ok(())
}

/// The parent accepts and hands each connection to a pool worker.
fn run_pool(init: bool, workers: usize, clients: usize, messages: usize) -> Result<(), String> {
    let pool = Arc::new(Pool::new(workers).map_err(|e| e.to_string())?);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let failed = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let pool = Arc::clone(&pool);
        let failed = Arc::clone(&failed);
        std::thread::spawn(move || {
            let mut results = Vec::with_capacity(clients);
            for _ in 0..clients {
                let Ok((conn, _)) = listener.accept() else {
                    failed.store(true, Ordering::SeqCst);
                    break;
                };
                match pool.apply_async(serve_connection, Fd::new(conn)) {
                    Ok(r) => results.push(r),
                    Err(_) => {
                        failed.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
            results
        })
    };
    let mut load = drive(addr, clients, messages, workers);
    let results = acceptor.join().map_err(|_| "the acceptor panicked")?;
    if failed.load(Ordering::SeqCst) {
        return Err("accepting or submitting a connection failed".into());
    }
    let mut lines = 0;
    for r in results {
        lines += r
            .get_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
    }
    if lines != (clients * messages) as u64 {
        return Err(format!("the tasks echoed {lines} lines"));
    }
    pool.close();
    pool.join().map_err(|e| e.to_string())?;
    report("pool", init, workers, clients, &mut load);
    Ok(())
}

/// One shape's run: `(init, workers, clients, messages)`.
type Run = fn(bool, usize, usize, usize) -> Result<(), String>;

fn main() -> ExitCode {
    let init = std::env::args().any(|a| a == "--init");
    if init {
        if let Err(e) = multiproc::init() {
            eprintln!("init failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let shape = arg("--shape", "both");
    let workers: usize = arg("--workers", "4").parse().unwrap_or(4).max(1);
    let clients: usize = arg("--clients", "200").parse().unwrap_or(200).max(1);
    let messages: usize = arg("--messages", "100").parse().unwrap_or(100).max(1);
    let bound = Duration::from_secs(arg("--bound", "60").parse().unwrap_or(60));
    let started = Instant::now();
    let mut runs: Vec<(&str, Run)> = Vec::new();
    if shape == "shared" || shape == "both" {
        runs.push(("shared", run_shared));
    }
    if shape == "pool" || shape == "both" {
        runs.push(("pool", run_pool));
    }
    if runs.is_empty() {
        eprintln!("--shape must be shared, pool or both");
        return ExitCode::FAILURE;
    }
    for (name, run) in runs {
        if let Err(e) = run(init, workers, clients, messages) {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !init {
        // The same runs with the fork server, in a fresh process (init()
        // must come before any thread).
        let Ok(me) = std::env::current_exe() else {
            eprintln!("cannot find this program to run it with --init");
            return ExitCode::FAILURE;
        };
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--init".into());
        let mut child = match std::process::Command::new(me).args(&args).spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot run with --init: {e}");
                return ExitCode::FAILURE;
            }
        };
        let ok = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if started.elapsed() < bound => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
            }
        };
        if !ok {
            eprintln!("the --init run failed");
            return ExitCode::FAILURE;
        }
    }
    if started.elapsed() > bound {
        eprintln!(
            "the load test took {:.1?}, over its bound of {bound:?}",
            started.elapsed()
        );
        return ExitCode::FAILURE;
    }
    if !init {
        println!("all echoes checked and every connection closed, in both shapes, with and without init()");
    }
    ExitCode::SUCCESS
}
