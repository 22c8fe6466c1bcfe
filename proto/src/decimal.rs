//! The exact decimal text form of the proto's fixed-point numbers: a price is an `i64`
//! mantissa scaled by 10^8, a money amount an `i128` at the same scale. FIX, CSV and JSON carry
//! them as decimal strings; these parse and render them without ever rounding.

/// Decimal places carried by every price and money amount.
pub const DECIMALS: u32 = 8;
/// 10^DECIMALS.
pub const SCALE: i64 = 100_000_000;

/// Why a decimal string is not an exact 10^-8 fixed-point number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty number")]
    Empty,
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    #[error("more than {DECIMALS} decimal places: {0:?}")]
    TooPrecise(String),
    #[error("number out of range: {0:?}")]
    Overflow(String),
}

/// Renders a 10^-8 mantissa as a plain decimal, trailing zeros trimmed: `12225500000` -> `"122.255"`.
pub fn format_fixed(mantissa: i128) -> String {
    let negative = mantissa < 0;
    let magnitude = mantissa.unsigned_abs();
    let scale = SCALE as u128;
    let whole = magnitude / scale;
    let fraction = magnitude % scale;
    let mut out = String::with_capacity(24);
    if negative {
        out.push('-');
    }
    out.push_str(&whole.to_string());
    if fraction != 0 {
        let digits = format!("{:0width$}", fraction, width = DECIMALS as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// Parses a decimal with at most 8 places into a 10^-8 mantissa, exactly. Accepts an optional
/// sign; rejects exponents, spaces and anything a float parser would round.
pub fn parse_fixed_i128(text: &str) -> Result<i128, DecimalError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(DecimalError::Empty);
    }
    let (negative, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err(DecimalError::Syntax(text.to_owned()));
    }
    let mut whole: i128 = 0;
    let mut fraction: i128 = 0;
    let mut fraction_digits = 0u32;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = i128::from(b - b'0');
                if seen_point {
                    if fraction_digits == DECIMALS {
                        // Trailing zeros beyond 8 places are harmless; anything else would round.
                        if d != 0 {
                            return Err(DecimalError::TooPrecise(text.to_owned()));
                        }
                        continue;
                    }
                    fraction = fraction * 10 + d;
                    fraction_digits += 1;
                } else {
                    whole = whole
                        .checked_mul(10)
                        .and_then(|w| w.checked_add(d))
                        .ok_or_else(|| DecimalError::Overflow(text.to_owned()))?;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Syntax(text.to_owned())),
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax(text.to_owned()));
    }
    let fraction = fraction * 10i128.pow(DECIMALS - fraction_digits);
    let value = whole
        .checked_mul(i128::from(SCALE))
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| DecimalError::Overflow(text.to_owned()))?;
    Ok(if negative { -value } else { value })
}

/// As [`parse_fixed_i128`], for a price that must fit the proto's `i64` mantissa.
pub fn parse_price(text: &str) -> Result<i64, DecimalError> {
    if let Some(price) = plain_price(text.as_bytes()) {
        return Ok(price);
    }
    let value = parse_fixed_i128(text)?;
    i64::try_from(value).map_err(|_| DecimalError::Overflow(text.to_owned()))
}

/// `[-]digits[.digits]` with at most ten whole digits and eight places, the form every price
/// takes in practice, read in `i64` without overflow checks (under 10^10 x 10^8 < 2^63); `None`
/// for anything else, which the general parser then reads or refuses. Every fill's LastPx
/// went through the general parser's checked `i128` steps, 3.9% of the FIX parse stage
/// (`perf` of `eod-bench-parse`, 2026-12-07).
fn plain_price(bytes: &[u8]) -> Option<i64> {
    const FRACTION_SCALE: [i64; 9] = [
        100_000_000,
        10_000_000,
        1_000_000,
        100_000,
        10_000,
        1_000,
        100,
        10,
        1,
    ];
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let (whole, fraction) = match digits.iter().position(|b| *b == b'.') {
        Some(point) => (&digits[..point], &digits[point + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if whole.is_empty() || whole.len() > 10 {
        return None;
    }
    let scale = *FRACTION_SCALE.get(fraction.len())?;
    let read = |digits: &[u8]| {
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let value = read(whole)? * SCALE + read(fraction)? * scale;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_trimmed_exact_decimals() {
        assert_eq!(format_fixed(12_225_500_000), "122.255");
        assert_eq!(format_fixed(-50_000_000), "-0.5");
        assert_eq!(format_fixed(0), "0");
        assert_eq!(format_fixed(1), "0.00000001");
        assert_eq!(format_fixed(-300_000_000), "-3");
    }

    proptest::proptest! {
        /// The plain form's fast path reads every text as the general parser does: the same
        /// price, or the same refusal.
        #[test]
        fn a_plain_price_parses_as_the_general_parser_says(
            text in proptest::prop_oneof![
                "-?[0-9]{1,12}(\\.[0-9]{0,10})?",
                "[-+]?[0-9]{0,3}\\.?[0-9]{0,3}",
                "[-+0-9.e ]{0,14}",
            ]
        ) {
            let general = parse_fixed_i128(&text).and_then(|value| {
                i64::try_from(value).map_err(|_| DecimalError::Overflow(text.clone()))
            });
            proptest::prop_assert_eq!(parse_price(&text), general);
        }
    }

    #[test]
    fn parses_exactly_or_refuses() {
        assert_eq!(parse_price("122.255"), Ok(12_225_500_000));
        assert_eq!(parse_price("0.00000001"), Ok(1));
        assert_eq!(parse_price("15"), Ok(1_500_000_000));
        assert_eq!(parse_price("-1.5"), Ok(-150_000_000));
        assert_eq!(parse_price("1.500000000"), Ok(150_000_000));
        assert!(matches!(
            parse_price("1.000000001"),
            Err(DecimalError::TooPrecise(_))
        ));
        assert!(matches!(parse_price("1e5"), Err(DecimalError::Syntax(_))));
        assert!(matches!(parse_price("."), Err(DecimalError::Syntax(_))));
        assert!(matches!(parse_price(""), Err(DecimalError::Empty)));
        assert!(matches!(parse_price("1.2.3"), Err(DecimalError::Syntax(_))));
        assert!(matches!(
            parse_price("99999999999999999999"),
            Err(DecimalError::Overflow(_))
        ));
    }
}
