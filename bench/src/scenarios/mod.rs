//! The Rust side of each scenario, one file per area.
//!
//! Each function runs the timed section exactly as the Python counterpart
//! does, checks its results, and returns the JSON line.

#[cfg(feature = "process")]
pub mod manager;
pub mod pool;
#[cfg(feature = "process")]
pub mod process;
