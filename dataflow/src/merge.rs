//! Several collections, each mapped record by record into one type, as one operator.
//!
//! Contract: the output is what `a.flat_map(f).concat(b.flat_map(g))...` makes of the same
//! inputs: every record of each input, at its time, becomes what its input's function makes of
//! it, and nothing else leaves (a test below holds it to that chain).
//!
//! Why one operator: every operator costs each worker its scheduling and its share of the
//! progress of every step, data or not, and a map followed by a concat copies each record
//! twice. The graph had 67 operators, most of them such maps and concats feeding one stage;
//! twenty more maps made `eod-bench`'s dataflow in 250-message epochs about a fifth slower.
//! Live input steps about once per epoch, so there it is a cost per epoch: with 30 operators
//! instead of 67, two workers through Kafka took an epoch from close to view in 2.9-3.4 ms
//! against 3.6-3.9 (bench/RESULTS.md, 2026-12-07).

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::Scope;
use timely::progress::operate::FrontierInterest;

use crate::model::{Diff, Time};

type Output<D> = CapacityContainerBuilder<Vec<(D, Time, Diff)>>;

/// Drains one input into the shared output.
type Reader<D> = Box<dyn for<'a> FnMut(&mut OutputBuilderSession<'a, Time, Output<D>>)>;

/// The inputs of one merging operator, added one by one; [`Merge::build`] makes it.
pub(crate) struct Merge<'s, D: Clone + 'static> {
    builder: OperatorBuilder<'s, Time>,
    readers: Vec<Reader<D>>,
}

impl<'s, D: Clone + 'static> Merge<'s, D> {
    pub(crate) fn new(name: &str, scope: Scope<'s, Time>) -> Merge<'s, D> {
        Merge {
            builder: OperatorBuilder::new(name.to_owned(), scope),
            readers: Vec::new(),
        }
    }

    /// Adds `collection`, each of whose updates becomes what `each` makes of it (as
    /// `collection.inner.flat_map(each)` would).
    pub(crate) fn input<S, I>(
        mut self,
        collection: VecCollection<'s, Time, S, Diff>,
        mut each: impl FnMut((S, Time, Diff)) -> I + 'static,
    ) -> Merge<'s, D>
    where
        S: Clone + 'static,
        I: IntoIterator<Item = (D, Time, Diff)>,
    {
        let index = self.readers.len();
        let mut input = self.builder.new_input(collection.inner, Pipeline);
        // Records pass as they come: nothing is held for a frontier to release.
        self.builder.set_notify_for(index, FrontierInterest::Never);
        self.readers.push(Box::new(move |output| {
            input.for_each(|capability, updates| {
                let mut session = output.session(&capability);
                for update in updates.drain(..) {
                    for made in each(update) {
                        session.give(made);
                    }
                }
            });
        }));
        self
    }

    /// Adds `collection` as it is.
    pub(crate) fn input_as_is(self, collection: VecCollection<'s, Time, D, Diff>) -> Merge<'s, D> {
        self.input(collection, std::iter::once)
    }

    pub(crate) fn build(self) -> VecCollection<'s, Time, D, Diff> {
        let Merge {
            mut builder,
            mut readers,
        } = self;
        let (output, stream) = builder.new_output();
        let mut output = OutputBuilder::<_, Output<D>>::from(output);
        builder.build(move |_initial_capabilities| {
            move |_frontiers| {
                let mut output = output.activate();
                for read in readers.iter_mut() {
                    read(&mut output);
                }
            }
        });
        stream.as_collection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::input::Input;
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::dataflow::operators::vec::Map;

    type Updates = Vec<(String, Time, Diff)>;

    /// Captures of the merged form and of the map-and-concat chain, for the same inputs.
    fn both(
        words: &[(&'static str, Time, Diff)],
        numbers: &[(u64, Time, Diff)],
    ) -> (Updates, Updates) {
        let words = words.to_vec();
        let numbers = numbers.to_vec();
        timely::execute_directly(move |worker| {
            let (mut words_in, mut numbers_in, merged, chained) =
                worker.dataflow::<Time, _, _>(|scope| {
                    let (words_in, words) = scope.new_collection::<&'static str, Diff>();
                    let (numbers_in, numbers) = scope.new_collection::<u64, Diff>();
                    let twice = |(n, t, d): (u64, Time, Diff)| {
                        (0..n % 3).map(move |i| (format!("{n}.{i}"), t, d))
                    };
                    let upper = |(w, t, d): (&'static str, Time, Diff)| {
                        (!w.is_empty()).then(|| (w.to_uppercase(), t + 1, -d))
                    };
                    let merged = Merge::new("Merged", scope)
                        .input(words.clone(), upper)
                        .input(numbers.clone(), twice)
                        .input_as_is(words.clone().map(|w| w.to_owned()))
                        .build();
                    let chained = words
                        .clone()
                        .inner
                        .flat_map(upper)
                        .as_collection()
                        .concat(numbers.inner.flat_map(twice).as_collection())
                        .concat(words.map(|w| w.to_owned()));
                    (
                        words_in,
                        numbers_in,
                        merged.inner.capture(),
                        chained.inner.capture(),
                    )
                });
            for (word, time, diff) in &words {
                words_in.update_at(*word, *time, *diff);
            }
            for (number, time, diff) in &numbers {
                numbers_in.update_at(*number, *time, *diff);
            }
            words_in.close();
            numbers_in.close();
            while worker.step() {}
            let sorted = |captured: std::sync::mpsc::Receiver<_>| {
                let mut all: Updates = captured
                    .extract()
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect();
                all.sort();
                all
            };
            (sorted(merged), sorted(chained))
        })
    }

    proptest::proptest! {
        #[test]
        fn the_merge_makes_what_maps_and_concats_make(
            words in proptest::collection::vec(
                (proptest::sample::select(vec!["", "a", "bc", "a"]), 0..5u64, -2..3isize), 0..20),
            numbers in proptest::collection::vec((0..10u64, 0..5u64, -2..3isize), 0..20),
        ) {
            let (merged, chained) = both(&words, &numbers);
            proptest::prop_assert_eq!(merged, chained);
        }
    }
}
