//! `eod run`.

use super::options::*;
use anyhow::{Context, Result};
use clap::Args;
use eod_dataflow::ViewStore;
use eod_queries::{positions_body, PositionFilter};
use eod_runtime::memory::TrimPolicy;
use eod_runtime::metrics::Metrics;
use eod_runtime::server::QueryServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) kafka: TopicArgs,
    /// Reference prices CSV loaded at start, besides the prices topic.
    #[arg(long)]
    pub(crate) prices: Option<PathBuf>,
    /// Query endpoint address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "EOD_LISTEN")]
    pub(crate) serve: SocketAddr,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
    /// Stop once everything on the topics at start has been read (replays, tests).
    #[arg(long)]
    pub(crate) until_caught_up: bool,
    /// With --until-caught-up: write the final positions here.
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// Kafka consumer group under which offsets are committed (for lag monitoring).
    #[arg(long, default_value = "eod-run")]
    pub(crate) group_id: String,
    /// How long a dataflow epoch without input stays open, in milliseconds (an epoch with
    /// input closes as soon as the one before is in the views).
    #[arg(long, default_value_t = eod_runtime::driver::LIVE_EPOCH_MS)]
    pub(crate) epoch_ms: u64,
    /// Books store for `run`: no default (a distributed run names its store).
    #[command(flatten)]
    pub(crate) books: BooksArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    /// Write snapshots of the input state here (a directory, `file://` or `s3://bucket/prefix`;
    /// under the group id) and start from the newest complete one: a restart reads only the
    /// tail of the topics [default: none, a restart reads the topics from the beginning].
    #[arg(long)]
    pub(crate) snapshots: Option<String>,
    /// Seconds between snapshots (with --snapshots).
    #[arg(long, default_value_t = 10)]
    pub(crate) snapshot_interval_s: u64,
    /// Run the process under a supervisor that starts it again whenever it fails (a crash, a
    /// kill, or a peer process's death, which makes every process of the cluster exit):
    /// supervise every process and the cluster comes back with exact views.
    #[arg(long, env = "EOD_SUPERVISE")]
    pub(crate) supervise: bool,
    /// Once the process has been quiet this long after a burst (no record consumed, no row or
    /// snapshot written) and its resident memory grew by --trim-memory-min-growth-mb since the
    /// last time, return the allocator's free memory to the system, in milliseconds; 0: never.
    #[arg(long, default_value_t = TrimPolicy::default().quiet_for.as_millis() as u64)]
    pub(crate) trim_memory_after_ms: u64,
    /// See --trim-memory-after-ms, in MiB.
    #[arg(long, default_value_t = TrimPolicy::default().min_growth >> 20)]
    pub(crate) trim_memory_min_growth_mb: u64,
    #[arg(last = true)]
    pub(crate) timely: Vec<String>,
}

/// `eod run --supervise`: the same command line without the flag, in a child process that is
/// started again after every failure.
fn supervise() -> Result<()> {
    use eod_runtime::supervise::{supervise, RestartPolicy, Supervised, SupervisorEvent};
    let exe = std::env::current_exe().context("locating the eod executable")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|arg| arg != "--supervise")
        .collect();
    let stop = eod_runtime::supervise::stop_on_signal().context("installing signal handlers")?;
    let outcome = supervise(
        || {
            let mut command = std::process::Command::new(&exe);
            // The flag may also come from the environment: the child must not supervise.
            command.args(&args).env_remove("EOD_SUPERVISE");
            command
        },
        RestartPolicy::default(),
        &stop,
        // Its own lines on stderr, always shown: the child's log comes between them.
        |event| match event {
            SupervisorEvent::Started { pid, restarts } => {
                eprintln!("supervisor: started eod run (pid {pid}, restart {restarts})");
            }
            SupervisorEvent::Exited { status, restart_in } => {
                eprintln!("supervisor: eod run exited with {status}; restarting in {restart_in:?}");
            }
        },
    )
    .context("supervising eod run")?;
    if outcome == Supervised::Stopped {
        eprintln!("supervisor: stopped");
    }
    Ok(())
}

/// What `/health/ready` asks besides the views: the brokers, and the books store and Redis when
/// the run writes them, each from the gauge its component keeps current.
fn readiness(args: &RunArgs, metrics: &Metrics) -> eod_queries::Readiness {
    let kafka = metrics.sources.kafka_up.clone();
    let mut readiness = eod_queries::Readiness::new().with("kafka", move || kafka.get() == 1);
    if args.books.target_if_named().is_some() {
        let books = metrics.sinks.store_up.with_label_values(&["books"]);
        readiness = readiness.with("books", move || books.get() == 1);
    }
    if args.redis.redis.is_some() {
        // Redis is written only when the views change: its breaker, open after a failed
        // write, says whether it is down (closed or half-open: trying).
        let breaker = metrics.sinks.breaker_state.with_label_values(&["redis"]);
        readiness = readiness.with("redis", move || breaker.get() != 1);
    }
    readiness
}

/// A peer's death shows as a panic in timely's network threads; say what it means first.
fn explain_peer_loss() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("timely communication error") {
            eprintln!(
                "error: lost the connection to a peer process of the timely cluster ({message}); \
                 this process exits too. Run every process with --supervise (or under a restart \
                 policy) to bring the cluster back."
            );
        }
        default(info);
    }));
}

pub(crate) fn run(args: RunArgs) -> Result<()> {
    if args.supervise {
        return supervise();
    }
    explain_peer_loss();
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = QueryServer::start(
        args.serve,
        store.clone(),
        &metrics,
        args.http.policy()?,
        readiness(&args, &metrics),
        stop.clone(),
    )?;
    eprintln!("serving http://{}", server.addr);
    let books_batch = args.books.live_limits();
    let options = eod_runtime::run::RunOptions {
        kafka: args.kafka.connection()?,
        topics: args.kafka.topics(),
        wire: args.kafka.wire_format()?.observed(&metrics.sources),
        latency_from: Default::default(),
        trim_memory: TrimPolicy::from_flags(
            args.trim_memory_after_ms,
            args.trim_memory_min_growth_mb,
        ),
        group_id: args.group_id,
        prices: read_prices(args.prices.as_deref())?,
        epoch: Duration::from_millis(args.epoch_ms.max(1)),
        limits: eod_runtime::driver::live_limits(books_batch.spill.is_some()),
        until_caught_up: args.until_caught_up,
        books: args.books.target_if_named(),
        books_batch,
        reference: args.books.reference(None)?,
        reference_from_topic: true,
        timely_args: args.timely.clone(),
        snapshots: args
            .snapshots
            .clone()
            .map(|location| eod_runtime::run::SnapshotOptions {
                location,
                interval: Duration::from_secs(args.snapshot_interval_s.max(1)),
            }),
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let result = eod_runtime::run::run_kafka(options, store, metrics, stop);
    if let Some(redis) = redis {
        redis.finish();
    }
    server.shutdown()?;
    let summary = result?;
    if let Some(output) = &args.output {
        let body = positions_body(&summary.snapshot, &PositionFilter::default());
        std::fs::write(output, serde_json::to_vec_pretty(&body)?)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    if let Some(restored) = &summary.restored {
        println!(
            "snapshot        generation {} cut {}: {} records restored",
            restored.generation, restored.cut, restored.records
        );
    }
    print_accounting("records", &summary.snapshot.accounting);
    println!("positions       {}", summary.snapshot.positions.len());
    if let Some(at) = summary.views_caught_up {
        println!("views caught up {:.3} s", at.as_secs_f64());
    }
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    let h = &summary.latency_micros;
    if !h.is_empty() {
        println!(
            "fill-to-view    p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms (this process's reads)",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3
        );
    }
    Ok(())
}
