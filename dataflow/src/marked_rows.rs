//! The positions view's rows and the totals, formed where the views are published.
//!
//! A row's P&L depends on its symbol's mark (total = cash + net_qty x mark), and in a live day
//! the mark is most often the last traded price, which moves in nearly every epoch that trades
//! the symbol. Formed in the positions view, each such move re-formed the row of every holder
//! of the symbol, and its change to its trader's and the firm's totals, in every epoch: work
//! proportional to the symbol's holders rather than to the epoch's trades. The positions view
//! now sends what changed and nothing else: a holder's [`PositionFigures`] (which do not depend
//! on the mark) when its executions changed them, and a symbol's mark when it moved. The
//! export applies the times a publish completes to the state here, in time order, and only
//! then forms the rows: each touched holder's and each holder's of a re-marked symbol, once per
//! publish (a publish carries every time completed since the one before: a few dozen of
//! 250-message epochs), with the traders' and the firm's totals beside them.

use serde::{Deserialize, Serialize};

use crate::marks::Mark;
use crate::model::{Counter, Diff, Text};
use crate::money::Money;
use crate::position::PositionCore;
use crate::views::{PositionView, Totals, TotalsSum, Unmatched, ViewRecord};
use crate::FastMap;

/// Everything a position's row shows that does not depend on the mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionFigures {
    pub net_qty: i128,
    pub trades: u64,
    /// Sum of -signed qty x price, 10^-8.
    pub cash: i128,
    /// Realised P&L by the average-cost method, 10^-8.
    pub realized: i128,
    /// Average cost of the open position (10^-8); `None` when flat.
    pub avg_cost: Option<i128>,
}

impl PositionFigures {
    pub fn of(core: &PositionCore) -> PositionFigures {
        PositionFigures {
            net_qty: core.net_qty,
            trades: core.trades,
            cash: core.cash,
            realized: core.realized,
            avg_cost: core.avg_cost,
        }
    }

    /// Total P&L at `mark_price` (10^-8): the cash paid and received plus the open quantity's
    /// value at the mark. Unrealised P&L is this less `realized`.
    pub fn total_pnl(&self, mark_price: i64) -> i128 {
        self.cash + self.net_qty * i128::from(mark_price)
    }
}

/// One row of the positions view: `total = cash + net_qty x mark`, `unrealized = total - realized`.
pub fn position_view(
    trader: &str,
    symbol: &str,
    figures: &PositionFigures,
    mark: Option<&Mark>,
) -> PositionView {
    let total = mark.map(|m| figures.total_pnl(m.price));
    PositionView {
        trader: trader.into(),
        symbol: symbol.into(),
        net_qty: figures.net_qty,
        trades: figures.trades,
        avg_cost: figures.avg_cost.map(Money),
        mark: mark.map(|m| Money(i128::from(m.price))),
        mark_source: mark.map(|m| m.source),
        realized_pnl: total.map(|_| Money(figures.realized)),
        unrealized_pnl: total.map(|t| Money(t - figures.realized)),
        total_pnl: total.map(Money),
    }
}

/// What the dataflow sends the export. Positions and marks are updates in the order they were
/// made (each with diff 1): a key's last one in a time is its value. The rest are view records
/// as published, each a variant of its own rather than a [`ViewRecord`], whose rows and totals
/// would make every record as large as a row: in small epochs a position's 270 bytes, copied
/// through the route, the exchange and the export's buffers, were a quarter of the export's
/// samples (`perf`, 250-message epochs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ExportRecord {
    /// A holder's figures, or `None` when its position went.
    Position {
        trader: Text,
        symbol: Text,
        figures: Option<PositionFigures>,
    },
    /// A symbol's mark when it moved (`None`: it has none any more).
    Mark(Text, Option<Mark>),
    Unmatched(Unmatched),
    /// Diff carries the count.
    Counter(Counter),
}

/// A row as its figures and mark, or `None` where the holder has none.
type Row = Option<(PositionFigures, Option<Mark>)>;

/// One symbol's holders and mark as published, and what changed since.
#[derive(Default)]
struct SymbolRows {
    mark: Option<Mark>,
    holders: FastMap<Text, PositionFigures>,
    /// Since the last publish: each changed holder's figures before the first change.
    holders_before: FastMap<Text, Option<PositionFigures>>,
    /// Since the last publish: the mark before it first moved.
    mark_before: Option<Option<Mark>>,
}

impl SymbolRows {
    fn unchanged(&self) -> bool {
        self.holders_before.is_empty() && self.mark_before.is_none()
    }
}

/// Every position's figures and every symbol's mark as the export has taken them, and the
/// totals over the rows they make.
#[derive(Default)]
pub(crate) struct MarkedRows {
    symbols: FastMap<Text, SymbolRows>,
    traders: FastMap<Text, TotalsSum>,
    firm: TotalsSum,
    /// The symbols changed since the last publish, each once.
    touched: Vec<Text>,
    /// Scratch of [`MarkedRows::publish`]: each trader's totals before it.
    traders_before: FastMap<Text, Option<Totals>>,
}

impl MarkedRows {
    fn symbol(&mut self, symbol: Text) -> &mut SymbolRows {
        let rows = self.symbols.entry(symbol.clone()).or_default();
        if rows.unchanged() {
            self.touched.push(symbol);
        }
        rows
    }

    /// Takes a holder's figures (`None`: its position went).
    pub fn position(&mut self, trader: Text, symbol: Text, figures: Option<PositionFigures>) {
        let rows = self.symbol(symbol);
        let before = match figures {
            Some(figures) => rows.holders.insert(trader.clone(), figures),
            None => rows.holders.remove(&trader),
        };
        rows.holders_before.entry(trader).or_insert(before);
    }

    /// Takes a symbol's mark.
    pub fn mark(&mut self, symbol: Text, mark: Option<Mark>) {
        let rows = self.symbol(symbol);
        let before = std::mem::replace(&mut rows.mark, mark);
        rows.mark_before.get_or_insert(before);
    }

    /// Appends to `changes` the rows changed since the last publish and the totals they
    /// changed: a row as its new value, which replaces its key's, or as its old one retracted
    /// when the position went; a trader's or the firm's totals the same way.
    pub fn publish(&mut self, changes: &mut Vec<(ViewRecord, Diff)>) {
        let firm_before = self.firm.totals();
        let mut touched = std::mem::take(&mut self.touched);
        for symbol in touched.drain(..) {
            let Some(rows) = self.symbols.get_mut(&symbol) else {
                continue;
            };
            let new_mark = rows.mark;
            let old_mark = rows.mark_before.take().unwrap_or(new_mark);
            let mut totals = TotalsChange {
                traders: &mut self.traders,
                firm: &mut self.firm,
                traders_before: &mut self.traders_before,
                changes: &mut *changes,
            };
            for (trader, before) in rows.holders_before.iter() {
                let after = rows.holders.get(trader).copied();
                if old_mark != new_mark && after.is_some() {
                    // Formed below with every other holder of the re-marked symbol.
                    continue;
                }
                let before = before.map(|figures| (figures, old_mark));
                totals.row(trader, &symbol, before, after.map(|f| (f, new_mark)));
            }
            if old_mark != new_mark {
                for (trader, figures) in &rows.holders {
                    let before = match rows.holders_before.get(trader) {
                        Some(before) => *before,
                        None => Some(*figures),
                    };
                    let before = before.map(|figures| (figures, old_mark));
                    totals.row(trader, &symbol, before, Some((*figures, new_mark)));
                }
            }
            rows.holders_before.clear();
            if rows.holders.is_empty() && rows.mark.is_none() {
                self.symbols.remove(&symbol);
            }
        }
        self.touched = touched;
        for (trader, before) in self.traders_before.drain() {
            let Some(sum) = self.traders.get(&trader) else {
                continue;
            };
            let (after, empty) = (sum.totals(), *sum == TotalsSum::default());
            if empty {
                self.traders.remove(&trader);
            }
            match (before, after) {
                (before, Some(after)) if before.as_ref() != Some(&after) => {
                    changes.push((ViewRecord::Trader(trader, after), 1));
                }
                (Some(before), None) => changes.push((ViewRecord::Trader(trader, before), -1)),
                _ => {}
            }
        }
        match (firm_before, self.firm.totals()) {
            (before, Some(after)) if before.as_ref() != Some(&after) => {
                changes.push((ViewRecord::Firm(after), 1));
            }
            (Some(before), None) => changes.push((ViewRecord::Firm(before), -1)),
            _ => {}
        }
    }
}

/// Whether two rows are equal: an unmarked row does not show the cash or the realised P&L.
fn shows_the_same(a: Row, b: Row) -> bool {
    match (a, b) {
        (Some((a, None)), Some((b, None))) => {
            a.net_qty == b.net_qty && a.trades == b.trades && a.avg_cost == b.avg_cost
        }
        (a, b) => a == b,
    }
}

/// A publish's row changes, and what they do to the totals.
struct TotalsChange<'a> {
    traders: &'a mut FastMap<Text, TotalsSum>,
    firm: &'a mut TotalsSum,
    traders_before: &'a mut FastMap<Text, Option<Totals>>,
    changes: &'a mut Vec<(ViewRecord, Diff)>,
}

impl TotalsChange<'_> {
    fn row(&mut self, trader: &Text, symbol: &Text, before: Row, after: Row) {
        if shows_the_same(before, after) {
            return;
        }
        let sum = match self.traders.get_mut(trader) {
            Some(sum) => sum,
            None => self.traders.entry(trader.clone()).or_default(),
        };
        if !self.traders_before.contains_key(trader) {
            self.traders_before.insert(trader.clone(), sum.totals());
        }
        for (row, diff) in [(before, -1), (after, 1)] {
            if let Some((figures, mark)) = row {
                sum.add_position(&figures, mark.as_ref(), diff);
                self.firm.add_position(&figures, mark.as_ref(), diff);
            }
        }
        let (row, diff) = match (after, before) {
            (Some(after), _) => (after, 1),
            (None, Some(before)) => (before, -1),
            (None, None) => return,
        };
        let (figures, mark) = row;
        let row = position_view(trader, symbol, &figures, mark.as_ref());
        self.changes.push((ViewRecord::Position(row), diff));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use crate::model::{Bust, Fill, PriceKind, PriceUpdate, Time, TradeEvent};
    use crate::views::{ViewDelta, ViewSnapshot, ViewStore};
    use crate::MarkSource;

    use super::*;

    fn fill(exec_id: &str, trader: &str, qty: i64, at: i64) -> TradeEvent {
        TradeEvent::Fill(Fill {
            exec_id: exec_id.into(),
            trader: trader.into(),
            symbol: "X".into(),
            qty,
            price: 100_000_000,
            transact_time: at,
        })
    }

    /// The deltas published for times 1 to 3 of a small day: time 0 opens two positions,
    /// time 1 adds to one, time 2 marks the symbol (every row changes), time 3 busts the
    /// other's only fill.
    fn deltas_of_a_small_day() -> (Vec<Arc<ViewDelta>>, Arc<ViewStore>) {
        let store = ViewStore::new();
        let deltas = Arc::new(Mutex::new(Vec::new()));
        let (store_in, seen) = (store.clone(), deltas.clone());
        timely::execute_directly(move |worker| {
            let (mut inputs, probe) =
                worker.dataflow(|scope| crate::build_dataflow(scope, Some(store_in.clone()), 1));
            let mut version = store_in.version();
            let days: [Vec<TradeEvent>; 4] = [
                vec![fill("A1", "alice", 10, 1), fill("B1", "bob", 5, 2)],
                vec![fill("A2", "alice", 3, 3)],
                vec![],
                vec![TradeEvent::Bust(Bust {
                    exec_id: "X1".into(),
                    target: "B1".into(),
                    transact_time: 4,
                })],
            ];
            for (time, events) in days.into_iter().enumerate() {
                for event in events {
                    inputs.event(event);
                }
                if time == 2 {
                    inputs.price(PriceUpdate {
                        symbol: "X".into(),
                        kind: PriceKind::OfficialClose,
                        price: 120_000_000,
                        time: 5,
                    });
                }
                let next = time as Time + 1;
                inputs.advance_to(next);
                inputs.flush();
                worker.step_while(|| probe.less_than(&next));
                while store_in.snapshot().as_of.time < next {
                    worker.step();
                }
                let update = store_in.since(version);
                version = update.version;
                if time > 0 {
                    let mut seen = seen.lock().expect("not poisoned");
                    seen.extend(update.deltas.expect("every delta is kept"));
                }
            }
        });
        let deltas = deltas.lock().expect("not poisoned").clone();
        (deltas, store)
    }

    fn position_changes(delta: &ViewDelta) -> Vec<(String, i128, Diff)> {
        delta
            .changes
            .iter()
            .filter_map(|(record, diff)| match record {
                ViewRecord::Position(row) => Some((row.trader.to_string(), row.net_qty, *diff)),
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn an_updated_row_reaches_the_export_as_its_new_row_alone() {
        let (deltas, store) = deltas_of_a_small_day();
        let changes: Vec<_> = deltas.iter().map(|delta| position_changes(delta)).collect();
        let changes: Vec<_> = changes.into_iter().filter(|c| !c.is_empty()).collect();
        assert_eq!(
            changes,
            vec![
                vec![("alice".to_owned(), 13, 1)],
                // The mark moves every row: each is replaced, none retracted.
                vec![("alice".to_owned(), 13, 1), ("bob".to_owned(), 5, 1)],
                // A position that goes is retracted.
                vec![("bob".to_owned(), 5, -1)],
            ]
        );
        let snapshot = store.snapshot();
        assert_eq!(snapshot.positions.len(), 1);
        let alice = &snapshot.positions[&("alice".into(), "X".into())];
        assert_eq!(alice.net_qty, 13);
        assert!(alice.mark.is_some());
    }

    fn figures(net_qty: i128, trades: u64, cash: i128, realized: i128) -> PositionFigures {
        PositionFigures {
            net_qty,
            trades,
            cash,
            realized,
            avg_cost: (net_qty != 0).then_some(cash.abs() / net_qty.abs().max(1)),
        }
    }

    proptest! {
        /// The totals take a position's figures as the row they make would give them.
        #[test]
        fn a_position_adds_to_the_totals_as_its_row_does(
            net_qty in -1_000_000i128..1_000_000,
            trades in 0u64..1000,
            cash in -(1i128 << 80)..(1i128 << 80),
            realized in -(1i128 << 80)..(1i128 << 80),
            price in proptest::option::of(0i64..1_000_000_000_000),
            diff in -3isize..4,
        ) {
            let figures = figures(net_qty, trades, cash, realized);
            let mark = price.map(|price| Mark { price, source: MarkSource::LastTrade });
            let mut from_position = TotalsSum::default();
            from_position.add_position(&figures, mark.as_ref(), diff);
            let mut from_row = TotalsSum::default();
            from_row.add_row(&position_view("T", "X", &figures, mark.as_ref()), diff);
            prop_assert_eq!(from_position, from_row);
        }

        /// Whatever the updates and wherever the publishes fall, a snapshot that applies
        /// every publish holds the rows and totals the last figures and marks make, formed
        /// from scratch; and a publish names only rows and totals that changed.
        #[test]
        fn published_rows_and_totals_equal_those_formed_from_scratch(
            updates in proptest::collection::vec(
                (0..3usize, 0..3usize, proptest::option::of(-2i128..3), 0..3i128, proptest::bool::ANY),
                0..40,
            ),
            publish_after in proptest::collection::vec(proptest::bool::ANY, 40),
            price in proptest::option::of(1i64..4),
        ) {
            let mut rows = MarkedRows::default();
            let mut snapshot = ViewSnapshot::default();
            let mut figures_now: std::collections::BTreeMap<(Text, Text), PositionFigures> =
                Default::default();
            let mut marks_now: std::collections::BTreeMap<Text, Mark> = Default::default();
            for (i, (trader, symbol, qty, cash, is_mark)) in updates.into_iter().enumerate() {
                let (trader, symbol): (Text, Text) =
                    (format!("T{trader}").into(), format!("S{symbol}").into());
                if is_mark {
                    // A mark from the update's quantity: none, or a price.
                    let mark = qty.map(|q| Mark {
                        price: price.unwrap_or(1) + q as i64 + 2,
                        source: MarkSource::LastTrade,
                    });
                    match mark {
                        Some(mark) => marks_now.insert(symbol.clone(), mark),
                        None => marks_now.remove(&symbol),
                    };
                    rows.mark(symbol, mark);
                } else {
                    let figures = qty.map(|q| figures(q, 1 + i as u64 % 2, cash - 7 * q, q));
                    let key = (trader.clone(), symbol.clone());
                    match figures {
                        Some(figures) => figures_now.insert(key, figures),
                        None => figures_now.remove(&key),
                    };
                    rows.position(trader, symbol, figures);
                }
                if publish_after[i] {
                    let mut changes = Vec::new();
                    rows.publish(&mut changes);
                    let before = snapshot.clone();
                    snapshot.apply(&changes);
                    for (record, diff) in &changes {
                        let changed = match record {
                            ViewRecord::Position(row) => {
                                let key = (row.trader.clone(), row.symbol.clone());
                                before.positions.get(&key) != snapshot.positions.get(&key)
                            }
                            ViewRecord::Trader(trader, _) => {
                                before.traders.get(trader) != snapshot.traders.get(trader)
                            }
                            ViewRecord::Firm(_) => before.firm != snapshot.firm,
                            other => panic!("not a row or totals: {other:?} {diff}"),
                        };
                        prop_assert!(changed, "{record:?} changed nothing");
                    }
                }
            }
            let mut changes = Vec::new();
            rows.publish(&mut changes);
            snapshot.apply(&changes);
            let expected: crate::position_map::PositionMap = figures_now
                .iter()
                .map(|((trader, symbol), figures)| {
                    let row = position_view(trader, symbol, figures, marks_now.get(symbol));
                    ((trader.clone(), symbol.clone()), row)
                })
                .collect();
            prop_assert_eq!(&snapshot.positions, &expected);
            let mut by_trader: std::collections::BTreeMap<Text, Vec<&PositionView>> =
                Default::default();
            for row in expected.values() {
                by_trader.entry(row.trader.clone()).or_default().push(row);
            }
            let traders: std::collections::BTreeMap<Text, Totals> = by_trader
                .into_iter()
                .map(|(trader, rows)| (trader, Totals::sum(rows)))
                .collect();
            prop_assert_eq!(&snapshot.traders, &traders);
            let firm = (!expected.is_empty()).then(|| Totals::sum(expected.values()));
            prop_assert_eq!(&snapshot.firm, &firm);
        }
    }

    /// In small epochs nearly every fill sends a record to the export: a byte here is copied
    /// several times per fill.
    #[test]
    fn an_export_record_stays_small() {
        let size = std::mem::size_of::<ExportRecord>();
        assert!(size <= 144, "an export record is {size} bytes");
    }

    /// A holder that leaves a re-marked symbol in the same publish is retracted at its old
    /// mark, and the ones that stay are formed once, at the new one.
    #[test]
    fn a_re_mark_forms_each_holder_once_and_retracts_the_one_that_went() {
        let (alice, bob, x): (Text, Text, Text) = ("alice".into(), "bob".into(), "X".into());
        let old = Mark {
            price: 100,
            source: MarkSource::LastTrade,
        };
        let new = Mark {
            price: 120,
            source: MarkSource::OfficialClose,
        };
        let mut rows = MarkedRows::default();
        rows.mark(x.clone(), Some(old));
        rows.position(alice.clone(), x.clone(), Some(figures(10, 1, -1000, 0)));
        rows.position(bob.clone(), x.clone(), Some(figures(5, 1, -500, 0)));
        let mut first = Vec::new();
        rows.publish(&mut first);
        rows.position(alice.clone(), x.clone(), Some(figures(13, 2, -1300, 0)));
        rows.position(bob.clone(), x.clone(), None);
        rows.mark(x.clone(), Some(new));
        let mut second = Vec::new();
        rows.publish(&mut second);
        let positions: Vec<_> = second
            .iter()
            .filter_map(|(record, diff)| match record {
                ViewRecord::Position(row) => {
                    Some((row.trader.as_str(), row.net_qty, row.mark, *diff))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            positions,
            [
                ("bob", 5, Some(Money(100)), -1),
                ("alice", 13, Some(Money(120)), 1)
            ]
        );
        let mut nothing = Vec::new();
        rows.publish(&mut nothing);
        assert!(nothing.is_empty(), "nothing changed: {nothing:?}");
    }
}
