//! Replay benchmark. Generates (or reuses) an archive of simulated FIX, then measures in one
//! run: each stage alone (read, parse, dataflow), the whole replay path with the books on
//! (SQLite, what `eod replay` does by default) and off, and a hand-written single-thread
//! HashMap aggregator over the same parsed input. Ratios, not absolute times, are the result:
//! the machine is shared and noisy. Each whole path also reports the process's peak RSS
//! during it (the high-water mark is reset before it starts).
//!
//!     cargo run --release -p eod-bench -- --fills 1000000 --workers 2

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use eod_dataflow::{baseline, build_dataflow, PriceUpdate, TradeEvent, ViewStore};
use eod_fix::{Classifier, Outcome};
use eod_runtime::books::BooksTarget;
use eod_runtime::driver::{
    drive, replay_limits, EpochLimits, EpochPolicy, Feed, Frontiers, Source,
};
use eod_runtime::generate::generate_archive;
use eod_runtime::replay::{default_epoch_messages, run_replay, ReplayOptions};
use eod_sources::archive::Archive;
use eod_sources::envelope::to_event;
use eod_sources::prices::parse_prices_csv;
use eod_sources::simulator::SimConfig;

#[derive(Parser, Debug)]
#[command(about = "eod replay benchmark")]
struct Args {
    /// Fills to generate (the archive also holds busts, corrections, noise and broken messages).
    #[arg(long, default_value_t = 1_000_000)]
    fills: u64,
    /// Timely worker threads for the dataflow and the whole path.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Reuse an archive directory (and `<dir>.prices.csv`) instead of generating one.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Messages per epoch [default: `eod replay`'s, 100000, and 10000 for the books run].
    #[arg(long)]
    epoch_messages: Option<u64>,
    /// Closed epochs the dataflow stage may keep in flight [default: a replay's, from its
    /// epoch size]. 1 is live input's: an epoch closes once the one before is in the views,
    /// so the stage's time is its epochs' close to view one after the other, and is also
    /// reported per epoch.
    #[arg(long)]
    in_flight: Option<usize>,
    /// Measure read, parse, the dataflow and the baseline only, not the whole paths.
    #[arg(long)]
    dataflow_only: bool,
    #[arg(long, default_value_t = 20)]
    traders: usize,
    #[arg(long, default_value_t = 50)]
    symbols: usize,
}

struct Parsed {
    events: Vec<TradeEvent>,
    messages: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let (archive_dir, prices_path) = match &args.archive {
        Some(dir) => (dir.clone(), dir.with_extension("prices.csv")),
        None => {
            let dir = scratch.path().join("archive");
            let mut sim = SimConfig::market_close(2026);
            sim.traders = args.traders;
            sim.symbols = args.symbols;
            sim.broken_ratio = 0.0005;
            // Fills are ~91% of simulator events with the default mix.
            let messages = args.fills * 100 / 91 + 1_000;
            let started = Instant::now();
            let generated = generate_archive(&dir, sim, messages, 16 << 20)?;
            eprintln!(
                "generated {} messages in {} segments in {:.1?}",
                generated.fix_messages,
                generated.segments,
                started.elapsed()
            );
            (dir, generated.prices)
        }
    };
    let prices = parse_prices_csv(&std::fs::read_to_string(&prices_path).context("prices csv")?)?;
    let archive_location = archive_dir
        .to_str()
        .context("archive path is not UTF-8")?
        .to_owned();

    // Stage 1: read every segment into memory.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let archive = Archive::open(&archive_location)?;
    let started = Instant::now();
    let segments = runtime.block_on(archive.read_all())?;
    let read_time = started.elapsed();
    let bytes: usize = segments.iter().map(|s| s.len()).sum();

    // Stage 2: frame, validate and decode on one thread.
    let started = Instant::now();
    let parsed = parse(&segments);
    let parse_time = started.elapsed();
    let trades = parsed.events.len() as u64;
    let messages = parsed.messages;
    drop(segments);

    // Stage 3: the dataflow alone, fed the parsed events.
    let started = Instant::now();
    let epoch_messages = args
        .epoch_messages
        .unwrap_or_else(|| default_epoch_messages(false));
    let replay = replay_limits(epoch_messages, args.workers);
    let limits = EpochLimits {
        in_flight: args.in_flight.unwrap_or(replay.in_flight),
        ..replay
    };
    let dataflow_snapshot = run_dataflow(
        &parsed.events,
        &prices,
        args.workers,
        epoch_messages,
        limits,
    )?;
    let dataflow_time = started.elapsed();
    let epochs_per_worker = (parsed.events.len() as u64)
        .div_ceil(args.workers as u64)
        .div_ceil(epoch_messages);

    // Baseline: the HashMap aggregator over the same parsed input, same answer.
    let started = Instant::now();
    let baseline = baseline::compute(&parsed.events, &prices);
    let baseline_time = started.elapsed();
    ensure!(
        dataflow_snapshot.positions == baseline.positions,
        "dataflow and baseline disagree"
    );

    drop(parsed);

    let rate = |d: Duration| trades as f64 / d.as_secs_f64().max(1e-9);
    let stage = |name: &str, time: Duration| {
        println!(
            "{:<34}{:>12.3}{:>16.0}",
            name,
            time.as_secs_f64(),
            rate(time)
        )
    };
    let header = || {
        println!("eod replay benchmark: {} messages, {} trades (fills+busts+corrections), {} bytes, {} positions, {} workers", messages, trades, bytes, baseline.positions.len(), args.workers);
        println!("{:<34}{:>12}{:>16}", "stage", "seconds", "trades/s");
        stage("read (object_store, 1 thread)", read_time);
        stage("parse (frame+decode, 1 thread)", parse_time);
        stage("dataflow (pre-parsed input)", dataflow_time);
    };
    // Only one epoch in flight makes the stage's time its epochs' times end to end.
    let per_epoch = || {
        if limits.in_flight != 1 {
            return;
        }
        println!(
            "dataflow per epoch:               {:.0} us ({} epochs of {} messages per worker, one in flight)",
            dataflow_time.as_secs_f64() * 1e6 / epochs_per_worker.max(1) as f64,
            epochs_per_worker,
            epoch_messages,
        )
    };
    if args.dataflow_only {
        header();
        stage("baseline HashMap (1 thread)", baseline_time);
        per_epoch();
        println!(
            "ratio dataflow / baseline time:   {:.2}",
            dataflow_time.as_secs_f64() / baseline_time.as_secs_f64()
        );
        return Ok(());
    }

    // The whole path: read + parse + dataflow, as `eod replay --no-books` runs it.
    let options = ReplayOptions {
        archive: archive_location,
        prices: prices.clone(),
        dead_letters: scratch.path().join("dead-letters.jsonl"),
        epoch_messages,
        limits: eod_runtime::driver::replay_limits(epoch_messages, args.workers),
        max_message: eod_fix::DEFAULT_MAX_MESSAGE,
        timely_args: vec!["-w".into(), args.workers.to_string()],
        progress: false,
        books: None,
        books_batch: Default::default(),
        reference: Default::default(),
        worker_nice: eod_runtime::replay::REPLAY_WORKER_NICE,
        exit_after: false,
    };
    let (whole_time, whole_rss) = whole_path(options.clone(), &baseline)?;
    // And as `eod replay` runs it by default: the books written to SQLite beside the views,
    // in the books' epochs.
    let books_epoch_messages = args
        .epoch_messages
        .unwrap_or_else(|| default_epoch_messages(true));
    let books_options = ReplayOptions {
        books: Some(BooksTarget::Sqlite(scratch.path().join("books.sqlite"))),
        epoch_messages: books_epoch_messages,
        limits: eod_runtime::driver::replay_limits(books_epoch_messages, args.workers),
        ..options
    };
    let (books_time, books_rss) = whole_path(books_options, &baseline)?;

    header();
    stage("whole path, books off", whole_time);
    stage("whole path, books on (SQLite)", books_time);
    stage("baseline HashMap (1 thread)", baseline_time);
    per_epoch();
    println!(
        "ratio dataflow / baseline time:   {:.2}",
        dataflow_time.as_secs_f64() / baseline_time.as_secs_f64()
    );
    println!(
        "ratio whole path / baseline time: {:.2}",
        whole_time.as_secs_f64() / baseline_time.as_secs_f64()
    );
    println!(
        "ratio books on / books off: time {:.2}, peak RSS {:.2} ({} / {} MB)",
        books_time.as_secs_f64() / whole_time.as_secs_f64(),
        books_rss as f64 / whole_rss.max(1) as f64,
        books_rss >> 20,
        whole_rss >> 20
    );
    Ok(())
}

/// Runs one whole replay; returns its time and the process's peak RSS (bytes) while it ran.
fn whole_path(
    options: ReplayOptions,
    baseline: &baseline::BaselineViews,
) -> Result<(Duration, u64)> {
    reset_peak_rss()?;
    let started = Instant::now();
    let summary = run_replay(
        options,
        ViewStore::new(),
        eod_runtime::metrics::Metrics::new()?,
    )?;
    let elapsed = started.elapsed();
    ensure!(
        summary.snapshot.positions == baseline.positions,
        "replay and baseline disagree"
    );
    Ok((elapsed, peak_rss()?))
}

/// Resets the kernel's high-water mark of this process's RSS to its current RSS (Linux).
fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")
}

fn peak_rss() -> Result<u64> {
    eod_runtime::memory::process_status_bytes("VmHWM").context("no VmHWM in /proc/self/status")
}

fn parse(segments: &[bytes::Bytes]) -> Parsed {
    let mut classifier = Classifier::new();
    let mut events = Vec::with_capacity(segments.iter().map(|s| s.len()).sum::<usize>() / 250);
    let mut messages = 0;
    for segment in segments {
        for frame in eod_fix::frames(segment, eod_fix::DEFAULT_MAX_MESSAGE) {
            messages += 1;
            if let Outcome::Trade(trade) = classifier.classify(&frame) {
                events.push(to_event(&trade));
            }
        }
    }
    Parsed { events, messages }
}

fn run_dataflow(
    events: &[TradeEvent],
    prices: &[PriceUpdate],
    workers: usize,
    epoch: u64,
    limits: EpochLimits,
) -> Result<Arc<eod_dataflow::ViewSnapshot>> {
    let events = Arc::new(events.to_vec());
    let prices = Arc::new(prices.to_vec());
    let store = ViewStore::new();
    let publish = store.clone();
    let metrics = eod_runtime::metrics::Metrics::new()?;
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let store = (index == 0).then(|| publish.clone());
        let (mut inputs, probe) = worker.dataflow(|scope| build_dataflow(scope, store, peers));
        if index == 0 {
            for price in prices.iter() {
                inputs.price(price.clone());
            }
        }
        // The one driver `eod replay` uses, over this worker's share of the parsed events.
        let mut source = ParsedEvents {
            events: &events,
            next: index,
            step: peers,
        };
        let frontiers = Frontiers {
            views: probe.clone(),
            durable: probe,
        };
        drive(
            worker,
            inputs,
            &frontiers,
            &mut source,
            EpochPolicy::Messages(epoch),
            limits,
            &metrics,
        )
        .map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)?
    .join()
    .into_iter()
    .try_for_each(|r| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(anyhow::anyhow!("worker failed: {e}")),
    })?;
    Ok(store.snapshot())
}

/// Pre-parsed events as a driver source: worker `next` of `step` takes every `step`-th one.
struct ParsedEvents<'a> {
    events: &'a [TradeEvent],
    next: usize,
    step: usize,
}

impl Source for ParsedEvents<'_> {
    fn feed(&mut self, inputs: &mut eod_dataflow::Inputs, budget: u64) -> anyhow::Result<Feed> {
        let mut entered = 0;
        while entered < budget {
            let Some(event) = self.events.get(self.next) else {
                break;
            };
            inputs.event(event.clone());
            self.next += self.step;
            entered += 1;
        }
        Ok(match entered {
            0 => Feed::Exhausted,
            n => Feed::Entered(n),
        })
    }
}
