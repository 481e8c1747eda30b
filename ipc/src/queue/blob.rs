//! Items too large for a queue's ring travel in their own named segment.
//!
//! The producer creates `<queue name>.<pid>-<seq>`, writes the item's bytes,
//! unmaps it and publishes a small reference record (length + name) in the
//! ring. The consumer that takes the record maps the segment and unlinks its
//! name *before* committing its get: from then on the segment lives exactly as
//! long as that consumer's mapping, and vanishes with it, even if the consumer
//! is killed. Who unlinks, on every path:
//!
//! * put fails (full, timeout, closed) after creating it: the producer;
//! * published, then taken: the consumer, before its commit;
//! * consumer killed after unlinking, before its commit: the name is already
//!   gone; the next consumer finds the record's segment missing and skips it
//!   (the one item the killed consumer was taking is lost);
//! * never taken (the queue is dropped with items in it), or a producer killed
//!   between creating and publishing: the queue's creator, when it drops its
//!   last handle, unlinks every segment named after the queue; if the creator
//!   itself is killed, the next run's sweep of regions with a dead creator
//!   (names start with the queue's `mp-<creator pid>-`) removes them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::shm::{self as sys, Mapping};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A blob taken over by a consumer: mapped here, its name already unlinked.
pub(crate) struct TakenBlob {
    map: Mapping,
    len: usize,
}

impl std::fmt::Debug for TakenBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakenBlob").field("len", &self.len).finish()
    }
}

impl TakenBlob {
    /// The item's bytes, read in place from the segment (only this process
    /// can still reach it: its name is gone and the producer unmapped it).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map.as_slice()[..self.len]
    }
}

fn io(context: String, e: std::io::Error) -> Error {
    Error::with_source(ErrorKind::Io, context, e)
}

/// Creates a segment for `bytes` named after the queue; returns its name.
pub(crate) fn create(queue_name: &str, parts: [&[u8]; 2]) -> Result<String> {
    let len = parts[0].len() + parts[1].len();
    let name = format!(
        "{queue_name}.{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    // A segment must have at least one byte.
    let map = Mapping::create_named(&name, len.max(1)).map_err(|e| {
        io(
            format!("cannot create a segment for a queue item of {len} bytes"),
            e,
        )
    })?;
    if !(map.write_at(0, parts[0]) && map.write_at(parts[0].len(), parts[1])) {
        drop(map);
        discard(&name);
        return Err(Error::new(
            ErrorKind::Io,
            "queue item segment is smaller than requested",
        ));
    }
    Ok(name)
}

/// The payload of a reference record: item length (u64 LE), then the name.
pub(crate) fn encode_ref(name: &str, len: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(8 + name.len());
    r.extend_from_slice(&(len as u64).to_le_bytes());
    r.extend_from_slice(name.as_bytes());
    r
}

/// Unlinks a segment this process created and could not publish.
pub(crate) fn discard(name: &str) {
    let _ = sys::unlink(name);
}

/// Parses a reference record: (item length, segment name).
fn parse_ref(reference: &[u8]) -> Result<(usize, &str)> {
    let corrupt = || Error::new(ErrorKind::Io, "queue holds a corrupt item reference");
    if reference.len() < 9 {
        return Err(corrupt());
    }
    let (len, name) = reference.split_at(8);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| corrupt())?) as usize;
    let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
    Ok((len, name))
}

/// Maps the segment of a reference record, leaving its name in place (to
/// read the item while it stays queued: a priority queue comparing items).
///
/// `Ok(None)` if the segment no longer exists (see [`take`]).
pub(crate) fn open(reference: &[u8]) -> Result<Option<TakenBlob>> {
    let (len, name) = parse_ref(reference)?;
    let map = match Mapping::attach_named(name) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("cannot open queue item segment {name}"), e)),
    };
    if map.len() < len {
        return Err(Error::new(
            ErrorKind::Io,
            "queue holds a corrupt item reference",
        ));
    }
    Ok(Some(TakenBlob { map, len }))
}

/// Maps the segment of a reference record and unlinks its name.
///
/// `Ok(None)` if the segment no longer exists (taken over by a consumer that
/// was killed before it committed).
pub(crate) fn take(reference: &[u8]) -> Result<Option<TakenBlob>> {
    let (_, name) = parse_ref(reference)?;
    let Some(blob) = open(reference)? else {
        return Ok(None);
    };
    sys::unlink(name).map_err(|e| io(format!("cannot unlink queue item segment {name}"), e))?;
    Ok(Some(blob))
}

/// Unlinks every item segment of the queue `queue_name` left in `/dev/shm`.
pub(crate) fn sweep(queue_name: &str) {
    let prefix = format!("{}.", queue_name.trim_start_matches('/'));
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let file = entry.file_name();
        if let Some(f) = file.to_str() {
            if f.starts_with(&prefix) {
                let _ = sys::unlink(&format!("/{f}"));
            }
        }
    }
}
