//! Maps decoded envelopes onto the dataflow's input records.

use eod_dataflow::{Bust, Correction, Fill, TradeEvent};
use eod_proto::{Side, TradeEnvelope, TradeKind};

/// The dataflow event an envelope stands for; `None` for an envelope of unknown kind.
pub fn to_event(envelope: TradeEnvelope) -> Option<TradeEvent> {
    let kind = envelope.kind();
    if kind == TradeKind::Bust {
        return Some(TradeEvent::Bust(Bust {
            exec_id: envelope.exec_id.into(),
            target: envelope.exec_ref_id.into(),
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
