//! The bytes of a task record, kept until the task ends.
//!
//! A record is built on the submitting thread and dropped on the result
//! thread when the task's result arrives. As a vector, that is an
//! allocation per task freed on another thread, malloc's slowest case (the
//! freed chunks pile up in the allocating arena's bins, and the next
//! allocation sorts them). A tiny task's whole record fits in a few dozen
//! bytes: [`Record`] keeps those inline, so submitting one allocates nothing
//! for its record.

use std::ops::{Deref, DerefMut};

use multiproc_ipc::Result;

use crate::task;

/// The largest record kept inline (a `fn(u64) -> u64` task takes at most 74
/// bytes: the trampoline and the function each name an address, a key and
/// a type tag).
pub(crate) const RECORD_INLINE: usize = 96;

/// A task record: `[kind u8][id u64][trampoline][body]`.
pub(crate) enum Record {
    Inline { len: u8, bytes: [u8; RECORD_INLINE] },
    Heap(Vec<u8>),
}

impl Record {
    /// The record of `template` (see [`task::head_template`]) with `kind`
    /// and `id` set, followed by a body of at most `body` bytes that `fill`
    /// writes into the slice it gets, returning how many it wrote.
    ///
    /// # Errors
    ///
    /// Those of `fill`.
    pub(crate) fn build(
        template: &[u8],
        kind: u8,
        id: u64,
        body: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize>,
    ) -> Result<Record> {
        let start = template.len();
        let total = start.saturating_add(body);
        if total <= RECORD_INLINE {
            let mut bytes = [0u8; RECORD_INLINE];
            bytes[..start].copy_from_slice(template);
            task::set_head(&mut bytes, kind, id);
            let used = fill(&mut bytes[start..total])?.min(body);
            // At most RECORD_INLINE (< 256).
            let len = (start + used) as u8;
            return Ok(Record::Inline { len, bytes });
        }
        let mut rec = Vec::with_capacity(total);
        rec.extend_from_slice(template);
        task::set_head(&mut rec, kind, id);
        rec.resize(total, 0);
        let used = fill(&mut rec[start..])?.min(body);
        rec.truncate(start + used);
        Ok(Record::Heap(rec))
    }

    /// True if the record is kept inline (no allocation).
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self, Record::Inline { .. })
    }
}

impl Deref for Record {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Record::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Record::Heap(v) => v,
        }
    }
}

impl DerefMut for Record {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Record::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            Record::Heap(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiproc_ipc::{Error, ErrorKind};

    fn filled(template: &[u8], body: &[u8]) -> Record {
        Record::build(template, 7, 0x0102_0304_0506_0708, body.len(), |out| {
            out[..body.len()].copy_from_slice(body);
            Ok(body.len())
        })
        .unwrap()
    }

    #[test]
    fn a_record_has_its_template_head_and_body_inline_or_not() {
        let template = [0u8; 20];
        for body_len in [0, 1, RECORD_INLINE - 20, RECORD_INLINE - 19, 1000] {
            let body: Vec<u8> = (0..body_len).map(|i| i as u8).collect();
            let rec = filled(&template, &body);
            assert_eq!(
                rec.is_inline(),
                20 + body_len <= RECORD_INLINE,
                "{body_len}"
            );
            assert_eq!(rec.len(), 20 + body_len);
            assert_eq!(rec[0], 7);
            assert_eq!(rec[1..9], 0x0102_0304_0506_0708u64.to_le_bytes());
            assert_eq!(&rec[20..], &body[..]);
        }
    }

    #[test]
    fn a_body_shorter_than_its_room_is_cut_to_what_was_written() {
        for room in [10, 500] {
            let rec = Record::build(&[0u8; 12], 1, 2, room, |out| {
                out[..3].copy_from_slice(b"abc");
                Ok(3)
            })
            .unwrap();
            assert_eq!(&rec[12..], b"abc");
        }
    }

    #[test]
    fn a_failing_fill_fails_the_record() {
        for room in [10, 500] {
            let r = Record::build(&[0u8; 12], 1, 2, room, |_| {
                Err(Error::new(ErrorKind::Serialization, "no"))
            });
            assert!(matches!(r, Err(e) if e.kind() == ErrorKind::Serialization));
        }
    }

    fn square(x: u64) -> u64 {
        x * x
    }

    /// The case the inline buffer is sized for: an `apply_async` of a
    /// `fn(u64) -> u64` with the largest `u64`.
    #[test]
    fn a_tiny_tasks_record_is_inline() {
        let template = task::one_template::<u64, u64>().unwrap();
        let body = (
            multiproc_ipc::FnRef::new(square as fn(u64) -> u64),
            u64::MAX,
        );
        let c = multiproc_ipc::codec::Codec::default();
        let len = c.encoded_len(&body).unwrap();
        let rec = Record::build(&template, 0, u64::MAX, len, |out| {
            Ok(c.encode_into_slice(&body, out)?)
        })
        .unwrap();
        assert!(rec.is_inline(), "{} bytes", template.len() + len);
    }

    #[test]
    fn the_kind_byte_can_be_flagged_in_place() {
        let mut rec = filled(&[0u8; 12], b"x");
        rec[0] |= 0x80;
        assert_eq!(rec[0], 0x87);
    }
}
