//! `eod replay`.

use super::options::*;
use anyhow::{Context, Result};
use clap::Args;
use eod_dataflow::ViewStore;
use eod_queries::{positions_body, PositionFilter};
use eod_runtime::metrics::Metrics;
use eod_runtime::replay::{run_replay, ReplayOptions, ReplaySummary};
use eod_runtime::server::QueryServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Directory (or file:// URL) holding the FIX files; read in name order.
    #[arg(long, env = "EOD_ARCHIVE")]
    pub(crate) archive: String,
    /// Prices CSV: `symbol,kind,price`, kind one of close, bid, ask, prev_close.
    #[arg(long, env = "EOD_PRICES")]
    pub(crate) prices: Option<PathBuf>,
    /// Write the final positions here, as `GET /v1/positions` serves them.
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// Dead-letter JSONL path [default: beside --output, else ./dead-letters.jsonl].
    #[arg(long)]
    pub(crate) dead_letters: Option<PathBuf>,
    /// Serve the query endpoint on this address during and after the replay (until Ctrl-C).
    #[arg(long)]
    pub(crate) serve: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
    /// Framed messages per dataflow epoch [default: 100000; 5000 with books].
    #[arg(long)]
    pub(crate) epoch_messages: Option<u64>,
    /// Largest accepted FIX message in bytes.
    #[arg(long, default_value_t = eod_fix::DEFAULT_MAX_MESSAGE)]
    pub(crate) max_message: usize,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// With books, the workers' nice value once the books writer runs (Linux; 0 to leave
    /// them): the books writer is the replay's bottleneck and keeps its core.
    #[arg(long, default_value_t = eod_runtime::replay::REPLAY_WORKER_NICE,
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub(crate) worker_nice: u8,
    #[command(flatten)]
    pub(crate) books: BooksArgs,
    /// Timely flags, after `--`: `-w THREADS`, `-n PROCESSES -p INDEX -h HOSTFILE`.
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[arg(last = true)]
    pub(crate) timely: Vec<String>,
}

impl ReplayArgs {
    /// `--epoch-messages`, or the replay's default for a run with or without books.
    fn epoch_messages(&self, with_books: bool) -> u64 {
        self.epoch_messages
            .unwrap_or_else(|| eod_runtime::replay::default_epoch_messages(with_books))
            .max(1)
    }
}

pub(crate) fn replay(args: ReplayArgs) -> Result<()> {
    let prices = read_prices(args.prices.as_deref())?;
    let dead_letters = args
        .dead_letters
        .clone()
        .unwrap_or_else(|| match &args.output {
            Some(output) => output.with_extension("dead-letters.jsonl"),
            None => PathBuf::from("dead-letters.jsonl"),
        });
    let store = ViewStore::new();
    let metrics = Metrics::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = args
        .serve
        .map(|addr| {
            QueryServer::start(
                addr,
                store.clone(),
                &metrics,
                args.http.policy()?,
                eod_queries::Readiness::new(),
                stop.clone(),
            )
        })
        .transpose()?;
    if let Some(server) = &server {
        eprintln!("serving http://{}", server.addr);
    }
    let books = args.books.target(|| match &args.output {
        Some(output) => output.with_extension("books.sqlite"),
        None => PathBuf::from("eod-books.sqlite"),
    });
    let epoch_messages = args.epoch_messages(books.is_some());
    let lag_sharers = eod_runtime::replay::books_lag_shared_by(books.as_ref(), &args.timely)
        .map_err(anyhow::Error::msg)?;
    let options = ReplayOptions {
        archive: args.archive.clone(),
        prices,
        dead_letters: dead_letters.clone(),
        epoch_messages,
        limits: eod_runtime::driver::replay_limits(epoch_messages, lag_sharers),
        max_message: args.max_message,
        timely_args: args.timely.clone(),
        progress: !args.quiet,
        books,
        books_batch: args.books.limits(),
        reference: args.books.reference(Some(&args.archive))?,
        worker_nice: args.worker_nice,
        // Unless it serves the views afterwards, the process ends with the replay.
        exit_after: server.is_none(),
    };
    let redis = args.redis.spawn(&store, &metrics, &args.timely)?;
    let summary = run_replay(options, store.clone(), metrics);
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(redis) = redis {
                redis.finish();
            }
            return Err(e);
        }
    };
    if let Some(output) = &args.output {
        let body = positions_body(&summary.snapshot, &PositionFilter::default());
        std::fs::write(output, serde_json::to_vec_pretty(&body)?)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    print_summary(&summary, &dead_letters, &store);
    if let Some(server) = server {
        eprintln!(
            "replay complete; still serving http://{} (Ctrl-C to stop)",
            server.addr
        );
        server.wait()?;
    }
    if let Some(redis) = redis {
        redis.finish();
    }
    Ok(())
}

pub(crate) fn print_summary(summary: &ReplaySummary, dead_letters: &Path, store: &ViewStore) {
    let a = summary.accounting();
    println!("segments        {}", summary.segments);
    println!("bytes           {}", summary.bytes);
    print_accounting("messages", a);
    println!("skipped         {}", a.skipped);
    println!("unmatched       {}", summary.snapshot.unmatched.len());
    println!("positions       {}", summary.snapshot.positions.len());
    // What small epochs pay for: each snapshot publishes every row that changed in it.
    println!(
        "view changes    {} in {} snapshots",
        store.changes_published(),
        store.version()
    );
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    println!("trades/s        {:.0}", summary.trades_per_second());
    println!(
        "accounted       {} of {} units, {} of {} messages found in the input ({})",
        a.accounted(),
        a.read,
        a.messages_framed,
        a.messages_in_input,
        if a.all_accounted() { "all" } else { "MISMATCH" }
    );
    if summary.dead_letters_written > 0 {
        println!("dead letters in {}", dead_letters.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn replay_args(flags: &[&str]) -> ReplayArgs {
        let argv = ["eod", "replay", "--archive", "a"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Replay(args) => args,
            _ => unreachable!("parsed a replay"),
        }
    }

    /// A replay with books (the default) takes the books' smaller epochs, one without them
    /// the big ones; `--epoch-messages` wins over both.
    #[test]
    fn the_default_epoch_follows_the_books() {
        let epochs = |args: &ReplayArgs| {
            let books = args.books.target(|| "b.sqlite".into());
            args.epoch_messages(books.is_some())
        };
        assert_eq!(epochs(&replay_args(&[])), 5_000, "books are on by default");
        assert_eq!(epochs(&replay_args(&["--no-books"])), 100_000);
        let told = replay_args(&["--epoch-messages", "250"]);
        assert_eq!(
            (told.epoch_messages(true), told.epoch_messages(false)),
            (250, 250)
        );
        assert_eq!(
            replay_args(&["--epoch-messages", "0"]).epoch_messages(true),
            1
        );
    }
}
