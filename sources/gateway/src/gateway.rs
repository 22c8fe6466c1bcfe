//! The gateway proper: one per process, shared by its connections and files.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eod_dataflow::PriceUpdate;
use eod_fix::time::now_utc_nanos;
use eod_fix::{CheckedTrade, Classifier, Counts, Framed, Framer, Outcome, Reject};
use eod_proto::borrowed::{BorrowedArchiveRef, BorrowedEnvelope};
use eod_sources::archive_writer::{Appended, SegmentWriter};
use eod_sources::envelope::partition_key;
use eod_sources::kafka::{
    dead_letter, Deliveries, DeliveryHold, KafkaConnection, RecordProducer, Topics,
};
use eod_sources::metrics::SourceMetrics;
use eod_sources::prices::price_to_proto;
use eod_sources::schema_registry::WireFormat;
use prometheus::IntCounter;
use prost::Message;

use crate::error::{io, GatewayError};
use crate::session_link::{SessionConfig, SessionLink};

/// Longest the persisted sequence state of a session lags what it has taken in, while it sent
/// nothing. Persisting after every read (a broker round trip and an fsync each) took a
/// 100,000 fills/s burst at 56% against 88% (bench/RESULTS.md); a gateway killed in between
/// asks for up to this much more again.
pub const SESSION_PERSIST_EVERY: Duration = Duration::from_millis(100);

/// Most bytes one read of a connection takes, and so one fsync of the archive makes durable
/// before they are decoded: group commit. A sender faster than the disk's sync fills the socket
/// while a sync runs, and the next read takes all of it. With 64 KiB reads the gateway spent
/// most of a flat-out run waiting on one fsync per 64 KiB (`strace` of `eod-bench-kafka
/// --flat-out`: 2.6 ms each, 4,082 of them for 210 MB). A slow sender's reads stay as small as
/// what it sent, so its latency does not change.
pub const READ_BYTES: usize = 1 << 20;

/// Longest a session waits for the broker to take a read's records before it gives up the
/// connection (the sender then resends them after its next Logon).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct IngestSummary {
    /// What the units read became (the codec's one classifier).
    pub counts: Counts,
    pub prices: u64,
    pub delivered: u64,
    pub elapsed: Duration,
}

/// What a restarted gateway published from the segments a previous run left in its spool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub trades: u64,
    pub dead_letters: u64,
}

/// Frames, archives, decodes and publishes FIX streams. One per process; connections and files
/// share it. Each read is framed, every framed unit (message or dead bytes) is appended to the
/// archive and fsynced, and only then decoded and produced: a decoder bug can never lose bytes.
pub struct Gateway {
    producer: RecordProducer,
    /// The cluster, for reading back what the trades and dead-letter topics hold (a restart's
    /// recovery of its spool).
    kafka: KafkaConnection,
    topics: Topics,
    gateway_id: String,
    metrics: SourceMetrics,
    counters: Counters,
    archive: Option<Mutex<SegmentWriter>>,
    /// Bytes in the archive spool not yet uploaded, and the most it may hold.
    spooled: Option<Arc<AtomicU64>>,
    spool_cap: Option<u64>,
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
    ) -> Result<Gateway, GatewayError> {
        Ok(Gateway {
            producer: RecordProducer::new(kafka)?,
            kafka: kafka.clone(),
            counters: Counters::new(&metrics, &topics),
            topics,
            gateway_id: gateway_id.to_owned(),
            metrics,
            spooled: archive.as_ref().map(SegmentWriter::spooled_bytes),
            archive: archive.map(Mutex::new),
            spool_cap: None,
            max_message,
        })
    }

    /// Plain protobuf, or framed with Schema Registry ids (`eod_sources::schema_registry`).
    pub fn with_wire_format(mut self, wire: WireFormat) -> Gateway {
        self.producer.set_wire_format(wire);
        self
    }

    /// At most `cap` bytes may wait in the spool for the store: beyond it a connection stops
    /// reading until uploads make room, and TCP pushes back on the sender. Without a cap an
    /// outage of the store grows the spool until the disk is full.
    pub fn with_spool_cap(mut self, cap: Option<u64>) -> Gateway {
        self.spool_cap = cap.filter(|cap| *cap > 0);
        self
    }

    /// Reports the spool's size (`eod_archive_spool_bytes`, with or without a cap), and waits
    /// while it is at its cap. A record the broker refused ends the wait with its error: the
    /// segment it came from stays in the spool for a restart to recover, so no room would come.
    fn wait_for_spool_room(&self) -> Result<(), GatewayError> {
        let Some(spooled) = &self.spooled else {
            return Ok(());
        };
        let mut waited = false;
        loop {
            let now = spooled.load(Ordering::Relaxed);
            self.metrics.archive_spool_bytes.set(now as i64);
            let Some(cap) = self.spool_cap.filter(|cap| now >= *cap) else {
                return Ok(());
            };
            self.producer.delivery_failures()?;
            if !waited {
                waited = true;
                self.metrics.archive_spool_full.inc();
                tracing::warn!(
                    spooled = now,
                    cap,
                    "archive spool full: holding the sender back until uploads make room"
                );
                // Only closed segments are uploaded: with a cap below the segment size, the
                // open segment alone could fill the spool and nothing would ever make room.
                if let Some(archive) = &self.archive {
                    if let Ok(mut archive) = archive.lock() {
                        if let Err(error) = archive.close_segment() {
                            tracing::error!(%error, "closing the open segment for upload");
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads `reader` to its end. `source` names the stream in dead letters and, when the
    /// gateway has no archive of its own (replaying an archive), in archive references.
    pub fn ingest_stream(
        &self,
        source: &str,
        mut reader: impl Read,
    ) -> Result<IngestSummary, GatewayError> {
        let mut framer = Framer::new(self.max_message);
        let mut classifier = Classifier::new();
        let mut summary = IngestSummary::default();
        let mut buffer = vec![0u8; READ_BYTES];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(format!("reading {source}"))(e)),
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
    ) -> Result<(), GatewayError> {
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
                } => (bytes, offset, Some(Reject::new(reason, detail))),
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
        // The segment's hold lives until every unit of the read is published: the segment
        // must not leave the spool before the broker has all of them.
        let (object_key, offsets, segment): (String, Vec<u64>, Option<DeliveryHold>) =
            match &self.archive {
                Some(archive) => {
                    self.wait_for_spool_room()?;
                    let mut archive = archive
                        .lock()
                        .map_err(|_| GatewayError::Broken("archive writer lock poisoned"))?;
                    let Appended {
                        key,
                        offset: start,
                        hold,
                    } = archive.append(&batch)?;
                    let syncing = self.metrics.archive_syncs.start_timer();
                    archive.sync()?;
                    syncing.observe_duration();
                    self.metrics.archive_bytes.inc_by(batch.len() as u64);
                    let offsets = units.iter().map(|u| start + u.range.start as u64);
                    (key, offsets.collect(), Some(hold))
                }
                None => (
                    source.to_owned(),
                    units.iter().map(|u| u.stream_offset).collect(),
                    None,
                ),
            };
        let awaited = segment.as_ref().map(DeliveryHold::deliveries);
        let mut encoded = Vec::new();
        // A session that fails mid-read (a reply the socket no longer takes) must not leave
        // the rest of the read archived and never published: its units go on as a restart's
        // recovery would take them, without the session, and the error ends the connection
        // after them.
        let mut session_failed = None;
        for (unit, offset) in units.into_iter().zip(offsets) {
            let bytes = &batch[unit.range];
            let framed = unit.framing.is_none();
            if framed {
                if let Some(link) = session.as_deref_mut() {
                    // Session-level messages and duplicates are archived but carry no new trade.
                    match link.admit(bytes) {
                        Ok(true) => {}
                        Ok(false) => {
                            classifier.consumed_by_session(bytes);
                            continue;
                        }
                        Err(error) => {
                            session_failed = Some(error);
                            session = None;
                        }
                    }
                }
            }
            match classifier.classify_unit(bytes, unit.framing) {
                Outcome::Trade(trade) => {
                    self.publish_trade(trade, &object_key, offset, bytes, &mut encoded, awaited)?;
                }
                Outcome::NotATrade { .. } => {}
                Outcome::Dead(reject) => {
                    if framed {
                        if let Some(link) = session.as_deref_mut() {
                            if let Err(error) = link.reject_invalid(bytes, &reject) {
                                session_failed = Some(error);
                                session = None;
                            }
                        }
                    }
                    let place = format!("{object_key}@{offset}");
                    self.publish_dead_letter(bytes, reject, &place, awaited)?;
                }
            }
        }
        self.flush_counts(classifier, summary);
        match session_failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// One trade envelope, stamped with where its bytes are archived, to the trades topic. It
    /// is encoded from the parsed text in place: an owned envelope cost an allocation and a
    /// copy per text field and of the raw FIX, freed once encoded.
    fn publish_trade(
        &self,
        trade: CheckedTrade<'_>,
        object_key: &str,
        offset: u64,
        bytes: &[u8],
        encoded: &mut Vec<u8>,
        awaited: Option<&Arc<Deliveries>>,
    ) -> Result<(), GatewayError> {
        let envelope = BorrowedEnvelope {
            raw_fix: bytes,
            receive_time: now_utc_nanos(),
            gateway_id: &self.gateway_id,
            source: Some(BorrowedArchiveRef {
                object_key,
                offset,
                length: bytes.len() as u32,
            }),
            ..trade.borrowed_envelope()
        };
        encoded.clear();
        envelope.encode(encoded);
        let key = partition_key(&envelope).as_bytes();
        self.producer
            .send_awaited(&self.topics.trades, key, encoded, awaited)?;
        self.counters.trades_sent.inc();
        Ok(())
    }

    /// A bad unit's dead letter (refused on sight: no retries), keyed by its archive place.
    fn publish_dead_letter(
        &self,
        bytes: &[u8],
        reject: Reject,
        place: &str,
        awaited: Option<&Arc<Deliveries>>,
    ) -> Result<(), GatewayError> {
        let letter = dead_letter(bytes.to_vec(), reject.reason, reject.detail, place, 0);
        self.producer.send_awaited(
            &self.topics.dead_letters,
            place.as_bytes(),
            &letter,
            awaited,
        )?;
        self.counters.dead_letters_sent.inc();
        Ok(())
    }

    /// Publishes what segments a previous run left in the spool hold and the topics do not:
    /// the trade of each good unit whose place (`key@offset`) no envelope on the trades topic
    /// names, and the dead letter of each bad unit whose place the dead-letter topic does not
    /// hold. A gateway killed between archiving a read and the broker's confirmation lost
    /// them: a FIX session resends its messages (a duplicate ExecID counts once downstream),
    /// but not the garbage between them, and a plain stream resends nothing. Each segment is
    /// framed and classified from its start, as a replay of the archive does, so a unit's
    /// place is the one the live gateway gave it, and a place a topic holds is not sent again.
    /// The topics are read from a minute before the oldest segment was created (from their
    /// start where the file system keeps no creation time). Runs before the uploader takes
    /// the segments away.
    pub fn recover_leftovers(
        &self,
        leftovers: &[(String, std::path::PathBuf)],
        created: Option<std::time::SystemTime>,
    ) -> Result<Recovered, GatewayError> {
        let mut recovered = Recovered::default();
        if leftovers.is_empty() {
            return Ok(recovered);
        }
        let _span = tracing::info_span!("recover_leftovers", segments = leftovers.len()).entered();
        let since = created.map(|c| c - Duration::from_secs(60));
        let (kafka, topics) = (&self.kafka, &self.topics);
        let places = |topic: &str, place: fn(&[u8]) -> Option<String>| {
            eod_sources::kafka::places_since(kafka, topic, since, DELIVERY_TIMEOUT, place)
        };
        let letters = places(&topics.dead_letters, eod_sources::kafka::dead_letter_place)?;
        let trades = places(&topics.trades, eod_sources::kafka::trade_place)?;
        let mut encoded = Vec::new();
        for (key, path) in leftovers {
            let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
            let mut framer = Framer::new(self.max_message);
            let mut classifier = Classifier::new();
            framer.push(&bytes);
            framer.finish();
            while let Some(frame) = framer.next_frame() {
                let (unit, offset) = (frame.bytes(), frame.offset());
                let place = format!("{key}@{offset}");
                match classifier.classify(&frame) {
                    Outcome::Trade(trade) if !trades.contains(&place) => {
                        self.publish_trade(trade, key, offset, unit, &mut encoded, None)?;
                        self.metrics.trades_recovered.inc();
                        recovered.trades += 1;
                    }
                    Outcome::Dead(reject) if !letters.contains(&place) => {
                        self.publish_dead_letter(unit, reject, &place, None)?;
                        self.metrics.dead_letters_recovered.inc();
                        recovered.dead_letters += 1;
                    }
                    _ => {}
                }
            }
        }
        self.producer.flush(DELIVERY_TIMEOUT)?;
        if recovered.trades + recovered.dead_letters > 0 {
            tracing::warn!(
                trades = recovered.trades,
                dead_letters = recovered.dead_letters,
                "spooled units a previous run had not delivered, sent"
            );
        }
        Ok(recovered)
    }

    /// Waits until the broker has every record sent so far. The session persists the sequence
    /// numbers it has taken in only after this: a gateway killed before it asks the sender to
    /// resend them on the next Logon, so a message archived but not yet on Kafka is sent again
    /// rather than lost (a duplicate ExecID counts once downstream).
    fn delivered_before_persisting(&self) -> Result<(), GatewayError> {
        let _span = tracing::debug_span!("deliver_before_persist").entered();
        self.producer.flush(DELIVERY_TIMEOUT)?;
        Ok(())
    }

    /// Moves what the classifier counted into the metrics and the summary.
    fn flush_counts(&self, classifier: &mut Classifier, summary: &mut IngestSummary) {
        let counts = classifier.take_counts();
        self.metrics.count_outcomes(&counts);
        summary.counts.add(&counts);
    }

    /// Reads a FIX session (we are the acceptor) to its end: replies go back on the socket,
    /// heartbeats run on a 1 s tick, and the sequence state is persisted (behind the broker's
    /// confirmation) at once when we sent something, else at most every
    /// [`SESSION_PERSIST_EVERY`].
    pub fn ingest_session(
        &self,
        source: &str,
        stream: std::net::TcpStream,
        session: &SessionConfig,
    ) -> Result<IngestSummary, GatewayError> {
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(io("setting a read timeout"))?;
        let mut link = SessionLink::new(
            session.clone(),
            &stream,
            self.metrics.fix_logons_refused.clone(),
        )?;
        let mut reader = stream;
        let mut framer = Framer::new(self.max_message);
        let mut classifier = Classifier::new();
        let mut summary = IngestSummary::default();
        let mut buffer = vec![0u8; READ_BYTES];
        let mut last_persist = Instant::now();
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
                    let dead_letters_before = self.counters.dead_letters_sent.get();
                    self.process(
                        &mut framer,
                        &mut classifier,
                        source,
                        &mut summary,
                        Some(&mut link),
                    )?;
                    // A garbled frame's message comes again intact by resend, but its dead
                    // letter would not: it goes to the broker before the next read.
                    let dead_lettered = self.counters.dead_letters_sent.get() > dead_letters_before;
                    if dead_lettered || link.persist_due(last_persist.elapsed()) {
                        self.delivered_before_persisting()?;
                        link.persist()?;
                        last_persist = Instant::now();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    link.tick()?;
                    if link.persist_due(last_persist.elapsed()) {
                        self.delivered_before_persisting()?;
                        link.persist()?;
                        last_persist = Instant::now();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(format!("reading {source}"))(e)),
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
        self.delivered_before_persisting()?;
        link.persist()?;
        if let Some(reason) = &link.disconnect {
            tracing::info!(%source, %reason, "FIX session closed");
        }
        Ok(summary)
    }

    pub fn metrics(&self) -> &SourceMetrics {
        &self.metrics
    }

    pub fn publish_prices(&self, prices: &[PriceUpdate]) -> Result<u64, GatewayError> {
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

    /// Rolls an idle segment that is old enough, and hands the uploader the sealed segments
    /// whose records the broker has all acknowledged (called periodically: between reads,
    /// the delivery reports are served here).
    pub fn roll_if_old(&self) -> Result<(), GatewayError> {
        if let Some(archive) = &self.archive {
            self.producer.poll_deliveries();
            let mut archive = archive
                .lock()
                .map_err(|_| GatewayError::Broken("archive writer lock poisoned"))?;
            archive.sync()?;
            let awaiting = archive.awaiting_delivery();
            self.metrics
                .archive_segments_awaiting_delivery
                .set(awaiting as i64);
        }
        Ok(())
    }

    /// Waits for every produced record to be acknowledged, then closes the open segment: in
    /// the other order a segment could be uploaded, and gone from the spool, before the
    /// broker had its records.
    pub fn finish(&self) -> Result<u64, GatewayError> {
        let delivered = self.producer.flush(Duration::from_secs(60))?;
        if let Some(archive) = &self.archive {
            archive
                .lock()
                .map_err(|_| GatewayError::Broken("archive writer lock poisoned"))?
                .close_segment()?;
        }
        Ok(delivered)
    }
}

impl IngestSummary {
    pub(crate) fn add(&mut self, other: &IngestSummary) {
        self.counts.add(&other.counts);
        self.prices += other.prices;
    }
}

#[cfg(test)]
mod tests {
    use eod_fix::FixEncoder;
    use eod_sources::archive_writer::{SegmentPolicy, SegmentUploader};

    use super::*;

    /// A gateway archiving under `dir` in segments of `max_bytes`, whose broker never answers:
    /// what it produces waits in the producer's queue, never acknowledged.
    fn gateway_without_broker(
        dir: &std::path::Path,
        max_bytes: usize,
    ) -> (Gateway, SegmentUploader, SourceMetrics) {
        gateway_with_producer_properties(dir, max_bytes, Vec::new())
    }

    /// [`gateway_without_broker`], its producer given the librdkafka `properties`.
    fn gateway_with_producer_properties(
        dir: &std::path::Path,
        max_bytes: usize,
        properties: Vec<(String, String)>,
    ) -> (Gateway, SegmentUploader, SourceMetrics) {
        let (writer, uploader) = crate::tcp::open_archive(&listen_options(dir, max_bytes)).unwrap();
        let metrics = SourceMetrics::register(&prometheus::Registry::new()).unwrap();
        let mut kafka = KafkaConnection::plaintext("127.0.0.1:9");
        kafka.properties = properties;
        let gateway = Gateway::new(
            &kafka,
            Topics::default(),
            "gw",
            metrics.clone(),
            Some(writer),
            4096,
        )
        .unwrap();
        (gateway, uploader, metrics)
    }

    /// One round of the upload thread's uploads.
    fn upload_round(uploader: &SegmentUploader) -> eod_sources::archive_writer::UploadRound {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(uploader.upload_closed()).unwrap()
    }

    fn listen_options(dir: &std::path::Path, max_bytes: usize) -> crate::tcp::ListenOptions {
        crate::tcp::ListenOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            spool: dir.join("spool"),
            archive_to: dir.join("store").display().to_string(),
            policy: SegmentPolicy {
                gateway_id: "gw".into(),
                trading_date: "20261125".into(),
                max_bytes,
                max_age: Duration::from_secs(60),
            },
            connections: None,
        }
    }

    fn execution_report(encoder: &FixEncoder, stream: &mut Vec<u8>, exec_id: &str, side: &str) {
        encoder.write(stream, "8", &fill_fields(exec_id, side));
    }

    /// A fill's body fields; without a Side (54) when `side` is empty.
    fn fill_fields<'a>(exec_id: &'a str, side: &'a str) -> Vec<(u32, &'a str)> {
        let mut fields = vec![
            (17, exec_id),
            (150, "F"),
            (55, "AAPL"),
            (32, "100"),
            (31, "185.12"),
            (60, "20261125-20:59:59.123"),
            (1, "ACC"),
        ];
        if !side.is_empty() {
            fields.push((54, side));
        }
        fields
    }

    /// Group commit: every byte of one read is made durable by one fsync, however many
    /// messages it holds, before any of them is decoded.
    #[test]
    fn one_read_s_messages_are_archived_by_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, _uploader, metrics) = gateway_without_broker(dir.path(), 64 << 20);
        let encoder = FixEncoder::new("FIX.4.4");
        let mut stream = Vec::new();
        let mut messages = 0u64;
        while stream.len() < READ_BYTES - 1024 {
            execution_report(&encoder, &mut stream, &format!("E{messages}"), "1");
            messages += 1;
        }
        assert!(stream.len() > 10 * 64 * 1024, "a read of many messages");
        let summary = gateway.ingest_stream("test", &stream[..]).unwrap();
        assert_eq!(summary.counts.trades(), messages);
        assert_eq!(metrics.archive_bytes.get(), stream.len() as u64);
        assert_eq!(metrics.archive_syncs.get_sample_count(), 1);
    }

    /// A session whose reply fails (the socket no longer takes writes) ends the connection,
    /// but the rest of the read is archived already: its units are published as a restart's
    /// recovery would publish them, not left in the archive with no trade or dead letter.
    #[test]
    fn a_session_failing_mid_read_still_publishes_the_rest_of_the_read() {
        use std::io::Write;
        use std::net::{Shutdown, TcpListener, TcpStream};
        let dir = tempfile::tempdir().unwrap();
        let (gateway, _uploader, metrics) = gateway_without_broker(dir.path(), 64 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut counterparty = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // The reply to the Logon fails, and with it the session, at the read's first message.
        accepted.shutdown(Shutdown::Write).unwrap();
        let encoder = FixEncoder::new("FIX.4.4");
        fn header(seq: &'static str) -> [(u32, &'static str); 4] {
            [
                (49, "EXCH"),
                (56, "EOD"),
                (34, seq),
                (52, "20261125-20:59:59.000"),
            ]
        }
        let mut stream = Vec::new();
        let logon = [&header("1")[..], &[(98, "0"), (108, "30")]].concat();
        encoder.write(&mut stream, "A", &logon);
        let trade = |seq: &'static str, side: &'static str| {
            [&header(seq)[..], &fill_fields("E1", side)].concat()
        };
        encoder.write(&mut stream, "8", &trade("2", "1"));
        stream.extend_from_slice(b"garbage between messages");
        encoder.write(&mut stream, "8", &trade("3", ""));
        counterparty.write_all(&stream).unwrap();
        let session = SessionConfig {
            acceptor: eod_fix::session::Acceptor {
                comp_id: "EOD".into(),
                begin_string: "FIX.4.4".into(),
                counterparties: vec!["EXCH".parse().unwrap()],
                logon_timeout: Duration::from_secs(10),
                max_latency: None,
            },
            state_dir: dir.path().join("sessions"),
            active: Default::default(),
        };
        let outcome = gateway.ingest_session("test", accepted, &session);
        assert!(outcome.is_err(), "the session failed: {outcome:?}");
        let topics = Topics::default();
        let sent = |topic: &str| metrics.kafka_sent.with_label_values(&[topic]).get();
        assert_eq!(sent(&topics.trades), 1, "the trade after the failed reply");
        assert_eq!(
            sent(&topics.dead_letters),
            2,
            "the garbage and the message without a Side"
        );
    }

    /// A record the producer refuses on the spot (here, larger than `message.max.bytes`) ends
    /// the read with the rest of its units unsent: their segment must stay in the spool for a
    /// restart. The refused record stays counted as unacknowledged, which holds it there.
    #[test]
    fn a_read_the_producer_failed_keeps_its_segment_in_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let small_records = vec![("message.max.bytes".into(), "1000".into())];
        let (gateway, uploader, _metrics) =
            gateway_with_producer_properties(dir.path(), 100, small_records);
        let garbage = vec![b'x'; 2000];
        let failed = gateway.ingest_stream("test", &garbage[..]);
        assert!(failed.is_err(), "the dead letter is too large to send");
        gateway.roll_if_old().unwrap();
        let round = upload_round(&uploader);
        assert_eq!(round.uploaded, 0, "the unsent dead letter's segment stays");
    }

    /// A read fills its segment, whose records (a trade and a bad message's dead letter) the
    /// broker never acknowledges: the segment must stay in the spool, where a restarted
    /// gateway recovers it. Uploaded, it would be gone from the spool, and the dead letter
    /// (and, on a plain stream, the trade) with it: the fault test found a dead letter lost so.
    #[test]
    fn a_full_segment_stays_in_the_spool_until_the_broker_has_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, uploader, metrics) = gateway_without_broker(dir.path(), 100);
        let encoder = FixEncoder::new("FIX.4.4");
        let mut stream = Vec::new();
        execution_report(&encoder, &mut stream, "E1", "1");
        execution_report(&encoder, &mut stream, "E2", "");
        let summary = gateway.ingest_stream("test", &stream[..]).unwrap();
        assert_eq!(summary.counts.trades(), 1);
        gateway.roll_if_old().unwrap();
        assert_eq!(metrics.archive_segments_awaiting_delivery.get(), 1);
        let round = upload_round(&uploader);
        assert_eq!(round.uploaded, 0, "nothing acknowledged, nothing uploaded");
        drop(gateway);
        let (restarted, _) = crate::tcp::open_archive(&listen_options(dir.path(), 100)).unwrap();
        let leftovers: Vec<_> = restarted
            .leftover_segments()
            .iter()
            .map(|(key, path)| (key.clone(), std::fs::read(path).unwrap()))
            .collect();
        assert_eq!(
            leftovers,
            [(
                "gw/20261125/gw-20261125-00000000.fix".to_owned(),
                stream.clone()
            )],
            "the restart finds the whole read to recover"
        );
    }
}
