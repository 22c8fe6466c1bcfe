//! Framing properties over random streams: whatever corruption stands in front of a valid
//! message, whatever separates messages (nothing, LF, CRLF) and however the bytes are split into
//! reads, every valid message comes out once and whole, every dead letter holds at most one
//! message's bytes, and an independent count of the messages in the stream agrees with the
//! units the framer says start one.

use eod_fix::{FixEncoder, Framed, Framer, MessageCensus};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Corruption {
    /// BodyLength larger by this much.
    LengthTooLong(usize),
    /// BodyLength claims exactly the span up to the CheckSum field of the next valid message
    /// (the corruption that lost trades: the span's trailer is well placed).
    LengthOntoNextChecksum,
    /// BodyLength smaller by this much (at least 1).
    LengthTooShort(usize),
    /// A digit inserted into BodyLength at this position (modulo its length).
    DigitInserted(usize, u8),
    /// A digit removed from BodyLength at this position (modulo its length).
    DigitRemoved(usize),
    /// The message stops before its CheckSum field, after this many of its fields (modulo).
    Truncated(usize),
    WrongChecksum,
    Garbage(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Piece {
    Valid(u32),
    Corrupt(u32, Corruption),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (1usize..300).prop_map(Corruption::LengthTooLong),
        Just(Corruption::LengthOntoNextChecksum),
        (1usize..40).prop_map(Corruption::LengthTooShort),
        (0usize..4, b'0'..=b'9').prop_map(|(at, d)| Corruption::DigitInserted(at, d)),
        (0usize..4).prop_map(Corruption::DigitRemoved),
        (0usize..10).prop_map(Corruption::Truncated),
        Just(Corruption::WrongChecksum),
        // Bytes that can spell pieces of headers and trailers, never a whole valid message.
        prop::collection::vec(prop::sample::select(b"x\x01=89FIX.410\n\r".to_vec()), 1..40)
            .prop_map(Corruption::Garbage),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => (0u32..100_000).prop_map(Piece::Valid),
        2 => (0u32..100_000, corruption()).prop_map(|(n, c)| Piece::Corrupt(n, c)),
    ]
}

fn message(n: u32) -> Vec<u8> {
    let (seq, exec) = (n.to_string(), format!("E-{n}"));
    let text = "t".repeat((n % 120) as usize);
    FixEncoder::new(if n.is_multiple_of(3) {
        "FIX.4.2"
    } else {
        "FIX.4.4"
    })
    .message("8", &[(34, &seq), (17, &exec), (150, "F"), (58, &text)])
}

/// The BodyLength digits' range in an encoded message.
fn body_length_digits(m: &[u8]) -> std::ops::Range<usize> {
    let start = m.windows(3).position(|w| w == b"\x019=").unwrap() + 3;
    let len = m[start..].iter().position(|b| *b == 0x01).unwrap();
    start..start + len
}

fn set_body_length(m: &[u8], digits: &[u8]) -> Vec<u8> {
    let range = body_length_digits(m);
    [&m[..range.start], digits, &m[range.end..]].concat()
}

fn declared(m: &[u8]) -> usize {
    std::str::from_utf8(&m[body_length_digits(m)])
        .unwrap()
        .parse()
        .unwrap()
}

/// `message(n)` broken by `c`. `next_valid_tail`: for `LengthOntoNextChecksum`, how many bytes
/// stand between this message's end and the next valid message's CheckSum field.
fn corrupt(n: u32, c: &Corruption, next_valid_tail: Option<usize>) -> Vec<u8> {
    let m = message(n);
    let length = declared(&m);
    match c {
        Corruption::LengthTooLong(k) => set_body_length(&m, (length + k).to_string().as_bytes()),
        Corruption::LengthOntoNextChecksum => match next_valid_tail {
            // The body runs on over our own trailer and everything up to their `10=`.
            Some(tail) => set_body_length(&m, (length + 7 + tail).to_string().as_bytes()),
            None => set_body_length(&m, (length + 1).to_string().as_bytes()),
        },
        Corruption::LengthTooShort(k) => {
            set_body_length(&m, length.saturating_sub(*k).max(1).to_string().as_bytes())
        }
        Corruption::DigitInserted(at, d) => {
            let mut digits = m[body_length_digits(&m)].to_vec();
            digits.insert(at % (digits.len() + 1), *d);
            set_body_length(&m, &digits)
        }
        Corruption::DigitRemoved(at) => {
            let mut digits = m[body_length_digits(&m)].to_vec();
            let len = digits.len();
            digits.remove(at % len);
            set_body_length(&m, &digits)
        }
        Corruption::Truncated(fields) => {
            let ends: Vec<usize> = m
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == 0x01)
                .map(|(i, _)| i + 1)
                .collect();
            // Keep at least BeginString, BodyLength and MsgType; never the CheckSum field.
            let keep = 3 + fields % (ends.len() - 3);
            m[..ends[keep - 1]].to_vec()
        }
        Corruption::WrongChecksum => {
            let mut m = m;
            let k = m.len() - 2;
            m[k] = if m[k] == b'0' { b'1' } else { b'0' };
            m
        }
        Corruption::Garbage(bytes) => bytes.clone(),
    }
}

struct Stream {
    bytes: Vec<u8>,
    valid: Vec<Vec<u8>>,
}

fn build(pieces: &[Piece], separator: &[u8]) -> Stream {
    let mut bytes = Vec::new();
    let mut valid = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Valid(n) => {
                let m = message(*n);
                bytes.extend_from_slice(&m);
                valid.push(m);
            }
            Piece::Corrupt(n, c) => {
                // Bytes from our end to the next valid message's `10=`, if one follows.
                let tail = pieces[i + 1..]
                    .iter()
                    .position(|p| matches!(p, Piece::Valid(_)))
                    .map(|j| {
                        let between: usize = pieces[i + 1..i + 1 + j]
                            .iter()
                            .map(|p| match p {
                                Piece::Corrupt(n, c) => corrupt(*n, c, None).len(),
                                Piece::Valid(_) => unreachable!(),
                            })
                            .sum();
                        let Piece::Valid(next) = pieces[i + 1 + j] else {
                            unreachable!()
                        };
                        let separators = separator.len() * (j + 1);
                        between + separators + message(next).len() - 7
                    });
                bytes.extend_from_slice(&corrupt(*n, c, tail));
            }
        }
        bytes.extend_from_slice(separator);
    }
    Stream { bytes, valid }
}

#[derive(Debug, PartialEq)]
enum Unit {
    Message(Vec<u8>),
    Dead(Vec<u8>),
}

fn frame(stream: &[u8], chunk: usize) -> (Vec<Unit>, u64) {
    frame_with(stream, chunk, eod_fix::DEFAULT_MAX_MESSAGE)
}

fn frame_with(stream: &[u8], chunk: usize, max_message: usize) -> (Vec<Unit>, u64) {
    let mut framer = Framer::new(max_message);
    let mut census = MessageCensus::new();
    let mut units = Vec::new();
    let drain = |framer: &mut Framer, units: &mut Vec<Unit>| {
        while let Some(frame) = framer.next_frame() {
            units.push(match frame {
                Framed::Message { bytes, .. } => Unit::Message(bytes.to_vec()),
                Framed::Dead { bytes, .. } => Unit::Dead(bytes.to_vec()),
            });
        }
    };
    for part in stream.chunks(chunk) {
        framer.push(part);
        census.push(part);
        drain(&mut framer, &mut units);
    }
    framer.finish();
    census.finish();
    drain(&mut framer, &mut units);
    (units, census.messages())
}

/// A stream framed where it lies ([`eod_fix::frames`]) against the same stream pushed whole
/// into a [`Framer`]: every unit, its kind, bytes, offset and reason.
fn frames_in_place_match_a_framer(stream: &[u8], max_message: usize) -> Result<(), TestCaseError> {
    let mut framer = Framer::new(max_message);
    framer.push(stream);
    framer.finish();
    let mut pushed = Vec::new();
    while let Some(frame) = framer.next_frame() {
        pushed.push(format!("{frame:?}"));
    }
    let in_place: Vec<String> = eod_fix::frames(stream, max_message)
        .map(|frame| format!("{frame:?}"))
        .collect();
    prop_assert_eq!(in_place, pushed);
    Ok(())
}

proptest! {
    // 512 cases by default; PROPTEST_CASES raises it for a longer local run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_valid_message_is_recovered_once_behind_any_corruption(
        pieces in prop::collection::vec(piece(), 1..24),
        separator in prop::sample::select(vec![&b""[..], b"\n", b"\r\n"]),
        chunk in 1usize..400,
    ) {
        let stream = build(&pieces, separator);
        let (units, messages_in_stream) = frame(&stream.bytes, chunk);

        // Every valid message once, whole, in order; nothing corrupt passes as valid.
        let framed: Vec<&Vec<u8>> = units
            .iter()
            .filter_map(|u| match u { Unit::Message(m) => Some(m), Unit::Dead(_) => None })
            .collect();
        prop_assert_eq!(framed, stream.valid.iter().collect::<Vec<_>>());

        // A dead letter holds one bad message's bytes (or garbage): never a second header.
        let census_of = |bytes: &[u8]| {
            let mut c = MessageCensus::new();
            c.push(bytes);
            c.finish();
            c.messages()
        };
        for unit in &units {
            if let Unit::Dead(bytes) = unit {
                prop_assert!(census_of(bytes) <= 1, "a dead letter merged messages: {:?}",
                    String::from_utf8_lossy(bytes));
            }
        }

        // The independent count equals the units that start a message.
        let starting = units
            .iter()
            .filter(|u| match u {
                Unit::Message(b) | Unit::Dead(b) => MessageCensus::starts_message(b),
            })
            .count() as u64;
        prop_assert_eq!(starting, messages_in_stream);

        // Every byte is in a unit, except line ends between units.
        let framed_bytes: usize = units
            .iter()
            .map(|u| match u { Unit::Message(b) | Unit::Dead(b) => b.len() })
            .sum();
        let line_ends = stream.bytes.iter().filter(|b| matches!(**b, b'\n' | b'\r')).count();
        prop_assert!(framed_bytes <= stream.bytes.len());
        prop_assert!(framed_bytes + line_ends >= stream.bytes.len());

        // The framing does not depend on how the stream was split into reads.
        let (whole, _) = frame(&stream.bytes, stream.bytes.len().max(1));
        prop_assert_eq!(units, whole);
        frames_in_place_match_a_framer(&stream.bytes, eod_fix::DEFAULT_MAX_MESSAGE)?;
    }

    /// Whatever the bytes: no unit holds two messages, the units start exactly the messages
    /// the census counts, and the split into reads changes nothing.
    #[test]
    fn no_stream_of_near_misses_makes_units_disagree_with_the_census(
        fragments in prop::collection::vec(fragment(), 0..80),
        chunk in 1usize..64,
        max_message in prop_oneof![Just(120usize), Just(200), Just(65536)],
    ) {
        let stream = fragments.concat();
        let (units, messages) = frame_with(&stream, chunk, max_message);
        let mut starting = 0;
        for unit in &units {
            let (Unit::Message(bytes) | Unit::Dead(bytes)) = unit;
            let mut census = MessageCensus::new();
            census.push(bytes);
            census.finish();
            prop_assert!(census.messages() <= 1, "{:?}", String::from_utf8_lossy(bytes));
            starting += u64::from(MessageCensus::starts_message(bytes));
        }
        prop_assert_eq!(starting, messages);
        if max_message == 65536 {
            // (A stream longer than the limit is cut where the limit falls, read by read.)
            let (whole, _) = frame_with(&stream, stream.len().max(1), max_message);
            prop_assert_eq!(units, whole);
        }
        frames_in_place_match_a_framer(&stream, max_message)?;
    }
}

#[test]
fn a_body_length_landing_on_a_later_checksum_costs_no_valid_message() {
    // The case seen in the wild: a digit inserted into BodyLength makes the declared end fall
    // exactly on the CheckSum field of a message five messages later.
    let good: Vec<Piece> = (0..5).map(|n| Piece::Valid(100 + n)).collect();
    let rest = build(&good, b"");
    let bad = corrupt(
        7,
        &Corruption::LengthOntoNextChecksum,
        Some(rest.bytes.len() - 7),
    );
    let stream = [bad.clone(), rest.bytes.clone()].concat();
    let body_start = body_length_digits(&bad).end + 1;
    assert_eq!(
        body_start + declared(&bad) + 7,
        stream.len(),
        "the declared span ends exactly with the fifth message's CheckSum field"
    );
    let (units, census) = frame(&stream, 4096);
    assert_eq!(census, 6);
    let Some(Unit::Dead(dead)) = units.first() else {
        panic!("the corrupt message is dead: {units:?}")
    };
    assert_eq!(dead, &bad, "the dead letter is the bad message alone");
    let framed: Vec<&Vec<u8>> = units[1..]
        .iter()
        .map(|u| match u {
            Unit::Message(m) => m,
            Unit::Dead(d) => panic!("a valid message was dead-lettered: {d:?}"),
        })
        .collect();
    assert_eq!(framed, rest.valid.iter().collect::<Vec<_>>());
}

/// Fragments of headers, lengths and trailers: random streams of them are mostly near-misses.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"8=FIX"[..],
            b"8=FIX.4.4",
            b"T.1.1",
            b"\x01",
            b"9=",
            b"\x0110=",
            b"123",
            b"7",
            b"35=8",
            b"=",
            b"8",
            b"\n",
            b"\r",
        ])
        .prop_map(<[u8]>::to_vec),
        any::<u8>().prop_map(|b| vec![b]),
        (0u32..1000).prop_map(message),
    ]
}
