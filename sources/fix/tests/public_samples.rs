//! The codec against public FIX messages with independently recomputed verdicts
//! (`data/PUBLIC-SAMPLES.md`): external truth, not our own encoder.

use eod_fix::{Decoded, Decoder, Framed, Framer};
use eod_proto::{DeadLetterReason, Side, TradeKind};

fn samples() -> Vec<Vec<u8>> {
    let text = include_str!("data/public-samples.psv");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('|', "\x01").into_bytes())
        .collect()
}

enum Verdict {
    Trade,
    NotATrade,
    Dead,
}

fn verdict(message: &[u8]) -> (Verdict, Option<DeadLetterReason>) {
    let mut framer = Framer::default();
    framer.push(message);
    framer.finish();
    let mut frames = Vec::new();
    while let Some(frame) = framer.next_frame() {
        frames.push(match frame {
            Framed::Message { bytes, .. } => match Decoder::new().decode(bytes) {
                Ok(Decoded::Trade(_)) => (Verdict::Trade, None),
                Ok(Decoded::NotATrade { .. }) => (Verdict::NotATrade, None),
                Err(reject) => (Verdict::Dead, Some(reject.reason)),
            },
            Framed::Dead { reason, .. } => (Verdict::Dead, Some(reason)),
        });
    }
    assert_eq!(
        frames.len(),
        1,
        "one line is one message or one dead letter"
    );
    frames.pop().unwrap()
}

#[test]
fn verdicts_match_the_published_table() {
    let samples = samples();
    assert_eq!(samples.len(), 6);
    assert!(matches!(verdict(&samples[0]), (Verdict::Trade, None)));
    assert!(matches!(verdict(&samples[1]), (Verdict::NotATrade, None)));
    assert!(matches!(verdict(&samples[2]), (Verdict::NotATrade, None)));
    assert!(matches!(verdict(&samples[3]), (Verdict::NotATrade, None)));
    assert!(matches!(
        verdict(&samples[4]),
        (Verdict::Dead, Some(DeadLetterReason::BodyLength))
    ));
    assert!(matches!(verdict(&samples[5]), (Verdict::Dead, Some(_))));
}

#[test]
fn gilt_fill_decodes_exactly() {
    let samples = samples();
    let mut framer = Framer::default();
    framer.push(&samples[0]);
    let Some(Framed::Message { bytes, .. }) = framer.next_frame() else {
        panic!("frames")
    };
    let Ok(Decoded::Trade(t)) = Decoder::new().decode(bytes) else {
        panic!("decodes")
    };
    // As the gateway publishes it.
    let t = t.to_envelope();
    assert_eq!(t.kind(), TradeKind::Fill);
    assert_eq!(t.exec_id, "VCON:20130321:50018:5:12");
    assert_eq!(t.symbol, "GB0032452392", "[N/A] falls back to SecurityID");
    assert_eq!(
        t.trader_id, "TFOLIO:6804469",
        "executing trader from PartyRole 12"
    );
    assert_eq!(t.quantity, 1_990_000);
    assert_eq!(t.price_mantissa, 12_225_500_000);
    assert_eq!(t.side(), Side::Buy);
    assert_eq!(t.fix_version, "FIX.4.4");
}

#[test]
fn all_samples_in_one_stream_resync_and_account_for_every_message() {
    // Back to back, no separators: the bad BodyLength must not swallow its neighbours.
    let stream: Vec<u8> = samples().concat();
    let mut framer = Framer::default();
    framer.push(&stream);
    framer.finish();
    let (mut good, mut dead, mut bytes) = (0, 0, 0);
    while let Some(frame) = framer.next_frame() {
        match frame {
            Framed::Message { bytes: b, .. } => {
                good += 1;
                bytes += b.len();
            }
            Framed::Dead { bytes: b, .. } => {
                dead += 1;
                bytes += b.len();
            }
        }
    }
    assert_eq!((good, dead), (4, 2));
    assert_eq!(
        bytes,
        stream.len(),
        "every byte belongs to a message or a dead letter"
    );
}
