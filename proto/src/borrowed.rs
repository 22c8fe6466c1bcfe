//! A [`TradeEnvelope`] read in place: its text and bytes borrowed from the record they were
//! decoded from.
//!
//! prost decodes into owned fields: a `String` per text field and a `Vec` for `raw_fix`, about
//! ten allocations and copies per trade, freed again as soon as the consumer has copied the
//! few fields it keeps into the dataflow's record. A live worker decodes every trade it reads,
//! so it reads them with this instead. Its verdicts are prost's: the same bytes decode to the
//! same fields or fail alike (a property test holds it to prost's own decode), built from
//! prost's wire primitives (`prost::encoding`, which prost's generated code uses).

use prost::encoding::{
    check_wire_type, decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint,
    skip_field, DecodeContext, WireType,
};
use prost::DecodeError;

use crate::{ArchiveRef, TradeEnvelope};

/// Why a record is not a trade envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeDecodeError {
    #[error(transparent)]
    Wire(#[from] DecodeError),
    #[error("field {0}: its length runs past the end of the record")]
    PastTheEnd(&'static str),
    #[error("field {0}: text is not UTF-8")]
    NotUtf8(&'static str),
}

/// [`TradeEnvelope`]'s fields, borrowed: the field names and meanings are the schema's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BorrowedEnvelope<'a> {
    pub raw_fix: &'a [u8],
    pub receive_time: i64,
    pub gateway_id: &'a str,
    pub exec_id: &'a str,
    pub exec_ref_id: &'a str,
    pub kind: i32,
    pub symbol: &'a str,
    pub security_id: &'a str,
    pub quantity: i64,
    pub price_mantissa: i64,
    pub side: i32,
    pub trader_id: &'a str,
    pub account: &'a str,
    pub transact_time: i64,
    pub fix_version: &'a str,
    pub source: Option<BorrowedArchiveRef<'a>>,
}

/// [`ArchiveRef`]'s fields, borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BorrowedArchiveRef<'a> {
    pub object_key: &'a str,
    pub offset: u64,
    pub length: u32,
}

impl<'a> BorrowedEnvelope<'a> {
    /// Decodes one record as prost's `TradeEnvelope::decode` would: a field seen twice keeps
    /// its last value (a message field merges), unknown fields are skipped.
    pub fn decode(mut record: &'a [u8]) -> Result<Self, EnvelopeDecodeError> {
        let buf = &mut record;
        let mut envelope = BorrowedEnvelope::default();
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(buf)?;
            match tag {
                1 => envelope.raw_fix = delimited(wire_type, buf, "raw_fix")?,
                2 => envelope.receive_time = varint(wire_type, buf)? as i64,
                3 => envelope.gateway_id = text(wire_type, buf, "gateway_id")?,
                4 => envelope.exec_id = text(wire_type, buf, "exec_id")?,
                5 => envelope.exec_ref_id = text(wire_type, buf, "exec_ref_id")?,
                6 => envelope.kind = varint(wire_type, buf)? as i32,
                7 => envelope.symbol = text(wire_type, buf, "symbol")?,
                8 => envelope.security_id = text(wire_type, buf, "security_id")?,
                9 => envelope.quantity = varint(wire_type, buf)? as i64,
                10 => envelope.price_mantissa = varint(wire_type, buf)? as i64,
                11 => envelope.side = varint(wire_type, buf)? as i32,
                12 => envelope.trader_id = text(wire_type, buf, "trader_id")?,
                13 => envelope.account = text(wire_type, buf, "account")?,
                14 => envelope.transact_time = varint(wire_type, buf)? as i64,
                15 => envelope.fix_version = text(wire_type, buf, "fix_version")?,
                16 => {
                    let mut body = delimited(wire_type, buf, "source")?;
                    let source = envelope.source.get_or_insert_with(Default::default);
                    source.merge(&mut body)?;
                }
                _ => skip_field(wire_type, tag, buf, DecodeContext::default())?,
            }
        }
        Ok(envelope)
    }

    /// Appends the envelope's record to `record`, byte for byte what prost encodes for the
    /// same [`TradeEnvelope`]: the gateway encodes each trade from the text it parsed, without
    /// first copying that text into an owned envelope.
    pub fn encode(&self, record: &mut Vec<u8>) {
        bytes_field(1, self.raw_fix, record);
        varint_field(2, self.receive_time as u64, record);
        bytes_field(3, self.gateway_id.as_bytes(), record);
        bytes_field(4, self.exec_id.as_bytes(), record);
        bytes_field(5, self.exec_ref_id.as_bytes(), record);
        varint_field(6, self.kind as u64, record);
        bytes_field(7, self.symbol.as_bytes(), record);
        bytes_field(8, self.security_id.as_bytes(), record);
        varint_field(9, self.quantity as u64, record);
        varint_field(10, self.price_mantissa as u64, record);
        varint_field(11, self.side as u64, record);
        bytes_field(12, self.trader_id.as_bytes(), record);
        bytes_field(13, self.account.as_bytes(), record);
        varint_field(14, self.transact_time as u64, record);
        bytes_field(15, self.fix_version.as_bytes(), record);
        if let Some(source) = &self.source {
            let object_key = source.object_key.as_bytes();
            let length = field_len(object_key.len())
                + varint_field_len(source.offset)
                + varint_field_len(u64::from(source.length));
            encode_key(16, WireType::LengthDelimited, record);
            encode_varint(length as u64, record);
            bytes_field(1, object_key, record);
            varint_field(2, source.offset, record);
            varint_field(3, u64::from(source.length), record);
        }
    }

    /// The same envelope, holding its own fields.
    pub fn to_owned_envelope(&self) -> TradeEnvelope {
        TradeEnvelope {
            raw_fix: self.raw_fix.to_vec(),
            receive_time: self.receive_time,
            gateway_id: self.gateway_id.to_owned(),
            exec_id: self.exec_id.to_owned(),
            exec_ref_id: self.exec_ref_id.to_owned(),
            kind: self.kind,
            symbol: self.symbol.to_owned(),
            security_id: self.security_id.to_owned(),
            quantity: self.quantity,
            price_mantissa: self.price_mantissa,
            side: self.side,
            trader_id: self.trader_id.to_owned(),
            account: self.account.to_owned(),
            transact_time: self.transact_time,
            fix_version: self.fix_version.to_owned(),
            source: self.source.map(|source| ArchiveRef {
                object_key: source.object_key.to_owned(),
                offset: source.offset,
                length: source.length,
            }),
        }
    }
}

/// An owned envelope's fields, borrowed from it.
impl<'a> From<&'a TradeEnvelope> for BorrowedEnvelope<'a> {
    fn from(envelope: &'a TradeEnvelope) -> Self {
        BorrowedEnvelope {
            raw_fix: &envelope.raw_fix,
            receive_time: envelope.receive_time,
            gateway_id: &envelope.gateway_id,
            exec_id: &envelope.exec_id,
            exec_ref_id: &envelope.exec_ref_id,
            kind: envelope.kind,
            symbol: &envelope.symbol,
            security_id: &envelope.security_id,
            quantity: envelope.quantity,
            price_mantissa: envelope.price_mantissa,
            side: envelope.side,
            trader_id: &envelope.trader_id,
            account: &envelope.account,
            transact_time: envelope.transact_time,
            fix_version: &envelope.fix_version,
            source: envelope.source.as_ref().map(|source| BorrowedArchiveRef {
                object_key: &source.object_key,
                offset: source.offset,
                length: source.length,
            }),
        }
    }
}

impl<'a> BorrowedArchiveRef<'a> {
    /// Merges the fields of one occurrence of the message, as prost merges a message field
    /// seen again. Its unknown fields are skipped with the top level's nesting limit for
    /// groups (prost's is one less here): only a group nested 100 deep decodes differently.
    fn merge(&mut self, buf: &mut &'a [u8]) -> Result<(), EnvelopeDecodeError> {
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(buf)?;
            match tag {
                1 => self.object_key = text(wire_type, buf, "source.object_key")?,
                2 => self.offset = varint(wire_type, buf)?,
                3 => self.length = varint(wire_type, buf)? as u32,
                _ => skip_field(wire_type, tag, buf, DecodeContext::default())?,
            }
        }
        Ok(())
    }
}

/// A proto3 scalar: left out when zero. Signed values are their two's complement, as prost
/// writes `int32` and `int64`.
fn varint_field(tag: u32, value: u64, record: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, record);
        encode_varint(value, record);
    }
}

/// A proto3 `string` or `bytes`: left out when empty.
fn bytes_field(tag: u32, value: &[u8], record: &mut Vec<u8>) {
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, record);
        encode_varint(value.len() as u64, record);
        record.extend_from_slice(value);
    }
}

/// What [`varint_field`] writes for a field numbered below 16, in bytes.
fn varint_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value)
    }
}

/// What [`bytes_field`] writes for a field numbered below 16, in bytes.
fn field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

fn varint(wire_type: WireType, buf: &mut &[u8]) -> Result<u64, EnvelopeDecodeError> {
    check_wire_type(WireType::Varint, wire_type)?;
    Ok(decode_varint(buf)?)
}

fn delimited<'a>(
    wire_type: WireType,
    buf: &mut &'a [u8],
    field: &'static str,
) -> Result<&'a [u8], EnvelopeDecodeError> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    let length = decode_varint(buf)?;
    if length > buf.len() as u64 {
        return Err(EnvelopeDecodeError::PastTheEnd(field));
    }
    let (value, rest) = buf.split_at(length as usize);
    *buf = rest;
    Ok(value)
}

fn text<'a>(
    wire_type: WireType,
    buf: &mut &'a [u8],
    field: &'static str,
) -> Result<&'a str, EnvelopeDecodeError> {
    std::str::from_utf8(delimited(wire_type, buf, field)?)
        .map_err(|_| EnvelopeDecodeError::NotUtf8(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Side, TradeKind};
    use proptest::prelude::*;
    use prost::Message;

    fn envelope() -> impl Strategy<Value = TradeEnvelope> {
        let text = || "\\PC{0,12}";
        (
            (
                prop::collection::vec(any::<u8>(), 0..40),
                any::<i64>(),
                text(),
                text(),
                text(),
                -1..5i32,
                text(),
                text(),
            ),
            (
                any::<i64>(),
                any::<i64>(),
                -1..4i32,
                text(),
                text(),
                any::<i64>(),
                text(),
                prop::option::of((text(), any::<u64>(), any::<u32>())),
            ),
        )
            .prop_map(|(a, b)| TradeEnvelope {
                raw_fix: a.0,
                receive_time: a.1,
                gateway_id: a.2,
                exec_id: a.3,
                exec_ref_id: a.4,
                kind: a.5,
                symbol: a.6,
                security_id: a.7,
                quantity: b.0,
                price_mantissa: b.1,
                side: b.2,
                trader_id: b.3,
                account: b.4,
                transact_time: b.5,
                fix_version: b.6,
                source: b.7.map(|(object_key, offset, length)| ArchiveRef {
                    object_key,
                    offset,
                    length,
                }),
            })
    }

    /// Both decoders' verdicts on `record`: the same envelope, or both refuse it.
    fn same_verdict(record: &[u8]) -> Result<(), TestCaseError> {
        let by_prost = TradeEnvelope::decode(record).ok();
        let borrowed = BorrowedEnvelope::decode(record)
            .ok()
            .map(|e| e.to_owned_envelope());
        prop_assert_eq!(borrowed, by_prost, "record {:?}", record);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_envelope_encodes_as_prost_encodes_it(sent in envelope()) {
            let mut record = vec![7];
            BorrowedEnvelope::from(&sent).encode(&mut record);
            prop_assert_eq!(&record[1..], &sent.encode_to_vec()[..]);
        }

        #[test]
        fn every_encoded_envelope_reads_back_as_prost_reads_it(sent in envelope()) {
            let record = sent.encode_to_vec();
            let read = BorrowedEnvelope::decode(&record).map(|e| e.to_owned_envelope());
            prop_assert_eq!(read.ok(), Some(sent));
        }

        /// Records cut short, bytes flipped, fields repeated or appended in other orders: the
        /// same verdict as prost's on each.
        #[test]
        fn damaged_records_get_prost_verdict(
            first in envelope(),
            second in envelope(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut record = first.encode_to_vec();
            same_verdict(&record[..cut.index(record.len() + 1)])?;
            // A second envelope appended: every field it sets repeats one of the first's.
            record.extend(second.encode_to_vec());
            same_verdict(&record)?;
            for (at, byte) in flips {
                if !record.is_empty() {
                    let at = at.index(record.len());
                    record[at] = byte;
                }
            }
            same_verdict(&record)?;
        }

        #[test]
        fn arbitrary_bytes_get_prost_verdict(record in prop::collection::vec(any::<u8>(), 0..64)) {
            same_verdict(&record)?;
        }
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped_and_bad_text_refused() {
        let sent = TradeEnvelope {
            exec_id: "E1".into(),
            kind: TradeKind::Fill as i32,
            side: Side::Buy as i32,
            ..Default::default()
        };
        let mut record = sent.encode_to_vec();
        // Field 40 as a varint, field 41 as a group holding a fixed64, field 42 as a fixed32.
        record.extend([0xc0, 0x02, 0x05]);
        record.extend([0xcb, 0x02, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0xcc, 0x02]);
        record.extend([0xd5, 0x02, 1, 2, 3, 4]);
        let read = BorrowedEnvelope::decode(&record).unwrap();
        assert_eq!(read.to_owned_envelope(), sent);
        assert_eq!(read, BorrowedEnvelope::from(&sent));
        // A source with every field at its default is still there, as an empty message.
        let empty_source = TradeEnvelope {
            source: Some(ArchiveRef::default()),
            ..sent
        };
        let mut record = Vec::new();
        BorrowedEnvelope::from(&empty_source).encode(&mut record);
        assert_eq!(record, empty_source.encode_to_vec());
        let read = BorrowedEnvelope::decode(&record).unwrap();
        assert_eq!(read.source, Some(BorrowedArchiveRef::default()));
        // exec_id (field 4) holding bytes that are not UTF-8.
        let refused = BorrowedEnvelope::decode(&[0x22, 0x02, 0xc3, 0x28]).unwrap_err();
        assert_eq!(refused.to_string(), "field exec_id: text is not UTF-8");
        assert!(TradeEnvelope::decode(&[0x22, 0x02, 0xc3, 0x28][..]).is_err());
    }
}
