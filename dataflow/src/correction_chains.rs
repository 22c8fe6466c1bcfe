//! Which corrections are present: a correction is once its chain of targets reaches an arrived
//! fill (a correction may correct a correction).
//!
//! This was a differential `iterate` (a `semijoin` and a `distinct` in a loop). Every epoch
//! went round that loop at least twice, through two arrangements a round, even when no
//! correction arrived, and each of those stages waited on its frontier: with two workers on a
//! busy box each such wait is a round trip to the other worker. Measured through Kafka at 50k
//! msg/s with 2 workers (bench/RESULTS.md, 2026-12-04), the epochs took 15-35% longer from
//! close to views with the loop than without it. Here one operator keeps the chains in maps:
//! one stage, and an epoch without corrections costs it nothing but its frontier.
//!
//! Like `reduce` for a totally ordered time, a time's updates are applied once the input
//! frontier has passed it, and in time order, so the output at every completed time is the
//! least fixed point over the input collections at that time (the oracle property tests check
//! it, corrections of corrections and withdrawn records included).

use std::collections::{HashMap, HashSet};
use std::iter::once;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::merge::Merge;
use crate::model::{Correction, Diff, Text, Time};
use crate::stash::TimeStash;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum ChainInput {
    /// A correction whose target is an arrived fill.
    Root(Text),
    /// `(target, correction)`: the correction names the target.
    Edge(Text, Text),
}

/// The chains seen so far, and the corrections present in them.
#[derive(Default)]
struct Chains {
    roots: HashMap<Text, Diff>,
    /// By target: the corrections naming it, with their counts.
    edges: HashMap<Text, HashMap<Text, Diff>>,
    present: HashSet<Text>,
}

impl Chains {
    /// Applies one time's updates; pushes the corrections that became present (+1) or stopped
    /// being present (-1).
    fn apply(&mut self, updates: &mut Vec<(ChainInput, Diff)>, changes: &mut Vec<(Text, Diff)>) {
        let mut removed_something = false;
        let mut reached = Vec::new();
        for (input, diff) in updates.drain(..) {
            removed_something |= diff < 0;
            match input {
                ChainInput::Root(correction) => {
                    let count = self.roots.entry(correction.clone()).or_default();
                    *count += diff;
                    if *count == 0 {
                        self.roots.remove(&correction);
                    } else if *count > 0 {
                        reached.push(correction);
                    }
                }
                ChainInput::Edge(target, correction) => {
                    let named = self.edges.entry(target.clone()).or_default();
                    let count = named.entry(correction.clone()).or_default();
                    *count += diff;
                    if *count == 0 {
                        named.remove(&correction);
                        if named.is_empty() {
                            self.edges.remove(&target);
                        }
                    } else if *count > 0 && self.present.contains(&target) {
                        reached.push(correction);
                    }
                }
            }
        }
        if removed_something {
            // Removals are rare (withdrawn records): the fixed point again from the roots.
            let before = std::mem::take(&mut self.present);
            let roots: Vec<Text> = self
                .roots
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(root, _)| root.clone())
                .collect();
            self.reach(roots);
            changes.extend(before.difference(&self.present).map(|c| (c.clone(), -1)));
            changes.extend(self.present.difference(&before).map(|c| (c.clone(), 1)));
        } else {
            let from = self.present.len();
            let added = self.reach(reached);
            debug_assert_eq!(self.present.len(), from + added.len());
            changes.extend(added.into_iter().map(|c| (c, 1)));
        }
    }

    /// Marks present everything reachable from `start`; returns what was not present before.
    fn reach(&mut self, start: Vec<Text>) -> Vec<Text> {
        let mut added = Vec::new();
        let mut queue = start;
        while let Some(correction) = queue.pop() {
            if !self.present.insert(correction.clone()) {
                continue;
            }
            if let Some(named) = self.edges.get(&correction) {
                queue.extend(
                    named
                        .iter()
                        .filter(|(next, count)| **count > 0 && !self.present.contains(*next))
                        .map(|(next, _)| next.clone()),
                );
            }
            added.push(correction);
        }
        added
    }
}

/// The corrections present: the least fixed point of `roots` (corrections whose target is an
/// arrived fill) and "a correction whose target is present", over the edges (target,
/// correction) of `corrections`. A set: each present correction once.
pub fn present_corrections<'s>(
    roots: VecCollection<'s, Time, Text, Diff>,
    corrections: VecCollection<'s, Time, Correction, Diff>,
) -> VecCollection<'s, Time, Text, Diff> {
    // Chains cross keys (a correction's target is another correction), so one worker holds
    // them all: corrections are a small part of the input.
    let inputs = Merge::new("ChainInputs", roots.inner.scope())
        .input(roots, |(root, time, diff)| {
            once((ChainInput::Root(root), time, diff))
        })
        .input(corrections, |(correction, time, diff)| {
            let edge = ChainInput::Edge(correction.target, correction.fill.exec_id);
            once((edge, time, diff))
        })
        .build();
    inputs
        .inner
        .unary_frontier(
            Exchange::new(|_: &(ChainInput, Time, Diff)| 0),
            "PresentCorrections",
            |_capability, _info| {
                let mut stash = TimeStash::default();
                let mut chains = Chains::default();
                let mut changes = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|capability, updates| {
                        for (record, time, diff) in updates.drain(..) {
                            stash.push(&capability, time, (record, diff));
                        }
                    });
                    stash.complete(frontier, |capability, updates| {
                        chains.apply(updates, &mut changes);
                        let time = *capability.time();
                        let mut session = output.session(&capability);
                        for (correction, diff) in changes.drain(..) {
                            session.give((correction, time, diff));
                        }
                    });
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(chains: &mut Chains, updates: Vec<(ChainInput, Diff)>) -> Vec<(Text, Diff)> {
        let mut updates = updates;
        let mut changes = Vec::new();
        chains.apply(&mut updates, &mut changes);
        changes.sort();
        changes
    }

    fn edge(target: &str, correction: &str) -> ChainInput {
        ChainInput::Edge(target.into(), correction.into())
    }

    #[test]
    fn a_chain_is_present_from_its_root_and_a_cycle_alone_is_not() {
        let mut chains = Chains::default();
        // C2 and C3 correct each other: nothing reaches them yet.
        let changes = apply(
            &mut chains,
            vec![(edge("C2", "C3"), 1), (edge("C3", "C2"), 1)],
        );
        assert!(changes.is_empty(), "{changes:?}");
        // C1 corrects an arrived fill and C2 corrects C1.
        let changes = apply(
            &mut chains,
            vec![(edge("C1", "C2"), 1), (ChainInput::Root("C1".into()), 1)],
        );
        assert_eq!(
            changes,
            vec![("C1".into(), 1), ("C2".into(), 1), ("C3".into(), 1)]
        );
    }

    /// The chains are kept, not recomputed: updates applied in several batches (times) make
    /// the same corrections present, and the same net changes, as in one.
    #[test]
    fn updates_in_several_batches_reach_the_same_corrections() {
        let earlier = vec![
            (ChainInput::Root("C1".into()), 1),
            (edge("C1", "C2"), 1),
            (edge("C6", "C7"), 1),
        ];
        let root = |id: &str| ChainInput::Root(id.into());
        let updates = vec![
            (edge("C2", "C3"), 1),
            (edge("C1", "C2"), -1),
            (root("C5"), 1),
            (edge("C3", "C4"), 1),
            (edge("C5", "C2"), 1),
            (edge("C7", "C8"), 1),
            (root("C1"), -1),
            (root("C6"), 1),
            (edge("C1", "C2"), 1),
            (edge("C4", "C9"), 1),
        ];
        let run = |batches: &[&[(ChainInput, Diff)]]| {
            let mut chains = Chains::default();
            apply(&mut chains, earlier.clone());
            let mut changes = Vec::new();
            for batch in batches {
                changes.extend(apply(&mut chains, batch.to_vec()));
            }
            let mut present: Vec<Text> = chains.present.into_iter().collect();
            present.sort();
            differential_dataflow::consolidation::consolidate(&mut changes);
            (present, changes)
        };
        let whole = run(&[&updates]);
        let present: Vec<&str> = whole.0.iter().map(Text::as_str).collect();
        assert_eq!(present, ["C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]);
        for batches in crate::batches::three_way_cuts(&updates) {
            let lengths = batches.map(<[_]>::len);
            assert_eq!(run(&batches), whole, "batches of {lengths:?}");
        }
    }

    #[test]
    fn a_withdrawn_link_takes_what_only_it_reached() {
        let mut chains = Chains::default();
        apply(
            &mut chains,
            vec![
                (ChainInput::Root("C1".into()), 1),
                (edge("C1", "C2"), 1),
                (edge("C2", "C3"), 1),
                (ChainInput::Root("C4".into()), 1),
                (edge("C4", "C3"), 1),
            ],
        );
        // C3 is still reached from C4; C2 only through the withdrawn link.
        let changes = apply(&mut chains, vec![(edge("C1", "C2"), -1)]);
        assert_eq!(changes, vec![("C2".into(), -1)]);
        let changes = apply(&mut chains, vec![(ChainInput::Root("C4".into()), -1)]);
        assert_eq!(changes, vec![("C3".into(), -1), ("C4".into(), -1)]);
    }
}
