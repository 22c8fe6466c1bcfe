//! A day's state per key, as the operators keyed by ExecID (the books, the live fills) hold it.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::{Entry, HashTable};

/// Each key's state, found by the key. Boxed: the table then moves a key and a pointer per
/// entry when it grows, not whole states, and its empty slots (up to half of them just after
/// growing) cost as much, not a state's size. Held unboxed, the books' two tables were 0.9 GB
/// at the peak of a 1M-fill replay.
///
/// A table found by a hash of the caller's key where it lies, not a map: a map's `entry` takes
/// its key by value, and the books moved each ExecID out of its sorted vector just before the
/// map hashed it. The hash's load of the moved bytes then waited, most likely for the move's
/// stores to reach the cache behind an insert's store to a random slot: 177 `perf` samples of
/// a 1M replay's workers on one instruction of the hash, against 20 with the ExecID hashed in
/// place.
pub(crate) struct KeyedStates<K, S> {
    table: HashTable<(K, Box<S>)>,
    /// foldhash, seeded per process: see [`crate::FastMap`] for why it is strong enough here.
    hasher: foldhash::fast::RandomState,
}

impl<K, S> Default for KeyedStates<K, S> {
    fn default() -> Self {
        KeyedStates {
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Hash + Eq, S> KeyedStates<K, S> {
    pub(crate) fn entry(&mut self, key: &K) -> Entry<'_, (K, Box<S>)> {
        self.entry_hashed(self.hash(key), key)
    }

    /// The hash [`Self::entry_hashed`] takes: a caller that moves its key just before looking
    /// it up takes the hash where the key lay before.
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// [`Self::entry`] for a key whose [`Self::hash`] is `hash`.
    pub(crate) fn entry_hashed(&mut self, hash: u64, key: &K) -> Entry<'_, (K, Box<S>)> {
        let hasher = &self.hasher;
        debug_assert_eq!(hash, hasher.hash_one(key), "a hash of another key");
        self.table.entry(
            hash,
            |(held, _)| held == key,
            |(held, _)| hasher.hash_one(held),
        )
    }

    pub(crate) fn get(&self, key: &K) -> Option<&S> {
        let hash = self.hasher.hash_one(key);
        let (_, state) = self.table.find(hash, |(held, _)| held == key)?;
        Some(state)
    }

    pub(crate) fn get_or_insert(&mut self, key: K) -> &mut S
    where
        S: Default,
    {
        let (_, state) = self
            .entry(&key)
            .or_insert_with(|| (key, Box::default()))
            .into_mut();
        state
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Entry::Occupied(entry) = self.entry(key) {
            entry.remove();
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &S)> {
        self.table.iter().map(|(key, state)| (key, &**state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_found_by_their_key() {
        let mut states = KeyedStates::<String, u32>::default();
        *states.get_or_insert("E1".to_owned()) += 2;
        *states.get_or_insert("E1".to_owned()) += 3;
        assert_eq!(states.get(&"E1".to_owned()), Some(&5));
        assert_eq!(states.get(&"E2".to_owned()), None);
        states.remove(&"E1".to_owned());
        assert_eq!(states.iter().count(), 0);
    }
}
