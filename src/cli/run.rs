//! `eod run`.

use super::options::*;
use anyhow::{Context, Result};
use clap::Args;
use eod_dataflow::ViewStore;
use eod_queries::{positions_body, PositionFilter};
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
    /// Dataflow epoch length in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) epoch_ms: u64,
    /// Books store for `run`: no default (a distributed run names its store).
    #[command(flatten)]
    pub(crate) books: BooksArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[arg(last = true)]
    pub(crate) timely: Vec<String>,
}

pub(crate) fn run(args: RunArgs) -> Result<()> {
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = QueryServer::start(
        args.serve,
        store.clone(),
        &metrics,
        args.http.policy()?,
        stop.clone(),
    )?;
    eprintln!("serving http://{}", server.addr);
    let books_batch = args.books.live_limits();
    let options = eod_runtime::run::RunOptions {
        kafka: args.kafka.connection()?,
        topics: args.kafka.topics(),
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
    print_accounting("records", &summary.snapshot.accounting);
    println!("positions       {}", summary.snapshot.positions.len());
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
