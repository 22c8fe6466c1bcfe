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
                        let rest = std::iter::from_fn(|| {
                            drained
                                .next_if(|((next, _), _)| *next == symbol)
                                .map(|((_, input), diff)| (input, diff))
                        });
                        apply(
                            &symbol,
                            state,
                            std::iter::once((first, diff)).chain(rest),
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

/// Applies one symbol's updates of a time; pushes the rows that changed (old ones negated),
/// consolidated: a row is one trader's, so only a trader's row before and after can cancel.
fn apply(
    symbol: &Text,
    state: &mut SymbolState,
    batch: impl Iterator<Item = (SymbolInput, Diff)>,
    changes: &mut Vec<(PositionView, Diff)>,
) {
    let old_mark = state.mark;
    // The holders whose position changed, with their position before.
    let mut touched: FastMap<Text, Multiset<PositionCore>> = FastMap::default();
    for (input, diff) in batch {
        match input {
            SymbolInput::Position(trader, core) => {
                add(&mut state.last_trades, core.last.clone(), diff);
                let cores = match state.holders.get_mut(&trader) {
                    Some(cores) => cores,
                    None => state.holders.entry(trader.clone()).or_default(),
                };
                touched.entry(trader).or_insert_with(|| cores.clone());
                cores.update(core, diff);
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
    // Only now: a position's update is its old core's retraction and its new core's
    // insertion, in either order, and the holder stays.
    for trader in touched.keys() {
        if state.holders.get(trader).is_some_and(Multiset::is_empty) {
            state.holders.remove(trader);
        }
    }
    let new_mark = state.current_mark();
    state.mark = new_mark;
    let mut row = |trader: &Text, core: &PositionCore, mark: Option<Mark>, diff: Diff| {
        changes.push((position_view(trader, symbol, core, mark.as_ref()), diff));
    };
    if new_mark == old_mark {
        for (trader, before) in &touched {
            let after = state
                .holders
                .get(trader)
                .map_or(&[][..], Multiset::as_slice);
            differing(before.as_slice(), after, |core, diff| {
                row(trader, core, new_mark, diff)
            });
        }
    } else {
        // Every holder's row carries the mark: no row before equals one after.
        for (trader, before) in &touched {
            for (core, count) in before.as_slice() {
                row(trader, core, old_mark, -count);
            }
        }
        for (trader, cores) in &state.holders {
            for (core, count) in cores.as_slice() {
                if !touched.contains_key(trader) {
                    row(trader, core, old_mark, -count);
                }
                row(trader, core, new_mark, *count);
            }
        }
    }
}

/// Calls `change` with each core whose multiplicity differs between `before` and `after` (both
/// sorted, each core once) and by how much.
fn differing(
    before: &[(PositionCore, Diff)],
    after: &[(PositionCore, Diff)],
    mut change: impl FnMut(&PositionCore, Diff),
) {
    let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
    loop {
        let order = match (b.peek(), a.peek()) {
            (Some((old, _)), Some((new, _))) => old.cmp(new),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return,
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((old, count)) = b.next() {
                    change(old, -count);
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((new, count)) = a.next() {
                    change(new, *count);
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((core, old_count)), Some((_, new_count))) = (b.next(), a.next()) {
                    if new_count != old_count {
                        change(core, new_count - old_count);
                    }
                }
            }
        }
    }
}
