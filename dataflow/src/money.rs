//! Exact fixed-point arithmetic. Prices are `i64` mantissas scaled by 10^8 (as in the proto);
//! money sums are `i128` at the same scale so that quantity x price never overflows.

use std::fmt;

pub use eod_proto::decimal::{
    format_fixed, parse_fixed_i128, parse_price, DecimalError, DECIMALS, SCALE,
};

/// A money amount: `i128` mantissa at 10^-8. Serialised as a decimal string, never a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i128);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_fixed(self.0))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_fixed(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse_fixed_i128(&text)
            .map(Money)
            .map_err(serde::de::Error::custom)
    }
}

/// `numerator / denominator` rounded half to even. `denominator` must not be zero.
pub fn div_round_half_even(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator != 0);
    let (numerator, denominator) = if denominator < 0 {
        (-numerator, -denominator)
    } else {
        (numerator, denominator)
    };
    let quotient = numerator.div_euclid(denominator);
    let remainder = numerator.rem_euclid(denominator);
    // remainder is in [0, denominator): compare 2r against d without overflow.
    let twice = remainder * 2;
    if twice > denominator || (twice == denominator && quotient % 2 != 0) {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(div_round_half_even(5, 2), 2);
        assert_eq!(div_round_half_even(7, 2), 4);
        assert_eq!(div_round_half_even(-5, 2), -2);
        assert_eq!(div_round_half_even(-7, 2), -4);
        assert_eq!(div_round_half_even(10, 3), 3);
        assert_eq!(div_round_half_even(11, 3), 4);
        assert_eq!(div_round_half_even(-11, 3), -4);
        assert_eq!(div_round_half_even(11, -3), -4);
    }

    #[test]
    fn money_json_is_a_string() {
        let json = serde_json::to_string(&Money(-12_345_000_000)).unwrap();
        assert_eq!(json, "\"-123.45\"");
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Money(-12_345_000_000));
    }
}
