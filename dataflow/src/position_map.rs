//! The published positions, found by hash and read in (trader, symbol) order.
//!
//! Every publish writes each changed row into the next snapshot, and the snapshot recycler
//! writes it again into the one after: a live worker in small epochs does this for most of
//! its rows hundreds of times a second. In a `BTreeMap` each write was a search comparing
//! (trader, symbol) text some ten times (`ViewSnapshot::apply_times` 11.7% of a live worker's
//! samples, `memcmp` the most of it). Reads are rarer (a response, a follower's full sync,
//! the replay's output) and take the rows sorted, so every reader sees the order it saw
//! before; the serialized form is the sorted map's, byte for byte.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use crate::model::Text;
use crate::views::PositionView;
use crate::FastMap;

/// A position's key: (trader, symbol).
pub type PositionKey = (Text, Text);

/// The positions of a snapshot: hashed for writes, iterated in key order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PositionMap {
    rows: FastMap<PositionKey, PositionView>,
}

impl PositionMap {
    pub fn new() -> PositionMap {
        PositionMap::default()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, key: &PositionKey) -> Option<&PositionView> {
        self.rows.get(key)
    }

    pub fn get_mut(&mut self, key: &PositionKey) -> Option<&mut PositionView> {
        self.rows.get_mut(key)
    }

    pub fn contains_key(&self, key: &PositionKey) -> bool {
        self.rows.contains_key(key)
    }

    /// Sets the key's row; returns the row it replaced.
    pub fn insert(&mut self, key: PositionKey, row: PositionView) -> Option<PositionView> {
        self.rows.insert(key, row)
    }

    pub fn remove(&mut self, key: &PositionKey) -> Option<PositionView> {
        self.rows.remove(key)
    }

    /// Removes the key's row if it is `row`: an updated row's retraction leaves its new row.
    pub fn remove_if_held(&mut self, key: &PositionKey, row: &PositionView) {
        if self.rows.get(key) == Some(row) {
            self.rows.remove(key);
        }
    }

    /// Every (key, row), in key order.
    pub fn iter(&self) -> std::vec::IntoIter<(&PositionKey, &PositionView)> {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows.into_iter()
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &PositionKey> {
        self.iter().map(|(key, _)| key)
    }

    /// Every row, in key order.
    pub fn values(&self) -> impl Iterator<Item = &PositionView> {
        self.iter().map(|(_, row)| row)
    }

    /// Every row, owned, in key order.
    pub fn into_values(self) -> impl Iterator<Item = PositionView> {
        let mut rows: Vec<_> = self.rows.into_iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, row)| row)
    }

    /// Every row, to change in place, in no particular order (a row's key must not change).
    pub fn values_mut_unordered(&mut self) -> impl Iterator<Item = &mut PositionView> {
        self.rows.values_mut()
    }
}

impl std::ops::Index<&PositionKey> for PositionMap {
    type Output = PositionView;

    fn index(&self, key: &PositionKey) -> &PositionView {
        match self.rows.get(key) {
            Some(row) => row,
            None => panic!("no position {key:?}"),
        }
    }
}

impl<'a> IntoIterator for &'a PositionMap {
    type Item = (&'a PositionKey, &'a PositionView);
    type IntoIter = std::vec::IntoIter<(&'a PositionKey, &'a PositionView)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromIterator<(PositionKey, PositionView)> for PositionMap {
    fn from_iter<I: IntoIterator<Item = (PositionKey, PositionView)>>(rows: I) -> Self {
        PositionMap {
            rows: rows.into_iter().collect(),
        }
    }
}

/// The positions an oracle keeps in a sorted map, compared row by row.
impl PartialEq<BTreeMap<PositionKey, PositionView>> for PositionMap {
    fn eq(&self, sorted: &BTreeMap<PositionKey, PositionView>) -> bool {
        self.len() == sorted.len() && sorted.iter().all(|(key, row)| self.get(key) == Some(row))
    }
}

impl From<BTreeMap<PositionKey, PositionView>> for PositionMap {
    fn from(sorted: BTreeMap<PositionKey, PositionView>) -> Self {
        sorted.into_iter().collect()
    }
}

impl fmt::Debug for PositionMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PositionMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for PositionMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = FastMap::<PositionKey, PositionView>::deserialize(deserializer)?;
        Ok(PositionMap { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trader: &str, symbol: &str, qty: i128) -> PositionView {
        crate::views::unmarked_row(trader, symbol, qty)
    }

    /// Whatever order the rows went in, they come out, print and serialize as the sorted
    /// map's did.
    #[test]
    fn reads_in_key_order_and_serializes_as_the_sorted_map() {
        // Sixty keys inserted out of order: a hash map's order is theirs by chance only once
        // in 60! runs.
        let keys: Vec<(String, String)> = (0..60)
            .map(|n: usize| (format!("T{}", (n * 7) % 5), format!("S{}", (n * 13) % 12)))
            .collect();
        let mut map = PositionMap::new();
        let mut sorted = BTreeMap::new();
        for (n, (trader, symbol)) in keys.iter().enumerate() {
            let key: PositionKey = (trader.as_str().into(), symbol.as_str().into());
            map.insert(key.clone(), row(trader, symbol, n as i128));
            sorted.insert(key, row(trader, symbol, n as i128));
        }
        assert_eq!(map.len(), 60);
        assert!(map.keys().eq(sorted.keys()));
        assert!(map.values().eq(sorted.values()));
        assert!(map.clone().into_values().eq(sorted.values().cloned()));
        assert_eq!(format!("{map:?}"), format!("{sorted:?}"));
        assert_eq!(map, sorted);
        assert_eq!(PositionMap::from(sorted.clone()), map);
        let bytes = bincode::serialize(&map).unwrap();
        assert_eq!(bytes, bincode::serialize(&sorted).unwrap());
        let back: PositionMap = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, map);
        let key: PositionKey = ("T0".into(), "S0".into());
        map.remove_if_held(&key, &row("T0", "S0", 99));
        assert!(map.contains_key(&key));
        map.remove_if_held(&key, &row("T0", "S0", 0));
        assert!(!map.contains_key(&key));
    }
}
