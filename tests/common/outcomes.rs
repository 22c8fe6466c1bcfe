//! One input holding every public FIX sample (`../shared/testdata/fix/`, copied beside the
//! codec's tests) and one message of every dead-letter class the FIX path has, so that each
//! entry point can be shown to classify it exactly as the codec's classifier does.

use eod_fix::{Classifier, Counts, FixEncoder, Framer, Outcome};

/// Every public sample, then a bad checksum, a bad BodyLength, garbage, a fill without its
/// ExecID (missing field) and one with a zero quantity (invalid value), then a valid fill.
pub fn every_outcome_stream() -> Vec<u8> {
    let samples = include_str!("../../sources/fix/tests/data/public-samples.psv");
    let mut stream: Vec<u8> = samples
        .lines()
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.replace('|', "\x01").into_bytes())
        .collect();
    let fill = |exec_id: Option<&str>, qty: &str| {
        let mut fields = vec![
            (150, "F"),
            (55, "OUTC"),
            (54, "1"),
            (32, qty),
            (31, "10.5"),
            (60, "20261125-21:00:00"),
            (1, "OUTC-T"),
        ];
        if let Some(exec_id) = exec_id {
            fields.insert(0, (17, exec_id));
        }
        FixEncoder::new("FIX.4.4").message("8", &fields)
    };
    let mut bad_checksum = fill(Some("OUT-1"), "10");
    eod_fix::break_checksum(&mut bad_checksum);
    let good = fill(Some("OUT-2"), "10");
    let length_at = good.windows(3).position(|w| w == b"\x019=").unwrap() + 3;
    let mut bad_length = good.clone();
    bad_length.insert(length_at, b'9');
    for part in [
        bad_checksum,
        bad_length,
        b"garbage".to_vec(),
        fill(None, "10"),
        fill(Some("OUT-3"), "0"),
        fill(Some("OUT-4"), "25"),
    ] {
        stream.extend_from_slice(&part);
    }
    // Line ends after the last message, more than one 64 KiB read of them: read and counted
    // as bytes, framed as nothing.
    for _ in 0..35_000 {
        stream.extend_from_slice(b"\r\n");
    }
    stream
}

/// What the codec's classifier makes of `stream`: the counts and the dead letters' reasons
/// in order.
pub fn classify_directly(stream: &[u8]) -> (Counts, Vec<&'static str>) {
    let (mut framer, mut classifier) = (Framer::default(), Classifier::new());
    framer.push(stream);
    classifier.observe(stream);
    framer.finish();
    classifier.end_of_stream();
    let mut reasons = Vec::new();
    while let Some(frame) = framer.next_frame() {
        if let Outcome::Dead(reject) = classifier.classify(&frame) {
            reasons.push(reject.reason.label());
        }
    }
    (classifier.take_counts(), reasons)
}
