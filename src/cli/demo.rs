//! `eod demo`.

use super::options::*;
use anyhow::Result;
use clap::Args;
use eod_dataflow::ViewStore;
use eod_runtime::dead_letters::DeadLetterWriter;
use eod_runtime::demo::{run_demo, DemoOptions};
use eod_runtime::metrics::Metrics;
use eod_runtime::server::QueryServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Messages per second before and after the burst.
    #[arg(long, default_value_t = 2_000.0, env = "EOD_DEMO_RATE")]
    pub(crate) rate: f64,
    /// Rate multiplier during the 16:00 burst (which starts 30 s into the demo).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) burst_multiplier: f64,
    #[command(flatten)]
    pub(crate) market: MarketArgs,
    /// Query endpoint address (loopback unless you mean it).
    #[arg(long, default_value = "127.0.0.1:8080", env = "EOD_LISTEN")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// How long a dataflow epoch without input stays open, in milliseconds (an epoch with
    /// input closes as soon as the one before is in the views).
    #[arg(long, default_value_t = eod_runtime::driver::LIVE_EPOCH_MS)]
    pub(crate) epoch_ms: u64,
    /// Dead-letter JSONL path [default: eod-demo-dead-letters.jsonl in the temp directory].
    #[arg(long)]
    pub(crate) dead_letters: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) books: BooksArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[arg(last = true)]
    pub(crate) timely: Vec<String>,
}

pub(crate) fn demo(args: DemoArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.base_rate = args.rate.max(1.0);
    sim.burst_multiplier = args.burst_multiplier.max(1.0);
    sim.broken_ratio = 0.001;
    let dead_letters_path = args
        .dead_letters
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("eod-demo-dead-letters.jsonl"));
    let writer = DeadLetterWriter::start(dead_letters_path.clone());
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let options_books = args
        .books
        .target(|| std::env::temp_dir().join("eod-demo-books.sqlite"));
    let server = QueryServer::start(
        args.listen,
        store.clone(),
        &metrics,
        args.http.policy()?,
        eod_queries::Readiness::new(),
        stop.clone(),
    )?;
    eprintln!(
        "eod demo: {} msg/s, {}x burst at 16:00 (30 s in)",
        args.rate, args.burst_multiplier
    );
    eprintln!("  positions   http://{}/v1/positions", server.addr);
    eprintln!("  traders     http://{}/v1/pnl/traders", server.addr);
    eprintln!("  firm        http://{}/v1/pnl/firm", server.addr);
    eprintln!("  metrics     http://{}/metrics", server.addr);
    eprintln!("  dead letters {}", dead_letters_path.display());
    match &options_books {
        Some(books) => eprintln!("  books       {books}"),
        None => eprintln!("  books       (none)"),
    }
    eprintln!("Ctrl-C to stop.");
    let reference = args.books.reference(None)?.or_simulated(&sim);
    let options = DemoOptions {
        sim,
        epoch: Duration::from_millis(args.epoch_ms.max(1)),
        duration: args.duration.map(Duration::from_secs_f64),
        timely_args: args.timely.clone(),
        books: options_books,
        books_batch: args.books.live_limits(),
        reference,
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let result = run_demo(
        options,
        store.clone(),
        metrics,
        stop.clone(),
        writer.sender(),
    );
    if let Some(redis) = redis {
        redis.finish();
    }
    server.shutdown()?;
    writer.finish()?;
    result?;
    let snapshot = store.snapshot();
    let a = &snapshot.accounting;
    eprintln!(
        "stopped: {} messages, {} fills, {} busts, {} corrections, {} skipped, {} dead letters, {} positions",
        a.read,
        a.fills,
        a.busts,
        a.corrections,
        a.skipped,
        a.dead_lettered(),
        snapshot.positions.len()
    );
    Ok(())
}
