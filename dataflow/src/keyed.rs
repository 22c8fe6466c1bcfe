//! A day's state per key, as the operators keyed by ExecID (the books, the live fills) hold it.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;

use hashbrown::hash_table::HashTable;

/// Keys and states lie in fixed-size chunks: a chunk never moves once made, so a growing day
/// copies nothing and holds at most one chunk's room unused. Small in tests, so that they
/// cross chunks.
const CHUNK: usize = if cfg!(test) { 64 } else { 4096 };

/// The keys of one worker's day, each numbered once, in the order they first came.
///
/// Operators on one worker that key the same records by the same exchange (the live fills and
/// the books, both by ExecID) share one: an ExecID is then held once, and found through one
/// table, however many operators hold a state for it. Each of them held its own copy of every
/// ExecID of the day, and its own table (41 bytes per fill with books on). Shared by `Rc`: the
/// operators of a worker run on its thread, one at a time, and each borrows the keys only
/// while it looks one up.
///
/// The table holds 8 bytes per key: 32 bits of the key's hash and the key's number. A key and
/// a pointer in the table (32 bytes) and the state boxed apart (with the allocator's header)
/// cost about 60 bytes more per ExecID than this: a hash table's room is up to twice its
/// entries just after it grows (a day of 4.5M fills per worker sits in 8M buckets). The table
/// grows without reading a key again: the 32 bits it holds make the hash it places the key by.
///
/// A key stays until the day ends, even when every state for it is gone again (a retraction):
/// ExecIDs come once and stay, and a number that never changes lets each operator hold its
/// states in a plain array.
pub(crate) struct DayKeys<K>(Rc<RefCell<KeyTable<K>>>);

impl<K> Clone for DayKeys<K> {
    fn clone(&self) -> Self {
        DayKeys(self.0.clone())
    }
}

impl<K> Default for DayKeys<K> {
    fn default() -> Self {
        DayKeys(Rc::new(RefCell::new(KeyTable {
            table: HashTable::new(),
            keys: Chunks::default(),
            hasher: foldhash::fast::RandomState::default(),
        })))
    }
}

struct KeyTable<K> {
    table: HashTable<(u32, u32)>,
    keys: Chunks<K>,
    /// foldhash, seeded per process: see [`crate::FastMap`] for why it is strong enough here.
    hasher: foldhash::fast::RandomState,
}

impl<K: Eq> KeyTable<K> {
    /// The number of `key`, whose kept hash is `hash`: the kept bits first, the key itself only
    /// where they agree.
    fn find(&self, hash: u32, key: &K) -> Option<u32> {
        let keys = &self.keys;
        self.table
            .find(placement(hash), |&(held_hash, at)| {
                held_hash == hash && keys.get(at) == Some(key)
            })
            .map(|&(_, at)| at)
    }

    /// Numbers `key`, which is not in the table yet.
    fn insert(&mut self, hash: u32, key: K) -> u32 {
        let at = self.keys.push(key);
        self.table
            .insert_unique(placement(hash), (hash, at), |&(held_hash, _)| {
                placement(held_hash)
            });
        at
    }
}

/// A state that is the same as no state: what a key has before its first update, and after
/// its last one is retracted.
pub(crate) trait Vacancy: Default {
    fn is_vacant(&self) -> bool;
}

/// Each key's state, found by the key: the key's number in [`DayKeys`] is where its state lies.
pub(crate) struct KeyedStates<K, S> {
    keys: DayKeys<K>,
    /// The keys' hasher, so that hashing a key does not borrow them.
    hasher: foldhash::fast::RandomState,
    /// By the key's number; vacant where this operator holds nothing for a key.
    states: Chunks<S>,
}

impl<K, S> Default for KeyedStates<K, S> {
    fn default() -> Self {
        KeyedStates::sharing(&DayKeys::default())
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

/// A key's place among the states: its state there, or room for one.
pub(crate) enum KeyedEntry<'a, K, S> {
    Occupied(Occupied<'a, S>),
    Vacant(Vacant<'a, K, S>),
}

pub(crate) struct Occupied<'a, S> {
    state: &'a mut S,
}

/// A key's state here goes when it becomes vacant (its updates add up to none): no removal.
impl<'a, S> Occupied<'a, S> {
    pub(crate) fn get_mut(&mut self) -> &mut S {
        self.state
    }

    pub(crate) fn into_mut(self) -> &'a mut S {
        self.state
    }
}

pub(crate) struct Vacant<'a, K, S> {
    keys: &'a DayKeys<K>,
    states: &'a mut Chunks<S>,
    hash: u32,
    /// The key's number, when the key is known already (to another operator, or from before
    /// its state here was retracted).
    at: Option<u32>,
}

impl<'a, K: Eq, S: Default> Vacant<'a, K, S> {
    pub(crate) fn insert(self, key: K, state: S) -> &'a mut S {
        let at = match self.at {
            Some(at) => at,
            None => self.keys.0.borrow_mut().insert(self.hash, key),
        };
        let slot = self.states.reach(at);
        *slot = state;
        slot
    }
}

impl<K, S> KeyedStates<K, S> {
    /// States numbered by `keys`, which other operators' states may share.
    pub(crate) fn sharing(keys: &DayKeys<K>) -> Self {
        let hasher = keys.0.borrow().hasher.clone();
        KeyedStates {
            keys: keys.clone(),
            hasher,
            states: Chunks::default(),
        }
    }
}

impl<K: Hash + Eq, S: Vacancy> KeyedStates<K, S> {
    pub(crate) fn entry(&mut self, key: &K) -> KeyedEntry<'_, K, S> {
        let hash = kept_bits(self.hash(key));
        let at = self.keys.0.borrow().find(hash, key);
        let held = at.filter(|&at| self.states.get(at).is_some_and(|state| !state.is_vacant()));
        if let Some(held) = held {
            match self.states.get_mut(held) {
                Some(state) => return KeyedEntry::Occupied(Occupied { state }),
                None => unreachable!("state {held} was just read"),
            }
        }
        KeyedEntry::Vacant(Vacant {
            keys: &self.keys,
            states: &mut self.states,
            hash,
            at,
        })
    }

    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&S> {
        let at = self.keys.0.borrow().find(kept_bits(self.hash(key)), key)?;
        self.states.get(at).filter(|state| !state.is_vacant())
    }

    pub(crate) fn get_or_insert(&mut self, key: K) -> &mut S {
        match self.entry(&key) {
            KeyedEntry::Occupied(entry) => entry.into_mut(),
            KeyedEntry::Vacant(entry) => entry.insert(key, S::default()),
        }
    }

    /// Calls `visit` with every key that has a state here, and its state.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&K, &S)) {
        let keys = self.keys.0.borrow();
        for (at, state) in self.states.iter().enumerate() {
            if state.is_vacant() {
                continue;
            }
            if let Some(key) = u32::try_from(at).ok().and_then(|at| keys.keys.get(at)) {
                visit(key, state);
            }
        }
    }
}

/// Items in chunks of [`CHUNK`], each found by its number.
struct Chunks<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks { chunks: Vec::new() }
    }
}

impl<T> Chunks<T> {
    fn get(&self, at: u32) -> Option<&T> {
        let at = at as usize;
        self.chunks.get(at / CHUNK)?.get(at % CHUNK)
    }

    fn get_mut(&mut self, at: u32) -> Option<&mut T> {
        let at = at as usize;
        self.chunks.get_mut(at / CHUNK)?.get_mut(at % CHUNK)
    }

    fn push(&mut self, item: T) -> u32 {
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let chunks = self.chunks.len();
        let last = &mut self.chunks[chunks - 1];
        last.push(item);
        let at = (chunks - 1) * CHUNK + last.len() - 1;
        // Each item is at least a key: 2^32 of them would not fit in memory.
        match u32::try_from(at) {
            Ok(at) => at,
            Err(_) => panic!("more than 2^32 keys on one worker"),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T: Default> Chunks<T> {
    /// The item numbered `at`, made (with every one before it) as a default if it is not yet.
    fn reach(&mut self, at: u32) -> &mut T {
        while self.get(at).is_none() {
            self.push(T::default());
        }
        match self.get_mut(at) {
            Some(item) => item,
            None => unreachable!("item {at} was just made"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Vacancy for u32 {
        fn is_vacant(&self) -> bool {
            *self == 0
        }
    }

    /// What a retraction does to a state: its updates add up to none.
    fn vacate<K: Hash + Eq>(states: &mut KeyedStates<K, u32>, key: &K) {
        if let KeyedEntry::Occupied(mut entry) = states.entry(key) {
            *entry.get_mut() = 0;
        }
    }

    fn held<K: Hash + Eq + Clone + Ord, S: Vacancy + Clone>(
        states: &KeyedStates<K, S>,
    ) -> Vec<(K, S)> {
        let mut held = Vec::new();
        states.for_each(|key, state| held.push((key.clone(), state.clone())));
        held.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        held
    }

    #[test]
    fn states_are_found_by_their_key() {
        let mut states = KeyedStates::<String, u32>::default();
        *states.get_or_insert("E1".to_owned()) += 2;
        *states.get_or_insert("E1".to_owned()) += 3;
        assert_eq!(states.get(&"E1".to_owned()), Some(&5));
        assert_eq!(states.get(&"E2".to_owned()), None);
        vacate(&mut states, &"E1".to_owned());
        assert!(held(&states).is_empty());
    }

    #[test]
    fn states_that_share_their_keys_hold_each_key_once_and_their_own_states() {
        let keys = DayKeys::<String>::default();
        let mut first = KeyedStates::<String, u32>::sharing(&keys);
        let mut second = KeyedStates::<String, u32>::sharing(&keys);
        *first.get_or_insert("E1".to_owned()) += 1;
        *second.get_or_insert("E1".to_owned()) += 7;
        *second.get_or_insert("E2".to_owned()) += 2;
        assert_eq!(keys.0.borrow().keys.iter().count(), 2, "each key held once");
        assert_eq!(held(&first), vec![("E1".to_owned(), 1)]);
        assert_eq!(
            held(&second),
            vec![("E1".to_owned(), 7), ("E2".to_owned(), 2)]
        );
        assert_eq!(
            first.get(&"E2".to_owned()),
            None,
            "the other's key, not a state here"
        );
        vacate(&mut second, &"E1".to_owned());
        assert_eq!(second.get(&"E1".to_owned()), None, "a vacant state is none");
        assert_eq!(
            first.get(&"E1".to_owned()),
            Some(&1),
            "a state vacated is the vacating operator's own"
        );
        *second.get_or_insert("E1".to_owned()) += 3;
        assert_eq!(
            second.get(&"E1".to_owned()),
            Some(&3),
            "a state starts again as new"
        );
        assert_eq!(keys.0.borrow().keys.iter().count(), 2);
    }

    proptest::proptest! {
        /// Whatever the inserts, updates and removals, across chunks and states vacated and
        /// made again, each of two operators' states that share their keys equal a map's.
        #[test]
        fn states_equal_a_map_s(
            ops in proptest::collection::vec((0u16..500, 0u8..3, 0usize..2), 0..2_000),
        ) {
            let keys = DayKeys::default();
            let mut states = [KeyedStates::<u16, u32>::sharing(&keys), KeyedStates::sharing(&keys)];
            let mut expected = [std::collections::HashMap::<u16, u32>::new(), Default::default()];
            for (key, op, which) in ops {
                let (states, expected) = (&mut states[which], &mut expected[which]);
                match op {
                    0 => {
                        vacate(states, &key);
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
            for (states, expected) in states.iter().zip(&expected) {
                let held = held(states);
                let mut want: Vec<(u16, u32)> = expected.iter().map(|(k, s)| (*k, *s)).collect();
                want.sort_unstable();
                proptest::prop_assert_eq!(&held, &want);
                for (key, state) in &want {
                    proptest::prop_assert_eq!(states.get(key), Some(state));
                }
            }
        }
    }
}
