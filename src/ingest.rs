//! `eod ingest`: FIX from an archive (or any framed file) to Kafka. Each message is validated
//! and decoded; trades go to the trades topic as `TradeEnvelope`s keyed by symbol, with their
//! raw bytes and where they came from; everything else that is not a valid message goes to the
//! dead-letter topic as a `DeadLetter` with its reason. Nothing is dropped silently.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use eod_dataflow::PriceUpdate;
use eod_proto::{ArchiveRef, DeadLetter, DeadLetterReason, PriceKind};
use eod_sources::archive::Archive;
use eod_sources::envelope::partition_key;
use eod_sources::fix::{Decoded, Decoder, Framed, Framer};
use eod_sources::kafka::{EnvelopeProducer, Topics};
use prost::Message;

use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub archive: String,
    pub brokers: String,
    pub topics: Topics,
    pub gateway_id: String,
    pub prices: Vec<PriceUpdate>,
    pub max_message: usize,
}

#[derive(Debug, Default)]
pub struct IngestSummary {
    pub read: u64,
    pub trades: u64,
    pub skipped: u64,
    pub dead_letters: u64,
    pub prices: u64,
    pub delivered: u64,
    pub elapsed: Duration,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

pub fn run_ingest(options: IngestOptions, metrics: Arc<Metrics>) -> Result<IngestSummary> {
    let started = Instant::now();
    let archive = Archive::open(&options.archive)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let producer = EnvelopeProducer::new(&options.brokers)?;
    let mut summary = IngestSummary::default();
    let mut decoder = Decoder::new();
    for segment in runtime.block_on(archive.segments())? {
        let _span = tracing::info_span!("ingest_segment", key = %segment.key).entered();
        let bytes = runtime.block_on(archive.read(&segment.key))?;
        metrics.segments_read.inc();
        metrics.bytes_read.inc_by(bytes.len() as u64);
        let mut framer = Framer::new(options.max_message);
        framer.push(&bytes);
        framer.finish();
        while let Some(frame) = framer.next_frame() {
            summary.read += 1;
            metrics.messages_read.inc();
            let dead = match frame {
                Framed::Message { bytes, offset } => match decoder.decode(bytes) {
                    Ok(Decoded::Trade(mut envelope)) => {
                        envelope.raw_fix = bytes.to_vec();
                        envelope.receive_time = now_nanos();
                        envelope.gateway_id = options.gateway_id.clone();
                        envelope.source = Some(ArchiveRef {
                            object_key: segment.key.clone(),
                            offset,
                            length: bytes.len() as u32,
                        });
                        let key = partition_key(&envelope).as_bytes().to_vec();
                        producer.send(&options.topics.trades, &key, &envelope.encode_to_vec())?;
                        summary.trades += 1;
                        metrics.outcomes.with_label_values(&["trade"]).inc();
                        None
                    }
                    Ok(Decoded::NotATrade { .. }) => {
                        summary.skipped += 1;
                        metrics.outcomes.with_label_values(&["skipped"]).inc();
                        None
                    }
                    Err(reject) => Some((reject.reason, reject.detail, bytes, offset)),
                },
                Framed::Dead {
                    bytes,
                    offset,
                    reason,
                    detail,
                } => Some((reason, detail, bytes, offset)),
            };
            if let Some((reason, detail, bytes, offset)) = dead {
                let location = format!("{}@{offset}", segment.key);
                let letter = DeadLetter {
                    original: bytes.to_vec(),
                    reason: reason as i32,
                    detail,
                    source_location: location.clone(),
                    retry_count: 0,
                    time: now_nanos(),
                };
                producer.send(
                    &options.topics.dead_letters,
                    location.as_bytes(),
                    &letter.encode_to_vec(),
                )?;
                summary.dead_letters += 1;
                metrics.outcomes.with_label_values(&["dead_letter"]).inc();
                metrics
                    .dead_letters
                    .with_label_values(&[reason.label()])
                    .inc();
            }
        }
    }
    for price in &options.prices {
        let update = eod_proto::PriceUpdate {
            symbol: price.symbol.to_string(),
            kind: proto_price_kind(price.kind) as i32,
            price_mantissa: price.price,
            time: price.time,
        };
        producer.send(
            &options.topics.prices,
            update.symbol.as_bytes(),
            &update.encode_to_vec(),
        )?;
        summary.prices += 1;
    }
    summary.delivered = producer
        .flush(Duration::from_secs(60))
        .context("flushing to Kafka")?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

pub fn proto_price_kind(kind: eod_dataflow::PriceKind) -> PriceKind {
    match kind {
        eod_dataflow::PriceKind::OfficialClose => PriceKind::OfficialClose,
        eod_dataflow::PriceKind::Bid => PriceKind::Bid,
        eod_dataflow::PriceKind::Ask => PriceKind::Ask,
        eod_dataflow::PriceKind::PrevClose => PriceKind::PrevClose,
    }
}

/// A price read back from the prices topic, checked like a trade envelope.
pub fn price_from_bytes(payload: &[u8]) -> Result<PriceUpdate, (DeadLetterReason, String)> {
    let update = eod_proto::PriceUpdate::decode(payload).map_err(|e| {
        (
            DeadLetterReason::Deserialization,
            format!("not a PriceUpdate: {e}"),
        )
    })?;
    let kind = match PriceKind::try_from(update.kind) {
        Ok(PriceKind::OfficialClose) => eod_dataflow::PriceKind::OfficialClose,
        Ok(PriceKind::Bid) => eod_dataflow::PriceKind::Bid,
        Ok(PriceKind::Ask) => eod_dataflow::PriceKind::Ask,
        Ok(PriceKind::PrevClose) => eod_dataflow::PriceKind::PrevClose,
        _ => {
            return Err((
                DeadLetterReason::InvalidValue,
                format!("unknown price kind {}", update.kind),
            ))
        }
    };
    if update.symbol.is_empty() {
        return Err((
            DeadLetterReason::MissingField,
            "price update has no symbol".into(),
        ));
    }
    if update.price_mantissa <= 0 {
        return Err((
            DeadLetterReason::InvalidValue,
            format!("price {} is not positive", update.price_mantissa),
        ));
    }
    Ok(PriceUpdate {
        symbol: update.symbol.into(),
        kind,
        price: update.price_mantissa,
        time: update.time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_trip_and_bad_ones_are_refused() {
        let update = eod_proto::PriceUpdate {
            symbol: "AAPL".into(),
            kind: PriceKind::Bid as i32,
            price_mantissa: 5,
            time: 9,
        };
        let back = price_from_bytes(&update.encode_to_vec()).unwrap();
        assert_eq!(
            (back.symbol.as_str(), back.kind, back.price, back.time),
            ("AAPL", eod_dataflow::PriceKind::Bid, 5, 9)
        );
        assert_eq!(proto_price_kind(back.kind), PriceKind::Bid);
        assert_eq!(
            price_from_bytes(b"\xff\xff").unwrap_err().0,
            DeadLetterReason::Deserialization
        );
        assert_eq!(
            price_from_bytes(&[]).unwrap_err().0,
            DeadLetterReason::InvalidValue
        );
    }
}
