//! Reference prices from CSV: `symbol,kind,price`, kind one of `close, bid, ask, prev_close`.

use eod_dataflow::{PriceKind, PriceUpdate};

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
}
