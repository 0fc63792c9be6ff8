//! Which objects may have a label: the keys of the `labels` and `record_labels` columns, held as
//! hashes, read once when the store opens and added to by every write of a label.
//!
//! Most objects of a store have no label (a broker's cross-matches name a few per cent), yet a
//! similarity search, a vote and a label spreading ask for the labels of every neighbour they
//! meet. Asking RocksDB costs a lookup in two column families per neighbour even when its Bloom
//! filters rule the key out (9.6% of a FindSimilar call at 1M objects, BENCHMARKS.md "W2 taken
//! apart"); asking this table costs a hash. A hash that is here says "maybe" (the object had a
//! label once, or shares a hash with one that has): the read then decides.

use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};

/// The hashes of every key written to a label column since the store was opened, and of every
/// key in one when it was.
#[derive(Default)]
pub(super) struct Labelled {
    hashes: RwLock<hashbrown::HashTable<u64>>,
    hasher: foldhash::fast::FixedState,
}

impl Labelled {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Marks keys as (maybe) labelled. Called before their labels are written, so that no
    /// reader skips a label the store holds; a write that then fails leaves the mark, which
    /// costs a read and never hides a label.
    pub(super) fn insert<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let hashes: Vec<u64> = keys.into_iter().map(|k| self.hash(k)).collect();
        if hashes.is_empty() {
            return;
        }
        let mut table = self.hashes.write().unwrap_or_else(PoisonError::into_inner);
        for h in hashes {
            if table.find(h, |&x| x == h).is_none() {
                table.insert_unique(h, h, |&x| x);
            }
        }
    }

    /// The positions in `keys` of those that may have a label, in order.
    pub(super) fn maybe(&self, keys: &[&[u8]]) -> Vec<usize> {
        let table = self.hashes.read().unwrap_or_else(PoisonError::into_inner);
        if table.is_empty() {
            return Vec::new();
        }
        keys.iter()
            .enumerate()
            .filter(|(_, k)| {
                let h = self.hash(k);
                table.find(h, |&x| x == h).is_some()
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Keys marked.
    pub(super) fn len(&self) -> usize {
        self.hashes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_key_is_maybe_and_an_unmarked_one_is_not() {
        let l = Labelled::default();
        assert!(l.maybe(&[b"a".as_slice()]).is_empty());
        l.insert([b"a".as_slice(), b"c".as_slice(), b"a".as_slice()]);
        assert_eq!(l.len(), 2);
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"c", b"", b"a"];
        assert_eq!(l.maybe(&keys), [0, 2, 4]);
    }
}
