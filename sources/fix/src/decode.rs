//! Decodes a framed FIX message into a trade's fields, a "not a trade" verdict, or a reject.

use std::borrow::Cow;

use eod_proto::borrowed::BorrowedEnvelope;
use eod_proto::{DeadLetterReason, Side, TradeEnvelope, TradeKind};

use super::structure;
use super::time::DateCache;
use super::SOH;

/// Why a framed message cannot be used; becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.label())]
pub struct Reject {
    pub reason: DeadLetterReason,
    pub detail: String,
    /// The field at fault, when one is: a FIX session names it and what is wrong with it in
    /// its Reject (RefTagID 371, SessionRejectReason 373).
    pub field: Option<FieldError>,
}

/// A field a message was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    pub tag: u32,
    pub fault: FieldFault,
}

/// What is wrong with a field, in the terms of FIX's SessionRejectReason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFault {
    /// Required and absent.
    Missing,
    /// Present without a value (`17=`).
    NoValue,
    /// A value outside the field's enumeration.
    OutOfRange,
    /// Not a number, price or timestamp where one is required.
    BadFormat,
    /// A tag number the FIX version does not define.
    Undefined,
    /// A field the (administrative) message type does not have.
    NotInMessageType,
    /// A field that appears twice outside a repeating group.
    Repeated,
    /// A header field after the body, or a body field after the trailer.
    OutOfOrder,
    /// A repeating group's entry that does not start with the group's first field.
    GroupOrder,
    /// A NumInGroup count that differs from the entries that follow it.
    GroupCount,
}

impl Reject {
    pub fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
            field: None,
        }
    }
    pub(crate) fn at(self, tag: u32, fault: FieldFault) -> Reject {
        Reject {
            field: Some(FieldError { tag, fault }),
            ..self
        }
    }
    fn missing(tag: u32, name: &str) -> Reject {
        Reject::new(
            DeadLetterReason::MissingField,
            format!("{name} ({tag}) is required"),
        )
        .at(tag, FieldFault::Missing)
    }
    fn no_value(tag: u32, name: &str) -> Reject {
        Reject::new(
            DeadLetterReason::MissingField,
            format!("{name} ({tag}) has no value"),
        )
        .at(tag, FieldFault::NoValue)
    }
    /// A value that does not parse as the field's type.
    fn invalid(tag: u32, name: &str, value: &[u8]) -> Reject {
        Reject::new(
            DeadLetterReason::InvalidValue,
            format!(
                "{name} ({tag}) has invalid value {:?}",
                String::from_utf8_lossy(value)
            ),
        )
        .at(tag, FieldFault::BadFormat)
    }
    /// A value outside the field's enumeration.
    fn out_of_range(tag: u32, name: &str, value: &[u8]) -> Reject {
        Reject::invalid(tag, name, value).at(tag, FieldFault::OutOfRange)
    }
}

/// The verdict on one valid message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'m> {
    /// A fill, bust or correction, its text where the message holds it.
    Trade(TradeFields<'m>),
    /// Valid FIX that carries no trade: `MsgType` and, for execution reports, `ExecType`.
    NotATrade {
        msg_type: String,
        exec_type: Option<String>,
    },
}

impl Decoded<'_> {
    /// The same verdict, holding its own text.
    pub fn into_owned(self) -> Decoded<'static> {
        match self {
            Decoded::Trade(fields) => Decoded::Trade(fields.into_owned()),
            Decoded::NotATrade {
                msg_type,
                exec_type,
            } => Decoded::NotATrade {
                msg_type,
                exec_type,
            },
        }
    }
}

/// A trade's fields as a [`TradeEnvelope`] names them, the text borrowed from where it is held:
/// a FIX message, or an envelope read back from a topic. A replay turns each trade into the
/// dataflow's record: building an envelope first took an allocation and a copy per text field,
/// freed again straight away (16% of the parse stage in `perf` of the replay bench).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TradeFields<'a> {
    pub exec_id: Cow<'a, str>,
    /// ExecRefID (19): the fill a bust or correction refers to; empty for a fill.
    pub exec_ref_id: Cow<'a, str>,
    /// A [`TradeKind`], as the envelope carries it (unknown values are refused by the check).
    pub kind: i32,
    pub symbol: Cow<'a, str>,
    pub security_id: Cow<'a, str>,
    pub quantity: i64,
    /// LastPx x 10^8.
    pub price_mantissa: i64,
    /// A [`Side`], as the envelope carries it.
    pub side: i32,
    pub trader_id: Cow<'a, str>,
    pub account: Cow<'a, str>,
    /// UTC nanoseconds.
    pub transact_time: i64,
    pub fix_version: Cow<'a, str>,
}

impl<'a> TradeFields<'a> {
    /// The trade fields of an envelope read in place, borrowed from its record.
    pub fn of(envelope: &BorrowedEnvelope<'a>) -> TradeFields<'a> {
        TradeFields {
            exec_id: Cow::Borrowed(envelope.exec_id),
            exec_ref_id: Cow::Borrowed(envelope.exec_ref_id),
            kind: envelope.kind,
            symbol: Cow::Borrowed(envelope.symbol),
            security_id: Cow::Borrowed(envelope.security_id),
            quantity: envelope.quantity,
            price_mantissa: envelope.price_mantissa,
            side: envelope.side,
            trader_id: Cow::Borrowed(envelope.trader_id),
            account: Cow::Borrowed(envelope.account),
            transact_time: envelope.transact_time,
            fix_version: Cow::Borrowed(envelope.fix_version),
        }
    }

    /// An envelope of these fields, borrowing their text; `raw_fix`, `receive_time`,
    /// `gateway_id` and `source` are left for the caller to fill in.
    pub fn borrowed_envelope(&self) -> BorrowedEnvelope<'_> {
        BorrowedEnvelope {
            exec_id: &self.exec_id,
            exec_ref_id: &self.exec_ref_id,
            kind: self.kind,
            symbol: &self.symbol,
            security_id: &self.security_id,
            quantity: self.quantity,
            price_mantissa: self.price_mantissa,
            side: self.side,
            trader_id: &self.trader_id,
            account: &self.account,
            transact_time: self.transact_time,
            fix_version: &self.fix_version,
            ..BorrowedEnvelope::default()
        }
    }

    /// An envelope of these fields; `raw_fix`, `receive_time`, `gateway_id` and `source` are
    /// left for the caller to fill in.
    pub fn to_envelope(&self) -> TradeEnvelope {
        TradeEnvelope {
            exec_id: self.exec_id.clone().into_owned(),
            exec_ref_id: self.exec_ref_id.clone().into_owned(),
            kind: self.kind,
            symbol: self.symbol.clone().into_owned(),
            security_id: self.security_id.clone().into_owned(),
            quantity: self.quantity,
            price_mantissa: self.price_mantissa,
            side: self.side,
            trader_id: self.trader_id.clone().into_owned(),
            account: self.account.clone().into_owned(),
            transact_time: self.transact_time,
            fix_version: self.fix_version.clone().into_owned(),
            ..TradeEnvelope::default()
        }
    }

    /// The same fields, holding their own text.
    pub fn into_owned(self) -> TradeFields<'static> {
        let owned = |text: Cow<'a, str>| Cow::Owned(text.into_owned());
        TradeFields {
            exec_id: owned(self.exec_id),
            exec_ref_id: owned(self.exec_ref_id),
            symbol: owned(self.symbol),
            security_id: owned(self.security_id),
            trader_id: owned(self.trader_id),
            account: owned(self.account),
            fix_version: owned(self.fix_version),
            kind: self.kind,
            quantity: self.quantity,
            price_mantissa: self.price_mantissa,
            side: self.side,
            transact_time: self.transact_time,
        }
    }
}

/// Tags below this are found through [`Decoder::first`]; every tag a trade is read from is
/// (the largest, PartyRole, is 452: the executing trader's entry is looked for from the first
/// PartyID on, not from the message's start, 2-5% of the parse stage, `eod-bench-parse`).
const DIRECT_TAGS: usize = 512;

/// Reusable decoder; keeps its field index between messages to avoid allocating per message.
#[derive(Debug)]
pub struct Decoder {
    fields: Vec<(u32, usize, usize)>,
    /// TransactTime's date, read once per day's trades.
    dates: DateCache,
    /// Per tag below [`DIRECT_TAGS`], 1 + the index of its first field, or 0: a trade reads
    /// about fourteen fields of some twenty-five, and a scan of the index for each was a
    /// tenth of the decoding (`perf` of a 1M-message replay).
    first: [u32; DIRECT_TAGS],
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            fields: Vec::new(),
            dates: DateCache::default(),
            first: [0; DIRECT_TAGS],
        }
    }
}

/// The message's fields (`'m`, where the values are) through the decoder's index (`'d`).
struct Fields<'m, 'd> {
    message: &'m [u8],
    fields: &'d [(u32, usize, usize)],
    first: &'d [u32; DIRECT_TAGS],
}

impl<'m> Fields<'m, '_> {
    /// The first field with `tag`.
    #[inline(always)]
    fn get(&self, tag: u32) -> Option<&'m [u8]> {
        let field = match self.first.get(tag as usize) {
            Some(0) => None,
            Some(&at) => self.fields.get(at as usize - 1),
            None => self.fields.iter().find(|(t, _, _)| *t == tag),
        };
        field.map(|&(_, s, e)| &self.message[s..e])
    }
    #[inline(always)]
    fn required(&self, tag: u32, name: &str) -> Result<&'m [u8], Reject> {
        match self.get(tag) {
            Some([]) => Err(Reject::no_value(tag, name)),
            Some(v) => Ok(v),
            None => Err(Reject::missing(tag, name)),
        }
    }
    #[inline(always)]
    fn text(&self, tag: u32, name: &str) -> Result<Cow<'m, str>, Reject> {
        let bytes = self.required(tag, name)?;
        utf8_text(bytes)
            .map(Cow::Borrowed)
            .ok_or_else(|| Reject::invalid(tag, name, bytes))
    }
    #[inline(always)]
    fn optional_text(&self, tag: u32) -> Cow<'m, str> {
        self.get(tag).map(lossy_text).unwrap_or_default()
    }
    /// The PartyID (448) of the Parties entry whose PartyRole (452) is `role`. 448 starts each
    /// entry, so the last 448 seen before a matching 452 belongs to the same entry.
    fn party(&self, role: &[u8]) -> Option<&'m [u8]> {
        let mut current = None;
        // From the first PartyID on, when no PartyRole comes before it (as in every message
        // whose Parties are well formed): nothing before it can then change the answer.
        let first_of = |tag: usize| self.first.get(tag).map_or(0, |at| *at as usize);
        let (first_id, first_role) = (first_of(448), first_of(452));
        if first_id == 0 {
            return None;
        }
        let from = if first_role == 0 || first_role > first_id {
            first_id - 1
        } else {
            0
        };
        for &(tag, s, e) in &self.fields[from..] {
            match tag {
                448 => current = Some(&self.message[s..e]),
                452 if &self.message[s..e] == role => return current,
                _ => {}
            }
        }
        None
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes a message that the framer already validated (BodyLength, CheckSum).
    pub fn decode<'m>(&mut self, message: &'m [u8]) -> Result<Decoded<'m>, Reject> {
        self.index(message)?;
        structure::check(message, &self.fields)?;
        let fields = Fields {
            message,
            fields: &self.fields,
            first: &self.first,
        };
        let version = fields.required(8, "BeginString")?;
        let msg_type = fields.required(35, "MsgType")?;
        if msg_type != b"8" {
            return Ok(Decoded::NotATrade {
                msg_type: lossy_text(msg_type).into_owned(),
                exec_type: None,
            });
        }
        let exec_type = fields.required(150, "ExecType")?;
        let kind = match version {
            b"FIX.4.2" => match fields.get(20).unwrap_or(b"0") {
                b"0" if matches!(exec_type, b"1" | b"2") => Some(TradeKind::Fill),
                b"0" | b"3" => None,
                b"1" => Some(TradeKind::Bust),
                b"2" => Some(TradeKind::Correct),
                other => return Err(Reject::out_of_range(20, "ExecTransType", other)),
            },
            b"FIX.4.4" => match exec_type {
                b"F" => Some(TradeKind::Fill),
                b"H" => Some(TradeKind::Bust),
                b"G" => Some(TradeKind::Correct),
                _ => None,
            },
            other => {
                return Err(Reject::new(
                    DeadLetterReason::InvalidValue,
                    format!(
                        "unsupported BeginString {:?}",
                        String::from_utf8_lossy(other)
                    ),
                ))
            }
        };
        let Some(kind) = kind else {
            return Ok(Decoded::NotATrade {
                msg_type: "8".into(),
                exec_type: Some(lossy_text(exec_type).into_owned()),
            });
        };
        let mut trade = TradeFields {
            exec_id: fields.text(17, "ExecID")?,
            kind: kind as i32,
            // Any other BeginString was refused above.
            fix_version: Cow::Borrowed(if version == b"FIX.4.2" {
                "FIX.4.2"
            } else {
                "FIX.4.4"
            }),
            account: fields.optional_text(1),
            ..TradeFields::default()
        };
        if kind != TradeKind::Fill {
            trade.exec_ref_id = fields.text(19, "ExecRefID")?;
        }
        if kind == TradeKind::Bust {
            // When the bust happened, for the books' audit trail; optional, but never garbage.
            if let Some(time_bytes) = fields.get(60).filter(|v| !v.is_empty()) {
                trade.transact_time = self
                    .dates
                    .parse(time_bytes)
                    .ok_or_else(|| Reject::invalid(60, "TransactTime", time_bytes))?;
            }
            return Ok(Decoded::Trade(trade));
        }
        trade.security_id = fields.optional_text(48);
        let symbol = fields.text(55, "Symbol")?;
        trade.symbol = if symbol == "[N/A]" {
            if trade.security_id.is_empty() {
                return Err(Reject::missing(48, "SecurityID (Symbol is [N/A])"));
            }
            trade.security_id.clone()
        } else {
            symbol
        };
        trade.side = match fields.required(54, "Side")? {
            b"1" => Side::Buy,
            b"2" | b"5" | b"6" => Side::Sell,
            other => return Err(Reject::out_of_range(54, "Side", other)),
        } as i32;
        let qty_field = if version == b"FIX.4.2" {
            "LastShares"
        } else {
            "LastQty"
        };
        let qty_bytes = fields.required(32, qty_field)?;
        trade.quantity = parse_quantity(qty_bytes)
            .filter(|q| *q > 0)
            .ok_or_else(|| Reject::invalid(32, qty_field, qty_bytes))?;
        let px_bytes = fields.required(31, "LastPx")?;
        trade.price_mantissa = utf8_text(px_bytes)
            .and_then(|s| eod_proto::decimal::parse_price(s).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| Reject::invalid(31, "LastPx", px_bytes))?;
        let time_bytes = fields.required(60, "TransactTime")?;
        trade.transact_time = self
            .dates
            .parse(time_bytes)
            .ok_or_else(|| Reject::invalid(60, "TransactTime", time_bytes))?;
        let trader = fields
            .party(b"12")
            .or_else(|| fields.get(50))
            .or_else(|| fields.get(1))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Reject::missing(
                    448,
                    "executing trader (PartyRole 12), SenderSubID or Account",
                )
            })?;
        trade.trader_id = lossy_text(trader);
        Ok(Decoded::Trade(trade))
    }

    /// Indexes the fields: the message is read eight bytes at a time for its SOH delimiters
    /// (one bit per byte that is SOH), and each field's tag up to its `=`, a few bytes. A
    /// field is about eight bytes long: `memchr_iter`, which starts a fresh vector search for
    /// each, spent more on its setup than on the search (half of the index's time in `perf`
    /// of the replay bench's parse stage).
    fn index(&mut self, message: &[u8]) -> Result<(), Reject> {
        for &(tag, _, _) in &self.fields {
            if let Some(first) = self.first.get_mut(tag as usize) {
                *first = 0;
            }
        }
        self.fields.clear();
        let mut pos = 0;
        let (words, tail) = message.as_chunks::<8>();
        for (w, word) in words.iter().enumerate() {
            let mut delimiters = soh_bytes(u64::from_le_bytes(*word));
            while delimiters != 0 {
                let end = w * 8 + (delimiters.trailing_zeros() / 8) as usize;
                delimiters &= delimiters - 1;
                self.push_field(message, pos, end)?;
                pos = end + 1;
            }
        }
        let tail_start = message.len() - tail.len();
        for (i, byte) in tail.iter().enumerate() {
            if *byte == SOH {
                self.push_field(message, pos, tail_start + i)?;
                pos = tail_start + i + 1;
            }
        }
        if pos < message.len() {
            return Err(Reject::new(
                DeadLetterReason::Garbled,
                "field not terminated by SOH",
            ));
        }
        Ok(())
    }

    /// Adds the field `message[pos..end]` (`end` at its SOH) to the index.
    ///
    /// The tag's digits are read as its `=` is looked for: one pass over them, not a search
    /// and then a parse of what it found. Inlined by force: left a call (two callers), saving
    /// and restoring registers for every field was a quarter of its samples, and inlining it
    /// took 5-7% off the parse stage (`eod-bench-parse`, 2026-12-07), as inlining the lookups
    /// of [`Fields`] took another 4-5%.
    #[inline(always)]
    fn push_field(&mut self, message: &[u8], pos: usize, end: usize) -> Result<(), Reject> {
        let field = &message[pos..end];
        let mut tag = 0u32;
        let mut eq = None;
        // A tag has at most nine digits, so its `=` is among the first ten bytes; nine digits
        // fit a u32, and a tenth is refused below whatever it wrapped to.
        for (at, &byte) in field.iter().enumerate().take(10) {
            match byte {
                b'0'..=b'9' => tag = tag.wrapping_mul(10).wrapping_add(u32::from(byte - b'0')),
                b'=' => {
                    eq = Some(at);
                    break;
                }
                _ => break,
            }
        }
        let eq = match eq {
            Some(eq) if eq > 0 && field[0] != b'0' => eq,
            _ => return Err(field_fault(field, pos)),
        };
        if let Some(first @ 0) = self.first.get_mut(tag as usize) {
            // A field takes at least four bytes: no message in memory has more fields
            // than u32 counts.
            *first = u32::try_from(self.fields.len() + 1).unwrap_or(u32::MAX);
        }
        self.fields.push((tag, pos + eq + 1, end));
        Ok(())
    }
}

/// Why the field at byte `pos` has no tag the index can take: no `=`, or not a tag before it.
#[cold]
#[inline(never)]
fn field_fault(field: &[u8], pos: usize) -> Reject {
    let Some(eq) = field.iter().position(|b| *b == b'=') else {
        return Reject::new(
            DeadLetterReason::Garbled,
            format!("field without '=' at byte {pos}"),
        );
    };
    Reject::new(
        DeadLetterReason::Garbled,
        format!(
            "non-numeric tag {:?} at byte {pos}",
            String::from_utf8_lossy(&field[..eq])
        ),
    )
}

/// A word with the top bit of each of its bytes that is SOH set, and no other bit: the exact
/// zero-byte test of `word ^ SOH..SOH` (no carry crosses a byte, so no false positives).
fn soh_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let v = word ^ (u64::from(SOH) * 0x0101_0101_0101_0101);
    !(((v & LOW7) + LOW7) | v | LOW7)
}

/// Checks a framed message's structure (defined tags, values present, header, body and
/// trailer in order, no repeated tags, repeating groups as counted) without decoding it: the
/// session's check of its own administrative messages.
pub fn check_structure(message: &[u8]) -> Result<(), Reject> {
    let mut decoder = Decoder::new();
    decoder.index(message)?;
    structure::check(message, &decoder.fields)
}

/// `bytes` as text, invalid UTF-8 replaced. Valid text (all of it, in practice) takes
/// `from_utf8`'s path: `from_utf8_lossy` walks the bytes chunk by chunk, about twice the
/// validation's cost on these short values (`perf` of the replay bench's parse stage).
fn lossy_text(bytes: &[u8]) -> Cow<'_, str> {
    match utf8_text(bytes) {
        Some(text) => Cow::Borrowed(text),
        None => String::from_utf8_lossy(bytes),
    }
}

/// `bytes` as text if it is valid UTF-8. A value is a few ASCII bytes: checked here, inline,
/// without the call into the general validation that each of a trade's six or so text values
/// made (7.5% of the parse stage, `perf` of `eod-bench-parse`, 2026-12-07).
#[inline(always)]
fn utf8_text(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(u8::is_ascii) {
        // SAFETY: every byte is ASCII, and ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Whole-unit quantity; a decimal form is accepted only with a zero fraction ("100.00").
fn parse_quantity(bytes: &[u8]) -> Option<i64> {
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(p) => (&bytes[..p], &bytes[p + 1..]),
        None => (bytes, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 18 || !fraction.iter().all(|d| *d == b'0') {
        return None;
    }
    whole.iter().try_fold(0i64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixEncoder;

    fn decode(version: &str, fields: &[(u32, &str)]) -> Result<Decoded<'static>, Reject> {
        let msg = FixEncoder::new(version).message("8", fields);
        Decoder::new().decode(&msg).map(Decoded::into_owned)
    }

    fn fill44() -> Vec<(u32, &'static str)> {
        vec![
            // SenderSubID is a header field: before the body.
            (50, "desk1"),
            (17, "E1"),
            (150, "F"),
            (55, "AAPL"),
            (54, "2"),
            (32, "100"),
            (31, "185.12"),
            (60, "20261125-20:59:59.123"),
            (1, "ACC"),
        ]
    }

    fn trade(result: Result<Decoded, Reject>) -> TradeEnvelope {
        match result {
            Ok(Decoded::Trade(t)) => t.to_envelope(),
            other => panic!("expected a trade, got {other:?}"),
        }
    }

    /// A tag as FIX writes it: one to nine digits, no leading zero.
    fn parse_tag(bytes: &[u8]) -> Option<u32> {
        if bytes.is_empty() || bytes.len() > 9 || bytes[0] == b'0' {
            return None;
        }
        bytes.iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    }

    /// The index as a byte-by-byte reading defines it: fields end at each SOH, a tag is the
    /// digits before the field's first `=`; `None` where the message is refused.
    fn index_by_bytes(message: &[u8]) -> Option<Vec<(u32, usize, usize)>> {
        let mut fields = Vec::new();
        let mut pos = 0;
        for (end, byte) in message.iter().enumerate() {
            if *byte != SOH {
                continue;
            }
            let eq = pos + message[pos..end].iter().position(|b| *b == b'=')?;
            fields.push((parse_tag(&message[pos..eq])?, eq + 1, end));
            pos = end + 1;
        }
        (pos == message.len()).then_some(fields)
    }

    proptest::proptest! {
        /// Fields of every length, so that delimiters fall at every place in the eight-byte
        /// words and in the tail, values holding `=`, and bytes that break the message.
        #[test]
        fn the_index_reads_each_field_as_the_bytes_do(
            fields in proptest::collection::vec(
                // Around the longest tag (nine digits) as well.
                (proptest::prop_oneof![1u64..1200, 999_999_990u64..1_000_000_010], proptest::collection::vec(
                    proptest::sample::select(vec![b'a', b'7', b'=', b'.', 0x80, 0xff, 0x00]),
                    0..20,
                )),
                0..30,
            ),
            damage in proptest::option::of((0usize..400, proptest::sample::select(vec![SOH, b'=', b'x', b'0']))),
        ) {
            let mut message = Vec::new();
            for (tag, value) in &fields {
                message.extend_from_slice(tag.to_string().as_bytes());
                message.push(b'=');
                message.extend_from_slice(value);
                message.push(SOH);
            }
            if let Some((at, byte)) = damage {
                if let Some(b) = message.get_mut(at) {
                    *b = byte;
                }
            }
            let mut decoder = Decoder::new();
            let indexed = decoder.index(&message).ok().map(|()| decoder.fields.clone());
            proptest::prop_assert_eq!(indexed, index_by_bytes(&message));
            for (n, &(tag, _, _)) in decoder.fields.iter().enumerate() {
                if let Some(&first) = decoder.first.get(tag as usize) {
                    proptest::prop_assert!(first as usize <= n + 1 && first > 0);
                }
            }
        }
    }

    /// Every trade field goes from an envelope into the fields and back: a field left out
    /// either way would publish, or check, a trade without it.
    #[test]
    fn trade_fields_carry_every_field_of_an_envelope() {
        let envelope = TradeEnvelope {
            exec_id: "E1".into(),
            exec_ref_id: "E0".into(),
            kind: TradeKind::Correct as i32,
            symbol: "AAPL".into(),
            security_id: "US0378331005".into(),
            quantity: 7,
            price_mantissa: 18_512_000_000,
            side: Side::Sell as i32,
            trader_id: "T1".into(),
            account: "ACC".into(),
            transact_time: 1_764_104_400_123_456_789,
            fix_version: "FIX.4.4".into(),
            ..TradeEnvelope::default()
        };
        let fields = TradeFields::of(&BorrowedEnvelope::from(&envelope));
        assert_eq!(fields.to_envelope(), envelope);
        assert_eq!(
            fields.borrowed_envelope(),
            BorrowedEnvelope::from(&envelope)
        );
        assert_eq!(fields.clone().into_owned(), fields);
    }

    #[test]
    fn lossy_text_is_from_utf8_lossy() {
        for bytes in [
            &b"ACC-1"[..],
            b"",
            "d\u{e9}sk".as_bytes(),
            b"a\xffb",
            b"\xe9t\xe9",
        ] {
            assert_eq!(lossy_text(bytes), String::from_utf8_lossy(bytes));
        }
    }

    proptest::proptest! {
        /// The inline ASCII path and the general validation agree on every byte string: the
        /// same text, or both refuse.
        #[test]
        fn utf8_text_is_from_utf8(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)) {
            proptest::prop_assert_eq!(utf8_text(&bytes), std::str::from_utf8(&bytes).ok());
        }
    }

    #[test]
    fn soh_bytes_marks_exactly_the_delimiters() {
        for at in 0..8 {
            for other in [0u8, 0x02, 0x81, 0xff, b'=', b'1'] {
                let mut word = [other; 8];
                word[at] = SOH;
                assert_eq!(soh_bytes(u64::from_le_bytes(word)), 0x80 << (8 * at));
            }
        }
        assert_eq!(
            soh_bytes(u64::from_le_bytes([SOH; 8])),
            0x8080_8080_8080_8080
        );
        assert_eq!(soh_bytes(u64::from_le_bytes(*b"35=8\x0049=")), 0);
    }

    #[test]
    fn fix44_fill() {
        let t = trade(decode("FIX.4.4", &fill44()));
        assert_eq!(t.kind(), TradeKind::Fill);
        assert_eq!(t.side(), Side::Sell);
        assert_eq!(t.quantity, 100);
        assert_eq!(t.price_mantissa, 18_512_000_000);
        assert_eq!(t.trader_id, "desk1");
        assert_eq!(t.symbol, "AAPL");
    }

    #[test]
    fn trader_precedence_party_then_sender_sub_then_account() {
        let mut f = fill44();
        f.extend([
            (453, "2"),
            (448, "X"),
            (452, "1"),
            (448, "EXEC"),
            (452, "12"),
        ]);
        assert_eq!(trade(decode("FIX.4.4", &f)).trader_id, "EXEC");
        let without_sub: Vec<_> = fill44().into_iter().filter(|(t, _)| *t != 50).collect();
        assert_eq!(trade(decode("FIX.4.4", &without_sub)).trader_id, "ACC");
        let nobody: Vec<_> = without_sub.into_iter().filter(|(t, _)| *t != 1).collect();
        assert_eq!(
            decode("FIX.4.4", &nobody).unwrap_err().reason,
            DeadLetterReason::MissingField
        );
    }

    proptest::proptest! {
        /// The executing trader's entry, looked for from the first PartyID on, is the one a
        /// scan of every field from the start finds, however PartyIDs, PartyRoles and other
        /// fields are laid out (a PartyRole before any PartyID included).
        #[test]
        fn the_party_found_from_the_first_party_id_is_the_full_scans(
            layout in proptest::collection::vec(
                (proptest::sample::select(vec![448u32, 452, 447, 55, 1]),
                 proptest::sample::select(vec!["12", "1", "X"])),
                0..12,
            )
        ) {
            let message: Vec<u8> = layout
                .iter()
                .flat_map(|(tag, value)| format!("{tag}={value}\x01").into_bytes())
                .collect();
            let mut decoder = Decoder::new();
            decoder.index(&message).expect("well-formed fields");
            let fields = Fields {
                message: &message,
                fields: &decoder.fields,
                first: &decoder.first,
            };
            let mut current = None;
            let mut scanned = None;
            for &(tag, s, e) in &decoder.fields {
                match tag {
                    448 => current = Some(&message[s..e]),
                    452 if &message[s..e] == b"12" => {
                        scanned = current;
                        break;
                    }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(fields.party(b"12"), scanned);
        }
    }

    /// One decoder for many messages, as the gateway and the replay use it: a field of an
    /// earlier message is never read into a later one.
    #[test]
    fn a_reused_decoder_reads_each_message_alone() {
        let mut decoder = Decoder::new();
        let mut run = |fields: &[(u32, &str)]| {
            decoder
                .decode(&FixEncoder::new("FIX.4.4").message("8", fields))
                .map(Decoded::into_owned)
        };
        let with_account = trade(run(&fill44()));
        assert_eq!(
            (
                with_account.account.as_str(),
                with_account.trader_id.as_str()
            ),
            ("ACC", "desk1")
        );
        let only_account: Vec<_> = fill44().into_iter().filter(|(t, _)| *t != 50).collect();
        assert_eq!(trade(run(&only_account)).trader_id, "ACC");
        let nobody: Vec<_> = only_account.into_iter().filter(|(t, _)| *t != 1).collect();
        let refused = run(&nobody).unwrap_err();
        assert_eq!(refused.reason, DeadLetterReason::MissingField, "{refused}");
        let no_exec_id: Vec<_> = fill44().into_iter().filter(|(t, _)| *t != 17).collect();
        let refused = run(&no_exec_id).unwrap_err();
        assert_eq!(refused.field.map(|f| f.tag), Some(17), "{refused}");
        let again = trade(run(&fill44()));
        assert_eq!(
            (again.exec_id.as_str(), again.symbol.as_str()),
            ("E1", "AAPL")
        );
    }

    #[test]
    fn fix44_bust_and_correct() {
        let bust = trade(decode("FIX.4.4", &[(17, "E2"), (150, "H"), (19, "E1")]));
        assert_eq!(
            (bust.kind(), bust.exec_ref_id.as_str()),
            (TradeKind::Bust, "E1")
        );
        let mut correct = fill44();
        correct[2] = (150, "G");
        correct.push((19, "E1"));
        let c = trade(decode("FIX.4.4", &correct));
        assert_eq!(
            (c.kind(), c.exec_ref_id.as_str()),
            (TradeKind::Correct, "E1")
        );
        let no_ref = decode("FIX.4.4", &[(17, "E2"), (150, "H")]);
        assert_eq!(no_ref.unwrap_err().reason, DeadLetterReason::MissingField);
    }

    #[test]
    fn fix42_exec_trans_type() {
        let base = [
            (17, "E1"),
            (55, "IBM"),
            (54, "1"),
            (32, "10"),
            (31, "100"),
            (60, "20261125-20:00:00"),
            (1, "ACC"),
        ];
        let with = |extra: &[(u32, &'static str)]| {
            let mut f = base.to_vec();
            f.extend_from_slice(extra);
            decode("FIX.4.2", &f)
        };
        assert_eq!(
            trade(with(&[(20, "0"), (150, "2")])).kind(),
            TradeKind::Fill
        );
        assert_eq!(
            trade(with(&[(20, "0"), (150, "1")])).kind(),
            TradeKind::Fill
        );
        assert!(matches!(
            with(&[(20, "0"), (150, "0")]),
            Ok(Decoded::NotATrade { .. })
        ));
        assert_eq!(
            trade(with(&[(20, "1"), (150, "2"), (19, "E0")])).kind(),
            TradeKind::Bust
        );
        assert_eq!(
            trade(with(&[(20, "2"), (150, "2"), (19, "E0")])).kind(),
            TradeKind::Correct
        );
        assert!(matches!(
            with(&[(20, "3"), (150, "2")]),
            Ok(Decoded::NotATrade { .. })
        ));
        assert_eq!(
            with(&[(20, "9"), (150, "2")]).unwrap_err().reason,
            DeadLetterReason::InvalidValue
        );
    }

    #[test]
    fn invalid_values_are_rejected_with_reason() {
        for (tag, value) in [
            (32, "0"),
            (32, "1.5"),
            (31, "-1"),
            (31, "0"),
            (31, "1.123456789"),
            (60, "2026-11-25"),
            (54, "9"),
        ] {
            let f: Vec<_> = fill44()
                .into_iter()
                .map(|(t, v)| if t == tag { (t, value) } else { (t, v) })
                .collect();
            let err = decode("FIX.4.4", &f).unwrap_err();
            assert_eq!(err.reason, DeadLetterReason::InvalidValue, "{tag}={value}");
        }
        let no_symbol: Vec<_> = fill44().into_iter().filter(|(t, _)| *t != 55).collect();
        assert_eq!(
            decode("FIX.4.4", &no_symbol).unwrap_err().reason,
            DeadLetterReason::MissingField
        );
    }

    #[test]
    fn quantity_accepts_zero_fraction() {
        assert_eq!(parse_quantity(b"100.000"), Some(100));
        assert_eq!(parse_quantity(b"100.5"), None);
        assert_eq!(parse_quantity(b"abc"), None);
    }

    #[test]
    fn garbled_field_is_rejected() {
        let msg = b"8=FIX.4.4\x019=5\x0135=8\x01abc\x0110=000\x01";
        assert_eq!(
            Decoder::new().decode(msg).unwrap_err().reason,
            DeadLetterReason::Garbled
        );
    }

    /// The index names the first broken field, wherever it is, and indexes a sound message
    /// field by field, values included.
    #[test]
    fn index_refuses_each_broken_field_and_reads_sound_ones() {
        let mut decoder = Decoder::new();
        let cases: [(&[u8], &str); 5] = [
            (
                b"8=FIX.4.4\x01abc\x0135=8\x01",
                "field without '=' at byte 10",
            ),
            (
                b"8=FIX.4.4\x0135=8\x01x5=1\x01",
                "non-numeric tag \"x5\" at byte 15",
            ),
            (
                b"8=FIX.4.4\x0135=8\x01055=1\x01",
                "non-numeric tag \"055\" at byte 15",
            ),
            (
                b"8=FIX.4.4\x0135=8\x0110=000",
                "field not terminated by SOH",
            ),
            (
                b"8=FIX.4.4\x01=8\x0110=000\x01",
                "non-numeric tag \"\" at byte 10",
            ),
        ];
        for (message, detail) in cases {
            let reject = decoder.index(message).unwrap_err();
            assert_eq!(reject.reason, DeadLetterReason::Garbled);
            assert_eq!(reject.detail, detail);
        }
        let message = b"8=FIX.4.4\x0135=8\x0158=a=b\x0159=\x01";
        decoder.index(message).unwrap();
        let read: Vec<(u32, &[u8])> = decoder
            .fields
            .iter()
            .map(|&(tag, start, end)| (tag, &message[start..end]))
            .collect();
        let expected: [(u32, &[u8]); 4] = [(8, b"FIX.4.4"), (35, b"8"), (58, b"a=b"), (59, b"")];
        assert_eq!(read, expected);
    }
}
