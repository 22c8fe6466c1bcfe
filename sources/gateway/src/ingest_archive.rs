//! Replays an existing archive through a gateway (its objects are the archive: no second
//! copy is written).

use std::time::Instant;

use eod_dataflow::PriceUpdate;
use eod_sources::archive::Archive;
use eod_sources::kafka::{KafkaConnection, Topics};
use eod_sources::metrics::SourceMetrics;
use eod_sources::schema_registry::WireFormat;

use crate::error::{io, GatewayError};
use crate::gateway::{Gateway, IngestSummary};

#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub archive: String,
    pub kafka: KafkaConnection,
    pub topics: Topics,
    pub gateway_id: String,
    pub prices: Vec<PriceUpdate>,
    pub max_message: usize,
    /// Plain protobuf, or framed with Schema Registry ids.
    pub wire: WireFormat,
}

/// Publishes every segment of the archive, then the prices, and waits for Kafka.
pub fn run_ingest(
    options: IngestOptions,
    metrics: SourceMetrics,
) -> Result<IngestSummary, GatewayError> {
    let started = Instant::now();
    let archive = Archive::open(&options.archive)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting an I/O runtime"))?;
    let gateway = Gateway::new(
        &options.kafka,
        options.topics.clone(),
        &options.gateway_id,
        metrics.clone(),
        None,
        options.max_message,
    )?
    .with_wire_format(options.wire.clone());
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
