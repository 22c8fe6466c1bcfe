//! A day's state per key, as the operators keyed by ExecID (the books, the live fills) hold it.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::{self, HashTable};

/// Keys and states lie in fixed-size chunks: a chunk never moves once made, so a growing day
/// copies nothing and holds at most one chunk's room unused. Small in tests, so that they
/// cross chunks.
const CHUNK: usize = if cfg!(test) { 64 } else { 4096 };

/// Each key's state, found by the key.
///
/// The table holds 8 bytes per key: 32 bits of the key's hash and where the key and its state
/// lie (in [`Slots`]). Every ExecID of the day has an entry in two such tables (the live fills'
/// and the books'), and a hash table's room is up to twice its entries just after it grows (a
/// day of 4.5M fills per worker sits in 8M buckets): a key and a pointer in the table (32
/// bytes) and the state boxed apart (with the allocator's header) cost about 60 bytes more per
/// ExecID and table than this. The table grows without reading a key again: the 32 bits it
/// holds make the hash it places the key by.
///
/// A table found by a hash of the caller's key where it lies, not a map: a map's `entry` takes
/// its key by value, and the books moved each ExecID out of its sorted vector just before the
/// map hashed it. The hash's load of the moved bytes then waited, most likely for the move's
/// stores to reach the cache behind an insert's store to a random slot: 177 `perf` samples of
/// a 1M replay's workers on one instruction of the hash, against 20 with the ExecID hashed in
/// place.
pub(crate) struct KeyedStates<K, S> {
    table: HashTable<(u32, u32)>,
    slots: Slots<(K, S)>,
    /// foldhash, seeded per process: see [`crate::FastMap`] for why it is strong enough here.
    hasher: foldhash::fast::RandomState,
}

impl<K, S> Default for KeyedStates<K, S> {
    fn default() -> Self {
        KeyedStates {
            table: HashTable::new(),
            slots: Slots::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// The 32 bits of a key's hash the table keeps.
fn kept_bits(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The table's 64-bit hash, from the 32 bits it keeps: the multiplication spreads them over
/// the low bits (the bucket) and the high ones (the tag hashbrown compares first).
fn placement(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A key's place in the table: its state there, or room for one.
pub(crate) enum KeyedEntry<'a, K, S> {
    Occupied(Occupied<'a, K, S>),
    Vacant(Vacant<'a, K, S>),
}

pub(crate) struct Occupied<'a, K, S> {
    entry: hash_table::OccupiedEntry<'a, (u32, u32)>,
    slots: &'a mut Slots<(K, S)>,
}

impl<'a, K, S> Occupied<'a, K, S> {
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.slots.get_mut(self.entry.get().1).1
    }

    pub(crate) fn into_mut(self) -> &'a mut S {
        let at = self.entry.get().1;
        &mut self.slots.get_mut(at).1
    }

    pub(crate) fn remove(self) {
        let ((_, at), _) = self.entry.remove();
        self.slots.remove(at);
    }
}

pub(crate) struct Vacant<'a, K, S> {
    entry: hash_table::VacantEntry<'a, (u32, u32)>,
    slots: &'a mut Slots<(K, S)>,
    hash: u32,
}

impl<'a, K, S> Vacant<'a, K, S> {
    pub(crate) fn insert(self, key: K, state: S) -> &'a mut S {
        let at = self.slots.insert((key, state));
        self.entry.insert((self.hash, at));
        &mut self.slots.get_mut(at).1
    }
}

impl<K: Hash + Eq, S> KeyedStates<K, S> {
    pub(crate) fn entry(&mut self, key: &K) -> KeyedEntry<'_, K, S> {
        self.entry_hashed(self.hash(key), key)
    }

    /// The hash [`Self::entry_hashed`] takes: a caller that moves its key just before looking
    /// it up takes the hash where the key lay before.
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// [`Self::entry`] for a key whose [`Self::hash`] is `hash`.
    pub(crate) fn entry_hashed(&mut self, hash: u64, key: &K) -> KeyedEntry<'_, K, S> {
        debug_assert_eq!(hash, self.hasher.hash_one(key), "a hash of another key");
        let hash = kept_bits(hash);
        let found = self.table.entry(
            placement(hash),
            holds(&self.slots, hash, key),
            |&(held_hash, _)| placement(held_hash),
        );
        match found {
            hash_table::Entry::Occupied(entry) => KeyedEntry::Occupied(Occupied {
                entry,
                slots: &mut self.slots,
            }),
            hash_table::Entry::Vacant(entry) => KeyedEntry::Vacant(Vacant {
                entry,
                slots: &mut self.slots,
                hash,
            }),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&S> {
        let hash = kept_bits(self.hash(key));
        let &(_, at) = self
            .table
            .find(placement(hash), holds(&self.slots, hash, key))?;
        Some(&self.slots.get(at).1)
    }

    pub(crate) fn get_or_insert(&mut self, key: K) -> &mut S
    where
        S: Default,
    {
        match self.entry(&key) {
            KeyedEntry::Occupied(entry) => entry.into_mut(),
            KeyedEntry::Vacant(entry) => entry.insert(key, S::default()),
        }
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let KeyedEntry::Occupied(entry) = self.entry(key) {
            entry.remove();
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &S)> {
        self.slots.iter().map(|(key, state)| (key, state))
    }
}

/// Whether a table entry is `key`'s, whose kept hash is `hash`: the kept bits first, the key
/// itself only where they agree.
fn holds<'a, K: Eq, S>(
    slots: &'a Slots<(K, S)>,
    hash: u32,
    key: &'a K,
) -> impl Fn(&(u32, u32)) -> bool + 'a {
    move |&(held_hash, at)| held_hash == hash && slots.get(at).0 == *key
}

/// Items in chunks of [`CHUNK`], each found by its number; a removed item's number is given to
/// the next item.
struct Slots<T> {
    chunks: Vec<Vec<Option<T>>>,
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    fn slot(&self, at: u32) -> Option<&T> {
        let at = at as usize;
        self.chunks.get(at / CHUNK)?.get(at % CHUNK)?.as_ref()
    }

    /// The slot numbered `at`, empty or not; `None` past the last one made.
    fn slot_mut(&mut self, at: u32) -> Option<&mut Option<T>> {
        let at = at as usize;
        self.chunks.get_mut(at / CHUNK)?.get_mut(at % CHUNK)
    }

    /// The item numbered `at`, which the table holds: an entry without its item is a bug here.
    fn get(&self, at: u32) -> &T {
        match self.slot(at) {
            Some(item) => item,
            None => unreachable!("a table entry's slot {at} is empty"),
        }
    }

    fn get_mut(&mut self, at: u32) -> &mut T {
        match self.slot_mut(at).and_then(Option::as_mut) {
            Some(item) => item,
            None => unreachable!("a table entry's slot {at} is empty"),
        }
    }

    fn insert(&mut self, item: T) -> u32 {
        if let Some(at) = self.free.pop() {
            if let Some(slot) = self.slot_mut(at) {
                *slot = Some(item);
                return at;
            }
            unreachable!("a freed slot {at} past the last one made");
        }
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let chunks = self.chunks.len();
        let last = &mut self.chunks[chunks - 1];
        last.push(Some(item));
        let at = (chunks - 1) * CHUNK + last.len() - 1;
        // Each item is at least a key and a state: 2^32 of them would not fit in memory.
        match u32::try_from(at) {
            Ok(at) => at,
            Err(_) => panic!("more than 2^32 keys on one worker"),
        }
    }

    fn remove(&mut self, at: u32) {
        if self.slot_mut(at).and_then(Option::take).is_some() {
            self.free.push(at);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten().flatten()
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

    proptest::proptest! {
        /// Whatever the inserts, updates and removals, across chunks and reused slots, the
        /// states equal a map's.
        #[test]
        fn states_equal_a_map_s(ops in proptest::collection::vec((0u16..500, 0u8..3), 0..2_000)) {
            let mut states = KeyedStates::<u16, u32>::default();
            let mut expected = std::collections::HashMap::<u16, u32>::new();
            for (key, op) in ops {
                match op {
                    0 => {
                        states.remove(&key);
                        expected.remove(&key);
                    }
                    _ => {
                        match states.entry(&key) {
                            KeyedEntry::Occupied(mut entry) => *entry.get_mut() += 1,
                            KeyedEntry::Vacant(entry) => {
                                entry.insert(key, 1);
                            }
                        }
                        *expected.entry(key).or_default() += 1;
                    }
                }
            }
            let mut held: Vec<(u16, u32)> = states.iter().map(|(k, s)| (*k, *s)).collect();
            held.sort_unstable();
            let mut want: Vec<(u16, u32)> = expected.iter().map(|(k, s)| (*k, *s)).collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(&held, &want);
            for (key, state) in &want {
                proptest::prop_assert_eq!(states.get(key), Some(state));
            }
        }
    }
}
