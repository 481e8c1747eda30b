//! What the descriptor test files share: the parent's descriptor count and
//! its leak check, a file with known contents, and the echo task and client
//! that drive a passed `TcpStream`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use multiproc::Fd;
use multiproc_testkit::wait_until;

/// How long a client waits for one echo.
const ECHO_LIMIT: Duration = Duration::from_secs(30);

/// Descriptors open in this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Starts the process-wide helpers that keep a descriptor for the
/// process's life, so that counting after this sees only a test's own: the
/// shared-memory tracker's pipe (started by the first named segment: a
/// queue, a `Value`) and the reaper thread's pipe (started by the first pool
/// or executor dropped). A test counting before its first segment or pool
/// would otherwise report them as leaks whenever it happens to run first.
pub fn start_process_wide_helpers() {
    drop(multiproc::Value::new(0u8).expect("a shared value"));
    drop(multiproc::Pool::new(1).expect("a pool"));
    drop(multiproc::Executor::new(1).expect("an executor"));
}

/// What each descriptor of this process refers to (for failure messages).
pub fn open_fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

/// Asserts that the descriptor count comes back to `before` (settling: a
/// pool's threads close theirs as they exit).
pub fn assert_no_fd_leak(before: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || open_fds() == before),
        "descriptors leaked: {before} before, {} after: {:?}",
        open_fds(),
        open_fd_targets()
    );
}

/// An open file holding `contents`, already unlinked.
pub fn temp_file(tag: &str, contents: &str) -> File {
    let path = std::env::temp_dir().join(format!("mp-fd-{tag}-{}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    let f = File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

/// A task: reads the whole file it was given.
pub fn read_to_string(file: Fd<File>) -> String {
    let mut s = String::new();
    file.into_inner().read_to_string(&mut s).unwrap();
    s
}

/// A task: echoes lines on the connection until the peer closes it;
/// returns how many lines it echoed.
pub fn echo_lines(conn: Fd<TcpStream>) -> usize {
    let stream = conn.into_inner();
    let mut out = stream.try_clone().unwrap();
    let mut n = 0;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if out.write_all(format!("{line}\n").as_bytes()).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// Sends `n` lines through `client` and checks each echo.
pub fn talk(client: TcpStream, n: usize) {
    client.set_read_timeout(Some(ECHO_LIMIT)).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    for i in 0..n {
        writeln!(client, "line {i}").unwrap();
        let mut got = String::new();
        reader.read_line(&mut got).unwrap();
        assert_eq!(got, format!("line {i}\n"));
    }
}
