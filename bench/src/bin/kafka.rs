//! End-to-end benchmark through a real Kafka broker: the simulator sends FIX over TCP to an
//! in-process gateway (archive + produce), `eod run` consumes into the dataflow, and every
//! trade's gateway-receive-to-view latency goes into an HDR histogram.
//!
//!     scripts/kafka.sh start
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --rate 50000 --seconds 10
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --rate 200000 --seconds 5 --burst
//!     cargo run --release -p eod-bench --bin eod-bench-kafka -- --flat-out --messages 1000000

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eod::ingest::{open_archive, serve_tcp, Gateway, ListenOptions};
use eod::metrics::Metrics;
use eod::run::{run_kafka, RunOptions};
use eod::simulate::{run_simulate, SimulateOptions};
use eod_dataflow::ViewStore;
use eod_sources::archive_writer::SegmentPolicy;
use eod_sources::kafka::{ensure_topics, KafkaConnection, Topics};
use eod_sources::simulator::SimConfig;

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
    /// Dataflow epoch length in milliseconds.
    #[arg(long, default_value_t = 2)]
    epoch_ms: u64,
    /// Closed epochs the source lets the dataflow compute at once before it holds the next.
    #[arg(long, default_value_t = 2)]
    max_in_flight: u64,
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(ensure_topics(
            &KafkaConnection::plaintext(&args.brokers),
            &[
                (&topics.trades, 12),
                (&topics.dead_letters, 3),
                (&topics.prices, 12),
            ],
        ))
        .context("creating topics (is the broker up? scripts/kafka.sh start)")?;
    std::thread::sleep(Duration::from_secs(1));

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
        &KafkaConnection::plaintext(&args.brokers),
        topics.clone(),
        "bench",
        metrics.clone(),
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

    let store = ViewStore::new();
    let run_stop = Arc::new(AtomicBool::new(false));
    let run_thread = {
        let (store, stop, metrics) = (store.clone(), run_stop.clone(), Metrics::new()?);
        let options = RunOptions {
            kafka: KafkaConnection::plaintext(&args.brokers),
            topics: topics.clone(),
            group_id: format!("bench-{nonce}"),
            prices: Vec::new(),
            epoch: Duration::from_millis(args.epoch_ms.max(1)),
            max_epochs_in_flight: args.max_in_flight,
            until_caught_up: false,
            books: None,
            books_batch: Default::default(),
            reference: Default::default(),
            reference_from_topic: false,
            timely_args: vec!["-w".into(), args.workers.to_string()],
        };
        std::thread::spawn(move || run_kafka(options, store, metrics, stop))
    };

    // Measure the steady state: start sending once the run is consuming and publishing views.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while store.version() == 0 && Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));

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
        sim.start = sim.burst_start - 5_000_000_000;
        sim.burst_seconds = args.seconds.ceil() as i64;
        (
            (args.rate / 10.0 * 5.0 + args.rate * args.seconds) as u64,
            1.0,
        )
    } else {
        sim.start = sim.burst_start - ((args.seconds + 1.0) * 1e9) as i64;
        ((args.rate * args.seconds) as u64, 1.0)
    };
    let started = Instant::now();
    let sent = run_simulate(SimulateOptions {
        to: gateway_addr.to_string(),
        sim,
        messages,
        speed,
        prices_to: None,
    })?;
    let ingested = gateway_thread
        .join()
        .map_err(|_| anyhow::anyhow!("gateway panicked"))??;
    let sent_at = started.elapsed();
    // Wait for the views to reflect every trade the gateway published.
    let deadline = Instant::now() + Duration::from_secs(300);
    while store.snapshot().accounting.read < ingested.trades && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let viewed_at = started.elapsed();
    run_stop.store(true, Ordering::Release);
    let summary = run_thread
        .join()
        .map_err(|_| anyhow::anyhow!("run panicked"))??;
    anyhow::ensure!(
        summary.snapshot.accounting.read == ingested.trades,
        "views do not reflect every trade"
    );

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
    println!("fix messages sent         {}", sent.fix_messages);
    println!("trades through Kafka      {}", ingested.trades);
    println!(
        "send rate achieved        {:.0} msg/s",
        sent.fix_messages as f64 / sent.elapsed.as_secs_f64()
    );
    println!("end to end                {:.0} trades/s (first send to views reflecting the last trade, {:.2} s)", ingested.trades as f64 / viewed_at.as_secs_f64(), viewed_at.as_secs_f64());
    println!("gateway done after        {:.2} s", sent_at.as_secs_f64());
    println!(
        "fill-to-view latency      p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        ms(0.5),
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
    Ok(())
}
