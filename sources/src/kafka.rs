//! Kafka plumbing shared by the gateway (producing envelopes and dead letters) and the
//! dataflow source (consuming assigned partitions). Partitions are assigned, never subscribed:
//! no consumer-group rebalancing can move a partition between timely workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::schema_registry::WireFormat;

/// Where and how to reach the cluster: the bootstrap servers and the librdkafka client
/// properties (`security.protocol`, `sasl.*`, `ssl.*`, ...) every producer, consumer and admin
/// client gets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConnection {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl KafkaConnection {
    pub fn plaintext(brokers: impl Into<String>) -> KafkaConnection {
        KafkaConnection {
            brokers: brokers.into(),
            properties: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> KafkaConnection {
        self.properties.retain(|(k, _)| k != key);
        self.properties.push((key.to_owned(), value.into()));
        self
    }

    fn client_config(&self) -> ClientConfig {
        self.client_config_over(&[])
    }

    /// `defaults`, then the operator's properties over them (tuning such as `linger.ms`).
    fn client_config_over(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Properties whose values are secrets: never printed, not even in debug output.
fn is_secret_property(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".key.pem")
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) { "***" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConnection")
            .field("brokers", &self.brokers)
            .field("properties", &properties)
            .finish()
    }
}

/// Topic names; defaults are the production names.
#[derive(Clone, Debug)]
pub struct Topics {
    pub trades: String,
    pub dead_letters: String,
    pub prices: String,
    /// Reference data (traders, securities): compacted, keyed by record.
    pub reference: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            trades: "trades.raw".into(),
            dead_letters: "trades.dlq".into(),
            prices: "prices".into(),
            reference: "reference".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    #[error("kafka: {0}")]
    Client(#[from] KafkaError),
    #[error("kafka: {failed} of {sent} records were not delivered (first error: {first})")]
    Undelivered {
        failed: u64,
        sent: u64,
        first: String,
    },
    #[error("kafka: topic {0} does not exist")]
    NoTopic(String),
    #[error("kafka: the cluster refused our credentials: {0}")]
    Authentication(String),
}

/// Counts deliveries as the broker acknowledges them.
#[derive(Default)]
pub struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    /// Set when the cluster rejects the credentials: librdkafka keeps retrying, but no record
    /// will get through until an operator fixes the configuration, so callers stop.
    authentication: std::sync::Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            if let Ok(mut first) = self.authentication.lock() {
                first.get_or_insert_with(|| reason.to_owned());
            }
        }
        tracing::error!(%error, reason, "kafka client error");
    }
}

impl DeliveryCounter {
    fn authentication_failure(&self) -> Option<String> {
        self.authentication.lock().ok().and_then(|a| a.clone())
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Arc<Deliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, awaited: Arc<Deliveries>) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                awaited.pending.fetch_sub(1, Ordering::Release);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                // Stays pending: whoever waits on it must wait for good (a restart of the
                // gateway reads the spooled segment back and sends what the topics lack).
                awaited.failed.store(true, Ordering::Release);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

/// Records sent on behalf of something that must wait until the broker has every one of them:
/// a sealed archive segment leaves the spool only then, so that a gateway killed before the
/// broker's confirmation finds the segment in its spool on restart and sends what the topics
/// lack. Waiting in the producer instead (a flush at each roll) would stall the connection
/// through a broker outage, and under steady load librdkafka's queue never drains.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Records sent and not yet acknowledged, plus a [`DeliveryHold`] per sender still sending.
    pending: AtomicU64,
    /// A record failed: the broker may never have it.
    failed: AtomicBool,
}

impl Deliveries {
    /// Keeps [`Deliveries::all_acknowledged`] false until the hold is dropped: a reader holds
    /// its segment's deliveries from the append until every record of the read is sent.
    pub fn hold(self: &Arc<Deliveries>) -> DeliveryHold {
        self.pending.fetch_add(1, Ordering::Relaxed);
        DeliveryHold(self.clone())
    }

    /// No hold is left and the broker acknowledged every record sent, none failed.
    pub fn all_acknowledged(&self) -> bool {
        !self.failed.load(Ordering::Acquire) && self.pending.load(Ordering::Acquire) == 0
    }
}

/// See [`Deliveries::hold`].
#[derive(Debug)]
pub struct DeliveryHold(Arc<Deliveries>);

impl DeliveryHold {
    pub fn deliveries(&self) -> &Arc<Deliveries> {
        &self.0
    }
}

impl Drop for DeliveryHold {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Release);
    }
}

/// How long one wait of [`RecordProducer::flush`] for delivery reports lasts.
const FLUSH_POLL: Duration = Duration::from_millis(1);

/// The one producer of every record eod writes to Kafka (trade envelopes, prices, reference
/// records, dead letters): idempotent, acks=all, and it never drops a record: a full local
/// queue makes the caller wait (backpressure), and `flush` reports any record the broker did
/// not take.
pub struct RecordProducer {
    producer: BaseProducer<DeliveryCounter>,
    sent: AtomicU64,
    /// Plain protobuf, or framed with Schema Registry ids on the protobuf topics.
    wire: WireFormat,
    /// The deliveries of records nobody waits on one by one (every record names one).
    unawaited: Arc<Deliveries>,
}

impl RecordProducer {
    pub fn new(kafka: &KafkaConnection) -> Result<RecordProducer, KafkaClientError> {
        let producer = kafka
            .client_config_over(&[
                ("linger.ms", "1"),
                ("batch.num.messages", "10000"),
                ("queue.buffering.max.messages", "200000"),
                ("message.timeout.ms", "60000"),
            ])
            // Not the operator's to loosen: nothing lost, nothing duplicated by a retry.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(DeliveryCounter::default())?;
        Ok(RecordProducer {
            producer,
            sent: AtomicU64::new(0),
            wire: WireFormat::default(),
            unawaited: Arc::default(),
        })
    }

    /// Writes records in `wire`'s format from now on.
    pub fn with_wire_format(mut self, wire: WireFormat) -> RecordProducer {
        self.set_wire_format(wire);
        self
    }

    pub fn set_wire_format(&mut self, wire: WireFormat) {
        self.wire = wire;
    }

    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), KafkaClientError> {
        self.send_awaited(topic, key, payload, None)
    }

    /// [`RecordProducer::send`], the broker's acknowledgement counted in `awaited` as well.
    pub fn send_awaited(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        awaited: Option<&Arc<Deliveries>>,
    ) -> Result<(), KafkaClientError> {
        let payload = self.wire.frame(topic, payload);
        let awaited = awaited.unwrap_or(&self.unawaited);
        // Counted before the send: its report may come on another thread's poll at once. A
        // send that fails leaves it counted, and so what waits on it waiting.
        awaited.pending.fetch_add(1, Ordering::Relaxed);
        let mut record = BaseRecord::with_opaque_to(topic, awaited.clone())
            .key(key)
            .payload(payload.as_ref());
        loop {
            if let Some(reason) = self.producer.context().authentication_failure() {
                return Err(KafkaClientError::Authentication(reason));
            }
            match self.producer.send(record) {
                Ok(()) => {
                    let sent = self.sent.fetch_add(1, Ordering::Relaxed);
                    // Delivery reports are served in batches: a poll per record was a third
                    // of the producer's cost in the gateway's profile.
                    if sent.is_multiple_of(256) {
                        self.producer.poll(Duration::ZERO);
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }

    /// Serves the delivery reports that have arrived, without waiting. rdkafka's `poll` serves
    /// one event, one batch of reports of one partition, per call: a call every 200 ms fell
    /// behind a gateway's reports at 1,000 msg/s over 12 partitions, and the archive segments
    /// that wait on them with it. So it polls while that makes the count in flight shrink.
    pub fn poll_deliveries(&self) {
        let mut in_flight = self.producer.in_flight_count();
        while in_flight > 0 {
            self.producer.poll(Duration::ZERO);
            let now = self.producer.in_flight_count();
            if now >= in_flight {
                return;
            }
            in_flight = now;
        }
    }

    /// Sends `original` to the dead-letter topic with its reason and the retries spent on it
    /// (0 for input refused on sight), keyed by where it came from.
    pub fn send_dead_letter(
        &self,
        topic: &str,
        original: Vec<u8>,
        reason: eod_proto::DeadLetterReason,
        detail: String,
        location: &str,
        retry_count: u32,
    ) -> Result<(), KafkaClientError> {
        let letter = dead_letter(original, reason, detail, location, retry_count);
        self.send(topic, location.as_bytes(), &letter)
    }

    /// Without waiting: whether every record sent so far is acknowledged (`Ok(false)` while
    /// some are in flight; an error once any has failed).
    pub fn all_delivered(&self) -> Result<bool, KafkaClientError> {
        self.poll_deliveries();
        if self.producer.in_flight_count() > 0 {
            return Ok(false);
        }
        self.delivery_outcome().map(|_| true)
    }

    /// Waits until every record sent so far is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<u64, KafkaClientError> {
        // Not `Producer::flush`: when anything is in flight it polls for 100 ms at a time, and
        // rdkafka's poll waits out its whole timeout even once the reports are in, so every
        // flush took at least 100 ms (it held a FIX session to 3,500 messages/s, and stalled
        // the gateway 100 ms in every 200 once the session flushed every 100 ms). Polling in
        // 1 ms slices until nothing is in flight ends the wait within a millisecond of the
        // last acknowledgement; rejected credentials end it at once.
        let deadline = std::time::Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 {
            if let Some(reason) = self.producer.context().authentication_failure() {
                return Err(KafkaClientError::Authentication(reason));
            }
            if std::time::Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut).into());
            }
            self.producer.poll(FLUSH_POLL);
        }
        self.delivery_outcome()
    }

    /// Without waiting: the first failure of any record sent so far, if one failed.
    pub fn delivery_failures(&self) -> Result<(), KafkaClientError> {
        self.delivery_outcome().map(|_| ())
    }

    /// Once nothing is in flight: the records delivered, or the first failure of any.
    fn delivery_outcome(&self) -> Result<u64, KafkaClientError> {
        let sent = self.sent.load(Ordering::Relaxed);
        let counter = self.producer.context();
        let failed = counter.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = counter
                .first_error
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            return Err(KafkaClientError::Undelivered {
                failed,
                sent,
                first,
            });
        }
        Ok(counter.delivered.load(Ordering::Relaxed))
    }
}

/// The dead-letter record of `original` (see [`RecordProducer::send_dead_letter`]), keyed by
/// `location` when sent.
pub fn dead_letter(
    original: Vec<u8>,
    reason: eod_proto::DeadLetterReason,
    detail: String,
    location: &str,
    retry_count: u32,
) -> Vec<u8> {
    let letter = eod_proto::DeadLetter {
        original,
        reason: reason as i32,
        detail,
        source_location: location.to_owned(),
        retry_count,
        time: eod_fix::time::now_utc_nanos(),
    };
    prost::Message::encode_to_vec(&letter)
}

/// How long the broker holds a fetch that finds no new record. A record arriving answers a
/// held fetch at once, so this bounds only how often an idle consumer asks: at 10 ms, an idle
/// `eod run -w 2` added 8-25% of a core to the broker's CPU, against 1% at 100 ms;
/// fill-to-view at 2k and 50k msg/s was the same in six pairs each. At 500 ms, p50 at 50k
/// msg/s was higher in five pairs of six (bench/RESULTS.md, 2026-12-07, eleventh session).
const FETCH_WAIT_MAX_MS: &str = "100";

fn consumer_config(kafka: &KafkaConnection, group_id: &str) -> ClientConfig {
    let mut config = kafka.client_config_over(&[
        ("session.timeout.ms", "6000"),
        ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS),
    ]);
    // Offsets are committed by hand, behind the durable sinks; reads start at the day's start.
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    config
}

/// A consumer reading exactly `partitions` of `topic` from their beginning.
pub fn assigned_consumer(
    kafka: &KafkaConnection,
    group_id: &str,
    assignments: &[(String, i32)],
) -> Result<BaseConsumer, KafkaClientError> {
    assigned_consumer_at(kafka, group_id, assignments, &[])
}

/// [`assigned_consumer`] reading each partition from `starts[i]` (the beginning where `starts`
/// has no entry or a non-positive one): a restart from a snapshot reads only the tail.
pub fn assigned_consumer_at(
    kafka: &KafkaConnection,
    group_id: &str,
    assignments: &[(String, i32)],
    starts: &[i64],
) -> Result<BaseConsumer, KafkaClientError> {
    let consumer: BaseConsumer = consumer_config(kafka, group_id).create()?;
    let mut list = TopicPartitionList::new();
    for (slot, (topic, partition)) in assignments.iter().enumerate() {
        let start = match starts.get(slot) {
            Some(next) if *next > 0 => Offset::Offset(*next),
            _ => Offset::Beginning,
        };
        list.add_partition_offset(topic, *partition, start)?;
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// A client for metadata and watermark queries only: it is assigned nothing and reads nothing.
pub fn metadata_consumer(kafka: &KafkaConnection) -> Result<BaseConsumer, KafkaClientError> {
    Ok(consumer_config(kafka, "eod-metadata").create()?)
}

/// Number of partitions of `topic`.
pub fn partition_count(
    kafka: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaClientError> {
    let consumer = metadata_consumer(kafka)?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        _ => Err(KafkaClientError::NoTopic(topic.to_owned())),
    }
}

/// Where the records of `topic` written since `since` (all of them without it) say they came
/// from, read to the end of each partition: `place` maps a record's protobuf bytes (a Schema
/// Registry header taken off) to its place, or skips it.
pub fn places_since(
    kafka: &KafkaConnection,
    topic: &str,
    since: Option<std::time::SystemTime>,
    timeout: Duration,
    place: impl Fn(&[u8]) -> Option<String>,
) -> Result<std::collections::HashSet<String>, KafkaClientError> {
    use rdkafka::Message as _;
    let partitions = partition_count(kafka, topic, timeout)?;
    let assignments: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_owned(), p)).collect();
    let metadata = metadata_consumer(kafka)?;
    let ends = end_offsets(&metadata, &assignments, timeout)?;
    let starts = match since {
        None => vec![0; assignments.len()],
        Some(since) => offsets_since(&metadata, &assignments, &ends, since, timeout)?,
    };
    let consumer = assigned_consumer_at(kafka, "eod-places", &assignments, &starts)?;
    let mut next = starts;
    let mut places = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + timeout;
    while next.iter().zip(&ends).any(|(n, end)| n < end) {
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut).into());
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        if let Ok(slot) = usize::try_from(message.partition()) {
            if let Some(n) = next.get_mut(slot) {
                *n = message.offset() + 1;
            }
        }
        let payload = message.payload().unwrap_or_default();
        let Ok((_, body)) = crate::schema_registry::split(payload) else {
            continue;
        };
        if let Some(found) = place(body) {
            places.insert(found);
        }
    }
    Ok(places)
}

/// The first offset of each partition whose record was written at or after `since` (its end
/// where none was).
fn offsets_since(
    metadata: &BaseConsumer,
    assignments: &[(String, i32)],
    ends: &[i64],
    since: std::time::SystemTime,
    timeout: Duration,
) -> Result<Vec<i64>, KafkaClientError> {
    let millis = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut list = TopicPartitionList::new();
    for (topic, partition) in assignments {
        list.add_partition_offset(topic, *partition, Offset::Offset(millis))?;
    }
    let found = metadata.offsets_for_times(list, timeout)?;
    Ok(assignments
        .iter()
        .zip(ends)
        .map(|((topic, partition), end)| {
            match found.find_partition(topic, *partition).map(|p| p.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => *end,
            }
        })
        .collect())
}

/// A dead letter's place: where its bad unit came from (`source_location`); for
/// [`places_since`].
pub fn dead_letter_place(body: &[u8]) -> Option<String> {
    <eod_proto::DeadLetter as prost::Message>::decode(body)
        .ok()
        .map(|letter| letter.source_location)
}

/// A trade envelope's place: where its FIX bytes are archived (`key@offset`); for
/// [`places_since`].
pub fn trade_place(body: &[u8]) -> Option<String> {
    let envelope = eod_proto::borrowed::BorrowedEnvelope::decode(body).ok()?;
    let source = envelope.source?;
    Some(format!("{}@{}", source.object_key, source.offset))
}

/// The offset one past the last record of each partition, now.
pub fn end_offsets(
    consumer: &BaseConsumer,
    assignments: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<i64>, KafkaClientError> {
    assignments
        .iter()
        .map(|(topic, partition)| Ok(consumer.fetch_watermarks(topic, *partition, timeout)?.1))
        .collect()
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(
    kafka: &KafkaConnection,
    topics: &[(&str, i32)],
) -> Result<(), KafkaClientError> {
    ensure_topics_with(kafka, topics, &[]).await
}

/// Creates `topics` and the log-compacted `compacted` ones (the last record per key is kept
/// forever: reference data) where missing.
pub async fn ensure_topics_with(
    kafka: &KafkaConnection,
    topics: &[(&str, i32)],
    compacted: &[(&str, i32)],
) -> Result<(), KafkaClientError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .chain(compacted.iter().map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
        }))
        .collect();
    let results = admin.create_topics(&new, &AdminOptions::new()).await?;
    each_topic_done(results, Code::TopicAlreadyExists, "creating")
}

/// Ok when every topic's operation succeeded or found the topic already as asked (`already`);
/// otherwise the first other failure, logged with its topic.
fn each_topic_done(
    results: Vec<rdkafka::admin::TopicResult>,
    already: Code,
    doing: &str,
) -> Result<(), KafkaClientError> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if code == already => {}
            Err((topic, code)) => {
                tracing::error!(%topic, ?code, "{doing} topic failed");
                return Err(KafkaError::AdminOp(code).into());
            }
        }
    }
    Ok(())
}

/// Deletes `topics` (one that does not exist is no error): for runs that make topics of their
/// own, such as the benchmarks. A broker holding the partitions of every run before slowed
/// each run after it (bench/RESULTS.md, 2026-12-07: a Kafka bench's p50 22.5 ms over bare
/// Kafka's with 2,462 partition directories, 9.8 ms on a fresh broker).
pub async fn delete_topics(
    kafka: &KafkaConnection,
    topics: &[&str],
) -> Result<(), KafkaClientError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let results = admin.delete_topics(topics, &AdminOptions::new()).await?;
    each_topic_done(results, Code::UnknownTopicOrPartition, "deleting")
}

/// The group's committed offset per partition (-1 where none).
pub fn committed_offsets(
    kafka: &KafkaConnection,
    group_id: &str,
    assignments: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<i64>, KafkaClientError> {
    let consumer: BaseConsumer = consumer_config(kafka, group_id).create()?;
    let mut list = TopicPartitionList::new();
    for (topic, partition) in assignments {
        list.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    Ok(assignments
        .iter()
        .map(|(topic, partition)| {
            match committed
                .find_partition(topic, *partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => -1,
            }
        })
        .collect())
}
