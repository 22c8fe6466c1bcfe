//! Arbitrary bytes, split into arbitrary reads, through the framer and decoder: no panic, every
//! byte accounted for, and every accepted message really has a valid BodyLength and CheckSum.
#![no_main]

use eod_sources::fix::framer::checksum;
use eod_sources::fix::{Decoder, Framed, Framer};
use libfuzzer_sys::fuzz_target;

fn drain(framer: &mut Framer, decoder: &mut Decoder, accounted: &mut usize) {
    while let Some(frame) = framer.next_frame() {
        match frame {
            Framed::Message { bytes, .. } => {
                *accounted += bytes.len();
                let trailer = bytes.len() - 7;
                let declared: u32 = std::str::from_utf8(&bytes[trailer + 3..trailer + 6]).unwrap().parse().unwrap();
                assert_eq!(declared, checksum(&bytes[..trailer]), "accepted a bad checksum");
                // Decoding may reject, but must never panic.
                let _ = decoder.decode(bytes);
            }
            Framed::Dead { bytes, .. } => {
                assert!(!bytes.is_empty(), "empty dead letter");
                *accounted += bytes.len();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let chunk = usize::from(split) + 1;
    let mut framer = Framer::new(2048);
    let mut decoder = Decoder::new();
    let mut accounted = 0;
    for part in input.chunks(chunk) {
        framer.push(part);
        drain(&mut framer, &mut decoder, &mut accounted);
    }
    framer.finish();
    drain(&mut framer, &mut decoder, &mut accounted);
    assert_eq!(framer.pending(), 0, "bytes left after finish");
    let newlines = input.iter().filter(|b| matches!(b, b'\n' | b'\r')).count();
    assert!(accounted <= input.len());
    assert!(accounted + newlines >= input.len(), "bytes lost");
});
