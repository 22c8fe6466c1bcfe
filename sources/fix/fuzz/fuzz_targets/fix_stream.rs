//! Arbitrary bytes, split into arbitrary reads, through the framer and decoder: no panic, every
//! byte accounted for, every accepted message really has a valid BodyLength and CheckSum, and
//! no unit holds two messages (checked by the independent message census).
#![no_main]

use eod_fix::framer::checksum;
use eod_fix::{Decoder, Framed, Framer, MessageCensus};
use libfuzzer_sys::fuzz_target;

fn messages_in(bytes: &[u8]) -> u64 {
    let mut census = MessageCensus::new();
    census.push(bytes);
    census.finish();
    census.messages()
}

fn drain(framer: &mut Framer, decoder: &mut Decoder, accounted: &mut usize, starting: &mut u64) {
    while let Some(frame) = framer.next_frame() {
        let unit = match &frame {
            Framed::Message { bytes, .. } | Framed::Dead { bytes, .. } => *bytes,
        };
        assert!(messages_in(unit) <= 1, "a unit holds two messages");
        *starting += u64::from(MessageCensus::starts_message(unit));
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
    let (mut accounted, mut starting) = (0, 0);
    for part in input.chunks(chunk) {
        framer.push(part);
        drain(&mut framer, &mut decoder, &mut accounted, &mut starting);
    }
    framer.finish();
    drain(&mut framer, &mut decoder, &mut accounted, &mut starting);
    assert_eq!(starting, messages_in(input), "units start every message the census finds");
    assert_eq!(framer.pending(), 0, "bytes left after finish");
    let newlines = input.iter().filter(|b| matches!(b, b'\n' | b'\r')).count();
    assert!(accounted <= input.len());
    assert!(accounted + newlines >= input.len(), "bytes lost");
});
