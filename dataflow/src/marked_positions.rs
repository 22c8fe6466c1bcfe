//! The positions view: every position with its symbol's mark, kept per symbol in one operator.
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

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::graph::position_view;
use crate::marks::{choose_mark, Mark, MarkInput};
use crate::model::{Diff, PriceKind, PriceUpdate, Text, Time};
use crate::multiset::Multiset;
use crate::position::{LastTrade, PositionCore};
use crate::position_operator::PositionKey;
use crate::stash::TimeStash;
use crate::views::PositionView;
use crate::FastMap;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum SymbolInput {
    Position(Text, PositionCore),
    /// A price of a kind, with the time it was set: the latest per kind is in force.
    Price(PriceKind, i64, i64),
}

/// What one symbol's rows are made of.
#[derive(Default)]
struct SymbolState {
    /// Each holder's position (one core, unless the input says otherwise).
    holders: FastMap<Text, Multiset<PositionCore>>,
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
        let inputs: Vec<MarkInput> = prices.chain(last_trade).collect();
        choose_mark(&inputs)
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

/// Every position's row, with its symbol's mark when the waterfall has one.
pub fn marked_positions<'s>(
    positions: VecCollection<'s, Time, (PositionKey, PositionCore), Diff>,
    prices: VecCollection<'s, Time, PriceUpdate, Diff>,
) -> VecCollection<'s, Time, PositionView, Diff> {
    let inputs = positions
        .map(|((trader, symbol), core)| (symbol, SymbolInput::Position(trader, core)))
        .concat(prices.map(|p| (p.symbol, SymbolInput::Price(p.kind, p.time, p.price))));
    let exchange =
        Exchange::new(|((symbol, _), _, _): &((Text, SymbolInput), Time, Diff)| symbol.hashed());
    inputs
        .inner
        .unary_frontier(exchange, "MarkedPositions", |_capability, _info| {
            let mut stash = TimeStash::default();
            let mut symbols: FastMap<Text, SymbolState> = FastMap::default();
            let mut changes: Vec<(PositionView, Diff)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|capability, updates| {
                    for (record, time, diff) in updates.drain(..) {
                        stash.push(&capability, time, (record, diff));
                    }
                });
                stash.complete(frontier, |capability, updates| {
                    // Each symbol's updates adjacent.
                    updates.sort_unstable_by(|((a, _), _), ((b, _), _)| a.cmp(b));
                    let mut session = output.session(&capability);
                    let time = *capability.time();
                    let mut drained = updates.drain(..).peekable();
                    while let Some(((symbol, first), diff)) = drained.next() {
                        let state = symbols.entry(symbol.clone()).or_default();
                        let mut batch = vec![(first, diff)];
                        while let Some(((_, input), diff)) =
                            drained.next_if(|((next, _), _)| *next == symbol)
                        {
                            batch.push((input, diff));
                        }
                        apply(&symbol, state, batch, &mut changes);
                        if state.is_empty() {
                            symbols.remove(&symbol);
                        }
                        consolidate(&mut changes);
                        for (view, diff) in changes.drain(..) {
                            session.give((view, time, diff));
                        }
                    }
                });
            }
        })
        .as_collection()
}

/// Applies one symbol's updates of a time; pushes the rows that changed (old ones negated).
fn apply(
    symbol: &Text,
    state: &mut SymbolState,
    batch: Vec<(SymbolInput, Diff)>,
    changes: &mut Vec<(PositionView, Diff)>,
) {
    let old_mark = state.mark;
    // The holders whose position changed, with their position before.
    let mut touched: FastMap<Text, Multiset<PositionCore>> = FastMap::default();
    for (input, diff) in batch {
        match input {
            SymbolInput::Position(trader, core) => {
                add(&mut state.last_trades, core.last.clone(), diff);
                let cores = state.holders.entry(trader.clone()).or_default();
                touched
                    .entry(trader.clone())
                    .or_insert_with(|| cores.clone());
                cores.update(core, diff);
                if cores.is_empty() {
                    state.holders.remove(&trader);
                }
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
    let new_mark = state.current_mark();
    state.mark = new_mark;
    let mut rows = |trader: &Text, cores: &Multiset<PositionCore>, mark: Option<Mark>, sign| {
        for (core, count) in cores.as_slice() {
            let row = position_view(trader, symbol, core, mark.as_ref());
            changes.push((row, count * sign));
        }
    };
    if new_mark == old_mark {
        for (trader, before) in &touched {
            rows(trader, before, old_mark, -1);
            if let Some(after) = state.holders.get(trader) {
                rows(trader, after, new_mark, 1);
            }
        }
    } else {
        // Every holder's row carries the mark.
        for (trader, before) in &touched {
            rows(trader, before, old_mark, -1);
        }
        for (trader, cores) in &state.holders {
            if !touched.contains_key(trader) {
                rows(trader, cores, old_mark, -1);
            }
            rows(trader, cores, new_mark, 1);
        }
    }
}
