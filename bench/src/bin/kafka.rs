//! End-to-end benchmark through a real Kafka broker: the simulator sends FIX over TCP to an
//! in-process gateway (archive + produce), `eod run` consumes into the dataflow, and every
//! trade's gateway-receive-to-view latency goes into an HDR histogram.
//!
//!     scripts/kafka.sh start
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --rate 50000 --seconds 10
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --rate 200000 --seconds 5 --burst
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --flat-out --messages 1000000
//!
//! The baseline, in the same run (in a process of its own, just before the pipeline) and
//! through the same broker: the same envelopes (same keys, sizes and partitions) produced and
//! consumed by bare clients with eod's settings, at the same offered rate: Kafka's own share of
//! throughput and latency on this box, which no pipeline on top of it can beat. Figures are
//! reported as ratios to it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eod_dataflow::ViewStore;
use eod_fix::{Classifier, Outcome};
use eod_gateway::{open_archive, serve_tcp, Gateway, ListenOptions};
use eod_runtime::metrics::Metrics;
use eod_runtime::run::{run_kafka, RunOptions};
use eod_sources::archive_writer::SegmentPolicy;
use eod_sources::envelope::partition_key;
use eod_sources::kafka::{
    assigned_consumer, delete_topics, ensure_topics, KafkaConnection, RecordProducer, Topics,
};
use eod_sources::simulator::{SimConfig, SimEvent, Simulator};
use hdrhistogram::Histogram;
use rdkafka::Message as _;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "EOD_KAFKA_BROKERS", default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Offered FIX messages per second (in the burst with --burst).
    #[arg(long, default_value_t = 50_000.0)]
    rate: f64,
    /// Seconds at that rate.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// 5 s at a tenth of the rate, then the rate for --seconds: the 16:00 burst.
    #[arg(long)]
    burst: bool,
    /// Send as fast as the gateway takes them: sustained throughput.
    #[arg(long)]
    flat_out: bool,
    /// Messages to send with --flat-out.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How long an epoch without input stays open, in milliseconds (the default is what `eod
    /// run` uses). Before 2026-12-04 (afternoon) every epoch closed at the end of such a clock
    /// bucket; the runs recorded before that morning used 2 ms buckets.
    #[arg(long, default_value_t = eod_runtime::driver::LIVE_EPOCH_MS)]
    epoch_ms: u64,
    /// Closed epochs the source lets the dataflow compute at once before it holds the next
    /// (the default is what `eod run` uses).
    #[arg(long, default_value_t = eod_runtime::driver::LIVE_LIMITS.in_flight as u64)]
    max_in_flight: u64,
    /// Leave out the bare-Kafka baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Run the bare-Kafka baseline alone.
    #[arg(long, conflicts_with = "no_baseline")]
    baseline_only: bool,
    /// With --baseline-only: print the baseline as one JSON line, for the run that started
    /// this one.
    #[arg(long, hide = true, requires = "baseline_only")]
    baseline_summary: bool,
    /// A librdkafka property for every client, KEY=VALUE (repeatable): client tuning.
    #[arg(long = "kafka-option", value_parser = parse_option)]
    kafka_options: Vec<(String, String)>,
    /// Write the books too (`sqlite:PATH` or `postgres://...`), as a live `eod run` does:
    /// rows beyond 100,000 per writing worker wait on disk while the store is behind.
    #[arg(long)]
    books: Option<eod_runtime::books::BooksTarget>,
    /// Books rows a batch is written at (the default is what `eod run` uses); rows that
    /// waited for a busy writer go together, up to 20 times this.
    #[arg(long, default_value_t = eod_runtime::books::BatchLimits::default().max_rows)]
    books_batch_rows: usize,
    /// A shell command that takes the books store down when sending starts (an outage
    /// during the burst), e.g. `scripts/postgres.sh stop`.
    #[arg(long, requires_all = ["books", "outage_end"])]
    outage_start: Option<String>,
    /// The shell command that brings the store back, `outage_seconds` after the start.
    #[arg(long, requires = "outage_start")]
    outage_end: Option<String>,
    #[arg(long, default_value_t = 60.0)]
    outage_seconds: f64,
    /// Seconds at the start of the send whose records neither the pipeline's nor the
    /// baseline's latency figures count: clients and broker warming up on new topics. Records
    /// sent in the first 100 ms after the baseline's start took over 100 ms in some runs and
    /// made its p99 (bench/RESULTS.md, 2026-12-05).
    #[arg(long, default_value_t = 1.0)]
    warm_up_seconds: f64,
    /// Seconds of silence inserted into the send at --lull-at: a quiet spell in which `eod
    /// run` gives its free memory back (see --trim-memory-after-ms) before the load resumes.
    /// With --warm-up-seconds past the lull's end, the figures are the load after it alone.
    /// Not with --flat-out, which sends without a schedule.
    #[arg(long, default_value_t = 0.0, conflicts_with = "flat_out")]
    lull_seconds: f64,
    /// Where in the send the lull goes, in seconds of the offered schedule (default: where
    /// the burst starts with --burst, else halfway).
    #[arg(long)]
    lull_at: Option<f64>,
    /// `eod run --trim-memory-after-ms` (0: no trims).
    #[arg(long, default_value_t = eod_runtime::memory::TrimPolicy::default().quiet_for.as_millis() as u64)]
    trim_memory_after_ms: u64,
    /// `eod run --trim-memory-min-growth-mb`.
    #[arg(long, default_value_t = eod_runtime::memory::TrimPolicy::default().min_growth >> 20)]
    trim_memory_min_growth_mb: u64,
}

/// The upper bound of the histogram's bucket that holds quantile `q`: every trade waits for an
/// archive fsync before it is decoded, so their tail is part of fill-to-view's.
fn bucket_bound(histogram: &prometheus::Histogram, q: f64) -> f64 {
    let metric = prometheus::core::Metric::metric(histogram);
    let proto = metric.get_histogram();
    let wanted = (proto.get_sample_count() as f64 * q).ceil() as u64;
    proto
        .get_bucket()
        .iter()
        .find(|bucket| bucket.cumulative_count() >= wanted)
        .map_or(f64::INFINITY, |bucket| bucket.upper_bound())
}

/// Deletes this run's topics once its clients are done with them: each run makes topics of its
/// own, and a broker that kept every run's partitions slowed the runs after them. A failure is
/// reported, not fatal: the figures are in.
fn delete_run_topics(runtime: &tokio::runtime::Runtime, args: &Args, topics: &[(&str, i32)]) {
    let names: Vec<&str> = topics.iter().map(|(name, _)| *name).collect();
    if let Err(e) = runtime.block_on(delete_topics(&args.kafka(), &names)) {
        eprintln!("could not delete this run's topics {names:?}: {e}");
    }
}

/// Runs `command` with `sh -c`; fails unless it succeeds.
fn shell(command: &str) -> Result<()> {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .with_context(|| format!("running {command}"))?;
    anyhow::ensure!(status.success(), "{command}: {status}");
    Ok(())
}

fn parse_option(option: &str) -> Result<(String, String), String> {
    option
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{option}: expected KEY=VALUE"))
}

impl Args {
    fn kafka(&self) -> KafkaConnection {
        self.kafka_options.iter().fold(
            KafkaConnection::plaintext(&self.brokers),
            |kafka, (k, v)| kafka.with(k, v.as_str()),
        )
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topics = Topics {
        trades: format!("bench-{nonce}.trades.raw"),
        dead_letters: format!("bench-{nonce}.trades.dlq"),
        prices: format!("bench-{nonce}.prices"),
        reference: format!("bench-{nonce}.reference"),
    };
    let baseline_topic = format!("bench-{nonce}.baseline");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Only the topics this process uses: the baseline runs in a process of its own.
    let needed: &[(&str, i32)] = if args.baseline_only {
        &[(&baseline_topic, 12)]
    } else {
        &[
            (&topics.trades, 12),
            (&topics.dead_letters, 3),
            (&topics.prices, 12),
        ]
    };
    runtime
        .block_on(ensure_topics(&args.kafka(), needed))
        .context("creating topics (is the broker up? scripts/kafka.sh start)")?;
    std::thread::sleep(Duration::from_secs(1));

    let mut sim = SimConfig::market_close(7);
    sim.base_rate = args.rate;
    sim.burst_multiplier = 1.0;
    // Prices are left out: the benchmark measures the trade path.
    sim.price_ratio = 0.0;
    let (messages, speed) = if args.flat_out {
        (args.messages, 0.0)
    } else if args.burst {
        sim.base_rate = args.rate / 10.0;
        sim.burst_multiplier = 10.0;
        sim.start = sim.burst_start - (BASE_SECONDS_BEFORE_BURST * 1e9) as i64;
        sim.burst_seconds = args.seconds.ceil() as i64;
        (
            (args.rate / 10.0 * BASE_SECONDS_BEFORE_BURST + args.rate * args.seconds) as u64,
            1.0,
        )
    } else {
        sim.start = sim.burst_start - ((args.seconds + 1.0) * 1e9) as i64;
        ((args.rate * args.seconds) as u64, 1.0)
    };
    // The load is generated before the clock starts: on two cores, a simulator formatting FIX
    // as it sends took a whole core from the system under test.
    let mut fix = fix_messages(sim, messages);
    if args.lull_seconds > 0.0 {
        let at = args.lull_at.unwrap_or(if args.burst {
            BASE_SECONDS_BEFORE_BURST
        } else {
            args.seconds / 2.0
        });
        for (due, _) in fix.iter_mut().filter(|(due, _)| *due >= at) {
            *due += args.lull_seconds;
        }
    }
    if args.baseline_only {
        let baseline = run_baseline(&args, &baseline_topic, &fix, speed)?;
        delete_run_topics(&runtime, &args, needed);
        if args.baseline_summary {
            println!("{BASELINE_SUMMARY} {}", serde_json::to_string(&baseline)?);
        } else {
            print_baseline(&baseline);
        }
        return Ok(());
    }
    let baseline = if args.no_baseline {
        None
    } else {
        Some(baseline_in_own_process()?)
    };

    let metrics = Metrics::new()?;
    let listen = ListenOptions {
        listen: "127.0.0.1:0".parse()?,
        spool: scratch.path().join("spool"),
        archive_to: scratch.path().join("archive").display().to_string(),
        policy: SegmentPolicy {
            gateway_id: "bench".into(),
            trading_date: "20261125".into(),
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(60),
        },
        connections: Some(1),
    };
    let (writer, uploader) = open_archive(&listen)?;
    let gateway = Arc::new(Gateway::new(
        &args.kafka(),
        topics.clone(),
        "bench",
        metrics.sources.clone(),
        Some(writer),
        64 * 1024,
    )?);
    let listener = std::net::TcpListener::bind(listen.listen)?;
    let gateway_addr = listener.local_addr()?;
    let gateway_stop = Arc::new(AtomicBool::new(false));
    let gateway_thread = {
        let stop = gateway_stop.clone();
        std::thread::spawn(move || serve_tcp(gateway, listener, uploader, Some(1), None, stop))
    };

    if let Some(books) = &args.books {
        books.migrate()?;
    }
    let books_batch = eod_runtime::books::BatchLimits {
        spill: Some(eod_sinks::SpillOptions::new(
            scratch.path().join("books-spill"),
            eod_sinks::spill::DEFAULT_MEMORY_ROWS,
        )),
        max_rows: args.books_batch_rows,
        ..Default::default()
    };
    let store = ViewStore::new();
    let run_stop = Arc::new(AtomicBool::new(false));
    let run_metrics = Metrics::new()?;
    let latency_from = Arc::new(AtomicI64::new(0));
    let run_thread = {
        let (store, stop, metrics) = (store.clone(), run_stop.clone(), run_metrics.clone());
        let options = RunOptions {
            kafka: args.kafka(),
            topics: topics.clone(),
            group_id: format!("bench-{nonce}"),
            prices: Vec::new(),
            epoch: Duration::from_millis(args.epoch_ms.max(1)),
            limits: eod_runtime::driver::EpochLimits {
                in_flight: args.max_in_flight as usize,
                ..eod_runtime::driver::live_limits(args.books.is_some())
            },
            until_caught_up: false,
            books: args.books.clone(),
            books_batch,
            reference: Default::default(),
            reference_from_topic: false,
            timely_args: vec!["-w".into(), args.workers.to_string()],
            snapshots: None,
            wire: eod_sources::schema_registry::WireFormat::plain(&topics),
            trim_memory: eod_runtime::memory::TrimPolicy::from_flags(
                args.trim_memory_after_ms,
                args.trim_memory_min_growth_mb,
            ),
            latency_from: latency_from.clone(),
        };
        std::thread::spawn(move || run_kafka(options, store, metrics, stop))
    };

    // Measure the steady state: start sending once the run is consuming and publishing views.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while store.version() == 0 && Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));

    let outage = match (&args.outage_start, &args.outage_end) {
        (Some(start), Some(end)) => {
            shell(start)?;
            let (end, seconds) = (end.clone(), args.outage_seconds);
            Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                shell(&end)
            }))
        }
        _ => None,
    };
    let epochs_before = EpochCounts::read(&run_metrics);
    let cpu_before = CpuTimes::read()?;
    let started = Instant::now();
    latency_from.store(measured_from(&args), Ordering::Relaxed);
    let sent = send_paced(&gateway_addr.to_string(), &fix, speed)?;
    let ingested = gateway_thread
        .join()
        .map_err(|_| anyhow::anyhow!("gateway panicked"))??;
    let sent_at = started.elapsed();
    // Wait for the views to reflect every trade the gateway published.
    let deadline = Instant::now() + Duration::from_secs(300);
    while store.snapshot().accounting.read < ingested.counts.trades() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let viewed_at = started.elapsed();
    let cpu = CpuTimes::read()?.since(&cpu_before);
    let epochs = EpochCounts::read(&run_metrics).since(&epochs_before, args.workers);
    if let Some(outage) = outage {
        outage
            .join()
            .map_err(|_| anyhow::anyhow!("outage thread panicked"))??;
    }
    run_stop.store(true, Ordering::Release);
    let summary = run_thread
        .join()
        .map_err(|_| anyhow::anyhow!("run panicked"))??;
    anyhow::ensure!(
        summary.snapshot.accounting.read == ingested.counts.trades(),
        "views do not reflect every trade"
    );
    delete_run_topics(&runtime, &args, needed);

    let h = &summary.latency_micros;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let c = &summary.consume_latency_micros;
    let cms = |q: f64| c.value_at_quantile(q) as f64 / 1e3;
    let mode = if args.flat_out {
        "flat out".to_owned()
    } else if args.burst {
        format!("burst to {} msg/s", args.rate)
    } else {
        format!("{} msg/s offered", args.rate)
    };
    println!(
        "eod kafka benchmark ({mode}, {} workers, {} ms epochs when idle, one process, broker on the same 2 cores)",
        args.workers, args.epoch_ms
    );
    match (&args.books, &args.outage_start) {
        (Some(books), Some(_)) => println!(
            "books                     {books}, down for the first {} s of the send",
            args.outage_seconds
        ),
        (Some(books), None) => println!("books                     {books}"),
        _ => println!("books                     off"),
    }
    println!("fix messages sent         {}", sent.fix_messages);
    println!(
        "latency measured over     {} trades (those received in the first {} s of the send left out, here and in the baseline)",
        h.len(),
        args.warm_up_seconds
    );
    println!("trades through Kafka      {}", ingested.counts.trades());
    println!(
        "send rate achieved        {:.0} msg/s",
        sent.fix_messages as f64 / sent.elapsed.as_secs_f64()
    );
    println!("end to end                {:.0} trades/s (first send to views reflecting the last trade, {:.2} s)", ingested.counts.trades() as f64 / viewed_at.as_secs_f64(), viewed_at.as_secs_f64());
    println!("gateway done after        {:.2} s", sent_at.as_secs_f64());
    if args.lull_seconds > 0.0 {
        let memory = &run_metrics.memory;
        println!(
            "lull                      {:.1} s; memory trims {} (gave back {:.0} MB), resident at the end {:.0} MB",
            args.lull_seconds,
            memory.trims.get(),
            memory.released_bytes.get() as f64 / 1e6,
            memory.resident_bytes.get() as f64 / 1e6
        );
    }
    println!(
        "cpu until the views       {:.2} s, {:.1} us per trade: {}",
        cpu.process.as_secs_f64(),
        cpu.process.as_secs_f64() * 1e6 / ingested.counts.trades().max(1) as f64,
        cpu.by_thread_kind()
    );
    if let Some(waiting) = cpu.waiting_by_thread_kind() {
        // The broker and the sender share these cores: a thread that waits longer than it
        // runs is held back by the box, not by its own work.
        println!("waiting for a core        {waiting}");
    }
    let syncs = &metrics.sources.archive_syncs;
    let synced = metrics.sources.archive_bytes.get();
    println!(
        "archive fsyncs            {} before decoding, {:.0} KiB each, {:.2} ms mean, p99 under {:.1} ms",
        syncs.get_sample_count(),
        synced as f64 / 1024.0 / syncs.get_sample_count().max(1) as f64,
        syncs.get_sample_sum() * 1e3 / syncs.get_sample_count().max(1) as f64,
        bucket_bound(syncs, 0.99) * 1e3
    );
    println!(
        "epochs                    {} per worker, {:.0} trades each, close to view {:.2} ms mean",
        epochs.closed,
        ingested.counts.trades() as f64 / (epochs.closed * args.workers as u64).max(1) as f64,
        epochs.compute_seconds * 1e3 / epochs.computed.max(1) as f64
    );
    println!(
        "fill-to-view latency      p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1e3
    );
    println!(
        "  of which until consumed p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  (gateway, Kafka)",
        cms(0.5),
        cms(0.99),
        cms(0.999)
    );
    let k = &summary.in_kafka_latency_micros;
    let kms = |q: f64| k.value_at_quantile(q) as f64 / 1e3;
    println!(
        "  of which in Kafka       p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  (from the record's timestamp, whole ms, until the worker polled it)",
        kms(0.5),
        kms(0.99),
        kms(0.999)
    );
    if let Some(baseline) = &baseline {
        print_baseline(baseline);
        println!(
            "ratio to the baseline     throughput {:.2}x  p50 {:.1}x  p95 {:.1}x  p99 {:.1}x",
            (ingested.counts.trades() as f64 / viewed_at.as_secs_f64())
                / (baseline.records as f64 / baseline.elapsed.as_secs_f64()),
            ms(0.5) / baseline.p50_ms.max(1e-3),
            ms(0.95) / baseline.p95_ms.max(1e-3),
            ms(0.99) / baseline.p99_ms.max(1e-3)
        );
    }
    Ok(())
}

fn print_baseline(baseline: &Baseline) {
    println!(
        "baseline: bare Kafka     {:.0} records/s, produce-to-consume p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  ({} records, {} measured, same rate, keys and sizes, a process of its own)",
        baseline.records as f64 / baseline.elapsed.as_secs_f64(),
        baseline.p50_ms,
        baseline.p95_ms,
        baseline.p99_ms,
        baseline.p999_ms,
        baseline.records,
        baseline.measured
    );
}

/// What starts the line a `--baseline-summary` run prints its figures on.
const BASELINE_SUMMARY: &str = "baseline-summary";

/// The bare-Kafka baseline, run by this program in a process of its own with the same
/// arguments. Run first in this process, it disturbed the pipeline run after it: fill-to-view
/// p99 of 149-261 ms in most runs, against 33-71 ms with no baseline in the process
/// (bench/RESULTS.md, 2026-12-05).
fn baseline_in_own_process() -> Result<Baseline> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .args(["--baseline-only", "--baseline-summary"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the baseline's process")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "the baseline failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(BASELINE_SUMMARY))
        .with_context(|| format!("the baseline printed no summary: {stdout}"))?;
    serde_json::from_str(line.trim()).with_context(|| format!("the baseline's summary: {line}"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Baseline {
    records: u64,
    /// Records after the warm-up: those the latency figures are over.
    measured: u64,
    elapsed: Duration,
    p50_ms: f64,
    /// The burst goal's percentile (the reference system's headline is a p95).
    p95_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

impl Baseline {
    fn new(records: u64, elapsed: Duration, latency: &Histogram<u64>) -> Baseline {
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
        Baseline {
            records,
            measured: latency.len(),
            elapsed,
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
        }
    }
}

/// The simulator's FIX messages, each with when it is due (seconds from the first).
fn fix_messages(sim: SimConfig, messages: u64) -> Vec<(f64, Vec<u8>)> {
    let start = sim.start;
    Simulator::new(sim)
        .take(messages as usize)
        .filter_map(|message| match message.event {
            SimEvent::Fix(bytes) => Some(((message.time - start) as f64 / 1e9, bytes)),
            SimEvent::Price(_) => None,
        })
        .collect()
}

struct Sent {
    fix_messages: u64,
    elapsed: Duration,
}

/// Writes `fix` to the gateway at their due times scaled by `speed` (0: as fast as it takes
/// them), the way `eod simulate` does, then waits for the gateway to close its side.
fn send_paced(to: &str, fix: &[(f64, Vec<u8>)], speed: f64) -> Result<Sent> {
    use std::io::Write;
    let stream = std::net::TcpStream::connect(to)?;
    stream.set_nodelay(true)?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stream);
    let started = Instant::now();
    for (due, bytes) in fix {
        if speed > 0.0 {
            let due = Duration::from_secs_f64(due / speed);
            let now = started.elapsed();
            if due > now + Duration::from_millis(1) {
                out.flush()?;
                std::thread::sleep(due - now);
            }
        }
        out.write_all(bytes)?;
    }
    out.flush()?;
    let stream = out.into_inner().map_err(|e| e.into_error())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let elapsed = started.elapsed();
    let _ = std::io::Read::read(&mut &stream, &mut [0u8; 64]);
    Ok(Sent {
        fix_messages: fix.len() as u64,
        elapsed,
    })
}

/// The trade envelopes the gateway would produce for `fix`, with their keys and due times.
fn envelopes(fix: &[(f64, Vec<u8>)]) -> Vec<(f64, Vec<u8>, Vec<u8>)> {
    let mut classifier = Classifier::new();
    let mut out = Vec::new();
    for (due, bytes) in fix {
        for frame in eod_fix::frames(bytes, eod_fix::DEFAULT_MAX_MESSAGE) {
            if let Outcome::Trade(trade) = classifier.classify(&frame) {
                let envelope = eod_proto::borrowed::BorrowedEnvelope {
                    raw_fix: frame.bytes(),
                    receive_time: eod_fix::time::now_utc_nanos(),
                    ..trade.borrowed_envelope()
                };
                let mut record = Vec::new();
                envelope.encode(&mut record);
                out.push((*due, partition_key(&envelope).as_bytes().to_vec(), record));
            }
        }
    }
    out
}

/// How long `--burst` offers a tenth of the rate before the burst.
const BASE_SECONDS_BEFORE_BURST: f64 = 5.0;

/// Bare clients, eod's producer and consumer settings: the producer sends each envelope with
/// its send time in front, at the offered rate; one consumer per worker (the same partition
/// split as `eod run`) takes them back.
fn run_baseline(args: &Args, topic: &str, fix: &[(f64, Vec<u8>)], speed: f64) -> Result<Baseline> {
    let records = envelopes(fix);
    let kafka = args.kafka();
    let total = records.len() as u64;
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let latency_from = Arc::new(AtomicI64::new(i64::MAX));
    let consumers: Vec<_> = (0..args.workers)
        .map(|worker| {
            let assignments: Vec<(String, i32)> = (0..12)
                .filter(|p| *p as usize % args.workers == worker)
                .map(|p| (topic.to_owned(), p))
                .collect();
            let consumer = assigned_consumer(&kafka, &format!("{topic}-{worker}"), &assignments)?;
            let (consumed, latency_from) = (consumed.clone(), latency_from.clone());
            Ok(std::thread::spawn(
                move || -> Result<(Histogram<u64>, Instant)> {
                    let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
                    let mut last = Instant::now();
                    let deadline = Instant::now() + Duration::from_secs(300);
                    while consumed.load(Ordering::Acquire) < total && Instant::now() < deadline {
                        let Some(message) = consumer.poll(Duration::from_millis(20)) else {
                            continue;
                        };
                        let message = message?;
                        let payload = message.payload().unwrap_or_default();
                        let sent: [u8; 8] = payload
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .context("baseline record without its send time")?;
                        let sent = i64::from_le_bytes(sent);
                        if sent >= latency_from.load(Ordering::Relaxed) {
                            let waited = eod_fix::time::now_utc_nanos() - sent;
                            latency.saturating_record((waited / 1_000).max(1) as u64);
                        }
                        consumed.fetch_add(1, Ordering::AcqRel);
                        last = Instant::now();
                    }
                    Ok((latency, last))
                },
            ))
        })
        .collect::<Result<_>>()?;
    // The consumers are fetching, and the idempotent producer has its producer id, before the
    // first record goes out (as the gateway's has in the pipeline run).
    let producer = RecordProducer::new(&kafka)?;
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    latency_from.store(measured_from(args), Ordering::Relaxed);
    let mut payload = Vec::new();
    for (due, key, envelope) in &records {
        if speed > 0.0 {
            let due = Duration::from_secs_f64(due / speed);
            let now = started.elapsed();
            if due > now + Duration::from_millis(1) {
                std::thread::sleep(due - now);
            }
        }
        payload.clear();
        payload.extend_from_slice(&eod_fix::time::now_utc_nanos().to_le_bytes());
        payload.extend_from_slice(envelope);
        producer.send(topic, key, &payload)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut last = started;
    for consumer in consumers {
        let (histogram, done) = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("baseline consumer panicked"))??;
        latency.add(&histogram)?;
        last = last.max(done);
    }
    anyhow::ensure!(
        consumed.load(Ordering::Acquire) == total,
        "baseline: {} of {total} records came back",
        consumed.load(Ordering::Acquire)
    );
    Ok(Baseline::new(total, last - started, &latency))
}

/// When the measured part of a send starting now begins, in UTC nanoseconds.
fn measured_from(args: &Args) -> i64 {
    eod_fix::time::now_utc_nanos() + (args.warm_up_seconds.max(0.0) * 1e9) as i64
}

/// The run's epoch metrics at one moment, to count those of the send alone.
struct EpochCounts {
    closed: u64,
    computed: u64,
    compute_seconds: f64,
}

impl EpochCounts {
    fn read(metrics: &Metrics) -> EpochCounts {
        EpochCounts {
            closed: metrics.epochs_closed.get(),
            computed: metrics.epoch_compute.get_sample_count(),
            compute_seconds: metrics.epoch_compute.get_sample_sum(),
        }
    }

    /// What happened after `before`; epochs closed per worker (every worker counts its own).
    fn since(&self, before: &EpochCounts, workers: usize) -> EpochCounts {
        EpochCounts {
            closed: (self.closed - before.closed) / workers.max(1) as u64,
            computed: self.computed - before.computed,
            compute_seconds: self.compute_seconds - before.compute_seconds,
        }
    }
}

/// CPU time (user and system) of this process and of each of its threads, from `/proc`
/// (Linux). The process's keeps the time of threads that have exited (the gateway's FIX
/// connection among them, by the time the views have every trade). The broker is another
/// process and is not in it.
struct CpuTimes {
    process: Duration,
    /// By thread id: its name and time.
    threads: std::collections::BTreeMap<u64, ThreadTimes>,
}

struct ThreadTimes {
    name: String,
    cpu: Duration,
    /// Runnable but not running: waiting for a core (`schedstat`; `None` on a kernel without
    /// it). On a box whose cores are all busy, this is what a thread's latency is made of.
    waiting: Option<Duration>,
}

impl CpuTimes {
    fn read() -> Result<CpuTimes> {
        let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat")?)?;
        let mut threads = std::collections::BTreeMap::new();
        for task in std::fs::read_dir("/proc/self/task")? {
            let task = task?;
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            // A thread may end between the listing and the reads.
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(task.path().join("comm")),
                std::fs::read_to_string(task.path().join("stat")),
            ) else {
                continue;
            };
            let waiting = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|line| schedstat_waiting(&line));
            threads.insert(
                tid,
                ThreadTimes {
                    name: name.trim().to_owned(),
                    cpu: stat_cpu(&stat)?,
                    waiting,
                },
            );
        }
        Ok(CpuTimes { process, threads })
    }

    /// The time spent since `before`; a thread born since counts from zero.
    fn since(&self, before: &CpuTimes) -> CpuTimes {
        let threads = self
            .threads
            .iter()
            .map(|(tid, now)| {
                let earlier = before.threads.get(tid);
                let since = |now: Duration, earlier: Option<Duration>| {
                    now.saturating_sub(earlier.unwrap_or_default())
                };
                let times = ThreadTimes {
                    name: now.name.clone(),
                    cpu: since(now.cpu, earlier.map(|t| t.cpu)),
                    waiting: now
                        .waiting
                        .map(|waiting| since(waiting, earlier.and_then(|t| t.waiting))),
                };
                (*tid, times)
            })
            .collect();
        CpuTimes {
            process: self.process.saturating_sub(before.process),
            threads,
        }
    }

    /// The threads' time summed by kind (the name without its number), most first, and what
    /// threads that have exited took: here the gateway's (its FIX connection, its archive
    /// upload and its producer's librdkafka threads end before the views have every trade).
    fn by_thread_kind(&self) -> String {
        let mut kinds = std::collections::BTreeMap::<&str, Duration>::new();
        for thread in self.threads.values() {
            *kinds.entry(thread_kind(&thread.name)).or_default() += thread.cpu;
        }
        let alive: Duration = kinds.values().sum();
        let mut kinds: Vec<(&str, Duration)> = kinds.into_iter().collect();
        kinds.push(("exited (the gateway's)", self.process.saturating_sub(alive)));
        kinds.sort_by_key(|kind| std::cmp::Reverse(kind.1));
        kinds
            .iter()
            .filter(|(_, time)| *time >= Duration::from_millis(10))
            .map(|(kind, time)| format!("{kind} {:.2}", time.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The time the threads still alive waited for a core, summed by kind, most first, each
    /// with its ratio to the kind's CPU time; `None` without `schedstat`.
    fn waiting_by_thread_kind(&self) -> Option<String> {
        let mut kinds = std::collections::BTreeMap::<&str, (Duration, Duration)>::new();
        for thread in self.threads.values() {
            let kind = kinds.entry(thread_kind(&thread.name)).or_default();
            kind.0 += thread.waiting?;
            kind.1 += thread.cpu;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|kind| std::cmp::Reverse(kind.1 .0));
        Some(
            kinds
                .iter()
                .filter(|(_, (waiting, cpu))| {
                    // A thread that hardly runs (librdkafka's main thread) makes a ratio of noise.
                    *waiting >= Duration::from_millis(50) && *cpu >= Duration::from_millis(50)
                })
                .map(|(kind, (waiting, cpu))| {
                    format!(
                        "{kind} {:.2} ({:.1}x its cpu)",
                        waiting.as_secs_f64(),
                        waiting.as_secs_f64() / cpu.as_secs_f64().max(1e-3)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// A thread's name without its number: `timely:work-1` is `timely:work`.
fn thread_kind(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
}

/// The time a thread was runnable without a core, from its `schedstat` line (nanoseconds on
/// the CPU, waiting on a run queue, time slices).
fn schedstat_waiting(line: &str) -> Option<Duration> {
    let waiting = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(waiting))
}

/// User plus system time from a `stat` line of `/proc`: fields 14 and 15, counted after the
/// command name's closing parenthesis (the name may hold spaces), in clock ticks of 1/100 s
/// (Linux's USER_HZ on every architecture it runs eod on).
fn stat_cpu(stat: &str) -> Result<Duration> {
    let after_name = stat
        .rsplit_once(')')
        .context("a stat line without its name")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .context("a stat line too short")?
            .parse::<u64>()
            .context("a stat field that is not a number")
    };
    // After the name, field 3 (the state) is the first: utime (14) is the 12th, stime the 13th.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedstat_line_gives_its_run_queue_wait() {
        // On the CPU, waiting on a run queue (both in nanoseconds), time slices.
        assert_eq!(
            schedstat_waiting("4081000000 8290000000 26139\n"),
            Some(Duration::from_millis(8290))
        );
        assert_eq!(schedstat_waiting("4081000000"), None);
    }

    #[test]
    fn a_quantile_is_bounded_by_the_bucket_that_holds_it() {
        let histogram = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("t", "t").buckets(vec![0.001, 0.002, 0.004]),
        )
        .unwrap();
        for _ in 0..98 {
            histogram.observe(0.0005);
        }
        histogram.observe(0.0015);
        histogram.observe(0.003);
        assert_eq!(bucket_bound(&histogram, 0.5), 0.001);
        assert_eq!(bucket_bound(&histogram, 0.99), 0.002);
        assert_eq!(bucket_bound(&histogram, 1.0), 0.004);
        histogram.observe(1.0);
        assert_eq!(bucket_bound(&histogram, 1.0), f64::INFINITY);
    }
}
