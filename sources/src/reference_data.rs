//! Reference data from CSV: traders (`trader_id,name,mpid,desk,strategy`) and securities
//! (`symbol,cusip,isin,name,exchange,currency`), and the simulator's own.

use eod_dataflow::{SecurityRef, TraderRef};

use crate::simulator::SimConfig;

#[derive(Debug, thiserror::Error)]
#[error("{file} line {line}: {detail}")]
pub struct ReferenceError {
    pub file: &'static str,
    pub line: usize,
    pub detail: String,
}

/// Rows of `N` non-empty columns; a header line (starting with `header`), blank lines and `#`
/// comments are skipped.
fn rows<const N: usize>(
    text: &str,
    file: &'static str,
    header: &str,
) -> Result<Vec<[String; N]>, ReferenceError> {
    let mut rows = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty()
            || trimmed.starts_with('#')
            || (index == 0 && trimmed.starts_with(header))
        {
            continue;
        }
        let err = |detail: String| ReferenceError {
            file,
            line: index + 1,
            detail,
        };
        let columns: Vec<String> = trimmed.split(',').map(|c| c.trim().to_owned()).collect();
        let row: [String; N] = columns
            .try_into()
            .map_err(|c: Vec<String>| err(format!("expected {N} columns, found {}", c.len())))?;
        if row[0].is_empty() {
            return Err(err("empty key".into()));
        }
        rows.push(row);
    }
    Ok(rows)
}

pub fn parse_traders_csv(text: &str) -> Result<Vec<TraderRef>, ReferenceError> {
    Ok(rows::<5>(text, "traders", "trader_id")?
        .into_iter()
        .map(|[trader_id, name, mpid, desk, strategy]| TraderRef {
            trader_id: trader_id.into(),
            name: name.into(),
            mpid: mpid.into(),
            desk: desk.into(),
            strategy: strategy.into(),
        })
        .collect())
}

pub fn parse_securities_csv(text: &str) -> Result<Vec<SecurityRef>, ReferenceError> {
    Ok(rows::<6>(text, "securities", "symbol")?
        .into_iter()
        .map(
            |[symbol, cusip, isin, name, exchange, currency]| SecurityRef {
                symbol: symbol.into(),
                cusip: cusip.into(),
                isin: isin.into(),
                name: name.into(),
                exchange: exchange.into(),
                currency: currency.into(),
            },
        )
        .collect())
}

/// One record of the reference topic: the key names the record, the value is its CSV line
/// (the columns of the CSV files); an empty value (a tombstone) withdraws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceRecord {
    Trader(TraderRef),
    Security(SecurityRef),
}

impl ReferenceRecord {
    pub fn key(&self) -> String {
        match self {
            ReferenceRecord::Trader(t) => format!("trader:{}", t.trader_id),
            ReferenceRecord::Security(s) => format!("security:{}", s.symbol),
        }
    }

    pub fn value(&self) -> String {
        match self {
            ReferenceRecord::Trader(t) => {
                format!(
                    "{},{},{},{},{}",
                    t.trader_id, t.name, t.mpid, t.desk, t.strategy
                )
            }
            ReferenceRecord::Security(s) => format!(
                "{},{},{},{},{},{}",
                s.symbol, s.cusip, s.isin, s.name, s.exchange, s.currency
            ),
        }
    }

    /// `None` for a tombstone. The key's kind decides the columns; a value whose own key
    /// column disagrees with the record key is refused.
    pub fn decode(key: &str, value: &[u8]) -> Result<Option<ReferenceRecord>, ReferenceError> {
        let err = |detail: String| ReferenceError {
            file: "reference topic",
            line: 0,
            detail,
        };
        if value.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(value).map_err(|_| err(format!("{key}: not UTF-8")))?;
        let record = match key.split_once(':') {
            Some(("trader", id)) => {
                let mut rows = parse_traders_csv(text)?;
                match (rows.pop(), rows.is_empty()) {
                    (Some(t), true) if t.trader_id == id => ReferenceRecord::Trader(t),
                    _ => return Err(err(format!("{key}: value is not one row for this trader"))),
                }
            }
            Some(("security", symbol)) => {
                let mut rows = parse_securities_csv(text)?;
                match (rows.pop(), rows.is_empty()) {
                    (Some(s), true) if s.symbol == symbol => ReferenceRecord::Security(s),
                    _ => return Err(err(format!("{key}: value is not one row for this symbol"))),
                }
            }
            _ => return Err(err(format!("unknown reference key {key:?}"))),
        };
        Ok(Some(record))
    }
}

pub fn traders_csv(traders: &[TraderRef]) -> String {
    let mut out = String::from("trader_id,name,mpid,desk,strategy\n");
    for t in traders {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            t.trader_id, t.name, t.mpid, t.desk, t.strategy
        ));
    }
    out
}

pub fn securities_csv(securities: &[SecurityRef]) -> String {
    let mut out = String::from("symbol,cusip,isin,name,exchange,currency\n");
    for s in securities {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            s.symbol, s.cusip, s.isin, s.name, s.exchange, s.currency
        ));
    }
    out
}

/// Reference data for the simulator's traders and symbols (the names it trades under).
pub fn simulated_reference(config: &SimConfig) -> (Vec<TraderRef>, Vec<SecurityRef>) {
    const DESKS: [(&str, &str); 3] = [
        ("Cash Equities", "market-making"),
        ("Index Arbitrage", "index-arb"),
        ("Delta One", "swaps-hedge"),
    ];
    let traders = (0..config.traders.max(1))
        .map(|i| {
            let (desk, strategy) = DESKS[i % DESKS.len()];
            TraderRef {
                trader_id: format!("TRADER{i:02}").into(),
                name: format!("Trader {i:02}").into(),
                mpid: format!("MP{:02}", i % 7).into(),
                desk: desk.into(),
                strategy: strategy.into(),
            }
        })
        .collect();
    let securities = (0..config.symbols.max(1))
        .map(|i| {
            let cusip = format!("SIM{i:05}0");
            SecurityRef {
                symbol: format!("SYM{i:03}").into(),
                isin: isin("US", &cusip).into(),
                cusip: cusip.into(),
                name: format!("Simulated {i:03} Corp").into(),
                exchange: if i % 2 == 0 { "XNYS" } else { "XNAS" }.into(),
                currency: "USD".into(),
            }
        })
        .collect();
    (traders, securities)
}

/// An ISIN from country and national number, with its check digit (ISO 6166: letters become
/// two digits, then the Luhn algorithm).
pub fn isin(country: &str, national: &str) -> String {
    let body = format!("{country}{national:0>9}");
    let digits: String = body
        .chars()
        .map(|c| match c.to_digit(36) {
            Some(value) => value.to_string(),
            None => String::new(),
        })
        .collect();
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isin_check_digits_match_real_isins() {
        assert_eq!(isin("US", "037833100"), "US0378331005"); // Apple
        assert_eq!(isin("US", "594918104"), "US5949181045"); // Microsoft
        assert_eq!(isin("GB", "000263494"), "GB0002634946"); // BAE Systems
    }

    #[test]
    fn topic_records_round_trip_and_tombstones_withdraw() {
        let (traders, securities) = simulated_reference(&SimConfig::market_close(1));
        for record in [
            ReferenceRecord::Trader(traders[0].clone()),
            ReferenceRecord::Security(securities[0].clone()),
        ] {
            let decoded = ReferenceRecord::decode(&record.key(), record.value().as_bytes());
            assert_eq!(decoded.unwrap(), Some(record));
        }
        assert_eq!(ReferenceRecord::decode("trader:T1", b"").unwrap(), None);
        assert!(
            ReferenceRecord::decode("trader:T1", b"T2,n,m,d,s").is_err(),
            "key mismatch"
        );
        assert!(ReferenceRecord::decode("desk:X", b"X").is_err());
    }

    #[test]
    fn csv_round_trips_and_reports_bad_lines() {
        let (traders, securities) = simulated_reference(&SimConfig::market_close(1));
        assert_eq!(parse_traders_csv(&traders_csv(&traders)).unwrap(), traders);
        assert_eq!(
            parse_securities_csv(&securities_csv(&securities)).unwrap(),
            securities
        );
        let err = parse_traders_csv("trader_id,name,mpid,desk,strategy\nT1,Ann,MP\n").unwrap_err();
        assert_eq!((err.file, err.line), ("traders", 2));
        assert!(err.detail.contains("expected 5 columns"), "{err}");
    }
}
