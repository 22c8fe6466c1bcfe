//! The positions view's rows, in one stage, to the three places they go: the exported view
//! records, each trader's change to its totals, and this worker's change to the firm total.
//!
//! In small epochs nearly every fill changes a row (240 bytes), and the view had three
//! consumers: the trader totals (exchanged by trader), the firm's partial sums and the export
//! route. Timely copies a stream's every batch for each consumer but the last, so each row was
//! copied twice before any of them ran, and the trader totals then moved whole rows between
//! workers to add up six numbers of each. Here each row is read once: it moves on as a record,
//! and what the totals need is added up per trader and time as it passes, so one small change
//! per trader, worker and batch goes to the totals instead of every row.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

use crate::graph::ExportRoute;
use crate::model::{Diff, Text, Time};
use crate::views::{PositionView, TotalsSum, ViewRecord};
use crate::FastMap;

pub(crate) struct FannedOutRows<'s> {
    /// Every row as a view record, with the worker that exports it.
    pub records: VecCollection<'s, Time, (usize, ViewRecord), Diff>,
    /// Per trader, a change to the sums over its rows (with diff 1).
    pub trader_changes: VecCollection<'s, Time, (Text, TotalsSum), Diff>,
    /// This worker's change to the sums over all rows (with diff 1).
    pub firm_changes: VecCollection<'s, Time, TotalsSum, Diff>,
}

/// Sums form a group, so a change formed from the rows of one batch, as they pass and before
/// their time completes, adds up with the other batches' to the time's change.
pub(crate) fn fan_out<'s>(
    rows: VecCollection<'s, Time, PositionView, Diff>,
    route: ExportRoute,
) -> FannedOutRows<'s> {
    let mut builder = OperatorBuilder::new("PositionRowsFanOut".to_owned(), rows.inner.scope());
    let mut input = builder.new_input(rows.inner, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (records_out, records) = builder.new_output();
    let (traders_out, trader_changes) = builder.new_output();
    let (firm_out, firm_changes) = builder.new_output();
    let mut records_out = OutputBuilder::from(records_out);
    let mut traders_out = OutputBuilder::from(traders_out);
    let mut firm_out = OutputBuilder::from(firm_out);
    builder.build(move |_capabilities| {
        // Per time of a batch: each trader's change and the worker's. A batch's rows are
        // nearly always of one time.
        let mut changes: Vec<(Time, FastMap<Text, TotalsSum>, TotalsSum)> = Vec::new();
        move |_frontiers| {
            let mut records_out = records_out.activate();
            let mut traders_out = traders_out.activate();
            let mut firm_out = firm_out.activate();
            input.for_each(|capability, rows| {
                let mut records = records_out.session(&capability);
                let mut rows = rows.drain(..).peekable();
                while let Some((row, time, diff)) = rows.next() {
                    let at = match changes.iter().position(|(at, _, _)| *at == time) {
                        Some(at) => at,
                        None => {
                            changes.push((time, FastMap::default(), TotalsSum::default()));
                            changes.len() - 1
                        }
                    };
                    let (_, traders, firm) = &mut changes[at];
                    firm.add_row(&row, diff);
                    match traders.get_mut(&row.trader) {
                        Some(sum) => sum.add_row(&row, diff),
                        None => traders
                            .entry(row.trader.clone())
                            .or_default()
                            .add_row(&row, diff),
                    }
                    if is_replaced(&row, time, diff, rows.peek()) {
                        continue;
                    }
                    for record in route.route(ViewRecord::Position(row)) {
                        records.give((record, time, diff));
                    }
                }
                drop(records);
                for (time, traders, firm) in changes.drain(..) {
                    let for_traders = capability.delayed(&time, 1);
                    let mut session = traders_out.session(&for_traders);
                    for (trader, change) in traders {
                        if change != TotalsSum::default() {
                            session.give(((trader, change), time, 1));
                        }
                    }
                    if firm != TotalsSum::default() {
                        let for_firm = capability.delayed(&time, 2);
                        firm_out.session(&for_firm).give((firm, time, 1));
                    }
                }
            });
        }
    });
    FannedOutRows {
        records: records.as_collection(),
        trader_changes: trader_changes.as_collection(),
        firm_changes: firm_changes.as_collection(),
    }
}

/// Whether `row`'s retraction is followed by its key's new row at the same time: the export
/// replaces a key's row with the new one, so the old row need not travel to it (in small
/// epochs, nearly half of the rows). The positions view puts a key's old row just before its
/// new one; when a batch ends between the two, the retraction goes on, and is harmless.
fn is_replaced(
    row: &PositionView,
    time: Time,
    diff: Diff,
    next: Option<&(PositionView, Time, Diff)>,
) -> bool {
    diff < 0
        && next.is_some_and(|(new, new_time, new_diff)| {
            *new_time == time
                && *new_diff > 0
                && new.trader == row.trader
                && new.symbol == row.symbol
        })
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

    #[test]
    fn a_retraction_is_left_out_only_beside_its_keys_new_row() {
        let old = crate::views::unmarked_row("alice", "X", 10);
        let new = crate::views::unmarked_row("alice", "X", 13);
        let other = crate::views::unmarked_row("bob", "X", 13);
        assert!(is_replaced(&old, 4, -1, Some(&(new.clone(), 4, 1))));
        assert!(!is_replaced(&old, 4, -1, Some(&(new.clone(), 5, 1))));
        assert!(!is_replaced(&old, 4, -1, Some(&(other, 4, 1))));
        assert!(!is_replaced(&old, 4, -1, None));
        assert!(!is_replaced(&new, 4, 1, Some(&(old, 4, -1))));
    }
}
