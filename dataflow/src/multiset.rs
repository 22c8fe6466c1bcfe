//! Records with their multiplicities, for operators that keep a small set per key in a hash map
//! (the books, the live fills): one record, the common case, is held inline.

use crate::model::Diff;

/// Records with their multiplicities, kept sorted; almost always exactly one, held inline.
#[derive(Clone, Debug, Default)]
pub enum Multiset<T> {
    #[default]
    Empty,
    /// A pair, so that it is a one-element slice of what `Many` holds.
    One((T, Diff)),
    Many(Vec<(T, Diff)>),
}

impl<T: Ord> Multiset<T> {
    pub fn update(&mut self, value: T, diff: Diff) {
        match std::mem::take(self) {
            Multiset::Empty => *self = Multiset::One((value, diff)),
            Multiset::One((existing, count)) if existing == value => {
                if count + diff != 0 {
                    *self = Multiset::One((existing, count + diff));
                }
            }
            Multiset::One((existing, count)) => {
                let mut all = vec![(existing, count), (value, diff)];
                all.sort_unstable();
                *self = Multiset::Many(all);
            }
            Multiset::Many(mut all) => {
                match all.binary_search_by(|(existing, _)| existing.cmp(&value)) {
                    Ok(at) => {
                        all[at].1 += diff;
                        if all[at].1 == 0 {
                            all.remove(at);
                        }
                    }
                    Err(at) => all.insert(at, (value, diff)),
                }
                *self = match all.len() {
                    0 => Multiset::Empty,
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

    pub fn is_empty(&self) -> bool {
        matches!(self, Multiset::Empty)
    }

    /// Every record with its multiplicity, smallest first, without copying.
    pub fn as_slice(&self) -> &[(T, Diff)] {
        match self {
            Multiset::Empty => &[],
            Multiset::One(pair) => std::slice::from_ref(pair),
            Multiset::Many(all) => all,
        }
    }
}
