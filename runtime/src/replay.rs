//! `eod replay`: every FIX file of an archive, in name order, through the dataflow.
//!
//! Every worker walks every segment's units and enters its share: block `k` of
//! `--epoch-messages` consecutive units goes to worker `k mod workers`. The workers so move
//! through the day side by side, one block apart, and an epoch holds a stretch of the day.
//! Each worker used to read whole segments of its own (worker 1 a segment ahead of worker 0):
//! every fill worker 0 entered then came before fills its position already had from worker
//! 1, and the average-cost fold, which depends on order, was replayed from there in nearly
//! every small epoch (a quarter of the workers' time at 250 messages per epoch). A segment is
//! read from the store and framed once per process, and its messages are counted (the census
//! that checks the framer) by one worker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use eod_dataflow::{Accounting, BookRow, PriceUpdate, ViewSnapshot, ViewStore};
use eod_fix::{Framed, Reject};
use eod_proto::DeadLetterReason;
use eod_sinks::books::{RefusedRow, RowRefusal};
use eod_sources::archive::{Archive, Segment};

use crate::books::{build_with_books, refusal_reason, BatchLimits, BooksTarget, ReferenceData};
use crate::dead_letters::{DeadLetterRecord, DeadLetterSender, DeadLetterWriter};
use crate::driver::{drive, EpochLimits, EpochPolicy, Feed, Source};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::timely_args::{peers, timely_config, workers_per_process};

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub archive: String,
    pub prices: Vec<PriceUpdate>,
    pub dead_letters: PathBuf,
    /// Framed messages per dataflow epoch.
    pub epoch_messages: u64,
    /// Closed epochs a worker may have in flight and not yet durable before it waits.
    pub limits: EpochLimits,
    pub max_message: usize,
    pub timely_args: Vec<String>,
    pub progress: bool,
    /// Where the books go; none: the views only.
    pub books: Option<BooksTarget>,
    pub books_batch: BatchLimits,
    pub reference: ReferenceData,
    /// With books: the nice value the workers take once the books writer is running (Linux;
    /// 0 leaves them as they are). See [`crate::priority`].
    pub worker_nice: u8,
    /// The process exits once the replay returns, whether it ends well or not: each worker
    /// leaves its dataflow's state to the exit instead of freeing it allocation by
    /// allocation (see `eod_dataflow::day_state`). False for anything that runs on after the
    /// replay.
    pub exit_after: bool,
}

/// Messages per worker in a replay's epoch, unless told otherwise: big epochs cost the views
/// the least per message (see the in-flight limits in `driver.rs`).
pub const REPLAY_EPOCH_MESSAGES: u64 = 100_000;

/// The same with books. The one books writer is then the bottleneck: with smaller epochs its
/// first rows come sooner and fewer rows wait between the workers and the writer. A 1M
/// replay with SQLite books at 10,000 against 100,000: wall A/B 0.953, peak 812 against
/// 973 MiB; at 5,000 0.952 and 775 MiB, at 25,000 1.01 and 855 MiB (bench/RESULTS.md,
/// 2026-12-05). With the books' lag at 100,000 messages, 5,000 against 10,000: wall 0.955,
/// peak 19 MiB lower; 2,500 held 10 MiB less again for no gain in time, and 1,000 took 7%
/// longer (bench/RESULTS.md, 2026-12-06).
pub const REPLAY_BOOKS_EPOCH_MESSAGES: u64 = 5_000;

/// The epoch size of a replay that was given none.
pub fn default_epoch_messages(with_books: bool) -> u64 {
    if with_books {
        REPLAY_BOOKS_EPOCH_MESSAGES
    } else {
        REPLAY_EPOCH_MESSAGES
    }
}

/// [`ReplayOptions::worker_nice`] unless told otherwise. A 1M-message replay with SQLite
/// books took 3.92-3.98 s at 10 and 3.82-3.84 s at 19, against 4.24-4.34 s at 0 (two runs
/// each); 10 rather than 19 so that the workers give way less to other processes on the
/// machine.
pub const REPLAY_WORKER_NICE: u8 = 10;

/// The outcome of a replay.
#[derive(Debug)]
pub struct ReplaySummary {
    pub segments: usize,
    pub bytes: u64,
    pub elapsed: Duration,
    pub snapshot: Arc<ViewSnapshot>,
    pub dead_letters_written: u64,
}

impl ReplaySummary {
    pub fn accounting(&self) -> &Accounting {
        &self.snapshot.accounting
    }

    pub fn trades_per_second(&self) -> f64 {
        let a = self.accounting();
        (a.fills + a.busts + a.corrections) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the replay to completion, publishing views to `store` as epochs complete.
pub fn run_replay(
    options: ReplayOptions,
    store: Arc<ViewStore>,
    metrics: Arc<Metrics>,
) -> Result<ReplaySummary> {
    let archive = Archive::open(&options.archive)?;
    // One runtime for every read, driven by its own thread: an HTTP store (S3) pools its
    // connections in the runtime that opened them, so a second runtime would wait on them.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("archive-io")
        .enable_all()
        .build()?;
    let segments = runtime.block_on(archive.segments())?;
    if segments.is_empty() {
        bail!("archive {} holds no files", options.archive);
    }
    let total_bytes: u64 = segments.iter().map(|s| s.size).sum();
    let workers = workers_per_process(&options.timely_args).map_err(anyhow::Error::msg)?;
    let config = timely_config(&options.timely_args).map_err(anyhow::Error::msg)?;
    if let Some(books) = &options.books {
        books.migrate()?;
    }
    // In segment order: the file is the same whatever the number of workers.
    let writer = DeadLetterWriter::start_in_order(
        options.dead_letters.clone(),
        segments.iter().map(|s| s.key.clone()).collect(),
        workers,
    );
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = options
        .progress
        .then(|| spawn_progress(total_bytes, progress.clone(), done.clone()));

    let started = Instant::now();
    let shared = Arc::new(WorkerShared {
        archive,
        segments: segments.clone(),
        options: options.clone(),
        store: store.clone(),
        workers,
        progress,
        metrics,
        dead_letters: writer.sender(),
        io: runtime.handle().clone(),
        reads: SharedReads::new(workers),
    });
    let guards = timely::execute(config, move |worker| {
        let shared = shared.clone();
        replay_worker(worker, &shared)
    })
    .map_err(anyhow::Error::msg)?;
    let mut failures = Vec::new();
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(panic) => failures.push(anyhow::anyhow!("worker panicked: {panic}")),
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    let dead_letters_written = writer.finish().context("writing dead letters")?;
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    Ok(ReplaySummary {
        segments: segments.len(),
        bytes: total_bytes,
        elapsed,
        snapshot: store.snapshot(),
        dead_letters_written,
    })
}

struct WorkerShared {
    archive: Archive,
    segments: Vec<Segment>,
    options: ReplayOptions,
    store: Arc<ViewStore>,
    workers: usize,
    progress: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetterSender,
    io: tokio::runtime::Handle,
    reads: SharedReads,
}

/// Each segment read from the store and framed once for the process's workers, which all
/// walk its units.
struct SharedReads {
    readers: usize,
    /// Segments framed and the readers still to take them.
    held: Mutex<HashMap<String, (Arc<FramedSegment>, usize)>>,
}

impl SharedReads {
    fn new(readers: usize) -> SharedReads {
        SharedReads {
            readers: readers.max(1),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn read(
        &self,
        key: &str,
        read: impl FnOnce() -> Result<Arc<FramedSegment>>,
    ) -> Result<Arc<FramedSegment>> {
        // Read and frame under the lock: another worker that wants the segment would wait for
        // it anyway.
        let mut held = self
            .held
            .lock()
            .map_err(|_| anyhow::anyhow!("a replay worker failed while reading {key}"))?;
        if let Some((framed, left)) = held.get_mut(key) {
            let framed = framed.clone();
            *left -= 1;
            if *left == 0 {
                held.remove(key);
            }
            return Ok(framed);
        }
        let framed = read()?;
        if self.readers > 1 {
            held.insert(key.to_owned(), (framed.clone(), self.readers - 1));
        }
        Ok(framed)
    }
}

/// A segment's bytes and its units, as the framer makes them of the whole segment.
struct FramedSegment {
    bytes: bytes::Bytes,
    units: Vec<FramedUnit>,
}

struct FramedUnit {
    start: usize,
    end: usize,
    /// Why the framer refused the bytes, when it did (rarely: boxed).
    refused: Option<Box<(DeadLetterReason, String)>>,
}

impl FramedSegment {
    fn frame(bytes: bytes::Bytes, max_message: usize) -> FramedSegment {
        let mut units = Vec::new();
        for frame in eod_fix::frames(&bytes, max_message) {
            let start = frame.offset() as usize;
            let end = start + frame.bytes().len();
            let refused = match frame {
                Framed::Message { .. } => None,
                Framed::Dead { reason, detail, .. } => Some(Box::new((reason, detail))),
            };
            units.push(FramedUnit {
                start,
                end,
                refused,
            });
        }
        FramedSegment { bytes, units }
    }
}

/// Which units of the archive a worker enters: every `workers`-th block of `block`
/// consecutive units, counted over the whole archive in segment order.
#[derive(Clone, Copy, Debug)]
struct UnitShare {
    worker: usize,
    workers: usize,
    block: u64,
}

impl UnitShare {
    fn owns(&self, ordinal: u64) -> bool {
        (ordinal / self.block.max(1)) % self.workers.max(1) as u64 == self.worker as u64
    }
}

/// The workers that share a replay's books lag ([`crate::driver::replay_limits`]): with one
/// writer for the whole cluster (SQLite), every worker of every process feeds it, so a
/// process's share shrinks with the processes; with a writer per worker, the process's
/// workers. Counted per process with SQLite, a two-process replay (one worker each) let the
/// writer fall twice as far behind as it needs, for no time: a 1M-message replay took the same
/// time or less with half that lag (5.45-5.71 s against 5.62-5.99 s, four pairs), and its
/// writing process held 272-276 MB at its peak against 278-292 MB (bench/RESULTS.md,
/// 2026-12-07, eighth session).
pub fn books_lag_shared_by(
    books: Option<&BooksTarget>,
    timely_args: &[String],
) -> Result<usize, String> {
    match books {
        Some(books) if books.one_writer() => peers(timely_args),
        _ => workers_per_process(timely_args),
    }
}

/// Fewest rows in a replay's books transaction, unless they waited [`REPLAY_BOOKS_BATCH_AGE`]
/// or the input has ended. Every commit rewrites the index pages it touched, and the WAL
/// checkpoint copies them back: committing each small epoch as it completed (a few hundred
/// rows in 250-message epochs) spent 43% of the SQLite writer's time in commits and
/// checkpoints. A replay's books need not be fresh, only complete at its end.
pub const REPLAY_BOOKS_BATCH_ROWS: usize = 50_000;
/// Longest a replay's books rows wait for their batch: short enough that a worker waiting for
/// the books to catch up (see `driver::replay_limits`) is not held long by a part batch.
pub const REPLAY_BOOKS_BATCH_AGE: Duration = Duration::from_millis(500);

fn replay_worker(worker: &mut timely::worker::Worker, shared: &WorkerShared) -> Result<()> {
    let index = worker.index();
    let peers = worker.peers();
    let publishes = index.is_multiple_of(shared.workers);
    let store = publishes.then(|| shared.store.clone());
    let workers = shared.workers;
    let books = shared.options.books.as_ref();
    let limits = BatchLimits {
        max_age: REPLAY_BOOKS_BATCH_AGE,
        max_rows: shared
            .options
            .books_batch
            .max_rows
            .max(REPLAY_BOOKS_BATCH_ROWS),
        spill: None,
        ..shared.options.books_batch.clone()
    };
    let (mut inputs, frontiers) = worker.dataflow(|scope| {
        let dead_letters = shared.dead_letters.clone();
        let refused = move || refused_to_jsonl(dead_letters);
        let sinks = shared.metrics.sinks.clone();
        build_with_books(
            scope,
            store,
            workers,
            books.map(|b| (b, limits)),
            0,
            sinks,
            refused,
        )
    })?;
    if books.is_some() && shared.options.worker_nice > 0 {
        // Now that the dataflow is built: the books writer thread started with it keeps the
        // process's priority.
        if let Err(e) = crate::priority::lower_this_thread(shared.options.worker_nice) {
            tracing::warn!(worker = index, error = %e, "could not lower the worker's priority");
        }
    }
    let mut intake = Intake::new(
        "",
        shared.options.max_message,
        shared.dead_letters.clone(),
        shared.metrics.clone(),
    );
    intake.enter_sources(books.is_some());
    if index == 0 {
        for update in &shared.options.prices {
            inputs.price(update.clone());
        }
        shared.options.reference.enter(&mut inputs);
    }
    let mut source = ArchiveSource {
        shared,
        next_segment: 0,
        open: None,
        intake,
        share: UnitShare {
            worker: index,
            workers: peers,
            block: shared.options.epoch_messages.max(1),
        },
        ordinal: 0,
    };
    if shared.options.exit_after {
        // Set before the drive, not after: timely drops each operator on this thread once it
        // has finished, and with books the drive steps on until the writer has every row,
        // long after the views' operators are done (`perf` of a 1M replay with SQLite books
        // in 250-message epochs: 119 of the two workers' 2,713 samples freed the live fills'
        // and the books' state one allocation at a time, while the switch was still off).
        eod_dataflow::day_state::skip_freeing_on_this_thread();
    }
    drive(
        worker,
        inputs,
        &frontiers,
        &mut source,
        EpochPolicy::Messages(shared.options.epoch_messages),
        shared.options.limits,
        &shared.metrics,
    )
}

/// This worker's share of the archive's units, from every segment in name order.
struct ArchiveSource<'a> {
    shared: &'a WorkerShared,
    next_segment: usize,
    /// The segment being read, its next unit, and its span.
    open: Option<(
        &'a Segment,
        Arc<FramedSegment>,
        usize,
        tracing::span::EnteredSpan,
    )>,
    intake: Intake,
    share: UnitShare,
    /// Units of the archive walked so far, this worker's or not.
    ordinal: u64,
}

impl Source for ArchiveSource<'_> {
    fn feed(&mut self, inputs: &mut eod_dataflow::Inputs, budget: u64) -> Result<Feed> {
        if self.open.is_none() {
            let Some(segment) = self.shared.segments.get(self.next_segment) else {
                return Ok(Feed::Exhausted);
            };
            // One worker counts each segment's messages in the census, apart from the framer.
            let counts_census = self.next_segment % self.share.workers == self.share.worker;
            self.next_segment += 1;
            let span = tracing::info_span!(
                "replay_segment",
                key = %segment.key,
                worker = self.share.worker
            )
            .entered();
            let shared = self.shared;
            let framed = shared.reads.read(&segment.key, || {
                let bytes = shared.io.block_on(shared.archive.read(&segment.key))?;
                Ok(Arc::new(FramedSegment::frame(
                    bytes,
                    shared.options.max_message,
                )))
            })?;
            self.intake.reset(&segment.key);
            if counts_census {
                self.intake.observe_stream(&framed.bytes);
                shared.metrics.sources.segments_read.inc();
                shared
                    .progress
                    .fetch_add(framed.bytes.len() as u64, Ordering::Relaxed);
            }
            self.open = Some((segment, framed, 0, span));
        }
        let Some((segment, framed, next_unit, _span)) = self.open.as_mut() else {
            return Ok(Feed::Idle);
        };
        // At most `budget` units, so that an epoch of N messages is N messages.
        let mut entered = 0;
        while entered < budget {
            let Some(unit) = framed.units.get(*next_unit) else {
                break;
            };
            *next_unit += 1;
            let ordinal = self.ordinal;
            self.ordinal += 1;
            if !self.share.owns(ordinal) {
                continue;
            }
            let refused = unit
                .refused
                .as_ref()
                .map(|refused| Reject::new(refused.0, refused.1.clone()));
            self.intake.enter_unit(
                &framed.bytes[unit.start..unit.end],
                unit.start as u64,
                refused,
                inputs,
            );
            entered += 1;
        }
        if *next_unit >= framed.units.len() {
            // Every unit of the segment is walked.
            self.shared.dead_letters.source_done(&segment.key);
            self.open = None;
        }
        Ok(Feed::Entered(entered))
    }

    fn before_close(&mut self, inputs: &mut eod_dataflow::Inputs) {
        self.intake.flush_counts(inputs);
    }
}

fn spawn_progress(
    total: u64,
    progress: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // Only replays longer than a second get a bar.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} replay [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !done.load(Ordering::Acquire) {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    })
}

/// Books rows the store refused (reason DOWNSTREAM) or kept timing out on (TIMEOUT) go to
/// the dead-letter file as JSON, with the archive location of the FIX they came from and the
/// retries spent on them.
pub fn refused_to_jsonl(dead_letters: DeadLetterSender) -> RefusedRow {
    Box::new(move |row: &BookRow, refusal: &RowRefusal| {
        let json = serde_json::to_vec(row).unwrap_or_default();
        let (source, offset) = row
            .source
            .as_ref()
            .map(|s| (s.archive_key.to_string(), s.archive_offset))
            .unwrap_or_default();
        let mut record = DeadLetterRecord::new(
            refusal_reason(refusal),
            format!("{} (ExecID {})", refusal.detail(), row.exec_id),
            &source,
            offset,
            &json,
        );
        record.retry_count = refusal.retries;
        // The writer outlives the run's sinks; a send fails only during teardown.
        dead_letters.send(record);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's one writer takes the rows of every worker of every process; a PostgreSQL
    /// writer per worker takes its own.
    #[test]
    fn the_books_lag_is_shared_by_the_workers_that_feed_one_writer() {
        let args =
            |flags: &str| -> Vec<String> { flags.split_whitespace().map(str::to_owned).collect() };
        let sqlite = BooksTarget::Sqlite("b.sqlite".into());
        let postgres: BooksTarget = "postgres://u@127.0.0.1:5432/db".parse().unwrap();
        let cluster = args("-w 2 -n 3 -p 1 -h hosts");
        assert_eq!(books_lag_shared_by(Some(&sqlite), &cluster), Ok(6));
        assert_eq!(books_lag_shared_by(Some(&postgres), &cluster), Ok(2));
        assert_eq!(books_lag_shared_by(None, &cluster), Ok(2));
        assert_eq!(books_lag_shared_by(Some(&sqlite), &args("-w 3")), Ok(3));
        assert!(books_lag_shared_by(Some(&sqlite), &args("-w 0")).is_err());
    }

    /// Every unit goes to exactly one worker, a block of consecutive units to the same one,
    /// and consecutive blocks to the workers in turn.
    #[test]
    fn each_unit_has_one_worker_by_blocks_in_turn() {
        for workers in 1..5 {
            for block in 1..6u64 {
                for ordinal in 0..200u64 {
                    let owners: Vec<usize> = (0..workers)
                        .filter(|&worker| {
                            UnitShare {
                                worker,
                                workers,
                                block,
                            }
                            .owns(ordinal)
                        })
                        .collect();
                    assert_eq!(owners, vec![(ordinal / block) as usize % workers]);
                }
            }
        }
    }

    /// A segment framed whole has the units of the stream framer fed in pieces, dead ones
    /// with their reasons, at their offsets.
    #[test]
    fn a_segment_framed_whole_keeps_every_unit_and_its_offset() {
        let fill = eod_fix::FixEncoder::new("FIX.4.4").message("0", &[]);
        let mut bytes = fill.clone();
        bytes.extend_from_slice(b"junk");
        bytes.extend_from_slice(&fill);
        let framed = FramedSegment::frame(bytes::Bytes::from(bytes.clone()), 4096);
        let spans: Vec<(usize, usize, bool)> = framed
            .units
            .iter()
            .map(|unit| (unit.start, unit.end, unit.refused.is_some()))
            .collect();
        let n = fill.len();
        assert_eq!(
            spans,
            vec![(0, n, false), (n, n + 4, true), (n + 4, 2 * n + 4, false)]
        );
    }
}
