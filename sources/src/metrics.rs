//! Prometheus metrics of the input side: framing and classification, the raw archive, the
//! FIX session and Kafka in and out. The gateway and the runtime's intake both count here, so
//! one family means one thing whichever process exports it.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct SourceMetrics {
    /// Framed units read (messages and unframeable chunks).
    pub messages_read: IntCounter,
    /// Outcome of each unit: fill, bust, correction, skipped, dead_letter.
    pub outcomes: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub bytes_read: IntCounter,
    pub segments_read: IntCounter,
    /// Records between a partition's end and what this process has read of it.
    pub consumer_lag: IntGaugeVec,
    /// 1 while the lag monitor's last round reached the brokers, 0 when it did not.
    pub kafka_up: IntGauge,
    /// Records handed to the Kafka producer, by topic.
    pub kafka_sent: IntCounterVec,
    /// Records read from Kafka, by topic.
    pub kafka_consumed: IntCounterVec,
    /// Raw bytes appended (and fsynced) to the archive spool.
    pub archive_bytes: IntCounter,
    /// How long each fsync of the spool took before its bytes were decoded: its count against
    /// `archive_bytes` says how many bytes one sync makes durable.
    pub archive_syncs: Histogram,
    /// Closed segments uploaded to the archive store.
    pub archive_segments_uploaded: IntCounter,
    /// Closed segments waiting in the spool for the store.
    pub archive_spool_segments: IntGauge,
    /// Bytes in the spool not yet uploaded.
    pub archive_spool_bytes: IntGauge,
    /// Full segments kept from the uploader until the broker has every record made from them.
    pub archive_segments_awaiting_delivery: IntGauge,
    /// Reads held back because the spool was at its cap (the sender is pushed back).
    pub archive_spool_full: IntCounter,
    /// FIX Logons refused (unknown counterparty, wrong BeginString or address...), by reason.
    pub fix_logons_refused: IntCounterVec,
    /// Dead letters a restarted gateway sent for bad units a previous run archived but whose
    /// letters the broker never confirmed.
    pub dead_letters_recovered: IntCounter,
    /// Trades a restarted gateway published from spooled units a previous run archived but
    /// whose envelopes the broker never confirmed.
    pub trades_recovered: IntCounter,
    /// The Schema Registry id the records written to each topic carry (absent when plain).
    pub schema_ids: IntGaugeVec,
    /// Writer schema ids looked up in the registry on read, by outcome (protobuf, unknown).
    pub schema_lookups: IntCounterVec,
}

impl SourceMetrics {
    pub fn register(registry: &Registry) -> Result<SourceMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let labelled = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "eod_kafka_consumer_lag",
                "Records not yet read, per assigned partition",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let archive_spool_segments = IntGauge::with_opts(Opts::new(
            "eod_archive_spool_segments",
            "Closed archive segments waiting in the spool for the store",
        ))?;
        registry.register(Box::new(archive_spool_segments.clone()))?;
        let kafka_up = IntGauge::with_opts(Opts::new(
            "eod_kafka_up",
            "Whether the last round of the consumer-lag monitor reached the brokers",
        ))?;
        registry.register(Box::new(kafka_up.clone()))?;
        let archive_spool_bytes = IntGauge::with_opts(Opts::new(
            "eod_archive_spool_bytes",
            "Bytes in the archive spool not yet uploaded",
        ))?;
        registry.register(Box::new(archive_spool_bytes.clone()))?;
        let archive_segments_awaiting_delivery = IntGauge::with_opts(Opts::new(
            "eod_archive_segments_awaiting_delivery",
            "Full archive segments kept in the spool until Kafka acknowledges their records",
        ))?;
        registry.register(Box::new(archive_segments_awaiting_delivery.clone()))?;
        let archive_syncs = Histogram::with_opts(
            HistogramOpts::new(
                "eod_archive_sync_seconds",
                "Time to fsync a read's bytes to the archive spool before they are decoded",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 16)?),
        )?;
        registry.register(Box::new(archive_syncs.clone()))?;
        let schema_ids = IntGaugeVec::new(
            Opts::new(
                "eod_schema_registry_id",
                "Schema Registry id of the records written to each topic",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(schema_ids.clone()))?;
        Ok(SourceMetrics {
            messages_read: counter(
                "eod_messages_read_total",
                "Framed FIX messages (and unframeable chunks) read",
            )?,
            outcomes: labelled("eod_messages_total", "Messages by outcome", "outcome")?,
            dead_letters: labelled("eod_dead_letters_total", "Dead letters by reason", "reason")?,
            bytes_read: counter("eod_input_bytes_total", "Raw input bytes read")?,
            segments_read: counter(
                "eod_archive_segments_read_total",
                "Archive segments replayed",
            )?,
            consumer_lag,
            kafka_up,
            kafka_sent: labelled(
                "eod_kafka_records_sent_total",
                "Records handed to the Kafka producer",
                "topic",
            )?,
            kafka_consumed: labelled(
                "eod_kafka_records_consumed_total",
                "Records read from Kafka",
                "topic",
            )?,
            archive_bytes: counter(
                "eod_archive_bytes_total",
                "Raw bytes appended and fsynced to the archive spool",
            )?,
            archive_syncs,
            archive_segments_uploaded: counter(
                "eod_archive_segments_uploaded_total",
                "Closed archive segments uploaded to the store",
            )?,
            archive_spool_segments,
            archive_spool_bytes,
            archive_segments_awaiting_delivery,
            archive_spool_full: counter(
                "eod_archive_spool_full_total",
                "Reads held back while the archive spool was at its cap (--spool-max-bytes)",
            )?,
            fix_logons_refused: labelled(
                "eod_fix_logons_refused_total",
                "FIX Logons refused, by reason (unknown_sender, wrong_begin_string, ...)",
                "reason",
            )?,
            trades_recovered: counter(
                "eod_trades_recovered_total",
                "Trades of spooled units a previous gateway run had not delivered",
            )?,
            dead_letters_recovered: counter(
                "eod_dead_letters_recovered_total",
                "Dead letters of spooled bad units a previous gateway run had not delivered",
            )?,
            schema_ids,
            schema_lookups: labelled(
                "eod_schema_registry_lookups_total",
                "Writer schema ids looked up in the Schema Registry on read, by outcome",
                "outcome",
            )?,
        })
    }

    /// Adds a stream's outcome counts: units read, bytes, outcomes, dead letters by reason.
    pub fn count_outcomes(&self, counts: &eod_fix::Counts) {
        self.messages_read.inc_by(counts.read);
        self.bytes_read.inc_by(counts.bytes);
        for (outcome, n) in [
            ("fill", counts.fills),
            ("bust", counts.busts),
            ("correction", counts.corrections),
            ("skipped", counts.skipped),
        ] {
            self.outcomes.with_label_values(&[outcome]).inc_by(n);
        }
        for (reason, n) in &counts.dead {
            self.count_dead_letters(reason.label(), *n);
        }
    }

    pub fn count_dead_letters(&self, reason: &str, n: u64) {
        self.outcomes.with_label_values(&["dead_letter"]).inc_by(n);
        self.dead_letters.with_label_values(&[reason]).inc_by(n);
    }
}

impl prometheus::core::Collector for SourceMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

impl SourceMetrics {
    fn collectors(&self) -> [&dyn prometheus::core::Collector; 21] {
        [
            &self.messages_read,
            &self.outcomes,
            &self.dead_letters,
            &self.bytes_read,
            &self.segments_read,
            &self.consumer_lag,
            &self.kafka_up,
            &self.kafka_sent,
            &self.kafka_consumed,
            &self.archive_bytes,
            &self.archive_syncs,
            &self.archive_segments_uploaded,
            &self.archive_spool_segments,
            &self.archive_spool_bytes,
            &self.archive_segments_awaiting_delivery,
            &self.archive_spool_full,
            &self.fix_logons_refused,
            &self.dead_letters_recovered,
            &self.trades_recovered,
            &self.schema_ids,
            &self.schema_lookups,
        ]
    }
}
