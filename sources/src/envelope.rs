//! Maps decoded envelopes onto the dataflow's input records.

use eod_dataflow::{Bust, Correction, Fill, TradeEvent};
use eod_proto::{DeadLetterReason, Side, TradeEnvelope, TradeKind};
use prost::Message;

use crate::fix::Reject;

/// A trade read back from a topic, with the time its gateway received it (UTC nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub event: TradeEvent,
    pub receive_time: i64,
    /// Where the gateway archived the raw FIX, when it did.
    pub archive: Option<eod_proto::ArchiveRef>,
}

/// Decodes and checks an envelope read back from a topic: anything may have been written there,
/// so every field the dataflow relies on is checked, not assumed.
pub fn event_from_bytes(payload: &[u8]) -> Result<Received, Reject> {
    let envelope = TradeEnvelope::decode(payload).map_err(|e| Reject {
        reason: DeadLetterReason::Deserialization,
        detail: format!("not a TradeEnvelope: {e}"),
    })?;
    validate(&envelope)?;
    let receive_time = envelope.receive_time;
    let archive = envelope.source.clone();
    let event = to_event(envelope).ok_or_else(|| Reject {
        reason: DeadLetterReason::InvalidValue,
        detail: "envelope of unknown kind or side".into(),
    })?;
    Ok(Received {
        event,
        receive_time,
        archive,
    })
}

fn validate(envelope: &TradeEnvelope) -> Result<(), Reject> {
    let missing = |field: &str| Reject {
        reason: DeadLetterReason::MissingField,
        detail: format!("envelope has no {field}"),
    };
    let invalid = |detail: String| Reject {
        reason: DeadLetterReason::InvalidValue,
        detail,
    };
    if envelope.exec_id.is_empty() {
        return Err(missing("exec_id"));
    }
    let kind = TradeKind::try_from(envelope.kind)
        .map_err(|_| invalid(format!("unknown kind {}", envelope.kind)))?;
    if kind == TradeKind::Unspecified {
        return Err(missing("kind"));
    }
    if kind != TradeKind::Fill && envelope.exec_ref_id.is_empty() {
        return Err(missing("exec_ref_id"));
    }
    if kind == TradeKind::Bust {
        return Ok(());
    }
    if envelope.symbol.is_empty() {
        return Err(missing("symbol"));
    }
    if envelope.trader_id.is_empty() {
        return Err(missing("trader_id"));
    }
    match Side::try_from(envelope.side) {
        Ok(Side::Buy | Side::Sell) => {}
        _ => return Err(missing("side")),
    }
    if envelope.quantity <= 0 {
        return Err(invalid(format!(
            "quantity {} is not positive",
            envelope.quantity
        )));
    }
    if envelope.price_mantissa <= 0 {
        return Err(invalid(format!(
            "price {} is not positive",
            envelope.price_mantissa
        )));
    }
    Ok(())
}

/// The partitioning key: the symbol, so one symbol's trades stay in order on one partition.
/// A bust carries no symbol in FIX; it is keyed by the execution it cancels.
pub fn partition_key(envelope: &TradeEnvelope) -> &str {
    if envelope.symbol.is_empty() {
        &envelope.exec_ref_id
    } else {
        &envelope.symbol
    }
}

/// The dataflow event an envelope stands for; `None` for an envelope of unknown kind.
pub fn to_event(envelope: TradeEnvelope) -> Option<TradeEvent> {
    let kind = envelope.kind();
    if kind == TradeKind::Bust {
        return Some(TradeEvent::Bust(Bust {
            exec_id: envelope.exec_id.into(),
            target: envelope.exec_ref_id.into(),
            transact_time: envelope.transact_time,
        }));
    }
    let qty = match envelope.side() {
        Side::Buy => envelope.quantity,
        Side::Sell => -envelope.quantity,
        Side::Unspecified => return None,
    };
    let fill = Fill {
        exec_id: envelope.exec_id.into(),
        trader: envelope.trader_id.into(),
        symbol: envelope.symbol.into(),
        qty,
        price: envelope.price_mantissa,
        transact_time: envelope.transact_time,
    };
    match kind {
        TradeKind::Fill => Some(TradeEvent::Fill(fill)),
        TradeKind::Correct => Some(TradeEvent::Correct(Correction {
            target: envelope.exec_ref_id.into(),
            fill,
        })),
        TradeKind::Bust | TradeKind::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill() -> TradeEnvelope {
        TradeEnvelope {
            exec_id: "E1".into(),
            kind: TradeKind::Fill as i32,
            symbol: "AAPL".into(),
            trader_id: "T".into(),
            side: Side::Buy as i32,
            quantity: 10,
            price_mantissa: 100,
            ..Default::default()
        }
    }

    #[test]
    fn bytes_round_trip_and_bad_payloads_have_reasons() {
        let mut sent = fill();
        sent.receive_time = 77;
        let received = event_from_bytes(&sent.encode_to_vec()).unwrap();
        assert_eq!(received.receive_time, 77);
        assert!(matches!(received.event, TradeEvent::Fill(f) if f.qty == 10 && f.symbol == "AAPL"));
        let garbage = event_from_bytes(b"\xff\xff\xff not protobuf").unwrap_err();
        assert_eq!(garbage.reason, DeadLetterReason::Deserialization);
        let mut no_symbol = fill();
        no_symbol.symbol.clear();
        assert_eq!(
            event_from_bytes(&no_symbol.encode_to_vec())
                .unwrap_err()
                .reason,
            DeadLetterReason::MissingField
        );
        let mut zero = fill();
        zero.quantity = 0;
        assert_eq!(
            event_from_bytes(&zero.encode_to_vec()).unwrap_err().reason,
            DeadLetterReason::InvalidValue
        );
        // An empty payload decodes as a default envelope: it has no exec_id.
        assert_eq!(
            event_from_bytes(b"").unwrap_err().reason,
            DeadLetterReason::MissingField
        );
        let bust = TradeEnvelope {
            exec_id: "B".into(),
            exec_ref_id: "E1".into(),
            kind: TradeKind::Bust as i32,
            ..Default::default()
        };
        assert!(matches!(
            event_from_bytes(&bust.encode_to_vec()).map(|received| received.event),
            Ok(TradeEvent::Bust(_))
        ));
        assert_eq!(partition_key(&bust), "E1");
        assert_eq!(partition_key(&fill()), "AAPL");
    }

    #[test]
    fn sells_are_negative_and_corrections_keep_their_target() {
        let envelope = TradeEnvelope {
            exec_id: "C1".into(),
            exec_ref_id: "F1".into(),
            kind: TradeKind::Correct as i32,
            side: Side::Sell as i32,
            quantity: 7,
            price_mantissa: 5,
            ..Default::default()
        };
        match to_event(envelope) {
            Some(TradeEvent::Correct(c)) => {
                assert_eq!(c.target, "F1");
                assert_eq!(c.fill.qty, -7);
            }
            other => panic!("{other:?}"),
        }
    }
}
