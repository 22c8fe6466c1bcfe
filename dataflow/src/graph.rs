//! The differential dataflow: live fills -> positions -> marks -> P&L views.
//!
//! Every view is a pure function of the *set* of input records, so arrival order, batching and
//! worker count cannot change an answer, and a bust or correction is simply a retraction.

use std::collections::BTreeMap;
use std::iter::once;
use std::sync::Arc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::books::{self, BookInputs, BookRow, BooksRestore, SecurityRef, TradeSource, TraderRef};
use crate::correction_chains::present_corrections;
use crate::hash_reduce::hash_reduce;
use crate::keyed::DayKeys;
use crate::marked_positions::positions_view;
use crate::marked_rows::{ExportRecord, MarkedRows};
use crate::merge::Merge;
use crate::model::{
    Bust, Correction, Counter, Diff, Fill, FillBody, HeldFill, PriceUpdate, Text, Time, TradeEvent,
};
use crate::names::Names;
use crate::split::{split3, Part};
use crate::views::{Unmatched, ViewDelta, ViewRecord, ViewSnapshot, ViewStore};

/// Input handles of one worker. Counts are buffered and entered once per epoch.
pub struct Inputs {
    pub fills: InputSession<Time, Fill, Diff>,
    pub corrections: InputSession<Time, Correction, Diff>,
    pub busts: InputSession<Time, Bust, Diff>,
    pub prices: InputSession<Time, PriceUpdate, Diff>,
    /// Books only (closed at build time without books, so they cost nothing per epoch).
    book_inputs: Option<BookSessions>,
    counters: InputSession<Time, Counter, Diff>,
    pending_counts: BTreeMap<Counter, Diff>,
    /// Every count entered so far (a snapshot records them).
    counted: BTreeMap<Counter, Diff>,
}

impl Inputs {
    /// Enters one decoded trade event (and counts it).
    pub fn event(&mut self, event: TradeEvent) {
        match event {
            TradeEvent::Fill(fill) => {
                self.count(Counter::Fills, 1);
                self.fills.insert(fill);
            }
            TradeEvent::Correct(correction) => {
                self.count(Counter::Corrections, 1);
                self.corrections.insert(correction);
            }
            TradeEvent::Bust(bust) => {
                self.count(Counter::Busts, 1);
                self.busts.insert(bust);
            }
        }
    }

    /// Enters a trade event restored from a snapshot: not counted again, the snapshot
    /// carries the counts of the messages it came from. For the views only: the books take a
    /// restore's records through [`Inputs::restore_books`].
    pub fn restore_event(&mut self, event: TradeEvent) {
        match event {
            TradeEvent::Fill(fill) => self.fills.insert(fill),
            TradeEvent::Correct(correction) => self.corrections.insert(correction),
            TradeEvent::Bust(bust) => self.busts.insert(bust),
        }
    }

    /// A price restored from a snapshot (not counted again, as [`Inputs::restore_event`]).
    pub fn restore_price(&mut self, update: PriceUpdate) {
        self.prices.insert(update);
    }

    /// Every count entered so far, this epoch's included.
    pub fn counted(&self) -> Vec<(Counter, Diff)> {
        let mut all = self.counted.clone();
        for (counter, n) in &self.pending_counts {
            *all.entry(counter.clone()).or_default() += n;
        }
        all.into_iter().filter(|(_, n)| *n != 0).collect()
    }

    /// Where an execution is archived (books only; ignored without books).
    pub fn source(&mut self, source: TradeSource) {
        if let Some(books) = self.book_inputs.as_mut() {
            books.sources.insert(source);
        }
    }

    /// A snapshot's record for the books, whose rows the store holds already. It enters an
    /// input of its own at time 0, which holds the books back (and only them) until
    /// [`Inputs::books_restored`]: the views catch up on the restored epochs first, and the
    /// books take in the restored state when the views leave time for it. The books ignore
    /// trades and sources entered at the restored epochs through the other inputs.
    pub fn restore_books(&mut self, record: BooksRestore) {
        if let Some(restored) = self
            .book_inputs
            .as_mut()
            .and_then(|books| books.restored.as_mut())
        {
            restored.insert(record);
        }
    }

    /// Every record of the restore is in [`Inputs::restore_books`]: the books go on.
    pub fn books_restored(&mut self) {
        if let Some(books) = self.book_inputs.as_mut() {
            books.restored = None;
        }
    }

    /// A trader reference record entering (`diff` 1) or leaving (-1); books only.
    pub fn trader(&mut self, trader: TraderRef, diff: Diff) {
        if let Some(books) = self.book_inputs.as_mut() {
            books.traders.update(trader, diff);
        }
    }

    /// A security reference record entering (`diff` 1) or leaving (-1); books only.
    pub fn security(&mut self, security: SecurityRef, diff: Diff) {
        if let Some(books) = self.book_inputs.as_mut() {
            books.securities.update(security, diff);
        }
    }

    pub fn price(&mut self, update: PriceUpdate) {
        self.count(Counter::Prices, 1);
        self.prices.insert(update);
    }

    pub fn count(&mut self, counter: Counter, n: Diff) {
        *self.pending_counts.entry(counter).or_default() += n;
    }

    pub fn time(&self) -> Time {
        *self.fills.time()
    }

    fn flush_counts(&mut self) {
        for (counter, n) in std::mem::take(&mut self.pending_counts) {
            if n != 0 {
                *self.counted.entry(counter.clone()).or_default() += n;
                self.counters.update(counter, n);
            }
        }
    }

    /// Closes the current epoch: nothing more will be entered at times before `time`.
    pub fn advance_to(&mut self, time: Time) {
        self.flush_counts();
        self.fills.advance_to(time);
        self.corrections.advance_to(time);
        self.busts.advance_to(time);
        self.prices.advance_to(time);
        if let Some(books) = self.book_inputs.as_mut() {
            books.sources.advance_to(time);
            books.traders.advance_to(time);
            books.securities.advance_to(time);
        }
        self.counters.advance_to(time);
    }

    pub fn flush(&mut self) {
        self.flush_counts();
        self.fills.flush();
        self.corrections.flush();
        self.busts.flush();
        self.prices.flush();
        if let Some(books) = self.book_inputs.as_mut() {
            books.sources.flush();
            if let Some(restored) = books.restored.as_mut() {
                restored.flush();
            }
            books.traders.flush();
            books.securities.flush();
        }
        self.counters.flush();
    }

    /// Ends this worker's input; pending counts are entered first.
    pub fn close(mut self) {
        self.flush_counts();
    }
}

struct BookSessions {
    sources: InputSession<Time, TradeSource, Diff>,
    traders: InputSession<Time, TraderRef, Diff>,
    securities: InputSession<Time, SecurityRef, Diff>,
    /// A restore's records for the books, at time 0 until dropped (see
    /// [`Inputs::restore_books`]); `None` without a restore.
    restored: Option<InputSession<Time, BooksRestore, Diff>>,
}

/// Values grouped under a plain fill's ExecID, on their way to its worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum ByExecId {
    BustedBy(Text),
    CorrectedBy(Text),
    Fill(FillBody),
}

/// [`ByExecId`] as its worker holds it until the day ends: a fill without its ExecID (the
/// key) and with its trader and symbol as numbers, 40 bytes with its multiplicity instead of
/// 112 (a test guards it). The rare bust or correction naming the ExecID is boxed, in one
/// variant: a fill then sets the size (their inline texts made it 48), and its one spare bit
/// pattern tells the two variants apart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HeldByExecId {
    KilledBy(Box<KilledBy>),
    Fill(HeldFill),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KilledBy {
    Bust(Text),
    Correction(Text),
}

impl HeldByExecId {
    fn hold(value: &ByExecId, names: &mut Names) -> HeldByExecId {
        match value {
            ByExecId::BustedBy(bust) => {
                HeldByExecId::KilledBy(Box::new(KilledBy::Bust(bust.clone())))
            }
            ByExecId::CorrectedBy(correction) => {
                HeldByExecId::KilledBy(Box::new(KilledBy::Correction(correction.clone())))
            }
            ByExecId::Fill(body) => HeldByExecId::Fill(body.hold(names)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum PlainOutcome {
    Live(Fill),
    /// A correction whose target is a plain fill that has arrived.
    CorrectionRoot(Text),
    /// A bust with no plain fill to act on (it may still target a correction).
    BustWithoutFill(Text),
}

/// Values grouped under a correction's own ExecID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum ByCorrectionId {
    BustedBy(Text),
    CorrectedBy(Text),
    Present,
    Correction(Text, Fill),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum CorrectionOutcome {
    Live(Fill),
    /// A bust that found its target among the present corrections.
    BustMatched(Text),
    /// A correction whose target (transitively) has not arrived.
    Unmatched(Text),
}

/// What to build, and where the views go.
pub struct GraphOptions {
    /// Given to the first worker of each process, which publishes that process's complete view.
    pub store: Option<Arc<ViewStore>>,
    /// timely's `-w`.
    pub workers_per_process: usize,
    /// Build the enriched books (the truth path) for a books sink to attach to.
    pub books: bool,
    /// The books rows of earlier times are in the store already (a restore from a snapshot):
    /// the books only take in their state there, and emit no rows for them.
    pub books_stored_before: Time,
}

/// A built graph: its inputs, probes, and the books when asked for.
pub struct Graph<'s> {
    pub inputs: Inputs,
    /// Passes a time once the views reflect it: freshness.
    pub probe: ProbeHandle<Time>,
    /// Passes a time once the views and every durable sink hold it: what may be committed
    /// upstream. A sink attached to the books probes its durable frontier with this.
    pub durable: ProbeHandle<Time>,
    pub books: Option<VecCollection<'s, Time, BookRow, Diff>>,
}

/// The speed path alone: views published to `store`.
pub fn build_dataflow(
    scope: Scope<'_, Time>,
    store: Option<Arc<ViewStore>>,
    workers_per_process: usize,
) -> (Inputs, ProbeHandle<Time>) {
    let graph = build_graph(
        scope,
        GraphOptions {
            store,
            workers_per_process,
            books: false,
            books_stored_before: 0,
        },
    );
    (graph.inputs, graph.probe)
}

/// Builds the graph in `scope`.
pub fn build_graph(scope: Scope<'_, Time>, options: GraphOptions) -> Graph<'_> {
    let (fills_in, fills) = scope.new_collection::<Fill, Diff>();
    let (corrections_in, corrections) = scope.new_collection::<Correction, Diff>();
    let (busts_in, busts) = scope.new_collection::<Bust, Diff>();
    let (prices_in, prices) = scope.new_collection::<PriceUpdate, Diff>();
    let (sources_in, sources) = scope.new_collection::<TradeSource, Diff>();
    let (traders_in, traders) = scope.new_collection::<TraderRef, Diff>();
    let (securities_in, securities) = scope.new_collection::<SecurityRef, Diff>();
    let (counters_in, counters) = scope.new_collection::<Counter, Diff>();
    let (restored_in, restored) = scope.new_collection::<BooksRestore, Diff>();

    // The live fills and the books hold a state for nearly every ExecID, on the same worker:
    // they share one copy of each ExecID (see `DayKeys`).
    let exec_ids = DayKeys::default();
    let LiveFills {
        live,
        unmatched,
        present,
    } = live_fills(
        fills.clone(),
        corrections.clone(),
        busts.clone(),
        exec_ids.clone(),
    );
    let books = options.books.then(|| {
        books::books(BookInputs {
            fills,
            corrections,
            busts,
            present,
            sources,
            restored,
            traders,
            securities,
            stored_before: options.books_stored_before,
            exec_ids,
        })
    });
    let route = ExportRoute::new(scope.peers(), options.workers_per_process);
    // The totals are formed where the rows are, in the export (see `marked_rows`).
    let records = Merge::new("ExportRecords", scope)
        .input_as_is(positions_view(live, prices, route))
        .input(unmatched, move |(unmatched, time, diff)| {
            route.update(ExportRecord::Unmatched(unmatched), time, diff)
        })
        .input(counters, move |(counter, time, diff)| {
            route.update(ExportRecord::Counter(counter), time, diff)
        })
        .build();

    let probe = ProbeHandle::new();
    let durable = ProbeHandle::new();
    let records = records.probe_with(&probe).probe_with(&durable);
    export_views(records, options.store);

    let inputs = Inputs {
        fills: fills_in,
        corrections: corrections_in,
        busts: busts_in,
        prices: prices_in,
        book_inputs: options.books.then_some(BookSessions {
            sources: sources_in,
            traders: traders_in,
            securities: securities_in,
            restored: (options.books_stored_before > 0).then_some(restored_in),
        }),
        counters: counters_in,
        pending_counts: BTreeMap::new(),
        counted: BTreeMap::new(),
    };
    Graph {
        inputs,
        probe,
        durable,
        books,
    }
}

struct LiveFills<'s> {
    live: VecCollection<'s, Time, Fill, Diff>,
    /// Busts and corrections still waiting for their target.
    unmatched: VecCollection<'s, Time, Unmatched, Diff>,
    /// Corrections whose target chain reaches an arrived fill.
    present: VecCollection<'s, Time, Text, Diff>,
}

/// Live fills: plain fills that no bust or correction names, plus corrections whose target chain
/// reaches an arrived fill and that are not themselves busted or corrected. Duplicated ExecIDs
/// count once. Also returns the busts and corrections still waiting for their target. The plain
/// fills' ExecIDs are numbered in `exec_ids`.
fn live_fills<'s>(
    fills: VecCollection<'s, Time, Fill, Diff>,
    corrections: VecCollection<'s, Time, Correction, Diff>,
    busts: VecCollection<'s, Time, Bust, Diff>,
    exec_ids: DayKeys<Text>,
) -> LiveFills<'s> {
    let scope = fills.inner.scope();
    let by_exec_id = Merge::new("ByExecId", scope)
        .input(fills, |(fill, time, diff)| {
            let (exec_id, body) = fill.split_exec_id();
            once(((exec_id, ByExecId::Fill(body)), time, diff))
        })
        .input(busts.clone(), |(bust, time, diff)| {
            once(((bust.target, ByExecId::BustedBy(bust.exec_id)), time, diff))
        })
        .input(corrections.clone(), |(c, time, diff)| {
            once((
                (c.target, ByExecId::CorrectedBy(c.fill.exec_id)),
                time,
                diff,
            ))
        })
        .build();
    // Keyed by ExecID, so a hash map rather than `reduce`'s two arrangements (see hash_reduce).
    let plain = hash_reduce(
        by_exec_id,
        "PlainFills",
        exec_ids,
        HeldByExecId::hold,
        |exec_id, values, names, out| {
            let fill = values
                .iter()
                .filter_map(|(value, _)| match value {
                    HeldByExecId::Fill(fill) => Some(fill),
                    _ => None,
                })
                .min_by_key(|fill| fill.order_key(names));
            let mut killed = false;
            for (value, _) in values {
                match value {
                    HeldByExecId::KilledBy(kill) => {
                        killed = true;
                        match (&**kill, fill) {
                            (KilledBy::Bust(bust), None) => {
                                out.push((PlainOutcome::BustWithoutFill(bust.clone()), 1));
                            }
                            (KilledBy::Correction(correction), Some(_)) => {
                                out.push((PlainOutcome::CorrectionRoot(correction.clone()), 1));
                            }
                            _ => {}
                        }
                    }
                    HeldByExecId::Fill(_) => {}
                }
            }
            if let (Some(fill), false) = (fill, killed) {
                out.push((PlainOutcome::Live(fill.fill(exec_id, names)), 1));
            }
        },
    );

    // Each outcome goes to the one stage that reads it (see `split`).
    let bust_waiting = |target: Text, exec_id: Text| Unmatched {
        kind: "bust".into(),
        exec_id,
        target,
    };
    let (plain_live, roots, plain_busts) = split3(
        plain,
        "PlainOutcomes",
        move |(exec_id, outcome)| match outcome {
            PlainOutcome::Live(fill) => Part::First(fill),
            PlainOutcome::CorrectionRoot(correction) => Part::Second(correction),
            PlainOutcome::BustWithoutFill(bust) => Part::Third(bust_waiting(exec_id, bust)),
        },
    );
    // Corrections of corrections: a correction is present once its chain reaches an arrived fill.
    let present = present_corrections(roots, corrections.clone());

    let by_correction_id = Merge::new("ByCorrectionId", scope)
        .input(corrections, |(c, time, diff)| {
            let (exec_id, target) = (c.fill.exec_id.clone(), c.target.clone());
            let correction = ByCorrectionId::Correction(c.target, c.fill);
            let corrected_by = ByCorrectionId::CorrectedBy(exec_id.clone());
            [
                ((exec_id, correction), time, diff),
                ((target, corrected_by), time, diff),
            ]
        })
        .input(present.clone(), |(id, time, diff)| {
            once(((id, ByCorrectionId::Present), time, diff))
        })
        .input(busts, |(bust, time, diff)| {
            once((
                (bust.target, ByCorrectionId::BustedBy(bust.exec_id)),
                time,
                diff,
            ))
        })
        .build();
    let corrected = hash_reduce(
        by_correction_id,
        "Corrections",
        // Its own: a correction's ExecID is rarely a plain fill's, and a state numbered by
        // every fill's ExecID would hold room for each.
        DayKeys::default(),
        |value, _| value.clone(),
        |_exec_id, values, _, out| {
            let Some((target, fill)) = values.iter().find_map(|(value, _)| match value {
                ByCorrectionId::Correction(target, fill) => Some((target, fill)),
                _ => None,
            }) else {
                return;
            };
            let present = values
                .iter()
                .any(|(value, _)| matches!(value, ByCorrectionId::Present));
            if !present {
                out.push((CorrectionOutcome::Unmatched(target.clone()), 1));
                return;
            }
            let mut killed = false;
            for (value, _) in values {
                match value {
                    ByCorrectionId::BustedBy(bust) => {
                        killed = true;
                        out.push((CorrectionOutcome::BustMatched(bust.clone()), 1));
                    }
                    ByCorrectionId::CorrectedBy(_) => killed = true,
                    _ => {}
                }
            }
            if !killed {
                out.push((CorrectionOutcome::Live(fill.clone()), 1));
            }
        },
    );

    let live = Merge::new("Live", scope)
        .input_as_is(plain_live)
        .input(
            corrected.clone(),
            |((_, outcome), time, diff)| match outcome {
                CorrectionOutcome::Live(fill) => Some((fill, time, diff)),
                _ => None,
            },
        )
        .build();

    // A matched bust's waiting record is retracted; a correction whose chain reaches no
    // arrived fill waits.
    let unmatched = Merge::new("Unmatched", scope)
        .input_as_is(plain_busts)
        .input(
            corrected,
            move |((exec_id, outcome), time, diff)| match outcome {
                CorrectionOutcome::BustMatched(bust) => {
                    Some((bust_waiting(exec_id, bust), time, -diff))
                }
                CorrectionOutcome::Unmatched(target) => Some((
                    Unmatched {
                        kind: "correction".into(),
                        exec_id,
                        target,
                    },
                    time,
                    diff,
                )),
                CorrectionOutcome::Live(_) => None,
            },
        )
        .build();
    LiveFills {
        live,
        unmatched,
        present,
    }
}

/// Where export records go: to the first worker of every process, which exports them.
#[derive(Clone, Copy)]
pub(crate) struct ExportRoute {
    processes: usize,
    workers_per_process: usize,
}

impl ExportRoute {
    pub(crate) fn new(peers: usize, workers_per_process: usize) -> ExportRoute {
        let workers_per_process = workers_per_process.max(1);
        ExportRoute {
            processes: (peers / workers_per_process).max(1),
            workers_per_process,
        }
    }

    /// `record` paired with each exporting worker.
    pub(crate) fn route(self, record: ExportRecord) -> impl Iterator<Item = (usize, ExportRecord)> {
        std::iter::repeat_n(record, self.processes)
            .enumerate()
            .map(move |(process, record)| (process * self.workers_per_process, record))
    }

    /// An update of `record` at `time`, paired with each exporting worker.
    fn update(
        self,
        record: ExportRecord,
        time: Time,
        diff: Diff,
    ) -> impl Iterator<Item = ((usize, ExportRecord), Time, Diff)> {
        self.route(record).map(move |routed| (routed, time, diff))
    }
}

/// Applies every view change routed to this worker once its time is complete at all workers,
/// and publishes the result.
fn export_views(
    routed: VecCollection<'_, Time, (usize, ExportRecord), Diff>,
    store: Option<Arc<ViewStore>>,
) {
    // A time's records are kept as they came until the time is complete. A publish then
    // takes the times it completes in time order: the positions' figures and the marks into
    // `rows`, which forms the rows they changed and the totals once for all of those times
    // (see `marked_rows`), and the few other records (counters from every worker, unmatched
    // busts and corrections, which a time can insert and a later one retract) consolidated
    // over those times. A time's vector goes back to a pool once taken.
    let mut pending: BTreeMap<Time, Vec<(ExportRecord, Diff)>> = BTreeMap::new();
    let mut spare: Vec<Vec<(ExportRecord, Diff)>> = Vec::new();
    let mut rows = MarkedRows::default();
    let mut others: Vec<(ViewRecord, Diff)> = Vec::new();
    // The changes of the times completed since the last publish: applied to the snapshot
    // and handed to the store as the delta beside it.
    let mut changes: Vec<(ViewRecord, Diff)> = Vec::new();
    let mut snapshots = SnapshotRecycler::default();
    let mut published_as_of = None;
    let mut latest_time_seen: Time = 0;
    routed.inner.sink(
        Exchange::new(|update: &((usize, ExportRecord), Time, Diff)| update.0 .0 as u64),
        "ExportViews",
        move |(input, frontier)| {
            input.for_each(|_capability, updates| {
                for ((_, record), time, diff) in updates.drain(..) {
                    latest_time_seen = latest_time_seen.max(time);
                    if diff != 0 {
                        pending
                            .entry(time)
                            .or_insert_with(|| spare.pop().unwrap_or_default())
                            .push((record, diff));
                    }
                }
            });
            let Some(store) = store.as_ref() else {
                pending.clear();
                return;
            };
            let frontier_time = frontier.frontier().iter().min().copied();
            let as_of = (frontier_time.unwrap_or(Time::MAX), frontier_time.is_none());
            let completed = pending
                .first_key_value()
                .is_some_and(|(time, _)| !frontier.less_equal(time));
            if !completed && published_as_of == Some(as_of) {
                return;
            }
            let mut snapshot = snapshots.next();
            let mut time_ends = Vec::new();
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let mut at_time = entry.remove();
                for (record, diff) in at_time.drain(..) {
                    match record {
                        ExportRecord::Position {
                            trader,
                            symbol,
                            figures,
                        } => rows.position(trader, symbol, figures),
                        ExportRecord::Mark(symbol, mark) => rows.mark(symbol, mark),
                        ExportRecord::Unmatched(unmatched) => {
                            others.push((ViewRecord::Unmatched(unmatched), diff))
                        }
                        ExportRecord::Counter(counter) => {
                            others.push((ViewRecord::Counter(counter), diff))
                        }
                    }
                }
                spare.push(at_time);
            }
            // The loop above took at least the first pending time exactly when it was complete.
            if completed {
                rows.publish(&mut changes);
                differential_dataflow::consolidation::consolidate(&mut others);
                changes.append(&mut others);
                time_ends.push(changes.len());
            }
            snapshot.apply_times(&changes, &time_ends);
            // The frontier is the first time not yet reflected; an empty one means final.
            snapshot.as_of.time = frontier_time
                .unwrap_or_else(|| latest_time_seen.saturating_add(1).max(snapshot.as_of.time));
            snapshot.as_of.complete = as_of.1;
            let snapshot = Arc::new(snapshot);
            // The next publish's changes are likely as many: no regrowth from nothing.
            let capacity = changes.len();
            let published = std::mem::replace(&mut changes, Vec::with_capacity(capacity));
            let delta = store.publish_times(snapshot.clone(), published, time_ends);
            snapshots.published(snapshot, delta);
            published_as_of = Some(as_of);
        },
    );
}

/// Where the next snapshot to publish comes from, without copying every row each time.
///
/// The snapshot published before the current one is usually held by no one once the store
/// has moved on (readers hold theirs for one response): it is brought up to date by applying
/// the delta that followed it, and becomes the next one. When a reader still holds it, the
/// current snapshot is copied instead, as every publish did before.
///
/// Catching up costs what that delta's publish cost (a write per change), whatever the size
/// of the views; a copy costs every row. A copy was also taken when the delta held more than
/// a quarter of the rows, which live epochs nearly always do (a symbol's new mark changes
/// every holder's row): the dataflow's time per epoch with two workers, one epoch in flight
/// (`eod-bench --in-flight 1`, 250 messages per worker), was 787 µs against 732 µs without
/// that copy (medians of eight runs in turn, bench/RESULTS.md 2026-12-07).
#[derive(Default)]
struct SnapshotRecycler {
    current: Arc<ViewSnapshot>,
    /// The snapshot before `current`, and the delta from it to `current`.
    previous: Option<(Arc<ViewSnapshot>, Arc<ViewDelta>)>,
}

impl SnapshotRecycler {
    /// A snapshot equal to the current one, to apply the next changes to.
    fn next(&mut self) -> ViewSnapshot {
        if let Some((previous, delta)) = self.previous.take() {
            if let Ok(mut snapshot) = Arc::try_unwrap(previous) {
                delta.apply_to(&mut snapshot);
                snapshot.as_of = self.current.as_of.clone();
                return snapshot;
            }
        }
        (*self.current).clone()
    }

    fn published(&mut self, snapshot: Arc<ViewSnapshot>, delta: Arc<ViewDelta>) {
        let previous = std::mem::replace(&mut self.current, snapshot);
        self.previous = Some((previous, delta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plain fill of the day is held until the day ends, so a byte here is a byte per
    /// fill: a field that grows it should be a conscious choice.
    #[test]
    fn the_state_held_per_plain_fill_stays_small() {
        let size = std::mem::size_of::<crate::multiset::Multiset<HeldByExecId>>();
        assert!(size <= 40, "a plain fill's values are {size} bytes");
    }

    fn row(trader: &str, symbol: &str, qty: i128) -> crate::views::PositionView {
        crate::views::unmarked_row(trader, symbol, qty)
    }

    /// Publishes through a store as the export does; returns what the recycler started from.
    fn publish(
        store: &ViewStore,
        recycler: &mut SnapshotRecycler,
        changes: Vec<(ViewRecord, Diff)>,
    ) -> ViewSnapshot {
        let start = recycler.next();
        assert_eq!(
            &start, &*recycler.current,
            "the next snapshot starts as the current one"
        );
        let mut next = start.clone();
        next.apply(&changes);
        let next = Arc::new(next);
        let delta = store.publish(next.clone(), changes);
        recycler.published(next, delta);
        start
    }

    #[test]
    fn recycled_or_copied_the_next_snapshot_equals_the_current() {
        let store = ViewStore::new();
        let mut recycler = SnapshotRecycler::default();
        let many: Vec<_> = (0..40)
            .map(|i| (ViewRecord::Position(row("T", &format!("S{i}"), 1)), 1))
            .collect();
        publish(&store, &mut recycler, many);
        for round in 2..6 {
            // One row changes: the snapshot before is recycled (nobody holds it).
            let key = format!("S{round}");
            let changes = vec![
                (ViewRecord::Position(row("T", &key, round - 1)), -1),
                (ViewRecord::Position(row("T", &key, round)), 1),
            ];
            publish(&store, &mut recycler, changes);
        }
        // A reader holding the snapshot before the current one forces a copy.
        let held = recycler.previous.as_ref().map(|(s, _)| s.clone());
        let changes = vec![(ViewRecord::Position(row("U", "X", 1)), 1)];
        publish(&store, &mut recycler, changes);
        drop(held);
        // A removal through a recycled snapshot.
        let gone = vec![(ViewRecord::Position(row("U", "X", 1)), -1)];
        publish(&store, &mut recycler, gone);
        let start = publish(&store, &mut recycler, Vec::new());
        assert!(!start.positions.contains_key(&("U".into(), "X".into())));
        assert_eq!(start.positions.len(), 40);
    }
}
