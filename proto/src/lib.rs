//! Wire types shared by every stage: the protobuf schema in `proto/trade_envelope.proto`.

pub mod borrowed;
pub mod decimal;

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/eod.v1.rs"));
}

pub use generated::*;

/// The schema's source text, as a Schema Registry holds it (message indexes count its
/// top-level messages in this order).
pub const SCHEMA: &str = include_str!("../proto/trade_envelope.proto");

impl DeadLetterReason {
    /// The stable lower-case name used in logs, metrics labels and JSON.
    pub fn label(self) -> &'static str {
        match self {
            DeadLetterReason::Unspecified => "unspecified",
            DeadLetterReason::Checksum => "checksum",
            DeadLetterReason::BodyLength => "body_length",
            DeadLetterReason::Garbled => "garbled",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidValue => "invalid_value",
            DeadLetterReason::UnknownReference => "unknown_reference",
            DeadLetterReason::Deserialization => "deserialization",
            DeadLetterReason::Processing => "processing",
            DeadLetterReason::Downstream => "downstream",
            DeadLetterReason::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn envelope_round_trips_through_bytes() {
        let envelope = TradeEnvelope {
            exec_id: "E1".into(),
            kind: TradeKind::Fill as i32,
            symbol: "AAPL".into(),
            quantity: 100,
            price_mantissa: 18_512_000_000,
            side: Side::Buy as i32,
            ..Default::default()
        };
        let bytes = envelope.encode_to_vec();
        let back = TradeEnvelope::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.kind(), TradeKind::Fill);
    }

    #[test]
    fn reason_labels_are_distinct() {
        let labels: std::collections::BTreeSet<_> = (0..=9)
            .filter_map(|i| DeadLetterReason::try_from(i).ok())
            .map(DeadLetterReason::label)
            .collect();
        assert_eq!(labels.len(), 10);
    }
}
