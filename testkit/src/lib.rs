//! Helpers shared by multiproc's integration tests: one copy of each.
//!
//! - [`procs`](mod@procs): this process's children, zombies, whether a pid is gone,
//!   a pid's parent and a thread's scheduler slice, SIGKILL; and the
//!   settle-then-assert checks [`assert_no_zombie_children`]
//!   and [`assert_no_children`], which tolerate another test's child that has
//!   exited but is not yet joined.
//! - [`wait`](mod@wait): polling with a deadline ([`wait_until`], [`eventually`]),
//!   running a closure with a deadline ([`bounded`]), tolerant timing bounds
//!   ([`assert_lasted`]).
//! - [`shm`](mod@shm): `/dev/shm` entries and leak checks.
//! - [`serial`](mod@serial): the process-wide lock that runs fork-heavy tests one at a
//!   time, with guards that check for leaks, and the [`checked`] runner.
//! - [`kid`](mod@kid): a forked [`Process`](multiproc_ipc::Process) that is killed and
//!   reaped if the test fails.
//! - [`reexec`](mod@reexec): this test binary run again in a role, as an unrelated
//!   process, always waited for with a deadline.
//! - [`redis`](mod@redis): a real `redis-server` on a free loopback port, stopped
//!   when dropped ([`RedisServer`]).
//! - [`cases`](mod@cases): the harness of a `harness = false` test binary
//!   ([`Cases`]).
//!
//! Dev-only: used by the workspace's tests, never published.
//!
//! # Examples
//!
//! ```
//! use multiproc_testkit::{assert_no_zombie_children, wait_until};
//! use std::time::Duration;
//!
//! assert!(wait_until(Duration::from_secs(1), || true));
//! assert_no_zombie_children();
//! ```
#![forbid(unsafe_code)]

pub mod cases;
pub mod kid;
pub mod procs;
pub mod redis;
pub mod reexec;
pub mod serial;
pub mod shm;
pub mod wait;

use std::time::Duration;

pub use cases::Cases;
pub use kid::{join_or_kill, kill_and_reap, Kid};
pub use procs::{
    alive, assert_no_children, assert_no_zombie_children, children, descendants, descendants_of,
    gone, kill_pid, kill_survivors, parent_of, reaped, sched_slice, wait_gone, zombie_children,
};
pub use redis::{redis_server_path, RedisOptions, RedisServer};
pub use reexec::{printed_pids, Helper, Reexec};
pub use serial::{checked, serial, serial_clean, serial_shm_checked, Clean, Serial, ShmChecked};
pub use shm::{assert_shm_removed, in_dev_shm, leftovers, shm_names};
pub use wait::{assert_lasted, bounded, eventually, settle, wait_until};

/// The longest any child, helper process or blocking wait may take in a test
/// that does not set its own bound.
pub const LIMIT: Duration = Duration::from_secs(60);

/// How long the "nothing left behind" checks wait for the state to settle
/// (a child that has exited but that its owner has not yet reaped).
pub const SETTLE: Duration = Duration::from_secs(5);
