//! Prometheus metrics of the ingest-side stages (framing, decoding, epochs). The query crate
//! adds the view gauges to the same registry and serves it at `/metrics`.

use std::sync::Arc;

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Framed units read (messages and unframeable chunks).
    pub messages_read: IntCounter,
    /// Outcome of each unit: fill, bust, correction, skipped, dead_letter.
    pub outcomes: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub bytes_read: IntCounter,
    pub segments_read: IntCounter,
    pub epochs_closed: IntCounter,
    /// Epochs entered but not yet complete at every worker (this process's view).
    pub epochs_in_flight: IntGauge,
    /// Closed epochs not yet held by every durable sink (offsets wait for these).
    pub epochs_not_durable: IntGauge,
    /// Records between a partition's end and what this process has read of it.
    pub consumer_lag: IntGaugeVec,
    /// From the gateway receiving a trade to the views reflecting it.
    pub fill_to_view: Histogram,
    /// Age of the oldest closed epoch the views do not reflect yet (0 when caught up).
    pub frontier_lag: Gauge,
    /// Records handed to the Kafka producer, by topic.
    pub kafka_sent: IntCounterVec,
    /// Records read from Kafka, by topic.
    pub kafka_consumed: IntCounterVec,
    /// Raw bytes appended (and fsynced) to the archive spool.
    pub archive_bytes: IntCounter,
    /// Closed segments uploaded to the archive store.
    pub archive_segments_uploaded: IntCounter,
    /// Closed segments waiting in the spool for the store.
    pub archive_spool_segments: IntGauge,
    /// FIX Logons refused (unknown counterparty, wrong BeginString or address...), by reason.
    pub fix_logons_refused: IntCounterVec,
    pub sinks: eod_sinks::SinkMetrics,
}

impl Metrics {
    /// Every metric this process can export, whether or not it has a sample yet (a labelled
    /// family appears on `/metrics` only once it has one). Dashboards are checked against it.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 18] = [
            &self.messages_read,
            &self.outcomes,
            &self.dead_letters,
            &self.bytes_read,
            &self.segments_read,
            &self.epochs_closed,
            &self.epochs_in_flight,
            &self.epochs_not_durable,
            &self.consumer_lag,
            &self.fill_to_view,
            &self.frontier_lag,
            &self.kafka_sent,
            &self.kafka_consumed,
            &self.archive_bytes,
            &self.archive_segments_uploaded,
            &self.archive_spool_segments,
            &self.fix_logons_refused,
            &self.sinks,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect()
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
            self.outcomes.with_label_values(&["dead_letter"]).inc_by(*n);
            self.dead_letters
                .with_label_values(&[reason.label()])
                .inc_by(*n);
        }
    }

    pub fn new() -> Result<Arc<Metrics>, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let messages_read = counter(
            "eod_messages_read_total",
            "Framed FIX messages (and unframeable chunks) read",
        )?;
        let bytes_read = counter("eod_input_bytes_total", "Raw input bytes read")?;
        let segments_read = counter(
            "eod_archive_segments_read_total",
            "Archive segments replayed",
        )?;
        let epochs_closed = counter(
            "eod_dataflow_epochs_total",
            "Dataflow epochs closed by the sources",
        )?;
        let outcomes = IntCounterVec::new(
            Opts::new("eod_messages_total", "Messages by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        let dead_letters = IntCounterVec::new(
            Opts::new("eod_dead_letters_total", "Dead letters by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(dead_letters.clone()))?;
        let epochs_in_flight = IntGauge::with_opts(Opts::new(
            "eod_dataflow_epochs_in_flight",
            "Epochs entered but not yet complete",
        ))?;
        registry.register(Box::new(epochs_in_flight.clone()))?;
        let epochs_not_durable = IntGauge::with_opts(Opts::new(
            "eod_dataflow_epochs_not_durable",
            "Closed epochs not yet held by every durable sink",
        ))?;
        registry.register(Box::new(epochs_not_durable.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "eod_kafka_consumer_lag",
                "Records not yet read, per assigned partition",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let fill_to_view = Histogram::with_opts(
            HistogramOpts::new(
                "eod_fill_to_view_seconds",
                "Gateway receive to views reflecting the trade",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
        )?;
        registry.register(Box::new(fill_to_view.clone()))?;
        let frontier_lag = Gauge::with_opts(Opts::new(
            "eod_dataflow_frontier_lag_seconds",
            "Age of the oldest closed epoch the views do not reflect yet",
        ))?;
        registry.register(Box::new(frontier_lag.clone()))?;
        let by_topic = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["topic"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let kafka_sent = by_topic(
            "eod_kafka_records_sent_total",
            "Records handed to the Kafka producer",
        )?;
        let kafka_consumed = by_topic(
            "eod_kafka_records_consumed_total",
            "Records read from Kafka",
        )?;
        let archive_bytes = counter(
            "eod_archive_bytes_total",
            "Raw bytes appended and fsynced to the archive spool",
        )?;
        let archive_segments_uploaded = counter(
            "eod_archive_segments_uploaded_total",
            "Closed archive segments uploaded to the store",
        )?;
        let archive_spool_segments = IntGauge::with_opts(Opts::new(
            "eod_archive_spool_segments",
            "Closed archive segments waiting in the spool for the store",
        ))?;
        registry.register(Box::new(archive_spool_segments.clone()))?;
        let fix_logons_refused = IntCounterVec::new(
            Opts::new(
                "eod_fix_logons_refused_total",
                "FIX Logons refused, by reason (unknown_sender, wrong_begin_string, ...)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(fix_logons_refused.clone()))?;
        let sinks = eod_sinks::SinkMetrics::register(&registry)?;
        Ok(Arc::new(Metrics {
            frontier_lag,
            kafka_sent,
            kafka_consumed,
            archive_bytes,
            archive_segments_uploaded,
            archive_spool_segments,
            fix_logons_refused,
            registry,
            messages_read,
            outcomes,
            dead_letters,
            bytes_read,
            segments_read,
            epochs_closed,
            epochs_in_flight,
            epochs_not_durable,
            consumer_lag,
            fill_to_view,
            sinks,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `eod_*` names in a PromQL expression; histogram series map to their family.
    fn referenced(expr: &str, known: &BTreeSet<String>) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(start) = rest.find("eod_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| known.contains(*f)))
                .unwrap_or(name);
            names.push(family.to_owned());
            rest = &tail[end..];
        }
        names
    }

    /// The provisioned Grafana dashboard may only chart metrics the program exports, and it
    /// charts every stage the operations issue lists.
    #[test]
    fn grafana_dashboard_uses_only_exported_metrics() {
        let metrics = Metrics::new().unwrap();
        let views = eod_queries::QueryMetrics::register(&metrics.registry).unwrap();
        let known: BTreeSet<String> = metrics.names().into_iter().chain(views.names()).collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker/grafana/dashboards/eod.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(dashboard["uid"], "eod-pipeline");
        let mut charted = BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                let names = referenced(expr, &known);
                assert!(!names.is_empty(), "no eod metric in {expr}");
                for name in names {
                    assert!(
                        known.contains(&name),
                        "panel {} charts {name}, which eod does not export",
                        panel["title"]
                    );
                    charted.insert(name);
                }
            }
        }
        for stage in [
            "eod_messages_total",
            "eod_dead_letters_total",
            "eod_archive_bytes_total",
            "eod_archive_spool_segments",
            "eod_kafka_records_sent_total",
            "eod_kafka_records_consumed_total",
            "eod_kafka_consumer_lag",
            "eod_dataflow_epochs_in_flight",
            "eod_dataflow_frontier_lag_seconds",
            "eod_fill_to_view_seconds",
            "eod_sink_batch_seconds",
            "eod_sink_batch_rows",
            "eod_sink_breaker_state",
            "eod_view_positions",
        ] {
            assert!(
                charted.contains(stage),
                "the dashboard does not chart {stage}"
            );
        }
    }

    #[test]
    fn every_metric_is_listed_once() {
        let metrics = Metrics::new().unwrap();
        let names = metrics.names();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("eod_")), "{names:?}");
        assert!(names.contains(&"eod_sink_rows_total".to_owned()));
    }
}
