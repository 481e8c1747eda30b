//! multiproc's manager process, typed proxies and remote manager.
#![forbid(unsafe_code)]
