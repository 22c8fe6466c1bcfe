//! `eod demo`: the seeded simulator feeds the dataflow live, paced by the wall clock, with the
//! 16:00 burst; the query endpoint serves the views as they change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use eod_dataflow::{Inputs, ViewStore};
use eod_sources::simulator::{SimConfig, SimEvent, SimMessage, Simulator};

use crate::books::{build_with_books, BatchLimits, BooksTarget, ReferenceData};
use crate::dead_letters::DeadLetterSender;
use crate::driver::{drive, live_limits, EpochPolicy, Feed, Source, OPEN_EPOCH_CAP};
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
        let books = options
            .books
            .as_ref()
            .map(|b| (b, options.books_batch.clone()));
        let (mut inputs, frontiers) = worker.dataflow(|scope| {
            let dead_letters = dead_letters.clone();
            let refused = move || refused_to_jsonl(dead_letters);
            build_with_books(
                scope,
                store,
                workers,
                books,
                0,
                metrics.sinks.clone(),
                refused,
            )
        })?;
        // One simulated gateway: the other workers only compute.
        let simulator = (index == 0).then(|| {
            options.reference.enter(&mut inputs);
            let mut simulator = Simulator::new(options.sim.clone());
            let pending = simulator.next();
            (simulator, pending)
        });
        let mut source = SimulatorSource {
            simulator,
            intake: Intake::new(
                "simulator",
                eod_fix::DEFAULT_MAX_MESSAGE,
                dead_letters.clone(),
                metrics.clone(),
            ),
            sim_start: options.sim.start,
            started: Instant::now(),
            duration: options.duration,
            stop: &stop,
        };
        drive(
            worker,
            inputs,
            &frontiers,
            &mut source,
            EpochPolicy::Clock {
                epoch: options.epoch,
                open_epoch_cap: OPEN_EPOCH_CAP,
            },
            live_limits(options.books_batch.spill.is_some()),
            &metrics,
        )?;
        // The other workers keep computing until the demo stops.
        while !source.stopped() {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
        Ok(())
    })
    .map_err(anyhow::Error::msg)?;
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("worker failed: {e}"))??;
    }
    Ok(())
}

/// The seeded simulator, paced by the wall clock: what its clock has reached is fed.
struct SimulatorSource<'a> {
    /// Only worker 0 simulates; with the next message not yet due.
    simulator: Option<(Simulator, Option<SimMessage>)>,
    intake: Intake,
    sim_start: i64,
    started: Instant,
    duration: Option<Duration>,
    stop: &'a AtomicBool,
}

impl Source for SimulatorSource<'_> {
    fn feed(&mut self, inputs: &mut Inputs, budget: u64) -> Result<Feed> {
        let Some((simulator, pending)) = self.simulator.as_mut() else {
            return Ok(Feed::Exhausted);
        };
        let elapsed = self.started.elapsed().as_nanos() as i64;
        let _span = tracing::trace_span!("demo_feed").entered();
        let mut fed = 0;
        while let Some(message) = pending.take() {
            if message.time - self.sim_start > elapsed || fed >= budget {
                *pending = Some(message);
                break;
            }
            match message.event {
                SimEvent::Fix(bytes) => {
                    self.intake.push(&bytes, inputs);
                }
                SimEvent::Price(update) => inputs.price(update),
            }
            fed += 1;
            *pending = simulator.next();
        }
        Ok(match (fed, pending.is_some()) {
            (0, true) => Feed::Idle,
            (0, false) => Feed::Exhausted,
            _ => Feed::Entered(fed),
        })
    }

    fn before_close(&mut self, inputs: &mut Inputs) {
        self.intake.flush_counts(inputs);
    }

    fn stopped(&self) -> bool {
        let out_of_time = self.duration.is_some_and(|d| self.started.elapsed() >= d);
        self.stop.load(Ordering::Acquire) || out_of_time
    }
}
