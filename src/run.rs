//! `eod run`: the dataflow fed from Kafka. Every worker reads the partitions assigned to it
//! (partition p goes to worker p mod peers, in every process alike), from the beginning of
//! the trading day, so the views are rebuilt exactly on every start.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eod_dataflow::{build_dataflow, Counter, Inputs, PriceUpdate, Time, ViewSnapshot, ViewStore};
use eod_sources::envelope::event_from_bytes;
use eod_sources::fix::time::now_utc_nanos;
use eod_sources::kafka::{
    assigned_consumer, end_offsets, partition_count, EnvelopeProducer, Topics,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::ingest::price_from_bytes;
use crate::metrics::Metrics;
use crate::timely_args::{timely_config, workers_per_process};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub brokers: String,
    pub topics: Topics,
    pub group_id: String,
    /// Reference prices loaded at start, besides the prices topic.
    pub prices: Vec<PriceUpdate>,
    pub epoch: Duration,
    pub max_epochs_in_flight: u64,
    /// Stop once every assigned partition is read up to its end offset at start.
    pub until_caught_up: bool,
    pub timely_args: Vec<String>,
}

#[derive(Debug)]
pub struct RunSummary {
    pub snapshot: Arc<ViewSnapshot>,
    pub elapsed: Duration,
    /// Fill-to-view latency in microseconds, over the trades this process's workers read.
    pub latency_micros: hdrhistogram::Histogram<u64>,
    /// The part of it spent before the record was consumed (gateway, Kafka).
    pub consume_latency_micros: hdrhistogram::Histogram<u64>,
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
    workers_per_process: usize,
    latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    consume_latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

pub fn run_kafka(
    options: RunOptions,
    store: Arc<ViewStore>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let workers_per_process =
        workers_per_process(&options.timely_args).map_err(anyhow::Error::msg)?;
    let config = timely_config(&options.timely_args).map_err(anyhow::Error::msg)?;
    let metadata_timeout = Duration::from_secs(10);
    let trade_partitions =
        partition_count(&options.brokers, &options.topics.trades, metadata_timeout)?;
    let price_partitions =
        partition_count(&options.brokers, &options.topics.prices, metadata_timeout)?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        options,
        store: store.clone(),
        metrics,
        stop,
        trade_partitions,
        price_partitions,
        workers_per_process,
        latency: std::sync::Mutex::new(new_latency_histogram()),
        consume_latency: std::sync::Mutex::new(new_latency_histogram()),
    });
    let worker_shared = shared.clone();
    let guards = timely::execute(config, move |worker| {
        let mut histograms = (new_latency_histogram(), new_latency_histogram());
        let result = run_worker(worker, &worker_shared, &mut histograms);
        // Same bounds on both sides: adding cannot fail.
        if let Ok(mut total) = worker_shared.latency.lock() {
            let _ = total.add(&histograms.0);
        }
        if let Ok(mut total) = worker_shared.consume_latency.lock() {
            let _ = total.add(&histograms.1);
        }
        result
    })
    .map_err(anyhow::Error::msg)?;
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("worker panicked: {e}"))??;
    }
    let poisoned = |_| anyhow::anyhow!("latency histogram lock poisoned");
    let latency_micros = shared.latency.lock().map(|h| h.clone()).map_err(poisoned)?;
    let consume_latency_micros = shared
        .consume_latency
        .lock()
        .map(|h| h.clone())
        .map_err(poisoned)?;
    Ok(RunSummary {
        snapshot: store.snapshot(),
        elapsed: started.elapsed(),
        latency_micros,
        consume_latency_micros,
    })
}

/// Most trade records one open epoch takes while earlier epochs are still computing.
const OPEN_EPOCH_RECORDS: usize = 200_000;

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
            metrics.messages_read.inc_by(counts.read);
        }
        for (reason, n) in counts.dead {
            inputs.count(Counter::DeadLetter(reason.into()), n as isize);
            metrics.dead_letters.with_label_values(&[reason]).inc_by(n);
            metrics
                .outcomes
                .with_label_values(&["dead_letter"])
                .inc_by(n);
        }
    }
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &Shared,
    (latency, consume_latency): &mut (hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>),
) -> Result<()> {
    let Shared {
        options,
        store,
        metrics,
        stop,
        trade_partitions,
        price_partitions,
        workers_per_process: workers,
        ..
    } = shared;
    let (trade_partitions, price_partitions, workers) =
        (*trade_partitions, *price_partitions, *workers);
    let (index, peers) = (worker.index(), worker.peers());
    let publishes = index.is_multiple_of(workers);
    let (mut inputs, probe) =
        worker.dataflow(|scope| build_dataflow(scope, publishes.then(|| store.clone()), workers));
    let mine = |topic: &str, partitions: i32| {
        (0..partitions)
            .filter(|p| *p as usize % peers == index)
            .map(|p| (topic.to_owned(), p))
            .collect::<Vec<_>>()
    };
    let mut assignments = mine(&options.topics.trades, trade_partitions);
    assignments.extend(mine(&options.topics.prices, price_partitions));
    let consumer = if assignments.is_empty() {
        None
    } else {
        Some(assigned_consumer(
            &options.brokers,
            &options.group_id,
            &assignments,
        )?)
    };
    // End offsets at start: with --until-caught-up the run stops once it has read up to them.
    let ends = match (&consumer, options.until_caught_up) {
        (Some(consumer), true) => end_offsets(consumer, &assignments, Duration::from_secs(10))?,
        _ => Vec::new(),
    };
    let mut next_offsets = vec![0i64; assignments.len()];
    // Closed epochs the views do not reflect yet, and the open epoch's receive times.
    let mut pending: VecDeque<ClosedEpoch> = VecDeque::new();
    let mut committed = vec![0i64; assignments.len()];
    let mut receive_times: Vec<i64> = Vec::new();
    let mut lag_checked = Instant::now();
    let dead_letters = EnvelopeProducer::new(&options.brokers)?;
    if index == 0 {
        for price in &options.prices {
            inputs.price(price.clone());
        }
    }
    let started = Instant::now();
    let epoch_nanos = options.epoch.as_nanos().max(1);
    let mut epoch: Time = 0;
    let mut counts = RecordCounts::default();
    loop {
        if stop.load(Ordering::Acquire) {
            break;
        }
        if options.until_caught_up
            && ends
                .iter()
                .zip(&next_offsets)
                .all(|(end, next)| next >= end)
        {
            break;
        }
        if let Some(consumer) = &consumer {
            // Never block in librdkafka: timely cannot wake a worker stuck in poll, and the other
            // workers' exchanges would wait for it at every hop. step_or_park below waits instead.
            // Bounded memory: an epoch that cannot close yet takes no more than this.
            let room = OPEN_EPOCH_RECORDS.saturating_sub(receive_times.len());
            for _ in 0..room.min(20_000) {
                let Some(result) = consumer.poll(Duration::ZERO) else {
                    break;
                };
                let message = result.context("consuming")?;
                let (topic, partition, offset) =
                    (message.topic(), message.partition(), message.offset());
                if let Some(slot) = assignments
                    .iter()
                    .position(|(t, p)| t == topic && *p == partition)
                {
                    next_offsets[slot] = offset + 1;
                }
                let payload = message.payload().unwrap_or_default();
                let rejected = if topic == options.topics.trades {
                    counts.read += 1;
                    match event_from_bytes(payload) {
                        Ok(received) => {
                            let waited = (now_utc_nanos() - received.receive_time).max(0) / 1_000;
                            consume_latency.saturating_record(waited.max(1) as u64);
                            receive_times.push(received.receive_time);
                            inputs.event(received.event);
                            None
                        }
                        Err(reject) => Some((reject.reason, reject.detail)),
                    }
                } else {
                    match price_from_bytes(payload) {
                        Ok(price) => {
                            inputs.price(price);
                            None
                        }
                        Err(rejected) => Some(rejected),
                    }
                };
                if let Some((reason, detail)) = rejected {
                    let location = format!("{topic}/{partition}@{offset}");
                    tracing::debug!(reason = reason.label(), %detail, %location, "dead letter");
                    dead_letters.send_dead_letter(
                        &options.topics.dead_letters,
                        payload.to_vec(),
                        reason,
                        detail,
                        &location,
                    )?;
                    counts.dead_letter(reason.label());
                }
            }
        }
        // Adaptive epochs: a new epoch opens on the clock only while few are in flight, so
        // under load an epoch grows to hold what arrived while the previous ones computed,
        // instead of a queue of small epochs each waiting its turn.
        // Epoch numbers are clock buckets with gaps, so what is in flight is counted in closed
        // epochs the views do not reflect yet, not in the distance between times.
        let completed = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
        let reflected = take_reflected(&mut pending, completed);
        record_latency(&reflected, latency, metrics);
        let current = (started.elapsed().as_nanos() / epoch_nanos) as Time;
        if current > epoch && (pending.len() as u64) < options.max_epochs_in_flight {
            counts.flush(&mut inputs, metrics);
            pending.push_back(ClosedEpoch {
                time: epoch,
                offsets: next_offsets.clone(),
                receive_times: std::mem::take(&mut receive_times),
            });
            epoch = current;
            inputs.advance_to(epoch);
            inputs.flush();
            metrics.epochs_closed.inc();
        }
        if index == 0 {
            metrics.epochs_in_flight.set(pending.len() as i64);
        }
        if let Some(consumer) = &consumer {
            commit_reflected(
                consumer,
                &assignments,
                &reflected,
                &mut committed,
                CommitMode::Async,
            )?;
            if lag_checked.elapsed() >= Duration::from_secs(1) {
                lag_checked = Instant::now();
                report_lag(consumer, &assignments, &next_offsets, metrics);
            }
        }
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    counts.flush(&mut inputs, metrics);
    pending.push_back(ClosedEpoch {
        time: epoch,
        offsets: next_offsets.clone(),
        receive_times: std::mem::take(&mut receive_times),
    });
    inputs.close();
    if let Some(consumer) = &consumer {
        // Commit what the final views reflect: step until every epoch read here is complete.
        while !pending.is_empty() && !stop.load(Ordering::Acquire) {
            let completed = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
            let reflected = take_reflected(&mut pending, completed);
            record_latency(&reflected, latency, metrics);
            commit_reflected(
                consumer,
                &assignments,
                &reflected,
                &mut committed,
                CommitMode::Sync,
            )?;
            if pending.is_empty() {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        consumer.unassign().ok();
    }
    dead_letters
        .flush(Duration::from_secs(30))
        .context("flushing dead letters")?;
    Ok(())
}

/// An epoch the source has closed: what it read, waiting for the views to reflect it.
struct ClosedEpoch {
    time: Time,
    /// Next offset per assigned partition at the close.
    offsets: Vec<i64>,
    /// Gateway receive times of the trades entered in it.
    receive_times: Vec<i64>,
}

/// Removes the closed epochs the views now reflect (those before the frontier `completed`).
fn take_reflected(pending: &mut VecDeque<ClosedEpoch>, completed: Time) -> Vec<ClosedEpoch> {
    let reflected = pending.iter().take_while(|e| e.time < completed).count();
    pending.drain(..reflected).collect()
}

/// Records fill-to-view latency for the trades of epochs the views now reflect.
fn record_latency(
    reflected: &[ClosedEpoch],
    latency: &mut hdrhistogram::Histogram<u64>,
    metrics: &Metrics,
) {
    if reflected.is_empty() {
        return;
    }
    let now = now_utc_nanos();
    for receive_time in reflected.iter().flat_map(|e| &e.receive_times) {
        let nanos = (now - receive_time).max(0);
        latency.saturating_record((nanos / 1_000).max(1) as u64);
        metrics.fill_to_view.observe(nanos as f64 / 1e9);
    }
}

/// Commits, for every partition, the offsets read by the last epoch the views now reflect.
/// Kafka's committed offsets are for lag monitoring; recovery replays from the beginning.
fn commit_reflected(
    consumer: &BaseConsumer,
    assignments: &[(String, i32)],
    reflected: &[ClosedEpoch],
    committed: &mut [i64],
    mode: CommitMode,
) -> Result<()> {
    let Some(last) = reflected.last() else {
        return Ok(());
    };
    let mut list = TopicPartitionList::new();
    for (slot, (topic, partition)) in assignments.iter().enumerate() {
        if last.offsets[slot] > committed[slot] {
            list.add_partition_offset(topic, *partition, Offset::Offset(last.offsets[slot]))?;
            committed[slot] = last.offsets[slot];
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, mode)?;
    }
    Ok(())
}

fn report_lag(
    consumer: &BaseConsumer,
    assignments: &[(String, i32)],
    next_offsets: &[i64],
    metrics: &Metrics,
) {
    for (slot, (topic, partition)) in assignments.iter().enumerate() {
        if let Ok((low, high)) =
            consumer.fetch_watermarks(topic, *partition, Duration::from_millis(200))
        {
            let lag = (high - next_offsets[slot].max(low)).max(0);
            metrics
                .consumer_lag
                .with_label_values(&[topic, &partition.to_string()])
                .set(lag);
        }
    }
}
