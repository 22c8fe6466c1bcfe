//! `eod ingest`: FIX from an archive (or any framed file) to Kafka. Each message is validated
//! and decoded; trades go to the trades topic as `TradeEnvelope`s keyed by symbol, with their
//! raw bytes and where they came from; everything else that is not a valid message goes to the
//! dead-letter topic as a `DeadLetter` with its reason. Nothing is dropped silently.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eod_dataflow::PriceUpdate;
use eod_fix::session::{Acceptor, Actions, Refusal, SequenceState, Session};
use eod_fix::time::now_utc_nanos;
use eod_fix::{Classifier, Counts, Framed, Framer, Outcome, Reject};
use eod_proto::ArchiveRef;
use eod_sources::archive::Archive;
use eod_sources::archive_writer::{SegmentPolicy, SegmentUploader, SegmentWriter};
use eod_sources::envelope::partition_key;
use eod_sources::kafka::{KafkaConnection, RecordProducer, Topics};
use eod_sources::prices::price_to_proto;
use prometheus::IntCounter;
use prost::Message;

use eod_sources::metrics::SourceMetrics;

#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub archive: String,
    pub kafka: KafkaConnection,
    pub topics: Topics,
    pub gateway_id: String,
    pub prices: Vec<PriceUpdate>,
    pub max_message: usize,
}

#[derive(Debug, Default)]
pub struct IngestSummary {
    /// What the units read became (the codec's one classifier).
    pub counts: Counts,
    pub prices: u64,
    pub delivered: u64,
    pub elapsed: Duration,
}

/// Frames, archives, decodes and publishes FIX streams. One per process; connections and files
/// share it. Each read is framed, every framed unit (message or dead bytes) is appended to the
/// archive and fsynced, and only then decoded and produced: a decoder bug can never lose bytes.
pub struct Gateway {
    producer: RecordProducer,
    topics: Topics,
    gateway_id: String,
    metrics: SourceMetrics,
    counters: Counters,
    archive: Option<Mutex<SegmentWriter>>,
    max_message: usize,
}

/// The per-record counters with their labels resolved once: a labelled lookup hashes the
/// labels and takes a lock, and these are bumped for every record the gateway produces.
struct Counters {
    trades_sent: IntCounter,
    dead_letters_sent: IntCounter,
    prices_sent: IntCounter,
}

impl Counters {
    fn new(metrics: &SourceMetrics, topics: &Topics) -> Counters {
        let sent = |topic: &str| metrics.kafka_sent.with_label_values(&[topic]);
        Counters {
            trades_sent: sent(&topics.trades),
            dead_letters_sent: sent(&topics.dead_letters),
            prices_sent: sent(&topics.prices),
        }
    }
}

/// A framed unit of one read: its bytes are `range` of the read's batch.
struct Unit {
    range: std::ops::Range<usize>,
    stream_offset: u64,
    framing: Option<Reject>,
}

impl Gateway {
    pub fn new(
        kafka: &KafkaConnection,
        topics: Topics,
        gateway_id: &str,
        metrics: SourceMetrics,
        archive: Option<SegmentWriter>,
        max_message: usize,
    ) -> Result<Gateway> {
        Ok(Gateway {
            producer: RecordProducer::new(kafka)?,
            counters: Counters::new(&metrics, &topics),
            topics,
            gateway_id: gateway_id.to_owned(),
            metrics,
            archive: archive.map(Mutex::new),
            max_message,
        })
    }

    /// Reads `reader` to its end. `source` names the stream in dead letters and, when the
    /// gateway has no archive of its own (replaying an archive), in archive references.
    pub fn ingest_stream(&self, source: &str, mut reader: impl Read) -> Result<IngestSummary> {
        let mut framer = Framer::new(self.max_message);
        let mut classifier = Classifier::new();
        let mut summary = IngestSummary::default();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {source}")),
            };
            framer.push(&buffer[..n]);
            classifier.observe(&buffer[..n]);
            self.process(&mut framer, &mut classifier, source, &mut summary, None)?;
        }
        framer.finish();
        classifier.end_of_stream();
        self.process(&mut framer, &mut classifier, source, &mut summary, None)?;
        Ok(summary)
    }

    fn process(
        &self,
        framer: &mut Framer,
        classifier: &mut Classifier,
        source: &str,
        summary: &mut IngestSummary,
        mut session: Option<&mut SessionLink>,
    ) -> Result<()> {
        // One read's units side by side in one buffer: archived with one write, and no
        // allocation per unit (a write and a key per unit were a third of the gateway's time).
        let mut batch = Vec::new();
        let mut units = Vec::new();
        while let Some(frame) = framer.next_frame() {
            let (bytes, stream_offset, framing) = match frame {
                Framed::Message { bytes, offset } => (bytes, offset, None),
                Framed::Dead {
                    bytes,
                    offset,
                    reason,
                    detail,
                } => (bytes, offset, Some(Reject { reason, detail })),
            };
            let start = batch.len();
            batch.extend_from_slice(bytes);
            units.push(Unit {
                range: start..batch.len(),
                stream_offset,
                framing,
            });
        }
        if units.is_empty() {
            // Bytes that framed no unit yet (line ends, a partial message) still count.
            self.flush_counts(classifier, summary);
            return Ok(());
        }
        // Archive first, durably, at unit boundaries (the batch goes to one segment whole, so
        // a segment never splits a message).
        let locations: Vec<(String, u64)> = match &self.archive {
            Some(archive) => {
                let mut archive = archive
                    .lock()
                    .map_err(|_| anyhow::anyhow!("archive writer lock poisoned"))?;
                let (key, start) = archive.append(&batch)?;
                archive.sync()?;
                self.metrics.archive_bytes.inc_by(batch.len() as u64);
                units
                    .iter()
                    .map(|u| (key.clone(), start + u.range.start as u64))
                    .collect()
            }
            None => units
                .iter()
                .map(|u| (source.to_owned(), u.stream_offset))
                .collect(),
        };
        let mut encoded = Vec::new();
        for (unit, (object_key, offset)) in units.into_iter().zip(locations) {
            let bytes = &batch[unit.range];
            if unit.framing.is_none() {
                if let Some(link) = session.as_deref_mut() {
                    // Session-level messages and duplicates are archived but carry no new trade.
                    if !link.admit(bytes)? {
                        classifier.consumed_by_session(bytes);
                        continue;
                    }
                }
            }
            match classifier.classify_unit(bytes, unit.framing) {
                Outcome::Trade(mut trade) => {
                    let envelope = trade.envelope_mut();
                    envelope.receive_time = now_utc_nanos();
                    envelope.gateway_id = self.gateway_id.clone();
                    envelope.source = Some(ArchiveRef {
                        object_key,
                        offset,
                        length: bytes.len() as u32,
                    });
                    envelope.raw_fix = bytes.to_vec();
                    encoded.clear();
                    envelope.encode(&mut encoded)?;
                    let key = partition_key(envelope).as_bytes();
                    self.producer.send(&self.topics.trades, key, &encoded)?;
                    self.counters.trades_sent.inc();
                }
                Outcome::NotATrade { .. } => {}
                Outcome::Dead(reject) => {
                    let location = format!("{object_key}@{offset}");
                    self.producer.send_dead_letter(
                        &self.topics.dead_letters,
                        bytes.to_vec(),
                        reject.reason,
                        reject.detail,
                        &location,
                    )?;
                    self.counters.dead_letters_sent.inc();
                }
            }
        }
        self.flush_counts(classifier, summary);
        Ok(())
    }

    /// Moves what the classifier counted into the metrics and the summary.
    fn flush_counts(&self, classifier: &mut Classifier, summary: &mut IngestSummary) {
        let counts = classifier.take_counts();
        self.metrics.count_outcomes(&counts);
        summary.counts.add(&counts);
    }

    /// Reads a FIX session (we are the acceptor) to its end: replies go back on the socket,
    /// the sequence state is persisted after every read, heartbeats run on a 1 s tick.
    pub fn ingest_session(
        &self,
        source: &str,
        stream: std::net::TcpStream,
        session: &SessionConfig,
    ) -> Result<IngestSummary> {
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut link = SessionLink {
            config: session.clone(),
            connected_at: Instant::now(),
            peer: stream.peer_addr()?,
            refused: self.metrics.fix_logons_refused.clone(),
            session: None,
            claim: None,
            writer: stream.try_clone()?,
            disconnect: None,
        };
        let mut reader = stream;
        let mut framer = Framer::new(self.max_message);
        let mut classifier = Classifier::new();
        let mut summary = IngestSummary::default();
        let mut buffer = vec![0u8; 64 * 1024];
        while link.disconnect.is_none() {
            // Checked on every pass: a peer that keeps sending garbage never times a read out.
            link.enforce_logon_timeout();
            if link.disconnect.is_some() {
                break;
            }
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    framer.push(&buffer[..n]);
                    classifier.observe(&buffer[..n]);
                    self.process(
                        &mut framer,
                        &mut classifier,
                        source,
                        &mut summary,
                        Some(&mut link),
                    )?;
                    link.persist()?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    link.tick()?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {source}")),
            }
        }
        framer.finish();
        classifier.end_of_stream();
        self.process(
            &mut framer,
            &mut classifier,
            source,
            &mut summary,
            Some(&mut link),
        )?;
        link.persist()?;
        if let Some(reason) = &link.disconnect {
            tracing::info!(%source, %reason, "FIX session closed");
        }
        Ok(summary)
    }

    pub fn publish_prices(&self, prices: &[PriceUpdate]) -> Result<u64> {
        for price in prices {
            let update = price_to_proto(price);
            self.producer.send(
                &self.topics.prices,
                update.symbol.as_bytes(),
                &update.encode_to_vec(),
            )?;
        }
        self.counters.prices_sent.inc_by(prices.len() as u64);
        Ok(prices.len() as u64)
    }

    /// Rolls an idle segment that is old enough (called periodically).
    pub fn roll_if_old(&self) -> Result<()> {
        if let Some(archive) = &self.archive {
            archive
                .lock()
                .map_err(|_| anyhow::anyhow!("archive writer lock poisoned"))?
                .sync()?;
        }
        Ok(())
    }

    /// Closes the open segment and waits for every produced record to be acknowledged.
    pub fn finish(&self) -> Result<u64> {
        if let Some(archive) = &self.archive {
            archive
                .lock()
                .map_err(|_| anyhow::anyhow!("archive writer lock poisoned"))?
                .close_segment()?;
        }
        self.producer
            .flush(Duration::from_secs(60))
            .context("flushing to Kafka")
    }
}

/// Where FIX sessions keep their sequence numbers, who we are and who may log on.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub acceptor: Acceptor,
    pub state_dir: PathBuf,
    /// Counterparties with a live connection in this gateway.
    pub active: ActiveSessions,
}

/// One live connection per counterparty: its sequence state has one writer. A reconnect that
/// arrives while the old connection is still closing waits for it (briefly), so it reads the
/// state the old connection wrote last.
#[derive(Clone, Debug, Default)]
pub struct ActiveSessions(Arc<(Mutex<HashSet<PathBuf>>, std::sync::Condvar)>);

/// A counterparty's claim, released when the connection ends.
pub struct SessionClaim {
    active: ActiveSessions,
    path: PathBuf,
}

impl ActiveSessions {
    /// Claims `path`'s counterparty, waiting up to `patience` for a closing connection to let go.
    pub fn claim(&self, path: &Path, patience: Duration) -> Option<SessionClaim> {
        let (lock, released) = &*self.0;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut active, _) = released
            .wait_timeout_while(guard, patience, |active| active.contains(path))
            .unwrap_or_else(|p| p.into_inner());
        if !active.insert(path.to_owned()) {
            return None;
        }
        Some(SessionClaim {
            active: self.clone(),
            path: path.to_owned(),
        })
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        let (lock, released) = &*self.active.0;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
        released.notify_all();
    }
}

/// One connection's session: created at Logon with the persisted state of that counterparty.
struct SessionLink {
    config: SessionConfig,
    connected_at: Instant,
    peer: SocketAddr,
    /// Refused Logons by reason.
    refused: prometheus::IntCounterVec,
    session: Option<(Session, PathBuf)>,
    /// Held from Logon to the end of the connection (dropped after the last persist).
    claim: Option<SessionClaim>,
    writer: std::net::TcpStream,
    disconnect: Option<String>,
}

impl SessionLink {
    /// Runs one message through the session; true when it is an application message to use.
    fn admit(&mut self, message: &[u8]) -> Result<bool> {
        if self.disconnect.is_some() {
            return Ok(false);
        }
        if self.session.is_none() {
            let settings = match self.config.acceptor.accept(message, self.peer.ip()) {
                Ok(settings) => settings,
                Err(refusal) => {
                    tracing::warn!(
                        peer = %self.peer,
                        reason = refusal.label(),
                        "FIX Logon refused: {refusal}"
                    );
                    self.refused.with_label_values(&[refusal.label()]).inc();
                    let mut actions = Actions {
                        disconnect: Some(refusal.to_string()),
                        ..Actions::default()
                    };
                    if refusal != Refusal::NotLogon {
                        let logout =
                            self.config
                                .acceptor
                                .refusal_logout(message, &refusal, now_utc_nanos());
                        actions.send.push(logout);
                    }
                    return self.apply(actions);
                }
            };
            let counterparty = settings.counterparty.clone();
            // Only configured CompIDs reach the file name (they cannot hold a path separator).
            let path = self
                .config
                .state_dir
                .join(format!("{}-{counterparty}.json", settings.comp_id));
            let Some(claim) = self.config.active.claim(&path, Duration::from_secs(5)) else {
                tracing::warn!(%counterparty, "second connection for a live FIX session: refused");
                self.disconnect = Some(format!("{counterparty} already has a live session"));
                self.writer.shutdown(std::net::Shutdown::Both).ok();
                return Ok(false);
            };
            self.claim = Some(claim);
            let state = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .with_context(|| format!("session state {}", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SequenceState::default(),
                Err(e) => {
                    return Err(e).with_context(|| format!("session state {}", path.display()))
                }
            };
            self.session = Some((Session::new(settings, state), path));
        }
        let Some((session, _)) = self.session.as_mut() else {
            return Ok(false);
        };
        let actions = session.on_message(message, now_utc_nanos());
        self.apply(actions)
    }

    /// Closes a connection that has not logged on within the acceptor's Logon timeout.
    fn enforce_logon_timeout(&mut self) {
        let timeout = self.config.acceptor.logon_timeout;
        if self.session.is_some() || self.connected_at.elapsed() < timeout {
            return;
        }
        let refusal = Refusal::LogonTimeout(timeout);
        tracing::warn!(peer = %self.peer, reason = refusal.label(), "FIX Logon refused: {refusal}");
        self.refused.with_label_values(&[refusal.label()]).inc();
        self.disconnect = Some(refusal.to_string());
        self.writer.shutdown(std::net::Shutdown::Both).ok();
    }

    fn tick(&mut self) -> Result<()> {
        if let Some((session, _)) = self.session.as_mut() {
            let actions = session.on_tick(now_utc_nanos());
            self.apply(actions)?;
        }
        Ok(())
    }

    fn apply(&mut self, actions: Actions) -> Result<bool> {
        for message in &actions.send {
            std::io::Write::write_all(&mut self.writer, message)?;
        }
        if let Some(reason) = actions.disconnect {
            self.disconnect = Some(reason);
            self.writer.shutdown(std::net::Shutdown::Both).ok();
        }
        Ok(actions.deliver)
    }

    /// Writes the sequence state atomically (temp file, fsync, rename).
    fn persist(&self) -> Result<()> {
        let Some((session, path)) = &self.session else {
            return Ok(());
        };
        // Each write has its own temp file: even if two writers ever met on one counterparty
        // (the claim prevents it), neither rename would find the other's file gone.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = path.with_extension(format!("json.{write}.tmp"));
        let mut file = std::fs::File::create(&temp)?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec(session.state())?)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        Ok(())
    }
}

impl IngestSummary {
    fn add(&mut self, other: &IngestSummary) {
        self.counts.add(&other.counts);
        self.prices += other.prices;
    }
}

/// Replays an existing archive (its objects are the archive: no second copy is written).
pub fn run_ingest(options: IngestOptions, metrics: SourceMetrics) -> Result<IngestSummary> {
    let started = Instant::now();
    let archive = Archive::open(&options.archive)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let gateway = Gateway::new(
        &options.kafka,
        options.topics.clone(),
        &options.gateway_id,
        metrics.clone(),
        None,
        options.max_message,
    )?;
    let mut summary = IngestSummary::default();
    for segment in runtime.block_on(archive.segments())? {
        let _span = tracing::info_span!("ingest_segment", key = %segment.key).entered();
        let bytes = runtime.block_on(archive.read(&segment.key))?;
        metrics.segments_read.inc();
        summary.add(&gateway.ingest_stream(&segment.key, &bytes[..])?);
    }
    summary.prices = gateway.publish_prices(&options.prices)?;
    summary.delivered = gateway.finish()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Where a listening gateway archives, and when it stops.
pub struct ListenOptions {
    pub listen: SocketAddr,
    pub spool: PathBuf,
    /// Directory the closed segments are uploaded to (object_store; S3 with the sinks issue).
    pub archive_to: String,
    pub policy: SegmentPolicy,
    /// Stop after serving this many connections (replays and tests); `None`: until stopped.
    pub connections: Option<usize>,
}

/// Accepts plain framed FIX streams over TCP until stopped (or the connection limit). Each
/// connection is read by its own thread; when Kafka or the archive is slow, that thread stops
/// reading and TCP pushes back on the sender: nothing is buffered without bound or dropped.
pub fn serve_tcp(
    gateway: Arc<Gateway>,
    listener: std::net::TcpListener,
    uploader: SegmentUploader,
    connections: Option<usize>,
    session: Option<SessionConfig>,
    stop: Arc<AtomicBool>,
) -> Result<IngestSummary> {
    let started = Instant::now();
    listener.set_nonblocking(true)?;
    let totals = Arc::new(Mutex::new(IngestSummary::default()));
    let mut handles = Vec::new();
    let upload_stop = Arc::new(AtomicBool::new(false));
    let uploads = {
        let (gateway, stop) = (gateway.clone(), upload_stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            loop {
                let last = stop.load(Ordering::Acquire);
                gateway.roll_if_old()?;
                let round = runtime.block_on(uploader.upload_closed())?;
                gateway
                    .metrics
                    .archive_segments_uploaded
                    .inc_by(round.uploaded as u64);
                gateway
                    .metrics
                    .archive_spool_segments
                    .set(round.waiting as i64);
                let waiting = round.waiting;
                if last && waiting == 0 {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(if last { 1000 } else { 200 }));
            }
        })
    };
    let mut accepted = 0usize;
    while !stop.load(Ordering::Acquire) && connections.is_none_or(|limit| accepted < limit) {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                stream.set_nonblocking(false)?;
                let (gateway, totals, session) = (gateway.clone(), totals.clone(), session.clone());
                handles.push(std::thread::spawn(move || {
                    let source = format!("tcp:{peer}");
                    let _span = tracing::info_span!("ingest_connection", %peer).entered();
                    let result = match &session {
                        Some(session) => gateway.ingest_session(&source, stream, session),
                        None => gateway.ingest_stream(&source, stream),
                    };
                    match result {
                        Ok(summary) => {
                            if let Ok(mut totals) = totals.lock() {
                                totals.add(&summary);
                            }
                            Ok(())
                        }
                        Err(error) => {
                            tracing::error!(%peer, %error, "connection failed");
                            Err(error)
                        }
                    }
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    }
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("connection thread panicked"))??;
    }
    let delivered = gateway.finish()?;
    upload_stop.store(true, Ordering::Release);
    uploads
        .join()
        .map_err(|_| anyhow::anyhow!("uploader panicked"))??;
    let mut summary = std::mem::take(
        &mut *totals
            .lock()
            .map_err(|_| anyhow::anyhow!("totals lock poisoned"))?,
    );
    summary.delivered = delivered;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Opens the spool and the archive store for a listening gateway.
pub fn open_archive(options: &ListenOptions) -> Result<(SegmentWriter, SegmentUploader)> {
    let location = &options.archive_to;
    if !location.contains("://") {
        std::fs::create_dir_all(location).with_context(|| format!("creating {location}"))?;
    } else if let Some(path) = location.strip_prefix("file://") {
        std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
    }
    let store = eod_sources::archive::open_store(location)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let writer = runtime.block_on(SegmentWriter::open(
        &options.spool,
        store,
        options.policy.clone(),
    ))?;
    let uploader = writer.uploader();
    Ok((writer, uploader))
}

#[cfg(test)]
mod session_claim_tests {
    use super::*;

    #[test]
    fn one_live_connection_per_counterparty_and_a_closing_one_is_waited_for() {
        let active = ActiveSessions::default();
        let path = Path::new("/state/EOD-ACME.json");
        let first = active.claim(path, Duration::ZERO).unwrap();
        assert!(
            active.claim(path, Duration::from_millis(20)).is_none(),
            "a second live connection is refused"
        );
        assert!(active
            .claim(Path::new("/state/EOD-OTHER.json"), Duration::ZERO)
            .is_some());
        // The old connection closes while the new one waits: the new one gets the claim.
        let waiter = {
            let active = active.clone();
            std::thread::spawn(move || active.claim(path, Duration::from_secs(5)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(waiter.join().unwrap());
    }
}
