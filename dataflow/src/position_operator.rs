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
    /// Executions folded so far, each copy counted.
    folded: usize,
    /// After each checkpointed execution, ascending: that execution, how many were folded up
    /// to it (a copy of it may follow), and the fold.
    checkpoints: Vec<(Execution, usize, PositionFold)>,
    /// Executions folded since the last checkpoint.
    since_checkpoint: usize,
}

impl CheckpointedFold {
    /// Folds in the next execution (not earlier than the last).
    fn push(&mut self, execution: &Execution) {
        self.fold.push(execution, 1);
        self.folded += 1;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= CHECKPOINT_EVERY {
            self.checkpoints
                .push((execution.clone(), self.folded, self.fold.clone()));
            self.since_checkpoint = 0;
        }
    }

    /// Goes back to the last checkpoint before `changed`; returns how many executions it has
    /// folded, which the fold goes on after. Every execution before that point is earlier than
    /// `changed`, so it has not moved.
    fn rewind_before(&mut self, changed: &Execution) -> usize {
        let still_valid = self
            .checkpoints
            .partition_point(|(last, _, _)| last < changed);
        self.checkpoints.truncate(still_valid);
        self.since_checkpoint = 0;
        (self.fold, self.folded) = match self.checkpoints.last() {
            Some((_, folded, fold)) => (fold.clone(), *folded),
            None => (PositionFold::default(), 0),
        };
        self.folded
    }

    fn core(&self) -> Option<PositionCore> {
        self.fold.core()
    }
}

#[derive(Default)]
pub(crate) struct KeyState {
    /// Live executions, ascending; one held twice is there twice. Nearly every execution is
    /// held once, and a count beside each was 8 bytes of every fill of the day. A sorted
    /// vector rather than a B-tree: nearly every update is an append, which here touches the
    /// vector's tail (one cache line) where the B-tree walked from its root. In 250-message
    /// epochs the B-tree's walk was most of this operator's time, each step a cache miss
    /// (`perf` of `eod-bench --epoch-messages 250`, bench/RESULTS.md 2026-12-04). An insertion
    /// out of order moves the suffix, which the refold after it reads anyway.
    executions: Vec<Execution>,
    /// Executions retracted more times than they were added, with how many times more: in a
    /// collection a count may go below zero, and a later addition cancels it. They are not in
    /// the position (nor in `executions`).
    owed: Vec<(Execution, i64)>,
    fold: CheckpointedFold,
    /// The earliest execution changed out of order since `fold` last matched `executions`.
    stale_from: Option<Execution>,
}

/// The fewest executions a position's vector grows by.
const MIN_GROWTH: usize = 4;

impl KeyState {
    /// Applies one update; returns false when the running fold no longer matches `executions`.
    pub(crate) fn update(&mut self, execution: Execution, diff: i64) -> bool {
        let diff = self.settle_owed(&execution, diff);
        if diff == 0 {
            return true;
        }
        let appends = self.stale_from.is_none()
            && diff > 0
            && self.executions.last().is_none_or(|last| *last < execution);
        if appends {
            for _ in 1..diff {
                self.append(execution.clone());
            }
            self.append(execution);
            return true;
        }
        if self
            .stale_from
            .as_ref()
            .is_none_or(|stale| execution < *stale)
        {
            self.stale_from = Some(execution.clone());
        }
        // One search, not a second for the end of the equal run: an execution is nearly always
        // held once, and each search's steps miss the cache on a position of a day's fills.
        let from = self.executions.partition_point(|held| *held < execution);
        let held = self.executions[from..].iter();
        let to = from + held.take_while(|held| **held == execution).count();
        if diff > 0 {
            for _ in 0..diff {
                self.make_room();
                self.executions.insert(to, execution.clone());
            }
        } else {
            let held = to - from;
            let removed = held.min(diff.unsigned_abs() as usize);
            self.executions.drain(from..from + removed);
            let still_owed = diff + removed as i64;
            if still_owed < 0 {
                match self.owed.iter_mut().find(|(owed, _)| *owed == execution) {
                    Some((_, owed)) => *owed += still_owed,
                    None => self.owed.push((execution, still_owed)),
                }
            }
        }
        false
    }

    /// Folds in and keeps an execution later than every one the key has.
    fn append(&mut self, execution: Execution) {
        self.fold.push(&execution);
        self.make_room();
        self.executions.push(execution);
    }

    /// What is left of `diff` for `execution` once it has cancelled what the key owes of it.
    fn settle_owed(&mut self, execution: &Execution, diff: i64) -> i64 {
        if diff <= 0 || self.owed.is_empty() {
            return diff;
        }
        let Some(at) = self.owed.iter().position(|(owed, _)| owed == execution) else {
            return diff;
        };
        let left = self.owed[at].1 + diff;
        if left < 0 {
            self.owed[at].1 = left;
            0
        } else {
            self.owed.swap_remove(at);
            left
        }
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
        self.executions.is_empty() && self.owed.is_empty()
    }

    /// Brings the fold up to date from the last checkpoint before the earliest change.
    pub(crate) fn refold(&mut self) {
        let Some(stale) = self.stale_from.take() else {
            return;
        };
        let from = self.fold.rewind_before(&stale);
        for execution in &self.executions[from..] {
            self.fold.push(execution);
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
        /// executions the key holds, after every batch: with executions held more than once,
        /// and retracted more often than they were added (which the key owes, and a later
        /// addition cancels).
        #[test]
        fn the_fold_equals_a_fold_from_scratch_after_every_batch(
            batches in prop::collection::vec(
                prop::collection::vec((0i64..400, -50i64..50, 1i64..20, 0u8..12), 1..40),
                1..12,
            ),
        ) {
            let mut state = KeyState::default();
            // Every execution the key was given, with its count (below zero when owed).
            let mut counts: BTreeMap<Execution, i64> = BTreeMap::new();
            for batch in batches {
                let mut updates: Vec<(Execution, i64)> = Vec::new();
                for (time, qty, price, op) in batch {
                    let qty = if qty == 0 { 1 } else { qty };
                    let known = counts.keys().nth(time as usize % counts.len().max(1)).cloned();
                    let (execution, diff) = match (known, op) {
                        // Now and then, take back an execution the key was given, or give it
                        // again.
                        (Some(known), 0 | 1) => (known, -1),
                        (Some(known), 2) => (known, 1),
                        // A retraction first, or two copies at once.
                        (_, 3) => (Execution::for_test(time, qty, price), -1),
                        (_, 4) => (Execution::for_test(time, qty, price), 2),
                        _ => (Execution::for_test(time, qty, price), 1),
                    };
                    // One ExecID names one execution.
                    let other_body = counts.keys().chain(updates.iter().map(|(e, _)| e))
                        .any(|e| e.exec_id == execution.exec_id && *e != execution);
                    if !other_body {
                        *counts.entry(execution.clone()).or_default() += diff;
                        updates.push((execution, diff));
                    }
                }
                counts.retain(|_, count| *count != 0);
                updates.sort_unstable();
                let mut consistent = true;
                for (execution, diff) in updates {
                    consistent &= state.update(execution, diff);
                }
                if !consistent {
                    state.refold();
                }
                let expected = PositionCore::from_sorted(counts.iter().map(|(e, c)| (e, *c)));
                prop_assert_eq!(state.fold.core(), expected);
                prop_assert_eq!(state.is_empty(), counts.is_empty());
            }
        }
    }
}
