//! Sorting updates by a small key first, moving each update once.
//!
//! The positions view sorts each symbol's updates of a time (72 bytes each) before it applies
//! them. `sort_unstable` moved them at every level of its partitioning, about a quarter of the
//! view's samples in a 1M-message replay (`perf`, bench/RESULTS.md 2026-12-07). Here the sort
//! moves 24-byte keys (the positions view's 16-byte key and a place), and each update moves
//! once more, to its place.

use std::cmp::Ordering;

/// Sorts `items` by `key`, and items of equal keys by `tie`. `keys` is scratch space an
/// operator keeps between calls.
///
/// The order is lexicographic over (`key`, `tie`), so it is total whenever `tie` is; when the
/// key is a prefix of `tie`'s order, it is `tie`'s order.
pub fn sort_by_key_then<T, K: Ord + Copy>(
    items: &mut [T],
    keys: &mut Vec<(K, usize)>,
    key: impl Fn(&T) -> K,
    tie: impl Fn(&T, &T) -> Ordering,
) {
    keys.clear();
    keys.extend(items.iter().enumerate().map(|(at, item)| (key(item), at)));
    keys.sort_unstable_by(|(key_a, a), (key_b, b)| {
        key_a.cmp(key_b).then_with(|| tie(&items[*a], &items[*b]))
    });
    permute(items, keys);
}

/// Puts `items[keys[j].1]` at `j` for every `j`, following each cycle of the permutation with
/// swaps. Marks each place it has filled by pointing its entry at itself.
fn permute<T, K>(items: &mut [T], keys: &mut [(K, usize)]) {
    for start in 0..keys.len() {
        let mut at = start;
        loop {
            let from = keys[at].1;
            keys[at].1 = at;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the key's share of the order, the result is the items sorted by the whole
        /// order, each once (each carries its first place, so a lost or doubled one shows).
        #[test]
        fn sorts_as_a_whole_sort_does(values in prop::collection::vec((0u8..6, any::<u16>()), 0..300)) {
            let mut items: Vec<(u8, u16, usize)> =
                values.iter().enumerate().map(|(at, (k, v))| (*k, *v, at)).collect();
            let mut expected = items.clone();
            expected.sort_unstable();
            let mut keys = Vec::new();
            sort_by_key_then(&mut items, &mut keys, |item| item.0, |a, b| a.cmp(b));
            prop_assert_eq!(items, expected);
        }
    }

    #[test]
    fn scratch_from_an_earlier_sort_does_not_leak_into_the_next() {
        let mut keys = Vec::new();
        let mut first = vec![5, 3, 9, 1, 7];
        sort_by_key_then(&mut first, &mut keys, |v| *v, |a, b| a.cmp(b));
        assert_eq!(first, [1, 3, 5, 7, 9]);
        let mut second = vec![2, 1];
        sort_by_key_then(&mut second, &mut keys, |v| *v, |a, b| a.cmp(b));
        assert_eq!(second, [1, 2]);
    }
}
