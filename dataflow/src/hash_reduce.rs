//! `reduce` for a totally ordered time, with each key's values held once in a hash map.
//!
//! Differential's `reduce` keeps two arrangements, its input and its output, and merges their
//! batches as the day grows. Keyed by ExecID, that is two sorted copies of every fill of the
//! day, merged again and again, for keys that are written once and touched again only by a bust
//! or a correction. Here the values of a key live in a hash map on the worker that owns the key,
//! and the output is not stored at all: the logic is a function of the values, so a touched
//! key's previous output is the logic over its values before the time's updates.
//!
//! Like `reduce`, the updates are applied in time order, a time's once no earlier time can arrive
//! (the input frontier has reached it), so the output at every completed time is the logic over
//! the input collection at that time (the oracle property tests check the live fills built on
//! it; applying a later time's updates first fails them).

use std::hash::Hash;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::day_state::DayState;
use crate::keyed::{DayKeys, KeyedEntry, KeyedStates};
use crate::model::{Diff, Time};
use crate::multiset::{Count, Multiset};
use crate::names::Names;
use crate::stash::TimeStash;

/// Groups `input` by key and applies `logic` to each key's values (with their multiplicities,
/// sorted) whenever they change, as `reduce_named` would, but once per update rather than once
/// per key and time (see the operator's body); `logic` pushes the key's output records with
/// their multiplicities. Each value is held in the form `hold` makes of it, which
/// may number its names in the operator's [`Names`] (the values live until the day ends): the
/// forms are sorted by those numbers, so a logic that chooses by order reads the names. The
/// keys are numbered in `keys`, which other operators exchanged by the same key may share.
pub(crate) fn hash_reduce<'s, K, V, H, O, L>(
    input: VecCollection<'s, Time, (K, V), Diff>,
    name: &str,
    keys: DayKeys<K>,
    hold: impl Fn(&V, &mut Names) -> H + 'static,
    mut logic: L,
) -> VecCollection<'s, Time, (K, O), Diff>
where
    K: ExchangeData + Hashable + Hash,
    V: ExchangeData,
    H: Ord + 'static,
    O: ExchangeData,
    L: FnMut(&K, &[(H, Count)], &Names, &mut Vec<(O, Diff)>) + 'static,
{
    // With one worker a round of progress is a step of the same thread, and the eager time
    // (below) did not pay there: close to view longer in seven pairs of nine (bench/RESULTS.md).
    let eager = input.inner.scope().peers() > 1;
    // Exchanged by the operator's own input, not by an `exchange` ahead of it: an operator
    // fewer for every epoch's progress (see `merge`).
    let by_key = Exchange::new(|((key, _), _, _): &((K, V), Time, Diff)| key.hashed().into());
    input
        .inner
        .unary_frontier(by_key, name, move |_capability, _info| {
            let mut stash: TimeStash<((K, V), Diff)> = TimeStash::default();
            let mut state = DayState::new(KeyedStates::<K, Multiset<H>>::sharing(&keys));
            let mut names = Names::default();
            let mut changes: Vec<(O, Diff)> = Vec::new();
            // Applies one update, as a change of its own: the logic's output before it is
            // retracted and its output after it added. A key with several updates in a time
            // then emits the outputs between them too, each added and retracted again within
            // the time, so the time's output still sums to the logic over the values after
            // it less the logic over those before it. Grouping a time's updates by key cost
            // more than those few extra records: sorting them (by key, then value) moved each
            // about log2(n) times and compared ExecIDs at each step, and reading them in the
            // order of their keys' hashes waited on a cache miss per update (`perf`, 1M
            // replay).
            let mut apply =
                move |key: &K, value: &V, diff: Diff, out: &mut dyn FnMut((K, O), Diff)| {
                    let values = match state.entry(key) {
                        KeyedEntry::Occupied(entry) => entry.into_mut(),
                        KeyedEntry::Vacant(entry) => entry.insert(key.clone(), Multiset::default()),
                    };
                    changes.clear();
                    run(&mut logic, key, values, &names, -1, &mut changes);
                    values.update(hold(value, &mut names), diff);
                    // Values that add up to none leave the key vacant here.
                    run(&mut logic, key, values, &names, 1, &mut changes);
                    consolidate(&mut changes);
                    for (record, diff) in changes.drain(..) {
                        out((key.clone(), record), diff);
                    }
                };
            move |(input, frontier), output| {
                // With peers, the frontier's own time takes its updates as they come: nothing
                // earlier can arrive any more, and the times before it are applied first. A
                // time's output is then formed while it is open, and reaches the next stage
                // before the time closes, rather than one round of the workers' progress after.
                let through = match frontier.frontier().first().copied() {
                    None => Some(Time::MAX),
                    Some(now) if eager => Some(now),
                    Some(now) => now.checked_sub(1),
                };
                if let Some(through) = through {
                    stash.complete_through(through, |capability, updates| {
                        let mut session = output.session(&capability);
                        let time = *capability.time();
                        for ((key, value), diff) in updates.iter() {
                            apply(key, value, *diff, &mut |record, diff| {
                                session.give((record, time, diff))
                            });
                        }
                        updates.clear();
                    });
                }
                input.for_each(|capability, updates| {
                    let mut session = output.session(&capability);
                    for ((key, value), time, diff) in updates.drain(..) {
                        if through.is_some_and(|through| time <= through) {
                            apply(&key, &value, diff, &mut |record, diff| {
                                session.give((record, time, diff))
                            });
                        } else {
                            stash.push(&capability, time, ((key, value), diff));
                        }
                    }
                });
            }
        })
        .as_collection()
}

/// Appends the logic's output over `values`, each multiplicity times `sign`.
fn run<K, H: Ord, O>(
    logic: &mut impl FnMut(&K, &[(H, Count)], &Names, &mut Vec<(O, Diff)>),
    key: &K,
    values: &Multiset<H>,
    names: &Names,
    sign: Diff,
    changes: &mut Vec<(O, Diff)>,
) {
    if values.is_empty() {
        return;
    }
    let from = changes.len();
    logic(key, values.as_slice(), names, changes);
    for (_, diff) in &mut changes[from..] {
        *diff *= sign;
    }
}
