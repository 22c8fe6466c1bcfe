//! `eod demo`: the seeded simulator feeds the dataflow live, paced by the wall clock, with the
//! 16:00 burst; the query endpoint serves the views as they change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use eod_dataflow::{Time, ViewStore};
use eod_sources::simulator::{SimConfig, SimEvent, SimMessage, Simulator};

use crate::books::{build_with_books, BatchLimits, BooksTarget, ReferenceData};
use crate::dead_letters::DeadLetterSender;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::replay::refused_to_jsonl;
use crate::timely_args::{timely_config, workers_per_process};

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub sim: SimConfig,
    /// Length of a dataflow epoch.
    pub epoch: Duration,
    /// Stop after this long (run until Ctrl-C when `None`).
    pub duration: Option<Duration>,
    pub timely_args: Vec<String>,
    pub books: Option<BooksTarget>,
    pub books_batch: BatchLimits,
    pub reference: ReferenceData,
}

/// Closed epochs the source may run ahead of the durable sinks: a batch waits up to its age
/// limit, so this spans several seconds of epochs; beyond it a slow store stops the source.
const MAX_EPOCHS_NOT_DURABLE: u64 = 2_000;

/// Runs until `stop` is set or the duration passes.
pub fn run_demo(
    options: DemoOptions,
    store: Arc<ViewStore>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    dead_letters: DeadLetterSender,
) -> Result<()> {
    let workers = workers_per_process(&options.timely_args).map_err(anyhow::Error::msg)?;
    let config = timely_config(&options.timely_args).map_err(anyhow::Error::msg)?;
    if let Some(books) = &options.books {
        books.migrate()?;
    }
    let guards = timely::execute(config, move |worker| -> Result<()> {
        let index = worker.index();
        let store = index.is_multiple_of(workers).then(|| store.clone());
        let books = options.books.as_ref().map(|b| (b, options.books_batch));
        let (mut inputs, probe, durable) = worker.dataflow(|scope| {
            let dead_letters = dead_letters.clone();
            let refused = move || refused_to_jsonl(dead_letters);
            build_with_books(scope, store, workers, books, metrics.sinks.clone(), refused)
        })?;
        let started = Instant::now();
        let out_of_time = |now: Instant| {
            options
                .duration
                .is_some_and(|d| now.duration_since(started) >= d)
        };
        if index != 0 {
            // One simulated gateway: the other workers only compute.
            inputs.close();
            while !stop.load(Ordering::Acquire) && !out_of_time(Instant::now()) {
                worker.step_or_park(Some(Duration::from_millis(5)));
            }
            return Ok(());
        }
        let mut intake = Intake::new(
            "simulator",
            eod_fix::DEFAULT_MAX_MESSAGE,
            dead_letters.clone(),
            metrics.clone(),
        );
        options.reference.enter(&mut inputs);
        let mut simulator = Simulator::new(options.sim.clone());
        let sim_start = options.sim.start;
        let mut pending: Option<SimMessage> = simulator.next();
        let mut epoch: Time = 0;
        let epoch_nanos = options.epoch.as_nanos().max(1);
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Acquire) || out_of_time(now) {
                tracing::warn!(
                    stopped = stop.load(Ordering::Acquire),
                    "demo source stopping"
                );
                break;
            }
            let elapsed = now.duration_since(started).as_nanos() as i64;
            // Feed everything the simulated clock has reached, capped so the worker keeps stepping.
            let _span = tracing::trace_span!("demo_feed", epoch).entered();
            let mut fed = 0;
            while let Some(message) = pending.take() {
                if message.time - sim_start > elapsed || fed >= 20_000 {
                    pending = Some(message);
                    break;
                }
                match message.event {
                    SimEvent::Fix(bytes) => {
                        intake.push(&bytes, &mut inputs);
                    }
                    SimEvent::Price(update) => inputs.price(update),
                }
                fed += 1;
                pending = simulator.next();
            }
            let current = (now.duration_since(started).as_nanos() / epoch_nanos) as Time;
            if current > epoch {
                intake.flush_counts(&mut inputs);
                epoch = current;
                inputs.advance_to(epoch);
                inputs.flush();
                metrics.epochs_closed.inc();
                let completed = probe.with_frontier(|f| f.first().copied().unwrap_or(epoch));
                metrics
                    .epochs_in_flight
                    .set(epoch.saturating_sub(completed) as i64);
            }
            // Bounded lag: never run more than a few epochs ahead of what the views reflect,
            // nor far ahead of what the books hold.
            let floor = epoch.saturating_sub(4);
            let durable_floor = epoch.saturating_sub(MAX_EPOCHS_NOT_DURABLE);
            while probe.less_than(&floor) || durable.less_than(&durable_floor) {
                worker.step();
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        intake.flush_counts(&mut inputs);
        inputs.close();
        Ok(())
    })
    .map_err(anyhow::Error::msg)?;
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))??;
    }
    Ok(())
}
