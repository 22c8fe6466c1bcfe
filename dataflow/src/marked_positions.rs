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
use timely::dataflow::operators::generic::operator::Operator;

use crate::graph::position_view;
use crate::marks::{choose_mark, Mark, MarkInput};
use crate::model::{Diff, Fill, PriceKind, PriceUpdate, Text, Time};
use crate::position::{Execution, LastTrade, PositionCore};
use crate::position_operator::KeyState;
use crate::stash::TimeStash;
use crate::views::PositionView;
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
/// when the waterfall has one.
pub fn positions_view<'s>(
    live: VecCollection<'s, Time, Fill, Diff>,
    prices: VecCollection<'s, Time, PriceUpdate, Diff>,
) -> VecCollection<'s, Time, PositionView, Diff> {
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
    inputs
        .inner
        .unary_frontier(exchange, "PositionsView", |_capability, _info| {
            let mut stash = TimeStash::default();
            let mut symbols: FastMap<Text, SymbolState> = FastMap::default();
            let mut changes: Vec<(PositionView, Diff)> = Vec::new();
            let mut touched = FastMap::default();
            move |(input, frontier), output| {
                input.for_each(|capability, updates| {
                    for (record, time, diff) in updates.drain(..) {
                        stash.push(&capability, time, (record, diff));
                    }
                });
                stash.complete(frontier, |capability, updates| {
                    // Each symbol's updates adjacent, a holder's executions in order (so that
                    // they append to its fold) and a retraction beside its insertion.
                    updates.sort_unstable();
                    let mut session = output.session(&capability);
                    let time = *capability.time();
                    let mut drained = updates.drain(..).peekable();
                    while let Some(((symbol, first), diff)) = drained.next() {
                        let state = symbols.entry(symbol.clone()).or_default();
                        let rest = std::iter::from_fn(|| {
                            drained
                                .next_if(|((next, _), _)| *next == symbol)
                                .map(|((_, input), diff)| (input, diff))
                        });
                        apply(
                            &symbol,
                            state,
                            std::iter::once((first, diff)).chain(rest),
                            &mut touched,
                            &mut changes,
                        );
                        if state.is_empty() {
                            symbols.remove(&symbol);
                        }
                        for (view, diff) in changes.drain(..) {
                            session.give((view, time, diff));
                        }
                    }
                });
            }
        })
        .as_collection()
}

/// The holders whose executions changed in a time: their position before, and whether the
/// updates all appended to their fold. One map for every symbol and time, cleared each time.
type Touched = FastMap<Text, (Option<PositionCore>, bool)>;

/// Applies one symbol's updates of a time; pushes the rows that changed (old ones negated).
fn apply(
    symbol: &Text,
    state: &mut SymbolState,
    batch: impl Iterator<Item = (SymbolInput, Diff)>,
    touched: &mut Touched,
    changes: &mut Vec<(PositionView, Diff)>,
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
    let mut row = |trader: &Text, core: &PositionCore, mark: Option<Mark>, diff: Diff| {
        changes.push((position_view(trader, symbol, core, mark.as_ref()), diff));
    };
    if new_mark == old_mark {
        for (trader, (before, _)) in touched.iter() {
            let after = state.holders.get(trader).and_then(|h| h.core.as_ref());
            if before.as_ref() == after {
                continue;
            }
            // Positions that differ only in what the row does not show (the ExecID of the
            // last trade: a correction that repeats its target's quantity and price) make the
            // same row, which must not be retracted and inserted at once.
            let old = before
                .as_ref()
                .map(|core| position_view(trader, symbol, core, new_mark.as_ref()));
            let new = after.map(|core| position_view(trader, symbol, core, new_mark.as_ref()));
            if old != new {
                changes.extend(old.map(|row| (row, -1)));
                changes.extend(new.map(|row| (row, 1)));
            }
        }
    } else {
        // Every holder's row carries the mark: no row before equals one after. Each holder's
        // old row goes out just before its new one, as above: the fan-out passes an update on
        // to the export as its new row alone when the two are side by side.
        for (trader, (before, _)) in touched.iter() {
            let still_held = state.holders.get(trader).is_some_and(|h| h.core.is_some());
            if let (Some(old), false) = (before, still_held) {
                row(trader, old, old_mark, -1);
            }
        }
        for (trader, holder) in &state.holders {
            let Some(core) = &holder.core else {
                continue;
            };
            match touched.get(trader) {
                Some((Some(old), _)) => row(trader, old, old_mark, -1),
                Some((None, _)) => {}
                None => row(trader, core, old_mark, -1),
            }
            row(trader, core, new_mark, 1);
        }
    }
}
