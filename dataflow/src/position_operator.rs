//! A position's average-cost fold over its live executions in (TransactTime, ExecID) order,
//! maintained incrementally: the state the positions view (`marked_positions.rs`) keeps for
//! each holder of a symbol.
//!
//! Average cost depends on order, so a `reduce` has to re-read a position's whole history every
//! time one fill touches it: quadratic over a trading day, and the measured bottleneck of the
//! Kafka path. Here each position keeps its executions and a running fold. A fill later than
//! every execution it has (the common case: fills arrive roughly in time order) is one fold
//! step; only a late fill, a retraction (bust, correction) or a duplicate replays the
//! position's history, from the checkpoint before the earliest change.

use crate::position::{Execution, PositionCore, PositionFold};

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
pub(crate) struct KeyState {
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
}

/// The fewest executions a position's vector grows by.
const MIN_GROWTH: usize = 4;

impl KeyState {
    /// Applies one update; returns false when the running fold no longer matches `executions`.
    pub(crate) fn update(&mut self, execution: Execution, diff: i64) -> bool {
        let appends = self.stale_from.is_none()
            && diff > 0
            && self
                .executions
                .last()
                .is_none_or(|(last, _)| *last < execution);
        if appends {
            self.fold.push(&execution, diff);
            self.make_room();
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
            Err(at) => {
                self.make_room();
                self.executions.insert(at, (execution, diff));
            }
        }
        false
    }

    /// Room for one more execution, grown by a quarter rather than doubled: every live
    /// execution of the day stays here, and a doubled vector holds up to as much again unused
    /// (a position with 4,500 executions in room for 8,192). The vector's reallocations copy
    /// more in total (about five times its final size against two), once per growth.
    fn make_room(&mut self) {
        let executions = &mut self.executions;
        if executions.len() == executions.capacity() {
            executions.reserve_exact((executions.len() / 4).max(MIN_GROWTH));
        }
    }

    /// The position over the executions folded so far (all of them after `refold`).
    pub(crate) fn core(&self) -> Option<PositionCore> {
        self.fold.core()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.executions.is_empty()
    }

    /// Brings the fold up to date from the last checkpoint before the earliest change.
    pub(crate) fn refold(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Appended or inserted out of order, a position's executions never hold more than a
    /// quarter of their number in unused room (a doubled vector would hold 2,048 for 1,100).
    #[test]
    fn executions_grow_by_a_quarter() {
        let mut state = KeyState::default();
        let room = |state: &KeyState| state.executions.capacity() - state.executions.len();
        for time in (0..2200).step_by(2) {
            state.update(Execution::for_test(time, 1, 100), 1);
            assert!(room(&state) <= state.executions.len() / 4 + MIN_GROWTH);
        }
        for time in (1..200).step_by(2) {
            state.update(Execution::for_test(time, 1, 100), 1);
            assert!(room(&state) <= state.executions.len() / 4 + MIN_GROWTH);
        }
        assert_eq!(state.executions.len(), 1200);
    }

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
