//! Prometheus metrics of one process: the input side's (`SourceMetrics`), the dataflow's
//! epochs and freshness, and the sinks'. The query crate
//! adds the view gauges to the same registry and serves it at `/metrics`.

use std::sync::Arc;

use eod_sources::metrics::SourceMetrics;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    /// Framing, outcomes, archive, FIX session and Kafka in and out.
    pub sources: SourceMetrics,
    pub epochs_closed: IntCounter,
    /// Epochs entered but not yet complete at every worker (this process's view).
    pub epochs_in_flight: IntGauge,
    /// Closed epochs not yet held by every durable sink (offsets wait for these).
    pub epochs_not_durable: IntGauge,
    /// From the gateway receiving a trade to the views reflecting it.
    pub fill_to_view: Histogram,
    /// Age of the oldest closed epoch the views do not reflect yet (0 when caught up).
    pub frontier_lag: Gauge,
    /// From an epoch's close to the views reflecting it (worker 0's epochs): the dataflow's
    /// share of fill-to-view, apart from the wait for the epoch to close.
    pub epoch_compute: Histogram,
    pub sinks: eod_sinks::SinkMetrics,
    pub snapshots: crate::snapshot::SnapshotMetrics,
    /// Free memory returned to the system after bursts.
    pub memory: crate::memory::MemoryMetrics,
}

impl Metrics {
    /// Every metric this process can export, whether or not it has a sample yet (a labelled
    /// family appears on `/metrics` only once it has one). Dashboards are checked against it.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let snapshots = [
            &self.snapshots.parts_written as &dyn Collector,
            &self.snapshots.bytes_written,
            &self.snapshots.write_failures,
            &self.snapshots.pending_bytes,
            &self.snapshots.last_cut,
            &self.snapshots.rejected,
            &self.snapshots.restored_records,
            &self.snapshots.books_backlog,
        ];
        let collectors: [&dyn Collector; 8] = [
            &self.sources,
            &self.epochs_closed,
            &self.epochs_in_flight,
            &self.epochs_not_durable,
            &self.fill_to_view,
            &self.frontier_lag,
            &self.epoch_compute,
            &self.sinks,
        ];
        collectors
            .iter()
            .chain(&snapshots)
            .chain(&self.memory.collectors())
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect()
    }

    pub fn new() -> Result<Arc<Metrics>, prometheus::Error> {
        let registry = Registry::new();
        let sources = SourceMetrics::register(&registry)?;
        let epochs_closed = IntCounter::with_opts(Opts::new(
            "eod_dataflow_epochs_total",
            "Dataflow epochs closed by the sources",
        ))?;
        registry.register(Box::new(epochs_closed.clone()))?;
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
        let epoch_compute = Histogram::with_opts(
            HistogramOpts::new(
                "eod_dataflow_epoch_compute_seconds",
                "From an epoch's close to the views reflecting it",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0,
            ]),
        )?;
        registry.register(Box::new(epoch_compute.clone()))?;
        let sinks = eod_sinks::SinkMetrics::register(&registry)?;
        let snapshots = crate::snapshot::SnapshotMetrics::register(&registry)?;
        let memory = crate::memory::MemoryMetrics::register(&registry)?;
        Ok(Arc::new(Metrics {
            registry,
            sources,
            epochs_closed,
            epochs_in_flight,
            epochs_not_durable,
            fill_to_view,
            frontier_lag,
            epoch_compute,
            sinks,
            snapshots,
            memory,
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

    /// The provisioned Grafana dashboards may only chart metrics the program exports (or,
    /// on the infrastructure dashboard, the Kafka and Redis exporters' that Prometheus
    /// scrapes); together they chart every stage the operations issue lists, and the
    /// per-service ones the operators' issue asks for exist.
    #[test]
    fn grafana_dashboards_use_only_exported_metrics() {
        let metrics = Metrics::new().unwrap();
        let views = eod_queries::QueryMetrics::register(&metrics.registry).unwrap();
        let known: BTreeSet<String> = metrics.names().into_iter().chain(views.names()).collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/grafana/dashboards");
        let scraped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docker/prometheus/prometheus.yml"
        ))
        .unwrap();
        let mut charted = BTreeSet::new();
        let mut uids = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let dashboard: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let uid = dashboard["uid"].as_str().unwrap().to_owned();
            assert!(uids.insert(uid.clone()), "uid {uid} twice");
            for panel in dashboard["panels"].as_array().unwrap() {
                if panel["type"] == "row" {
                    continue;
                }
                let targets = panel["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
                for target in targets {
                    let expr = target["expr"].as_str().unwrap();
                    let names = referenced(expr, &known);
                    if names.is_empty() {
                        // An exporter's metric, on the dashboard of the infrastructure.
                        let exporter = ["kafka_", "redis_"]
                            .into_iter()
                            .find(|prefix| expr.contains(prefix));
                        assert!(
                            uid == "eod-infrastructure" && exporter.is_some(),
                            "no eod metric in {expr} ({uid})"
                        );
                        let job = format!("{}-exporter", exporter.unwrap().trim_end_matches('_'));
                        assert!(scraped.contains(&job), "Prometheus does not scrape {job}");
                    }
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
        }
        for uid in [
            "eod-pipeline",
            "eod-gateway",
            "eod-pnl",
            "eod-books",
            "eod-infrastructure",
        ] {
            assert!(uids.contains(uid), "no dashboard {uid}");
        }
        for stage in [
            "eod_messages_total",
            "eod_dead_letters_total",
            "eod_archive_bytes_total",
            "eod_archive_spool_segments",
            "eod_archive_spool_bytes",
            "eod_kafka_records_sent_total",
            "eod_kafka_records_consumed_total",
            "eod_kafka_consumer_lag",
            "eod_dataflow_epochs_in_flight",
            "eod_dataflow_frontier_lag_seconds",
            "eod_fill_to_view_seconds",
            "eod_sink_batch_seconds",
            "eod_sink_batch_rows",
            "eod_sink_breaker_state",
            "eod_sink_spilled_rows",
            "eod_view_positions",
        ] {
            assert!(charted.contains(stage), "no dashboard charts {stage}");
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
