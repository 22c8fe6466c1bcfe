//! FIX UTCTimestamp parsing. Hand-written because the format is fixed and this is on the hot
//! path of every fill; civil-date conversion follows H. Hinnant's `days_from_civil`.

/// Parses `YYYYMMDD-HH:MM:SS[.f{3|6|9}]` into UTC nanoseconds since the Unix epoch.
pub fn parse_utc_timestamp(text: &[u8]) -> Option<i64> {
    DateCache::default().parse(text)
}

/// [`parse_utc_timestamp`] that remembers the last date it read. A day's trades share their
/// date, and reading it again for each (eight digits, the month's length, the civil-day
/// arithmetic) was about half of the timestamp's cost, itself 7.7% of the parse stage (`perf`
/// of `eod-bench-parse`, 2026-12-07).
#[derive(Clone, Debug, Default)]
pub struct DateCache {
    last: Option<([u8; 8], i64)>,
}

impl DateCache {
    /// As [`parse_utc_timestamp`].
    pub fn parse(&mut self, text: &[u8]) -> Option<i64> {
        if text.len() < 17 || text[8] != b'-' || text[11] != b':' || text[14] != b':' {
            return None;
        }
        let date: [u8; 8] = text[..8].try_into().ok()?;
        let days = match self.last {
            Some((last, days)) if last == date => days,
            _ => {
                let days = days_of_date(&date)?;
                self.last = Some((date, days));
                days
            }
        };
        let (hour, minute, second) = (
            digits(&text[9..11])?,
            digits(&text[12..14])?,
            digits(&text[15..17])?,
        );
        // 60 admits a leap second.
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let nanos = match text.len() {
            17 => 0,
            21 if text[17] == b'.' => digits(&text[18..])? * 1_000_000,
            24 if text[17] == b'.' => digits(&text[18..])? * 1_000,
            27 if text[17] == b'.' => digits(&text[18..])?,
            _ => return None,
        };
        // i64 nanoseconds reach from 1677 to 2262: a date outside that is invalid, not a panic.
        let minutes = (days * 24 + hour) * 60 + minute;
        minutes
            .checked_mul(60_000_000_000)?
            .checked_add(second * 1_000_000_000 + nanos)
    }
}

/// Days since 1970-01-01 of a valid `YYYYMMDD`.
fn days_of_date(date: &[u8; 8]) -> Option<i64> {
    let (year, month, day) = (
        digits(&date[0..4])?,
        digits(&date[4..6])?,
        digits(&date[6..8])?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// The number `text`'s ASCII digits spell (at most 18 of them).
#[inline(always)]
fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now, in UTC nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_utc_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Formats UTC nanoseconds as a FIX UTCTimestamp with milliseconds.
pub fn format_utc_timestamp(nanos: i64) -> String {
    let days = nanos.div_euclid(86_400_000_000_000);
    let in_day = nanos.rem_euclid(86_400_000_000_000);
    let (year, month, day) = civil_from_days(days);
    let ms = in_day / 1_000_000;
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_precisions() {
        // 2013-03-21T15:21:23Z = 1363879283 s.
        let base = 1_363_879_283_000_000_000;
        assert_eq!(parse_utc_timestamp(b"20130321-15:21:23"), Some(base));
        assert_eq!(
            parse_utc_timestamp(b"20130321-15:21:23.123"),
            Some(base + 123_000_000)
        );
        assert_eq!(
            parse_utc_timestamp(b"20130321-15:21:23.123456"),
            Some(base + 123_456_000)
        );
        assert_eq!(
            parse_utc_timestamp(b"20130321-15:21:23.123456789"),
            Some(base + 123_456_789)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"20130321-15:21"[..],
            b"20131321-15:21:23",
            b"20130230-15:21:23",
            b"20130321-25:21:23",
            b"20130321-15:21:23.1",
            b"2013032a-15:21:23",
            b"20130321T15:21:23",
        ] {
            assert_eq!(
                parse_utc_timestamp(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn dates_beyond_i64_nanoseconds_are_invalid_not_a_panic() {
        // Found by the fuzzer: year 0233 overflowed the multiplication.
        assert_eq!(parse_utc_timestamp(b"02330121-15:21:23"), None);
        assert_eq!(parse_utc_timestamp(b"99991231-23:59:59.999"), None);
        assert!(parse_utc_timestamp(b"22600101-00:00:00").is_some());
        assert!(parse_utc_timestamp(b"16800101-00:00:00").is_some());
    }

    proptest::proptest! {
        /// The cache answers as a fresh parse for every timestamp of a sequence, whatever the
        /// one before it was: dates repeated, changed, or invalid, and text that is no
        /// timestamp at all.
        #[test]
        fn a_cached_date_parses_as_a_fresh_one(
            stamps in proptest::collection::vec(
                proptest::prop_oneof![
                    "20(2[0-9]|00)(0[0-9]|1[0-3])(0[0-9]|[12][0-9]|3[0-2])-([01][0-9]|2[0-5]):[0-6][0-9]:[0-6][0-9](\\.[0-9]{3}|\\.[0-9]{6}|\\.[0-9]{9}|\\.[0-9]{2})?",
                    "2026112[45]-1[0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}",
                    "[0-9:.-]{0,30}",
                ],
                1..40,
            )
        ) {
            let mut cache = DateCache::default();
            for stamp in &stamps {
                let fresh = parse_as_before(stamp.as_bytes());
                proptest::prop_assert_eq!(cache.parse(stamp.as_bytes()), fresh, "{}", stamp);
            }
        }
    }

    /// The parse as it was before the cache and the digit helpers: every part worked out again
    /// for each timestamp, the fraction scaled by a power of ten.
    fn parse_as_before(text: &[u8]) -> Option<i64> {
        if text.len() < 17 || text[8] != b'-' || text[11] != b':' || text[14] != b':' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            text[range].iter().try_fold(0i64, |acc, d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
        let (hour, minute, second) = (num(9..11)?, num(12..14)?, num(15..17)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let nanos = match text.len() {
            17 => 0,
            21 | 24 | 27 if text[17] == b'.' => {
                num(18..text.len())? * 10i64.pow(9 - (text.len() - 18) as u32)
            }
            _ => return None,
        };
        let minutes = (days_from_civil(year, month, day) * 24 + hour) * 60 + minute;
        minutes
            .checked_mul(60_000_000_000)?
            .checked_add(second * 1_000_000_000 + nanos)
    }

    #[test]
    fn leap_day_and_round_trip() {
        let t = parse_utc_timestamp(b"20240229-23:59:59.999").unwrap();
        assert_eq!(format_utc_timestamp(t), "20240229-23:59:59.999");
        assert_eq!(format_utc_timestamp(0), "19700101-00:00:00.000");
    }
}
