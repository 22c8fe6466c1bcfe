//! Prometheus metrics of the sinks, registered into the process's registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct SinkMetrics {
    pub rows_written: IntCounterVec,
    pub batches: IntCounterVec,
    pub batch_seconds: HistogramVec,
    pub batch_rows: HistogramVec,
    /// Failed attempts, by kind: unavailable (the store is down) or refused (the data).
    pub retries: IntCounterVec,
    /// Rows the store refused after retries, sent to the dead-letter queue.
    pub refused_rows: IntCounterVec,
    /// 1 while the last attempt reached the store, 0 while it is unreachable.
    pub store_up: IntGaugeVec,
    /// Circuit breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// Full resynchronisations after an outage.
    pub resyncs: IntCounterVec,
    /// Rows waiting on disk for the store (the sink's spill).
    pub spilled_rows: IntGaugeVec,
}

impl SinkMetrics {
    pub fn register(registry: &Registry) -> Result<SinkMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["sink"])?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let store_up = IntGaugeVec::new(
            Opts::new(
                "eod_sink_store_up",
                "Whether the sink's store answered its last attempt",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(store_up.clone()))?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "eod_sink_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(breaker_state.clone()))?;
        let spilled_rows = IntGaugeVec::new(
            Opts::new(
                "eod_sink_spilled_rows",
                "Rows waiting on disk because the store is behind",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(spilled_rows.clone()))?;
        Ok(SinkMetrics {
            rows_written: counter("eod_sink_rows_total", "Rows written durably", &["sink"])?,
            batches: counter("eod_sink_batches_total", "Batches committed", &["sink"])?,
            batch_seconds: histogram(
                "eod_sink_batch_seconds",
                "Time to commit one batch, retries included",
                vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                ],
            )?,
            batch_rows: histogram(
                "eod_sink_batch_rows",
                "Rows per committed batch",
                vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0],
            )?,
            retries: counter(
                "eod_sink_retries_total",
                "Failed write attempts",
                &["sink", "kind"],
            )?,
            refused_rows: counter(
                "eod_sink_refused_rows_total",
                "Rows refused by the store and dead-lettered",
                &["sink"],
            )?,
            store_up,
            breaker_state,
            resyncs: counter(
                "eod_sink_resyncs_total",
                "Full resynchronisations of a sink after an outage",
                &["sink"],
            )?,
            spilled_rows,
        })
    }
}

/// Lets the process list the sink metrics among its own (`desc`); they are registered one by
/// one, so `collect` is never called by the registry and only serves completeness.
impl prometheus::core::Collector for SinkMetrics {
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

impl SinkMetrics {
    fn collectors(&self) -> [&dyn prometheus::core::Collector; 10] {
        [
            &self.rows_written,
            &self.batches,
            &self.batch_seconds,
            &self.batch_rows,
            &self.retries,
            &self.refused_rows,
            &self.store_up,
            &self.breaker_state,
            &self.resyncs,
            &self.spilled_rows,
        ]
    }
}
