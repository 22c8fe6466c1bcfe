//! The positions view: every position with its symbol's mark, kept per symbol in one operator.
//!
//! Each holder's average-cost fold lives here too (`position_operator.rs`), on the worker that
//! owns the symbol. It was an operator of its own, keyed by (trader, symbol), whose every
//! change (the old position retracted, the new one inserted) was copied, exchanged by symbol,
//! stashed and sorted once more before it reached this one: in 250-message epochs nearly every
//! fill changes a position, and that second stage was about a sixth of the workers' time.
//!
//! This was three `reduce`s (each holder's last trade to the symbol's last traded price, the
//! latest price of each kind, the waterfall), a `join` of the positions with the marks and an
//! `antijoin` for the unmarked ones: five arrangements maintained on every epoch, and the
//! last-trade `reduce` went over every holder of a symbol whenever one of them traded. Here a
//! symbol's holders, their last trades and the prices in force live in maps on the worker that
//! owns the symbol: a holder's trade costs a map update, and only a change of the mark re-forms
//! every holder's row (as the join did).
//!
//! Like `reduce` for a totally ordered time, a time's updates are applied once the input
//! frontier has passed it, and in time order, so the output at every completed time is the
//! view over the input collections at that time (the oracle property tests check it).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use crate::day_state::DayState;
use crate::graph::ExportRoute;
use crate::marks::{choose_mark, Mark, MarkInput};
use crate::model::{Diff, Fill, PriceKind, PriceUpdate, Text, Time};
use crate::position::{Execution, LastTrade, PositionCore};
use crate::position_operator::KeyState;
use crate::row_fan_out::{fan_out, FannedOutRows, RowChange, TotalsChanges};
use crate::stash::{drain_runs, TimeStash};
use crate::FastMap;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum SymbolInput {
    /// A holder's live execution.
    Execution(Text, Execution),
    /// A price of a kind, with the time it was set: the latest per kind is in force.
    Price(PriceKind, i64, i64),
}

/// One holder's executions and the position its row shows.
#[derive(Default)]
struct Holder {
    executions: KeyState,
    core: Option<PositionCore>,
}

/// What one symbol's rows are made of.
#[derive(Default)]
struct SymbolState {
    holders: FastMap<Text, Holder>,
    /// Every holder's last trade: the latest is the symbol's last traded price.
    last_trades: BTreeMap<LastTrade, Diff>,
    /// Per kind, the prices with the time they were set: the latest is in force.
    prices: BTreeMap<PriceKind, BTreeMap<(i64, i64), Diff>>,
    /// The mark the rows emitted so far carry.
    mark: Option<Mark>,
}

impl SymbolState {
    fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.last_trades.is_empty() && self.prices.is_empty()
    }

    /// The waterfall over the latest price of each kind and the last trade.
    fn current_mark(&self) -> Option<Mark> {
        let last_trade = self
            .last_trades
            .keys()
            .next_back()
            .map(|last| MarkInput::LastTrade(last.price));
        let prices = self.prices.iter().filter_map(|(kind, by_time)| {
            let ((_time, price), _) = by_time.last_key_value()?;
            Some(MarkInput::Price(*kind, *price))
        });
        choose_mark(prices.chain(last_trade))
    }
}

/// Adds `diff` to `key`'s count; a count of zero is no value and leaves the map.
fn add<K: Ord>(counts: &mut BTreeMap<K, Diff>, key: K, diff: Diff) {
    match counts.entry(key) {
        Entry::Occupied(mut entry) => {
            *entry.get_mut() += diff;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        Entry::Vacant(entry) => {
            if diff != 0 {
                entry.insert(diff);
            }
        }
    }
}

/// Every position over the live fills, by (trader, symbol), as a row with its symbol's mark
/// when the waterfall has one: each change as the record the export applies, and as its
/// change to the trader's and the firm's totals (see `row_fan_out`).
pub(crate) fn positions_view<'s>(
    live: VecCollection<'s, Time, Fill, Diff>,
    prices: VecCollection<'s, Time, PriceUpdate, Diff>,
    route: ExportRoute,
) -> FannedOutRows<'s> {
    let inputs = live
        .map(|fill| {
            let execution = Execution {
                transact_time: fill.transact_time,
                exec_id: fill.exec_id,
                qty: fill.qty,
                price: fill.price,
            };
            (fill.symbol, SymbolInput::Execution(fill.trader, execution))
        })
        .concat(prices.map(|p| (p.symbol, SymbolInput::Price(p.kind, p.time, p.price))));
    let exchange =
        Exchange::new(|((symbol, _), _, _): &((Text, SymbolInput), Time, Diff)| symbol.hashed());
    let mut builder = OperatorBuilder::new("PositionsView".to_owned(), inputs.inner.scope());
    let mut input = builder.new_input(inputs.inner, exchange);
    let (records_out, records) = builder.new_output();
    let (traders_out, trader_changes) = builder.new_output();
    let (firm_out, firm_changes) = builder.new_output();
    let mut records_out = OutputBuilder::from(records_out);
    let mut traders_out = OutputBuilder::from(traders_out);
    let mut firm_out = OutputBuilder::from(firm_out);
    builder.build(move |_capabilities| {
        // Each time holds a capability for each output: records, traders', firm's changes.
        let mut stash: TimeStash<HashedInput, [Capability<Time>; 3]> = TimeStash::default();
        let mut symbols: DayState<FastMap<Text, SymbolState>> = DayState::default();
        let mut touched = FastMap::default();
        let mut totals = TotalsChanges::default();
        let mut run_lengths: Vec<usize> = Vec::new();
        move |frontiers| {
            let mut records_out = records_out.activate();
            let mut traders_out = traders_out.activate();
            let mut firm_out = firm_out.activate();
            input.for_each(|capability, updates| {
                for (record, time, diff) in updates.drain(..) {
                    let hold = || [0, 1, 2].map(|output| capability.delayed(&time, output));
                    stash.push_held(time, (holder_hash(&record), record, diff), hold);
                }
            });
            stash.complete(
                &frontiers[0],
                |[for_records, for_traders, for_firm], updates| {
                    updates.sort_unstable_by(in_apply_order);
                    let time = *for_records.time();
                    let mut records = records_out.session(&for_records);
                    let mut give = |record, diff| records.give((record, time, diff));
                    let same_symbol =
                        |(_, (a, _), _): &HashedInput, (_, (b, _), _): &HashedInput| a == b;
                    drain_runs(updates, &mut run_lengths, same_symbol, |first, rest| {
                        let (_, (symbol, first), diff) = first;
                        let state = symbols.entry(symbol.clone()).or_default();
                        let rest = rest.map(|(_, (_, input), diff)| (input, diff));
                        apply(
                            &symbol,
                            state,
                            std::iter::once((first, diff)).chain(rest),
                            &mut touched,
                            &mut |change| fan_out(change, &mut totals, route, &mut give),
                        );
                        if state.is_empty() {
                            symbols.remove(&symbol);
                        }
                    });
                    let (traders, firm) = totals.take();
                    traders_out
                        .session(&for_traders)
                        .give_iterator(traders.map(|change| (change, time, 1)));
                    if let Some(firm) = firm {
                        firm_out.session(&for_firm).give((firm, time, 1));
                    }
                },
            );
        }
    });
    FannedOutRows {
        records: records.as_collection(),
        trader_changes: trader_changes.as_collection(),
        firm_changes: firm_changes.as_collection(),
    }
}

/// A stashed update with the hashes of its symbol (high half) and, for an execution, its
/// trader (low half).
type HashedInput = (u128, (Text, SymbolInput), Diff);

fn holder_hash((symbol, input): &(Text, SymbolInput)) -> u128 {
    let trader = match input {
        SymbolInput::Execution(trader, _) => trader.hashed(),
        SymbolInput::Price(..) => 0,
    };
    u128::from(symbol.hashed()) << 64 | u128::from(trader)
}

/// The order a time's updates are applied in: a symbol's updates adjacent (one batch of
/// [`apply`] each), a holder's adjacent with its executions in their order (so that they
/// append to its fold), a retraction beside its insertion. Sorting the records themselves
/// compared the symbol's and the trader's text at nearly every step, about a tenth of the
/// workers' time in a replay (`perf`, 1M messages); here the hashes decide between symbols
/// and between holders, and the execution (its time first) within a holder. The rest of the
/// order only separates symbols or holders whose hashes collide: their updates may then
/// interleave, which splits a symbol's updates into more than one batch of [`apply`] (each
/// changes the rows the one before it left, so the totals end where one batch leaves them,
/// and the export keeps a key's last row of the time) or a holder's executions out of order
/// (its fold is then rebuilt).
fn in_apply_order(a: &HashedInput, b: &HashedInput) -> std::cmp::Ordering {
    let ((symbol_a, input_a), (symbol_b, input_b)) = (&a.1, &b.1);
    a.0.cmp(&b.0)
        .then_with(|| match (input_a, input_b) {
            (SymbolInput::Execution(trader_a, a), SymbolInput::Execution(trader_b, b)) => {
                a.cmp(b).then_with(|| trader_a.cmp(trader_b))
            }
            _ => input_a.cmp(input_b),
        })
        .then_with(|| symbol_a.cmp(symbol_b))
        .then_with(|| a.2.cmp(&b.2))
}

/// The holders whose executions changed in a time: their position before, and whether the
/// updates all appended to their fold. One map for every symbol and time, cleared each time.
type Touched = FastMap<Text, (Option<PositionCore>, bool)>;

/// Applies one symbol's updates of a time; hands each holder whose row changed to `changed`.
/// Reads `batch` to its end (see [`drain_runs`]).
fn apply(
    symbol: &Text,
    state: &mut SymbolState,
    batch: impl Iterator<Item = (SymbolInput, Diff)>,
    touched: &mut Touched,
    changed: &mut impl FnMut(RowChange<'_>),
) {
    let old_mark = state.mark;
    touched.clear();
    for (input, diff) in batch {
        match input {
            SymbolInput::Execution(trader, execution) => {
                let holder = match state.holders.get_mut(&trader) {
                    Some(holder) => holder,
                    None => state.holders.entry(trader.clone()).or_default(),
                };
                let in_order = holder.executions.update(execution, diff as i64);
                touched
                    .entry(trader)
                    .and_modify(|(_, consistent)| *consistent &= in_order)
                    .or_insert_with(|| (holder.core.clone(), in_order));
            }
            SymbolInput::Price(kind, set_at, price) => {
                let by_time = state.prices.entry(kind).or_default();
                add(by_time, (set_at, price), diff);
                if by_time.is_empty() {
                    state.prices.remove(&kind);
                }
            }
        }
    }
    for (trader, (before, consistent)) in touched.iter() {
        let Some(holder) = state.holders.get_mut(trader) else {
            continue;
        };
        if !consistent {
            holder.executions.refold();
        }
        holder.core = holder.executions.core();
        if holder.core != *before {
            if let Some(old) = before {
                add(&mut state.last_trades, old.last.clone(), -1);
            }
            if let Some(new) = &holder.core {
                add(&mut state.last_trades, new.last.clone(), 1);
            }
        }
        if holder.executions.is_empty() {
            state.holders.remove(trader);
        }
    }
    let new_mark = state.current_mark();
    state.mark = new_mark;
    let change = |trader, before, after| RowChange {
        trader,
        symbol,
        before,
        after,
    };
    if new_mark == old_mark {
        for (trader, (before, _)) in touched.iter() {
            let after = state.holders.get(trader).and_then(|h| h.core.as_ref());
            // Positions that differ only in what the row does not show (the ExecID of the
            // last trade: a correction that repeats its target's quantity and price) make the
            // same row, which must not be retracted and inserted at once.
            if let (Some(before), Some(after)) = (before, after) {
                if shows_the_same(before, after, new_mark.is_some()) {
                    continue;
                }
            } else if before.is_none() && after.is_none() {
                continue;
            }
            let at_mark = |core| (core, new_mark);
            changed(change(
                trader,
                before.as_ref().map(at_mark),
                after.map(at_mark),
            ));
        }
    } else {
        // Every holder's row carries the mark: no row before equals one after.
        for (trader, (before, _)) in touched.iter() {
            let still_held = state.holders.get(trader).is_some_and(|h| h.core.is_some());
            if let (Some(old), false) = (before, still_held) {
                changed(change(trader, Some((old, old_mark)), None));
            }
        }
        for (trader, holder) in &state.holders {
            let Some(core) = &holder.core else {
                continue;
            };
            let before = match touched.get(trader) {
                Some((before, _)) => before.as_ref(),
                None => Some(core),
            };
            let before = before.map(|old| (old, old_mark));
            changed(change(trader, before, Some((core, new_mark))));
        }
    }
}

/// Whether two positions of a holder make the same row at the same mark (`marked`): the row
/// shows the quantity, the trade count and the average cost, and at a mark the realised P&L
/// and the total (the cash, given the quantity).
fn shows_the_same(a: &PositionCore, b: &PositionCore, marked: bool) -> bool {
    a.net_qty == b.net_qty
        && a.trades == b.trades
        && a.avg_cost == b.avg_cost
        && (!marked || (a.realized == b.realized && a.cash == b.cash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::position_view;
    use crate::views::PositionView;
    use differential_dataflow::consolidation::consolidate;

    /// The rows a symbol's updates make when applied in `batches`, consolidated.
    fn rows(batches: &[&[(SymbolInput, Diff)]]) -> Vec<(PositionView, Diff)> {
        let symbol: Text = "SYM".into();
        let mut state = SymbolState::default();
        let mut touched = Touched::default();
        let mut changes = Vec::new();
        for batch in batches {
            apply(
                &symbol,
                &mut state,
                batch.iter().cloned(),
                &mut touched,
                &mut |change| {
                    for (row, diff) in [(change.before, -1), (change.after, 1)] {
                        if let Some((core, mark)) = row {
                            let row = position_view(change.trader, &symbol, core, mark.as_ref());
                            changes.push((row, diff));
                        }
                    }
                },
            );
        }
        consolidate(&mut changes);
        changes
    }

    proptest::proptest! {
        /// Two positions are taken to make the same row exactly when their rows are equal.
        #[test]
        fn positions_show_the_same_when_their_rows_are_equal(
            a in (0i128..3, 0u64..3, 0i128..3, 0i128..3, proptest::option::of(0i128..3)),
            b in (0i128..3, 0u64..3, 0i128..3, 0i128..3, proptest::option::of(0i128..3)),
            price in proptest::option::of(1i64..3),
        ) {
            let core = |(net_qty, trades, cash, realized, avg_cost)| PositionCore {
                net_qty,
                trades,
                cash,
                realized,
                avg_cost,
                last: LastTrade { transact_time: 1, exec_id: "E".into(), price: 1 },
            };
            let (a, b) = (core(a), core(b));
            let mark = price.map(|price| Mark { price, source: crate::MarkSource::LastTrade });
            let row = |core| position_view("T", "X", core, mark.as_ref());
            proptest::prop_assert_eq!(shows_the_same(&a, &b, mark.is_some()), row(&a) == row(&b));
        }
    }

    /// What [`in_apply_order`] relies on when hashes collide: a symbol's updates of one time
    /// applied in several batches make the same rows as in one, the mark changing between
    /// and within the batches.
    #[test]
    fn a_symbol_s_updates_in_several_batches_make_the_same_rows() {
        let execution = |trader: &str, time, qty, price| {
            SymbolInput::Execution(trader.into(), Execution::for_test(time, qty, price))
        };
        let price = |kind, time, price| SymbolInput::Price(kind, time, price);
        let updates: Vec<(SymbolInput, Diff)> = vec![
            (price(PriceKind::PrevClose, 1, 100), 1),
            (execution("T1", 2, 10, 101), 1),
            (execution("T2", 3, -4, 102), 1),
            (price(PriceKind::Bid, 4, 103), 1),
            (price(PriceKind::Ask, 4, 105), 1),
            (execution("T1", 5, 5, 99), 1),
            (execution("T3", 6, 7, 104), 1),
            (execution("T2", 3, -4, 102), -1),
            (execution("T4", 1, 3, 98), 1),
            (price(PriceKind::OfficialClose, 7, 106), 1),
            (execution("T1", 8, -15, 107), 1),
        ];
        let whole = rows(&[&updates]);
        let traders: Vec<&str> = whole.iter().map(|(row, _)| row.trader.as_str()).collect();
        assert_eq!(
            traders,
            ["T1", "T3", "T4"],
            "T2's one trade was retracted: {whole:?}"
        );
        for first in 0..=updates.len() {
            for second in first..=updates.len() {
                let split = rows(&[
                    &updates[..first],
                    &updates[first..second],
                    &updates[second..],
                ]);
                assert_eq!(split, whole, "batches cut at {first} and {second}");
            }
        }
    }
}
