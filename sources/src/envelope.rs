//! Maps checked trades (decoded from FIX, or read back from a topic's envelopes) onto the
//! dataflow's input records.

use eod_dataflow::{Bust, Correction, Fill, TradeEvent};
use eod_fix::{check_envelope, CheckedKind, CheckedTrade, Reject};
use eod_proto::borrowed::{BorrowedArchiveRef, BorrowedEnvelope};
use eod_proto::DeadLetterReason;

/// A trade read back from a topic, with the time its gateway received it (UTC nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    pub event: TradeEvent,
    pub receive_time: i64,
    /// Where the gateway archived the raw FIX, when it did; borrowed from the record.
    pub archive: Option<BorrowedArchiveRef<'a>>,
}

/// Decodes and checks an envelope read back from a topic: anything may have been written there,
/// so it passes the same [`check_envelope`] as every envelope the gateway decodes. The record is
/// read in place ([`BorrowedEnvelope`]): the event is the only copy of its text.
pub fn event_from_bytes(payload: &[u8]) -> Result<Received<'_>, Reject> {
    let envelope = BorrowedEnvelope::decode(payload).map_err(|e| {
        Reject::new(
            DeadLetterReason::Deserialization,
            format!("not a TradeEnvelope: {e}"),
        )
    })?;
    let event = to_event(&check_envelope(&envelope)?);
    Ok(Received {
        event,
        receive_time: envelope.receive_time,
        archive: envelope.source,
    })
}

/// The partitioning key: the symbol, so one symbol's trades stay in order on one partition.
/// A bust carries no symbol in FIX; it is keyed by the execution it cancels.
pub fn partition_key<'a>(envelope: &BorrowedEnvelope<'a>) -> &'a str {
    if envelope.symbol.is_empty() {
        envelope.exec_ref_id
    } else {
        envelope.symbol
    }
}

/// The dataflow event a checked trade stands for. Its text is copied once, from where the
/// trade was read into the event's inline strings.
pub fn to_event(checked: &CheckedTrade<'_>) -> TradeEvent {
    let (kind, qty) = (checked.kind(), checked.signed_quantity());
    let trade = checked.fields();
    if kind == CheckedKind::Bust {
        return TradeEvent::Bust(Bust {
            exec_id: trade.exec_id.as_ref().into(),
            target: trade.exec_ref_id.as_ref().into(),
            transact_time: trade.transact_time,
        });
    }
    let fill = Fill {
        exec_id: trade.exec_id.as_ref().into(),
        trader: trade.trader_id.as_ref().into(),
        symbol: trade.symbol.as_ref().into(),
        qty,
        price: trade.price_mantissa,
        transact_time: trade.transact_time,
    };
    match kind {
        CheckedKind::Correction => TradeEvent::Correct(Correction {
            target: trade.exec_ref_id.as_ref().into(),
            fill,
        }),
        CheckedKind::Fill | CheckedKind::Bust => TradeEvent::Fill(fill),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eod_proto::{Side, TradeEnvelope, TradeKind};
    use prost::Message;

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
        sent.source = Some(eod_proto::ArchiveRef {
            object_key: "gw/20261125/000001.fix".into(),
            offset: 4096,
            length: 180,
        });
        let record = sent.encode_to_vec();
        let received = event_from_bytes(&record).unwrap();
        assert_eq!(received.receive_time, 77);
        let archive = received.archive.unwrap();
        assert_eq!(
            (archive.object_key, archive.offset),
            ("gw/20261125/000001.fix", 4096)
        );
        assert!(matches!(received.event, TradeEvent::Fill(f) if f.qty == 10 && f.symbol == "AAPL"));
        let garbage = event_from_bytes(b"\xff\xff\xff not protobuf").unwrap_err();
        assert_eq!(garbage.reason, DeadLetterReason::Deserialization);
        let mut no_symbol = fill();
        no_symbol.symbol.clear();
        let refused = event_from_bytes(&no_symbol.encode_to_vec()).unwrap_err();
        // The dead letter's reader sees the field by the envelope's name.
        assert_eq!(
            (refused.reason, refused.detail.as_str()),
            (DeadLetterReason::MissingField, "envelope has no symbol")
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
        assert_eq!(partition_key(&(&bust).into()), "E1");
        assert_eq!(partition_key(&(&fill()).into()), "AAPL");
    }

    #[test]
    fn sells_are_negative_and_corrections_keep_their_target() {
        let envelope = TradeEnvelope {
            exec_id: "C1".into(),
            exec_ref_id: "F1".into(),
            kind: TradeKind::Correct as i32,
            symbol: "AAPL".into(),
            trader_id: "T".into(),
            side: Side::Sell as i32,
            quantity: 7,
            price_mantissa: 5,
            ..Default::default()
        };
        match to_event(&check_envelope(&(&envelope).into()).unwrap()) {
            TradeEvent::Correct(c) => {
                assert_eq!(c.target, "F1");
                assert_eq!(c.fill.qty, -7);
            }
            other => panic!("{other:?}"),
        }
    }
}
