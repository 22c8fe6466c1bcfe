//! The query-facing views and the store they are published to.
//!
//! Trace handles are worker-local, so the dataflow exports its view changes to one sink per
//! process, which applies them only once a time is complete at every worker. Readers take an
//! `Arc` of the last complete snapshot: every answer reflects exactly one set of input messages
//! and no lock is held across the dataflow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::marks::MarkSource;
use crate::model::{Counter, Diff, Text, Time};
use crate::money::Money;
use crate::sum_operator::Accumulator;

/// One (trader, symbol) row of the positions view.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionView {
    pub trader: Text,
    pub symbol: Text,
    pub net_qty: i128,
    pub trades: u64,
    pub avg_cost: Option<Money>,
    pub mark: Option<Money>,
    pub mark_source: Option<MarkSource>,
    pub realized_pnl: Option<Money>,
    pub unrealized_pnl: Option<Money>,
    pub total_pnl: Option<Money>,
}

/// P&L summed over a set of positions. P&L sums cover the marked positions only; the
/// `unmarked_positions` count says how many were left out, and with none marked the sums are null.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Totals {
    pub positions: u64,
    pub unmarked_positions: u64,
    pub trades: u64,
    pub realized_pnl: Option<Money>,
    pub unrealized_pnl: Option<Money>,
    pub total_pnl: Option<Money>,
}

impl Totals {
    /// Sums rows; the same arithmetic as the dataflow's running totals.
    pub fn sum<'a>(rows: impl IntoIterator<Item = &'a PositionView>) -> Totals {
        let mut sum = TotalsSum::default();
        for row in rows {
            sum.add(row, 1);
        }
        sum.output().unwrap_or_default()
    }
}

/// Running [`Totals`] over rows with multiplicities: every field is a plain sum, so a row
/// leaving is exactly undone by subtracting it.
#[derive(Clone, Debug, Default)]
pub struct TotalsSum {
    positions: i64,
    marked: i64,
    trades: i128,
    realized: i128,
    unrealized: i128,
    total: i128,
}

impl Accumulator for TotalsSum {
    type Item = PositionView;
    type Output = Totals;

    fn add(&mut self, row: &PositionView, diff: Diff) {
        let diff = diff as i64;
        self.positions += diff;
        self.trades += i128::from(row.trades) * i128::from(diff);
        if let (Some(r), Some(u), Some(t)) = (row.realized_pnl, row.unrealized_pnl, row.total_pnl) {
            self.marked += diff;
            self.realized += r.0 * i128::from(diff);
            self.unrealized += u.0 * i128::from(diff);
            self.total += t.0 * i128::from(diff);
        }
    }

    fn output(&self) -> Option<Totals> {
        if self.positions <= 0 {
            return None;
        }
        let marked = self.marked > 0;
        Some(Totals {
            positions: self.positions as u64,
            unmarked_positions: (self.positions - self.marked).max(0) as u64,
            trades: self.trades.max(0) as u64,
            realized_pnl: marked.then_some(Money(self.realized)),
            unrealized_pnl: marked.then_some(Money(self.unrealized)),
            total_pnl: marked.then_some(Money(self.total)),
        })
    }
}

/// The firm's [`Totals`] as the sum of the traders' totals: the same sums as over every
/// position row (each trader's are over its rows), from one row per trader. A mark change
/// re-emits every position of its symbol; summed from the positions, the firm total read each
/// of them again.
#[derive(Clone, Debug, Default)]
pub struct FirmSum(TotalsSum);

impl Accumulator for FirmSum {
    type Item = Totals;
    type Output = Totals;

    fn add(&mut self, trader: &Totals, diff: Diff) {
        let (sum, diff) = (&mut self.0, diff as i64);
        let positions = trader.positions as i64;
        sum.positions += positions * diff;
        sum.marked += (positions - trader.unmarked_positions as i64) * diff;
        sum.trades += i128::from(trader.trades) * i128::from(diff);
        let add = |total: &mut i128, value: Option<Money>| {
            *total += value.map_or(0, |m| m.0) * i128::from(diff);
        };
        add(&mut sum.realized, trader.realized_pnl);
        add(&mut sum.unrealized, trader.unrealized_pnl);
        add(&mut sum.total, trader.total_pnl);
    }

    fn output(&self) -> Option<Totals> {
        self.0.output()
    }
}

/// A bust or correction whose target execution has not arrived.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unmatched {
    /// "bust" or "correction".
    pub kind: Text,
    pub exec_id: Text,
    pub target: Text,
}

/// Every change the dataflow exports to the query side.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ViewRecord {
    Position(PositionView),
    Trader(Text, Totals),
    Firm(Totals),
    Unmatched(Unmatched),
    /// Diff carries the count.
    Counter(Counter),
}

/// Which input a snapshot reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsOf {
    /// Every dataflow time strictly below this is reflected (the frontier when published).
    pub time: Time,
    /// Input messages reflected (processed + skipped + dead-lettered).
    pub messages: u64,
    /// True once every input has closed: the snapshot is final.
    pub complete: bool,
}

/// Per-outcome message counts reflected by a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub read: u64,
    pub fills: u64,
    pub busts: u64,
    pub corrections: u64,
    pub skipped: u64,
    pub dead_letters: BTreeMap<Text, u64>,
    pub prices: u64,
    /// Messages in the raw input, counted apart from the framer (where the input is FIX bytes).
    #[serde(default)]
    pub messages_in_input: u64,
    /// Framed units that start a message; must equal `messages_in_input`.
    #[serde(default)]
    pub messages_framed: u64,
}

impl Accounting {
    pub fn dead_lettered(&self) -> u64 {
        self.dead_letters.values().sum()
    }

    /// processed + skipped + dead-lettered.
    pub fn accounted(&self) -> u64 {
        self.fills + self.busts + self.corrections + self.skipped + self.dead_lettered()
    }

    /// Every unit read has one outcome, and the framer's units start exactly the messages an
    /// independent count finds in the raw input (so merged messages cannot pass as accounted).
    pub fn all_accounted(&self) -> bool {
        self.accounted() == self.read && self.messages_framed == self.messages_in_input
    }

    fn add(&mut self, counter: &Counter, diff: Diff) {
        let slot = match counter {
            Counter::Read => &mut self.read,
            Counter::Fills => &mut self.fills,
            Counter::Busts => &mut self.busts,
            Counter::Corrections => &mut self.corrections,
            Counter::Skipped => &mut self.skipped,
            Counter::Prices => &mut self.prices,
            Counter::MessagesInInput => &mut self.messages_in_input,
            Counter::MessagesFramed => &mut self.messages_framed,
            Counter::DeadLetter(reason) => self.dead_letters.entry(reason.clone()).or_default(),
        };
        *slot = slot.saturating_add_signed(diff as i64);
    }
}

/// A complete, consistent state of every view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewSnapshot {
    pub as_of: AsOf,
    pub positions: BTreeMap<(Text, Text), PositionView>,
    pub traders: BTreeMap<Text, Totals>,
    pub firm: Option<Totals>,
    pub unmatched: BTreeSet<Unmatched>,
    pub accounting: Accounting,
}

impl ViewSnapshot {
    /// Applies (and empties) the consolidated changes of one completed time: retractions
    /// first, so that an updated row's old value never removes its new one.
    pub fn apply(&mut self, changes: &mut Vec<(ViewRecord, Diff)>) {
        for (record, diff) in changes.iter() {
            if *diff < 0 {
                self.retract(record, *diff);
            }
        }
        for (record, diff) in changes.drain(..) {
            if diff > 0 {
                self.insert(record, diff);
            }
        }
        self.as_of.messages = self.accounting.read;
    }

    fn insert(&mut self, record: ViewRecord, diff: Diff) {
        match record {
            ViewRecord::Counter(counter) => self.accounting.add(&counter, diff),
            ViewRecord::Position(row) => {
                self.positions
                    .insert((row.trader.clone(), row.symbol.clone()), row);
            }
            ViewRecord::Trader(trader, totals) => {
                self.traders.insert(trader, totals);
            }
            ViewRecord::Firm(totals) => self.firm = Some(totals),
            ViewRecord::Unmatched(unmatched) => {
                self.unmatched.insert(unmatched);
            }
        }
    }

    fn retract(&mut self, record: &ViewRecord, diff: Diff) {
        match record {
            ViewRecord::Counter(counter) => self.accounting.add(counter, diff),
            ViewRecord::Position(row) => {
                let key = (row.trader.clone(), row.symbol.clone());
                if self.positions.get(&key) == Some(row) {
                    self.positions.remove(&key);
                }
            }
            ViewRecord::Trader(trader, totals) => {
                if self.traders.get(trader) == Some(totals) {
                    self.traders.remove(trader);
                }
            }
            ViewRecord::Firm(totals) => {
                if self.firm.as_ref() == Some(totals) {
                    self.firm = None;
                }
            }
            ViewRecord::Unmatched(unmatched) => {
                self.unmatched.remove(unmatched);
            }
        }
    }
}

/// The latest published snapshot, shared between the dataflow sink and readers.
#[derive(Debug, Default)]
pub struct ViewStore {
    current: RwLock<Arc<ViewSnapshot>>,
    version: Mutex<u64>,
    changed: Condvar,
}

impl ViewStore {
    pub fn new() -> Arc<ViewStore> {
        Arc::new(ViewStore::default())
    }

    /// The last complete snapshot. Cheap: clones an `Arc`.
    pub fn snapshot(&self) -> Arc<ViewSnapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Number of snapshots published so far.
    pub fn version(&self) -> u64 {
        *self.version.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn publish(&self, snapshot: ViewSnapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        let mut version = self.version.lock().unwrap_or_else(|p| p.into_inner());
        *version += 1;
        self.changed.notify_all();
    }

    /// Blocks until a snapshot newer than `seen` is published or `timeout` passes; returns the
    /// version now current.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.version.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |v| *v <= seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trader: &str, qty: i128) -> PositionView {
        PositionView {
            trader: trader.into(),
            symbol: "X".into(),
            net_qty: qty,
            trades: 1,
            avg_cost: None,
            mark: None,
            mark_source: None,
            realized_pnl: None,
            unrealized_pnl: None,
            total_pnl: None,
        }
    }

    #[test]
    fn update_replaces_row_whatever_the_order_of_changes() {
        let mut snapshot = ViewSnapshot::default();
        snapshot.apply(&mut vec![(ViewRecord::Position(row("T", 1)), 1)]);
        snapshot.apply(&mut vec![
            (ViewRecord::Position(row("T", 2)), 1),
            (ViewRecord::Position(row("T", 1)), -1),
        ]);
        assert_eq!(snapshot.positions.len(), 1);
        assert_eq!(snapshot.positions[&("T".into(), "X".into())].net_qty, 2);
    }

    #[test]
    fn totals_leave_out_unmarked_rows_and_say_so() {
        let mut marked = row("T", 5);
        marked.realized_pnl = Some(Money(1));
        marked.unrealized_pnl = Some(Money(2));
        marked.total_pnl = Some(Money(3));
        let totals = Totals::sum([&marked, &row("T", 1)]);
        assert_eq!(totals.positions, 2);
        assert_eq!(totals.unmarked_positions, 1);
        assert_eq!(totals.total_pnl, Some(Money(3)));
        assert_eq!(Totals::sum([&row("T", 1)]).total_pnl, None);
    }

    #[test]
    fn store_publishes_and_wakes_waiters() {
        let store = ViewStore::new();
        assert_eq!(store.version(), 0);
        let mut next = ViewSnapshot::default();
        next.as_of.time = 7;
        store.publish(next);
        assert_eq!(store.wait_newer(0, Duration::from_millis(1)), 1);
        assert_eq!(store.snapshot().as_of.time, 7);
    }
}
