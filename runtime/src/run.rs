//! `eod run`: the dataflow fed from Kafka. Every worker reads the partitions assigned to it
//! (partition p goes to worker p mod peers, in every process alike), from the beginning of
//! the trading day, so the views are rebuilt exactly on every start.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eod_dataflow::{
    BookRow, BooksRestore, Counter, Diff, Inputs, PriceUpdate, Text, Time, TradeEvent, TradeSource,
    ViewSnapshot, ViewStore,
};
use eod_fix::time::now_utc_nanos;
use eod_proto::DeadLetterReason;
use eod_sinks::books::{RefusedRow, RowRefusal};
use eod_sources::envelope::{event_from_bytes, Received};
use eod_sources::kafka::{
    assigned_consumer_at, end_offsets, metadata_consumer, partition_count, KafkaConnection,
    RecordProducer, Topics,
};
use eod_sources::reference_data::ReferenceRecord;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::books::{build_with_books, BatchLimits, BooksTarget, ReferenceData};
use crate::driver::{
    drive_from, EpochLimits, EpochPolicy, Feed, Frontiers, PeerCloses, PeerClosesBeacon, Source,
    OPEN_EPOCH_CAP,
};
use crate::metrics::Metrics;
use crate::snapshot::{
    self, Archived, ChainReader, LogRecord, Part, PartitionOffset, Restored, SnapshotLog,
    SnapshotWriter, SourceRef, WriterJob,
};
use crate::timely_args::{timely_config, workers_per_process};
use eod_sources::prices::price_from_bytes;
use eod_sources::schema_registry::{UnframeError, WireFormat};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub kafka: KafkaConnection,
    pub topics: Topics,
    pub group_id: String,
    /// Reference prices loaded at start, besides the prices topic.
    pub prices: Vec<PriceUpdate>,
    pub epoch: Duration,
    /// Closed epochs in flight and not yet durable before the source holds back.
    pub limits: EpochLimits,
    /// Stop once every assigned partition is read up to its end offset at start.
    pub until_caught_up: bool,
    pub timely_args: Vec<String>,
    pub books: Option<BooksTarget>,
    pub books_batch: BatchLimits,
    pub reference: ReferenceData,
    /// Also follow the reference topic (traders and securities, compacted).
    pub reference_from_topic: bool,
    /// Write snapshots, and start from the newest one.
    pub snapshots: Option<SnapshotOptions>,
    /// How records on the protobuf topics are framed (plain, or Schema Registry ids).
    pub wire: WireFormat,
    /// Trades the gateway received before this moment (UTC nanoseconds) stay out of the
    /// summary's latency histograms, not out of the Prometheus ones: a benchmark sets it while
    /// the run goes, to leave out its warm-up. Zero (the default) measures every trade.
    pub latency_from: Arc<AtomicI64>,
    /// Return the allocator's free memory to the system once the process has been quiet this
    /// long after a burst (see [`crate::memory`]); `None`: never.
    pub trim_memory: Option<crate::memory::TrimPolicy>,
}

#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// A directory, `file://` or `s3://bucket/prefix`; snapshots go under the group id.
    pub location: String,
    pub interval: Duration,
}

#[derive(Debug)]
pub struct RunSummary {
    pub snapshot: Arc<ViewSnapshot>,
    pub elapsed: Duration,
    /// Fill-to-view latency in microseconds, over the trades this process's workers read.
    pub latency_micros: hdrhistogram::Histogram<u64>,
    /// The part of it spent before the record was consumed (gateway, Kafka).
    pub consume_latency_micros: hdrhistogram::Histogram<u64>,
    /// The part from the record's Kafka timestamp (set when the gateway produced it, in whole
    /// milliseconds) until it was consumed: the broker, the fetch and the wait for the worker's
    /// poll. The rest of `consume_latency_micros` is the gateway's (archive, fsync, decode).
    pub in_kafka_latency_micros: hdrhistogram::Histogram<u64>,
    /// The snapshot this run started from.
    pub restored: Option<RestoredSummary>,
    /// With `--until-caught-up`: from the start of the run until this process's views held
    /// everything up to the end offsets (the books may still be writing then).
    pub views_caught_up: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
pub struct RestoredSummary {
    pub generation: u64,
    pub cut: Time,
    pub records: u64,
}

/// One worker's latency histograms, added to the process's when it ends.
struct Latencies {
    fill_to_view: hdrhistogram::Histogram<u64>,
    until_consumed: hdrhistogram::Histogram<u64>,
    in_kafka: hdrhistogram::Histogram<u64>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            fill_to_view: new_latency_histogram(),
            until_consumed: new_latency_histogram(),
            in_kafka: new_latency_histogram(),
        }
    }
}

fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    // 1 us to 1 h at 3 significant digits.
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// What every worker of this process shares.
struct Shared {
    options: RunOptions,
    store: Arc<ViewStore>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    trade_partitions: i32,
    price_partitions: i32,
    reference_partitions: i32,
    workers_per_process: usize,
    latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    consume_latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    in_kafka_latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    /// How far this process's workers have read each partition, for the lag monitor.
    read_positions: Arc<ReadPositions>,
    snapshots: Option<Snapshots>,
    started: Instant,
    /// With `--until-caught-up`: the latest time a worker saw the views reflect its last epoch.
    views_caught_up: std::sync::Mutex<Option<Duration>>,
    /// Epochs the cluster's workers closed with input (an idle worker follows at once).
    peer_closes: Arc<PeerCloses>,
}

/// This process's side of the snapshots: what it restored, and where its workers' parts go.
struct Snapshots {
    restored: Option<Restored>,
    generation: u64,
    /// Cuts fall on multiples of this many epochs.
    period: Time,
    /// The dataflow times the restore takes, the same at every worker: the run's own epochs
    /// start after them.
    restore_epochs: Time,
    writer: std::sync::Mutex<Option<mpsc::Sender<WriterJob>>>,
}

/// A restore enters at most this many records per worker per epoch (a replay's epoch).
const RESTORE_EPOCH_RECORDS: u64 = 200_000;
/// The books take a restore's records in chunks of this many between live epochs: a few
/// milliseconds of their work each, so that a fill arriving meanwhile waits little longer.
const BOOKS_RESTORE_CHUNK: usize = 5_000;

/// Opens the snapshot store (under the consumer group), finds the newest complete snapshot and
/// starts the writer.
fn open_snapshots(
    options: &SnapshotOptions,
    group_id: &str,
    peers: usize,
    metrics: &Metrics,
    abandon: Arc<AtomicBool>,
) -> Result<(Snapshots, std::thread::JoinHandle<()>)> {
    let local = match options.location.strip_prefix("file://") {
        Some(path) => Some(path),
        None if !options.location.contains("://") => Some(options.location.as_str()),
        None => None,
    };
    if let Some(dir) = local {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    let store = eod_sources::archive::open_store(&options.location)?;
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::prefix::PrefixStore::new(store, group_id));
    let started = Instant::now();
    let restored = snapshot::load_newest(&*store, &metrics.snapshots)
        .with_context(|| format!("reading snapshots at {}", options.location))?;
    if let Some(r) = &restored {
        tracing::info!(
            generation = r.generation,
            cut = r.cut,
            records = r.records(),
            read_s = started.elapsed().as_secs_f64(),
            "starting from a snapshot"
        );
    }
    let generation = restored.as_ref().map_or(0, |r| r.generation) + 1;
    let (writer, thread) = SnapshotWriter::start(store, metrics.snapshots.clone(), abandon)?;
    // Cuts fall on multiples of the interval in clock epoch numbers: each worker cuts at its
    // first close past one, so the parts of a cut come from every worker alike.
    let period = crate::driver::clock_span(options.interval).max(1);
    // From the snapshot's own record count, so every process computes the same.
    let restore_epochs = restored.as_ref().map_or(0, |r| {
        let per_epoch = RESTORE_EPOCH_RECORDS * peers as u64;
        r.records().div_ceil(per_epoch).max(1)
    });
    Ok((
        Snapshots {
            restored,
            generation,
            restore_epochs,
            period,
            writer: std::sync::Mutex::new(Some(writer.handle())),
        },
        thread,
    ))
}

/// The next offset to read of every partition a worker of this process is assigned; -1 for
/// partitions other processes read. Workers store, the lag monitor loads.
#[derive(Default)]
struct ReadPositions {
    partitions: Vec<(String, i32, AtomicI64)>,
}

impl ReadPositions {
    fn new(topics: &[(&str, i32)]) -> ReadPositions {
        let partitions = topics
            .iter()
            .flat_map(|(topic, count)| {
                (0..*count).map(|p| ((*topic).to_owned(), p, AtomicI64::new(-1)))
            })
            .collect();
        ReadPositions { partitions }
    }

    fn slot(&self, topic: &str, partition: i32) -> Option<&AtomicI64> {
        self.partitions
            .iter()
            .find(|(t, p, _)| t == topic && *p == partition)
            .map(|(_, _, next)| next)
    }
}

/// Reports consumer lag once a second until `done`. It asks the broker for every partition's
/// end, which takes a round trip each: on a thread of its own, so that no timely worker ever
/// waits on it (a worker stalled in a broker call holds up every epoch at every worker).
fn monitor_lag(
    kafka: &KafkaConnection,
    positions: &ReadPositions,
    metrics: &Metrics,
    done: &AtomicBool,
) -> Result<()> {
    let client = metadata_consumer(kafka)?;
    let mut next_report = Instant::now();
    while !done.load(Ordering::Acquire) {
        if Instant::now() >= next_report {
            next_report = Instant::now() + Duration::from_secs(1);
            // The brokers are up while they answer (readiness asks `eod_kafka_up`).
            let (mut asked, mut answered) = (false, true);
            for (topic, partition, next) in &positions.partitions {
                let next = next.load(Ordering::Relaxed);
                if next < 0 {
                    continue;
                }
                asked = true;
                match client.fetch_watermarks(topic, *partition, Duration::from_millis(500)) {
                    Ok((low, high)) => metrics
                        .sources
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set((high - next.max(low)).max(0)),
                    Err(_) => answered = false,
                }
            }
            if !asked {
                answered = client
                    .fetch_metadata(None, Duration::from_millis(500))
                    .is_ok();
            }
            metrics.sources.kafka_up.set(i64::from(answered));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn run_kafka(
    options: RunOptions,
    store: Arc<ViewStore>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary> {
    // From here: a restart's time to exact views includes reading the snapshot.
    let started = Instant::now();
    let workers_per_process =
        workers_per_process(&options.timely_args).map_err(anyhow::Error::msg)?;
    let config = timely_config(&options.timely_args).map_err(anyhow::Error::msg)?;
    let config_peers =
        crate::timely_args::peers(&options.timely_args).map_err(anyhow::Error::msg)?;
    if let Some(books) = &options.books {
        // Every process may try: the migration takes a lock and applies each version once.
        books.migrate()?;
        // Reached: ready until a write finds it down (readiness asks `eod_sink_store_up`).
        metrics.sinks.store_up.with_label_values(&["books"]).set(1);
    }
    let metadata_timeout = Duration::from_secs(10);
    let trade_partitions =
        partition_count(&options.kafka, &options.topics.trades, metadata_timeout)?;
    let price_partitions =
        partition_count(&options.kafka, &options.topics.prices, metadata_timeout)?;
    // Reference data on Kafka is optional: without the topic, the CSV files (if any) are all.
    let reference_partitions = match (&options.books, options.reference_from_topic) {
        (Some(_), true) => {
            match partition_count(&options.kafka, &options.topics.reference, metadata_timeout) {
                Ok(partitions) => partitions,
                Err(e) => {
                    tracing::info!(topic = %options.topics.reference, error = %e, "no reference topic: reference data from files only");
                    0
                }
            }
        }
        _ => 0,
    };
    // The snapshot writer gives up on a store that is down once the run is over (or stopped).
    let abandon_snapshots = Arc::new(AtomicBool::new(false));
    let (snapshots, snapshot_writer) = match &options.snapshots {
        Some(snapshot_options) => {
            let (snapshots, thread) = open_snapshots(
                snapshot_options,
                &options.group_id,
                config_peers,
                &metrics,
                abandon_snapshots.clone(),
            )?;
            (Some(snapshots), Some(thread))
        }
        None => (None, None),
    };
    let restored = snapshots
        .as_ref()
        .and_then(|s| s.restored.as_ref())
        .map(|r| RestoredSummary {
            generation: r.generation,
            cut: r.cut,
            records: r.records(),
        });
    let read_positions = Arc::new(ReadPositions::new(&[
        (&options.topics.trades, trade_partitions),
        (&options.topics.prices, price_partitions),
    ]));
    let workers_done = Arc::new(AtomicBool::new(false));
    let lag_monitor = {
        let (kafka, positions, metrics, done) = (
            options.kafka.clone(),
            read_positions.clone(),
            metrics.clone(),
            workers_done.clone(),
        );
        std::thread::Builder::new()
            .name("lag-monitor".into())
            .spawn(move || monitor_lag(&kafka, &positions, &metrics, &done))?
    };
    let shared = Arc::new(Shared {
        options,
        store: store.clone(),
        metrics,
        stop,
        trade_partitions,
        price_partitions,
        reference_partitions,
        workers_per_process,
        latency: std::sync::Mutex::new(new_latency_histogram()),
        consume_latency: std::sync::Mutex::new(new_latency_histogram()),
        in_kafka_latency: std::sync::Mutex::new(new_latency_histogram()),
        read_positions,
        snapshots,
        started,
        views_caught_up: std::sync::Mutex::new(None),
        peer_closes: Arc::default(),
    });
    let memory_watch = crate::memory::spawn_memory_watch(
        shared.options.trim_memory,
        shared.metrics.clone(),
        workers_done.clone(),
    )?;
    let worker_shared = shared.clone();
    let guards = match timely::execute(config, move |worker| {
        let mut latencies = Latencies::new();
        let result = run_worker(worker, &worker_shared, &mut latencies);
        // Same bounds on both sides: adding cannot fail.
        for (total, worker) in [
            (&worker_shared.latency, &latencies.fill_to_view),
            (&worker_shared.consume_latency, &latencies.until_consumed),
            (&worker_shared.in_kafka_latency, &latencies.in_kafka),
        ] {
            if let Ok(mut total) = total.lock() {
                let _ = total.add(worker);
            }
        }
        result
    }) {
        Ok(guards) => guards,
        Err(e) => {
            workers_done.store(true, Ordering::Release);
            return Err(anyhow::Error::msg(e));
        }
    };
    let results = guards.join();
    workers_done.store(true, Ordering::Release);
    if let Some(thread) = snapshot_writer {
        finish_snapshots(&shared, thread, &abandon_snapshots);
    }
    let monitored = lag_monitor
        .join()
        .map_err(|_| anyhow::anyhow!("lag monitor panicked"));
    memory_watch
        .join()
        .map_err(|_| anyhow::anyhow!("memory watch panicked"))?;
    for result in results {
        result.map_err(|e| anyhow::anyhow!("worker panicked: {e}"))??;
    }
    monitored??;
    let poisoned = |_| anyhow::anyhow!("latency histogram lock poisoned");
    let latency_micros = shared.latency.lock().map(|h| h.clone()).map_err(poisoned)?;
    let consume_latency_micros = shared
        .consume_latency
        .lock()
        .map(|h| h.clone())
        .map_err(poisoned)?;
    let in_kafka_latency_micros = shared
        .in_kafka_latency
        .lock()
        .map(|h| h.clone())
        .map_err(poisoned)?;
    Ok(RunSummary {
        snapshot: store.snapshot(),
        elapsed: started.elapsed(),
        latency_micros,
        consume_latency_micros,
        in_kafka_latency_micros,
        restored,
        views_caught_up: shared.views_caught_up.lock().ok().and_then(|t| *t),
    })
}

/// Lets the writer store the parts the workers handed over at the end (a clean stop leaves a
/// snapshot of everything read), for up to 30 s when the store is down.
fn finish_snapshots(shared: &Shared, thread: std::thread::JoinHandle<()>, abandon: &AtomicBool) {
    if let Some(snapshots) = &shared.snapshots {
        if let Ok(mut writer) = snapshots.writer.lock() {
            writer.take();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !thread.is_finished() && Instant::now() < deadline && !shared.stop.load(Ordering::Acquire)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    abandon.store(true, Ordering::Release);
    if thread.join().is_err() {
        tracing::error!("snapshot writer panicked");
    }
}

/// Outcome counts entered once per epoch.
#[derive(Default)]
struct RecordCounts {
    read: u64,
    dead: Vec<(&'static str, u64)>,
}

impl RecordCounts {
    fn dead_letter(&mut self, reason: &'static str) {
        match self.dead.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dead.push((reason, 1)),
        }
    }

    fn flush(&mut self, inputs: &mut Inputs, metrics: &Metrics) {
        let counts = std::mem::take(self);
        if counts.read > 0 {
            inputs.count(Counter::Read, counts.read as isize);
            metrics.sources.messages_read.inc_by(counts.read);
        }
        for (reason, n) in counts.dead {
            inputs.count(Counter::DeadLetter(reason.into()), n as isize);
            metrics.sources.count_dead_letters(reason, n);
        }
    }
}

fn flush_consumed(consumed: &mut [u64], assignments: &[(String, i32)], metrics: &Metrics) {
    for (n, (topic, _)) in consumed.iter_mut().zip(assignments) {
        if *n > 0 {
            metrics
                .sources
                .kafka_consumed
                .with_label_values(&[topic.as_str()])
                .inc_by(std::mem::take(n));
        }
    }
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &Shared,
    histograms: &mut Latencies,
) -> Result<()> {
    let Shared {
        options,
        store,
        metrics,
        trade_partitions,
        price_partitions,
        reference_partitions,
        workers_per_process: workers,
        ..
    } = shared;
    let (trade_partitions, price_partitions, workers) =
        (*trade_partitions, *price_partitions, *workers);
    let (index, peers) = (worker.index(), worker.peers());
    let _span = tracing::info_span!("run_worker", worker = index).entered();
    let publishes = index.is_multiple_of(workers);
    let books = options.books.as_ref();
    let restore_epochs = shared.snapshots.as_ref().map_or(0, |s| s.restore_epochs);
    let (mut inputs, frontiers) = worker.dataflow(|scope| {
        let (kafka, topic) = (options.kafka.clone(), options.topics.dead_letters.clone());
        let wire = options.wire.clone();
        let refused = move || refused_to_kafka(kafka, topic, wire);
        let store = publishes.then(|| store.clone());
        let sink = books.map(|b| (b, options.books_batch.clone()));
        // A restore's rows are in the books already: its parts waited for the books.
        build_with_books(
            scope,
            store,
            workers,
            sink,
            restore_epochs,
            metrics.sinks.clone(),
            refused,
        )
    })?;
    // In a cluster of several processes, theirs hear of this one's closes with input.
    let beacon =
        (peers > workers).then(|| PeerClosesBeacon::build(worker, shared.peer_closes.clone()));
    let mine = |topic: &str, partitions: i32| {
        (0..partitions)
            .filter(|p| *p as usize % peers == index)
            .map(|p| (topic.to_owned(), p))
            .collect::<Vec<_>>()
    };
    let mut assignments = mine(&options.topics.trades, trade_partitions);
    assignments.extend(mine(&options.topics.prices, price_partitions));
    // All reference partitions to worker 0: a record replaces its key's previous value, so
    // one reader keeps the per-key state.
    if index == 0 {
        assignments
            .extend((0..*reference_partitions).map(|p| (options.topics.reference.clone(), p)));
    }
    // From a snapshot: its offsets, and the records and counts of the old workers this one
    // takes over.
    let restored = shared.snapshots.as_ref().and_then(|s| s.restored.as_ref());
    let starts: Vec<i64> = match restored {
        Some(restored) => {
            let offsets = restored.offsets();
            assignments
                .iter()
                .map(|(topic, p)| offsets.get(&(topic.clone(), *p)).copied().unwrap_or(0))
                .collect()
        }
        None => vec![0; assignments.len()],
    };
    let share = restored.map(|r| r.share(index, peers)).unwrap_or_default();
    let consumer = if assignments.is_empty() {
        None
    } else {
        let mut consumer =
            assigned_consumer_at(&options.kafka, &options.group_id, &assignments, &starts)?;
        // The driver parks the worker when it has nothing to do (timely's park is the
        // thread's), until its open epoch is due: a record arriving wakes it at once, rather
        // than at the end of the park (`Source::input_wakes_worker`).
        let worker_thread = std::thread::current();
        consumer.set_nonempty_callback(move || worker_thread.unpark());
        Some(consumer)
    };
    // End offsets at start: with --until-caught-up the run stops once it has read up to them.
    let ends = match (&consumer, options.until_caught_up) {
        (Some(consumer), true) => end_offsets(consumer, &assignments, Duration::from_secs(10))?,
        _ => Vec::new(),
    };
    if index == 0 {
        for price in &options.prices {
            inputs.price(price.clone());
        }
        options.reference.enter(&mut inputs);
    }
    // Counts entered from here on are the topics' (and a snapshot's): what a part records.
    let count_base = inputs.counted();
    let snapshot = shared.snapshots.as_ref().map(|s| {
        let offsets = partition_offsets(&assignments, &starts);
        SnapshotLog::new(
            s.generation,
            index,
            peers,
            s.period,
            share.chain.clone(),
            offsets,
            share.counts.clone(),
        )
    });
    let snapshot_writer = shared
        .snapshots
        .as_ref()
        .and_then(|s| s.writer.lock().ok().and_then(|w| w.clone()));
    for (counter, n) in &share.counts {
        inputs.count(counter.clone(), *n);
    }

    let read_slots = assignments
        .iter()
        .map(|(topic, partition)| shared.read_positions.slot(topic, *partition))
        .collect();
    let mut source = KafkaSource {
        shared,
        consumer,
        ends,
        next_offsets: starts,
        consumed: vec![0; assignments.len()],
        committed: vec![0; assignments.len()],
        read_slots,
        assignments,
        reference_state: HashMap::new(),
        dead_letters: RecordProducer::new(&options.kafka)?.with_wire_format(options.wire.clone()),
        counts: RecordCounts::default(),
        counts_flushed: Instant::now(),
        receive_times: Vec::new(),
        fresh: VecDeque::new(),
        unsynced: VecDeque::new(),
        draining: false,
        histograms,
        awaiting_durable: VecDeque::new(),
        snapshot,
        snapshot_writer,
        count_base,
        counted_at_close: Vec::new(),
        dead_letters_since_cut: 0,
        books_backlog: None,
        beacon,
    };
    source.restore(
        worker,
        &mut inputs,
        &frontiers,
        share.segments,
        share.records,
        restore_epochs,
    )?;
    drive_from(
        worker,
        inputs,
        &frontiers,
        &mut source,
        EpochPolicy::Clock {
            epoch: options.epoch,
            open_epoch_cap: OPEN_EPOCH_CAP,
        },
        options.limits,
        metrics,
        restore_epochs,
    )?;
    if let Some(consumer) = &source.consumer {
        consumer.unassign().ok();
    }
    source
        .dead_letters
        .flush(Duration::from_secs(30))
        .context("flushing dead letters")?;
    Ok(())
}

/// This worker's partitions of the trades, prices and reference topics, from the beginning of
/// the day. Offsets are committed behind the durable frontier.
struct KafkaSource<'a> {
    shared: &'a Shared,
    consumer: Option<BaseConsumer>,
    assignments: Vec<(String, i32)>,
    /// End offsets at start (`--until-caught-up`).
    ends: Vec<i64>,
    next_offsets: Vec<i64>,
    /// Records read per assignment since the last metrics flush (labels are looked up once
    /// per flush, not once per record).
    consumed: Vec<u64>,
    committed: Vec<i64>,
    read_slots: Vec<Option<&'a AtomicI64>>,
    reference_state: HashMap<String, ReferenceRecord>,
    dead_letters: RecordProducer,
    counts: RecordCounts,
    counts_flushed: Instant,
    /// Receive times of the open epoch's trades.
    receive_times: Vec<i64>,
    /// Closed epochs the views do not reflect yet, with their trades' receive times.
    fresh: VecDeque<(Time, Vec<i64>)>,
    /// Closed epochs not yet durable, with the offsets they read through.
    unsynced: VecDeque<(Time, Vec<i64>)>,
    /// Input has ended: commit synchronously.
    draining: bool,
    histograms: &'a mut Latencies,
    /// Parts whose records are not yet durable (the books have not written them all).
    awaiting_durable: VecDeque<(Option<Time>, String, Part)>,
    /// What this worker entered since its last snapshot part.
    snapshot: Option<SnapshotLog>,
    snapshot_writer: Option<mpsc::Sender<WriterJob>>,
    /// `Inputs::counted` before anything from the topics or a snapshot.
    count_base: Vec<(Counter, Diff)>,
    counted_at_close: Vec<(Counter, Diff)>,
    /// Dead letters sent since the last part: flushed to the broker before the next one, so
    /// that a snapshot never covers a dead letter still in the producer's queue.
    dead_letters_since_cut: u64,
    /// The restored segments, read again for the books once the views have caught up.
    books_backlog: Option<BooksBacklog>,
    /// Tells the other processes' workers of this process's closes with input.
    beacon: Option<PeerClosesBeacon>,
}

/// A restore's records on their second pass, for the books.
struct BooksBacklog {
    records: ChainReader,
    remaining: u64,
    started: Option<Instant>,
}

fn partition_offsets(assignments: &[(String, i32)], next: &[i64]) -> Vec<PartitionOffset> {
    assignments
        .iter()
        .zip(next)
        .map(|((topic, partition), next)| PartitionOffset {
            topic: topic.clone(),
            partition: *partition,
            next: *next,
        })
        .collect()
}

/// `counted` less `base`: the counts since the base was taken.
fn counts_since(counted: &[(Counter, Diff)], base: &[(Counter, Diff)]) -> Vec<(Counter, Diff)> {
    let mut counts: BTreeMap<Counter, Diff> = counted.iter().cloned().collect();
    for (counter, n) in base {
        *counts.entry(counter.clone()).or_default() -= n;
    }
    counts.into_iter().filter(|(_, n)| *n != 0).collect()
}

impl Source for KafkaSource<'_> {
    /// The consumer's non-empty callback unparks the worker (a worker without partitions
    /// has no input to wait for).
    fn input_wakes_worker(&self) -> bool {
        true
    }

    fn feed(&mut self, inputs: &mut Inputs, budget: u64) -> Result<Feed> {
        let options = &self.shared.options;
        if options.until_caught_up
            && self
                .ends
                .iter()
                .zip(&self.next_offsets)
                .all(|(end, next)| next >= end)
        {
            return Ok(Feed::Exhausted);
        }
        let mut entered = 0;
        let latency_from = options.latency_from.load(Ordering::Relaxed);
        if let Some(consumer) = &self.consumer {
            let books = options.books.is_some();
            // Never block in librdkafka: timely cannot wake a worker stuck in poll, and the
            // other workers' exchanges would wait for it at every hop. The driver parks instead,
            // and the consumer's queue wakes it (see where the consumer is made).
            for _ in 0..budget {
                let Some(result) = consumer.poll(Duration::ZERO) else {
                    break;
                };
                let message = result.context("consuming")?;
                entered += 1;
                let (topic, partition, offset) =
                    (message.topic(), message.partition(), message.offset());
                if let Some(slot) = self
                    .assignments
                    .iter()
                    .position(|(t, p)| t == topic && *p == partition)
                {
                    self.next_offsets[slot] = offset + 1;
                    self.consumed[slot] += 1;
                }
                let payload = message.payload().unwrap_or_default();
                let body = match options.wire.unframe(topic, payload) {
                    Ok(body) => Ok(body),
                    Err(UnframeError::Rejected(reject)) => Err(reject),
                    Err(UnframeError::Registry(e)) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "checking the schema of {topic}/{partition}@{offset}"
                        )))
                    }
                };
                let rejected = if topic == options.topics.trades {
                    self.counts.read += 1;
                    match body.and_then(event_from_bytes) {
                        Ok(received) => {
                            if received.receive_time >= latency_from {
                                let now = now_utc_nanos();
                                let waited = (now - received.receive_time).max(0) / 1_000;
                                self.histograms
                                    .until_consumed
                                    .saturating_record(waited.max(1) as u64);
                                if let Some(produced_ms) = message.timestamp().to_millis() {
                                    let in_kafka = (now / 1_000 - produced_ms * 1_000).max(1);
                                    self.histograms.in_kafka.saturating_record(in_kafka as u64);
                                }
                            }
                            self.receive_times.push(received.receive_time);
                            if books {
                                enter_source(inputs, &received);
                            }
                            if let Some(log) = &mut self.snapshot {
                                let archive = received.archive.map(|a| (a.object_key, a.offset));
                                log.trade(&received.event, archive, received.receive_time);
                            }
                            inputs.event(received.event);
                            None
                        }
                        Err(reject) => Some((reject.reason, reject.detail)),
                    }
                } else if topic == options.topics.reference {
                    let key = message
                        .key()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    match ReferenceRecord::decode(&key, payload) {
                        Ok(record) => {
                            if let Some(log) = &mut self.snapshot {
                                log.reference(&key, payload);
                            }
                            apply_reference(inputs, &mut self.reference_state, &key, record);
                            None
                        }
                        Err(e) => Some((DeadLetterReason::InvalidValue, e.to_string())),
                    }
                } else {
                    match body.and_then(price_from_bytes) {
                        Ok(price) => {
                            if let Some(log) = &mut self.snapshot {
                                log.price(&price);
                            }
                            inputs.price(price);
                            None
                        }
                        Err(rejected) => Some((rejected.reason, rejected.detail)),
                    }
                };
                if let Some((reason, detail)) = rejected {
                    let location = format!("{topic}/{partition}@{offset}");
                    tracing::debug!(reason = reason.label(), %detail, %location, "dead letter");
                    self.dead_letters.send_dead_letter(
                        &options.topics.dead_letters,
                        payload.to_vec(),
                        reason,
                        detail,
                        &location,
                        0,
                    )?;
                    self.counts.dead_letter(reason.label());
                    self.dead_letters_since_cut += 1;
                }
            }
        }
        if self.consumed.iter().any(|n| *n >= 4096)
            || self.counts_flushed.elapsed() >= Duration::from_secs(1)
        {
            self.flush_read_positions();
        }
        Ok(if entered == 0 {
            Feed::Idle
        } else {
            Feed::Entered(entered)
        })
    }

    fn before_close(&mut self, inputs: &mut Inputs) {
        self.counts.flush(inputs, &self.shared.metrics);
        if self.snapshot.is_some() {
            self.counted_at_close = inputs.counted();
        }
    }

    fn closed(&mut self, epoch: Time) {
        if let Some(beacon) = &mut self.beacon {
            beacon.send_news(&self.shared.peer_closes);
        }
        self.fresh
            .push_back((epoch, std::mem::take(&mut self.receive_times)));
        self.unsynced.push_back((epoch, self.next_offsets.clone()));
        self.snapshot_closed(epoch);
    }

    fn reflected(&mut self, epochs: &[Time]) {
        let Some(last) = epochs.last() else { return };
        let done = self.fresh.iter().take_while(|(t, _)| t <= last).count();
        let reflected: Vec<Vec<i64>> = self.fresh.drain(..done).map(|(_, r)| r).collect();
        record_latency(
            &reflected,
            &mut self.histograms.fill_to_view,
            self.shared.options.latency_from.load(Ordering::Relaxed),
            &self.shared.metrics,
        );
        // A stopped run ends without reading to the end offsets: its views did not catch up.
        if self.draining
            && self.fresh.is_empty()
            && self.shared.options.until_caught_up
            && !self.stopped()
        {
            let at = self.shared.started.elapsed();
            if let Ok(mut latest) = self.shared.views_caught_up.lock() {
                *latest = Some(latest.map_or(at, |t| t.max(at)));
            }
        }
    }

    fn durable(&mut self, epochs: &[Time]) -> Result<()> {
        let Some(last) = epochs.last() else {
            return Ok(());
        };
        self.release_parts(Some(*last));
        let done = self.unsynced.iter().take_while(|(t, _)| t <= last).count();
        let synced: Vec<Vec<i64>> = self.unsynced.drain(..done).map(|(_, o)| o).collect();
        if let Some(consumer) = &self.consumer {
            let mode = if self.draining {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            commit_synced(
                consumer,
                &self.assignments,
                &synced,
                &mut self.committed,
                mode,
            )?;
        }
        Ok(())
    }

    fn background(&mut self, inputs: &mut Inputs) -> Result<bool> {
        let Some(backlog) = self.books_backlog.as_mut() else {
            return Ok(false);
        };
        let started = *backlog.started.get_or_insert_with(Instant::now);
        let gauge = &self.shared.metrics.snapshots.books_backlog;
        let mut entered = 0;
        while entered < BOOKS_RESTORE_CHUNK {
            let Some(record) = backlog.records.next_record() else {
                inputs.books_restored();
                inputs.flush();
                gauge.sub(backlog.remaining as i64);
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "the books took in the snapshot"
                );
                self.books_backlog = None;
                return Ok(false);
            };
            // It decoded on the first pass, with the same checksum.
            let record = record.map_err(|e| anyhow::anyhow!("snapshot record: {e}"))?;
            entered += 1;
            if let LogRecord::Trade { event, source } = record {
                if let Some(source) = source.and_then(|s| restored_source(&event, s)) {
                    inputs.restore_books(BooksRestore::Source(source));
                }
                inputs.restore_books(BooksRestore::Event(event));
            }
        }
        inputs.flush();
        let taken = (entered as u64).min(backlog.remaining);
        backlog.remaining -= taken;
        gauge.sub(taken as i64);
        Ok(true)
    }

    fn end_of_input(&mut self) {
        self.draining = true;
        self.flush_read_positions();
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn peer_closes(&self) -> Option<&PeerCloses> {
        Some(&self.shared.peer_closes)
    }
}

impl KafkaSource<'_> {
    /// Enters this worker's share of a snapshot at times `0..epochs` (every worker uses the
    /// same times, so the books know which rows they hold already), at most two epochs ahead
    /// of the views.
    fn restore(
        &mut self,
        worker: &mut timely::worker::Worker,
        inputs: &mut Inputs,
        frontiers: &Frontiers,
        segments: Vec<bytes::Bytes>,
        records: u64,
        epochs: Time,
    ) -> Result<()> {
        if epochs == 0 {
            return Ok(());
        }
        let _span = tracing::info_span!("snapshot_restore", records, epochs).entered();
        let started = Instant::now();
        if self.shared.options.books.is_some() {
            // The books have their own pass over the records, after the views' (see
            // `Inputs::restore_books`).
            self.shared
                .metrics
                .snapshots
                .books_backlog
                .add(records as i64);
            self.books_backlog = Some(BooksBacklog {
                records: ChainReader::new(segments.iter().cloned()),
                remaining: records,
                started: None,
            });
        }
        let per_epoch = records.div_ceil(epochs).max(1);
        let mut chain = ChainReader::new(segments);
        let mut entered = 0;
        for epoch in 0..epochs {
            let mut in_epoch = 0;
            while in_epoch < per_epoch || epoch + 1 == epochs {
                let Some(record) = chain.next_record() else {
                    break;
                };
                // The segment's checksum matched: a record that does not decode is a bug here.
                let record = record.map_err(|e| anyhow::anyhow!("snapshot record: {e}"))?;
                in_epoch += 1;
                self.enter_restored(inputs, record);
            }
            entered += in_epoch;
            inputs.advance_to(epoch + 1);
            inputs.flush();
            while epoch > 0 && frontiers.views.less_equal(&(epoch - 1)) && !self.stopped() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        }
        tracing::info!(
            entered,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot records entered"
        );
        self.shared
            .metrics
            .snapshots
            .restored_records
            .add(entered as i64);
        Ok(())
    }

    fn enter_restored(&mut self, inputs: &mut Inputs, record: LogRecord) {
        match record {
            LogRecord::Trade { event, .. } => inputs.restore_event(event),
            LogRecord::Price(price) => inputs.restore_price(price),
            LogRecord::Reference { key, payload } => {
                // It decoded when it was read from the topic.
                if let Ok(record) = ReferenceRecord::decode(&key, &payload) {
                    apply_reference(inputs, &mut self.reference_state, &key, record);
                }
            }
        }
    }

    /// Records the closed epoch's boundary, and hands a part to the writer when a cut passed
    /// (at the end: a last part with everything read).
    fn snapshot_closed(&mut self, epoch: Time) {
        let Some(log) = &mut self.snapshot else {
            return;
        };
        // A part may cover only dead letters the broker has: else a crash after the part
        // would lose them (the restart does not read their records again). Asked without
        // waiting: while they are in flight the cut moves to a later close, and the views go
        // on (a wait here stalled every worker for its whole timeout while the dead-letter
        // topic could not take them). The last part waits, as the end of the run does.
        let mut may_cut = true;
        if self.dead_letters_since_cut > 0 && log.cut_due(epoch, self.draining) {
            let delivered = if self.draining {
                self.dead_letters
                    .flush(Duration::from_secs(30))
                    .map(|_| true)
            } else {
                self.dead_letters.all_delivered()
            };
            match delivered {
                Ok(true) => self.dead_letters_since_cut = 0,
                Ok(false) => may_cut = false,
                Err(e) => {
                    tracing::warn!(error = %e, "dead letters not delivered: snapshot part deferred");
                    may_cut = false;
                }
            }
        }
        let offsets = partition_offsets(&self.assignments, &self.next_offsets);
        let counts = counts_since(&self.counted_at_close, &self.count_base);
        let job = if self.draining {
            may_cut.then(|| log.finish(epoch, offsets, counts))
        } else {
            log.closed(epoch, offsets, counts, may_cut)
        };
        let (Some(job), Some(writer)) = (job, &self.snapshot_writer) else {
            return;
        };
        // The segment now; its part once the books hold its records (a restore then need not
        // write them again), which the writer's order keeps after the segment.
        if let Some((key, bytes)) = job.segment {
            let segment = WriterJob::Segment { key, bytes };
            SnapshotWriter::submit(writer, segment, &self.shared.metrics.snapshots);
        }
        self.awaiting_durable
            .push_back((job.through, job.part_key, job.part));
        self.release_parts(None);
    }

    /// Hands the writer the parts whose epochs are durable through `durable`.
    fn release_parts(&mut self, durable: Option<Time>) {
        let Some(writer) = &self.snapshot_writer else {
            return;
        };
        while let Some((through, _, _)) = self.awaiting_durable.front() {
            let ready = match (through, durable) {
                (None, _) => true,
                (Some(through), Some(durable)) => *through <= durable,
                (Some(_), None) => false,
            };
            if !ready {
                break;
            }
            if let Some((_, key, part)) = self.awaiting_durable.pop_front() {
                let job = WriterJob::Part { key, part };
                SnapshotWriter::submit(writer, job, &self.shared.metrics.snapshots);
            }
        }
    }

    /// Consumed-record metrics and the read positions the lag monitor reads.
    fn flush_read_positions(&mut self) {
        self.counts_flushed = Instant::now();
        flush_consumed(&mut self.consumed, &self.assignments, &self.shared.metrics);
        for (slot, next) in self.read_slots.iter().zip(&self.next_offsets) {
            if let Some(slot) = slot {
                slot.store(*next, Ordering::Relaxed);
            }
        }
    }
}

/// A reference record replaces its key's previous value (a tombstone withdraws it): the
/// enrichment of the affected books rows follows in the dataflow.
fn apply_reference(
    inputs: &mut Inputs,
    state: &mut HashMap<String, ReferenceRecord>,
    key: &str,
    record: Option<ReferenceRecord>,
) {
    let enter = |inputs: &mut Inputs, record: &ReferenceRecord, diff: isize| match record {
        ReferenceRecord::Trader(t) => inputs.trader(t.clone(), diff),
        ReferenceRecord::Security(s) => inputs.security(s.clone(), diff),
    };
    if let Some(previous) = state.remove(key) {
        enter(inputs, &previous, -1);
    }
    if let Some(record) = record {
        enter(inputs, &record, 1);
        state.insert(key.to_owned(), record);
    }
}

/// A restored execution's archive location and receive time, for its books row.
fn restored_source(event: &TradeEvent, source: SourceRef) -> Option<TradeSource> {
    let exec_id = event.execution_id()?;
    // The segment reader names the archive of every record (`Same` is resolved there).
    let (archive_key, archive_offset) = match source.archive {
        Archived::In { key, offset } => (key, offset),
        Archived::Same { offset } => (Text::default(), offset),
        Archived::Not => (Text::default(), 0),
    };
    Some(TradeSource {
        exec_id: exec_id.clone(),
        archive_key,
        archive_offset,
        receive_time: source.receive_time,
    })
}

/// An execution's archive location and receive time, for its books row.
fn enter_source(inputs: &mut Inputs, received: &Received<'_>) {
    let Some(exec_id) = received.event.execution_id() else {
        return;
    };
    let (archive_key, archive_offset) = received
        .archive
        .map(|a| (a.object_key.into(), a.offset))
        .unwrap_or_default();
    inputs.source(TradeSource {
        exec_id: exec_id.clone(),
        archive_key,
        archive_offset,
        receive_time: received.receive_time,
    });
}

/// Books rows the store refused (reason DOWNSTREAM) or kept timing out on (TIMEOUT) go to the
/// dead-letter topic as JSON, with the retries spent on them.
fn refused_to_kafka(kafka: KafkaConnection, topic: String, wire: WireFormat) -> RefusedRow {
    let producer = RecordProducer::new(&kafka).map(|p| p.with_wire_format(wire));
    Box::new(move |row: &BookRow, refusal: &RowRefusal| {
        let json = serde_json::to_vec(row).unwrap_or_default();
        let location = row
            .source
            .as_ref()
            .map(|s| format!("{}@{}", s.archive_key, s.archive_offset))
            .unwrap_or_default();
        let detail = format!("{} (ExecID {})", refusal.detail(), row.exec_id);
        let sent = match &producer {
            Ok(producer) => producer
                .send_dead_letter(
                    &topic,
                    json,
                    crate::books::refusal_reason(refusal),
                    detail,
                    &location,
                    refusal.retries,
                )
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            // Nowhere left to put it: say so loudly rather than lose it quietly.
            tracing::error!(error = %e, exec_id = %row.exec_id, "refused books row not dead-lettered");
        }
    })
}

/// Records fill-to-view latency for the trades of epochs the views now reflect; trades
/// received before `from` go to the Prometheus histogram only.
fn record_latency(
    reflected: &[Vec<i64>],
    latency: &mut hdrhistogram::Histogram<u64>,
    from: i64,
    metrics: &Metrics,
) {
    if reflected.is_empty() {
        return;
    }
    let now = now_utc_nanos();
    for receive_time in reflected.iter().flatten() {
        let nanos = (now - receive_time).max(0);
        if *receive_time >= from {
            latency.saturating_record((nanos / 1_000).max(1) as u64);
        }
        metrics.fill_to_view.observe(nanos as f64 / 1e9);
    }
}

/// Commits, for every partition, the offsets read by the last epoch that the views and every
/// durable sink now hold. Kafka's committed offsets are for lag monitoring; recovery replays
/// from the beginning.
fn commit_synced(
    consumer: &BaseConsumer,
    assignments: &[(String, i32)],
    synced: &[Vec<i64>],
    committed: &mut [i64],
    mode: CommitMode,
) -> Result<()> {
    let Some(offsets) = synced.last() else {
        return Ok(());
    };
    let mut list = TopicPartitionList::new();
    for (slot, (topic, partition)) in assignments.iter().enumerate() {
        if offsets[slot] > committed[slot] {
            list.add_partition_offset(topic, *partition, Offset::Offset(offsets[slot]))?;
            committed[slot] = offsets[slot];
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_before_the_measured_moment_stay_out_of_the_summary_only() {
        let metrics = Metrics::new().expect("metrics register");
        let mut summary = new_latency_histogram();
        let now = now_utc_nanos();
        // Two epochs' trades: one received before the moment, two after it.
        let reflected = vec![
            vec![now - 2_000_000_000],
            vec![now - 1_000_000, now - 500_000],
        ];
        record_latency(&reflected, &mut summary, now - 1_000_000_000, &metrics);
        assert_eq!(summary.len(), 2);
        assert!(
            summary.max() < 1_000_000,
            "the early trade's 2 s is not in the summary"
        );
        assert_eq!(metrics.fill_to_view.get_sample_count(), 3);
    }
}
