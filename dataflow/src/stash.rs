//! Updates held back until their time is complete: the common half of the custom operators,
//! which, like `reduce` for a totally ordered time, act on a time only once the input frontier
//! has passed it, and then in time order.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

use crate::model::Time;

pub struct TimeStash<D> {
    pending: BTreeMap<Time, (Capability<Time>, Vec<D>)>,
}

impl<D> Default for TimeStash<D> {
    fn default() -> Self {
        TimeStash {
            pending: BTreeMap::new(),
        }
    }
}

impl<D> TimeStash<D> {
    /// Holds `item` at `time`, keeping a capability to emit at that time later.
    pub fn push(&mut self, capability: &InputCapability<Time>, time: Time, item: D) {
        self.pending
            .entry(time)
            .or_insert_with(|| (capability.delayed(&time, 0), Vec::new()))
            .1
            .push(item);
    }

    /// Removes the earliest time the frontier has passed, with its capability and items.
    pub fn pop_complete(
        &mut self,
        frontier: &MutableAntichain<Time>,
    ) -> Option<(Capability<Time>, Vec<D>)> {
        let entry = self.pending.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        Some(entry.remove())
    }
}
