//! Worker processes: forking them, noticing their deaths (pidfds), failing
//! the task a dead worker held, and replacing it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_ipc::shm::ShmRegion;
use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, Result, Zygote, ZygoteChild};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::builder::Config;
use crate::collector::{drain_worker, Collected};
use crate::shared::{lock, Inner, Pending, Shared, State, WORKER_SPIN};
use crate::worker::{self, WorkerArg};

pub(crate) enum Event {
    Died { slot: usize, generation: u64 },
}

/// Forks one worker for `slot` through the zygote; returns it and the
/// socket on which it receives its tasks' descriptors.
pub(crate) fn spawn_worker(
    zygote: &Zygote,
    region: &ShmRegion,
    slot: usize,
    config: &Config,
) -> Result<(ZygoteChild, UnixStream)> {
    spawn_workers(zygote, region, slot..slot + 1, 0, config)
        .pop()
        .unwrap_or_else(|| Err(Error::new(ErrorKind::Io, "no worker was forked")))
}

/// Forks the workers of `slots`, the first `here` of them without the
/// zygote while it forks the others, where the zygote allows it
/// ([`Zygote::spawn_many_beside`]: by this process if it forked the zygote
/// and runs a single thread, by the fork server if it forked the zygote),
/// else all through the zygote, every request sent before waiting for the
/// first answer; returns each one and the socket on
/// which it receives its tasks' descriptors, in order. The first that
/// cannot be prepared fails, and the ones after it are not forked.
pub(crate) fn spawn_workers(
    zygote: &Zygote,
    region: &ShmRegion,
    slots: std::ops::Range<usize>,
    here: usize,
    config: &Config,
) -> Vec<Result<(ZygoteChild, UnixStream)>> {
    let Some(region) = region.fd() else {
        return vec![Err(Error::new(
            ErrorKind::Io,
            "the pool's memory has no descriptor to send to a worker",
        ))];
    };
    let mut args = Vec::with_capacity(slots.len());
    let mut sockets = Vec::with_capacity(slots.len());
    let mut failure = None;
    for slot in slots {
        match prepare(slot, config) {
            Ok((arg, pair)) => {
                args.push(arg);
                sockets.push(pair);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let fds: Vec<[BorrowedFd<'_>; 2]> = sockets
        .iter()
        .map(|(_, fd_rx)| [region, fd_rx.as_fd()])
        .collect();
    let requests: Vec<(&WorkerArg, &[BorrowedFd<'_>])> = args
        .iter()
        .zip(&fds)
        .map(|(arg, f)| (arg, &f[..]))
        .collect();
    // A worker forked here keeps no end of the pool's side.
    let ours: Vec<BorrowedFd<'_>> = sockets.iter().map(|(fd_tx, _)| fd_tx.as_fd()).collect();
    let children = zygote.spawn_many_beside(worker::worker_main, &requests, here, &ours);
    drop(ours);
    drop(requests);
    drop(fds);
    let mut out: Vec<_> = children
        .into_iter()
        .zip(sockets)
        .map(|(child, (fd_tx, _))| child.map(|c| (c, fd_tx)))
        .collect();
    out.extend(failure.map(Err));
    out
}

/// A worker's argument, and both ends of its descriptor socket (the
/// worker gets the second).
fn prepare(slot: usize, config: &Config) -> Result<(WorkerArg, (UnixStream, UnixStream))> {
    if crate::test_hooks::spawn_fails() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("cannot fork worker {slot}: the spawn failure test hook fired"),
        ));
    }
    let arg = WorkerArg {
        slot,
        max_tasks: config.max_tasks,
        initializer: config.initializer.clone(),
        spin_ns: WORKER_SPIN.as_nanos() as u64,
        slice_ns: multiproc_ipc::latency::slice_ns(),
        heap_keep: multiproc_ipc::heap::keep_bytes(),
        pool_pid: std::process::id(),
    };
    let (fd_tx, fd_rx) = UnixStream::pair()
        .map_err(|e| Error::io("cannot create a worker's descriptor socket", e))?;
    Ok((arg, (fd_tx, fd_rx)))
}

/// Waits until every child is reaped or `deadline` passes, then kills and
/// reaps the rest.
pub(crate) fn reap(children: &[Arc<ZygoteChild>], deadline: Instant) {
    for c in children {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => {}
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let until = Instant::now() + Duration::from_secs(5);
                while !matches!(c.try_wait(), Ok(Some(_)) | Err(_)) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                break;
            }
            let fd = c.as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, PollTimeout::from(50u16));
        }
    }
}

/// How many workers in a row may fail in their initializer (with no task
/// finishing in between) before the pool is broken: see
/// [`PoolBuilder::initializer`](crate::PoolBuilder::initializer).
pub const INIT_FAILURE_LIMIT: u32 = 3;

/// Handles the death of the worker in `slot` (generation `generation`).
pub(crate) fn handle_death(
    shared: &Shared,
    g: &mut Inner,
    slot: usize,
    generation: u64,
    col: &mut Collected,
) {
    if g.workers[slot].generation != generation {
        return;
    }
    // Results it published before dying are valid.
    drain_worker(shared, g, slot, col);
    let w = &mut g.workers[slot];
    let Some(child) = w.child.take() else { return };
    let status = match child.try_wait() {
        Ok(Some(s)) => s,
        _ => ExitStatus::Signal(libc_sigkill()),
    };
    let current = w.view.current().load(Ordering::SeqCst);
    let timed_out = w.timed_out.take();
    // A worker that died before its initializer finished failed to start.
    let init_failure = match (w.init_error.take(), w.ready) {
        (Some(e), _) => Some(e),
        (None, false) => Some(Error::worker_lost(ExitInfo {
            pid: w.pid,
            status,
            task: None,
        })),
        (None, true) => None,
    };
    let outstanding: Vec<Pending> = w.outstanding.drain(..).collect();
    let pid = w.pid;
    w.timed = false;
    w.view.reset();
    w.dispatched = 0;
    w.seen_finished = 0;
    if status.success() {
        tracing::debug!(pid, slot, "a pool worker retired (max_tasks_per_child)");
    } else if matches!(g.state, State::Running | State::Closed) {
        tracing::warn!(pid, slot, status = %status, task = current, "a pool worker died");
    }
    let mut requeue = Vec::new();
    for mut p in outstanding {
        if p.cancelled {
            // Resolved when it was cancelled; it never runs.
            continue;
        }
        let id = p.id;
        let ran = id == current || Some(id) == timed_out;
        if ran {
            {
                let err = if Some(id) == timed_out {
                    Error::timeout(format!(
                        "task {id} exceeded its timeout of {:?}; worker {pid} was killed",
                        p.timeout.unwrap_or_default()
                    ))
                } else {
                    Error::worker_lost(ExitInfo {
                        pid,
                        status,
                        task: Some(id),
                    })
                };
                col.push_err(p.complete, err);
            }
        } else {
            p.deadline = None;
            requeue.push(p);
        }
    }
    for p in requeue.into_iter().rev() {
        g.backlog.push_front(p);
    }
    if let Some(cause) = init_failure {
        g.init_failures += 1;
        tracing::warn!(pid, slot, error = %cause, "a pool worker's initializer failed");
        if g.init_failures >= INIT_FAILURE_LIMIT && g.broken.is_none() {
            let n = g.init_failures;
            tracing::error!(
                failures = n,
                "the pool is broken: its initializer keeps failing"
            );
            g.broken = Some(Error::with_source(
                ErrorKind::NotRunning,
                format!(
                    "the pool is broken: the worker initializer failed {n} times in a row \
                     ({cause})"
                ),
                cause,
            ));
        }
    }
    if g.broken.is_none() && matches!(g.state, State::Running | State::Closed) {
        respawn(shared, g, slot);
    }
}

pub(crate) fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

pub(crate) fn respawn(shared: &Shared, g: &mut Inner, slot: usize) {
    let Some(zygote) = g.zygote.as_ref() else {
        return;
    };
    match spawn_worker(zygote, &shared.region, slot, &shared.config) {
        Ok((child, fd_tx)) => {
            let child = Arc::new(child);
            let w = &mut g.workers[slot];
            // The old socket goes with the dead worker (with any
            // descriptors still queued in it); requeued tasks send theirs
            // again on the new one.
            w.fd_tx = fd_tx;
            w.generation += 1;
            w.pid = child.pid();
            shared.counters.respawned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                slot,
                pid = w.pid,
                "a pool worker was forked to replace a dead one"
            );
            w.ready = shared.config.initializer.is_none();
            w.init_error = None;
            w.child = Some(Arc::clone(&child));
            lock(&shared.watch).push((slot, w.generation, child));
            let _ = (&shared.wake_tx).write(&[1]);
        }
        Err(e) => {
            tracing::error!(slot, error = %e, "cannot fork a replacement pool worker");
            if g.workers.iter().all(|w| w.child.is_none()) {
                // Nothing can run the remaining tasks: fail them now.
                g.broken = Some(Error::with_source(
                    ErrorKind::NotRunning,
                    format!("the pool is broken: it cannot start a worker ({e})"),
                    e,
                ));
            }
        }
    }
}

pub(crate) fn supervisor_loop(shared: &Shared, mut wake_rx: UnixStream) {
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let watch: Vec<(usize, u64, Arc<ZygoteChild>)> = lock(&shared.watch).clone();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(watch.len() + 1);
            let rx: BorrowedFd<'_> = wake_rx.as_fd();
            fds.push(PollFd::new(rx, PollFlags::POLLIN));
            for (_, _, c) in &watch {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        };
        if ready.first().copied().unwrap_or(false) {
            let mut b = [0u8; 64];
            while matches!(wake_rx.read(&mut b), Ok(n) if n > 0) {}
        }
        let dead: Vec<(usize, u64)> = watch
            .iter()
            .zip(ready.iter().skip(1))
            .filter(|(_, r)| **r)
            .map(|((s, gen, _), _)| (*s, *gen))
            .collect();
        if !dead.is_empty() {
            lock(&shared.watch).retain(|(s, gen, _)| !dead.contains(&(*s, *gen)));
            lock(&shared.events).extend(
                dead.into_iter()
                    .map(|(slot, generation)| Event::Died { slot, generation }),
            );
            shared.event_flag.store(true, Ordering::Release);
            shared.parent_bell.ring_always();
        }
    }
}
