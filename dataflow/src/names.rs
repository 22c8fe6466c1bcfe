//! Per-worker numbers for the names held with every execution of the day.
//!
//! Trader, symbol and archive key repeat across millions of executions and there are a few
//! thousand of each: state held until the end of the day keeps a number, and the worker keeps
//! the text once.

use crate::model::Text;
use crate::multiset::Multiset;
use crate::FastMap;

/// A name held with every ExecID (its trader, its symbol, its archive segment), as a number
/// this worker gave it: a few thousand distinct names stand for millions of copies. Numbers
/// follow arrival, not the names' order, so choices by order compare the names themselves
/// ([`Names::smallest`]).
/// Never zero: the spare bit pattern lets a multiset of records with a name stay as small as
/// one record with its count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Name(std::num::NonZeroU32);

#[derive(Default)]
pub(crate) struct Names {
    numbers: FastMap<Text, Name>,
    texts: Vec<Text>,
}

impl Names {
    pub(crate) fn intern(&mut self, text: &Text) -> Name {
        if let Some(name) = self.numbers.get(text) {
            return *name;
        }
        // More distinct names than u32 holds would be four billion traders, symbols and
        // segments on one worker: a broken feed, and memory runs out long before.
        let number = u32::try_from(self.texts.len() + 1).unwrap_or(u32::MAX);
        let name = Name(std::num::NonZeroU32::MIN.saturating_add(number - 1));
        self.texts.push(text.clone());
        self.numbers.insert(text.clone(), name);
        name
    }

    pub(crate) fn text(&self, name: Name) -> &Text {
        // Every Name was made by `intern` of these very names.
        &self.texts[name.0.get() as usize - 1]
    }

    pub(crate) fn number(&self, text: &Text) -> Option<Name> {
        self.numbers.get(text).copied()
    }

    /// The smallest of `held` by `key`, which reads names as text: the winner among an
    /// ExecID's duplicates must not depend on the order the names arrived in.
    pub(crate) fn smallest<'a, T: Ord, K: Ord>(
        &'a self,
        held: &'a Multiset<T>,
        key: impl Fn(&'a T, &'a Names) -> K,
    ) -> Option<&'a T> {
        match held.as_slice() {
            [] => None,
            [(only, _)] => Some(only),
            all => all
                .iter()
                .map(|(value, _)| value)
                .min_by_key(|value| key(value, self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number_and_its_text() {
        let mut names = Names::default();
        let zed = names.intern(&"ZED".into());
        let abe = names.intern(&"ABE".into());
        assert_eq!(names.intern(&"ZED".into()), zed);
        assert_ne!(zed, abe);
        assert_eq!(names.text(abe).as_str(), "ABE");
        assert_eq!(names.number(&"ZED".into()), Some(zed));
        assert_eq!(names.number(&"NOBODY".into()), None);
    }

    /// Numbers follow arrival: "ZED" came first and has the smaller number, yet "ABE" is the
    /// smallest name.
    #[test]
    fn the_smallest_is_chosen_by_text_not_by_number() {
        let mut names = Names::default();
        let mut held = Multiset::default();
        held.update(names.intern(&"ZED".into()), 1);
        held.update(names.intern(&"ABE".into()), 1);
        let smallest = names.smallest(&held, |name, names| names.text(*name).clone());
        assert_eq!(smallest.map(|name| names.text(*name).as_str()), Some("ABE"));
    }
}
