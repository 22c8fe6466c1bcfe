//! Prometheus metrics of the ingest-side stages (framing, decoding, epochs). The query crate
//! adds the view gauges to the same registry and serves it at `/metrics`.

use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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
    pub sinks: eod_sinks::SinkMetrics,
}

impl Metrics {
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
        let sinks = eod_sinks::SinkMetrics::register(&registry)?;
        Ok(Arc::new(Metrics {
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
