//! Per-key sums over a collection: the trader and firm totals.
//!
//! A `reduce` re-reads every row of a key whenever one row changes, and the firm total has a
//! single key that every epoch touches: measured on the replay benchmark in small epochs, the
//! two totals (their arrangements and reduces) took about half of the dataflow's time. Sums
//! form a group, so each update is one add or subtract on a running accumulator instead.
//!
//! Like `reduce` for a totally ordered time, updates are stashed by time and applied in time
//! order once the input frontier has passed them, so the output at every completed time is the
//! sum over the input collection at that time.

use std::collections::HashMap;
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::model::{Diff, Time};
use crate::stash::TimeStash;

/// A running sum of items with multiplicities; must be exact under add-then-subtract.
pub trait Accumulator: Default + 'static {
    type Item: ExchangeData;
    type Output: ExchangeData;
    fn add(&mut self, item: &Self::Item, diff: Diff);
    /// The record for this key, or `None` when the key has no items.
    fn output(&self) -> Option<Self::Output>;
}

/// For each key, the accumulated sum of its items, as `A::Output`; an item's key is
/// `key_of(item)`. The key is read from the item where it is needed rather than paired with
/// it in a stage before: in small epochs every position change passes here, and a stage that
/// only pairs rows with their trader copied each row once more.
///
/// Every key is summed on `worker`: the totals' items are small changes (one per key, worker
/// and batch), and summing them on the worker that exports the views saves their results a
/// move between workers on the way to it. Keyed by hash instead, each epoch's totals passed
/// two exchanges after the rows (to the key's worker, then to the exporting one), one more
/// than the rows themselves, on the path every epoch waits for.
pub fn sum_on_worker<'s, K, A>(
    name: &str,
    collection: VecCollection<'s, Time, A::Item, Diff>,
    key_of: for<'a> fn(&'a A::Item) -> &'a K,
    worker: usize,
) -> VecCollection<'s, Time, (K, A::Output), Diff>
where
    K: ExchangeData + Hash + Eq,
    A: Accumulator,
{
    let exchange = Exchange::new(move |_: &(A::Item, Time, Diff)| worker as u64);
    collection
        .inner
        .unary_frontier(exchange, name, |_capability, _info| {
            let mut stash = TimeStash::default();
            let mut sums: HashMap<K, (A, Option<A::Output>)> = HashMap::new();
            move |(input, frontier), output| {
                input.for_each(|capability, updates| {
                    for (item, time, diff) in updates.drain(..) {
                        stash.push(&capability, time, (item, diff));
                    }
                });
                stash.complete(frontier, |capability, updates| {
                    let mut touched = Vec::new();
                    for (item, diff) in updates.drain(..) {
                        let key = key_of(&item);
                        let sum = match sums.get_mut(key) {
                            Some((sum, _)) => sum,
                            None => &mut sums.entry(key.clone()).or_default().0,
                        };
                        sum.add(&item, diff);
                        touched.push(key.clone());
                    }
                    touched.sort_unstable();
                    touched.dedup();
                    let mut session = output.session(&capability);
                    let time = *capability.time();
                    for key in touched {
                        let Some((sum, emitted)) = sums.get_mut(&key) else {
                            continue;
                        };
                        let current = sum.output();
                        if current != *emitted {
                            if let Some(old) = emitted.take() {
                                session.give(((key.clone(), old), time, -1));
                            }
                            if let Some(new) = current.clone() {
                                session.give(((key.clone(), new), time, 1));
                            }
                            *emitted = current;
                        }
                        if emitted.is_none() {
                            sums.remove(&key);
                        }
                    }
                });
            }
        })
        .as_collection()
}
