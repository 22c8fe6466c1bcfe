//! `eod check`.

use super::options::*;
use anyhow::{Context, Result};
use clap::Args;
use eod_runtime::books::BooksTarget;
use eod_runtime::check::{run_check, CheckOptions, Scenario};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Scenarios to run: health, throughput, latency, burst, integrity, dead-letters
    /// [default: all].
    pub(crate) scenarios: Vec<Scenario>,
    /// The gateway's FIX session port (`eod ingest --listen ... --fix-session`).
    #[arg(long, default_value = "127.0.0.1:9878")]
    pub(crate) gateway: String,
    /// Our SenderCompID; the gateway must list it as a --counterparty.
    #[arg(long, default_value = "EODCHECK")]
    pub(crate) check_comp_id: String,
    /// The gateway's CompID (its --comp-id).
    #[arg(long, default_value = "EOD")]
    pub(crate) gateway_comp_id: String,
    /// HTTP addresses of the eod processes serving views (`eod run --serve`), comma-separated;
    /// latency and throughput are measured at the first.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    pub(crate) views: Vec<String>,
    #[command(flatten)]
    pub(crate) kafka: TopicArgs,
    /// The books store `eod run` writes (`sqlite:PATH`, `postgres://...`, `mssql:...`):
    /// health pings it, integrity reads the check's rows back [default: not checked].
    #[arg(long, hide_env_values = true)]
    pub(crate) books: Option<BooksTarget>,
    /// The Redis the views are mirrored to [default: not checked].
    #[arg(long, hide_env_values = true)]
    pub(crate) redis: Option<String>,
    /// The gateway's archive (its --archive-to): health lists it, integrity finds every check
    /// fill in the segments uploaded since the check began [default: not checked].
    #[arg(long)]
    pub(crate) archive_to: Option<String>,
    /// Target rate of throughput and latency, messages per second.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) target_rate: u64,
    /// The burst sends this many times the target rate.
    #[arg(long, default_value_t = 10)]
    pub(crate) burst_multiplier: u64,
    /// Seconds each of throughput, latency and burst sends.
    #[arg(long, default_value_t = 10)]
    pub(crate) drive_seconds: u64,
    /// Seconds the views, books, archive and dead-letter topic may take to show everything
    /// once the sending stopped.
    #[arg(long, default_value_t = 30)]
    pub(crate) settle_s: u64,
    /// Latency passes when the fill-to-view P95 is below this many milliseconds.
    #[arg(long, default_value_t = 100)]
    pub(crate) latency_p95_ms: u64,
    /// Where `check.json` (the verdicts and every measurement) and `check.html` (the same as
    /// one self-contained page with charts) go.
    #[arg(long, default_value = "eod-check")]
    pub(crate) report: PathBuf,
    /// Bearer token of the --views processes (their --auth-token), to read the views and
    /// report the verdicts to their dashboards.
    #[arg(long, env = "EOD_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
}

pub(crate) fn check(args: CheckArgs) -> Result<()> {
    let options = CheckOptions {
        gateway: args.gateway,
        comp_id: args.check_comp_id,
        gateway_comp_id: args.gateway_comp_id,
        views: args.views,
        kafka: args.kafka.connection()?,
        topics: args.kafka.topics(),
        redis: args.redis,
        books: args.books,
        archive: args.archive_to,
        rate: args.target_rate.max(1),
        burst_multiplier: args.burst_multiplier.max(1),
        drive: Duration::from_secs(args.drive_seconds.max(1)),
        settle: Duration::from_secs(args.settle_s),
        latency_p95_limit: Duration::from_millis(args.latency_p95_ms),
        throughput_pass: 0.95,
        burst_pass: 0.80,
        report_dir: Some(args.report.clone()),
        views_token: args.auth_token,
    };
    let result = run_check(&options, &args.scenarios);
    for verdict in &result.verdicts {
        let mark = if verdict.passed { "PASS" } else { "FAIL" };
        println!(
            "{mark}  {:<13} {}",
            verdict.scenario.name(),
            verdict.summary
        );
    }
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("creating {}", args.report.display()))?;
    let json_path = args.report.join("check.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("result          {}", json_path.display());
    let html_path = args.report.join("check.html");
    std::fs::write(&html_path, eod_runtime::check::report_html(&result)?)
        .with_context(|| format!("writing {}", html_path.display()))?;
    println!("report          {}", html_path.display());
    for (addr, outcome) in eod_runtime::check::report_to_views(&options, &result) {
        match outcome {
            Ok(()) => println!("reported to     {addr} (its dashboard shows the verdicts)"),
            Err(e) => eprintln!("could not report to {addr}: {e}"),
        }
    }
    let failed = result.failed();
    anyhow::ensure!(failed.is_empty(), "check failed: {}", failed.join(", "));
    Ok(())
}
