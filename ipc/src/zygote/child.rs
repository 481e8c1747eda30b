//! The children of a zygote, or of this process: a pid, a pidfd, and the
//! way their exit status is learned (`waitid` for our own children, the
//! zygote's report for its).

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Reaped, Stop, ZygoteShared};
use crate::error::{Error, ErrorKind, ExitStatus, Result};
use crate::sys::fd;
use crate::sys::fork;
use crate::sys::wait;

pub(crate) enum Reaper {
    /// Our own child: reaped with `waitid(P_PIDFD)`.
    Direct,
    /// A zygote's child: the zygote reaps it and reports its status.
    Zygote { id: u64, zygote: Arc<ZygoteShared> },
}

/// A child process we can signal, watch and learn the exit status of,
/// whoever its parent is.
pub(crate) struct ChildProc {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    reaper: Reaper,
    status: Mutex<Option<Reaped>>,
}

impl ChildProc {
    /// A child not reaped yet, with its pidfd.
    pub(crate) fn new(pid: i32, pidfd: OwnedFd, reaper: Reaper) -> ChildProc {
        ChildProc {
            pid,
            pidfd,
            reaper,
            status: Mutex::new(None),
        }
    }

    /// Forks the caller (plain fork) and wraps the child; `close_in_child`
    /// are descriptors of the caller that the child must not keep, and
    /// `lifeline` says whether a child with a lifeline thread waits for it
    /// (see [`fork::Lifeline`]).
    pub(crate) fn fork_direct(
        close_in_child: &[BorrowedFd<'_>],
        lifeline: fork::Lifeline,
        child: impl FnOnce() -> i32,
    ) -> Result<ChildProc> {
        // If the kernel reaps our children itself, a child that exits at once
        // could vanish before `pidfd_open`: it then waits at a gate until the
        // pidfd is open.
        let (gate_r, gate_w) = if wait::children_auto_reaped() {
            let (r, w) = fd::pipe().map_err(|e| Error::io("cannot create a pipe", e))?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let mut close = close_in_child.to_vec();
        close.extend(gate_w.as_ref().map(|w| w.as_fd()));
        let pid = fork::fork_plain(&close, lifeline, move || {
            if let Some(gate) = gate_r {
                fd::wait_readable_forever(gate.as_fd());
            }
            child()
        })
        .map_err(|e| Error::io("fork failed", e))?;
        let pidfd = wait::pidfd_open(pid);
        if let Some(w) = gate_w {
            // A byte, not end of file: other forks may hold copies of `w`.
            let _ = nix::unistd::write(&w, &[1]);
        }
        let pidfd = match pidfd {
            Ok(p) => p,
            Err(e) => {
                // Cannot supervise it: kill it and reap it now.
                wait::kill_and_reap(pid);
                return Err(Error::io("pidfd_open failed", e));
            }
        };
        Ok(ChildProc::new(pid, pidfd, Reaper::Direct))
    }

    /// True if this process forked the child itself (it reaps it).
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.reaper, Reaper::Direct)
    }

    /// True if the zygote `parent` forked the child.
    pub(crate) fn forked_by(&self, parent: &Arc<ZygoteShared>) -> bool {
        matches!(&self.reaper, Reaper::Zygote { zygote, .. } if Arc::ptr_eq(zygote, parent))
    }

    pub(crate) fn is_alive(&self) -> bool {
        if self.reaped().is_some() {
            return false;
        }
        !fd::is_readable(&self.pidfd).unwrap_or(true)
    }

    fn reaped(&self) -> Option<Reaped> {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exit status, if the child has been reaped and it is known.
    pub(crate) fn known_status(&self) -> Option<ExitStatus> {
        match self.reaped() {
            Some(Reaped::Status(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        if self.reaped().is_some() {
            return Ok(());
        }
        match wait::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Ok(()) => Ok(()),
            // Already dead (and maybe reaped): nothing to do, like Python.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(Error::io(format!("cannot signal process {}", self.pid), e)),
        }
    }

    /// The error for a child whose exit status is [`Reaped::Unavailable`].
    pub(crate) fn unavailable(&self) -> Error {
        Error::new(
            ErrorKind::Io,
            format!(
                "process {} has exited but its exit status is unavailable (it was reaped \
                 elsewhere: is SIGCHLD ignored?)",
                self.pid
            ),
        )
    }

    /// The exit status, waiting for the exit until `deadline`
    /// (`Some(now)`: do not wait). Timeout if still running; `Io` if it
    /// exited but its status is unavailable.
    pub(crate) fn wait_status(&self, deadline: Option<Instant>) -> Result<ExitStatus> {
        match self.wait_reaped(deadline)? {
            Reaped::Status(s) => Ok(s),
            Reaped::Unavailable => Err(self.unavailable()),
        }
    }

    /// How the child ended, waiting for the exit until `deadline`
    /// (`Some(now)`: do not wait). Timeout if still running.
    pub(crate) fn wait_reaped(&self, deadline: Option<Instant>) -> Result<Reaped> {
        if let Some(r) = self.reaped() {
            return Ok(r);
        }
        if !wait::wait_exit(self.pidfd.as_fd(), deadline)
            .map_err(|e| Error::io("poll on a pidfd", e))?
        {
            return Err(Error::timeout(format!(
                "process {} is still running",
                self.pid
            )));
        }
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = *guard {
            return Ok(r);
        }
        let reaped = match &self.reaper {
            Reaper::Direct => match wait::waitid_pidfd(self.pidfd.as_fd(), true) {
                Ok(Some(status)) => Reaped::Status(status),
                Ok(None) => return Err(Error::new(ErrorKind::Io, "waitid reported nothing")),
                // Dead (its pidfd said so) and not ours to reap any more: the
                // kernel reaped it because SIGCHLD is ignored.
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Reaped::Unavailable,
                Err(e) => return Err(Error::io(format!("cannot reap process {}", self.pid), e)),
            },
            Reaper::Zygote { id, zygote, .. } => {
                // It is dead; the zygote reaps it and reports promptly. The
                // bound only guards against a stopped zygote.
                let bound = Instant::now() + Duration::from_secs(10);
                let deadline = Some(deadline.map_or(bound, |d| d.max(bound)));
                let mut io = zygote.lock();
                match io.pump(zygote.process.pidfd.as_fd(), deadline, Stop::Status(*id)) {
                    Ok(_) => io
                        .statuses
                        .remove(id)
                        .ok_or_else(|| Error::new(ErrorKind::Io, "status vanished"))?,
                    // The zygote died: its children got SIGKILL (PDEATHSIG).
                    Err(e) if e.kind() == ErrorKind::Closed => {
                        Reaped::Status(ExitStatus::Signal(libc::SIGKILL))
                    }
                    // The child is dead: not a timeout of the caller's, a
                    // zygote that failed to report.
                    Err(e) if e.is_timeout() => {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!(
                                "process {} has exited but its zygote did not report its \
                                 exit status",
                                self.pid
                            ),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        *guard = Some(reaped);
        Ok(reaped)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Reaper::Zygote { id, zygote } = &self.reaper {
            let known = self.status.get_mut().map(|s| s.is_some()).unwrap_or(true);
            if !known {
                zygote.forget(*id);
            }
        }
    }
}

/// A child forked by a [`Zygote`](super::Zygote).
///
/// Its pidfd ([`as_fd`](AsFd::as_fd)) becomes readable when the child dies:
/// poll it (alone or with others) for event-driven death detection, then
/// call [`try_wait`](ZygoteChild::try_wait) to learn how it ended. Dropping
/// the handle does not kill the child; the zygote still reaps it.
pub struct ZygoteChild {
    proc_: Option<ChildProc>,
}

impl fmt::Debug for ZygoteChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZygoteChild")
            .field("pid", &self.pid())
            .field("status", &self.proc().and_then(|p| p.known_status()))
            .finish()
    }
}

impl ZygoteChild {
    pub(crate) fn from_proc(proc_: ChildProc) -> ZygoteChild {
        ZygoteChild { proc_: Some(proc_) }
    }

    fn proc(&self) -> Option<&ChildProc> {
        self.proc_.as_ref()
    }

    pub(crate) fn into_proc(mut self) -> ChildProc {
        match self.proc_.take() {
            Some(p) => p,
            // Unreachable: `proc_` is only taken here, by value.
            None => unreachable_child(),
        }
    }

    fn p(&self) -> &ChildProc {
        match self.proc_.as_ref() {
            Some(p) => p,
            None => unreachable_child(),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.p().pid
    }

    /// True until the child has exited.
    pub fn is_alive(&self) -> bool {
        self.p().is_alive()
    }

    /// Sends signal `sig` (through the pidfd: never to a recycled pid). A
    /// child that already exited is not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the kernel refuses (e.g. an invalid signal).
    pub fn signal(&self, sig: i32) -> Result<()> {
        self.p().signal(sig)
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    ///
    /// As [`signal`](ZygoteChild::signal).
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    ///
    /// As [`signal`](ZygoteChild::signal).
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// The exit status if the child has exited, without waiting for it to
    /// exit (it may wait briefly for the zygote's report of a dead child).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] on an OS or protocol failure, or if the child
    /// exited but its status is unavailable (reaped by someone else; the
    /// zygote resets an ignored `SIGCHLD` to the default, so only a program
    /// that reaps other processes' children can cause this). A dead zygote
    /// is not an error: its children were killed, and this gives
    /// `Signal(SIGKILL)`.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        match self.p().wait_status(Some(Instant::now())) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for the child to exit and returns how it ended.
    ///
    /// # Errors
    ///
    /// As [`try_wait`](ZygoteChild::try_wait).
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.p().wait_status(None)
    }

    /// Waits up to `timeout` for the child to exit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it is still running; otherwise as
    /// [`try_wait`](ZygoteChild::try_wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.p().wait_status(Instant::now().checked_add(timeout))
    }
}

impl AsFd for ZygoteChild {
    /// The child's pidfd: readable once the child has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.p().pidfd.as_fd()
    }
}

impl AsRawFd for ZygoteChild {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.p().pidfd.as_raw_fd()
    }
}

#[cold]
fn unreachable_child() -> ! {
    // `proc_` is `Some` for the whole life of a `ZygoteChild` except inside
    // `into_proc`, which consumes it; reaching here is a bug in this module.
    std::process::abort()
}
