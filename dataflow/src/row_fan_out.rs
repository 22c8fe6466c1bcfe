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
                for (row, time, diff) in rows.drain(..) {
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
