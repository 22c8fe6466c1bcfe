//! The check's own trades: a FIX session to the gateway, paced drives, what the HTTP view
//! shows while they run, and the read-back of the books, the archive and the dead letters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use serde::Serialize;
use serde_json::json;

use eod_fix::initiator::InitiatorSettings;
use eod_fix::time::{format_utc_timestamp, now_utc_nanos};
use eod_fix::{FixEncoder, Framed};
use eod_gateway::{InitiatorLink, InitiatorOptions};
use eod_proto::DeadLetterReason;
use eod_sources::archive::Archive;
use eod_sources::kafka::{assigned_consumer_at, end_offsets, metadata_consumer, partition_count};

use super::{block_on, CheckError, CheckOptions, Scenario, Verdict};

/// The trader, account and symbol of every check trade: no real position or mark moves.
pub const CHECK_BOOK: &str = "EODCHECK";

/// How often the view is read while a drive runs: the latency's resolution.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Latency samples kept for the report (every n-th fill of the latency drive).
const LATENCY_SAMPLES: usize = 2_000;

/// One fill of the latency drive: when it was sent (ms from the drive's start) and how long it
/// took to show in the view.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LatencySample {
    pub sent_ms: f64,
    pub latency_ms: f64,
}

/// One second of a drive.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SecondCounts {
    pub second: u64,
    pub sent: u64,
    pub shown: u64,
}

/// What one drive did: when each fill went out and what the view showed, as counts since the
/// drive started.
struct Drive {
    started: Instant,
    sent_at: Vec<Instant>,
    stopped_sending: Instant,
    observed: Vec<(Instant, u64)>,
}

impl Drive {
    fn sent(&self) -> u64 {
        self.sent_at.len() as u64
    }

    fn shown_by(&self, at: Instant) -> u64 {
        self.observed
            .iter()
            .take_while(|(t, _)| *t <= at)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    fn shown(&self) -> u64 {
        self.observed.iter().map(|(_, n)| *n).max().unwrap_or(0)
    }

    fn send_rate(&self) -> f64 {
        let seconds = (self.stopped_sending - self.started)
            .as_secs_f64()
            .max(1e-3);
        self.sent() as f64 / seconds
    }

    /// Each fill's time from send to the first view that shows it (fills show in order:
    /// the view counts them).
    fn latencies(&self) -> Vec<Duration> {
        let mut latencies = Vec::with_capacity(self.sent_at.len());
        let mut observation = self.observed.iter().peekable();
        for (index, sent) in self.sent_at.iter().enumerate() {
            let needed = index as u64 + 1;
            while observation.peek().is_some_and(|(_, n)| *n < needed) {
                observation.next();
            }
            match observation.peek() {
                Some((at, _)) => latencies.push(at.saturating_duration_since(*sent)),
                None => break,
            }
        }
        latencies
    }

    /// The largest and the 99th-percentile gap between two reads of the view: a latency
    /// cannot be measured finer than the reads come.
    fn read_gaps(&self) -> (Duration, Duration) {
        let mut gaps: Vec<Duration> = self
            .observed
            .windows(2)
            .map(|pair| pair[1].0 - pair[0].0)
            .collect();
        gaps.sort();
        let p99 = gaps
            .get((gaps.len() * 99 / 100).min(gaps.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        (gaps.last().copied().unwrap_or_default(), p99)
    }

    fn per_second(&self) -> Vec<SecondCounts> {
        // Whole seconds only: a last partial one would read as a drop in the rate.
        let seconds = (self.stopped_sending - self.started).as_secs().max(1);
        (0..seconds)
            .map(|second| {
                let from = self.started + Duration::from_secs(second);
                let to = from + Duration::from_secs(1);
                let sent = self
                    .sent_at
                    .iter()
                    .filter(|t| **t >= from && **t < to)
                    .count() as u64;
                SecondCounts {
                    second,
                    sent,
                    shown: self.shown_by(to).saturating_sub(self.shown_by(from)),
                }
            })
            .collect()
    }
}

pub(super) struct CheckTraffic {
    link: InitiatorLink,
    run_id: String,
    /// ExecIDs of the fills sent, in order.
    fills: Vec<String>,
    http: reqwest::blocking::Client,
    dead_letter_starts: Vec<(String, i32, i64)>,
    archive_before: BTreeSet<String>,
}

fn trades_shown(http: &reqwest::blocking::Client, addr: &str) -> Result<u64, String> {
    let url = format!("http://{addr}/v1/positions?trader={CHECK_BOOK}&symbol={CHECK_BOOK}");
    let body: serde_json::Value = http
        .get(&url)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(body["positions"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["trades"].as_u64()).sum())
        .unwrap_or(0))
}

impl CheckTraffic {
    /// Logs on to the gateway and notes where the dead letters and the archive stand.
    pub(super) fn start(options: &CheckOptions, run_id: &str) -> Result<CheckTraffic, CheckError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &options.views_token {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CheckError::Other("the auth token is not a header value".into()))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .default_headers(headers)
            .build()
            .map_err(|e| CheckError::Other(e.to_string()))?;
        let topic = &options.topics.dead_letters;
        let partitions = partition_count(&options.kafka, topic, Duration::from_secs(10))?;
        let assignments: Vec<(String, i32)> = (0..partitions).map(|p| (topic.clone(), p)).collect();
        let ends = end_offsets(
            &metadata_consumer(&options.kafka)?,
            &assignments,
            Duration::from_secs(10),
        )?;
        let dead_letter_starts = assignments
            .into_iter()
            .zip(ends)
            .map(|((topic, partition), end)| (topic, partition, end))
            .collect();
        let archive_before = match &options.archive {
            Some(location) => archive_keys(location)?,
            None => BTreeSet::new(),
        };
        let link = InitiatorLink::connect(
            &options.gateway,
            InitiatorOptions {
                settings: InitiatorSettings {
                    begin_string: "FIX.4.4".into(),
                    comp_id: options.comp_id.clone(),
                    counterparty: options.gateway_comp_id.clone(),
                    heartbeat: Duration::from_secs(30),
                },
                reconnect_for: Duration::from_secs(10),
            },
        )?;
        Ok(CheckTraffic {
            link,
            run_id: run_id.to_owned(),
            fills: Vec::new(),
            http,
            dead_letter_starts,
            archive_before,
        })
    }

    fn fill_prefix(&self) -> String {
        format!("CHK-{}-F", self.run_id)
    }

    fn send_fill(&mut self) -> Result<(), CheckError> {
        let n = self.fills.len();
        let exec_id = format!("{}{n}", self.fill_prefix());
        let now = format_utc_timestamp(now_utc_nanos());
        let side = if n.is_multiple_of(2) { "1" } else { "2" };
        let body: Vec<(u32, String)> = [
            (150, "F"),
            (37, &format!("CHK-{}-O{n}", self.run_id)),
            (17, &exec_id),
            (39, "2"),
            (55, CHECK_BOOK),
            (54, side),
            (32, "1"),
            (31, "100"),
            (60, &now),
            (1, CHECK_BOOK),
            (453, "1"),
            (448, CHECK_BOOK),
            (447, "D"),
            (452, "12"),
        ]
        .into_iter()
        .map(|(tag, value)| (tag, value.to_owned()))
        .collect();
        self.link.send_message("8", body)?;
        self.fills.push(exec_id);
        Ok(())
    }

    /// Sends fills at `rate` for `length` while a thread reads the first view every
    /// [`POLL_EVERY`]; then waits up to the settle time for the view to show them all.
    fn drive(
        &mut self,
        options: &CheckOptions,
        rate: u64,
        length: Duration,
    ) -> Result<Drive, CheckError> {
        let addr = options
            .views
            .first()
            .ok_or_else(|| CheckError::Other("no --views address to measure at".into()))?
            .clone();
        let base = trades_shown(&self.http, &addr).map_err(CheckError::Other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let observed = Arc::new(Mutex::new(Vec::new()));
        let poller = {
            let (stop, observed, http) = (stop.clone(), observed.clone(), self.http.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(count) = trades_shown(&http, &addr) {
                        let at = Instant::now();
                        if let Ok(mut observed) = observed.lock() {
                            observed.push((at, count.saturating_sub(base)));
                        }
                    }
                    std::thread::sleep(POLL_EVERY);
                }
            })
        };
        let started = Instant::now();
        let mut sent_at = Vec::new();
        let total = (rate as f64 * length.as_secs_f64()) as u64;
        // The drive ends on time whether or not the gateway took everything: a slow gateway
        // shows as a low send rate, not as a longer check.
        while (sent_at.len() as u64) < total && started.elapsed() < length {
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while (sent_at.len() as u64) < due && started.elapsed() < length {
                self.send_fill()?;
                sent_at.push(Instant::now());
            }
            self.link.flush()?;
            self.link
                .serve_until(Instant::now() + Duration::from_millis(1))?;
        }
        let stopped_sending = Instant::now();
        let deadline = stopped_sending + options.settle;
        let sent = sent_at.len() as u64;
        loop {
            let shown = observed
                .lock()
                .map(|o| o.iter().map(|(_, n)| *n).max().unwrap_or(0))
                .unwrap_or(0);
            if shown >= sent || Instant::now() >= deadline {
                break;
            }
            self.link.serve_until(Instant::now() + POLL_EVERY)?;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        let observed = std::mem::take(
            &mut *observed
                .lock()
                .map_err(|_| CheckError::Other("the view poller panicked".into()))?,
        );
        Ok(Drive {
            started,
            sent_at,
            stopped_sending,
            observed,
        })
    }

    pub(super) fn throughput(
        &mut self,
        options: &CheckOptions,
        series: &mut BTreeMap<String, Vec<SecondCounts>>,
    ) -> Verdict {
        let drive = match self.drive(options, options.rate, options.drive) {
            Ok(drive) => drive,
            Err(e) => return failed(Scenario::Throughput, e),
        };
        series.insert("throughput".into(), drive.per_second());
        let within = drive.shown_by(drive.stopped_sending + Duration::from_secs(1));
        let fraction = within as f64 / drive.sent().max(1) as f64;
        Verdict {
            scenario: Scenario::Throughput,
            passed: fraction >= options.throughput_pass && drive.sent() > 0,
            summary: format!(
                "{} of {} fills in the views within 1 s of the end ({:.1}%, need {:.0}%); sent at {:.0}/s for a target of {}/s",
                within,
                drive.sent(),
                fraction * 100.0,
                options.throughput_pass * 100.0,
                drive.send_rate(),
                options.rate
            ),
            measurements: json!({
                "sent": drive.sent(),
                "shown_within_1s": within,
                "shown": drive.shown(),
                "send_rate": drive.send_rate(),
                "target_rate": options.rate,
            }),
        }
    }

    pub(super) fn latency(
        &mut self,
        options: &CheckOptions,
        samples: &mut Vec<LatencySample>,
        series: &mut BTreeMap<String, Vec<SecondCounts>>,
    ) -> Verdict {
        let drive = match self.drive(options, options.rate, options.drive) {
            Ok(drive) => drive,
            Err(e) => return failed(Scenario::Latency, e),
        };
        series.insert("latency".into(), drive.per_second());
        let latencies = drive.latencies();
        let step = (latencies.len() / LATENCY_SAMPLES).max(1);
        samples.extend(latencies.iter().zip(&drive.sent_at).step_by(step).map(
            |(latency, sent)| LatencySample {
                sent_ms: (*sent - drive.started).as_secs_f64() * 1e3,
                latency_ms: latency.as_secs_f64() * 1e3,
            },
        ));
        let mut sorted = latencies.clone();
        sorted.sort();
        let quantile = |q: f64| -> Option<Duration> {
            let index = ((sorted.len() as f64 * q).ceil() as usize).checked_sub(1)?;
            sorted.get(index).copied()
        };
        let all_shown = latencies.len() as u64 == drive.sent();
        let (gap_max, gap_p99) = drive.read_gaps();
        let (p50, p95, p99) = (quantile(0.5), quantile(0.95), quantile(0.99));
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        let passed =
            all_shown && drive.sent() > 0 && p95.is_some_and(|p| p < options.latency_p95_limit);
        Verdict {
            scenario: Scenario::Latency,
            passed,
            summary: format!(
                "fill-to-view P95 {} (need < {} ms) at {:.0}/s; P50 {}, P99 {}; {} of {} fills shown",
                fmt_ms(ms(p95)),
                options.latency_p95_limit.as_millis(),
                drive.send_rate(),
                fmt_ms(ms(p50)),
                fmt_ms(ms(p99)),
                latencies.len(),
                drive.sent()
            ),
            measurements: json!({
                "p50_ms": ms(p50), "p95_ms": ms(p95), "p99_ms": ms(p99),
                "sent": drive.sent(), "shown": latencies.len(),
                "send_rate": drive.send_rate(),
                "poll_interval_ms": POLL_EVERY.as_secs_f64() * 1e3,
                "read_gap_p99_ms": gap_p99.as_secs_f64() * 1e3,
                "read_gap_max_ms": gap_max.as_secs_f64() * 1e3,
            }),
        }
    }

    pub(super) fn burst(
        &mut self,
        options: &CheckOptions,
        series: &mut BTreeMap<String, Vec<SecondCounts>>,
    ) -> Verdict {
        let burst_rate = options.rate * options.burst_multiplier;
        let drive = match self.drive(options, burst_rate, options.drive) {
            Ok(drive) => drive,
            Err(e) => return failed(Scenario::Burst, e),
        };
        series.insert("burst".into(), drive.per_second());
        let absorbed = drive.send_rate() / burst_rate as f64;
        let lost = drive.sent().saturating_sub(drive.shown());
        Verdict {
            scenario: Scenario::Burst,
            passed: absorbed >= options.burst_pass && lost == 0 && drive.sent() > 0,
            summary: format!(
                "absorbed {:.0}/s of a {burst_rate}/s burst ({:.0}%, need {:.0}%); {} of {} fills in the views after it",
                drive.send_rate(),
                absorbed * 100.0,
                options.burst_pass * 100.0,
                drive.shown(),
                drive.sent()
            ),
            measurements: json!({
                "burst_rate": burst_rate, "send_rate": drive.send_rate(),
                "sent": drive.sent(), "shown": drive.shown(), "lost": lost,
            }),
        }
    }

    /// Every fill of this check in each view and in the books exactly once, and in the archive.
    pub(super) fn integrity(&mut self, options: &CheckOptions) -> Verdict {
        if self.fills.is_empty() {
            // Run alone: a short drive gives it something to find.
            if let Err(e) = self.drive(options, options.rate.min(1_000), Duration::from_secs(1)) {
                return failed(Scenario::Integrity, e);
            }
        }
        match self.integrity_findings(options) {
            Ok((problems, measurements)) => Verdict {
                scenario: Scenario::Integrity,
                passed: problems.is_empty(),
                summary: if problems.is_empty() {
                    format!(
                        "all {} fills in every view and in the books exactly once{}",
                        self.fills.len(),
                        if options.archive.is_some() {
                            ", and in the archive"
                        } else {
                            ""
                        }
                    )
                } else {
                    problems.join("; ")
                },
                measurements,
            },
            Err(e) => failed(Scenario::Integrity, e),
        }
    }

    fn integrity_findings(
        &mut self,
        options: &CheckOptions,
    ) -> Result<(Vec<String>, serde_json::Value), CheckError> {
        self.link.flush()?;
        let expected: BTreeSet<&str> = self.fills.iter().map(String::as_str).collect();
        let deadline = Instant::now() + options.settle;
        let mut problems = Vec::new();
        let mut measurements = serde_json::Map::new();
        // The views count the check position's fills; each view must count exactly these.
        for addr in &options.views {
            let shown = loop {
                let shown = trades_shown(&self.http, addr).map_err(CheckError::Other)?;
                if shown == expected.len() as u64 || Instant::now() >= deadline {
                    break shown;
                }
                self.link
                    .serve_until(Instant::now() + Duration::from_millis(100))?;
            };
            measurements.insert(format!("views {addr}"), json!(shown));
            if shown != expected.len() as u64 {
                problems.push(format!("{addr} shows {shown} of {} fills", expected.len()));
            }
        }
        if let Some(books) = &options.books {
            let prefix = self.fill_prefix();
            let stored = loop {
                let stored = books
                    .exec_ids_starting_with(&prefix)
                    .map_err(|e| CheckError::Other(format!("books: {e:#}")))?;
                if stored.len() >= expected.len() || Instant::now() >= deadline {
                    break stored;
                }
                self.link
                    .serve_until(Instant::now() + Duration::from_millis(200))?;
            };
            let distinct: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
            let missing = expected.difference(&distinct).count();
            let twice = stored.len() - distinct.len();
            measurements.insert("books rows".into(), json!(stored.len()));
            if missing > 0 || twice > 0 || distinct.len() != expected.len() {
                problems.push(format!(
                    "books: {missing} fills missing, {twice} stored twice, {} rows",
                    stored.len()
                ));
            }
        }
        if let Some(location) = &options.archive {
            let found = loop {
                let found = self.archived_ids(location)?;
                if expected.iter().all(|id| found.contains(*id)) || Instant::now() >= deadline {
                    break found;
                }
                self.link
                    .serve_until(Instant::now() + Duration::from_millis(500))?;
            };
            let missing = expected.iter().filter(|id| !found.contains(**id)).count();
            measurements.insert("archived".into(), json!(expected.len() - missing));
            if missing > 0 {
                problems.push(format!(
                    "archive: {missing} of {} fills not in a segment uploaded since the check began",
                    expected.len()
                ));
            }
        }
        Ok((problems, serde_json::Value::Object(measurements)))
    }

    /// The check's ExecIDs in valid messages of segments uploaded since it began.
    fn archived_ids(&self, location: &str) -> Result<BTreeSet<String>, CheckError> {
        let archive = Archive::open(location).map_err(|e| CheckError::Other(e.to_string()))?;
        let prefix = format!("CHK-{}-", self.run_id);
        let before = &self.archive_before;
        block_on(async {
            let mut found = BTreeSet::new();
            let segments = archive
                .segments()
                .await
                .map_err(|e| CheckError::Other(e.to_string()))?;
            for segment in segments.iter().filter(|s| !before.contains(&s.key)) {
                let bytes = archive
                    .read(&segment.key)
                    .await
                    .map_err(|e| CheckError::Other(e.to_string()))?;
                for frame in eod_fix::frames(&bytes, eod_fix::DEFAULT_MAX_MESSAGE) {
                    if let Framed::Message { bytes, .. } = frame {
                        if let Some(id) = eod_fix::session::field(bytes, 17) {
                            if id.starts_with(prefix.as_bytes()) {
                                found.insert(String::from_utf8_lossy(id).into_owned());
                            }
                        }
                    }
                }
            }
            Ok(found)
        })?
    }

    /// One message of each bad class the gateway can meet, then the dead-letter topic read
    /// from where it stood when the check began until each is there with its reason.
    pub(super) fn dead_letters(&mut self, options: &CheckOptions) -> Verdict {
        match self.dead_letter_findings(options) {
            Ok((problems, measurements)) => Verdict {
                scenario: Scenario::DeadLetters,
                passed: problems.is_empty(),
                summary: if problems.is_empty() {
                    "checksum, body_length, garbled, missing_field and invalid_value each dead-lettered with its reason".into()
                } else {
                    problems.join("; ")
                },
                measurements,
            },
            Err(e) => failed(Scenario::DeadLetters, e),
        }
    }

    fn dead_letter_findings(
        &mut self,
        options: &CheckOptions,
    ) -> Result<(Vec<String>, serde_json::Value), CheckError> {
        let marker =
            |reason: DeadLetterReason| format!("CHK-{}-DL-{}", self.run_id, reason.label());
        let encoder = FixEncoder::new("FIX.4.4");
        let now = format_utc_timestamp(now_utc_nanos());
        let raw = |id: &str| {
            encoder.message(
                "8",
                &[
                    (49, options.comp_id.as_str()),
                    (56, options.gateway_comp_id.as_str()),
                    (34, "1"),
                    (52, &now),
                    (150, "F"),
                    (17, id),
                    (55, CHECK_BOOK),
                    (54, "1"),
                    (32, "1"),
                    (31, "100"),
                ],
            )
        };
        // Framing faults go around the session's numbering: the framer refuses them first.
        let mut checksum = raw(&marker(DeadLetterReason::Checksum));
        eod_fix::break_checksum(&mut checksum);
        let good = raw(&marker(DeadLetterReason::BodyLength));
        let text = String::from_utf8_lossy(&good).into_owned();
        let length: usize = text
            .split('\x01')
            .find_map(|f| f.strip_prefix("9="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| CheckError::Other("encoder wrote no BodyLength".into()))?;
        let body_length = text
            .replacen(
                &format!("\x019={length}\x01"),
                &format!("\x019={}\x01", length + 7),
                1,
            )
            .into_bytes();
        let garbage = format!(
            "{} GARBAGE\x01NOT\x01FIX\x01",
            marker(DeadLetterReason::Garbled)
        );
        self.link.send_raw(&checksum)?;
        self.link.send_raw(&body_length)?;
        self.link.send_raw(garbage.as_bytes())?;
        // Content faults come through the session, which rejects them.
        let fields = |id: String, side: Option<&str>| -> Vec<(u32, String)> {
            let mut body = vec![
                (150, "F".to_owned()),
                (37, format!("CHK-{}-O-DL", self.run_id)),
                (17, id),
                (39, "2".to_owned()),
                (55, CHECK_BOOK.to_owned()),
            ];
            if let Some(side) = side {
                body.push((54, side.to_owned()));
            }
            body.extend([
                (32, "1".to_owned()),
                (31, "100".to_owned()),
                (60, now.clone()),
                (1, CHECK_BOOK.to_owned()),
            ]);
            body
        };
        self.link
            .send_message("8", fields(marker(DeadLetterReason::MissingField), None))?;
        self.link.send_message(
            "8",
            fields(marker(DeadLetterReason::InvalidValue), Some("9")),
        )?;
        self.link.flush()?;

        let expected = [
            DeadLetterReason::Checksum,
            DeadLetterReason::BodyLength,
            DeadLetterReason::Garbled,
            DeadLetterReason::MissingField,
            DeadLetterReason::InvalidValue,
        ];
        let assignments: Vec<(String, i32)> = self
            .dead_letter_starts
            .iter()
            .map(|(t, p, _)| (t.clone(), *p))
            .collect();
        let starts: Vec<i64> = self.dead_letter_starts.iter().map(|(_, _, o)| *o).collect();
        let consumer = assigned_consumer_at(&options.kafka, "eod-check", &assignments, &starts)?;
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        let deadline = Instant::now() + options.settle;
        while found.len() < expected.len() && Instant::now() < deadline {
            self.link
                .serve_until(Instant::now() + Duration::from_millis(10))?;
            let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let Some(payload) = record.payload() else {
                continue;
            };
            // Framed when the deployment uses a Schema Registry: the letter follows the header.
            let Ok((_, payload)) = eod_sources::schema_registry::split(payload) else {
                continue;
            };
            let Ok(letter) = <eod_proto::DeadLetter as prost::Message>::decode(payload) else {
                continue;
            };
            let original = String::from_utf8_lossy(&letter.original);
            for reason in expected {
                if original.contains(&format!("{}\x01", marker(reason)))
                    || original.contains(&format!("{} ", marker(reason)))
                {
                    found.insert(
                        reason.label().to_owned(),
                        letter.reason().label().to_owned(),
                    );
                }
            }
        }
        consumer.unassign().ok();
        let mut problems = Vec::new();
        for reason in expected {
            match found.get(reason.label()) {
                Some(got) if got == reason.label() => {}
                Some(got) => problems.push(format!("{} dead-lettered as {got}", reason.label())),
                None => problems.push(format!("no {} dead letter", reason.label())),
            }
        }
        Ok((problems, json!(found)))
    }

    /// Busts every fill the check sent, then ends the session once the gateway has read it all.
    pub(super) fn clean_up(mut self, options: &CheckOptions) -> Result<(), CheckError> {
        let fills = std::mem::take(&mut self.fills);
        for (n, target) in fills.iter().enumerate() {
            let body = vec![
                (150, "H".to_owned()),
                (17, format!("CHK-{}-B{n}", self.run_id)),
                (19, target.clone()),
                (60, format_utc_timestamp(now_utc_nanos())),
            ];
            self.link.send_message("8", body)?;
        }
        self.link.flush()?;
        let addr = options.views.first().cloned();
        let deadline = Instant::now() + options.settle;
        if let Some(addr) = addr {
            while trades_shown(&self.http, &addr).is_ok_and(|n| n > 0) && Instant::now() < deadline
            {
                self.link
                    .serve_until(Instant::now() + Duration::from_millis(50))?;
            }
        }
        self.link.finish(options.settle)?;
        Ok(())
    }
}

fn archive_keys(location: &str) -> Result<BTreeSet<String>, CheckError> {
    let archive = Archive::open(location).map_err(|e| CheckError::Other(e.to_string()))?;
    let segments = block_on(archive.segments())?.map_err(|e| CheckError::Other(e.to_string()))?;
    Ok(segments.into_iter().map(|s| s.key).collect())
}

fn failed(scenario: Scenario, error: CheckError) -> Verdict {
    Verdict {
        scenario,
        passed: false,
        summary: format!("could not run: {error}"),
        measurements: json!({}),
    }
}

fn fmt_ms(ms: Option<f64>) -> String {
    ms.map(|ms| format!("{ms:.1} ms"))
        .unwrap_or_else(|| "n/a".into())
}
