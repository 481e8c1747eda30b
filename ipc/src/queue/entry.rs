//! An entry of the LIFO/priority store's order array, and the entry writes
//! one operation journals (see `store.rs`).

use crate::error::{Error, ErrorKind, Result};

use super::store::CELL;

/// The most entry writes one operation makes: one per heap level (at most
/// 27 for the largest store) and one more.
pub(crate) const MAX_WRITES: usize = 40;

/// Bit 63 of an entry's word: the cells hold a blob reference.
const BLOB_BIT: u64 = 1 << 63;

/// Items (or blob references) this small live in their entry, in no cell:
/// a priority queue compares them without touching the cells.
const SMALL: usize = 16;

/// One element of the order array (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Insertion sequence (ties in a priority queue go by it).
    pub(crate) seq: u64,
    /// First cell (low 32 bits), length (bits 32..63), blob flag (bit 63).
    pub(crate) word: u64,
    /// A small item's bytes.
    pub(crate) data: [u64; 2],
}

impl Entry {
    pub(crate) fn new(seq: u64, first: u32, len: usize, blob: bool) -> Entry {
        let mut word = u64::from(first) | ((len as u64) << 32);
        if blob {
            word |= BLOB_BIT;
        }
        Entry {
            seq,
            word,
            data: [0; 2],
        }
    }

    /// An entry holding the small item `parts` itself.
    pub(crate) fn small(seq: u64, parts: [&[u8]; 2], blob: bool) -> Entry {
        let mut b = [0u8; SMALL];
        let p0 = parts[0].len();
        let len = p0 + parts[1].len();
        b[..p0].copy_from_slice(parts[0]);
        b[p0..len].copy_from_slice(parts[1]);
        let mut e = Entry::new(seq, 0, len, blob);
        e.data = [
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        ];
        e
    }

    /// A small item's bytes (all [`SMALL`] of them; the item is `..len()`).
    pub(crate) fn small_bytes(self) -> [u8; SMALL] {
        let mut b = [0u8; SMALL];
        b[..8].copy_from_slice(&self.data[0].to_le_bytes());
        b[8..].copy_from_slice(&self.data[1].to_le_bytes());
        b
    }

    pub(crate) fn is_small(self) -> bool {
        self.len() <= SMALL
    }
    pub(crate) fn first(self) -> u32 {
        self.word as u32
    }
    pub(crate) fn len(self) -> usize {
        ((self.word & !BLOB_BIT) >> 32) as usize
    }
    pub(crate) fn is_blob(self) -> bool {
        self.word & BLOB_BIT != 0
    }
}

/// Cells an item of `len` bytes takes (none if it fits in its entry).
pub(crate) fn cells_for(len: usize) -> u64 {
    if len <= SMALL {
        0
    } else {
        len.div_ceil(CELL) as u64
    }
}

/// The entry writes of one operation.
pub(crate) struct Writes {
    pub(crate) n: usize,
    pub(crate) list: [(u64, Entry); MAX_WRITES],
}

impl Writes {
    pub(crate) fn new() -> Writes {
        Writes {
            n: 0,
            list: [(0, Entry::new(0, 0, 0, false)); MAX_WRITES],
        }
    }
    pub(crate) fn push(&mut self, pos: u64, e: Entry) -> Result<()> {
        let slot = self
            .list
            .get_mut(self.n)
            .ok_or_else(|| Error::new(ErrorKind::Io, "queue heap is deeper than possible"))?;
        *slot = (pos, e);
        self.n += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_pack_and_unpack() {
        let e = Entry::new(7, 123, 1 << 30, true);
        assert_eq!(
            (e.seq, e.first(), e.len(), e.is_blob()),
            (7, 123, 1 << 30, true)
        );
        let e = Entry::new(0, u32::MAX, 0, false);
        assert_eq!((e.first(), e.len(), e.is_blob()), (u32::MAX, 0, false));
        assert_eq!(cells_for(0), 0);
        assert_eq!(cells_for(16), 0);
        assert_eq!(cells_for(17), 1);
        assert_eq!(cells_for(64), 1);
        assert_eq!(cells_for(65), 2);
        let e = Entry::small(3, [&[1, 2], &[3; 14]], false);
        assert_eq!(e.len(), 16);
        assert_eq!(&e.small_bytes()[..3], &[1, 2, 3]);
    }
}
