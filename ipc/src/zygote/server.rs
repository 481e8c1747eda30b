//! The zygote process: its event loop forks a child per request, reaps
//! its children and reports their exits.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::wire::{frame_bytes, Frame, FrameReader, Reaped, Reply, Request};
use crate::codec;
use crate::sys::fd::{self, Poll};
use crate::sys::fork::{self, FnAddr, Trampoline};
use crate::sys::wait;

/// How long a retiring zygote waits for room to write its last reports.
const RETIRE_FLUSH: Duration = Duration::from_secs(2);

struct ZygoteState {
    sock: Option<OwnedFd>,
    /// The `SIGCHLD` disposition inherited from the program, restored in
    /// each child (the zygote itself needs the default to reap).
    sigchld: Option<wait::SigchldDisposition>,
    children: Vec<(u64, i32, OwnedFd)>,
    reader: FrameReader,
    out: VecDeque<(Vec<u8>, Vec<OwnedFd>, usize)>,
    next_id: u64,
    /// Asked to exit once its last child is reaped ([`Request::Retire`]).
    retiring: bool,
}

impl ZygoteState {
    fn reply(&mut self, reply: &Reply, fds: Vec<OwnedFd>) {
        match codec::encode(reply).and_then(|m| {
            frame_bytes(&m, &[], fds.len()).map_err(|e| codec::CodecError::Encode(e.to_string()))
        }) {
            Ok(bytes) => self.out.push_back((bytes, fds, 0)),
            Err(e) => tracing::error!(error = %e, "zygote: cannot encode a reply; dropped"),
        }
    }

    /// Writes queued replies without blocking. Err on a broken connection.
    fn flush(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_ref() else {
            return Ok(());
        };
        while let Some((bytes, fds, sent)) = self.out.front_mut() {
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            let attach: &[BorrowedFd<'_>] = if *sent == 0 { &borrowed } else { &[] };
            match fd::send_with_fds(sock.as_fd(), &bytes[*sent..], attach, true) {
                Ok(n) => {
                    *sent += n;
                    if *sent == bytes.len() {
                        self.out.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes every queued reply, waiting for room as needed; gives up if
    /// the requester is gone or does not read for [`RETIRE_FLUSH`].
    fn flush_all(&mut self) {
        let deadline = Instant::now() + RETIRE_FLUSH;
        while !self.out.is_empty() && Instant::now() < deadline {
            if self.flush().is_err() {
                return;
            }
            let Some(sock) = self.sock.as_ref() else {
                return;
            };
            if !self.out.is_empty()
                && fd::poll_until(&[(sock.as_fd(), Poll::POLLOUT)], Some(deadline)).is_err()
            {
                return;
            }
        }
    }

    /// Carries out one request: a spawn (answered), or the retirement.
    fn handle(&mut self, frame: Frame) {
        match codec::decode::<Request>(&frame.msg) {
            Ok(Request::Spawn { .. }) if self.retiring => {
                let message = "the zygote is retiring: it forks nothing more".to_owned();
                self.reply(&Reply::SpawnFailed { message }, Vec::new());
            }
            Ok(Request::Spawn { trampoline, main }) => self.spawn(trampoline, main, frame),
            Ok(Request::Retire) => self.retiring = true,
            Err(e) => {
                let message = format!("bad request: {e}");
                self.reply(&Reply::SpawnFailed { message }, Vec::new());
            }
        }
    }

    /// Forks a child running `trampoline(main, payload, fds)` of `frame`.
    fn spawn(&mut self, trampoline: FnAddr, main: FnAddr, frame: Frame) {
        let Some(entry) = trampoline.get::<Trampoline>() else {
            let message = "entry address is not from this program".to_owned();
            return self.reply(&Reply::SpawnFailed { message }, Vec::new());
        };
        let mut child_fds = Some(frame.fds);
        let payload = frame.payload;
        let forked = fork::fork_single_threaded(&[], || {
            // Drop what belongs to the zygote: its socket, its children's pidfds.
            self.sock = None;
            self.children.clear();
            self.out.clear();
            self.reader = FrameReader::default();
            if let Some(saved) = &self.sigchld {
                wait::restore_sigchld(saved);
            }
            entry(main, &payload, child_fds.take().unwrap_or_default())
        });
        drop(child_fds);
        let pid = match forked {
            Ok(pid) => pid,
            Err(e) => {
                let message = format!("fork failed: {e}");
                return self.reply(&Reply::SpawnFailed { message }, Vec::new());
            }
        };
        // We are the parent and have not reaped it: the pid is still ours.
        let pidfd = match wait::pidfd_open(pid) {
            Ok(p) => p,
            Err(e) => {
                wait::kill_and_reap(pid);
                let message = format!("pidfd_open failed: {e}");
                return self.reply(&Reply::SpawnFailed { message }, Vec::new());
            }
        };
        let copy = match pidfd.try_clone() {
            Ok(copy) => copy,
            Err(e) => {
                drop(pidfd);
                wait::kill_and_reap(pid);
                let message = format!("cannot duplicate the pidfd: {e}");
                return self.reply(&Reply::SpawnFailed { message }, Vec::new());
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.children.push((id, pid, pidfd));
        self.reply(&Reply::Spawned { id, pid }, vec![copy]);
    }

    fn reap(&mut self, ready: &[bool]) {
        let mut i = 0;
        let mut k = 0;
        while i < self.children.len() {
            let is_ready = ready.get(k).copied().unwrap_or(false);
            k += 1;
            if is_ready {
                let reaped = match wait::waitid_pidfd(self.children[i].2.as_fd(), false) {
                    Ok(Some(status)) => Some(Reaped::Status(status)),
                    Ok(None) => None,
                    // Its pidfd says it is dead, yet it cannot be reaped
                    // (someone else did): report it, or it would be polled
                    // forever.
                    Err(_) => Some(Reaped::Unavailable),
                };
                if let Some(status) = reaped {
                    let (id, _, _) = self.children.remove(i);
                    self.reply(&Reply::Exited { id, status }, Vec::new());
                    continue;
                }
            }
            i += 1;
        }
    }
}

/// The zygote's event loop; returns its exit code when the requester is gone.
pub(super) fn zygote_loop(sock: OwnedFd) -> i32 {
    // An inherited `SIG_IGN` would let the kernel reap our children and
    // lose their statuses.
    let sigchld = wait::default_sigchld().ok();
    let mut st = ZygoteState {
        sock: Some(sock),
        sigchld,
        children: Vec::new(),
        reader: FrameReader::default(),
        out: VecDeque::new(),
        next_id: 1,
        retiring: false,
    };
    st.reply(&Reply::Ready, Vec::new());
    loop {
        let Some(sock) = st.sock.as_ref() else {
            return 0;
        };
        let mut events = Poll::POLLIN;
        if !st.out.is_empty() {
            events |= Poll::POLLOUT;
        }
        let mut set = vec![(sock.as_fd(), events)];
        set.extend(st.children.iter().map(|c| (c.2.as_fd(), Poll::POLLIN)));
        let revents = match fd::poll_until(&set, None) {
            Ok(r) => r,
            Err(_) => return 1,
        };
        drop(set);
        let ready: Vec<bool> = revents.iter().skip(1).map(|r| !r.is_empty()).collect();
        st.reap(&ready);
        let mut eof = false;
        if revents
            .first()
            .is_some_and(|r| r.intersects(Poll::POLLIN | Poll::POLLHUP | Poll::POLLERR))
        {
            loop {
                let Some(sock) = st.sock.as_ref() else {
                    return 0;
                };
                match st.reader.fill(sock.as_fd(), true) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            loop {
                match st.reader.next_frame() {
                    Ok(Some(frame)) => st.handle(frame),
                    Ok(None) => break,
                    Err(_) => return 2,
                }
            }
        }
        if eof {
            // The requester is gone; our children die with us (PDEATHSIG).
            return 0;
        }
        if st.flush().is_err() {
            return 0;
        }
        if st.retiring && st.children.is_empty() {
            // Every child is reaped: report the last exits, then go (our
            // requester reaps us while it does the rest of its own
            // shutting down, instead of after it).
            st.flush_all();
            return 0;
        }
    }
}

/// The entry of a zygote forked through another zygote (the fork server).
pub(super) fn zygote_main(_: (), mut fds: Vec<OwnedFd>) -> i32 {
    match fds.pop() {
        Some(sock) => zygote_loop(sock),
        None => 2,
    }
}
