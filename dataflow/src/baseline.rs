//! A single-threaded, from-scratch computation of the same views with plain HashMaps.
//!
//! It is the benchmark's baseline (what a hand-written aggregator costs for the same answer)
//! and the expected answer of end-to-end tests. It shares the per-position arithmetic with the
//! dataflow on purpose, so the comparison measures the engine, not different maths; the
//! dataflow itself is proven against an independent oracle in `tests/oracle.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::marked_rows::{position_view, PositionFigures};
use crate::marks::{choose_mark, MarkInput};
use crate::model::{Fill, PriceKind, PriceUpdate, Text, TradeEvent};
use crate::position::{Execution, PositionCore};
use crate::views::{PositionView, Totals};

/// The baseline's answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BaselineViews {
    pub positions: BTreeMap<(Text, Text), PositionView>,
    pub traders: BTreeMap<Text, Totals>,
    pub firm: Option<Totals>,
}

/// Computes every view from the complete input.
pub fn compute(events: &[TradeEvent], prices: &[PriceUpdate]) -> BaselineViews {
    let mut plain: HashMap<&str, &Fill> = HashMap::new();
    let mut corrections: HashMap<&str, (&str, &Fill)> = HashMap::new();
    let mut corrections_of: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut killed: HashSet<&str> = HashSet::new();
    for event in events {
        match event {
            TradeEvent::Fill(fill) => {
                let slot = plain.entry(&fill.exec_id).or_insert(fill);
                if fill < *slot {
                    *slot = fill;
                }
            }
            TradeEvent::Correct(c) => {
                let slot = corrections
                    .entry(&c.fill.exec_id)
                    .or_insert((&c.target, &c.fill));
                if (c.target.as_str(), &c.fill) < *slot {
                    *slot = (&c.target, &c.fill);
                }
                corrections_of
                    .entry(&c.target)
                    .or_default()
                    .push(&c.fill.exec_id);
                killed.insert(&c.target);
            }
            TradeEvent::Bust(b) => {
                killed.insert(&b.target);
            }
        }
    }
    // Corrections are present once their chain reaches an arrived plain fill.
    let mut present: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = plain
        .keys()
        .copied()
        .filter(|id| corrections_of.contains_key(id))
        .collect();
    while let Some(id) = queue.pop_front() {
        for &correction in corrections_of
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if present.insert(correction) {
                queue.push_back(correction);
            }
        }
    }
    let live = plain
        .iter()
        .filter(|(id, _)| !killed.contains(*id))
        .map(|(_, fill)| *fill)
        .chain(
            corrections
                .iter()
                .filter(|(id, _)| present.contains(*id) && !killed.contains(*id))
                .map(|(_, (_, fill))| *fill),
        );

    let mut by_position: HashMap<(&str, &str), Vec<Execution>> = HashMap::new();
    for fill in live {
        by_position
            .entry((&fill.trader, &fill.symbol))
            .or_default()
            .push(Execution {
                transact_time: fill.transact_time,
                exec_id: fill.exec_id.clone(),
                qty: fill.qty,
                price: fill.price,
            });
    }
    let mut cores: Vec<((&str, &str), PositionCore)> = Vec::with_capacity(by_position.len());
    let mut last_trade: HashMap<&str, (i64, Text, i64)> = HashMap::new();
    for (key, mut executions) in by_position {
        executions.sort_unstable();
        let Some(core) = PositionCore::from_sorted(executions.iter().map(|e| (e, 1))) else {
            continue;
        };
        let candidate = (
            core.last.transact_time,
            core.last.exec_id.clone(),
            core.last.price,
        );
        let slot = last_trade.entry(key.1).or_insert_with(|| candidate.clone());
        if candidate > *slot {
            *slot = candidate;
        }
        cores.push((key, core));
    }
    let mut latest: HashMap<(&str, PriceKind), (i64, i64)> = HashMap::new();
    for p in prices {
        let slot = latest
            .entry((&p.symbol, p.kind))
            .or_insert((p.time, p.price));
        *slot = (*slot).max((p.time, p.price));
    }
    let mut mark_inputs: HashMap<&str, Vec<MarkInput>> = HashMap::new();
    for ((symbol, kind), (_, price)) in latest {
        mark_inputs
            .entry(symbol)
            .or_default()
            .push(MarkInput::Price(kind, price));
    }
    for (symbol, (_, _, price)) in &last_trade {
        mark_inputs
            .entry(symbol)
            .or_default()
            .push(MarkInput::LastTrade(*price));
    }
    let marks: HashMap<&str, _> = mark_inputs
        .iter()
        .filter_map(|(s, inputs)| Some((*s, choose_mark(inputs)?)))
        .collect();

    let mut views = BaselineViews::default();
    for ((trader, symbol), core) in cores {
        let row = position_view(
            trader,
            symbol,
            &PositionFigures::of(&core),
            marks.get(symbol),
        );
        views.positions.insert((trader.into(), symbol.into()), row);
    }
    let mut per_trader: BTreeMap<&str, Vec<&PositionView>> = BTreeMap::new();
    for row in views.positions.values() {
        per_trader.entry(&row.trader).or_default().push(row);
    }
    views.traders = per_trader
        .into_iter()
        .map(|(trader, rows)| (trader.into(), Totals::sum(rows)))
        .collect();
    if !views.positions.is_empty() {
        views.firm = Some(Totals::sum(views.positions.values()));
    }
    views
}
