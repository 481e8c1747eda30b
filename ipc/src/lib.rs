//! multiproc's foundation: the wire codec, channels between processes, shared
//! memory, cross-process synchronization, and the fork machinery behind
//! [`Process`], pools and managers.
//!
//! All `unsafe` code of multiproc lives in the private `sys` module of this
//! crate; every other module is safe Rust.
#![deny(unsafe_code)]

pub mod channel;
pub mod codec;
pub mod error;
pub mod fd;
mod fnref;
pub mod fnref2;
pub mod forkserver;
pub mod park;
pub mod pipe;
mod prefork;
pub mod process;
#[cfg(test)]
mod smaps;
pub mod star;
#[allow(unsafe_code)]
mod sys;
pub mod test_hooks;
pub mod zygote;

pub use error::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result, WireError};
pub mod shared_bytes;
pub mod shm;
pub mod sync;
pub mod value;
pub use fd::Fd;
pub use fnref2::FnRef2;
pub use forkserver::{fork_server, init};
pub use process::{Process, ProcessBuilder};
pub use shared_bytes::SharedBytes;
pub use star::StarFn;
pub use zygote::{FnRef, Zygote, ZygoteChild};
pub mod heap;
pub mod latency;
pub mod queue;
pub mod shmchan;
pub mod spin;
