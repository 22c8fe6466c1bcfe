//! The checks every message passes before its fields are read (FIX session test cases 14a-14j):
//! each tag defined, each field with a value, header before body before trailer, no tag twice
//! outside a repeating group, and each known group with as many entries as its NumInGroup says,
//! every entry starting with the group's first field.
//!
//! A message that fails is a dead letter (`garbled`, the detail naming the field and the fault)
//! and, on a FIX session, the sender gets a Reject naming the same field and fault.

use eod_proto::DeadLetterReason;

use super::decode::{FieldFault, Reject};
use super::dictionary::{self, Group, Section, TagFacts, Version};

/// One field of the decoder's index: tag, and the value's start and end in the message.
pub(crate) type IndexedField = (u32, usize, usize);

/// Checks the structure of `message`, whose fields `fields` indexes in order.
pub(crate) fn check(message: &[u8], fields: &[IndexedField]) -> Result<(), Reject> {
    let value = |&(_, start, end): &IndexedField| &message[start..end];
    let version = fields
        .first()
        .and_then(|f| Version::from_begin_string(value(f)));
    let msg_type = fields.get(2).map(value).unwrap_or_default();
    let admin_body = dictionary::admin_body(msg_type);
    let groups_modelled = dictionary::groups_modelled(msg_type);
    let mut seen = TagSet::default();
    let mut section = Section::Header;
    let mut i = 0;
    while i < fields.len() {
        let field = &fields[i];
        let tag = field.0;
        let facts = TagFacts::of(tag);
        if version.is_some_and(|v| !facts.defined_in(v)) {
            return Err(fault(tag, FieldFault::Undefined, "is not a FIX field"));
        }
        if value(field).is_empty() {
            return Err(fault(tag, FieldFault::NoValue, "has no value"));
        }
        let field_section = facts.section();
        if field_section < section {
            return Err(fault(
                tag,
                FieldFault::OutOfOrder,
                match field_section {
                    Section::Header => "is a header field after the body",
                    _ => "is a body field after the trailer",
                },
            ));
        }
        section = field_section;
        if field_section == Section::Body {
            let spec_tag = !facts.user_defined();
            if spec_tag && admin_body.is_some_and(|body| !body.contains(&tag)) {
                return Err(fault(
                    tag,
                    FieldFault::NotInMessageType,
                    "is not a field of this message type",
                ));
            }
        }
        if !seen.insert(tag) && (groups_modelled || field_section != Section::Body) {
            return Err(fault(tag, FieldFault::Repeated, "appears more than once"));
        }
        i += 1;
        if let Some(group) = facts.group(tag).filter(|_| groups_modelled) {
            i = check_group(message, fields, i, group, value(field))?;
        }
    }
    Ok(())
}

/// Checks the entries of `group` starting at `fields[start]`, its NumInGroup value being
/// `count`; returns the index of the first field after the group.
fn check_group(
    message: &[u8],
    fields: &[IndexedField],
    start: usize,
    group: &Group,
    count: &[u8],
) -> Result<usize, Reject> {
    let Some(expected) = parse_count(count) else {
        return Err(fault(
            group.count_tag,
            FieldFault::BadFormat,
            "is not a NumInGroup count",
        ));
    };
    let mut entries = 0u64;
    // The current entry's fields, by their position among the group's members (at most 64:
    // the largest group, Legs, has 53), so that checking an entry allocates nothing.
    let mut entry = 0u64;
    let mut i = start;
    while let Some(&(tag, value_start, value_end)) = fields.get(i) {
        let Some(member) = group.members.iter().position(|&m| m == tag) else {
            break;
        };
        let bit = 1u64 << member;
        if member == 0 {
            entries += 1;
            entry = 0;
        } else if entries == 0 || entry & bit != 0 {
            return Err(fault(
                tag,
                FieldFault::GroupOrder,
                "is out of order in its repeating group",
            ));
        }
        if value_start == value_end {
            return Err(fault(tag, FieldFault::NoValue, "has no value"));
        }
        entry |= bit;
        i += 1;
        if let Some(nested) = dictionary::group(tag) {
            i = check_group(message, fields, i, nested, &message[value_start..value_end])?;
        }
    }
    if entries != expected {
        return Err(Reject::new(
            DeadLetterReason::Garbled,
            format!(
                "NumInGroup {} says {expected} entries, the group has {entries}",
                group.count_tag
            ),
        )
        .at(group.count_tag, FieldFault::GroupCount));
    }
    Ok(i)
}

fn parse_count(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 6 {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

fn fault(tag: u32, fault: FieldFault, what: &str) -> Reject {
    Reject::new(DeadLetterReason::Garbled, format!("tag {tag} {what}")).at(tag, fault)
}

/// Tags seen in one message: a bit set for the specification's numbers, a list for the rare
/// user-defined ones.
#[derive(Default)]
struct TagSet {
    low: [u64; 16],
    high: Vec<u32>,
}

impl TagSet {
    /// Adds `tag`; false if it was already there.
    fn insert(&mut self, tag: u32) -> bool {
        if tag < 1024 {
            let (word, bit) = ((tag / 64) as usize, 1u64 << (tag % 64));
            let fresh = self.low[word] & bit == 0;
            self.low[word] |= bit;
            fresh
        } else if self.high.contains(&tag) {
            false
        } else {
            self.high.push(tag);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoded, Decoder, FixEncoder};

    fn fields(body: &[(u32, &str)]) -> Vec<(u32, &'static str)> {
        body.iter()
            .map(|&(t, v)| (t, &*Box::leak(v.to_owned().into_boxed_str())))
            .collect()
    }

    /// An execution report with `body` after the encoder's header (49, 56, 34, 52).
    fn report(version: &str, body: &[(u32, &str)]) -> Vec<u8> {
        FixEncoder::new(version).message("8", &fields(body))
    }

    fn fill() -> Vec<(u32, &'static str)> {
        vec![
            (17, "E1"),
            (150, "F"),
            (55, "AAPL"),
            (54, "1"),
            (32, "100"),
            (31, "10"),
            (60, "20261125-20:59:59"),
            (1, "ACC"),
        ]
    }

    fn refused(message: &[u8]) -> (u32, FieldFault) {
        let reject = Decoder::new().decode(message).unwrap_err();
        assert_eq!(reject.reason, DeadLetterReason::Garbled, "{reject}");
        let field = reject.field.expect("names the field");
        (field.tag, field.fault)
    }

    /// Replaces the raw text between the header and the trailer, keeping BodyLength and
    /// CheckSum right (the framer's checks are not what these tests are about).
    fn raw(version: &str, msg_type: &str, after_header: &str) -> Vec<u8> {
        let body = format!("35={msg_type}\x01{after_header}");
        let head = format!("8={version}\x019={}\x01", body.len());
        let mut message = format!("{head}{body}").into_bytes();
        let sum = message.iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
        message.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
        message
    }

    #[test]
    fn a_well_formed_report_with_groups_passes() {
        let mut f = fill();
        f.extend([
            (453, "2"),
            (448, "A"),
            (447, "D"),
            (452, "12"),
            (802, "1"),
            (523, "x"),
            (803, "4"),
            (448, "B"),
            (452, "1"),
            (136, "0"),
            (5001, "custom"),
        ]);
        assert!(matches!(
            Decoder::new().decode(&report("FIX.4.4", &f)),
            Ok(Decoded::Trade(_))
        ));
    }

    #[test]
    fn undefined_tags_are_refused_user_defined_ones_pass() {
        // Case 14a: a tag number the specification does not define.
        let mut f = fill();
        f.push((999, "HI"));
        assert_eq!(
            refused(&report("FIX.4.4", &f)),
            (999, FieldFault::Undefined)
        );
        // 20 (ExecTransType) was retired in 4.4.
        let mut f = fill();
        f.push((20, "0"));
        assert_eq!(refused(&report("FIX.4.4", &f)), (20, FieldFault::Undefined));
        // A 4.2 message may carry what 4.4 added (Parties), not what no version defines.
        let mut f = fill();
        f.extend([(20, "0"), (453, "1"), (448, "A"), (452, "12")]);
        f[1] = (150, "2");
        assert!(Decoder::new().decode(&report("FIX.4.2", &f)).is_ok());
        f.push((999, "HI"));
        assert_eq!(
            refused(&report("FIX.4.2", &f)),
            (999, FieldFault::Undefined)
        );
    }

    #[test]
    fn admin_messages_refuse_fields_of_other_message_types() {
        // Case 14c: a Heartbeat with Symbol.
        let message = raw(
            "FIX.4.4",
            "0",
            "34=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x0155=MSFT\x01",
        );
        assert_eq!(
            check_message(&message),
            Err((55, FieldFault::NotInMessageType))
        );
        let fine = raw(
            "FIX.4.4",
            "0",
            "34=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x01112=T\x01",
        );
        assert_eq!(check_message(&fine), Ok(()));
    }

    fn check_message(message: &[u8]) -> Result<(), (u32, FieldFault)> {
        crate::check_structure(message).map_err(|r| {
            let field = r.field.expect("names the field");
            (field.tag, field.fault)
        })
    }

    #[test]
    fn a_tag_without_a_value_is_refused() {
        // Case 14d, on an optional field the decoder would not even read.
        let mut f = fill();
        f.push((58, ""));
        assert_eq!(refused(&report("FIX.4.4", &f)), (58, FieldFault::NoValue));
    }

    #[test]
    fn header_body_and_trailer_must_come_in_that_order() {
        // Case 14g: body fields before the header's MsgSeqNum.
        let message = raw(
            "FIX.4.4",
            "8",
            "17=E1\x01150=F\x0134=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x01",
        );
        assert_eq!(refused(&message), (34, FieldFault::OutOfOrder));
        // A body field after the trailer's SignatureLength.
        let message = raw(
            "FIX.4.4",
            "8",
            "34=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x0193=1\x0117=E1\x01",
        );
        assert_eq!(refused(&message), (17, FieldFault::OutOfOrder));
    }

    #[test]
    fn a_repeated_tag_is_refused() {
        // Case 14h: LastPx twice; which price is the fill's?
        let mut f = fill();
        f.push((31, "11"));
        assert_eq!(refused(&report("FIX.4.4", &f)), (31, FieldFault::Repeated));
        // A header field twice.
        let message = raw(
            "FIX.4.4",
            "8",
            "34=2\x0149=A\x0149=A\x0152=20261125-20:00:00\x0156=B\x01",
        );
        assert_eq!(refused(&message), (49, FieldFault::Repeated));
    }

    #[test]
    fn repeating_groups_must_match_their_count_and_order() {
        let with = |extra: &[(u32, &str)]| {
            let mut f = fill();
            f.extend(fields(extra));
            report("FIX.4.4", &f)
        };
        // Case 14i: NumInGroup says 3, there are 2 entries.
        let short = with(&[(453, "3"), (448, "A"), (452, "12"), (448, "B"), (452, "1")]);
        assert_eq!(refused(&short), (453, FieldFault::GroupCount));
        // ... and a count beyond the entries in a nested group.
        let nested = with(&[(453, "1"), (448, "A"), (802, "2"), (523, "x")]);
        assert_eq!(refused(&nested), (802, FieldFault::GroupCount));
        // Case 14j: an entry that does not start with the group's first field.
        let unordered = with(&[(453, "1"), (452, "12"), (448, "A")]);
        assert_eq!(refused(&unordered), (452, FieldFault::GroupOrder));
        let twice_in_entry = with(&[(453, "2"), (448, "A"), (452, "12"), (452, "1")]);
        assert_eq!(refused(&twice_in_entry), (452, FieldFault::GroupOrder));
        // Not a count.
        let bad_count = with(&[(453, "x"), (448, "A")]);
        assert_eq!(refused(&bad_count), (453, FieldFault::BadFormat));
        // Case 21: an empty group is fine.
        assert!(Decoder::new().decode(&with(&[(453, "0")])).is_ok());
    }

    #[test]
    fn other_application_messages_are_checked_only_for_what_holds_everywhere() {
        // A NewOrderSingle's NoTradingSessions group is not modelled: 336 twice is a group,
        // not a repeated tag. Undefined tags and header order are still refused.
        let order = raw(
            "FIX.4.4",
            "D",
            "34=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x01386=2\x01336=X\x01336=Y\x01",
        );
        assert!(matches!(
            Decoder::new().decode(&order),
            Ok(Decoded::NotATrade { .. })
        ));
        let header_twice = raw(
            "FIX.4.4",
            "D",
            "34=2\x0134=2\x0149=A\x0152=20261125-20:00:00\x0156=B\x01",
        );
        assert_eq!(refused(&header_twice), (34, FieldFault::Repeated));
    }
}
