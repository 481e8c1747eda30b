//! multiproc's supervised process pool.
#![forbid(unsafe_code)]
