//! The positions view's row changes, as they are formed, to the three places they go: the
//! exported view records, each trader's change to its totals, and this worker's change to the
//! firm total.
//!
//! In small epochs nearly every fill changes a row (240 bytes). The view had three consumers:
//! the trader totals (exchanged by trader), the firm's partial sums and the export route, and
//! timely copies a stream's every batch for each consumer but the last. Then one stage read
//! each row once, but the positions view still formed every change as two rows (the old one
//! retracted, the new one inserted) and handed both to that stage, which added their numbers
//! to the totals and passed the new one on. Here the positions view hands each change over as
//! the positions it is made of: the totals take their numbers from the positions, and only the
//! row that goes to the export is formed: the new one, or the old one when the position goes.
//! One small change per trader, worker and time goes to the totals instead of every row.

use differential_dataflow::VecCollection;

use crate::graph::{position_view, ExportRoute};
use crate::marks::Mark;
use crate::model::{Diff, Text, Time};
use crate::position::PositionCore;
use crate::views::{TotalsSum, ViewRecord};
use crate::FastMap;

pub(crate) struct FannedOutRows<'s> {
    /// Every row change as a view record, with the worker that exports it.
    pub records: VecCollection<'s, Time, (usize, ViewRecord), Diff>,
    /// Per trader, a change to the sums over its rows (with diff 1).
    pub trader_changes: VecCollection<'s, Time, (Text, TotalsSum), Diff>,
    /// This worker's change to the sums over all rows (with diff 1).
    pub firm_changes: VecCollection<'s, Time, TotalsSum, Diff>,
}

/// One holder's row as it was and as it is: the position and the mark it is shown at, or
/// `None` where the holder has no row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowChange<'a> {
    pub trader: &'a Text,
    pub symbol: &'a Text,
    pub before: Option<(&'a PositionCore, Option<Mark>)>,
    pub after: Option<(&'a PositionCore, Option<Mark>)>,
}

impl RowChange<'_> {
    /// The change as the export takes it: the new row, which replaces its key's row, or the
    /// old one retracted when the position goes.
    pub fn record(&self) -> Option<(ViewRecord, Diff)> {
        let (row, diff) = match (self.after, self.before) {
            (Some(after), _) => (after, 1),
            (None, Some(before)) => (before, -1),
            (None, None) => return None,
        };
        let (core, mark) = row;
        let row = position_view(self.trader, self.symbol, core, mark.as_ref());
        Some((ViewRecord::Position(row), diff))
    }
}

/// What one worker's row changes of one time do to the totals. Sums form a group, so the
/// changes of every worker add up to the time's change.
#[derive(Default)]
pub(crate) struct TotalsChanges {
    traders: FastMap<Text, TotalsSum>,
    firm: TotalsSum,
}

impl TotalsChanges {
    pub fn add(&mut self, change: &RowChange<'_>) {
        let trader = match self.traders.get_mut(change.trader) {
            Some(sum) => sum,
            None => self.traders.entry(change.trader.clone()).or_default(),
        };
        for (row, diff) in [(change.before, -1), (change.after, 1)] {
            if let Some((core, mark)) = row {
                trader.add_position(core, mark.as_ref(), diff);
                self.firm.add_position(core, mark.as_ref(), diff);
            }
        }
    }

    /// The traders' changes that are not nothing, and the firm's when it is not, leaving
    /// `self` empty.
    pub fn take(
        &mut self,
    ) -> (
        impl Iterator<Item = (Text, TotalsSum)> + '_,
        Option<TotalsSum>,
    ) {
        let firm = std::mem::take(&mut self.firm);
        let traders = self
            .traders
            .drain()
            .filter(|(_, change)| *change != TotalsSum::default());
        (traders, (firm != TotalsSum::default()).then_some(firm))
    }
}

/// Each row change of a time, as it is formed: into the time's totals changes, and as a record
/// to every exporting worker.
pub(crate) fn fan_out(
    change: RowChange<'_>,
    totals: &mut TotalsChanges,
    route: ExportRoute,
    mut give: impl FnMut((usize, ViewRecord), Diff),
) {
    totals.add(&change);
    if let Some((record, diff)) = change.record() {
        for routed in route.route(record) {
            give(routed, diff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::model::{Bust, Fill, PriceKind, PriceUpdate, TradeEvent};
    use crate::views::{ViewDelta, ViewStore};

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

    fn core(net_qty: i128, trades: u64, cash: i128, realized: i128) -> PositionCore {
        PositionCore {
            net_qty,
            trades,
            cash,
            realized,
            avg_cost: (net_qty != 0).then_some(cash.abs() / net_qty.abs().max(1)),
            last: crate::position::LastTrade {
                transact_time: 1,
                exec_id: "E1".into(),
                price: 100,
            },
        }
    }

    proptest::proptest! {
        /// The totals take a position's numbers as the row it makes would give them.
        #[test]
        fn a_position_adds_to_the_totals_as_its_row_does(
            net_qty in -1_000_000i128..1_000_000,
            trades in 0u64..1000,
            cash in -(1i128 << 80)..(1i128 << 80),
            realized in -(1i128 << 80)..(1i128 << 80),
            price in proptest::option::of(0i64..1_000_000_000_000),
            diff in -3isize..4,
        ) {
            let core = core(net_qty, trades, cash, realized);
            let mark = price.map(|price| Mark { price, source: crate::MarkSource::LastTrade });
            let mut from_position = TotalsSum::default();
            from_position.add_position(&core, mark.as_ref(), diff);
            let mut from_row = TotalsSum::default();
            from_row.add_row(&position_view("T", "X", &core, mark.as_ref()), diff);
            proptest::prop_assert_eq!(from_position, from_row);
        }
    }

    /// A change reaches the export as its new row, or as its old one retracted when the
    /// position goes; the totals see both sides.
    #[test]
    fn a_change_is_exported_as_its_new_row_and_summed_as_both() {
        let (trader, symbol) = ("T".into(), "X".into());
        let (old, new) = (core(10, 1, -1000, 0), core(13, 2, -1300, 0));
        let mark = Some(Mark {
            price: 120,
            source: crate::MarkSource::OfficialClose,
        });
        let change = |before, after| RowChange {
            trader: &trader,
            symbol: &symbol,
            before,
            after,
        };
        let route = ExportRoute::new(1, 1);
        let mut totals = TotalsChanges::default();
        let mut exported = Vec::new();
        for each in [
            change(Some((&old, None)), Some((&new, mark))),
            change(Some((&new, mark)), None),
            change(None, Some((&old, mark))),
        ] {
            fan_out(each, &mut totals, route, |record, diff| {
                exported.push((record, diff))
            });
        }
        let rows: Vec<_> = exported
            .iter()
            .map(|((worker, record), diff)| match record {
                ViewRecord::Position(row) => (*worker, row.net_qty, row.mark.is_some(), *diff),
                other => panic!("not a position: {other:?}"),
            })
            .collect();
        assert_eq!(
            rows,
            [(0, 13, true, 1), (0, 13, true, -1), (0, 10, true, 1)]
        );
        let mut expected = TotalsSum::default();
        expected.add_position(&old, None, -1);
        expected.add_position(&old, mark.as_ref(), 1);
        let (traders, firm) = totals.take();
        let traders: Vec<_> = traders.collect();
        assert_eq!(traders, [(trader.clone(), expected.clone())]);
        assert_eq!(firm, Some(expected));
        let (traders, firm) = totals.take();
        assert_eq!(
            (traders.count(), firm),
            (0, None),
            "taken, the changes are empty"
        );
    }
}
