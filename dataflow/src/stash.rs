//! Updates held back until their time is complete: the common half of the custom operators,
//! which, like `reduce` for a totally ordered time, act on a time only once the input frontier
//! has passed it, and then in time order.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

use crate::model::Time;

/// Emptied buffers kept for the next times. One is enough for a time to find the buffer of the
/// time completed before it; each more would only hold memory.
const SPARE_BUFFERS: usize = 1;
/// A kept buffer whose last time used less than this share of it is let go instead, so that a
/// restore's or replay's big epochs do not hold memory through a day of small live epochs.
pub(crate) const SHRINK_WHEN_USED_BELOW: usize = 8;

/// `C` is what a time holds to emit at it later: a capability for each output it emits on.
pub struct TimeStash<D, C = Capability<Time>> {
    pending: BTreeMap<Time, (C, Vec<D>)>,
    /// Buffers of completed times, emptied once [`TimeStash::complete`] is done with them. A
    /// fresh buffer for every big epoch (a restore enters 200k records per worker per epoch)
    /// grew again into memory the kernel had to fault in and zero: reusing one took a 5M-trade
    /// restart from about 830k to 660k page faults (bench/RESULTS.md).
    spare: Vec<Vec<D>>,
}

impl<D, C> Default for TimeStash<D, C> {
    fn default() -> Self {
        TimeStash {
            pending: BTreeMap::new(),
            spare: Vec::new(),
        }
    }
}

impl<D> TimeStash<D> {
    /// Holds `item` at `time`, keeping a capability to emit at that time later.
    pub fn push(&mut self, capability: &InputCapability<Time>, time: Time, item: D) {
        self.push_held(time, item, || capability.delayed(&time, 0));
    }
}

impl<D, C> TimeStash<D, C> {
    /// Holds `item` at `time`; the first item of a time keeps what `hold` makes for it.
    pub fn push_held(&mut self, time: Time, item: D, hold: impl FnOnce() -> C) {
        let spare = &mut self.spare;
        self.pending
            .entry(time)
            .or_insert_with(|| (hold(), spare.pop().unwrap_or_default()))
            .1
            .push(item);
    }

    /// Hands each time the frontier has passed to `f`, earliest first, with its capability and
    /// items. `f` may drain the items or leave them: their buffer is kept for a later time.
    pub fn complete(&mut self, frontier: &MutableAntichain<Time>, f: impl FnMut(C, &mut Vec<D>)) {
        self.complete_all(std::slice::from_ref(frontier), f)
    }

    /// [`TimeStash::complete`] for an operator of several inputs: a time is complete once
    /// every input's frontier has passed it.
    pub fn complete_all(
        &mut self,
        frontiers: &[MutableAntichain<Time>],
        f: impl FnMut(C, &mut Vec<D>),
    ) {
        self.complete_while(
            |time| !frontiers.iter().any(|frontier| frontier.less_equal(time)),
            f,
        )
    }

    /// Hands each held time up to and including `last` to `f`, earliest first, as
    /// [`TimeStash::complete`] does: for an operator that may act on the frontier's own time
    /// (nothing earlier can arrive) as well as on the times before it.
    pub fn complete_through(&mut self, last: Time, f: impl FnMut(C, &mut Vec<D>)) {
        self.complete_while(|time| *time <= last, f)
    }

    /// Hands the held times to `f`, earliest first, while `done` says a time is complete.
    fn complete_while(&mut self, done: impl Fn(&Time) -> bool, mut f: impl FnMut(C, &mut Vec<D>)) {
        while let Some(entry) = self.pending.first_entry() {
            if !done(entry.key()) {
                break;
            }
            let (capability, mut items) = entry.remove();
            let used = items.len();
            f(capability, &mut items);
            self.keep(items, used);
        }
    }

    /// Keeps an emptied buffer for a later time, unless its time used little of it.
    fn keep(&mut self, mut buffer: Vec<D>, used: usize) {
        buffer.clear();
        let oversized = used.saturating_mul(SHRINK_WHEN_USED_BELOW) < buffer.capacity();
        if self.spare.len() < SPARE_BUFFERS && !oversized {
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a one-operator dataflow that stashes `epochs` (sizes of consecutive times) and
    /// returns the capacity of each time's buffer as it was popped.
    fn buffers_of(epochs: Vec<usize>) -> Vec<usize> {
        use std::sync::{Arc, Mutex};
        use timely::dataflow::channels::pact::Pipeline;
        use timely::dataflow::operators::generic::operator::Operator;
        use timely::dataflow::operators::vec::Input;
        use timely::dataflow::operators::Probe;

        let capacities = Arc::new(Mutex::new(Vec::new()));
        let seen = capacities.clone();
        timely::execute_directly(move |worker| {
            let probe = timely::dataflow::operators::probe::Handle::new();
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, stream) = scope.new_input::<(u64, Time)>();
                stream
                    .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<u64>>, _, _, _>(Pipeline, "Stash", move |_, _| {
                        let mut stash = TimeStash::default();
                        move |(input, frontier), output| {
                            input.for_each(|capability, items| {
                                for (item, time) in items.drain(..) {
                                    stash.push(&capability, time, item);
                                }
                            });
                            stash.complete(frontier, |capability, items| {
                                seen.lock().expect("not poisoned").push(items.capacity());
                                // Drained, as the operators drain theirs.
                                let sum: u64 = items.drain(..).sum();
                                output.session(&capability).give(sum);
                            });
                        }
                    })
                    .probe_with(&probe);
                input
            });
            for (time, size) in epochs.iter().enumerate() {
                for item in 0..*size as u64 {
                    input.send((item, time as Time));
                }
                input.advance_to(time as Time + 1);
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
        });
        let capacities = capacities.lock().expect("not poisoned").clone();
        capacities
    }

    #[test]
    fn a_big_epoch_reuses_the_buffer_of_the_one_before() {
        // A third time of half the size still finds the room the first two grew: a fresh
        // buffer would have grown only to 50k.
        let capacities = buffers_of(vec![100_000, 100_000, 50_000]);
        assert_eq!(capacities.len(), 3);
        assert!(capacities.iter().all(|c| *c >= 100_000), "{capacities:?}");
    }

    #[test]
    fn a_big_buffer_is_let_go_once_epochs_are_small() {
        let capacities = buffers_of(vec![100_000, 10, 10, 10]);
        // The big buffer serves the first small time, then is let go.
        assert!(capacities[1] >= 100_000, "{capacities:?}");
        assert!(
            capacities[2] < 1_000 && capacities[3] < 1_000,
            "{capacities:?}"
        );
    }
}
