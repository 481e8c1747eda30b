//! The manager's dict storage: a hash map that remembers insertion order,
//! like a Python dict.
//!
//! Entries live in a vector in insertion order; a hash table maps each key
//! to its slot. Replacing the value of a present key keeps its slot; removing
//! a key leaves a hole (a tombstone), so a later insert of the same key goes
//! to the end. Holes are squeezed out when they outnumber the live entries,
//! so every operation is O(1) amortized (Python's compact dict does the
//! same), where shifting the vector on every removal would be O(n).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::protocol::Bytes;

struct Entry {
    hash: u64,
    key: Bytes,
    value: Bytes,
}

/// An insertion-ordered map from encoded keys to encoded values.
pub(crate) struct OrderedMap {
    /// Slot indexes into `entries`, by the hash of their key.
    table: HashTable<usize>,
    /// Entries in insertion order; `None` is a removed entry's hole.
    entries: Vec<Option<Entry>>,
    live: usize,
    hasher: RandomState,
}

/// Holes tolerated before a compaction is considered.
const MIN_HOLES: usize = 16;

impl OrderedMap {
    pub(crate) fn new() -> OrderedMap {
        OrderedMap {
            table: HashTable::new(),
            entries: Vec::new(),
            live: 0,
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn slot(&self, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.table
            .find(self.hash(key), |&i| {
                entries[i].as_ref().is_some_and(|e| e.key == key)
            })
            .copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Bytes> {
        let i = self.slot(key)?;
        self.entries[i].as_ref().map(|e| &e.value)
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.slot(key).is_some()
    }

    /// Sets `key` to `value`: a present key keeps its place, a new one goes
    /// last. Returns the previous value.
    pub(crate) fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let hash = self.hash(&key);
        let entries = &mut self.entries;
        let found = self
            .table
            .find(hash, |&i| entries[i].as_ref().is_some_and(|e| e.key == key))
            .copied();
        if let Some(e) = found.and_then(|i| entries[i].as_mut()) {
            return Some(std::mem::replace(&mut e.value, value));
        }
        let i = entries.len();
        entries.push(Some(Entry { hash, key, value }));
        self.table
            .insert_unique(hash, i, |&j| entries[j].as_ref().map_or(0, |e| e.hash));
        self.live += 1;
        None
    }

    /// The value of `key`, inserting `value` last first if the key is absent
    /// (Python's `setdefault`).
    pub(crate) fn get_or_insert(&mut self, key: Bytes, value: Bytes) -> Bytes {
        if let Some(v) = self.get(&key) {
            return v.clone();
        }
        self.insert(key, value.clone());
        value
    }

    /// Removes `key`, returning its value; the others keep their order.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let hash = self.hash(key);
        let entries = &mut self.entries;
        let slot = self
            .table
            .find_entry(hash, |&i| entries[i].as_ref().is_some_and(|e| e.key == key))
            .ok()?;
        let (i, _) = slot.remove();
        let old = entries[i].take().map(|e| e.value);
        self.live -= 1;
        self.squeeze();
        old
    }

    /// Drops trailing holes, and compacts when holes outnumber entries.
    fn squeeze(&mut self) {
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
        }
        let holes = self.entries.len() - self.live;
        if holes < MIN_HOLES || holes <= self.live {
            return;
        }
        self.entries.retain(Option::is_some);
        self.table.clear();
        let entries = &self.entries;
        for (i, e) in entries.iter().enumerate() {
            if let Some(e) = e {
                self.table
                    .insert_unique(e.hash, i, |&j| entries[j].as_ref().map_or(0, |e| e.hash));
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.entries.clear();
        self.live = 0;
    }

    /// The entries in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.entries.iter().flatten().map(|e| (&e.key, &e.value))
    }
}

impl FromIterator<(Bytes, Bytes)> for OrderedMap {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(pairs: I) -> OrderedMap {
        let mut m = OrderedMap::new();
        m.extend(pairs);
        m
    }
}

impl Extend<(Bytes, Bytes)> for OrderedMap {
    fn extend<I: IntoIterator<Item = (Bytes, Bytes)>>(&mut self, pairs: I) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        s.as_bytes().to_vec()
    }

    fn keys(m: &OrderedMap) -> Vec<String> {
        m.iter()
            .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
            .collect()
    }

    #[test]
    fn insertion_order_like_a_python_dict() {
        let mut m: OrderedMap = [(b("b"), b("1")), (b("a"), b("2")), (b("b"), b("3"))]
            .into_iter()
            .collect();
        assert_eq!(keys(&m), ["b", "a"]);
        assert_eq!(m.get(b"b"), Some(&b("3")));
        // Re-inserting keeps the place; remove + insert moves to the end.
        assert_eq!(m.insert(b("b"), b("4")), Some(b("3")));
        assert_eq!(keys(&m), ["b", "a"]);
        m.insert(b("c"), b("5"));
        assert_eq!(m.remove(b"b"), Some(b("4")));
        assert_eq!(m.remove(b"b"), None);
        m.insert(b("b"), b("6"));
        assert_eq!(keys(&m), ["a", "c", "b"]);
        assert_eq!(m.get_or_insert(b("a"), b("x")), b("2"));
        assert_eq!(m.get_or_insert(b("d"), b("7")), b("7"));
        assert_eq!(keys(&m), ["a", "c", "b", "d"]);
        assert_eq!(m.len(), 4);
        assert!(m.contains_key(b"c"));
        m.clear();
        assert_eq!(m.len(), 0);
        assert!(!m.contains_key(b"c"));
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn holes_are_squeezed_out_and_order_survives() {
        let mut m = OrderedMap::new();
        let n = 10_000u32;
        for i in 0..n {
            m.insert(i.to_le_bytes().to_vec(), i.to_be_bytes().to_vec());
        }
        // Remove from the front, as a FIFO would: amortized O(1) each.
        for i in 0..n - 10 {
            assert_eq!(m.remove(&i.to_le_bytes()), Some(i.to_be_bytes().to_vec()));
            assert!(m.entries.len() <= 2 * m.live.max(MIN_HOLES) + 1);
        }
        let left: Vec<u32> = m
            .iter()
            .map(|(k, _)| u32::from_le_bytes(k[..].try_into().unwrap()))
            .collect();
        assert_eq!(left, (n - 10..n).collect::<Vec<_>>());
        for i in n - 10..n {
            assert_eq!(m.get(&i.to_le_bytes()), Some(&i.to_be_bytes().to_vec()));
        }
        // Trailing holes go at once.
        for i in (n - 10..n).rev() {
            m.remove(&i.to_le_bytes());
        }
        assert!(m.entries.is_empty());
        assert_eq!(m.len(), 0);
    }
}
