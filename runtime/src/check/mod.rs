//! `eod check`: go or no-go before the close. Scenarios run against a running deployment (the
//! gateway's FIX session port, the HTTP views of every `eod run`, the brokers, Redis, the books
//! store and the archive) and each ends in a verdict with its measurements.
//!
//! The contract:
//! - a check trades only as its own trader and symbol ([`CHECK_BOOK`]), so it never moves a
//!   real position or a real symbol's last-traded mark, and it busts every fill it sent before
//!   it ends (`cleanup`), leaving that position flat;
//! - every ExecID it sends starts with `CHK-<run id>-`, which is how it finds its trades again
//!   in the views, the books, the archive and the dead-letter topic;
//! - it measures from outside: a fill counts as in the views when the HTTP view shows it.

mod probes;
mod report;
mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use eod_sources::kafka::{KafkaConnection, Topics};

use crate::books::BooksTarget;
pub use report::report_html;
pub use traffic::{LatencySample, CHECK_BOOK};

/// One scenario of `eod check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every dependency reachable and every eod process ready.
    Health,
    /// The target rate for the drive's length; most of it in the views within a second.
    Throughput,
    /// Fill-to-view P95 at the target rate, measured at the HTTP view.
    Latency,
    /// Ten times the target rate: most of it absorbed, nothing lost.
    Burst,
    /// Every check trade in the views and in the books exactly once, and in the archive.
    Integrity,
    /// One message of each bad class in the dead-letter topic with its reason.
    DeadLetters,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Health,
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Burst,
        Scenario::Integrity,
        Scenario::DeadLetters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Burst => "burst",
            Scenario::Integrity => "integrity",
            Scenario::DeadLetters => "dead-letters",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {text:?}: one of {}", names.join(", "))
            })
    }
}

/// What a check talks to and how hard it pushes.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The gateway's FIX session port, `HOST:PORT`.
    pub gateway: String,
    /// Our SenderCompID: the gateway must list it as a counterparty.
    pub comp_id: String,
    /// The gateway's CompID.
    pub gateway_comp_id: String,
    /// HTTP addresses (`HOST:PORT`) of the eod processes serving views.
    pub views: Vec<String>,
    pub kafka: KafkaConnection,
    pub topics: Topics,
    pub redis: Option<String>,
    pub books: Option<BooksTarget>,
    /// The gateway's archive (`--archive-to`): a directory, `file://` or `s3://`.
    pub archive: Option<String>,
    /// Messages per second in throughput and latency; the burst is `burst_multiplier` times it.
    pub rate: u64,
    pub burst_multiplier: u64,
    /// How long each drive sends.
    pub drive: Duration,
    /// How long the views, books and archive may take to show everything once sending stopped.
    pub settle: Duration,
    pub latency_p95_limit: Duration,
    /// Fractions that pass: of the sent fills in the views within a second (throughput), and
    /// of the burst rate absorbed (burst).
    pub throughput_pass: f64,
    pub burst_pass: f64,
    /// Where the JSON result and the HTML report go (`<dir>/check.json`, `<dir>/check.html`).
    pub report_dir: Option<PathBuf>,
    /// The bearer token the views processes want, if they want one.
    pub views_token: Option<String>,
}

/// One scenario's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub scenario: Scenario,
    pub passed: bool,
    /// One line: what was measured against what was required.
    pub summary: String,
    pub measurements: Value,
}

/// Everything a check found, as written to `check.json`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub run_id: String,
    pub started_at: String,
    pub passed: bool,
    pub target_rate: u64,
    pub burst_multiplier: u64,
    pub verdicts: Vec<Verdict>,
    /// Fill-to-view latency of every sampled fill of the latency drive, by send time.
    pub latency: Vec<LatencySample>,
    /// Per second of each drive: sent and shown in the views.
    pub throughput: BTreeMap<String, Vec<traffic::SecondCounts>>,
}

impl CheckResult {
    pub fn failed(&self) -> Vec<&'static str> {
        self.verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| v.scenario.name())
            .collect()
    }
}

/// Runs `scenarios` (all when empty) in the order of [`Scenario::ALL`], then busts what the
/// check traded. A scenario that cannot run (say, the gateway is down) fails with the reason;
/// the others still run.
pub fn run_check(options: &CheckOptions, scenarios: &[Scenario]) -> CheckResult {
    let mut wanted: Vec<Scenario> = if scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        scenarios.to_vec()
    };
    wanted.sort();
    wanted.dedup();
    let run_id = format!("{:x}", eod_fix::time::now_utc_nanos() / 1_000_000);
    let started_at = eod_fix::time::format_utc_timestamp(eod_fix::time::now_utc_nanos());
    let mut result = CheckResult {
        run_id: run_id.clone(),
        started_at,
        passed: true,
        target_rate: options.rate,
        burst_multiplier: options.burst_multiplier,
        verdicts: Vec::new(),
        latency: Vec::new(),
        throughput: BTreeMap::new(),
    };
    let needs_traffic = wanted.iter().any(|s| *s != Scenario::Health);
    let mut traffic = None;
    if needs_traffic {
        match traffic::CheckTraffic::start(options, &run_id) {
            Ok(t) => traffic = Some(t),
            Err(e) => {
                for scenario in wanted.iter().filter(|s| **s != Scenario::Health) {
                    result.verdicts.push(Verdict {
                        scenario: *scenario,
                        passed: false,
                        summary: format!("could not start: {e}"),
                        measurements: json!({}),
                    });
                }
            }
        }
    }
    for scenario in &wanted {
        let _span = tracing::info_span!("check", scenario = scenario.name()).entered();
        let verdict = match (scenario, traffic.as_mut()) {
            (Scenario::Health, _) => probes::health(options),
            (_, None) => continue,
            (Scenario::Throughput, Some(t)) => t.throughput(options, &mut result.throughput),
            (Scenario::Latency, Some(t)) => {
                t.latency(options, &mut result.latency, &mut result.throughput)
            }
            (Scenario::Burst, Some(t)) => t.burst(options, &mut result.throughput),
            (Scenario::Integrity, Some(t)) => t.integrity(options),
            (Scenario::DeadLetters, Some(t)) => t.dead_letters(options),
        };
        tracing::info!(
            scenario = scenario.name(),
            passed = verdict.passed,
            "{}",
            verdict.summary
        );
        result.verdicts.push(verdict);
    }
    if let Some(traffic) = traffic {
        if let Err(e) = traffic.clean_up(options) {
            tracing::warn!(error = %e, "check trades not all busted");
        }
    }
    result.verdicts.sort_by_key(|v| v.scenario);
    result.passed = result.verdicts.iter().all(|v| v.passed);
    result
}

/// Tells every `--views` process the verdicts (`POST /v1/check`), so that its dashboard shows
/// the last check; a process that cannot be told is reported, not fatal.
pub fn report_to_views(
    options: &CheckOptions,
    result: &CheckResult,
) -> Vec<(String, Result<(), String>)> {
    let body = json!({
        "run_id": result.run_id,
        "started_at": result.started_at,
        "passed": result.passed,
        "verdicts": result.verdicts.iter().map(|v| json!({
            "scenario": v.scenario.name(),
            "passed": v.passed,
            "summary": v.summary,
        })).collect::<Vec<_>>(),
    });
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => return vec![("client".into(), Err(e.to_string()))],
    };
    options
        .views
        .iter()
        .map(|addr| {
            let mut request = client.post(format!("http://{addr}/v1/check")).json(&body);
            if let Some(token) = &options.views_token {
                request = request.bearer_auth(token);
            }
            let outcome = request
                .send()
                .and_then(|r| r.error_for_status())
                .map(drop)
                .map_err(|e| e.to_string());
            (addr.clone(), outcome)
        })
        .collect()
}

/// Why a check could not do something.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Gateway(#[from] eod_gateway::GatewayError),
    #[error(transparent)]
    Kafka(#[from] eod_sources::kafka::KafkaClientError),
    #[error("{0}")]
    Other(String),
}

/// Runs one future of the object store's async API to its end on a runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, CheckError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CheckError::Other(e.to_string()))?;
    Ok(runtime.block_on(future))
}
