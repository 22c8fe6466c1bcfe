//! The positions operator: per (trader, symbol), the average-cost fold over live executions in
//! (TransactTime, ExecID) order, maintained incrementally.
//!
//! Average cost depends on order, so a `reduce` has to re-read a position's whole history every
//! time one fill touches it: quadratic over a trading day, and the measured bottleneck of the
//! Kafka path. Here each key keeps its executions and a running fold. A fill later than every
//! execution it has (the common case: fills arrive roughly in time order) is one fold step; only
//! a late fill, a retraction (bust, correction) or a duplicate replays the key's history.
//!
//! The output is still a differential collection, and a pure function of the input collection
//! at each completed time: updates are stashed by time and applied in time order once the
//! input frontier has passed them, exactly like `reduce` for a totally ordered time.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::model::{Diff, Text, Time};
use crate::position::{Execution, PositionCore, PositionFold};
use crate::stash::TimeStash;

pub type PositionKey = (Text, Text);

#[derive(Default)]
struct KeyState {
    /// Live executions with their multiplicity (normally 1).
    executions: BTreeMap<Execution, i64>,
    fold: PositionFold,
    emitted: Option<PositionCore>,
}

impl KeyState {
    /// Applies one update; returns false when the running fold no longer matches `executions`.
    fn update(&mut self, execution: Execution, diff: i64) -> bool {
        let appends = diff > 0
            && self
                .executions
                .last_key_value()
                .is_none_or(|(last, _)| *last < execution);
        if appends {
            self.fold.push(&execution, diff);
            self.executions.insert(execution, diff);
            return true;
        }
        let copies = self.executions.entry(execution).or_default();
        *copies += diff;
        if *copies == 0 {
            self.executions.retain(|_, copies| *copies != 0);
        }
        false
    }

    fn refold(&mut self) {
        self.fold = PositionFold::default();
        for (execution, copies) in &self.executions {
            self.fold.push(execution, *copies);
        }
    }
}

/// Positions over live executions keyed by (trader, symbol).
pub fn positions<'s>(
    executions: VecCollection<'s, Time, (PositionKey, Execution), Diff>,
) -> VecCollection<'s, Time, (PositionKey, PositionCore), Diff> {
    let exchange =
        Exchange::new(|((key, _), _, _): &((PositionKey, Execution), Time, Diff)| key.hashed());
    executions
        .inner
        .unary_frontier(exchange, "Positions", |_capability, _info| {
            let mut stash = TimeStash::default();
            let mut states: HashMap<PositionKey, KeyState> = HashMap::new();
            move |(input, frontier), output| {
                input.for_each(|capability, updates| {
                    for ((key, execution), time, diff) in updates.drain(..) {
                        stash.push(&capability, time, (key, execution, diff));
                    }
                });
                while let Some((capability, mut updates)) = stash.pop_complete(frontier) {
                    // Within one time the order of updates is arbitrary: sort so that a key's
                    // appends come in execution order and its retractions meet their insertions.
                    updates.sort_unstable();
                    let mut session = output.session(&capability);
                    let mut touched: Vec<(PositionKey, bool)> = Vec::new();
                    for (key, execution, diff) in updates {
                        let state = states.entry(key.clone()).or_default();
                        let in_order = state.update(execution, diff as i64);
                        match touched.last_mut() {
                            Some((last, consistent)) if *last == key => *consistent &= in_order,
                            _ => touched.push((key, in_order)),
                        }
                    }
                    for (key, consistent) in touched {
                        let Some(state) = states.get_mut(&key) else {
                            continue;
                        };
                        if !consistent {
                            state.refold();
                        }
                        let core = state.fold.core();
                        if core != state.emitted {
                            if let Some(old) = state.emitted.take() {
                                session.give(((key.clone(), old), *capability.time(), -1));
                            }
                            if let Some(new) = core.clone() {
                                session.give(((key.clone(), new), *capability.time(), 1));
                            }
                            state.emitted = core;
                        }
                        if state.executions.is_empty() {
                            states.remove(&key);
                        }
                    }
                }
            }
        })
        .as_collection()
}
