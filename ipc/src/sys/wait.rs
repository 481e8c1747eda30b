//! Reaping and signalling processes through pidfds.
//!
//! A pidfd refers to one process for as long as it is open, so signals sent
//! through it can never hit a recycled pid, and it becomes readable when the
//! process exits: death detection is a `poll`, not a sleep loop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::cvt;
use super::fd::wait_readable;
use crate::error::ExitStatus;

/// Opens a pidfd for `pid` (close-on-exec). Works for any process we may
/// signal, not only our children.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or
    // -1; no memory is passed.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kills our child `pid` with `SIGKILL` and reaps it: for a child we just
/// forked but cannot supervise (no pidfd). Not yet reaped, the pid is still
/// ours, so it cannot name another process.
pub(crate) fn kill_and_reap(pid: i32) {
    // SAFETY: kill takes a pid and a signal number; no memory.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    loop {
        // SAFETY: a null status pointer is allowed; no other memory.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A saved disposition of `SIGCHLD`, to restore with [`restore_sigchld`].
pub(crate) struct SigchldDisposition(libc::sigaction);

/// Sets `SIGCHLD` to its default disposition and returns the previous one.
///
/// A process that inherited `SIG_IGN` has its children reaped by the kernel
/// as they exit, so their exit status is lost and `waitid` fails with
/// `ECHILD`: a process that reaps its children (a zygote) calls this first.
pub(crate) fn default_sigchld() -> io::Result<SigchldDisposition> {
    // SAFETY: sigaction is plain data; all-zero is a valid value (empty mask,
    // no flags), and SIG_DFL is a valid handler.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = libc::SIG_DFL;
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to two local sigaction structs.
    cvt(unsafe { libc::sigaction(libc::SIGCHLD, &new, &mut old) })?;
    Ok(SigchldDisposition(old))
}

/// The current disposition of `SIGCHLD`, if it can be read.
fn sigchld_action() -> Option<libc::sigaction> {
    // SAFETY: sigaction is plain data; all-zero is a valid value.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; a valid pointer for the old.
    let r = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut cur) };
    (r != -1).then_some(cur)
}

/// True if the kernel reaps this process's children itself as they exit
/// (`SIGCHLD` ignored, or `SA_NOCLDWAIT`): their statuses are lost, and a
/// child that exits at once may be gone before `pidfd_open` names it.
pub(crate) fn children_auto_reaped() -> bool {
    sigchld_action()
        .is_some_and(|a| a.sa_sigaction == libc::SIG_IGN || a.sa_flags & libc::SA_NOCLDWAIT != 0)
}

/// True if `SIGCHLD` has its default disposition: the kernel keeps this
/// process's children's statuses, and no handler of the program's (which
/// might reap any child with `waitpid(-1)`) runs when one exits.
pub(crate) fn sigchld_is_default() -> bool {
    sigchld_action()
        .is_some_and(|a| a.sa_sigaction == libc::SIG_DFL && a.sa_flags & libc::SA_NOCLDWAIT == 0)
}

/// Restores a disposition of `SIGCHLD` saved by [`default_sigchld`] (in a
/// child of the process that saved it: same program image, so a handler
/// address saved there is valid here).
pub(crate) fn restore_sigchld(saved: &SigchldDisposition) {
    // SAFETY: a valid pointer to a sigaction the kernel filled in, and a null
    // pointer for the old one.
    unsafe { libc::sigaction(libc::SIGCHLD, &saved.0, std::ptr::null_mut()) };
}

/// Sends `sig` to the process behind `pidfd`. A process that has already been
/// reaped gives `ESRCH`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a valid borrowed fd, a signal number, a null siginfo (the kernel
    // fills in a default one) and zero flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    })?;
    Ok(())
}

/// Reaps our child behind `pidfd` if it has exited (`waitid(P_PIDFD)`);
/// `Ok(None)` if it is still running. With `block`, waits for it.
///
/// Only the child's parent may call this, and only once it returned
/// `Some` (afterwards it gives `ECHILD`).
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    let mut flags = libc::WEXITED;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value, and
        // waitid with WNOHANG leaves si_pid zero when nothing has exited.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid borrowed fd as id, a pointer to our local siginfo.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(status_from_siginfo(&info));
    }
}

/// Waits up to `deadline` for the process behind `pidfd` to exit (without
/// reaping it). True if it has exited.
pub(crate) fn wait_exit(pidfd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    wait_readable(pidfd, deadline)
}

fn status_from_siginfo(info: &libc::siginfo_t) -> Option<ExitStatus> {
    // SAFETY: for SIGCHLD siginfo filled by waitid these union fields are the
    // ones the kernel writes (si_pid, si_status); zero pid means "nothing".
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return None;
    }
    match info.si_code {
        libc::CLD_EXITED => Some(ExitStatus::Code(status)),
        _ => Some(ExitStatus::Signal(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_and_reap_leaves_nothing() {
        let pid =
            super::super::fork::fork_plain(&[], super::super::fork::Lifeline::Started, || {
                std::thread::sleep(std::time::Duration::from_secs(60));
                0
            })
            .expect("fork");
        kill_and_reap(pid);
        // Reaped: the pid is gone (not a zombie) and no longer our child.
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err());
        // SAFETY: a null status pointer is allowed.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ECHILD)
        );
    }
}
