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
//! owns the symbol: a holder's trade costs a map update. What leaves the operator is what
//! changed: a holder's figures when its trades changed them, and the symbol's mark when it
//! moved. The rows, which carry the mark, and the totals are formed where the views are
//! published (`marked_rows.rs`): a mark that moves in every epoch no longer re-forms every
//! holder's row in every epoch.
//!
//! Like `reduce` for a totally ordered time, a time's updates are applied once the input
//! frontier has passed it, and in time order, so the output at every completed time is the
//! view over the input collections at that time (the oracle property tests check it).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use crate::day_state::DayState;
use crate::graph::ExportRoute;
use crate::groups::Groups;
use crate::key_sort::sort_by_key_then;
use crate::marked_rows::{ExportRecord, PositionFigures};
use crate::marks::{choose_mark, Mark, MarkInput};
use crate::model::{Diff, Fill, PriceKind, PriceUpdate, Text, Time};
use crate::position::{Execution, LastTrade, PositionCore};
use crate::position_operator::KeyState;
use crate::stash::TimeStash;
use crate::FastMap;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    /// The latest of the holders' last trades: the symbol's last traded price. Kept as the
    /// latest alone, not every holder's in a B-tree: a holder's new trade is nearly always the
    /// symbol's latest, and the B-tree's removal and insertion for each holder a time touched
    /// were an eighth of this operator's samples in 250-message epochs. The holders are read
    /// again only when the holder of the latest one loses it (a bust or correction of the
    /// symbol's latest trade).
    last_trade: Option<LastTrade>,
    /// Per kind, the prices with the time they were set: the latest is in force.
    prices: BTreeMap<PriceKind, BTreeMap<(i64, i64), Diff>>,
    /// The mark last sent to the export.
    mark: Option<Mark>,
}

impl SymbolState {
    fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.last_trade.is_none() && self.prices.is_empty()
    }

    /// The waterfall over the latest price of each kind and the last trade.
    fn current_mark(&self) -> Option<Mark> {
        let last_trade = self
            .last_trade
            .as_ref()
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

/// Every position over the live fills, by (trader, symbol), and each symbol's mark when the
/// waterfall has one: each change as the record the export takes, with the exporting worker
/// it goes to.
pub(crate) fn positions_view<'s>(
    live: VecCollection<'s, Time, Fill, Diff>,
    prices: VecCollection<'s, Time, PriceUpdate, Diff>,
    route: ExportRoute,
) -> VecCollection<'s, Time, (usize, ExportRecord), Diff> {
    // Two inputs, each exchanged by symbol, rather than one stream of symbol inputs mapped
    // and concatenated before it: that map was a stage of its own that copied every live fill
    // once more (3% of a replay's samples).
    let fills_by_symbol = Exchange::new(|(fill, _, _): &(Fill, Time, Diff)| fill.symbol.hashed());
    let prices_by_symbol =
        Exchange::new(|(price, _, _): &(PriceUpdate, Time, Diff)| price.symbol.hashed());
    let mut builder = OperatorBuilder::new("PositionsView".to_owned(), live.inner.scope());
    let mut fills_input = builder.new_input(live.inner, fills_by_symbol);
    let mut prices_input = builder.new_input(prices.inner, prices_by_symbol);
    let (records_out, records) = builder.new_output();
    let mut records_out = OutputBuilder::from(records_out);
    builder.build(move |_capabilities| {
        let mut stash: TimeStash<(Text, SymbolInput, Diff), Capability<Time>> =
            TimeStash::default();
        let mut by_symbol: Groups<Text, HolderInput> = Groups::default();
        let mut symbols: DayState<FastMap<Text, SymbolState>> = DayState::default();
        let mut touched = FastMap::default();
        let mut sort_keys = Vec::new();
        move |frontiers| {
            let mut records_out = records_out.activate();
            fills_input.for_each(|capability, updates| {
                for (fill, time, diff) in updates.drain(..) {
                    let execution = Execution {
                        transact_time: fill.transact_time,
                        exec_id: fill.exec_id,
                        qty: fill.qty,
                        price: fill.price,
                    };
                    let input = SymbolInput::Execution(fill.trader, execution);
                    let hold = || capability.delayed(&time, 0);
                    stash.push_held(time, (fill.symbol, input, diff), hold);
                }
            });
            prices_input.for_each(|capability, updates| {
                for (price, time, diff) in updates.drain(..) {
                    let input = SymbolInput::Price(price.kind, price.time, price.price);
                    let hold = || capability.delayed(&time, 0);
                    stash.push_held(time, (price.symbol, input, diff), hold);
                }
            });
            stash.complete_all(frontiers, |capability, updates| {
                for (symbol, input, diff) in updates.drain(..) {
                    by_symbol.push(symbol, (holder_hash(&input), input, diff));
                }
                let time = *capability.time();
                let mut records = records_out.session(&capability);
                let mut give = |record| {
                    for routed in route.route(record) {
                        records.give((routed, time, 1));
                    }
                };
                by_symbol.drain(|symbol, batch| {
                    sort_by_key_then(batch, &mut sort_keys, apply_key, in_apply_order);
                    let state = symbols.entry(symbol.clone()).or_default();
                    let batch = batch.drain(..).map(|(_, input, diff)| (input, diff));
                    apply(&symbol, state, batch, &mut touched, &mut give);
                    if state.is_empty() {
                        symbols.remove(&symbol);
                    }
                });
            });
        }
    });
    records.as_collection()
}

/// One of a symbol's updates of a time, with its trader's hash if it is an execution.
type HolderInput = (u64, SymbolInput, Diff);

fn holder_hash(input: &SymbolInput) -> u64 {
    match input {
        SymbolInput::Execution(trader, _) => trader.hashed(),
        SymbolInput::Price(..) => 0,
    }
}

/// What the updates are sorted by before [`in_apply_order`] decides ties: the trader's hash,
/// then an execution's time, the order's own start. A price's time is 0: [`apply`] takes a
/// symbol's prices apart from its executions, and the rest of the order decides between them.
fn apply_key((hash, input, _): &HolderInput) -> (u64, i64) {
    match input {
        SymbolInput::Execution(_, execution) => (*hash, execution.transact_time),
        SymbolInput::Price(..) => (*hash, 0),
    }
}

/// The order a symbol's updates of a time are applied in: a holder's adjacent with its
/// executions in their order (so that they append to its fold), a retraction beside its
/// insertion. Sorting by the trader's text compared it at nearly every step (about a tenth of
/// the workers' time in a replay, `perf`, 1M messages); here the hash decides between holders,
/// and the execution (its time first) within a holder. The rest of the order only separates
/// holders whose hashes collide: their executions may then interleave, which is the same to
/// [`apply`], which keeps each holder's apart.
fn in_apply_order(a: &HolderInput, b: &HolderInput) -> std::cmp::Ordering {
    let ((hash_a, input_a, diff_a), (hash_b, input_b, diff_b)) = (a, b);
    hash_a
        .cmp(hash_b)
        .then_with(|| match (input_a, input_b) {
            (SymbolInput::Execution(trader_a, a), SymbolInput::Execution(trader_b, b)) => {
                a.cmp(b).then_with(|| trader_a.cmp(trader_b))
            }
            _ => input_a.cmp(input_b),
        })
        .then_with(|| diff_a.cmp(diff_b))
}

/// The holders whose executions changed in a time: their position before, and whether the
/// updates all appended to their fold. One map for every symbol and time, cleared each time.
type Touched = FastMap<Text, (Option<PositionCore>, bool)>;

/// Applies one symbol's updates of a time; hands what changed to `changed`: each holder whose
/// figures changed, and the mark when it moved.
fn apply(
    symbol: &Text,
    state: &mut SymbolState,
    batch: impl Iterator<Item = (SymbolInput, Diff)>,
    touched: &mut Touched,
    changed: &mut impl FnMut(ExportRecord),
) {
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
    let mut latest_lost = false;
    for (trader, (before, consistent)) in touched.iter() {
        let Some(holder) = state.holders.get_mut(trader) else {
            continue;
        };
        if !consistent {
            holder.executions.refold();
        }
        holder.core = holder.executions.core();
        let (old, new) = (
            before.as_ref().map(|c| &c.last),
            holder.core.as_ref().map(|c| &c.last),
        );
        if old != new {
            if new > state.last_trade.as_ref() {
                state.last_trade = new.cloned();
            } else if old.is_some() && old == state.last_trade.as_ref() {
                latest_lost = true;
            }
        }
        let figures = holder.core.as_ref().map(PositionFigures::of);
        if holder.executions.is_empty() {
            state.holders.remove(trader);
        }
        // Positions that differ only in what the row does not show (the ExecID of the last
        // trade: a correction that repeats its target's quantity and price) send nothing.
        if figures != before.as_ref().map(PositionFigures::of) {
            changed(ExportRecord::Position {
                trader: trader.clone(),
                symbol: symbol.clone(),
                figures,
            });
        }
    }
    if latest_lost {
        let holders = state.holders.values();
        state.last_trade = holders
            .filter_map(|h| Some(&h.core.as_ref()?.last))
            .max()
            .cloned();
    }
    let mark = state.current_mark();
    if mark != state.mark {
        state.mark = mark;
        changed(ExportRecord::Mark(symbol.clone(), mark));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marked_rows::MarkedRows;
    use crate::views::{PositionView, ViewSnapshot};

    /// The rows a symbol's updates make when applied in `batches`, each batch's records
    /// published as the export does.
    fn rows(batches: &[&[(SymbolInput, Diff)]]) -> Vec<PositionView> {
        let symbol: Text = "SYM".into();
        let mut state = SymbolState::default();
        let mut touched = Touched::default();
        let mut marked_rows = MarkedRows::default();
        let mut snapshot = ViewSnapshot::default();
        for batch in batches {
            apply(
                &symbol,
                &mut state,
                batch.iter().cloned(),
                &mut touched,
                &mut |record| match record {
                    ExportRecord::Position {
                        trader,
                        symbol,
                        figures,
                    } => marked_rows.position(trader, symbol, figures),
                    ExportRecord::Mark(symbol, mark) => marked_rows.mark(symbol, mark),
                    other => panic!("not the positions view's: {other:?}"),
                },
            );
            let mut changes = Vec::new();
            marked_rows.publish(&mut changes);
            snapshot.apply(&changes);
        }
        snapshot.positions.into_values().collect()
    }

    /// A symbol's updates applied in several batches (times) make the same rows as in one,
    /// the mark changing between and within the batches.
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
        let traders: Vec<&str> = whole.iter().map(|row| row.trader.as_str()).collect();
        assert_eq!(
            traders,
            ["T1", "T3", "T4"],
            "T2's one trade was retracted: {whole:?}"
        );
        for batches in crate::batches::three_way_cuts(&updates) {
            let lengths = batches.map(<[_]>::len);
            assert_eq!(rows(&batches), whole, "batches of {lengths:?}");
        }
    }

    /// A mark that moves sends the mark alone, not a row per holder; a holder's trade sends
    /// its figures, and the mark its price moved.
    #[test]
    fn a_mark_change_sends_the_mark_and_no_holder() {
        let symbol: Text = "SYM".into();
        let mut state = SymbolState::default();
        let mut touched = Touched::default();
        let mut sent = Vec::new();
        let mut apply_one = |input: SymbolInput, sent: &mut Vec<ExportRecord>| {
            let batch = std::iter::once((input, 1));
            apply(&symbol, &mut state, batch, &mut touched, &mut |r| {
                sent.push(r)
            });
        };
        for (trader, time) in [("T1", 1), ("T2", 2), ("T3", 3)] {
            let execution = Execution::for_test(time, 10, 100 + time);
            apply_one(SymbolInput::Execution(trader.into(), execution), &mut sent);
        }
        sent.clear();
        apply_one(
            SymbolInput::Price(PriceKind::OfficialClose, 4, 200),
            &mut sent,
        );
        let close = Mark {
            price: 200,
            source: crate::MarkSource::OfficialClose,
        };
        assert_eq!(sent, [ExportRecord::Mark(symbol.clone(), Some(close))]);
        sent.clear();
        apply_one(
            SymbolInput::Price(PriceKind::OfficialClose, 4, 200),
            &mut sent,
        );
        assert_eq!(sent, [], "a second close at the same price moves nothing");
        let execution = Execution::for_test(5, -10, 150);
        apply_one(SymbolInput::Execution("T1".into(), execution), &mut sent);
        let [ExportRecord::Position {
            trader, figures, ..
        }] = &sent[..]
        else {
            panic!("one position and no mark: {sent:?}");
        };
        assert_eq!(
            (trader.as_str(), figures.map(|f| f.net_qty)),
            ("T1", Some(0))
        );
    }
}
