//! Framing properties over random streams: whatever the corruption and however the bytes are
//! split into reads, every intact message comes out whole and every byte is accounted for.

use eod_sources::fix::{FixEncoder, Framed, Framer};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Piece {
    Good(u32),
    BadChecksum(u32),
    Junk(Vec<u8>),
    Newline,
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => (0u32..10_000).prop_map(Piece::Good),
        1 => (0u32..10_000).prop_map(Piece::BadChecksum),
        1 => prop::collection::vec(prop_oneof![Just(b'x'), Just(0x01u8), Just(b'='), Just(b'8'), Just(b'9')], 1..30).prop_map(Piece::Junk),
        1 => Just(Piece::Newline),
    ]
}

fn message(n: u32) -> Vec<u8> {
    FixEncoder::new("FIX.4.4").message(
        "0",
        &[(34, &n.to_string()), (58, &"t".repeat((n % 50) as usize))],
    )
}

proptest! {
    #[test]
    fn intact_messages_survive_any_corruption_and_chunking(
        pieces in prop::collection::vec(piece(), 0..40),
        chunk in 1usize..300,
    ) {
        let mut stream = Vec::new();
        let mut expected_good = Vec::new();
        for p in &pieces {
            match p {
                Piece::Good(n) => {
                    let m = message(*n);
                    expected_good.push(m.clone());
                    stream.extend_from_slice(&m);
                }
                Piece::BadChecksum(n) => {
                    let mut m = message(*n);
                    let k = m.len() - 2;
                    m[k] = if m[k] == b'0' { b'1' } else { b'0' };
                    stream.extend_from_slice(&m);
                }
                Piece::Junk(bytes) => stream.extend_from_slice(bytes),
                Piece::Newline => stream.push(b'\n'),
            }
        }
        let mut framer = Framer::default();
        let (mut good, mut accounted) = (Vec::new(), 0usize);
        let drain = |framer: &mut Framer, good: &mut Vec<Vec<u8>>, accounted: &mut usize| {
            while let Some(frame) = framer.next_frame() {
                match frame {
                    Framed::Message { bytes, .. } => { *accounted += bytes.len(); good.push(bytes.to_vec()); }
                    Framed::Dead { bytes, .. } => *accounted += bytes.len(),
                }
            }
        };
        for part in stream.chunks(chunk) {
            framer.push(part);
            drain(&mut framer, &mut good, &mut accounted);
        }
        framer.finish();
        drain(&mut framer, &mut good, &mut accounted);
        // Only newlines between messages may be skipped; every other byte is in a frame.
        let newlines = stream.iter().filter(|b| **b == b'\n').count();
        prop_assert!(accounted <= stream.len());
        prop_assert!(accounted + newlines >= stream.len());
        // Junk here can never contain `8=FIX`, so no corruption may cost an intact message.
        prop_assert_eq!(good, expected_good);
    }
}
