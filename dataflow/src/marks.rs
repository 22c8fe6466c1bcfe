//! The mark waterfall: official close > last traded > bid/ask mid > previous close.

use serde::{Deserialize, Serialize};

use crate::model::PriceKind;
use crate::money::div_round_half_even;

/// Where a mark came from; the JSON names are part of the HTTP contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkSource {
    OfficialClose,
    LastTrade,
    Mid,
    PrevClose,
}

impl MarkSource {
    pub fn label(self) -> &'static str {
        match self {
            MarkSource::OfficialClose => "official_close",
            MarkSource::LastTrade => "last_trade",
            MarkSource::Mid => "mid",
            MarkSource::PrevClose => "prev_close",
        }
    }
}

/// The price a symbol is marked at, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mark {
    pub price: i64,
    pub source: MarkSource,
}

/// One input to the waterfall for a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MarkInput {
    Price(PriceKind, i64),
    LastTrade(i64),
}

/// Picks the mark from the candidates in force for one symbol.
pub fn choose_mark<I: std::borrow::Borrow<MarkInput>>(
    inputs: impl IntoIterator<Item = I>,
) -> Option<Mark> {
    let (mut close, mut last, mut bid, mut ask, mut prev) = (None, None, None, None, None);
    for input in inputs {
        match *input.borrow() {
            MarkInput::Price(PriceKind::OfficialClose, p) => close = Some(p),
            MarkInput::LastTrade(p) => last = Some(p),
            MarkInput::Price(PriceKind::Bid, p) => bid = Some(p),
            MarkInput::Price(PriceKind::Ask, p) => ask = Some(p),
            MarkInput::Price(PriceKind::PrevClose, p) => prev = Some(p),
        }
    }
    let mid = match (bid, ask) {
        (Some(b), Some(a)) => {
            let mid = div_round_half_even(i128::from(b) + i128::from(a), 2);
            // The mean of two i64 values always fits an i64.
            Some(mid as i64)
        }
        _ => None,
    };
    close
        .map(|price| Mark {
            price,
            source: MarkSource::OfficialClose,
        })
        .or(last.map(|price| Mark {
            price,
            source: MarkSource::LastTrade,
        }))
        .or(mid.map(|price| Mark {
            price,
            source: MarkSource::Mid,
        }))
        .or(prev.map(|price| Mark {
            price,
            source: MarkSource::PrevClose,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use MarkInput::*;
    use PriceKind::*;

    #[test]
    fn waterfall_order() {
        let all = [
            Price(PrevClose, 1),
            Price(Bid, 2),
            Price(Ask, 4),
            LastTrade(5),
            Price(OfficialClose, 6),
        ];
        assert_eq!(
            choose_mark(all).unwrap(),
            Mark {
                price: 6,
                source: MarkSource::OfficialClose
            }
        );
        assert_eq!(
            choose_mark(&all[..4]).unwrap(),
            Mark {
                price: 5,
                source: MarkSource::LastTrade
            }
        );
        assert_eq!(
            choose_mark(&all[..3]).unwrap(),
            Mark {
                price: 3,
                source: MarkSource::Mid
            }
        );
        assert_eq!(
            choose_mark(&all[..2]).unwrap(),
            Mark {
                price: 1,
                source: MarkSource::PrevClose
            }
        );
        assert_eq!(choose_mark([Price(Bid, 2)]), None);
    }

    #[test]
    fn mid_rounds_half_even_on_the_mantissa() {
        assert_eq!(
            choose_mark([Price(Bid, 1), Price(Ask, 2)]).unwrap().price,
            2
        );
        assert_eq!(
            choose_mark([Price(Bid, 2), Price(Ask, 3)]).unwrap().price,
            2
        );
    }
}
