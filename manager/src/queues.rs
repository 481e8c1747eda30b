//! The items of the manager's queues, in the three orders Python's `queue`
//! module offers: FIFO (`Queue`), LIFO (`LifoQueue`) and smallest first
//! (`PriorityQueue`).
//!
//! FIFO and LIFO queues hold encoded items and never look inside them. A
//! priority queue must compare its items, so it holds them decoded, as the
//! `T: Ord` its creator named: the creator sends a [`HeapMaker`], a
//! function pointer to [`new_heap::<T>`](new_heap) (a local manager is a
//! fork of its client, so the pointer is valid there; a remote server
//! registers its priority queues itself and takes no function from
//! clients).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use multiproc_ipc::process::catch_remote_panic;
use multiproc_ipc::{codec, Error, ErrorKind, FnRef, WireError};
use serde::de::DeserializeOwned;

use crate::protocol::Bytes;

/// A priority queue's items, decoded as the type its creator named.
pub(crate) trait PrioItems: Send {
    /// Adds an encoded item; fails if it is not the queue's type.
    fn push(&mut self, item: Bytes) -> Result<(), WireError>;
    /// Takes the smallest item (the oldest of equal ones), encoded; fails
    /// if the type's `Ord` panicked.
    fn pop(&mut self) -> Result<Option<Bytes>, WireError>;
    fn len(&self) -> usize;
}

/// Makes the empty item store of a priority queue of some `T`.
pub(crate) type HeapMaker = FnRef<(), Box<dyn PrioItems>>;

/// The [`HeapMaker`] target for items of type `T`.
pub(crate) fn new_heap<T>(_: ()) -> Box<dyn PrioItems>
where
    T: Ord + DeserializeOwned + Send + 'static,
{
    Box::new(Heap::<T> {
        heap: BinaryHeap::new(),
        seq: 0,
    })
}

/// One item: its value (the order), its arrival number (the order among
/// equal values) and its encoding (what `get` returns).
struct Slot<T> {
    value: T,
    seq: u64,
    bytes: Bytes,
}

impl<T: Ord> Ord for Slot<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // `BinaryHeap` pops the greatest: the smallest value, then the
        // earliest arrival, must compare greatest.
        other
            .value
            .cmp(&self.value)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<T: Ord> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord> Eq for Slot<T> {}

struct Heap<T> {
    heap: BinaryHeap<Slot<T>>,
    seq: u64,
}

impl<T: Ord + DeserializeOwned + Send> PrioItems for Heap<T> {
    fn push(&mut self, bytes: Bytes) -> Result<(), WireError> {
        let value: T = codec::decode(&bytes).map_err(|e| {
            Error::with_source(
                ErrorKind::Serialization,
                format!(
                    "the item is not a {}, the type of this priority queue",
                    std::any::type_name::<T>()
                ),
                e,
            )
            .to_wire()
        })?;
        let seq = self.seq;
        // The user's `Ord` runs here: a panic in it is the caller's error,
        // not the manager's (`BinaryHeap` stays valid when a comparison
        // panics).
        catch_remote_panic(|| self.heap.push(Slot { value, seq, bytes }))
            .map_err(|p| Error::panicked(p).to_wire())?;
        self.seq += 1;
        Ok(())
    }

    fn pop(&mut self) -> Result<Option<Bytes>, WireError> {
        catch_remote_panic(|| self.heap.pop())
            .map(|slot| slot.map(|s| s.bytes))
            .map_err(|p| Error::panicked(p).to_wire())
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// The items of a queue, in its order.
pub(crate) enum Items {
    Fifo(VecDeque<Bytes>),
    Lifo(Vec<Bytes>),
    Priority(Box<dyn PrioItems>),
}

impl Items {
    /// Adds an item; only a priority queue can refuse one (not its type).
    pub(crate) fn push(&mut self, item: Bytes) -> Result<(), WireError> {
        match self {
            Items::Fifo(q) => q.push_back(item),
            Items::Lifo(s) => s.push(item),
            Items::Priority(h) => h.push(item)?,
        }
        Ok(())
    }

    /// Takes the next item: the oldest, the newest or the smallest (only a
    /// priority queue can fail, if its type's `Ord` panics).
    pub(crate) fn pop(&mut self) -> Result<Option<Bytes>, WireError> {
        match self {
            Items::Fifo(q) => Ok(q.pop_front()),
            Items::Lifo(s) => Ok(s.pop()),
            Items::Priority(h) => h.pop(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Items::Fifo(q) => q.len(),
            Items::Lifo(s) => s.len(),
            Items::Priority(h) => h.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push<T: serde::Serialize>(items: &mut Items, v: T) {
        items.push(codec::encode(&v).unwrap()).unwrap();
    }

    fn pop<T: DeserializeOwned>(items: &mut Items) -> Option<T> {
        items.pop().unwrap().map(|b| codec::decode(&b).unwrap())
    }

    #[test]
    fn three_orders() {
        let mut fifo = Items::Fifo(VecDeque::new());
        let mut lifo = Items::Lifo(Vec::new());
        let mut prio = Items::Priority(new_heap::<(u8, String)>(()));
        for q in [&mut fifo, &mut lifo, &mut prio] {
            for (p, s) in [(2u8, "b"), (1, "z"), (2, "a"), (1, "y")] {
                push(q, (p, s.to_string()));
            }
            assert_eq!(q.len(), 4);
        }
        let drain =
            |q: &mut Items| -> Vec<(u8, String)> { std::iter::from_fn(|| pop(q)).collect() };
        let v = |xs: &[(u8, &str)]| -> Vec<(u8, String)> {
            xs.iter().map(|(p, s)| (*p, s.to_string())).collect()
        };
        assert_eq!(
            drain(&mut fifo),
            v(&[(2, "b"), (1, "z"), (2, "a"), (1, "y")])
        );
        assert_eq!(
            drain(&mut lifo),
            v(&[(1, "y"), (2, "a"), (1, "z"), (2, "b")])
        );
        assert_eq!(
            drain(&mut prio),
            v(&[(1, "y"), (1, "z"), (2, "a"), (2, "b")])
        );
        assert!(prio.is_empty());
    }

    #[test]
    fn priority_ties_leave_in_insertion_order() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Debug)]
        struct Job(u8, u32);
        impl Ord for Job {
            fn cmp(&self, other: &Self) -> Ordering {
                self.0.cmp(&other.0) // by priority only
            }
        }
        impl PartialOrd for Job {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        let mut q = Items::Priority(new_heap::<Job>(()));
        for i in 0..100u32 {
            push(&mut q, Job((i % 3) as u8, i));
        }
        let out: Vec<Job> = std::iter::from_fn(|| pop(&mut q)).collect();
        let mut expect: Vec<Job> = (0..100u32).map(|i| Job((i % 3) as u8, i)).collect();
        expect.sort_by_key(|j| j.0); // stable: insertion order among ties
        assert_eq!(out, expect);
    }

    #[test]
    fn a_priority_queue_refuses_items_of_another_type() {
        let mut q = Items::Priority(new_heap::<String>(()));
        let e = q
            .push(codec::encode(&vec![0xffu8, 0xfe]).unwrap())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Serialization);
        assert!(q.is_empty());
    }
}
