//! Records with their multiplicities, for operators that keep a small set per key in a hash map
//! (the books, the live fills): one record, the common case, is held inline.

use crate::model::Diff;

/// A held record's multiplicity: never zero (a record whose count reaches zero is gone), and
/// that spare bit pattern is where the multiset tells its variants apart when the record has
/// none to spare (a fill whose own spare pattern marks its variant).
pub type Count = std::num::NonZeroIsize;

/// Records with their multiplicities, kept sorted; almost always exactly one, held inline.
///
/// Two variants, not three with an `Empty`: one spare bit pattern (the count's zero, or a
/// `NonZeroU32` in the record) then makes the whole multiset no larger than one record and its
/// count, which matters for what every ExecID of the day holds.
#[derive(Clone, Debug)]
pub enum Multiset<T> {
    /// A pair, so that it is a one-element slice of what `Many` holds.
    One((T, Count)),
    /// None (an empty vector, which does not allocate) or several.
    Many(Vec<(T, Count)>),
}

impl<T> Default for Multiset<T> {
    fn default() -> Self {
        Multiset::Many(Vec::new())
    }
}

impl<T> crate::keyed::Vacancy for Multiset<T> {
    fn is_vacant(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Multiset<T> {
    pub fn is_empty(&self) -> bool {
        matches!(self, Multiset::Many(all) if all.is_empty())
    }
}

impl<T: Ord> Multiset<T> {
    pub fn update(&mut self, value: T, diff: Diff) {
        let Some(diff) = Count::new(diff) else {
            return;
        };
        let added = |count: Count| Count::new(count.get() + diff.get());
        match std::mem::take(self) {
            Multiset::One((existing, count)) if existing == value => {
                if let Some(count) = added(count) {
                    *self = Multiset::One((existing, count));
                }
            }
            Multiset::One((existing, count)) => {
                let mut all = vec![(existing, count), (value, diff)];
                all.sort_unstable();
                *self = Multiset::Many(all);
            }
            Multiset::Many(all) if all.is_empty() => *self = Multiset::One((value, diff)),
            Multiset::Many(mut all) => {
                match all.binary_search_by(|(existing, _)| existing.cmp(&value)) {
                    Ok(at) => match added(all[at].1) {
                        Some(count) => all[at].1 = count,
                        None => {
                            all.remove(at);
                        }
                    },
                    Err(at) => all.insert(at, (value, diff)),
                }
                *self = match all.len() {
                    0 => Multiset::default(),
                    1 => {
                        let (value, count) = all.pop().expect("one element");
                        Multiset::One((value, count))
                    }
                    _ => Multiset::Many(all),
                };
            }
        }
    }

    /// The smallest record, as `reduce` would see it first.
    pub fn first(&self) -> Option<&T> {
        self.as_slice().first().map(|(value, _)| value)
    }

    /// Every record with its multiplicity, smallest first, without copying.
    pub fn as_slice(&self) -> &[(T, Count)] {
        match self {
            Multiset::One(pair) => std::slice::from_ref(pair),
            Multiset::Many(all) => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_and_go_with_their_counts() {
        let mut set = Multiset::default();
        assert!(set.is_empty());
        set.update("b", 1);
        set.update("a", 2);
        set.update("b", 1);
        let counts = |set: &Multiset<&'static str>| {
            let all = set.as_slice().iter();
            all.map(|&(value, count)| (value, count.get()))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&set), [("a", 2), ("b", 2)]);
        set.update("a", -2);
        assert!(matches!(set, Multiset::One(("b", count)) if count.get() == 2));
        set.update("b", 0);
        assert_eq!(counts(&set), [("b", 2)], "a zero changes nothing");
        set.update("b", -2);
        assert!(set.is_empty());
        // A retraction may come before its insertion.
        set.update("c", -1);
        assert_eq!(set.first(), Some(&"c"));
        set.update("c", 1);
        assert!(set.is_empty());
    }
}
