//! Zygotes: single-threaded processes that fork children on request.
//!
//! After `fork` only the calling thread survives, so forking a threaded
//! process can leave a child with locks that never unlock (stdout, the
//! environment, an allocator arena...). A [`Zygote`] is forked from the caller
//! once, never starts a thread, and forks every child it is asked for; pools
//! start one at `Pool::new` and spawn replacement workers through it (and
//! their first workers, unless the caller may fork those itself:
//! [`Zygote::spawn_many_beside`]), and [`init`](crate::init) starts a
//! process-wide one (the fork server).
//!
//! A child is described by a function pointer `fn(A, Vec<OwnedFd>) -> i32`
//! (sent as an address, valid because the zygote is a fork of the same
//! image), its argument `A` (encoded with the [`codec`]), and
//! descriptors passed with `SCM_RIGHTS` that the child inherits. The zygote
//! is the children's parent: it reaps them and reports each exit status to
//! the requester, which gets a [`ZygoteChild`] holding the pid, a pidfd (poll
//! it: readable means dead) and, once reaped, the [`ExitStatus`].
//!
//! # What a child sees
//!
//! The zygote's memory, copy-on-write: the caller's memory as it was when
//! the zygote started. Mappings made later (`MAP_SHARED` regions, sockets,
//! files) reach a child only as descriptors passed to [`Zygote::spawn`] (a
//! memfd can be mapped again in the child); [`Process::spawn`](crate::Process::spawn)
//! and pool tasks pass them for their callers as [`Fd`](crate::Fd) arguments. Children have
//! `PR_SET_PDEATHSIG(SIGKILL)`: they die with the zygote, which exits when
//! its requester closes the connection (drops the last [`Zygote`] handle) or
//! dies.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{Error, ErrorKind, ExitStatus, Result};
use crate::sys::fd::{self, Poll};
use crate::sys::fork::{self, FnAddr, Trampoline};
use crate::sys::wait;

mod child;
mod server;
mod wire;

pub use crate::fnref::FnRef;
pub use child::ZygoteChild;
pub(crate) use child::{ChildProc, Reaper};
use server::{zygote_loop, zygote_main};
pub(crate) use wire::Reaped;
use wire::{send_frame, FrameReader, Reply, Request};

/// How many times [`Zygote::start_forked`] forks a zygote that cannot start
/// a thread before it gives up. Each fork that fails so overlapped another
/// thread's start or end by a few microseconds: a second in a row is rare.
const START_ATTEMPTS: u32 = 5;
/// How long a threaded requester waits for a new zygote's first message
/// (the zygote itself gives up after 5 s).
const READY_WAIT: Duration = Duration::from_secs(10);

/// Refuses more descriptors than one request carries.
fn check_fds(fds: &[BorrowedFd<'_>]) -> Result<()> {
    if fds.len() > fd::MAX_FDS {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("at most {} descriptors per child", fd::MAX_FDS),
        ));
    }
    Ok(())
}

/// Decodes the argument and calls the child's main: the monomorphized entry
/// of every zygote child.
fn trampoline<A: DeserializeOwned + 'static>(
    main: FnAddr,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> i32 {
    let Some(main) = main.get::<fn(A, Vec<OwnedFd>) -> i32>() else {
        tracing::error!("zygote child: bad entry address; exiting with 127");
        return 127;
    };
    match codec::decode::<A>(payload) {
        Ok(arg) => main(arg, fds),
        Err(e) => {
            tracing::error!(error = %e, "zygote child: cannot decode its argument; exiting with 127");
            127
        }
    }
}

/// Forks this process into a child that runs `main(arg, fds)` as a
/// zygote's child would, with copies of `fds` and not `fds` themselves, not
/// keeping `close`.
fn fork_here<A: Serialize + DeserializeOwned + 'static>(
    main: fn(A, Vec<OwnedFd>) -> i32,
    arg: &A,
    fds: &[BorrowedFd<'_>],
    close: &[BorrowedFd<'_>],
) -> Result<ZygoteChild> {
    check_fds(fds)?;
    let payload = codec::encode(arg)?;
    // The child's copies, made here and moved into it: it closes the
    // originals, and here the copies close as the fork returns.
    let copies = fds
        .iter()
        .map(|f| f.try_clone_to_owned())
        .collect::<io::Result<Vec<OwnedFd>>>()
        .map_err(|e| Error::io("cannot copy a child's descriptors", e))?;
    let mut close = close.to_vec();
    close.extend_from_slice(fds);
    let main = FnAddr::of(main);
    let child = ChildProc::fork_direct(&close, fork::Lifeline::Settled, move || {
        trampoline::<A>(main, &payload, copies)
    })?;
    Ok(ZygoteChild::from_proc(child))
}

// ---------------------------------------------------------------------------
// The requester side.

struct ClientIo {
    sock: OwnedFd,
    reader: FrameReader,
    statuses: HashMap<u64, Reaped>,
    forgotten: HashSet<u64>,
    closed: bool,
}

impl ClientIo {
    /// Reads replies until one that is not an exit report arrives (with
    /// `Stop::Reply`, returned) or the status of child `id` is known (with
    /// `Stop::Status(id)`), or `deadline` passes (Timeout), or the zygote is
    /// gone (Closed). Exit reports are recorded on the way.
    ///
    /// `zygote` is the zygote's pidfd: the zygote is gone when it is readable
    /// and the socket holds nothing more, even if the socket never reports
    /// end of file (a process forked from ours while it held the zygote's
    /// end of the socketpair may keep that end open).
    fn pump(
        &mut self,
        zygote: BorrowedFd<'_>,
        deadline: Option<Instant>,
        stop: Stop,
    ) -> Result<Option<(Reply, Vec<OwnedFd>)>> {
        loop {
            while let Some(frame) = self
                .reader
                .next_frame()
                .map_err(|e| Error::io("bad reply from the zygote", e))?
            {
                match codec::decode::<Reply>(&frame.msg)? {
                    Reply::Exited { id, status } => {
                        if !self.forgotten.remove(&id) {
                            self.statuses.insert(id, status);
                        }
                    }
                    Reply::Ready => {
                        if stop == Stop::Ready {
                            return Ok(None);
                        }
                    }
                    other => {
                        if stop == Stop::Reply {
                            return Ok(Some((other, frame.fds)));
                        }
                    }
                }
            }
            if let Stop::Status(id) = stop {
                if self.statuses.contains_key(&id) {
                    return Ok(None);
                }
            }
            if self.closed {
                return Err(Error::new(ErrorKind::Closed, "the zygote process is gone"));
            }
            let revents = fd::poll_until(
                &[(self.sock.as_fd(), Poll::POLLIN), (zygote, Poll::POLLIN)],
                deadline,
            )
            .map_err(|e| Error::io("poll on the zygote socket", e))?;
            let Some(zygote_dead) = revents.get(1).map(|r| !r.is_empty()) else {
                return Err(Error::timeout("no reply from the zygote in time"));
            };
            // Nonblocking: the socket may be quiet when only the zygote's
            // death woke us. What it sent before dying is read first.
            match self.reader.fill(self.sock.as_fd(), true) {
                Ok(0) => self.closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if zygote_dead {
                        self.closed = true;
                    }
                }
                Err(_) => self.closed = true,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Reply,
    Status(u64),
    Ready,
}

pub(crate) struct ZygoteShared {
    io: Mutex<ClientIo>,
    /// The process that started the zygote: the only one that may use it.
    owner: i32,
    /// The zygote process itself.
    process: ChildProc,
}

impl ZygoteShared {
    fn lock(&self) -> MutexGuard<'_, ClientIo> {
        // A panic while holding this lock leaves consistent state behind
        // (maps and a byte buffer), so poisoning is ignored.
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, id: u64) {
        let mut io = self.lock();
        if io.statuses.remove(&id).is_none() {
            io.forgotten.insert(id);
        }
    }
}

impl Drop for ZygoteShared {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ZygoteShared {
    /// Makes the zygote exit and reaps it (bounded: SIGKILL after 2 s).
    fn shutdown(&self) {
        if self.owner != fork::getpid() {
            // A copy inherited by a plain fork: the socket is the owner's.
            return;
        }
        // Shutting the socket down makes the zygote see end of file and exit
        // (its children die with it); it is our child (or the fork
        // server's), reaped through `process`.
        {
            let io = self.lock();
            let _ =
                nix::sys::socket::shutdown(io.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        if self.process.wait_status(Some(deadline)).is_err() {
            let _ = self.process.signal(libc::SIGKILL);
            let _ = self
                .process
                .wait_status(Some(Instant::now() + Duration::from_secs(5)));
        }
    }
}

/// A handle on a zygote process: forks children on request from any thread.
///
/// Cloning gives another handle on the same zygote; the zygote exits (and
/// its remaining children die) when the last handle is dropped.
#[derive(Clone)]
pub struct Zygote {
    shared: Arc<ZygoteShared>,
}

impl fmt::Debug for Zygote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zygote")
            .field("pid", &self.shared.process.pid)
            .finish()
    }
}

impl Zygote {
    /// Starts a zygote: through the fork server if [`init`](crate::init)
    /// started one, else by forking the calling process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socketpair or the fork fails, or if five
    /// zygotes in a row could not start a thread (below);
    /// [`ErrorKind::Closed`] if the zygote exited before it was ready.
    ///
    /// # Caveats
    ///
    /// Without a fork server, the zygote is a plain fork of the caller: call
    /// this before the program starts threads, or accept that a lock held by
    /// another thread at that instant stays held in the zygote and in every
    /// child (call [`init`](crate::init) first in `main` to avoid this).
    /// For that reason the children of such a zygote do not flush stdout
    /// when they exit: a last line printed without a newline is lost unless
    /// the child flushes it itself.
    /// Started from a thread other than the main one, or from a process
    /// that runs more than one thread, the zygote has a second thread, a
    /// watcher that kills it when the parent process exits
    /// (`PR_SET_PDEATHSIG` would fire when the starting *thread* exits); it
    /// only waits in `poll` and holds no lock, and the zygote forks nothing
    /// before it runs (a fork while a thread starts could leave a lock of
    /// the standard library held in every child). A fork while *another*
    /// thread of the caller starts or ends leaves that lock held in the
    /// zygote: its watcher then cannot start, the zygote sees that within
    /// milliseconds and exits, and `start`, which waits for a new zygote's
    /// first word whenever the caller runs other threads, forks it again.
    pub fn start() -> Result<Zygote> {
        match crate::forkserver::fork_server() {
            Some(server) => Zygote::start_via(server),
            None => Zygote::start_forked(),
        }
    }

    /// Starts a zygote by forking the calling process (used by `init`).
    ///
    /// From a process that runs other threads, waits until the zygote is
    /// ready, and forks it again (up to [`START_ATTEMPTS`] times in all)
    /// while it exits because it cannot start a thread (see
    /// [`fork::LIFELINE_STUCK_EXIT_CODE`]).
    pub(crate) fn start_forked() -> Result<Zygote> {
        let threaded = !fork::single_threaded();
        for _ in 0..START_ATTEMPTS {
            let zygote = Zygote::fork_one()?;
            if !threaded {
                return Ok(zygote);
            }
            match zygote.wait_ready() {
                Ok(()) => return Ok(zygote),
                Err(e) if e.kind() != ErrorKind::Closed => return Err(e),
                Err(_) => {}
            }
            let bound = Some(Instant::now() + Duration::from_secs(1));
            match zygote.shared.process.wait_status(bound) {
                Ok(ExitStatus::Code(fork::LIFELINE_STUCK_EXIT_CODE)) => continue,
                Ok(status) => {
                    return Err(Error::new(
                        ErrorKind::Closed,
                        format!("the zygote exited ({status}) before it was ready"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!(
                "the zygote could not start a thread in {START_ATTEMPTS} forks: another thread \
                 of this process was starting or ending one at each"
            ),
        ))
    }

    /// Forks the calling process into a zygote.
    fn fork_one() -> Result<Zygote> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("cannot create the zygote socketpair", e))?;
        let (ours, theirs) = (OwnedFd::from(ours), OwnedFd::from(theirs));
        // The zygote owns `theirs` (moved in: closed here when the fork
        // returns) and must not keep `ours`, or it would never see end of
        // file when the requester drops its handle.
        let process =
            ChildProc::fork_direct(&[ours.as_fd()], fork::Lifeline::Settled, move || {
                zygote_loop(theirs)
            })?;
        Ok(Zygote::from_parts(ours, process))
    }

    /// Waits for the zygote's first message ([`Reply::Ready`]): Closed if it
    /// exits first, Timeout if it sends nothing for [`READY_WAIT`] (the
    /// zygote gives up on its own well before).
    fn wait_ready(&self) -> Result<()> {
        let mut io = self.shared.lock();
        let deadline = Instant::now() + READY_WAIT;
        io.pump(
            self.shared.process.pidfd.as_fd(),
            Some(deadline),
            Stop::Ready,
        )
        .map(drop)
    }

    fn start_via(server: &Zygote) -> Result<Zygote> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("cannot create the zygote socketpair", e))?;
        let child = server.spawn(zygote_main, &(), &[theirs.as_fd()])?;
        drop(theirs);
        let process = child.into_proc();
        Ok(Zygote::from_parts(OwnedFd::from(ours), process))
    }

    fn from_parts(sock: OwnedFd, process: ChildProc) -> Zygote {
        Zygote {
            shared: Arc::new(ZygoteShared {
                io: Mutex::new(ClientIo {
                    sock,
                    reader: FrameReader::default(),
                    statuses: HashMap::new(),
                    forgotten: HashSet::new(),
                    closed: false,
                }),
                owner: fork::getpid(),
                process,
            }),
        }
    }

    /// The pid of the process that started the zygote.
    pub(crate) fn owner(&self) -> i32 {
        self.shared.owner
    }

    /// Stops the zygote (its remaining children die with it) and reaps it.
    pub(crate) fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// The zygote's own pid.
    pub fn pid(&self) -> i32 {
        self.shared.process.pid
    }

    /// True while the zygote process runs.
    pub fn is_alive(&self) -> bool {
        self.shared.process.is_alive()
    }

    /// Forks a child that runs `main(arg, fds)` and exits with its return
    /// value.
    ///
    /// `arg` is encoded here and decoded in the child; `fds` are duplicated
    /// into the child (in order) and stay open here. The child's stdin,
    /// stdout and stderr are the zygote's (the caller's when it started).
    ///
    /// A panic escaping `main` exits the child with code 101.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialization`] if `arg` cannot be encoded,
    /// [`ErrorKind::InvalidArgument`] for more than 253 descriptors,
    /// [`ErrorKind::Closed`] if the zygote is gone, [`ErrorKind::Io`] if the
    /// fork failed in the zygote.
    pub fn spawn<A>(
        &self,
        main: fn(A, Vec<OwnedFd>) -> i32,
        arg: &A,
        fds: &[BorrowedFd<'_>],
    ) -> Result<ZygoteChild>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        self.spawn_many(main, &[(arg, fds)])
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Io, "no answer from the zygote")))
    }

    /// Forks one child per entry of `args`, as [`spawn`](Zygote::spawn)
    /// does for each, but sends every request before it waits for the
    /// first answer: the zygote forks the children back to back instead of
    /// waiting for this process between them. One result per entry, in
    /// order; a request that could not be sent fails, and so do the ones
    /// after it (the children forked for the ones before it are returned).
    pub fn spawn_many<A>(
        &self,
        main: fn(A, Vec<OwnedFd>) -> i32,
        args: &[(&A, &[BorrowedFd<'_>])],
    ) -> Vec<Result<ZygoteChild>>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        self.spawn_many_beside(main, args, 0, &[])
    }

    /// As [`spawn_many`](Zygote::spawn_many), but the first `here` children
    /// are forked without this zygote, while it forks the others: by this
    /// process itself, or by the fork server this zygote was forked from. A
    /// pool forks its first workers so: its start then waits for no answer
    /// from a zygote that has only just been forked (beside two busy
    /// processes, that wait made a pool's start and stop 6 times slower).
    ///
    /// Only where such a child is what this zygote's would be: this process
    /// forks them if it forked the zygote and
    /// [`may_fork_here`](Zygote::may_fork_here) (a child forked here is as
    /// one of [`spawn_here`](Zygote::spawn_here), which also keeps neither the
    /// zygote's socket nor the other children's descriptors); the fork
    /// server forks them if it forked the zygote (the zygote is the server's
    /// image unchanged). Otherwise the zygote forks every child.
    pub fn spawn_many_beside<A>(
        &self,
        main: fn(A, Vec<OwnedFd>) -> i32,
        args: &[(&A, &[BorrowedFd<'_>])],
        here: usize,
        close_in_child: &[BorrowedFd<'_>],
    ) -> Vec<Result<ZygoteChild>>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        // Who forks the first `here`: this process (`None`), or the fork
        // server that forked this zygote.
        let server = crate::forkserver::fork_server()
            .filter(|s| here > 0 && self.shared.process.forked_by(&s.shared));
        let here = if server.is_some()
            || (here > 0 && self.shared.process.is_direct() && Zygote::may_fork_here())
        {
            here.min(args.len())
        } else {
            0
        };
        // One message for every child: only the argument differs.
        let msg = match self.spawn_message(main) {
            Ok(msg) => msg,
            Err(e) => return args.iter().map(|_| Err(e.clone())).collect(),
        };
        let (mine, theirs) = args.split_at(here);
        let mut io = self.shared.lock();
        let mut sent = 0;
        let mut failure = None;
        for (arg, fds) in theirs {
            let r = check_fds(fds)
                .and_then(|()| Ok(codec::encode(*arg)?))
                .and_then(|payload| self.send_request(&mut io, &msg, &payload, fds));
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
            sent += 1;
        }
        // While the zygote forks: the fork server's, or this process's own.
        // (The lock held here stays held in them: a fork of the owner never
        // uses its zygote.)
        let mut out: Vec<Result<ZygoteChild>> = Vec::with_capacity(args.len());
        match server {
            Some(server) => out.extend(server.spawn_many(main, mine)),
            None => {
                for (i, (arg, fds)) in mine.iter().enumerate() {
                    let mut close: Vec<BorrowedFd<'_>> = vec![io.sock.as_fd()];
                    close.extend_from_slice(close_in_child);
                    let others = args.iter().enumerate().filter(|&(j, _)| j != i);
                    close.extend(
                        others
                            .flat_map(|(_, (_, f))| f.iter())
                            .filter(|f| fds.iter().all(|own| own.as_raw_fd() != f.as_raw_fd())),
                    );
                    out.push(fork_here(main, *arg, fds, &close));
                }
            }
        }
        // Every request sent gets its answer read, to keep the socket in
        // step, whatever happened to a later one.
        out.extend((0..sent).map(|_| self.receive_spawned(&mut io)));
        if let Some(e) = failure {
            out.extend((here + sent..args.len()).map(|_| Err(e.clone())));
        }
        out
    }

    /// True if this process may fork a child itself where it would ask a
    /// zygote forked from it now: it runs a single thread, so that no other
    /// thread can hold a lock at the fork, and `SIGCHLD` has its default
    /// disposition (ignored, the kernel would discard its children's exit
    /// statuses; with a handler, the program might reap them itself; a
    /// zygote reaps its own whatever the program does).
    pub fn may_fork_here() -> bool {
        wait::sigchld_is_default() && fork::single_threaded()
    }

    /// Forks this process into a child that runs `main(arg, fds)` as a
    /// zygote's child would, without a zygote (a manager's start).
    ///
    /// The child sees this process's memory as it is now, gets its own
    /// copies of `fds` (one each: the inherited ones are closed in it), does
    /// not keep `close_in_child`, and inherits every other descriptor of
    /// this process, as a zygote's child inherits the zygote's. Its exit status
    /// is read with `waitid`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] unless [`may_fork_here`](Zygote::may_fork_here)
    /// (ask a zygote then), or for more than 253 descriptors;
    /// [`ErrorKind::Serialization`] if `arg` cannot be encoded;
    /// [`ErrorKind::Io`] if the fork fails.
    pub fn spawn_here<A>(
        main: fn(A, Vec<OwnedFd>) -> i32,
        arg: &A,
        fds: &[BorrowedFd<'_>],
        close_in_child: &[BorrowedFd<'_>],
    ) -> Result<ZygoteChild>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        if !Zygote::may_fork_here() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "this process runs other threads or does not leave SIGCHLD at its default: \
                 ask a zygote to fork the child",
            ));
        }
        fork_here(main, arg, fds, close_in_child)
    }

    /// Asks the zygote to fork nothing more and to exit once every child it
    /// forked has exited, been reaped and had its exit reported: its exit
    /// then overlaps what the owner still does (a pool's join stops its
    /// threads meanwhile), and dropping the last handle finds it gone. A
    /// later spawn fails. Exits already reported stay readable after the
    /// zygote is gone.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] in a fork of the owner, [`ErrorKind::Closed`]
    /// if the zygote is gone, [`ErrorKind::Io`] if the request cannot be sent.
    pub fn retire(&self) -> Result<()> {
        self.check_owner()?;
        let msg = codec::encode(&Request::Retire)?;
        let mut io = self.shared.lock();
        self.send_request(&mut io, &msg, &[], &[])
    }

    /// Refuses a fork of the owner the use of the owner's zygote.
    fn check_owner(&self) -> Result<()> {
        if self.shared.owner != fork::getpid() {
            return Err(Error::new(
                ErrorKind::NotRunning,
                "this zygote belongs to the process that started it, not to this fork of it",
            ));
        }
        Ok(())
    }

    /// The message of a request to fork a child running `main`, if this
    /// process may use the zygote.
    fn spawn_message<A>(&self, main: fn(A, Vec<OwnedFd>) -> i32) -> Result<Vec<u8>>
    where
        A: DeserializeOwned + 'static,
    {
        self.check_owner()?;
        let request = Request::Spawn {
            trampoline: FnAddr::of(trampoline::<A> as Trampoline),
            main: FnAddr::of(main),
        };
        Ok(codec::encode(&request)?)
    }

    /// Sends one request: its message (a spawn's, see
    /// [`spawn_message`](Zygote::spawn_message), or a retirement's), the
    /// child's encoded argument and its descriptors (none for a
    /// retirement).
    fn send_request(
        &self,
        io: &mut ClientIo,
        msg: &[u8],
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        if io.closed {
            return Err(Error::new(ErrorKind::Closed, "the zygote process is gone"));
        }
        let zygote = self.shared.process.pidfd.as_fd();
        if let Err(e) = send_frame(io.sock.as_fd(), zygote, msg, payload, fds) {
            if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::ConnectionReset {
                io.closed = true;
                return Err(Error::new(ErrorKind::Closed, "the zygote process is gone"));
            }
            return Err(Error::io("cannot send a request to the zygote", e));
        }
        Ok(())
    }

    /// Reads the answer to the oldest spawn request not answered yet.
    fn receive_spawned(&self, io: &mut ClientIo) -> Result<ZygoteChild> {
        let answer = io.pump(self.shared.process.pidfd.as_fd(), None, Stop::Reply)?;
        let (id, pid, pidfd) = match answer {
            Some((Reply::Spawned { id, pid }, mut fds)) => match fds.pop() {
                Some(pidfd) => (id, pid, pidfd),
                None => return Err(Error::new(ErrorKind::Io, "the zygote sent no pidfd")),
            },
            Some((Reply::SpawnFailed { message }, _)) => {
                return Err(Error::new(ErrorKind::Io, message))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Io,
                    "unexpected reply from the zygote",
                ))
            }
        };
        let reaper = Reaper::Zygote {
            id,
            zygote: Arc::clone(&self.shared),
        };
        Ok(ZygoteChild::from_proc(ChildProc::new(pid, pidfd, reaper)))
    }
}
