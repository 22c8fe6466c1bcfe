//! The durable-sink operator: batches a collection's completed changes and hands them to a
//! writer thread, and holds its output frontier back until the writer says they are durable.
//!
//! Probing that output gives "everything before this time is in the store": the Kafka source
//! commits offsets only past it, and its bound on epochs in flight makes a slow or absent store
//! stop the source instead of growing queues. Writing happens on its own thread so that a store
//! that is down never blocks the timely worker: the views stay current while the books wait.
//! With a spill ([`SinkOptions::spill`]), rows beyond a memory budget wait on disk, so a live
//! run need not bound the epochs it lets the store fall behind by: an outage costs disk, the
//! views go on, and the writer catches up from the spill, oldest rows first.

use std::collections::VecDeque;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, VecCollection};
use eod_dataflow::stash::TimeStash;
use eod_dataflow::{Diff, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::spill::{Spill, SpillOptions};
use crate::SinkError;

/// Writes batches durably: `Ok` means the rows and the progress are committed together.
///
/// The batch is the writer's: it may reorder or drop rows in place (the books keep the latest
/// version of a row written twice). Whatever rows it leaves are dropped before the batch is
/// acknowledged, so the next batch, sent on the acknowledgement, never shares rows with it;
/// the emptied buffer goes back to the operator, which fills it with that next batch.
pub trait BatchWriter: Send + 'static {
    type Row: Send + 'static;
    fn write(&mut self, rows: &mut Vec<Self::Row>, progress: &Progress) -> Result<(), SinkError>;
}

/// What a batch completes, written in the same transaction as its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub sink: &'static str,
    /// The writing worker: each shard records its own progress.
    pub shard: usize,
    /// The latest dataflow time whose rows are in this batch.
    pub time: Time,
    /// Rows this shard has written in this run, this batch included.
    pub rows_total: u64,
    /// No row of an earlier time is still waiting: the store holds every time up to `time`.
    pub complete: bool,
}

#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub name: &'static str,
    /// A batch of this many rows is written at once (not waiting for `max_age`).
    pub max_rows: usize,
    /// Most rows in one write. While the writer is busy rows keep arriving; when it is free
    /// again, all that waited go in one transaction up to this many (group commit). With
    /// SQLite books and 5000-row transactions, every transaction rewrote the hot page of each
    /// (trader, symbol) group of the index: a 1M-message replay took 17 s; with what waited
    /// written together, 10 s.
    pub max_batch_rows: usize,
    /// Oldest a buffered row gets before its batch is written anyway.
    pub max_age: Duration,
    /// All rows go to worker 0 (a store that allows one writer, like SQLite).
    pub single_writer: bool,
    /// Where rows beyond `SpillOptions::memory_rows` wait, or `None` to keep them all in
    /// memory (replay bounds the rows it lets wait instead).
    pub spill: Option<SpillOptions>,
    /// Rows on disk now (`eod_sink_spilled_rows`).
    pub spilled_rows: Option<prometheus::IntGauge>,
}

/// How many times `max_rows` one write may take when rows waited for the writer.
pub const GROUP_COMMIT_FACTOR: usize = 20;

impl SinkOptions {
    /// The books sink: batches due at `max_rows` rows or `max_age`, group commits up to
    /// `GROUP_COMMIT_FACTOR` times `max_rows`.
    pub fn books(single_writer: bool, max_rows: usize, max_age: Duration) -> SinkOptions {
        let max_rows = max_rows.max(1);
        SinkOptions {
            name: "books",
            max_rows,
            max_batch_rows: max_rows * GROUP_COMMIT_FACTOR,
            max_age,
            single_writer,
            spill: None,
            spilled_rows: None,
        }
    }
}

struct Job<R> {
    rows: Vec<R>,
    progress: Progress,
}

#[derive(Default)]
struct Acks {
    /// Jobs the writer has made durable.
    done: u64,
    failure: Option<String>,
}

/// Attaches the sink: rows are the records that enter `collection` at each completed time
/// (a change of a record is its retraction plus the new version; the new version is written).
/// `sharding` picks the worker that writes a record; `writer` is called once on each worker
/// that writes, and its value moves to that worker's writer thread. The returned stream
/// carries no data: its frontier is the sink's durable frontier.
pub fn durable_sink<'s, D, W>(
    collection: VecCollection<'s, Time, D, Diff>,
    options: SinkOptions,
    sharding: impl Fn(&D) -> u64 + 'static,
    writer: impl FnOnce(usize) -> Result<W, SinkError>,
) -> Result<Stream<'s, Time, Vec<()>>, SinkError>
where
    D: ExchangeData,
    W: BatchWriter<Row = D>,
{
    let scope = collection.inner.scope();
    let shard = scope.index();
    let writer = if !options.single_writer || shard == 0 {
        Some(writer(shard)?)
    } else {
        None
    };
    let single = options.single_writer;
    let exchange = Exchange::new(
        move |(record, _, _): &(D, Time, Diff)| {
            if single {
                0
            } else {
                sharding(record)
            }
        },
    );
    let worker = scope.worker();
    let mut spawn_error = None;
    let stream = collection
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            exchange,
            options.name,
            |capability, info| {
                let acks = Arc::new(Mutex::new(Acks::default()));
                let writer = writer.and_then(|writer| {
                    let wake = worker.sync_activator_for(info.address.to_vec());
                    match spawn_writer(writer, options.name, shard, acks.clone(), wake) {
                        Ok(writer) => Some(writer),
                        Err(e) => {
                            spawn_error = Some(e);
                            None
                        }
                    }
                });
                let activator = scope.activator_for(info.address.clone());
                let spill = match (&writer, &options.spill) {
                    (Some(_), Some(spill)) => {
                        let dir = spill.dir.join(format!("{}-{shard}", options.name));
                        match Spill::new(&dir, spill.chunk_rows) {
                            Ok(spill) => Some(spill),
                            Err(e) => {
                                spawn_error = Some(e);
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let mut stash = TimeStash::default();
                let mut state = SinkState {
                    options,
                    buffer: VecDeque::new(),
                    runs: VecDeque::new(),
                    buffer_since: Instant::now(),
                    held: Some(capability),
                    in_flight: None,
                    sent: 0,
                    rows_total: 0,
                    shard,
                    writer,
                    acks,
                    spill,
                };
                move |(input, frontier), _output| {
                    input.for_each(|capability, updates| {
                        for (record, time, diff) in updates.drain(..) {
                            stash.push(&capability, time, (record, diff));
                        }
                    });
                    stash.complete(frontier, |capability, changes| {
                        consolidate(changes);
                        let entering = changes.drain(..).filter(|(_, diff)| *diff > 0);
                        state.take(capability, entering.map(|(record, _)| record));
                    });
                    let input_frontier = frontier.frontier().iter().min().copied();
                    if let Some(delay) = state.step(input_frontier) {
                        activator.activate_after(delay);
                    }
                }
            },
        );
    match spawn_error {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

struct SinkState<R> {
    options: SinkOptions,
    /// A deque: batches are taken from the front of a buffer that may hold a whole large
    /// epoch, and draining the front of a `Vec` moved the rest of it for every batch (a tenth
    /// of a books replay's worker time was that `memmove`).
    buffer: VecDeque<R>,
    /// The times of the waiting rows (in memory, then on disk), in order, each with how many
    /// rows it has. A batch that ends within a time leaves the rest of it at the front: the
    /// durable frontier then moves past every time the writer has finished. Held at the
    /// earliest waiting time until the buffer was empty, the frontier stood still for as long
    /// as the writer was behind, and a replay's workers waited for the writer to drain all
    /// their epochs, then the writer for their next ones.
    runs: VecDeque<(Time, usize)>,
    buffer_since: Instant,
    /// At the earliest time not yet durable, which is the input frontier when no row waits;
    /// dropped once the input is done, every row written and the writer closed. Without it
    /// the durable frontier would follow the input's to empty before the writer closed.
    held: Option<Capability<Time>>,
    /// Earliest time of the job the writer is working on.
    in_flight: Option<Time>,
    /// Jobs handed to the writer.
    sent: u64,
    rows_total: u64,
    shard: usize,
    /// Taken and joined once the input is done and every row written, before the frontier
    /// empties.
    writer: Option<WriterThread<R>>,
    acks: Arc<Mutex<Acks>>,
    /// Rows after the buffer's, on disk; every spilled row is later than every buffered one.
    spill: Option<Spill<R>>,
}

impl<R: serde::Serialize + serde::de::DeserializeOwned> SinkState<R> {
    /// Rows waiting for the writer, in memory and on disk.
    fn waiting(&self) -> usize {
        self.buffer.len() + self.spill.as_ref().map_or(0, Spill::len)
    }

    /// Buffers the rows of one completed time, spilling what exceeds the memory budget.
    fn take(&mut self, capability: Capability<Time>, rows: impl Iterator<Item = R>) {
        let before = self.waiting();
        let memory_rows = self.options.spill.as_ref().map(|s| s.memory_rows);
        match (self.spill.as_mut(), memory_rows) {
            (Some(spill), Some(memory_rows)) => {
                let was_empty = spill.is_empty();
                for row in rows {
                    if spill.is_empty() && self.buffer.len() < memory_rows {
                        self.buffer.push_back(row);
                        continue;
                    }
                    if let Err(e) = spill.push(&row) {
                        // Dropping the row or reordering the books would be silent loss.
                        panic!("{} sink: {e}", self.options.name);
                    }
                }
                if was_empty && !spill.is_empty() {
                    tracing::warn!(
                        sink = self.options.name,
                        memory_rows,
                        "the store is behind: rows wait on disk"
                    );
                }
                count_spilled(&self.options, spill);
            }
            _ => self.buffer.extend(rows),
        }
        if self.waiting() == before {
            return;
        }
        if self.runs.is_empty() {
            self.buffer_since = Instant::now();
        }
        self.runs
            .push_back((*capability.time(), self.waiting() - before));
        if self.held.is_none() {
            self.held = Some(capability);
        }
    }

    /// Collects acknowledgements and sends the next batch when one is due. Returns when to
    /// look again if nothing else will wake the operator.
    /// `input_frontier` is the earliest time more input may come at, `None` once it is done.
    fn step(&mut self, input_frontier: Option<Time>) -> Option<Duration> {
        let input_done = input_frontier.is_none();
        let done = match self.acks.lock() {
            Ok(acks) => {
                if let Some(failure) = &acks.failure {
                    // The writer gave up on something that is not a row's fault (the schema,
                    // say): carrying on would silently lose the books.
                    panic!("{} sink failed: {failure}", self.options.name);
                }
                acks.done
            }
            Err(_) => panic!("{} sink: writer state poisoned", self.options.name),
        };
        if self.in_flight.is_some() && done == self.sent {
            self.in_flight = None;
        }
        if self.in_flight.is_none() && self.waiting() > 0 {
            let full = self.waiting() >= self.options.max_rows;
            let old = self.buffer_since.elapsed() >= self.options.max_age;
            if full || old || input_done {
                self.send();
            }
        }
        if input_done && self.in_flight.is_none() && self.waiting() == 0 {
            self.close_writer();
        }
        // Hold the output at the earliest time still waiting or to come, or let it go.
        let earliest = self.in_flight.or(self.runs.front().map(|(time, _)| *time));
        match earliest.or(input_frontier) {
            Some(time) => {
                if let Some(held) = self.held.as_mut() {
                    held.downgrade(&time.max(*held.time()));
                }
            }
            None => self.held = None,
        }
        if self.in_flight.is_none() && self.waiting() > 0 {
            return Some(
                self.options
                    .max_age
                    .saturating_sub(self.buffer_since.elapsed()),
            );
        }
        None
    }

    /// Ends the writer thread and waits for it, so that the writer is closed (a SQLite
    /// connection checkpoints its log into the database file as it closes) by the time the
    /// durable frontier is empty: a process may exit as soon as it sees that, without
    /// tearing down its dataflow first.
    fn close_writer(&mut self) {
        if let Some(WriterThread { jobs, thread, .. }) = self.writer.take() {
            // Its loop ends when the channel closes.
            drop(jobs);
            if thread.join().is_err() {
                panic!("{} sink: writer thread panicked", self.options.name);
            }
        }
    }

    fn send(&mut self) {
        let Some(writer) = self.writer.as_ref() else {
            // A worker without a writer never receives rows: the exchange routes them away.
            self.buffer.clear();
            self.runs.clear();
            return;
        };
        let max_batch_rows = self.options.max_batch_rows.max(1);
        if let Some(spill) = self.spill.as_mut() {
            let was_empty = spill.is_empty();
            // The oldest spilled rows come back behind the buffered ones, a chunk at a time.
            while self.buffer.len() < max_batch_rows && !spill.is_empty() {
                match spill.pop_chunk() {
                    Ok(rows) => self.buffer.extend(rows),
                    Err(e) => panic!("{} sink: {e}", self.options.name),
                }
            }
            count_spilled(&self.options, spill);
            if !was_empty && spill.is_empty() {
                tracing::info!(
                    sink = self.options.name,
                    "the store caught up with the spill"
                );
            }
        }
        let take = self.buffer.len().min(max_batch_rows);
        // The last batch's buffer, emptied by the writer: a fresh one for every batch grew
        // into memory the kernel had to fault in and zero, the largest source of a live
        // worker's page faults in a flat-out run through Kafka (`perf record -e page-faults`).
        let mut rows = writer.emptied.try_recv().unwrap_or_default();
        rows.extend(self.buffer.drain(..take));
        self.rows_total += rows.len() as u64;
        let first = self.runs.front().map_or(0, |(time, _)| *time);
        let (last, complete) = take_runs(&mut self.runs, take);
        let progress = Progress {
            sink: self.options.name,
            shard: self.shard,
            time: last.unwrap_or(first),
            rows_total: self.rows_total,
            complete,
        };
        match writer.jobs.try_send(Job { rows, progress }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                panic!("{} sink: writer thread is gone", self.options.name)
            }
        }
        self.sent += 1;
        self.in_flight = Some(first);
        if self.waiting() > 0 {
            // What waited beyond this batch is due as soon as the writer is free.
            self.buffer_since = Instant::now() - self.options.max_age;
        }
    }
}

/// Removes `rows` rows' worth of runs from the front. Returns the latest time among them,
/// and whether every row of it is taken (the batch ends at a time's end).
fn take_runs(runs: &mut VecDeque<(Time, usize)>, mut rows: usize) -> (Option<Time>, bool) {
    let mut last = None;
    while rows > 0 {
        let Some((time, count)) = runs.front_mut() else {
            break;
        };
        last = Some(*time);
        if *count > rows {
            *count -= rows;
            return (last, false);
        }
        rows -= *count;
        runs.pop_front();
    }
    (last, true)
}

/// Keeps the sink's spilled-rows gauge current.
fn count_spilled<R>(options: &SinkOptions, spill: &Spill<R>) {
    if let Some(gauge) = &options.spilled_rows {
        gauge.set(spill.len() as i64);
    }
}

/// A writer thread, and where it takes its jobs.
struct WriterThread<R> {
    jobs: SyncSender<Job<R>>,
    /// Each written batch's buffer, emptied, sent back before the batch is acknowledged.
    emptied: mpsc::Receiver<Vec<R>>,
    thread: JoinHandle<()>,
}

fn spawn_writer<W: BatchWriter>(
    mut writer: W,
    name: &'static str,
    shard: usize,
    acks: Arc<Mutex<Acks>>,
    wake: timely::scheduling::SyncActivator,
) -> Result<WriterThread<W::Row>, SinkError> {
    // One job at a time: the operator sends the next only after this one is acknowledged.
    let (jobs, incoming) = mpsc::sync_channel::<Job<W::Row>>(1);
    let (empty, emptied) = mpsc::sync_channel::<Vec<W::Row>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("{name}-writer-{shard}"))
        .spawn(move || {
            while let Ok(mut job) = incoming.recv() {
                let span = tracing::info_span!(
                    "sink_batch",
                    sink = name,
                    shard,
                    rows = job.rows.len(),
                    time = job.progress.time
                );
                let _entered = span.enter();
                let result = writer.write(&mut job.rows, &job.progress);
                job.rows.clear();
                // At most one buffer is ever out: the operator sends the next batch only on
                // this one's acknowledgement, so the channel has room. Gone at shutdown.
                let _ = empty.try_send(job.rows);
                if let Ok(mut acks) = acks.lock() {
                    match result {
                        Ok(()) => acks.done += 1,
                        Err(e) => acks.failure = Some(e.to_string()),
                    }
                }
                // The operator may already be gone at shutdown; nothing is lost then.
                let _ = wake.activate();
            }
        })
        .map_err(|e| SinkError::Setup(format!("spawning the {name} writer: {e}")))?;
    Ok(WriterThread {
        jobs,
        emptied,
        thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::input::Input;
    use std::sync::atomic::{AtomicBool, Ordering};
    use timely::dataflow::operators::probe::Handle as ProbeHandle;
    use timely::dataflow::operators::Probe;

    /// A test batch: (key, value) rows.
    type Rows = Vec<(u64, u64)>;
    type Log = Arc<Mutex<Vec<(Rows, Progress)>>>;

    struct GatedWriter {
        log: Log,
        open: Arc<AtomicBool>,
    }

    impl BatchWriter for GatedWriter {
        type Row = (u64, u64);
        fn write(&mut self, rows: &mut Rows, progress: &Progress) -> Result<(), SinkError> {
            while !self.open.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Ok(mut log) = self.log.lock() {
                log.push((std::mem::take(rows), progress.clone()));
            }
            Ok(())
        }
    }

    /// The test sink with `options` on this worker, written by a `GatedWriter` that logs to
    /// `log` once `open`; returns its input, its durable frontier joining `probe`.
    fn gated_sink(
        worker: &mut timely::worker::Worker,
        options: SinkOptions,
        log: Log,
        open: Arc<AtomicBool>,
        probe: &ProbeHandle<Time>,
    ) -> differential_dataflow::input::InputSession<Time, (u64, u64), Diff> {
        worker.dataflow(|scope| {
            let (input, rows) = scope.new_collection::<(u64, u64), Diff>();
            let writer = |_shard| Ok(GatedWriter { log, open });
            durable_sink(rows, options, |(key, _)| *key, writer)
                .expect("sink builds")
                .probe_with(probe);
            input
        })
    }

    /// One writer, batches due at once: at `max_rows`, or up to `max_batch_rows` when rows
    /// waited.
    fn test_options(max_rows: usize, max_batch_rows: usize) -> SinkOptions {
        SinkOptions {
            name: "test",
            max_rows,
            max_batch_rows,
            max_age: Duration::ZERO,
            single_writer: true,
            spill: None,
            spilled_rows: None,
        }
    }

    /// Enters `rows` at `time`, closes the time, and steps the worker `steps` times.
    fn enter_time(
        worker: &mut timely::worker::Worker,
        input: &mut differential_dataflow::input::InputSession<Time, (u64, u64), Diff>,
        time: Time,
        rows: impl IntoIterator<Item = (u64, u64)>,
        steps: usize,
    ) {
        for row in rows {
            input.insert(row);
        }
        input.advance_to(time + 1);
        input.flush();
        for _ in 0..steps {
            worker.step();
        }
    }

    /// Notes where each batch's rows lie, and how many there are.
    struct BufferWriter {
        buffers: Arc<Mutex<Vec<(usize, usize)>>>,
    }

    impl BatchWriter for BufferWriter {
        type Row = (u64, u64);
        fn write(&mut self, rows: &mut Rows, _progress: &Progress) -> Result<(), SinkError> {
            if let Ok(mut buffers) = self.buffers.lock() {
                buffers.push((rows.as_ptr() as usize, rows.len()));
            }
            Ok(())
        }
    }

    /// Each batch after the first is written from the buffer the one before it was written
    /// from: the writer hands its emptied buffer back for the next.
    #[test]
    fn a_written_batch_s_buffer_carries_the_next_batch() {
        let buffers = Arc::new(Mutex::new(Vec::new()));
        let seen = buffers.clone();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow(|scope| {
                let (input, rows) = scope.new_collection::<(u64, u64), Diff>();
                let writer = move |_shard| Ok(BufferWriter { buffers: seen });
                durable_sink(rows, test_options(1, 100), |(key, _)| *key, writer)
                    .expect("sink builds")
                    .probe_with(&probe);
                input
            });
            for time in 0..4u64 {
                let rows = (0..50).map(|key| (time * 1_000 + key, time));
                enter_time(worker, &mut input, time, rows, 0);
                worker.step_while(|| probe.less_than(&(time + 1)));
            }
        });
        let buffers = buffers.lock().expect("not poisoned").clone();
        assert_eq!(buffers.len(), 4, "one batch per time: {buffers:?}");
        assert!(buffers.iter().all(|&(_, rows)| rows == 50), "{buffers:?}");
        assert!(
            buffers.iter().all(|&(at, _)| at == buffers[0].0),
            "a fresh buffer for a batch: {buffers:?}"
        );
    }

    #[test]
    fn frontier_waits_for_the_writer_and_what_waited_is_written_together_up_to_the_cap() {
        let log: Log = Arc::default();
        let open = Arc::new(AtomicBool::new(false));
        let both_checked = Arc::new(std::sync::Barrier::new(2));
        let (log_w, open_w) = (log.clone(), open.clone());
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let options = test_options(2, 4);
            let (log, open) = (log_w.clone(), open_w.clone());
            let mut input = gated_sink(worker, options, log, open, &probe);
            if worker.index() == 0 {
                for key in 0..5 {
                    input.insert((key, 10));
                }
            }
            input.advance_to(1);
            input.flush();
            // The writer is blocked: time 0 must not complete, however long we step.
            for _ in 0..200 {
                worker.step();
            }
            assert!(probe.less_than(&1), "frontier passed rows not yet durable");
            // The writer opens once both workers have checked: opened as soon as worker 0 had,
            // the rows were durable before worker 1 had stepped its 200 times, its check
            // failed, and worker 0 then waited for the panicked worker for ever (a CI run hung
            // on it, 2026-12-07).
            both_checked.wait();
            if worker.index() == 0 {
                open_w.store(true, Ordering::Release);
            }
            worker.step_while(|| probe.less_than(&1));
            // A changed row: only its new version is written.
            if worker.index() == 0 {
                input.remove((1, 10));
                input.insert((1, 11));
            }
            input.advance_to(2);
            input.flush();
            worker.step_while(|| probe.less_than(&2));
        })
        .expect("timely runs");
        let log = log.lock().unwrap();
        let sizes: Vec<usize> = log.iter().map(|(rows, _)| rows.len()).collect();
        // Five rows waited: four (the cap) in the first write, the fifth in the next.
        assert_eq!(sizes, vec![4, 1, 1]);
        let complete: Vec<bool> = log.iter().map(|(_, p)| p.complete).collect();
        assert_eq!(complete, vec![false, true, true]);
        assert_eq!(log[2].0, vec![(1, 11)]);
        assert_eq!(log[2].1.time, 1);
        assert_eq!(log[2].1.rows_total, 6);
        let mut written: Vec<(u64, u64)> = log[..2].iter().flat_map(|(r, _)| r.clone()).collect();
        written.sort();
        assert_eq!(written, (0..5).map(|k| (k, 10)).collect::<Vec<_>>());
    }

    /// Counts what it writes; takes its time to close, and says when it has.
    struct ClosingWriter {
        written: Arc<std::sync::atomic::AtomicUsize>,
        closed: Arc<AtomicBool>,
    }

    impl BatchWriter for ClosingWriter {
        type Row = (u64, u64);
        fn write(&mut self, rows: &mut Rows, _progress: &Progress) -> Result<(), SinkError> {
            self.written.fetch_add(rows.len(), Ordering::AcqRel);
            Ok(())
        }
    }

    impl Drop for ClosingWriter {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(50));
            self.closed.store(true, Ordering::Release);
        }
    }

    /// Once the input is done and every row written, the writer is closed before the durable
    /// frontier empties, on every worker's view of it: a process may exit as soon as it sees
    /// the frontier empty, without tearing its dataflow down.
    #[test]
    fn the_writer_is_closed_before_the_frontier_empties() {
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (written_w, closed_w) = (written.clone(), closed.clone());
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let writer = {
                let (written, closed) = (written_w.clone(), closed_w.clone());
                move |_shard| Ok(ClosingWriter { written, closed })
            };
            let mut input = worker.dataflow(|scope| {
                let (input, rows) = scope.new_collection::<(u64, u64), Diff>();
                durable_sink(rows, test_options(2, 4), |(key, _)| *key, writer)
                    .expect("sink builds")
                    .probe_with(&probe);
                input
            });
            if worker.index() == 0 {
                for key in 0..10 {
                    input.insert((key, 1));
                }
            }
            // Everything written while the input is still open: nothing waits for the writer
            // when the input ends.
            input.advance_to(1);
            input.flush();
            worker.step_while(|| probe.less_than(&1));
            for _ in 0..50 {
                worker.step();
            }
            input.close();
            worker.step_while(|| !probe.done());
            assert!(
                closed_w.load(Ordering::Acquire),
                "the frontier emptied before the writer was closed"
            );
            assert_eq!(written_w.load(Ordering::Acquire), 10);
        })
        .expect("timely runs");
        assert!(closed.load(Ordering::Acquire));
        assert_eq!(written.load(Ordering::Acquire), 10);
    }

    /// Lets through as many writes as it has been given permits for.
    struct PermitWriter {
        log: Log,
        permits: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl BatchWriter for PermitWriter {
        type Row = (u64, u64);
        fn write(&mut self, rows: &mut Rows, progress: &Progress) -> Result<(), SinkError> {
            let written = self.log.lock().map(|log| log.len()).unwrap_or(0);
            while self.permits.load(Ordering::Acquire) <= written {
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Ok(mut log) = self.log.lock() {
                log.push((std::mem::take(rows), progress.clone()));
            }
            Ok(())
        }
    }

    /// While the writer is behind, each finished batch moves the durable frontier past the
    /// times it completed, even though later rows still wait (a batch may end within a time).
    #[test]
    fn frontier_follows_the_writer_time_by_time_while_rows_wait() {
        let log: Log = Arc::default();
        let permits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (log_w, permits_w) = (log.clone(), permits.clone());
        timely::execute(timely::Config::process(1), move |worker| {
            let probe = ProbeHandle::new();
            let options = test_options(1, 3);
            let writer = {
                let (log, permits) = (log_w.clone(), permits_w.clone());
                move |_shard| Ok(PermitWriter { log, permits })
            };
            let mut input = worker.dataflow(|scope| {
                let (input, rows) = scope.new_collection::<(u64, u64), Diff>();
                durable_sink(rows, options, |(key, _)| *key, writer)
                    .expect("sink builds")
                    .probe_with(&probe);
                input
            });
            // Time 0 is one row, taken by the writer at once; times 1-3 two rows each wait.
            for (time, keys) in [(0u64, 0..1u64), (1, 1..3), (2, 3..5), (3, 5..7)] {
                enter_time(worker, &mut input, time, keys.map(|key| (key, time)), 50);
            }
            assert!(probe.less_than(&1), "nothing is durable yet");
            let mut step_until_durable = |permit: usize, through: u64| {
                permits_w.store(permit, Ordering::Release);
                let deadline = Instant::now() + Duration::from_secs(10);
                while probe.less_than(&(through + 1)) && Instant::now() < deadline {
                    worker.step();
                }
                assert!(
                    !probe.less_than(&(through + 1)),
                    "time {through} is written, but the frontier did not pass it"
                );
                for _ in 0..50 {
                    worker.step();
                }
                assert!(
                    probe.less_than(&(through + 2)),
                    "the frontier passed time {} before its batch was written",
                    through + 1
                );
            };
            // The second batch is time 1 and half of time 2: once written, time 1 is durable
            // and time 2 is not, while the third batch waits.
            step_until_durable(1, 0);
            step_until_durable(2, 1);
            permits_w.store(3, Ordering::Release);
            worker.step_while(|| probe.less_than(&4));
        })
        .expect("timely runs");
        let log = log.lock().unwrap();
        let batches: Vec<(usize, Time, bool)> = log
            .iter()
            .map(|(rows, p)| (rows.len(), p.time, p.complete))
            .collect();
        assert_eq!(batches, vec![(1, 0, true), (3, 2, false), (3, 3, true)]);
    }

    /// With a spill, rows beyond the memory budget wait on disk while the writer is blocked,
    /// and all of them reach it once it is free, in order; the frontier waits as without one.
    #[test]
    fn rows_beyond_the_memory_budget_wait_on_disk_and_all_arrive_in_order() {
        let log: Log = Arc::default();
        let open = Arc::new(AtomicBool::new(false));
        let spill_dir = tempfile::tempdir().unwrap();
        let gauge = prometheus::IntGauge::new("spilled", "rows on disk").unwrap();
        let (log_w, open_w, dir_w, gauge_w) = (
            log.clone(),
            open.clone(),
            spill_dir.path().to_owned(),
            gauge.clone(),
        );
        timely::execute(timely::Config::process(1), move |worker| {
            let probe = ProbeHandle::new();
            let options = SinkOptions {
                spill: Some(SpillOptions {
                    dir: dir_w.clone(),
                    memory_rows: 2,
                    chunk_rows: 2,
                }),
                spilled_rows: Some(gauge_w.clone()),
                ..test_options(1, 3)
            };
            let (log, open) = (log_w.clone(), open_w.clone());
            let mut input = gated_sink(worker, options, log, open, &probe);
            for time in 0..10u64 {
                enter_time(worker, &mut input, time, [(time, time)], 20);
            }
            assert!(probe.less_than(&1), "frontier passed rows not yet durable");
            let chunks = std::fs::read_dir(dir_w.join("test-0")).unwrap().count();
            assert!(
                chunks >= 3,
                "rows beyond the budget are on disk: {chunks} chunks"
            );
            assert!(gauge_w.get() >= 6, "spilled rows: {}", gauge_w.get());
            open_w.store(true, Ordering::Release);
            worker.step_while(|| probe.less_than(&10));
        })
        .expect("timely runs");
        let log = log.lock().unwrap();
        let written: Vec<u64> = log
            .iter()
            .flat_map(|(rows, _)| rows.iter().map(|r| r.0))
            .collect();
        assert_eq!(written, (0..10).collect::<Vec<_>>());
        assert!(log.iter().all(|(rows, _)| rows.len() <= 3));
        assert_eq!(
            log.last().map(|(_, p)| (p.complete, p.time)),
            Some((true, 9))
        );
        assert_eq!(gauge.get(), 0);
        assert_eq!(
            std::fs::read_dir(spill_dir.path().join("test-0"))
                .unwrap()
                .count(),
            0
        );
    }
}
