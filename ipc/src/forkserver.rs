//! The process-wide fork server (Python's `forkserver` start method).

use std::sync::{Mutex, OnceLock};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::fork;
use crate::zygote::Zygote;

static SERVER: OnceLock<Zygote> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Starts the process-wide fork server; call it first thing in `main`.
///
/// The fork server is a small single-threaded process forked from the
/// program while it still has a single thread. From then on,
/// [`Process::spawn`](crate::Process::spawn), pools (their zygotes) and
/// managers fork from it instead of from the program, so a lock held by one of the program's threads (stdout, the
/// environment, a runtime's internals) can never be inherited locked by a
/// child. Children see the program's memory as it was when `init` ran.
///
/// Calling `init` again once the server runs does nothing and returns `Ok`.
/// It works wherever it runs before the program's first thread, including
/// in a constructor that runs before `main` (a function placed in
/// `.init_array`, or one made with a constructor crate), whatever the order
/// in which the linker put this library's own start-up code.
///
/// # Examples
///
/// ```no_run
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// fn main() -> multiproc::Result<()> {
///     multiproc::init()?; // before any thread
///     let p = multiproc::Process::spawn(double, 21)?;
///     assert_eq!(p.join()?, 42);
///     Ok(())
/// }
/// ```
///
/// # Errors
///
/// [`ErrorKind::InvalidArgument`] if the program already runs more than one
/// thread (read from `/proc/self/stat`): the fork server would inherit
/// whatever those threads hold, defeating its purpose, so it is not started
/// and spawning keeps forking the program directly. [`ErrorKind::Io`] if the
/// fork fails.
pub fn init() -> Result<()> {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if SERVER.get().is_some() {
        return Ok(());
    }
    let threads = fork::thread_count().map_err(|e| Error::io("cannot count threads", e))?;
    if threads > 1 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "init() must run before any thread is started ({threads} threads are running); \
                 the fork server was not started"
            ),
        ));
    }
    // Children of the server inherit the hook instead of installing it.
    crate::process::install_panic_hook();
    // With the short slice: every process it forks starts with it (a
    // pool's zygote, a manager; a `Process` gives itself the caller's back
    // before it runs the caller's code: see `process::server_main`).
    let server = crate::latency::starting_owned(Zygote::start_forked)?;
    let _ = SERVER.set(server);
    // Registered after nothing else of ours: runs after the `Process` exit
    // handler (registered at the first spawn) has waited for children.
    if let Err(e) = fork::at_exit(stop_server) {
        tracing::error!(error = %e, "cannot register the fork server's exit handler");
    }
    Ok(())
}

/// At exit: stop and reap the fork server, so it is not left as a zombie.
extern "C" fn stop_server() {
    if let Some(server) = fork_server() {
        server.shutdown();
    }
}

/// The fork server started by [`init`], if any.
pub fn fork_server() -> Option<&'static Zygote> {
    // A fork server belongs to the process that started it: in a child
    // forked directly from that process, the handle is a copy whose socket
    // is shared with the parent, so it must not be used.
    SERVER.get().filter(|z| z.owner() == fork::getpid())
}
