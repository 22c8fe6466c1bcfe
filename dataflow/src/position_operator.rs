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

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::model::{Diff, Text, Time};
use crate::position::{Execution, PositionCore, PositionFold};
use crate::stash::TimeStash;
use crate::FastMap;

pub type PositionKey = (Text, Text);

/// Executions between two checkpoints of a key's fold.
const CHECKPOINT_EVERY: usize = 32;

/// A key's running fold, with its state kept every `CHECKPOINT_EVERY` executions. A fill
/// earlier than some the key has (two workers reading different parts of the day side by side
/// send them every epoch) replays the fold from the checkpoint before it, not from the first
/// execution: in 250-message epochs of a 1M-message replay, replays from the start were 40% of
/// the time.
#[derive(Default)]
struct CheckpointedFold {
    fold: PositionFold,
    /// The fold after each checkpointed execution, ascending.
    checkpoints: Vec<(Execution, PositionFold)>,
    /// Executions folded since the last checkpoint.
    since_checkpoint: usize,
}

impl CheckpointedFold {
    /// Folds in the next execution (not earlier than the last).
    fn push(&mut self, execution: &Execution, copies: i64) {
        self.fold.push(execution, copies);
        self.since_checkpoint += 1;
        if self.since_checkpoint >= CHECKPOINT_EVERY {
            self.checkpoints
                .push((execution.clone(), self.fold.clone()));
            self.since_checkpoint = 0;
        }
    }

    /// Goes back to the last checkpoint before `changed`; returns the last execution it has
    /// folded, if any, which the fold goes on after.
    fn rewind_before(&mut self, changed: &Execution) -> Option<Execution> {
        let still_valid = self.checkpoints.partition_point(|(last, _)| last < changed);
        self.checkpoints.truncate(still_valid);
        self.since_checkpoint = 0;
        match self.checkpoints.last() {
            Some((last, fold)) => {
                self.fold = fold.clone();
                Some(last.clone())
            }
            None => {
                self.fold = PositionFold::default();
                None
            }
        }
    }

    fn core(&self) -> Option<PositionCore> {
        self.fold.core()
    }
}

#[derive(Default)]
struct KeyState {
    /// Live executions with their multiplicity (normally 1), ascending. A sorted vector rather
    /// than a B-tree: nearly every update is an append, which here touches the vector's tail
    /// (one cache line) where the B-tree walked from its root. In 250-message epochs the
    /// B-tree's walk was most of this operator's time, each step a cache miss (`perf` of
    /// `eod-bench --epoch-messages 250`, bench/RESULTS.md 2026-12-04). An insertion out of
    /// order moves the suffix, which the refold after it reads anyway.
    executions: Vec<(Execution, i64)>,
    fold: CheckpointedFold,
    /// The earliest execution changed out of order since `fold` last matched `executions`.
    stale_from: Option<Execution>,
    emitted: Option<PositionCore>,
}

impl KeyState {
    /// Applies one update; returns false when the running fold no longer matches `executions`.
    fn update(&mut self, execution: Execution, diff: i64) -> bool {
        let appends = self.stale_from.is_none()
            && diff > 0
            && self
                .executions
                .last()
                .is_none_or(|(last, _)| *last < execution);
        if appends {
            self.fold.push(&execution, diff);
            self.executions.push((execution, diff));
            return true;
        }
        if self
            .stale_from
            .as_ref()
            .is_none_or(|stale| execution < *stale)
        {
            self.stale_from = Some(execution.clone());
        }
        match self
            .executions
            .binary_search_by(|(held, _)| held.cmp(&execution))
        {
            Ok(at) => {
                self.executions[at].1 += diff;
                if self.executions[at].1 == 0 {
                    self.executions.remove(at);
                }
            }
            Err(at) => self.executions.insert(at, (execution, diff)),
        }
        false
    }

    /// Brings the fold up to date from the last checkpoint before the earliest change.
    fn refold(&mut self) {
        let Some(stale) = self.stale_from.take() else {
            return;
        };
        let from = match self.fold.rewind_before(&stale) {
            Some(last) => self.executions.partition_point(|(held, _)| *held <= last),
            None => 0,
        };
        for (execution, copies) in &self.executions[from..] {
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
            let mut states: FastMap<PositionKey, KeyState> = FastMap::default();
            move |(input, frontier), output| {
                input.for_each(|capability, updates| {
                    for ((key, execution), time, diff) in updates.drain(..) {
                        stash.push(&capability, time, (key, execution, diff));
                    }
                });
                stash.complete(frontier, |capability, updates| {
                    // Within one time the order of updates is arbitrary: sort so that a key's
                    // appends come in execution order and its retractions meet their insertions.
                    updates.sort_unstable();
                    let mut session = output.session(&capability);
                    let mut touched: Vec<(PositionKey, bool)> = Vec::new();
                    for (key, execution, diff) in updates.drain(..) {
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
                });
            }
        })
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Whatever order executions arrive in, and whatever is retracted, the running fold
        /// (appends, checkpoints and replays from them) equals a fold from scratch over the
        /// executions the key holds, after every batch.
        #[test]
        fn the_fold_equals_a_fold_from_scratch_after_every_batch(
            batches in prop::collection::vec(
                prop::collection::vec((0i64..400, -50i64..50, 1i64..20, 0u8..8), 1..40),
                1..12,
            ),
        ) {
            let mut state = KeyState::default();
            let mut held: BTreeMap<Execution, i64> = BTreeMap::new();
            for batch in batches {
                let mut updates: Vec<(Execution, i64)> = Vec::new();
                for (time, qty, price, retract) in batch {
                    let qty = if qty == 0 { 1 } else { qty };
                    // Now and then, take back an execution the key holds.
                    match held.keys().nth(time as usize % held.len().max(1)).cloned() {
                        Some(existing) if retract < 2 => {
                            held.remove(&existing);
                            updates.push((existing, -1));
                        }
                        _ => {
                            let new = Execution::for_test(time, qty, price);
                            if !held.contains_key(&new) && !updates.iter().any(|(e, _)| e.exec_id == new.exec_id) {
                                held.insert(new.clone(), 1);
                                updates.push((new, 1));
                            }
                        }
                    }
                }
                updates.sort_unstable();
                let mut consistent = true;
                for (execution, diff) in updates {
                    consistent &= state.update(execution, diff);
                }
                if !consistent {
                    state.refold();
                }
                let expected = PositionCore::from_sorted(held.iter().map(|(e, c)| (e, *c)));
                prop_assert_eq!(state.fold.core(), expected);
            }
        }
    }
}
