//! The Rust side of each scenario, one file per area.
//!
//! Each function runs the timed section exactly as the Python counterpart
//! does, checks its results, and returns the JSON line.

pub mod executor;
mod kids;
pub mod killed;
pub mod manager;
pub mod ordered_queue;
pub mod peer;
pub mod pool;
pub mod process;
pub mod queue;
pub mod redis;
pub mod redis_proofs;
pub mod sync;
