//! Snapshots of `eod run`'s input state, so that a restart reads only the tail of Kafka.
//!
//! Contract (proven by the tests below and by `tests/kafka.rs`):
//! - A snapshot at cut time C holds, for every worker, the records it entered at dataflow times
//!   before C (trades with their archive source, prices, reference records), the outcome counts
//!   of those times, and the next offset of every partition the worker reads. Each partition is
//!   read by exactly one worker and dataflow times are global, so the union over the workers is
//!   a prefix of every partition: a consistent cut, with no coordination between workers or
//!   processes.
//! - The views are a function of the set of input records (see `eod_dataflow::graph`), so
//!   entering a snapshot's records and reading on from its offsets gives exactly the views of a
//!   replay from offset 0, whatever the number of workers or processes before and after.
//! - Objects are immutable and checksummed (CRC-32). A worker's segment holds its records since
//!   its previous part; a part names the worker's whole chain of segments with their lengths and
//!   checksums, and is written after them. A snapshot is complete when the parts of all its
//!   workers exist and everything they name reads back intact. A restart takes the newest
//!   complete snapshot, falls back to older ones when one is torn or corrupt, and to offset 0
//!   when none is left.
//!
//! What a snapshot is not: the operators' state. The restore enters the records again and the
//! dataflow rebuilds its arrangements from them (as Materialize rehydrates from persisted
//! inputs); it skips the broker and the decoding, not the computation (bench/RESULTS.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bincode::Options as _;
use bytes::Bytes;
use eod_dataflow::{Counter, Diff, PriceUpdate, Text, Time, TradeEvent};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};

/// Bumped when the layout of parts or segments changes; other formats are not restored.
pub const FORMAT: u32 = 1;
const PART_MAGIC: &str = "eod-snapshot-part";
/// The cut of the parts written when a run ends: after every cut of its generation.
pub const FINAL_CUT: Time = 9_999_999_999_999_999;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot store: {0}")]
    Store(#[from] object_store::Error),
    #[error("snapshot object {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("snapshot runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

fn invalid(key: &str, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// One record a worker entered, as kept in a segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LogRecord {
    Trade {
        event: TradeEvent,
        source: Option<SourceRef>,
    },
    Price(PriceUpdate),
    /// A reference-topic record as read (key and CSV value; an empty value withdraws the key).
    Reference {
        key: String,
        payload: Vec<u8>,
    },
}

/// Where a fill or correction was archived, and when the gateway received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub archive: Archived,
    pub receive_time: i64,
}

/// The archive key is written only when it differs from the previous record's in the same
/// epoch: consecutive trades share their archive segment, and the key was most of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Archived {
    Not,
    /// In the object the previous record names.
    Same {
        offset: u64,
    },
    In {
        key: Text,
        offset: u64,
    },
}

/// Varint integers: a segment holds the day's trades once more.
fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub key: String,
    pub bytes: u64,
    pub crc32: u32,
    pub records: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub next: i64,
}

/// One worker's share of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub format: u32,
    pub generation: u64,
    pub cut: Time,
    pub worker: usize,
    pub peers: usize,
    /// Every record this worker's chain holds, oldest segment first.
    pub segments: Vec<SegmentRef>,
    pub offsets: Vec<PartitionOffset>,
    /// Outcome counts of the records before the cut (read, dead letters by reason, ...).
    pub counts: Vec<(Counter, Diff)>,
}

fn part_key(generation: u64, cut: Time, worker: usize, peers: usize) -> String {
    format!("parts/g{generation:08}-c{cut:016}-w{worker:05}-of{peers:05}.part")
}

fn segment_key(generation: u64, worker: usize, cut: Time) -> String {
    format!("segments/g{generation:08}-w{worker:05}-c{cut:016}.seg")
}

/// (generation, cut, worker, peers) from a part's key.
fn parse_part_key(key: &str) -> Option<(u64, Time, usize, usize)> {
    let name = key.strip_prefix("parts/")?.strip_suffix(".part")?;
    let mut fields = name.split('-');
    let mut field = |prefix: &str| fields.next()?.strip_prefix(prefix).map(str::to_owned);
    let generation = field("g")?.parse().ok()?;
    let cut = field("c")?.parse().ok()?;
    let worker = field("w")?.parse().ok()?;
    let peers = field("of")?.parse().ok()?;
    Some((generation, cut, worker, peers))
}

fn encode_part(part: &Part) -> Vec<u8> {
    let body = serde_json::to_vec(part).unwrap_or_default();
    let mut bytes = format!("{PART_MAGIC} {:08x}\n", crc32fast::hash(&body)).into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

fn decode_part(key: &str, bytes: &[u8]) -> Result<Part, SnapshotError> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| invalid(key, "no header line"))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| invalid(key, "header"))?;
    let crc = header
        .strip_prefix(PART_MAGIC)
        .and_then(|rest| u32::from_str_radix(rest.trim(), 16).ok())
        .ok_or_else(|| invalid(key, format!("header {header:?}")))?;
    let body = &bytes[newline + 1..];
    if crc32fast::hash(body) != crc {
        return Err(invalid(key, "checksum mismatch (torn or corrupt)"));
    }
    let part: Part =
        serde_json::from_slice(body).map_err(|e| invalid(key, format!("body: {e}")))?;
    if part.format != FORMAT {
        return Err(invalid(
            key,
            format!("format {} (this is {FORMAT})", part.format),
        ));
    }
    Ok(part)
}

/// What one worker has entered since its last part, and where each closed epoch ended.
pub struct SnapshotLog {
    generation: u64,
    worker: usize,
    peers: usize,
    /// Cuts fall on multiples of this many epochs.
    period: Time,
    buffer: Vec<u8>,
    records: u64,
    /// The archive key of the last record written in the open epoch.
    last_archive_key: Option<Text>,
    /// The state after the last closed epoch: a cut uses it when the next one passes a cut.
    last_closed: Boundary,
    last_cut: Time,
    chain: Vec<SegmentRef>,
}

#[derive(Clone, Debug)]
struct Boundary {
    /// The closed epoch it follows (`None`: nothing closed yet).
    epoch: Option<Time>,
    buffer_len: usize,
    records: u64,
    offsets: Vec<PartitionOffset>,
    counts: Vec<(Counter, Diff)>,
}

/// Objects to write, in order: the segment (if any records), then the part naming it, once
/// the epoch `through` (the last the part holds) is durable.
#[derive(Debug)]
pub struct PartJob {
    pub segment: Option<(String, Vec<u8>)>,
    pub part_key: String,
    pub part: Part,
    pub through: Option<Time>,
}

impl SnapshotLog {
    /// `chain`, `offsets` and `counts` are what this worker restored (empty on a fresh start).
    pub fn new(
        generation: u64,
        worker: usize,
        peers: usize,
        period: Time,
        chain: Vec<SegmentRef>,
        offsets: Vec<PartitionOffset>,
        counts: Vec<(Counter, Diff)>,
    ) -> SnapshotLog {
        SnapshotLog {
            generation,
            worker,
            peers,
            period: period.max(1),
            buffer: Vec::new(),
            records: 0,
            last_archive_key: None,
            last_closed: Boundary {
                epoch: None,
                buffer_len: 0,
                records: 0,
                offsets,
                counts,
            },
            last_cut: 0,
            chain,
        }
    }

    fn push(&mut self, record: &LogRecord) {
        // Writing to a Vec cannot fail, and every record type serializes.
        let _ = codec().serialize_into(&mut self.buffer, record);
        self.records += 1;
    }

    pub fn trade(&mut self, event: &TradeEvent, archive: Option<(&str, u64)>, receive_time: i64) {
        // Only an execution has a books row to source.
        let source = event.execution_id().map(|_| {
            let archive = match archive {
                None => Archived::Not,
                Some((key, offset)) if self.last_archive_key.as_deref() == Some(key) => {
                    Archived::Same { offset }
                }
                Some((key, offset)) => {
                    self.last_archive_key = Some(key.into());
                    Archived::In {
                        key: key.into(),
                        offset,
                    }
                }
            };
            SourceRef {
                archive,
                receive_time,
            }
        });
        let record = LogRecord::Trade {
            event: event.clone(),
            source,
        };
        self.push(&record);
    }

    pub fn price(&mut self, price: &PriceUpdate) {
        self.push(&LogRecord::Price(price.clone()));
    }

    pub fn reference(&mut self, key: &str, payload: &[u8]) {
        self.push(&LogRecord::Reference {
            key: key.to_owned(),
            payload: payload.to_vec(),
        });
    }

    /// Whether closing `epoch` passes a cut (the last close of a run always does).
    pub fn cut_due(&self, epoch: Time, last: bool) -> bool {
        last || (self.last_closed.epoch.is_some()
            && epoch / self.period * self.period > self.last_cut)
    }

    /// `epoch` closed with the reader at `offsets` and these cumulative `counts`. Returns the
    /// part to write when `epoch` is the first closed epoch at or past a cut (unless `may_cut`
    /// is false: then the cut waits for a later close).
    pub fn closed(
        &mut self,
        epoch: Time,
        offsets: Vec<PartitionOffset>,
        counts: Vec<(Counter, Diff)>,
        may_cut: bool,
    ) -> Option<PartJob> {
        let cut = epoch / self.period * self.period;
        if self.last_closed.epoch.is_none() {
            // A run's first cut is at the first multiple of the period after its first close:
            // one at the first close would hold nothing the restore did not (clock epochs are
            // numbered by the Unix clock, so the multiple before it is long past).
            self.last_cut = self.last_cut.max(cut);
        }
        let job = (may_cut && cut > self.last_cut).then(|| self.cut(cut));
        // A segment must decode alone: the first record after a boundary names its archive.
        self.last_archive_key = None;
        self.last_closed = Boundary {
            epoch: Some(epoch),
            buffer_len: self.buffer.len(),
            records: self.records,
            offsets,
            counts,
        };
        job
    }

    /// The last part of a run, with everything entered, at [`FINAL_CUT`]: every worker ends
    /// its input there, so their final parts form a snapshot together.
    pub fn finish(
        &mut self,
        last_epoch: Time,
        offsets: Vec<PartitionOffset>,
        counts: Vec<(Counter, Diff)>,
    ) -> PartJob {
        self.last_closed = Boundary {
            epoch: Some(last_epoch),
            buffer_len: self.buffer.len(),
            records: self.records,
            offsets,
            counts,
        };
        self.cut(FINAL_CUT)
    }

    /// Everything up to the last closed epoch before `cut` (all of it is before `cut`: the
    /// epoch just closed is at or past it).
    fn cut(&mut self, cut: Time) -> PartJob {
        let boundary = self.last_closed.clone();
        let segment = (boundary.buffer_len > 0).then(|| {
            let bytes: Vec<u8> = self.buffer.drain(..boundary.buffer_len).collect();
            let key = segment_key(self.generation, self.worker, cut);
            self.chain.push(SegmentRef {
                key: key.clone(),
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(&bytes),
                records: boundary.records,
            });
            (key, bytes)
        });
        self.records -= boundary.records;
        self.last_cut = cut;
        let part = Part {
            format: FORMAT,
            generation: self.generation,
            cut,
            worker: self.worker,
            peers: self.peers,
            segments: self.chain.clone(),
            offsets: boundary.offsets,
            counts: boundary.counts,
        };
        PartJob {
            segment,
            part_key: part_key(self.generation, cut, self.worker, self.peers),
            part,
            through: boundary.epoch,
        }
    }
}

/// Decodes the records of one segment.
pub struct SegmentReader {
    bytes: Bytes,
    position: usize,
    last_archive_key: Text,
}

impl SegmentReader {
    pub fn new(bytes: Bytes) -> SegmentReader {
        SegmentReader {
            bytes,
            position: 0,
            last_archive_key: Text::default(),
        }
    }

    /// The next record, with `Archived::Same` resolved to the key it means; `None` at the end.
    pub fn next_record(&mut self) -> Option<Result<LogRecord, String>> {
        let mut rest = self.bytes.get(self.position..).filter(|r| !r.is_empty())?;
        let before = rest.len();
        let mut record: LogRecord = match codec().deserialize_from(&mut rest) {
            Ok(record) => record,
            Err(e) => return Some(Err(e.to_string())),
        };
        self.position += before - rest.len();
        if let LogRecord::Trade {
            source: Some(source),
            ..
        } = &mut record
        {
            match &source.archive {
                Archived::In { key, .. } => self.last_archive_key = key.clone(),
                Archived::Same { offset } => {
                    source.archive = Archived::In {
                        key: self.last_archive_key.clone(),
                        offset: *offset,
                    }
                }
                Archived::Not => {}
            }
        }
        Some(Ok(record))
    }
}

/// Decodes the records of a worker's chain of segments, in order.
pub struct ChainReader {
    segments: std::collections::VecDeque<SegmentReader>,
}

impl ChainReader {
    pub fn new(segments: impl IntoIterator<Item = Bytes>) -> ChainReader {
        ChainReader {
            segments: segments.into_iter().map(SegmentReader::new).collect(),
        }
    }

    /// The next record of the chain; `None` after the last segment's end.
    pub fn next_record(&mut self) -> Option<Result<LogRecord, String>> {
        loop {
            let record = self.segments.front_mut()?.next_record();
            if record.is_some() {
                return record;
            }
            self.segments.pop_front();
        }
    }
}

#[derive(Clone)]
pub struct SnapshotMetrics {
    pub parts_written: IntCounter,
    pub bytes_written: IntCounter,
    pub write_failures: IntCounter,
    /// Bytes handed to the writer and not yet stored (grows while the store is down).
    pub pending_bytes: IntGauge,
    /// The cut of the last part this process stored.
    pub last_cut: IntGauge,
    /// Snapshots found torn, corrupt or incomplete at a restore and skipped.
    pub rejected: IntCounter,
    /// Records the last restore entered.
    pub restored_records: IntGauge,
    /// A restore's records the books have still to take in (they follow the views).
    pub books_backlog: IntGauge,
}

impl SnapshotMetrics {
    pub fn register(registry: &Registry) -> Result<SnapshotMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        Ok(SnapshotMetrics {
            parts_written: counter(
                "eod_snapshot_parts_written_total",
                "Snapshot parts stored (one per worker per cut)",
            )?,
            bytes_written: counter(
                "eod_snapshot_bytes_written_total",
                "Bytes of snapshot segments and parts stored",
            )?,
            write_failures: counter(
                "eod_snapshot_write_failures_total",
                "Failed attempts to store a snapshot object (retried)",
            )?,
            pending_bytes: gauge(
                "eod_snapshot_pending_bytes",
                "Snapshot bytes waiting for the store",
            )?,
            last_cut: gauge(
                "eod_snapshot_last_cut",
                "Dataflow time of the last snapshot part stored",
            )?,
            rejected: counter(
                "eod_snapshot_rejected_total",
                "Snapshots skipped at a restore: torn, corrupt or incomplete",
            )?,
            restored_records: gauge(
                "eod_snapshot_restored_records",
                "Records entered from the snapshot at the last start",
            )?,
            books_backlog: gauge(
                "eod_snapshot_books_backlog_records",
                "Snapshot records the books have still to take in after a restore",
            )?,
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, SnapshotError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// An object for the writer.
#[derive(Debug)]
pub enum WriterJob {
    Segment { key: String, bytes: Vec<u8> },
    Part { key: String, part: Part },
}

/// Stores segments and parts in the order the workers hand them over, on a thread of its own:
/// a worker never waits for the store. A worker hands a part over only after the segments it
/// names. A failed write is retried until it succeeds (later objects wait behind it: a part
/// must never name a segment that is missing) or the writer is abandoned at the end of a run.
pub struct SnapshotWriter {
    sender: mpsc::Sender<WriterJob>,
}

impl SnapshotWriter {
    pub fn start(
        store: Arc<dyn ObjectStore>,
        metrics: SnapshotMetrics,
        abandon: Arc<AtomicBool>,
    ) -> Result<(SnapshotWriter, std::thread::JoinHandle<()>), SnapshotError> {
        let (sender, receiver) = mpsc::channel::<WriterJob>();
        let runtime = runtime()?;
        let thread = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let mut failed = false;
                for job in receiver {
                    if failed {
                        // Abandoned: what follows would name what is missing.
                        continue;
                    }
                    let (key, bytes, segment, cut) = match job {
                        WriterJob::Segment { key, bytes } => (key, bytes, true, None),
                        WriterJob::Part { key, part } => {
                            let cut = part.cut;
                            (key, encode_part(&part), false, Some(cut))
                        }
                    };
                    let span = tracing::info_span!("snapshot_write", %key);
                    let _entered = span.enter();
                    let size = bytes.len() as i64;
                    if !put_retrying(&runtime, &*store, &key, bytes, &metrics, &abandon) {
                        failed = true;
                        continue;
                    }
                    metrics.bytes_written.inc_by(size as u64);
                    if segment {
                        metrics.pending_bytes.sub(size);
                    }
                    if let Some(cut) = cut {
                        metrics.parts_written.inc();
                        metrics.last_cut.set(i64::try_from(cut).unwrap_or(i64::MAX));
                        tracing::debug!(cut, "snapshot part stored");
                    }
                }
            })?;
        Ok((SnapshotWriter { sender }, thread))
    }

    /// A handle for one worker.
    pub fn handle(&self) -> mpsc::Sender<WriterJob> {
        self.sender.clone()
    }

    /// Hands a job to the writer; a segment counts as pending until stored.
    pub fn submit(sender: &mpsc::Sender<WriterJob>, job: WriterJob, metrics: &SnapshotMetrics) {
        let size = match &job {
            WriterJob::Segment { bytes, .. } => bytes.len() as i64,
            WriterJob::Part { .. } => 0,
        };
        metrics.pending_bytes.add(size);
        if sender.send(job).is_err() {
            // The writer is gone only after the run ended.
            metrics.pending_bytes.sub(size);
        }
    }
}

fn put_retrying(
    runtime: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    key: &str,
    bytes: Vec<u8>,
    metrics: &SnapshotMetrics,
    stop: &AtomicBool,
) -> bool {
    let path = StorePath::from(key);
    let payload = PutPayload::from(Bytes::from(bytes));
    let mut backoff = Duration::from_millis(200);
    loop {
        match runtime.block_on(store.put(&path, payload.clone())) {
            Ok(_) => return true,
            Err(e) => {
                metrics.write_failures.inc();
                tracing::warn!(%key, error = %e, "snapshot write failed; retrying");
                if stop.load(Ordering::Acquire) {
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The newest complete snapshot, as read back and checked.
#[derive(Debug)]
pub struct Restored {
    pub generation: u64,
    pub cut: Time,
    pub parts: Vec<Part>,
    /// Handed out by [`Restored::share`]: once every worker has its share and has entered
    /// it, the bytes are gone (held here, they were 300 MB for the whole of a 4.6M-trade run).
    segments: std::sync::Mutex<HashMap<String, Bytes>>,
}

/// What one worker of the restarted run takes over.
#[derive(Debug, Default)]
pub struct WorkerRestore {
    pub chain: Vec<SegmentRef>,
    pub segments: Vec<Bytes>,
    pub counts: Vec<(Counter, Diff)>,
    pub records: u64,
}

impl Restored {
    /// Parts of the old worker `j` go to the new worker `j mod peers`; each worker calls this
    /// once (its segments are handed over, not copied).
    pub fn share(&self, worker: usize, peers: usize) -> WorkerRestore {
        let mut share = WorkerRestore::default();
        let mut counts: BTreeMap<Counter, Diff> = BTreeMap::new();
        for part in self
            .parts
            .iter()
            .filter(|p| p.worker % peers.max(1) == worker)
        {
            for segment in &part.segments {
                let taken = self
                    .segments
                    .lock()
                    .ok()
                    .and_then(|mut segments| segments.remove(&segment.key));
                if let Some(bytes) = taken {
                    share.segments.push(bytes);
                }
                share.records += segment.records;
                share.chain.push(segment.clone());
            }
            for (counter, n) in &part.counts {
                *counts.entry(counter.clone()).or_default() += n;
            }
        }
        share.counts = counts.into_iter().collect();
        share
    }

    /// The next offset of every partition the snapshot read.
    pub fn offsets(&self) -> HashMap<(String, i32), i64> {
        self.parts
            .iter()
            .flat_map(|p| &p.offsets)
            .map(|o| ((o.topic.clone(), o.partition), o.next))
            .collect()
    }

    pub fn records(&self) -> u64 {
        self.parts
            .iter()
            .flat_map(|p| &p.segments)
            .map(|s| s.records)
            .sum()
    }
}

/// Finds, reads and checks the newest complete snapshot in `store`; `None` when there is none
/// (a fresh day, or every snapshot found damaged: each is logged and counted).
pub fn load_newest(
    store: &dyn ObjectStore,
    metrics: &SnapshotMetrics,
) -> Result<Option<Restored>, SnapshotError> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let listed: Vec<_> = store
            .list(Some(&StorePath::from("parts")))
            .try_collect()
            .await?;
        let mut snapshots: BTreeMap<(u64, Time, usize), BTreeMap<usize, String>> = BTreeMap::new();
        for meta in listed {
            let key = meta.location.to_string();
            match parse_part_key(&key) {
                Some((generation, cut, worker, peers)) => {
                    snapshots
                        .entry((generation, cut, peers))
                        .or_default()
                        .insert(worker, key);
                }
                None => tracing::warn!(%key, "not a snapshot part; ignored"),
            }
        }
        for ((generation, cut, peers), parts) in snapshots.into_iter().rev() {
            if parts.len() != peers || parts.keys().copied().ne(0..peers) {
                tracing::info!(
                    generation,
                    cut,
                    peers,
                    found = parts.len(),
                    "incomplete snapshot skipped"
                );
                metrics.rejected.inc();
                continue;
            }
            match read_snapshot(store, generation, cut, &parts).await {
                Ok(restored) => return Ok(Some(restored)),
                Err(e) => {
                    tracing::warn!(generation, cut, error = %e, "damaged snapshot skipped");
                    metrics.rejected.inc();
                }
            }
        }
        Ok(None)
    })
}

async fn read_snapshot(
    store: &dyn ObjectStore,
    generation: u64,
    cut: Time,
    parts: &BTreeMap<usize, String>,
) -> Result<Restored, SnapshotError> {
    let mut read = Vec::new();
    for (worker, key) in parts {
        let bytes = store
            .get(&StorePath::from(key.as_str()))
            .await?
            .bytes()
            .await?;
        let part = decode_part(key, &bytes)?;
        if part.generation != generation || part.cut != cut || part.worker != *worker {
            return Err(invalid(key, "fields disagree with the key"));
        }
        read.push(part);
    }
    let mut segments = HashMap::new();
    for segment in read.iter().flat_map(|p| &p.segments) {
        let bytes = store
            .get(&StorePath::from(segment.key.as_str()))
            .await?
            .bytes()
            .await?;
        if bytes.len() as u64 != segment.bytes {
            return Err(invalid(
                &segment.key,
                format!("{} bytes, the part says {}", bytes.len(), segment.bytes),
            ));
        }
        if crc32fast::hash(&bytes) != segment.crc32 {
            return Err(invalid(&segment.key, "checksum mismatch (torn or corrupt)"));
        }
        segments.insert(segment.key.clone(), bytes);
    }
    Ok(Restored {
        generation,
        cut,
        parts: read,
        segments: std::sync::Mutex::new(segments),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_dataflow::{Bust, Fill, PriceKind};
    use object_store::memory::InMemory;

    fn fill(exec_id: &str) -> TradeEvent {
        TradeEvent::Fill(Fill {
            exec_id: exec_id.into(),
            trader: "T1".into(),
            symbol: "AAPL".into(),
            qty: 100,
            price: 18_725_000_000,
            transact_time: 1_700_000_000_000_000_000,
        })
    }

    fn offsets(next: i64) -> Vec<PartitionOffset> {
        vec![PartitionOffset {
            topic: "trades.raw".into(),
            partition: 0,
            next,
        }]
    }

    fn decode_all(bytes: Vec<u8>) -> Vec<LogRecord> {
        let mut reader = SegmentReader::new(Bytes::from(bytes));
        std::iter::from_fn(|| reader.next_record())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn store_job(store: &InMemory, job: PartJob) {
        let runtime = runtime().unwrap();
        runtime.block_on(async {
            if let Some((key, bytes)) = job.segment {
                store
                    .put(&StorePath::from(key.as_str()), bytes.into())
                    .await
                    .unwrap();
            }
            store
                .put(
                    &StorePath::from(job.part_key.as_str()),
                    encode_part(&job.part).into(),
                )
                .await
                .unwrap();
        });
    }

    /// Clock epochs are numbered by the Unix clock, so the first close of a run is far past
    /// every multiple of the period: it cuts nothing (a part then would hold only what the
    /// run restored), and the first cut comes at the next multiple.
    #[test]
    fn a_runs_first_close_is_no_cut_however_late_the_clock() {
        let mut log = SnapshotLog::new(1, 0, 1, 10, Vec::new(), offsets(0), Vec::new());
        assert!(!log.cut_due(1_000_003, false));
        assert!(log
            .closed(1_000_003, offsets(1), Vec::new(), true)
            .is_none());
        log.trade(&fill("E1"), Some(("arch/a", 5)), 11);
        assert!(log
            .closed(1_000_007, offsets(2), Vec::new(), true)
            .is_none());
        assert!(log.cut_due(1_000_012, false));
        let job = log
            .closed(1_000_012, offsets(3), Vec::new(), true)
            .expect("a cut at the first multiple after the first close");
        assert_eq!(job.part.cut, 1_000_010);
        assert_eq!(job.through, Some(1_000_007));
    }

    #[test]
    fn a_cut_holds_exactly_the_epochs_before_it_and_segments_decode_alone() {
        let mut log = SnapshotLog::new(1, 0, 1, 10, Vec::new(), offsets(0), Vec::new());
        log.trade(&fill("E1"), Some(("arch/a", 5)), 11);
        log.trade(&fill("E2"), Some(("arch/a", 9)), 12);
        assert!(log
            .closed(3, offsets(2), vec![(Counter::Fills, 2)], true)
            .is_none());
        let bust = TradeEvent::Bust(Bust {
            exec_id: "B1".into(),
            target: "E1".into(),
            transact_time: 0,
        });
        log.trade(&bust, None, 13);
        log.trade(&fill("E3"), Some(("arch/a", 20)), 14);
        let price = PriceUpdate {
            symbol: "AAPL".into(),
            kind: PriceKind::Bid,
            price: 1,
            time: 2,
        };
        log.price(&price);
        // Epoch 12 closes past the cut at 10: the part holds epoch 3 and the offsets after it;
        // epoch 12's records wait for the next cut.
        let job = log
            .closed(12, offsets(5), vec![(Counter::Fills, 3)], true)
            .expect("a cut at 10");
        assert_eq!(job.part.cut, 10);
        assert_eq!(job.part.offsets, offsets(2));
        assert_eq!(job.part.counts, vec![(Counter::Fills, 2)]);
        let (_, first) = job.segment.unwrap();
        let records = decode_all(first.clone());
        assert_eq!(records.len(), 2);
        assert!(
            matches!(&records[1], LogRecord::Trade { source: Some(s), .. }
            if s.archive == Archived::In { key: "arch/a".into(), offset: 9 })
        );
        // Nothing more closes before 20: no part; then the next one takes epoch 12 alone, and
        // its first trade names its archive again.
        assert!(log
            .closed(15, offsets(5), vec![(Counter::Fills, 3)], true)
            .is_none());
        let job = log
            .closed(27, offsets(5), Vec::new(), true)
            .expect("a cut at 20");
        assert_eq!(job.part.cut, 20);
        assert_eq!(job.part.segments.len(), 2);
        let (_, second) = job.segment.unwrap();
        let records = decode_all(second.clone());
        assert_eq!(records.len(), 3);
        assert!(
            matches!(&records[1], LogRecord::Trade { source: Some(s), .. }
            if matches!(&s.archive, Archived::In { key, .. } if key == "arch/a"))
        );
        assert_eq!(records[2], LogRecord::Price(price.clone()));
        // A cut with nothing new names the same chain and writes no segment.
        let job = log
            .closed(31, offsets(5), Vec::new(), true)
            .expect("a cut at 30");
        assert!(job.segment.is_none());
        assert_eq!(job.part.segments.len(), 2);
        // A chain reads its segments in order, past an empty one, each with its own archive key.
        let mut chain = ChainReader::new([first.into(), Bytes::new(), second.into()]);
        let chained: Vec<LogRecord> = std::iter::from_fn(|| chain.next_record())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chained.len(), 5);
        assert_eq!(chained[4], LogRecord::Price(price));
    }

    #[test]
    fn the_newest_complete_snapshot_is_restored_and_damaged_ones_are_skipped() {
        let store = InMemory::new();
        let metrics = SnapshotMetrics::register(&Registry::new()).unwrap();
        let mut logs: Vec<SnapshotLog> = (0..2)
            .map(|w| SnapshotLog::new(1, w, 2, 10, Vec::new(), Vec::new(), Vec::new()))
            .collect();
        for (round, epoch) in [(1, 5), (2, 15), (3, 25)] {
            for (w, log) in logs.iter_mut().enumerate() {
                log.trade(&fill(&format!("E{round}-{w}")), None, 0);
                if let Some(job) = log.closed(epoch, offsets(round), Vec::new(), true) {
                    store_job(&store, job);
                }
            }
        }
        // Cuts at 10 and 20 are complete; one more at 30 from worker 0 only.
        logs[0].trade(&fill("late"), None, 0);
        store_job(
            &store,
            logs[0].closed(35, Vec::new(), Vec::new(), true).unwrap(),
        );
        let restored = load_newest(&store, &metrics).unwrap().unwrap();
        assert_eq!((restored.generation, restored.cut), (1, 20));
        assert_eq!(restored.records(), 4);
        assert_eq!(metrics.rejected.get(), 1);
        // One worker takes both old workers' chains.
        let share = restored.share(0, 1);
        assert_eq!(share.segments.len(), 4);
        assert_eq!(share.records, 4);

        // A corrupt segment of the cut at 20 makes the restore fall back to the cut at 10.
        let runtime = runtime().unwrap();
        let damaged = segment_key(1, 1, 20);
        runtime.block_on(async {
            let path = StorePath::from(damaged.as_str());
            let mut bytes = store
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec();
            bytes[0] ^= 0xff;
            store.put(&path, bytes.into()).await.unwrap();
        });
        let restored = load_newest(&store, &metrics).unwrap().unwrap();
        assert_eq!(restored.cut, 10);
        assert_eq!(restored.records(), 2);
        // A torn part (cut short) of the cut at 10 leaves nothing to restore.
        runtime.block_on(async {
            let path = StorePath::from(part_key(1, 10, 0, 2).as_str());
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            store
                .put(&path, bytes.slice(..bytes.len() - 3).into())
                .await
                .unwrap();
        });
        assert!(load_newest(&store, &metrics).unwrap().is_none());
    }

    #[test]
    fn part_keys_parse_back() {
        let key = part_key(3, 1234, 7, 8);
        assert_eq!(parse_part_key(&key), Some((3, 1234, 7, 8)));
        assert_eq!(parse_part_key("parts/other.part"), None);
    }
}
