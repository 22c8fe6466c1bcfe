//! Prices in and out: reference prices from CSV (`symbol,kind,price`, kind one of `close,
//! bid, ask, prev_close`) and the protobuf record of the prices topic.

use eod_dataflow::{PriceKind, PriceUpdate};
use eod_fix::Reject;
use eod_proto::{DeadLetterReason, PriceKind as WireKind};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("prices line {line}: {detail}")]
    Line { line: usize, detail: String },
}

/// Parses the CSV. A header line starting with `symbol` is skipped; blank lines and `#`
/// comments are ignored. Later lines win over earlier ones for the same (symbol, kind).
pub fn parse_prices_csv(text: &str) -> Result<Vec<PriceUpdate>, PricesError> {
    let mut updates = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        if index == 0 && columns.first() == Some(&"symbol") {
            continue;
        }
        let err = |detail: String| PricesError::Line { line, detail };
        let [symbol, kind, price] = columns.as_slice() else {
            return Err(err(format!("expected 3 columns, found {}", columns.len())));
        };
        if symbol.is_empty() {
            return Err(err("empty symbol".into()));
        }
        let kind = parse_kind(kind).ok_or_else(|| err(format!("unknown price kind {kind:?}")))?;
        let price = eod_dataflow::money::parse_price(price).map_err(|e| err(e.to_string()))?;
        if price <= 0 {
            return Err(err(format!("price must be positive, got {price}")));
        }
        updates.push(PriceUpdate {
            symbol: (*symbol).into(),
            kind,
            price,
            time: line as i64,
        });
    }
    Ok(updates)
}

pub fn parse_kind(kind: &str) -> Option<PriceKind> {
    Some(match kind {
        "close" | "official_close" => PriceKind::OfficialClose,
        "bid" => PriceKind::Bid,
        "ask" => PriceKind::Ask,
        "prev_close" => PriceKind::PrevClose,
        _ => return None,
    })
}

pub fn kind_name(kind: PriceKind) -> &'static str {
    match kind {
        PriceKind::OfficialClose => "close",
        PriceKind::Bid => "bid",
        PriceKind::Ask => "ask",
        PriceKind::PrevClose => "prev_close",
    }
}

/// A price as it travels on the prices topic.
pub fn price_to_proto(price: &PriceUpdate) -> eod_proto::PriceUpdate {
    eod_proto::PriceUpdate {
        symbol: price.symbol.to_string(),
        kind: wire_kind(price.kind) as i32,
        price_mantissa: price.price,
        time: price.time,
    }
}

/// The prices topic's enum for a dataflow price kind.
pub fn wire_kind(kind: PriceKind) -> WireKind {
    match kind {
        PriceKind::OfficialClose => WireKind::OfficialClose,
        PriceKind::Bid => WireKind::Bid,
        PriceKind::Ask => WireKind::Ask,
        PriceKind::PrevClose => WireKind::PrevClose,
    }
}

/// A price read back from the prices topic, checked like a trade envelope.
pub fn price_from_bytes(payload: &[u8]) -> Result<PriceUpdate, Reject> {
    let reject = |reason, detail: String| Reject::new(reason, detail);
    let update = eod_proto::PriceUpdate::decode(payload).map_err(|e| {
        reject(
            DeadLetterReason::Deserialization,
            format!("not a PriceUpdate: {e}"),
        )
    })?;
    let kind = match WireKind::try_from(update.kind) {
        Ok(WireKind::OfficialClose) => PriceKind::OfficialClose,
        Ok(WireKind::Bid) => PriceKind::Bid,
        Ok(WireKind::Ask) => PriceKind::Ask,
        Ok(WireKind::PrevClose) => PriceKind::PrevClose,
        _ => {
            return Err(reject(
                DeadLetterReason::InvalidValue,
                format!("unknown price kind {}", update.kind),
            ))
        }
    };
    if update.symbol.is_empty() {
        return Err(reject(
            DeadLetterReason::MissingField,
            "price update has no symbol".into(),
        ));
    }
    if update.price_mantissa <= 0 {
        return Err(reject(
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
    fn parses_with_header_and_comments() {
        let csv = "symbol,kind,price\n# comment\nAAPL,close,185.12\n\nAAPL,bid,185.1\nMSFT,prev_close,400\n";
        let updates = parse_prices_csv(csv).unwrap();
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].kind, PriceKind::OfficialClose);
        assert_eq!(updates[0].price, 18_512_000_000);
        assert!(updates[1].time > updates[0].time);
    }

    #[test]
    fn reports_the_bad_line() {
        let err = parse_prices_csv("AAPL,close,1\nAAPL,mid,2\n").unwrap_err();
        assert_eq!(err.to_string(), "prices line 2: unknown price kind \"mid\"");
        assert!(parse_prices_csv("AAPL,close,1.0e3").is_err());
        assert!(parse_prices_csv("AAPL,close").is_err());
        assert!(parse_prices_csv("AAPL,close,-1").is_err());
    }
    #[test]
    fn wire_prices_round_trip_and_bad_ones_are_refused() {
        let update = eod_proto::PriceUpdate {
            symbol: "AAPL".into(),
            kind: WireKind::Bid as i32,
            price_mantissa: 5,
            time: 9,
        };
        let back = price_from_bytes(&update.encode_to_vec()).unwrap();
        assert_eq!(
            (back.symbol.as_str(), back.kind, back.price, back.time),
            ("AAPL", PriceKind::Bid, 5, 9)
        );
        assert_eq!(price_to_proto(&back), update);
        assert_eq!(
            price_from_bytes(b"\xff\xff").unwrap_err().reason,
            DeadLetterReason::Deserialization
        );
        assert_eq!(
            price_from_bytes(&[]).unwrap_err().reason,
            DeadLetterReason::InvalidValue
        );
    }
}
