//! A completed time's updates grouped by key, each group in a buffer kept for later times.
//!
//! The positions view sorted each time's updates whole (about 100 bytes each) so that a
//! symbol's came together: in a 1M-message replay that sort was 38% of the view's samples and
//! 9% of the workers' (`perf`, bench/RESULTS.md 2026-12-07). Grouped first, in one pass, each
//! symbol's updates are sorted on their own, a group small enough to stay in cache.

use std::hash::Hash;

use crate::stash::SHRINK_WHEN_USED_BELOW;
use crate::FastMap;

pub struct Groups<K, V> {
    /// This time's groups, in the order their keys first came.
    groups: Vec<(K, Vec<V>)>,
    /// Where each key's group is in `groups`.
    index: FastMap<K, usize>,
    /// Emptied buffers, at most as many as the last time had groups.
    spare: Vec<Vec<V>>,
}

impl<K, V> Default for Groups<K, V> {
    fn default() -> Self {
        Groups {
            groups: Vec::new(),
            index: FastMap::default(),
            spare: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Groups<K, V> {
    pub fn push(&mut self, key: K, value: V) {
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => {
                let at = self.groups.len();
                self.index.insert(key.clone(), at);
                let buffer = self.spare.pop().unwrap_or_default();
                self.groups.push((key, buffer));
                at
            }
        };
        self.groups[at].1.push(value);
    }

    /// Hands each group to `each`, in the order its key first came, and empties them all.
    /// `each` may drain the values or leave them.
    pub fn drain(&mut self, mut each: impl FnMut(K, &mut Vec<V>)) {
        self.index.clear();
        let groups = self.groups.len();
        for (key, mut values) in self.groups.drain(..) {
            let used = values.len();
            each(key, &mut values);
            values.clear();
            // As the stash keeps its buffers (see there).
            if used.saturating_mul(SHRINK_WHEN_USED_BELOW) >= values.capacity() {
                self.spare.push(values);
            }
        }
        self.spare.truncate(groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(groups: &mut Groups<&'static str, u32>) -> Vec<(&'static str, Vec<u32>)> {
        let mut out = Vec::new();
        groups.drain(|key, values| out.push((key, std::mem::take(values))));
        out
    }

    #[test]
    fn values_come_out_by_key_in_the_order_keys_first_came() {
        let mut groups = Groups::default();
        for (key, value) in [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)] {
            groups.push(key, value);
        }
        assert_eq!(
            drained(&mut groups),
            [("b", vec![1, 3]), ("a", vec![2, 5]), ("c", vec![4])]
        );
        assert_eq!(drained(&mut groups), [], "a drained time leaves nothing");
        groups.push("a", 6);
        assert_eq!(drained(&mut groups), [("a", vec![6])]);
    }

    #[test]
    fn buffers_are_kept_for_the_next_time_but_not_beyond_its_groups() {
        let mut groups: Groups<u32, u32> = Groups::default();
        for key in 0..100 {
            for value in 0..1000 {
                groups.push(key, value);
            }
        }
        groups.drain(|_, _| {});
        assert_eq!(groups.spare.len(), 100);
        assert!(groups.spare.iter().all(|b| b.capacity() >= 1000));
        // A small time reuses a big buffer, uses little of it and lets it go; it keeps no more
        // spare buffers than it had groups, and the next small time lets the last one go.
        groups.push(7, 1);
        groups.drain(|_, _| {});
        assert_eq!(groups.spare.len(), 1);
        groups.push(7, 1);
        groups.drain(|_, _| {});
        assert!(groups.spare.is_empty(), "{}", groups.spare.len());
    }
}
