//! `eod ingest`.

use super::options::*;
use anyhow::{Context, Result};
use clap::Args;
use eod_runtime::metrics::Metrics;
use eod_runtime::server::QueryServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["archive", "listen"])))]
pub(crate) struct IngestArgs {
    /// Replay this archive (directory, file:// or s3://bucket/prefix), read in name order.
    #[arg(long)]
    pub(crate) archive: Option<String>,
    /// Accept plain framed FIX streams over TCP on this address.
    #[arg(long, requires_all = ["spool", "archive_to"], env = "EOD_GATEWAY_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Local spool directory: raw bytes are fsynced here before anything else is done.
    #[arg(long)]
    pub(crate) spool: Option<PathBuf>,
    /// Where closed archive segments are uploaded: a directory, file:// or
    /// s3://bucket/prefix (credentials and endpoint from the AWS_* environment). While it is
    /// unreachable, segments wait in the spool and go up in order when it is back.
    #[arg(long)]
    pub(crate) archive_to: Option<String>,
    /// Most bytes the spool may hold for the store (0: no cap). At the cap, connections stop
    /// reading until uploads make room, and TCP pushes back on the senders.
    #[arg(long, default_value_t = 16 << 30, env = "EOD_SPOOL_MAX_BYTES")]
    pub(crate) spool_max_bytes: u64,
    /// Stop after this many connections (default: until Ctrl-C).
    #[arg(long)]
    pub(crate) connections: Option<usize>,
    /// Run the FIX session layer (we are the acceptor) instead of reading plain streams.
    #[arg(long, requires_all = ["session_dir", "counterparty"])]
    pub(crate) fix_session: bool,
    /// A counterparty allowed to log on (repeatable, or comma-separated):
    /// `SENDERCOMPID[:BEGINSTRING][@ADDRESS[/PREFIX]]`, e.g. `ACME`, `ACME:FIX.4.2`,
    /// `ACME@10.1.2.0/24`. Any other Logon is refused with a Logout. Required with
    /// --fix-session.
    #[arg(long, value_delimiter = ',')]
    pub(crate) counterparty: Vec<eod_fix::session::Counterparty>,
    /// Seconds a FIX connection may take to log on; after that it is closed (a peer that
    /// sends nothing, or garbage, holds no connection open).
    #[arg(long, default_value_t = 10)]
    pub(crate) logon_timeout: u64,
    /// Seconds a FIX message's SendingTime may be from our clock, either way; further is a
    /// SendingTime accuracy problem (Reject, Logout). 0 turns the check off.
    #[arg(long, default_value_t = 120)]
    pub(crate) sending_time_tolerance: u64,
    /// Our CompID in FIX sessions (the counterparties' TargetCompID).
    #[arg(long, default_value = "EOD")]
    pub(crate) comp_id: String,
    /// The FIX BeginString of counterparties that name none.
    #[arg(long, default_value = "FIX.4.4")]
    pub(crate) begin_string: String,
    /// Where FIX sessions persist their sequence numbers.
    #[arg(long)]
    pub(crate) session_dir: Option<PathBuf>,
    /// An archive segment is closed (and uploaded) at this size...
    #[arg(long, default_value_t = 16 << 20)]
    pub(crate) segment_bytes: usize,
    /// ... or at this age in seconds, whichever comes first.
    #[arg(long, default_value_t = 60)]
    pub(crate) segment_seconds: u64,
    /// Trading date in archive keys [default: today, UTC].
    #[arg(long)]
    pub(crate) trading_date: Option<String>,
    /// Also publish these reference prices (CSV) to the prices topic.
    #[arg(long)]
    pub(crate) prices: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) kafka: TopicArgs,
    /// Create missing topics (12 partitions for trades and prices, 3 for the DLQ).
    #[arg(long)]
    pub(crate) create_topics: bool,
    /// This gateway's name, in archive keys and on every envelope.
    #[arg(long, default_value = "gw1")]
    pub(crate) gateway_id: String,
    /// Serve Prometheus metrics (`/metrics`) and `/health/live` on this address.
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
    /// Largest accepted FIX message in bytes; longer input is dead-lettered.
    #[arg(long, default_value_t = eod_fix::DEFAULT_MAX_MESSAGE)]
    pub(crate) max_message: usize,
}

pub(crate) fn ingest(args: IngestArgs) -> Result<()> {
    let topics = args.kafka.topics();
    if args.create_topics {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(eod_sources::kafka::ensure_topics_with(
            &args.kafka.connection()?,
            &[
                (&topics.trades, 12),
                (&topics.dead_letters, 3),
                (&topics.prices, 12),
            ],
            &[(&topics.reference, 1)],
        ))?;
    }
    let metrics = Metrics::new()?;
    // Before anything is written: an incompatible schema stops the gateway here.
    let wire = args.kafka.wire_format()?.observed(&metrics.sources);
    let metrics_server = args
        .metrics_listen
        .map(|addr| {
            QueryServer::start_metrics(
                addr,
                &metrics,
                args.http.policy()?,
                Arc::new(AtomicBool::new(false)),
            )
        })
        .transpose()?;
    if let Some(server) = &metrics_server {
        eprintln!("metrics     http://{}/metrics", server.addr);
    }
    let s = match (args.archive, args.listen) {
        (Some(archive), _) => {
            let options = eod_gateway::IngestOptions {
                archive,
                kafka: args.kafka.connection()?,
                topics,
                gateway_id: args.gateway_id,
                prices: read_prices(args.prices.as_deref())?,
                max_message: args.max_message,
                wire,
            };
            eod_gateway::run_ingest(options, metrics.sources.clone())?
        }
        (None, Some(listen)) => {
            let trading_date = args.trading_date.unwrap_or_else(today_utc);
            let listen_options = eod_gateway::ListenOptions {
                listen,
                spool: args.spool.context("--spool is required with --listen")?,
                archive_to: args
                    .archive_to
                    .context("--archive-to is required with --listen")?,
                policy: eod_sources::archive_writer::SegmentPolicy {
                    gateway_id: args.gateway_id.clone(),
                    trading_date,
                    max_bytes: args.segment_bytes.max(1),
                    max_age: Duration::from_secs(args.segment_seconds.max(1)),
                },
                connections: args.connections,
            };
            let (writer, uploader) = eod_gateway::open_archive(&listen_options)?;
            let leftovers = writer.leftover_segments().to_vec();
            let leftovers_created = writer.leftovers_created();
            let gateway = Arc::new(
                eod_gateway::Gateway::new(
                    &args.kafka.connection()?,
                    topics,
                    &args.gateway_id,
                    metrics.sources.clone(),
                    Some(writer),
                    args.max_message,
                )?
                .with_spool_cap(Some(args.spool_max_bytes))
                .with_wire_format(wire),
            );
            let recovered = gateway.recover_leftovers(&leftovers, leftovers_created)?;
            if recovered != Default::default() {
                eprintln!(
                    "recovered from the spool: {} trades, {} dead letters",
                    recovered.trades, recovered.dead_letters
                );
            }
            gateway.publish_prices(&read_prices(args.prices.as_deref())?)?;
            let listener = std::net::TcpListener::bind(listen_options.listen)
                .with_context(|| format!("binding {}", listen_options.listen))?;
            eprintln!("gateway listening on {}", listener.local_addr()?);
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = stop.clone();
            // Ctrl-C stops accepting; open connections finish and everything is flushed.
            std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                        watcher.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            });
            let session = match (args.fix_session, args.session_dir) {
                (true, Some(state_dir)) => {
                    std::fs::create_dir_all(&state_dir)
                        .with_context(|| format!("creating {}", state_dir.display()))?;
                    Some(eod_gateway::SessionConfig {
                        acceptor: eod_fix::session::Acceptor {
                            comp_id: args.comp_id.clone(),
                            begin_string: args.begin_string.clone(),
                            counterparties: args.counterparty.clone(),
                            logon_timeout: Duration::from_secs(args.logon_timeout.max(1)),
                            max_latency: (args.sending_time_tolerance > 0)
                                .then(|| Duration::from_secs(args.sending_time_tolerance)),
                        },
                        state_dir,
                        active: Default::default(),
                    })
                }
                _ => None,
            };
            eod_gateway::serve_tcp(
                gateway,
                listener,
                uploader,
                listen_options.connections,
                session,
                stop,
            )?
        }
        (None, None) => anyhow::bail!("give --archive or --listen"),
    };
    let c = &s.counts;
    println!("bytes           {}", c.bytes);
    println!("messages        {}", c.read);
    println!("trades          {}", c.trades());
    println!("skipped         {}", c.skipped);
    println!("dead letters    {}", c.dead_lettered());
    println!("prices          {}", s.prices);
    println!("delivered       {}", s.delivered);
    println!("elapsed         {:.3} s", s.elapsed.as_secs_f64());
    println!(
        "accounted       {} of {} messages found in the input ({})",
        c.messages_framed,
        c.messages_in_input,
        if c.all_accounted() { "all" } else { "MISMATCH" }
    );
    if let Some(server) = metrics_server {
        server.shutdown()?;
    }
    Ok(())
}

pub(crate) fn today_utc() -> String {
    eod_fix::time::format_utc_timestamp(eod_fix::time::now_utc_nanos())[..8].to_owned()
}
