//! The query-facing views and the store they are published to.
//!
//! Trace handles are worker-local, so the dataflow exports its view changes to one sink per
//! process, which applies them only once a time is complete at every worker. Readers take an
//! `Arc` of the last complete snapshot: every answer reflects exactly one set of input messages
//! and no lock is held across the dataflow. Beside each snapshot the store keeps the exact
//! changes that led to it, so followers (Redis, `/v1/stream`) write what changed without
//! comparing snapshots.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::marked_rows::PositionFigures;
use crate::marks::{Mark, MarkSource};
use crate::model::{Counter, Diff, Text, Time};
use crate::money::Money;
use crate::position_map::PositionMap;
use crate::FastMap;

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
            sum.add_row(row, 1);
        }
        sum.totals().unwrap_or_default()
    }
}

/// Running [`Totals`] over rows with multiplicities: every field is a plain sum, so a row
/// leaving is exactly undone by subtracting it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TotalsSum {
    positions: i64,
    marked: i64,
    trades: i128,
    realized: i128,
    unrealized: i128,
    total: i128,
}

impl TotalsSum {
    pub fn add_row(&mut self, row: &PositionView, diff: Diff) {
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

    /// Adds the row `figures` make at `mark` (as [`add_row`](Self::add_row) of that row would)
    /// without forming the row: most rows that leave the totals are replaced by their
    /// position's new one and go nowhere else.
    pub fn add_position(&mut self, figures: &PositionFigures, mark: Option<&Mark>, diff: Diff) {
        let wide = i128::from(diff as i64);
        self.positions += diff as i64;
        self.trades += i128::from(figures.trades) * wide;
        if let Some(mark) = mark {
            let total = figures.total_pnl(mark.price);
            self.marked += diff as i64;
            self.realized += figures.realized * wide;
            self.unrealized += (total - figures.realized) * wide;
            self.total += total * wide;
        }
    }

    /// The totals of the rows summed; `None` when there are none.
    pub fn totals(&self) -> Option<Totals> {
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
    /// A live run's times are microseconds of the Unix clock, a replay's its epoch numbers.
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
    /// Found by hash as each publish writes its rows; read in (trader, symbol) order.
    pub positions: PositionMap,
    pub traders: BTreeMap<Text, Totals>,
    pub firm: Option<Totals>,
    pub unmatched: BTreeSet<Unmatched>,
    pub accounting: Accounting,
}

impl ViewSnapshot {
    /// Applies the consolidated changes of one completed time. Insertions first, each
    /// replacing its key's row; a retraction then removes its key only if the row there is the
    /// retracted one (an updated row's new value is not, so the update is one write, not a
    /// removal and a re-insertion).
    pub fn apply(&mut self, changes: &[(ViewRecord, Diff)]) {
        for (record, diff) in changes {
            if *diff > 0 {
                self.insert(record, *diff);
            }
        }
        for (record, diff) in changes {
            if *diff < 0 {
                self.retract(record, *diff);
            }
        }
        self.as_of.messages = self.accounting.read;
    }

    /// Applies the changes of several completed times, each ending at its entry of
    /// `time_ends`, as [`apply`](Self::apply) on each time in turn would. In small epochs one
    /// publish carries a few dozen times and a position changes in most of them: its row is
    /// written to the map once, as the last of them left it, not once per time (each a B-tree
    /// search that compares text: 8% of the exporting worker's samples in 250-message
    /// epochs).
    pub fn apply_times(&mut self, changes: &[(ViewRecord, Diff)], time_ends: &[usize]) {
        if let [end] = time_ends {
            return self.apply(&changes[..*end]);
        }
        // Each position a time touched, as the times so far leave it (`None`: removed).
        let mut latest: FastMap<(&Text, &Text), Option<&PositionView>> = FastMap::default();
        let mut start = 0;
        for &end in time_ends {
            let time = &changes[start..end];
            start = end;
            for (record, diff) in time.iter().filter(|(_, diff)| *diff > 0) {
                match record {
                    ViewRecord::Position(row) => {
                        latest.insert((&row.trader, &row.symbol), Some(row));
                    }
                    other => self.insert(other, *diff),
                }
            }
            for (record, diff) in time.iter().filter(|(_, diff)| *diff < 0) {
                match record {
                    ViewRecord::Position(row) => {
                        let key = (&row.trader, &row.symbol);
                        let held = match latest.get(&key) {
                            Some(held) => *held,
                            None => self
                                .positions
                                .get(&(row.trader.clone(), row.symbol.clone())),
                        };
                        if held == Some(row) {
                            latest.insert(key, None);
                        }
                    }
                    other => self.retract(other, *diff),
                }
            }
        }
        for ((trader, symbol), row) in latest {
            let key = (trader.clone(), symbol.clone());
            match row {
                Some(row) => self.positions.insert(key, row.clone()),
                None => self.positions.remove(&key),
            };
        }
        self.as_of.messages = self.accounting.read;
    }

    fn insert(&mut self, record: &ViewRecord, diff: Diff) {
        match record {
            ViewRecord::Counter(counter) => self.accounting.add(counter, diff),
            ViewRecord::Position(row) => {
                self.positions
                    .insert((row.trader.clone(), row.symbol.clone()), row.clone());
            }
            ViewRecord::Trader(trader, totals) => {
                self.traders.insert(trader.clone(), totals.clone());
            }
            ViewRecord::Firm(totals) => self.firm = Some(totals.clone()),
            ViewRecord::Unmatched(unmatched) => {
                self.unmatched.insert(unmatched.clone());
            }
        }
    }

    fn retract(&mut self, record: &ViewRecord, diff: Diff) {
        match record {
            ViewRecord::Counter(counter) => self.accounting.add(counter, diff),
            ViewRecord::Position(row) => {
                let key = (row.trader.clone(), row.symbol.clone());
                self.positions.remove_if_held(&key, row);
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

/// What one publish changed: the consolidated changes of each time completed since the
/// previous publish, in time order (none when only the frontier moved). A position row that
/// a time updates usually comes as its new row alone, which replaces the key's row when
/// applied; a retraction is there when the row goes, and may be beside its replacement.
#[derive(Debug, Default)]
pub struct ViewDelta {
    /// The store version this delta leads to.
    pub version: u64,
    pub as_of: AsOf,
    /// Every time's changes, one after the other.
    pub changes: Vec<(ViewRecord, Diff)>,
    /// Where each time's changes end in `changes`.
    pub time_ends: Vec<usize>,
}

impl ViewDelta {
    /// Turns the snapshot this delta followed into the one it led to (`as_of` aside).
    pub fn apply_to(&self, snapshot: &mut ViewSnapshot) {
        snapshot.apply_times(&self.changes, &self.time_ends);
    }
}

/// The keys a run of deltas touched: a follower reads their values from the snapshot the
/// deltas lead to (a key it touched and the snapshot lacks was removed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub positions: BTreeSet<(Text, Text)>,
    pub traders: BTreeSet<Text>,
    pub firm: bool,
    pub unmatched: bool,
    pub accounting: bool,
}

impl Touched {
    pub fn of<'a>(deltas: impl IntoIterator<Item = &'a ViewDelta>) -> Touched {
        let mut touched = Touched::default();
        for delta in deltas {
            for (record, _) in &delta.changes {
                match record {
                    ViewRecord::Position(row) => {
                        touched
                            .positions
                            .insert((row.trader.clone(), row.symbol.clone()));
                    }
                    ViewRecord::Trader(trader, _) => {
                        touched.traders.insert(trader.clone());
                    }
                    ViewRecord::Firm(_) => touched.firm = true,
                    ViewRecord::Unmatched(_) => touched.unmatched = true,
                    ViewRecord::Counter(_) => touched.accounting = true,
                }
            }
        }
        touched
    }
}

/// What a follower that has seen version `seen` needs to catch up.
#[derive(Debug)]
pub struct ViewUpdate {
    pub version: u64,
    pub snapshot: Arc<ViewSnapshot>,
    /// The deltas from `seen` to `version`, oldest first; `None` when they are no longer all
    /// held (or never were: a snapshot published whole), and the follower must start over
    /// from `snapshot`.
    pub deltas: Option<Vec<Arc<ViewDelta>>>,
}

impl ViewUpdate {
    /// The keys the deltas touched; `None` when the follower must start over.
    pub fn touched(&self) -> Option<Touched> {
        let deltas = self.deltas.as_ref()?;
        Some(Touched::of(deltas.iter().map(|d| d.as_ref())))
    }
}

/// Deltas kept for followers: one that falls further behind than this starts over from the
/// snapshot (Redis resynchronises, a stream sends the whole view again). Fewer are kept when
/// their changes would outnumber the view's rows (plus `CHANGES_KEPT_MIN`): past that,
/// starting over costs no more than catching up, and memory stays proportional to the view.
pub const DELTAS_KEPT: usize = 1024;
pub const CHANGES_KEPT_MIN: usize = 4096;

#[derive(Debug, Default)]
struct Published {
    snapshot: Arc<ViewSnapshot>,
    version: u64,
    /// The last deltas, consecutive versions up to `version`.
    deltas: VecDeque<Arc<ViewDelta>>,
    /// Changes held in `deltas`.
    changes_kept: usize,
    /// Changes of every delta published so far: with the version, how many rows (and totals
    /// and counts) each snapshot changed on average, which is what small epochs pay for.
    changes_published: u64,
}

/// The latest published snapshot and the deltas that led to it, shared between the dataflow
/// sink and readers.
#[derive(Debug, Default)]
pub struct ViewStore {
    published: Mutex<Published>,
    changed: Condvar,
}

impl ViewStore {
    pub fn new() -> Arc<ViewStore> {
        Arc::new(ViewStore::default())
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last complete snapshot. Cheap: clones an `Arc`.
    pub fn snapshot(&self) -> Arc<ViewSnapshot> {
        self.published().snapshot.clone()
    }

    /// What a follower needs after `seen` (`None`: it holds nothing known yet, and starts
    /// from the current snapshot).
    pub fn follow(&self, seen: Option<u64>) -> ViewUpdate {
        match seen {
            Some(seen) => self.since(seen),
            None => {
                let published = self.published();
                ViewUpdate {
                    version: published.version,
                    snapshot: published.snapshot.clone(),
                    deltas: None,
                }
            }
        }
    }

    /// Number of snapshots published so far.
    pub fn version(&self) -> u64 {
        self.published().version
    }

    /// The changes (rows, totals, counts) of every delta published so far.
    pub fn changes_published(&self) -> u64 {
        self.published().changes_published
    }

    /// Publishes `snapshot`, reached from the previous one by `changes` (one time's); returns
    /// the delta as kept for followers.
    pub fn publish(
        &self,
        snapshot: impl Into<Arc<ViewSnapshot>>,
        changes: Vec<(ViewRecord, Diff)>,
    ) -> Arc<ViewDelta> {
        let time_ends = vec![changes.len()];
        self.publish_times(snapshot, changes, time_ends)
    }

    /// Publishes `snapshot`, reached from the previous one by the changes of several times,
    /// each ending at its entry of `time_ends`.
    pub fn publish_times(
        &self,
        snapshot: impl Into<Arc<ViewSnapshot>>,
        changes: Vec<(ViewRecord, Diff)>,
        time_ends: Vec<usize>,
    ) -> Arc<ViewDelta> {
        let snapshot = snapshot.into();
        let mut published = self.published();
        let version = published.version + 1;
        let delta = Arc::new(ViewDelta {
            version,
            as_of: snapshot.as_of.clone(),
            changes,
            time_ends,
        });
        published.changes_kept += delta.changes.len();
        published.changes_published += delta.changes.len() as u64;
        published.deltas.push_back(delta.clone());
        let budget = snapshot.positions.len() + snapshot.traders.len() + CHANGES_KEPT_MIN;
        while published.deltas.len() > DELTAS_KEPT
            || (published.deltas.len() > 1 && published.changes_kept > budget)
        {
            if let Some(dropped) = published.deltas.pop_front() {
                published.changes_kept -= dropped.changes.len();
            }
        }
        published.snapshot = snapshot;
        published.version = version;
        self.changed.notify_all();
        delta
    }

    /// Publishes a snapshot with no known relation to the previous one (tests, restores):
    /// every follower starts over from it.
    pub fn publish_whole(&self, snapshot: ViewSnapshot) {
        let mut published = self.published();
        published.deltas.clear();
        published.changes_kept = 0;
        published.snapshot = Arc::new(snapshot);
        published.version += 1;
        self.changed.notify_all();
    }

    /// The current snapshot and the deltas since version `seen` (version 0 is the empty view).
    pub fn since(&self, seen: u64) -> ViewUpdate {
        let published = self.published();
        let deltas = if seen == published.version {
            Some(Vec::new())
        } else if seen > published.version {
            None
        } else {
            match published.deltas.front() {
                Some(first) if seen + 1 >= first.version => Some(
                    published
                        .deltas
                        .iter()
                        .skip((seen + 1 - first.version) as usize)
                        .cloned()
                        .collect(),
                ),
                _ => None,
            }
        };
        ViewUpdate {
            version: published.version,
            snapshot: published.snapshot.clone(),
            deltas,
        }
    }

    /// Blocks until a snapshot newer than `seen` is published or `timeout` passes; returns the
    /// version now current.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.published();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |p| p.version <= seen)
            .unwrap_or_else(|p| p.into_inner());
        guard.version
    }
}

/// An unmarked position row, for this crate's tests.
#[cfg(test)]
pub(crate) fn unmarked_row(trader: &str, symbol: &str, qty: i128) -> PositionView {
    PositionView {
        trader: trader.into(),
        symbol: symbol.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trader: &str, qty: i128) -> PositionView {
        unmarked_row(trader, "X", qty)
    }

    #[test]
    fn update_replaces_row_whatever_the_order_of_changes() {
        let mut snapshot = ViewSnapshot::default();
        snapshot.apply(&[(ViewRecord::Position(row("T", 1)), 1)]);
        snapshot.apply(&[
            (ViewRecord::Position(row("T", 2)), 1),
            (ViewRecord::Position(row("T", 1)), -1),
        ]);
        assert_eq!(snapshot.positions.len(), 1);
        assert_eq!(snapshot.positions[&("T".into(), "X".into())].net_qty, 2);
    }

    proptest::proptest! {
        /// Several times applied at once leave the snapshot as applying them one by one does:
        /// rows inserted, updated, retracted (by their row or by a stale one), re-inserted.
        #[test]
        fn times_applied_at_once_equal_times_applied_in_turn(
            before in proptest::collection::vec((0..3usize, 0..3i128), 0..4),
            times in proptest::collection::vec(
                proptest::collection::vec((0..4usize, 0..3i128, proptest::bool::ANY), 0..6),
                0..6,
            ),
        ) {
            let record = |trader: usize, qty: i128| match trader {
                3 => {
                    let totals = Totals { trades: qty as u64, ..Totals::default() };
                    ViewRecord::Trader("T0".into(), totals)
                }
                _ => ViewRecord::Position(row(&format!("T{trader}"), qty)),
            };
            let mut in_turn = ViewSnapshot::default();
            let start: Vec<_> = before.iter().map(|&(t, q)| (record(t, q), 1)).collect();
            in_turn.apply(&start);
            let mut at_once = in_turn.clone();
            let mut changes = Vec::new();
            let mut time_ends = Vec::new();
            for time in &times {
                let from = changes.len();
                changes.extend(time.iter().map(|&(t, q, insert)| {
                    (record(t, q), if insert { 1 } else { -1 })
                }));
                in_turn.apply(&changes[from..]);
                time_ends.push(changes.len());
            }
            at_once.apply_times(&changes, &time_ends);
            proptest::prop_assert_eq!(at_once, in_turn);
        }
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
        store.publish(next, Vec::new());
        assert_eq!(store.wait_newer(0, Duration::from_millis(1)), 1);
        assert_eq!(store.snapshot().as_of.time, 7);
    }

    /// A follower gets exactly the deltas it has not seen, and starts over when they are gone.
    #[test]
    fn followers_get_the_deltas_they_missed_or_start_over() {
        let store = ViewStore::new();
        let mut snapshot = ViewSnapshot::default();
        let mut publish = |qty: i128| {
            let changes = vec![(ViewRecord::Position(row("T", qty)), 1)];
            snapshot.apply(&changes);
            store.publish(snapshot.clone(), changes);
        };
        publish(1);
        publish(2);
        publish(3);
        assert_eq!(
            store.since(0).deltas.unwrap().len(),
            3,
            "from the empty view"
        );
        let update = store.since(1);
        assert_eq!(update.version, 3);
        let versions: Vec<u64> = update.deltas.unwrap().iter().map(|d| d.version).collect();
        assert_eq!(versions, [2, 3]);
        assert_eq!(store.since(3).deltas.unwrap().len(), 0);
        for qty in 4..(DELTAS_KEPT as i128 + 5) {
            publish(qty);
        }
        assert!(store.since(1).deltas.is_none(), "fell behind what is kept");
        let recent = store.since(store.version() - 2).deltas.unwrap();
        assert_eq!(recent.len(), 2);
        // Deltas whose changes outnumber the view's rows are not all kept.
        let big: Vec<_> = (0..CHANGES_KEPT_MIN as isize)
            .map(|q| (ViewRecord::Counter(Counter::Read), q + 1))
            .collect();
        let before_big = store.version();
        store.publish(snapshot.clone(), big.clone());
        store.publish(snapshot.clone(), big);
        assert!(
            store.since(before_big).deltas.is_none(),
            "over the change budget"
        );
        assert_eq!(store.since(before_big + 1).deltas.unwrap().len(), 1);
        // Every change published counts, kept or not.
        let published = (DELTAS_KEPT + 4) as u64 + 2 * CHANGES_KEPT_MIN as u64;
        assert_eq!(store.changes_published(), published);
        store.publish_whole(ViewSnapshot::default());
        assert!(store.since(store.version() - 1).deltas.is_none());
        assert!(store.snapshot().positions.is_empty());
        assert!(store.since(u64::MAX).deltas.is_none());
        let start = store.follow(None);
        assert!(start.deltas.is_none() && start.touched().is_none());
        assert_eq!(start.version, store.version());
        assert!(store.follow(Some(store.version())).touched().unwrap() == Touched::default());
    }

    #[test]
    fn touched_names_every_key_a_delta_changed() {
        let delta = ViewDelta {
            version: 1,
            as_of: AsOf::default(),
            time_ends: vec![3],
            changes: vec![
                (ViewRecord::Position(row("T", 1)), -1),
                (ViewRecord::Trader("T".into(), Totals::default()), 1),
                (ViewRecord::Counter(Counter::Read), 3),
            ],
        };
        let touched = Touched::of([&delta]);
        assert_eq!(
            touched.positions,
            BTreeSet::from([("T".into(), "X".into())])
        );
        assert_eq!(touched.traders, BTreeSet::from(["T".into()]));
        assert!(touched.accounting && !touched.firm && !touched.unmatched);
    }
}
